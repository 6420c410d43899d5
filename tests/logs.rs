//! Nothing the gateway logs, at any level, contains a token, a cookie value or a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Capture;

use support::{Browser, Harness};

#[tokio::test]
async fn logs_never_contain_tokens_cookies_or_secrets() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // `#[tokio::test]` runs every task on this thread, so the default subscriber sees them
    // (with the shared runtime, the gateway's tasks are this test's tasks).
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::with_edit(support::TUTORIAL_RULES, support::shared_runtime).await;
    let token = h.token("svc", "test_api_access");
    assert_eq!(
        h.get_bearer("/api/private-scoped/x?access_token=leak", &token)
            .await
            .status,
        200
    );
    let mut expired = h.idp.claims("svc", "gateway", "");
    expired["exp"] = serde_json::json!(1);
    let bad = h.idp.mint(&expired);
    assert_eq!(h.get_bearer("/api/private", &bad).await.status, 401);

    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    assert_eq!(b.navigate("/profile").await.status, 200);
    let cookies: Vec<String> = b.jar.values().cloned().collect();
    let r = b
        .request(
            "POST",
            &format!("http://{}/oauth2/logout", h.addr()),
            &[("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, 302);
    let id_token_hint = url::Url::parse(r.header("location").unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "id_token_hint")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("\"target\":\"portcullis::access\""),
        "the access log was captured"
    );
    assert!(logs.contains("/api/private-scoped/x"), "paths are logged");
    let secrets = [
        token.as_str(),
        bad.as_str(),
        id_token_hint.as_str(),
        "access_token=leak",
        "gateway-secret",
        support::SESSION_SECRET,
    ];
    for s in secrets
        .iter()
        .copied()
        .chain(cookies.iter().map(String::as_str))
    {
        // A JWT's signature is its most unique part; a cookie's value likewise.
        let needle = &s[s.len().saturating_sub(24)..];
        assert!(
            !logs.contains(needle),
            "the logs contain a secret ({}...)",
            &s[..s.len().min(12)]
        );
    }
}
