//! Rotating `session.secret`: with the old secret in `session.previous_secrets`, existing
//! sessions keep working and are re-sealed with the new secret; once the old secret is
//! dropped, cookies still sealed with it are no session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use portcullis::config::EnvOverrides;
use portcullis::server::reload;
use portcullis::testing::{EchoUpstream, TestIdp};
use support::{Browser, SESSION_SECRET, TUTORIAL_RULES};

const NEW_SECRET: &str = "a-brand-new-session-secret-0123456789";

/// A plain API request with the browser's cookies: 200 with a session, else 401.
async fn status_with(b: &Browser, cookie: &str) -> (u16, Vec<String>) {
    let r = support::get(
        b.gateway,
        "/profile",
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
    .await;
    let set: Vec<String> = r
        .header_all("set-cookie")
        .iter()
        .map(|s| s.to_string())
        .collect();
    (r.status, set)
}

fn cookie_header(jar: &std::collections::BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn a_rotated_secret_keeps_sessions_and_reseals_them() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let port = support::free_port();
    let toml = support::config_toml_on(
        &format!("127.0.0.1:{port}"),
        &format!("http://127.0.0.1:{port}"),
        &idp.issuer(),
        &upstream.url(),
        TUTORIAL_RULES,
    );
    std::fs::write(&path, &toml).unwrap();
    let env = EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&path, &env).unwrap())
        .await
        .unwrap();
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;

    let mut b = Browser::new(gw.addr);
    assert_eq!(b.navigate("/profile").await.status, 200);
    let old_cookie = cookie_header(&b.jar);

    // Rotate: the new secret seals, the old one still opens.
    let rotated = toml.replace(
        &format!("secret = \"{SESSION_SECRET}\""),
        &format!("secret = \"{NEW_SECRET}\"\nprevious_secrets = [\"{SESSION_SECRET}\"]"),
    );
    assert_ne!(rotated, toml);
    std::fs::write(&path, &rotated).unwrap();
    reload::reload(&gw.gateway, &path, &env).expect("the rotated configuration loads");
    let (status, set) = status_with(&b, &old_cookie).await;
    assert_eq!(status, 200, "an old cookie still opens");
    assert!(
        set.iter().any(|c| c.starts_with("portcullis=")),
        "and is sealed again: {set:?}"
    );
    b.store_cookies(&support::RawResponse {
        status,
        headers: set
            .iter()
            .map(|c| ("set-cookie".to_owned(), c.clone()))
            .collect(),
        body: String::new(),
    });
    let new_cookie = cookie_header(&b.jar);
    assert_ne!(new_cookie, old_cookie);

    // Drop the old secret: only the re-sealed cookie is a session.
    let done = rotated.replace(&format!("\nprevious_secrets = [\"{SESSION_SECRET}\"]"), "");
    std::fs::write(&path, &done).unwrap();
    reload::reload(&gw.gateway, &path, &env).expect("the final configuration loads");
    assert_eq!(status_with(&b, &new_cookie).await.0, 200);
    assert_eq!(status_with(&b, &old_cookie).await.0, 401);
}

#[test]
fn check_names_bad_previous_secrets() {
    let toml = support::config_toml("http://127.0.0.1:1/realms/x", "http://127.0.0.1:2", "")
        .replace(
            &format!("secret = \"{SESSION_SECRET}\""),
            &format!(
            "secret = \"{SESSION_SECRET}\"\nprevious_secrets = [\"short\", \"{SESSION_SECRET}\"]"
        ),
        );
    let errors = portcullis::config::load_figment(figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(&toml),
    ))
    .expect_err("refused");
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"session.previous_secrets[0]"), "{keys:?}");
    assert!(keys.contains(&"session.previous_secrets[1]"), "{keys:?}");
}
