//! Bearer tokens from several issuers (`[[tokens.issuers]]`): the token's `iss` selects
//! exactly one issuer, whose keys, audiences and role paths judge it; readiness waits for
//! every issuer's keys; `check` names each entry's errors; `explain --token` uses the keys
//! of the issuer the token names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use figment::providers::Format;
use portcullis::testing::{EchoUpstream, TestIdp};
use serde_json::json;

struct Two {
    main: TestIdp,
    other: TestIdp,
    upstream: EchoUpstream,
    gw: portcullis::server::Running,
}

fn toml(main: &TestIdp, other: &TestIdp, upstream: &EchoUpstream) -> String {
    let extra = format!(
        r#"
[[tokens.issuers]]
issuer = "{}"
audiences = ["reports-api"]
roles_claims = ["groups"]

[[rule]]
path = "/api/private"

[[rule]]
path = "/admin/**"
roles = ["admin"]
"#,
        other.issuer()
    );
    support::config_toml(&main.issuer(), &upstream.url(), &extra)
}

async fn start() -> Two {
    let main = TestIdp::start().await;
    let other = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = support::serve(&toml(&main, &other, &upstream)).await;
    Two {
        main,
        other,
        upstream,
        gw,
    }
}

async fn get(t: &Two, path: &str, token: &str) -> support::RawResponse {
    let auth = format!("Bearer {token}");
    support::get(t.gw.addr, path, &[("Authorization", &auth)]).await
}

#[tokio::test]
async fn each_issuer_judges_its_own_tokens() {
    let t = start().await;
    // The main issuer, as always.
    let main = t
        .main
        .mint(&t.main.claims("svc-main", "gateway", "profile"));
    let r = get(&t, "/api/private", &main).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().header("x-auth-subject"), Some("svc-main"));

    // The other issuer: its audience and its role path.
    let mut claims = t.other.claims("svc-other", "reports-api", "profile");
    claims["groups"] = json!(["admin"]);
    claims["realm_access"] = json!({"roles": ["ignored-here"]});
    let other = t.other.mint(&claims);
    let r = get(&t, "/admin/panel", &other).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().header("x-auth-roles"), Some("admin"));

    let before = t.upstream.count();
    // Each issuer's audiences only.
    let wrong_aud = t
        .other
        .mint(&t.other.claims("svc-other", "gateway", "profile"));
    let r = get(&t, "/api/private", &wrong_aud).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error_description"],
        "the token is not meant for this audience"
    );
    let main_aud_elsewhere = t
        .main
        .mint(&t.main.claims("svc-main", "reports-api", "profile"));
    assert_eq!(
        get(&t, "/api/private", &main_aud_elsewhere).await.status,
        401
    );

    // No fallback: a token that names the other issuer but is signed by the main one's key
    // (both providers call their key "key-1": the other's key does not verify it).
    let mut forged = t.main.claims("svc-x", "reports-api", "profile");
    forged["iss"] = json!(t.other.issuer());
    let r = get(&t, "/api/private", &t.main.mint(&forged)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error_description"],
        "the token's signature is invalid"
    );

    // An issuer that is not configured, and no issuer at all.
    let third = TestIdp::start().await;
    let r = get(
        &t,
        "/api/private",
        &third.mint(&third.claims("svc-3", "gateway", "profile")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error_description"],
        "the token was issued by another issuer"
    );
    let mut no_iss = t.main.claims("svc-main", "gateway", "profile");
    no_iss.as_object_mut().unwrap().remove("iss");
    let r = get(&t, "/api/private", &t.main.mint(&no_iss)).await;
    assert_eq!(
        r.json()["error_description"],
        "the token lacks a required claim"
    );
    assert_eq!(
        t.upstream.count(),
        before,
        "no refusal reached the upstream"
    );
}

#[tokio::test]
async fn readiness_waits_for_every_issuer() {
    let main = TestIdp::start().await;
    let other = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    other.set_available(false);
    let gw = portcullis::server::start(support::load(&toml(&main, &other, &upstream)))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The main issuer's keys arrive; the other's cannot.
    loop {
        let r = support::get(gw.admin_addr, "/readyz", &[]).await;
        assert_eq!(r.status, 503);
        if gw.gateway.jwks.is_ready() {
            assert!(r.body.contains(&other.issuer()), "{}", r.body);
            assert!(!r.body.contains(&main.issuer()), "{}", r.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the main issuer's keys never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.set_available(true);
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
}

#[test]
fn check_names_each_issuer_entry() {
    let toml = support::config_toml(
        "http://127.0.0.1:1/realms/a",
        "http://127.0.0.1:2",
        r#"
[[tokens.issuers]]
audiences = ["x"]

[[tokens.issuers]]
issuer = "http://127.0.0.1:1/realms/a"

[[tokens.issuers]]
issuer = "ftp://127.0.0.1/realms/b"
algorithms = ["HS256"]
roles_claims = ["a..b"]

[[rule]]
path = "/**"
"#,
    );
    let err = portcullis::config::load_figment(figment::Figment::from(
        figment::providers::Toml::string(&toml),
    ))
    .expect_err("invalid");
    let text = err.to_string();
    let unknown = support::config_toml(
        "http://127.0.0.1:1/realms/a",
        "http://127.0.0.1:2",
        "[[tokens.issuers]]\nissuer = \"http://127.0.0.1:1/realms/c\"\nunknown = 1\n",
    );
    let e = portcullis::config::load_figment(figment::Figment::from(
        figment::providers::Toml::string(&unknown),
    ))
    .expect_err("invalid")
    .to_string();
    assert!(e.contains("tokens.issuers[0].unknown: unknown key"), "{e}");
    for needle in [
        "tokens.issuers[0].issuer: missing",
        "tokens.issuers[1].issuer: is oidc.issuer",
        "tokens.issuers[2].issuer: \"ftp://127.0.0.1/realms/b\" is not an http:// or https:// URL",
        "tokens.issuers[2].algorithms[0]: \"HS256\" is never accepted",
        "tokens.issuers[2].roles_claims[0]",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn a_repeated_issuer_is_an_error() {
    let toml = support::config_toml(
        "http://127.0.0.1:1/realms/a",
        "http://127.0.0.1:2",
        r#"
[[tokens.issuers]]
issuer = "http://127.0.0.1:1/realms/c"

[[tokens.issuers]]
issuer = "http://127.0.0.1:1/realms/c"

[[rule]]
path = "/**"
"#,
    );
    let err = portcullis::config::load_figment(figment::Figment::from(
        figment::providers::Toml::string(&toml),
    ))
    .expect_err("invalid")
    .to_string();
    assert!(
        err.contains("tokens.issuers[1].issuer: repeats tokens.issuers[0].issuer"),
        "{err}"
    );
}

#[tokio::test]
async fn explain_uses_the_keys_of_the_issuer_a_token_names() {
    let main = TestIdp::start().await;
    let other = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, toml(&main, &other, &upstream)).unwrap();
    let token = other.mint(&other.claims("svc-other", "reports-api", "profile"));
    let forged = {
        let mut c = main.claims("svc-x", "reports-api", "profile");
        c["iss"] = json!(other.issuer());
        main.mint(&c)
    };
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let run = |token: String| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args(["explain", "-c"])
                .arg(&cfg)
                .args(["GET", "/api/private", "--token", &token])
                .output()
                .unwrap()
        })
    };
    let out = run(token).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{}/protocol/openid-connect/certs", other.issuer())),
        "{stdout}"
    );
    let out = run(forged).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("signature is invalid"), "{stdout}");
}
