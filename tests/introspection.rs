//! Opaque access tokens judged by the provider's introspection endpoint (RFC 7662): what
//! an answer must be (§2.2), what its claims give the rules and the upstream, the cache
//! (one call per token, also for a burst), and an endpoint that fails or is unreachable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use portcullis::testing::now;
use serde_json::{json, Value};
use support::Harness;

const INTROSPECTION: &str = "introspection = true\nintrospection_ttl = \"60s\"\n";

async fn harness() -> Harness {
    Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replace("[tokens]\n", &format!("[tokens]\n{INTROSPECTION}"))
    })
    .await
}

fn active(scope: &str) -> Value {
    json!({
        "active": true,
        "sub": "svc-opaque",
        "username": "reporting",
        "aud": ["gateway", "other"],
        "scope": scope,
        "exp": now() + 300,
        "realm_access": {"roles": ["reader"]},
        "client_id": "reporting-client",
    })
}

#[tokio::test]
async fn an_active_opaque_token_feeds_rules_and_headers() {
    let h = harness().await;
    h.idp
        .set_introspection("opaque-1", active("profile test_api_access"));
    let r = h.get_bearer("/api/private-scoped/a", "opaque-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.seen();
    assert_eq!(seen.header("x-auth-subject"), Some("svc-opaque"));
    assert_eq!(seen.header("x-auth-user"), Some("reporting"));
    assert_eq!(seen.header("x-auth-roles"), Some("reader"));
    assert_eq!(
        seen.header("x-auth-scopes"),
        Some("profile test_api_access")
    );
    assert_eq!(seen.header("authorization"), Some("Bearer opaque-1"));

    // Scope and role rules judge it as they judge a JWT.
    h.idp.set_introspection("opaque-2", active("profile"));
    let r = h.get_bearer("/api/private-scoped/a", "opaque-2").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "insufficient_scope");
    let r = h.get_bearer("/admin/x", "opaque-2").await;
    assert_eq!(r.status, 403);

    // A JWT is never introspected.
    let calls = h.idp.introspections();
    let jwt = h.token("svc-1", "profile");
    assert_eq!(h.get_bearer("/api/private", &jwt).await.status, 200);
    assert_eq!(h.idp.introspections(), calls);
}

#[tokio::test]
async fn every_refusal_of_rfc_7662() {
    let h = harness().await;
    let base = active("profile");
    let with = |k: &str, v: Value| {
        let mut a = base.clone();
        a[k] = v;
        a
    };
    let mut no_aud = base.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let cases = [
        ("unknown to the provider", None, "the token is not active"),
        (
            "inactive",
            Some(json!({"active": false})),
            "the token is not active",
        ),
        (
            "inactive with claims",
            Some(with("active", json!(false))),
            "the token is not active",
        ),
        (
            "active as a string",
            Some(with("active", json!("true"))),
            "the token could not be introspected",
        ),
        (
            "no active",
            Some({
                let mut a = base.clone();
                a.as_object_mut().unwrap().remove("active");
                a
            }),
            "the token could not be introspected",
        ),
        (
            "expired",
            Some(with("exp", json!(now() - 120))),
            "the token has expired",
        ),
        (
            "not yet valid",
            Some(with("nbf", json!(now() + 3600))),
            "the token is not valid yet",
        ),
        (
            "other issuer",
            Some(with("iss", json!("http://elsewhere/realms/x"))),
            "the token was issued by another issuer",
        ),
        (
            "other audience",
            Some(with("aud", json!("someone-else"))),
            "the token is not meant for this audience",
        ),
        (
            "no audience",
            Some(no_aud),
            "the token lacks a required claim",
        ),
        (
            "a refresh token",
            Some(with("token_type", json!("refresh_token"))),
            "an ID or refresh token is not an access token",
        ),
        (
            "exp as a string",
            Some(with("exp", json!("tomorrow"))),
            "a claim of the token has the wrong type",
        ),
    ];
    let before = h.upstream.count();
    for (i, (what, answer, desc)) in cases.iter().enumerate() {
        let token = format!("opaque-case-{i}");
        if let Some(a) = answer {
            h.idp.set_introspection(&token, a.clone());
        }
        let r = h.get_bearer("/api/private", &token).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                format!(
                    "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{desc}\""
                )
                .as_str()
            ),
            "{what}"
        );
    }
    assert_eq!(
        h.upstream.count(),
        before,
        "no refusal reached the upstream"
    );

    // An answer that is not JSON, or has a key twice.
    for body in [
        "not json",
        r#"{"active": true, "active": false, "aud": "gateway"}"#,
    ] {
        h.idp.set_introspection_failure(Some((200, body)));
        let r = h
            .get_bearer("/api/private", &format!("garbled-{}", body.len()))
            .await;
        assert_eq!(r.status, 401, "{body}");
        assert_eq!(
            r.json()["error_description"],
            "the token could not be introspected"
        );
    }
    // The provider refuses the gateway (its credentials): 401, and logged.
    h.idp
        .set_introspection_failure(Some((401, r#"{"error":"invalid_client"}"#)));
    let r = h.get_bearer("/api/private", "refused-client").await;
    assert_eq!(r.status, 401);
    // The endpoint fails: 503, never a silent 401.
    h.idp.set_introspection_failure(Some((500, "{}")));
    let r = h.get_bearer("/api/private", "server-error").await;
    assert_eq!(r.status, 503, "{}", r.body);
    h.idp.set_introspection_failure(None);
    h.idp.set_available(false);
    let r = h.get_bearer("/api/private", "provider-down").await;
    assert_eq!(r.status, 503, "{}", r.body);
    h.idp.set_available(true);
    // A public rule is unaffected by an introspection outage.
    h.idp.set_introspection_failure(Some((500, "{}")));
    assert_eq!(h.get_bearer("/api/public", "down-again").await.status, 200);
    h.idp.set_introspection_failure(None);
    assert_eq!(h.upstream.count(), before + 1);
}

#[tokio::test]
async fn answers_are_cached_and_a_burst_makes_one_call() {
    let h = harness().await;
    h.idp.set_introspection("burst", active("profile"));
    let calls = h.idp.introspections();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let addr = h.addr();
        tasks.push(tokio::spawn(async move {
            support::get(addr, "/api/private", &[("Authorization", "Bearer burst")])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        h.idp.introspections(),
        calls + 1,
        "one call for a burst of one token"
    );
    assert_eq!(h.get_bearer("/api/private", "burst").await.status, 200);
    assert_eq!(
        h.idp.introspections(),
        calls + 1,
        "then answered from the cache"
    );

    // Inactive answers are cached too (an inactive token never becomes active).
    assert_eq!(
        h.get_bearer("/api/private", "never-issued").await.status,
        401
    );
    assert_eq!(
        h.get_bearer("/api/private", "never-issued").await.status,
        401
    );
    assert_eq!(h.idp.introspections(), calls + 2);

    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("portcullis_introspections_total{result=\"active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_introspections_total{result=\"inactive\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_introspections_total{result=\"hit\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_cache_never_outlives_the_token() {
    let h = harness().await;
    let mut answer = active("profile");
    answer["exp"] = json!(now() + 1);
    h.idp.set_introspection("short", answer);
    assert_eq!(h.get_bearer("/api/private", "short").await.status, 200);
    let calls = h.idp.introspections();
    // Past its exp plus the leeway (30 s) the token is refused; before, the cache ends at
    // exp, so the provider is asked again once exp has passed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.idp.introspections() == calls {
        assert!(
            std::time::Instant::now() < deadline,
            "the cached answer outlived exp"
        );
        h.get_bearer("/api/private", "short").await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_introspection_an_opaque_token_is_malformed() {
    let h = Harness::start().await;
    h.idp.set_introspection("opaque-1", active("profile"));
    let r = h.get_bearer("/api/private", "opaque-1").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "the token is malformed");
    assert_eq!(h.idp.introspections(), 0);
}

#[tokio::test]
async fn an_introspected_dpop_bound_token_is_not_a_bearer_token() {
    let h = harness().await;
    let mut answer = active("profile");
    answer["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    h.idp.set_introspection("bound-opaque", answer);
    let r = h.get_bearer("/api/private", "bound-opaque").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error_description"],
        "a DPoP-bound token must be sent with the DPoP scheme and a proof"
    );
}
