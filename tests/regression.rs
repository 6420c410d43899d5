//! Regression tests, each named after what went wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::Command;

use support::Harness;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const RULES: &str = r#"
[[rule]]
path = "/api/public"
access = "public"

[[rule]]
path = "/items/**"
methods = ["GET", "POST"]
access = "public"

[[rule]]
path = "/items/**"
roles = ["admin"]
"#;

/// `portcullis explain` on the same configuration as the running harness: exit code and
/// the decision line.
async fn explain(h: &Harness, args: &[&str]) -> (i32, String) {
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), RULES);
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    let path = f.path().to_str().unwrap().to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new(BIN);
        c.args(["explain", "-c", &path]).args(&args);
        c.env_remove("PORTCULLIS_CONFIG");
        c.output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let decision = stdout
        .lines()
        .find(|l| l.starts_with("decision:"))
        .unwrap_or_default()
        .to_owned();
    (out.status.code().unwrap_or(-1), decision)
}

// explain said 401 for an invalid bearer token on a public rule, which serve forwards.
#[tokio::test]
async fn explain_ignores_a_refused_token_on_a_public_rule_as_serve_does() {
    let h = Harness::with(RULES).await;
    let forged = {
        let t = h.token("svc", "");
        let (rest, _) = t.rsplit_once('.').unwrap();
        format!("{rest}.AAAA")
    };
    assert_eq!(h.get_bearer("/api/public", &forged).await.status, 200);
    let (code, decision) = explain(&h, &["GET", "/api/public", "--token", &forged]).await;
    assert_eq!((code, decision.as_str()), (0, "decision: allow (public)"));
}

// explain allowed `GET /items/1?%5Fmethod=DELETE` as a GET; serve judges it as DELETE too.
#[tokio::test]
async fn explain_judges_an_encoded_method_override_as_serve_does() {
    let h = Harness::with(RULES).await;
    for q in ["%5Fmethod=DELETE", "_METHOD=delete", "_method[]=PUT"] {
        let target = format!("/items/1?{q}");
        assert_eq!(h.get(&target, &[]).await.status, 401, "{q}");
        let (code, decision) = explain(&h, &["GET", &target]).await;
        assert_eq!(code, 3, "{q}: {decision}");
        assert!(
            decision.starts_with("decision: deny (unauthenticated, 401)"),
            "{q}: {decision}"
        );
    }
}

// explain said 403 for `?_method=a%20b`; serve answers 400.
#[tokio::test]
async fn explain_refuses_an_unreadable_method_override_as_serve_does() {
    let h = Harness::with(RULES).await;
    assert_eq!(h.get("/items/1?_method=a%20b", &[]).await.status, 400);
    let (code, decision) = explain(&h, &["GET", "/items/1?_method=a%20b"]).await;
    assert_eq!(code, 3);
    assert!(
        decision.starts_with("decision: deny (bad_request, 400)"),
        "{decision}"
    );
}
