//! Step-up authentication (RFC 9470, contract §9): rules with `acr` and `max_age`, against
//! the in-process provider, which models levels of assurance as a Keycloak realm does
//! (password = `silver`, password + OTP = `gold`; a provider session reused until a
//! stronger level or a more recent login is asked for).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::{Browser, Harness};

const RULES: &str = r#"
[[rule]]
path = "/profile"

[[rule]]
path = "/admin/**"
roles = ["admin"]
acr = ["gold"]

[[rule]]
path = "/recent/**"
max_age = "5m"

[[rule]]
path = "/api/admin"
acr = ["gold"]
login = "deny"

[[rule]]
path = "/**"
"#;

async fn harness() -> Harness {
    Harness::with(RULES).await
}

/// What the step-up rules see of a token or session: its `acr` and `auth_time`.
fn challenge(r: &support::RawResponse) -> String {
    r.header("www-authenticate")
        .unwrap_or_else(|| panic!("no challenge: {} {}", r.status, r.body))
        .to_owned()
}

#[tokio::test]
async fn a_password_login_reaches_profile_and_only_admin_asks_for_the_second_factor() {
    let h = harness().await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    let r = b.navigate("/profile").await;
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    assert_eq!(
        h.idp.step_up_requests(),
        vec![(None, None)],
        "a page without acr asks for no level"
    );
    let weak = b.jar.clone();

    let r = b.navigate("/admin/users?page=2").await;
    assert_eq!(b.visited.len(), 4, "{:?}", b.visited);
    assert!(
        b.visited[1].contains("acr_values=gold"),
        "the provider is asked for the rule's level: {}",
        b.visited[1]
    );
    assert!(!b.visited[1].contains("max_age"), "{}", b.visited[1]);
    let seen = r.seen();
    assert_eq!(
        seen.target, "/admin/users?page=2",
        "back to the same path and query"
    );
    assert_eq!(seen.header("x-auth-user"), Some("alice"));

    // The stronger session serves both pages without another trip to the provider.
    for path in ["/admin/users", "/profile"] {
        let r = b.navigate(path).await;
        assert_eq!(b.visited.len(), 1, "{path}: {:?}", b.visited);
        assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    }
    assert_eq!(h.idp.step_up_requests().len(), 2);

    // The weaker session it replaced is over: its cookie no longer signs anyone in.
    let mut old = Browser::new(h.addr());
    old.jar = weak;
    let before = h.upstream.count();
    let r = old.api_get("/profile").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(h.upstream.count(), before);

    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("portcullis_step_ups_total{result=\"started\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portcullis_step_ups_total{result=\"completed\"} 1"));
}

#[tokio::test]
async fn a_user_who_cannot_reach_the_level_gets_a_page_not_a_loop_of_logins() {
    let h = harness().await;
    h.idp.set_user(
        "carol",
        json!({"preferred_username": "carol", "resource_access": {"gateway": {"roles": ["admin"]}}}),
    );
    h.idp.set_acr_ceiling("carol", "silver");
    h.idp.login_as("carol");
    let mut b = Browser::new(h.addr());
    let before = h.upstream.count();
    let r = b.navigate("/admin/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("did not confirm the sign-in"), "{}", r.body);
    assert_eq!(
        b.visited.len(),
        3,
        "one trip to the provider: {:?}",
        b.visited
    );
    assert_eq!(h.upstream.count(), before, "the page was never reached");
    // She is signed in, at the level she has.
    let r = b.navigate("/profile").await;
    assert_eq!(r.seen().header("x-auth-user"), Some("carol"));
    assert_eq!(b.visited.len(), 1);
    // Asking again is one more trip, answered the same way.
    let r = b.navigate("/admin/").await;
    assert_eq!(r.status, 403);
    assert_eq!(h.idp.step_up_requests().len(), 2);
    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("portcullis_step_ups_total{result=\"refused\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_role_the_user_lacks_is_a_403_before_any_step_up() {
    let h = harness().await;
    h.idp.login_as("bob");
    let mut b = Browser::new(h.addr());
    b.navigate("/profile").await.seen();
    let r = b.navigate("/admin/").await;
    assert_eq!(r.status, 403);
    assert_eq!(b.visited.len(), 1, "no login for a page bob may never see");
    assert_eq!(h.idp.step_up_requests().len(), 1);
}

#[tokio::test]
async fn max_age_sends_an_old_login_back_to_the_provider() {
    let h = harness().await;
    h.idp.login_as("alice");
    // A provider session that began ten minutes ago, reused by a new gateway session.
    Browser::new(h.addr()).navigate("/profile").await.seen();
    h.idp.age_sso_session("alice", 600);
    let mut b = Browser::new(h.addr());
    b.navigate("/profile").await.seen();

    let r = b.navigate("/recent/report").await;
    assert!(
        b.visited[1].contains("max_age=300"),
        "the rule's max_age in seconds: {:?}",
        b.visited
    );
    assert!(!b.visited[1].contains("acr_values"), "{}", b.visited[1]);
    assert_eq!(r.seen().target, "/recent/report");
    let r = b.navigate("/recent/report").await;
    assert_eq!(b.visited.len(), 1, "the new login is recent enough");
    r.seen();
}

#[tokio::test]
async fn the_login_endpoint_asks_for_the_level_of_the_page_it_returns_to() {
    let h = harness().await;
    let r = h.get("/oauth2/login?rd=/admin/x%3Fq%3D1", &[]).await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(loc.contains("acr_values=gold"), "{loc}");
    let r = h.get("/oauth2/login?rd=/profile", &[]).await;
    assert!(!r.header("location").unwrap().contains("acr_values"));
}

#[tokio::test]
async fn a_bearer_token_below_the_level_gets_the_rfc_9470_challenge() {
    let h = harness().await;
    let token = |extra: serde_json::Value| {
        let mut c = h.idp.claims("svc", "gateway", "openid");
        c["resource_access"] = json!({"gateway": {"roles": ["admin"]}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        h.idp.mint(&c)
    };
    let before = h.upstream.count();
    for t in [
        token(json!({"acr": "silver"})),
        token(json!({})),
        token(json!({"acr": ["gold"]})),
        token(json!({"acr": "GOLD"})),
    ] {
        let r = h
            .get(
                "/admin/x",
                &[
                    ("Authorization", &format!("Bearer {t}")),
                    ("Accept", "text/html"),
                ],
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
        let w = challenge(&r);
        assert!(w.starts_with("Bearer realm=\"portcullis\""), "{w}");
        assert!(
            w.contains("error=\"insufficient_user_authentication\""),
            "{w}"
        );
        assert!(w.contains("acr_values=\"gold\""), "{w}");
        assert!(!w.contains("max_age"), "{w}");
        assert_eq!(r.json()["error"], "insufficient_user_authentication");
    }
    assert_eq!(h.upstream.count(), before, "no denial reaches the upstream");
    let r = h
        .get_bearer("/admin/x", &token(json!({"acr": "gold"})))
        .await;
    assert_eq!(r.seen().header("x-auth-subject"), Some("svc"));

    let now = portcullis::testing::now();
    for (t, why) in [
        (token(json!({"auth_time": now - 301})), "too old"),
        (token(json!({})), "no auth_time"),
        (token(json!({"auth_time": "recent"})), "not a number"),
    ] {
        let r = h.get_bearer("/recent/x", &t).await;
        assert_eq!(r.status, 401, "{why}: {}", r.body);
        let w = challenge(&r);
        assert!(
            w.contains("error=\"insufficient_user_authentication\"")
                && w.contains("max_age=\"300\""),
            "{why}: {w}"
        );
        assert!(!w.contains("acr_values"), "{w}");
    }
    let r = h
        .get_bearer("/recent/x", &token(json!({"auth_time": now - 30})))
        .await;
    r.seen();
}

#[tokio::test]
async fn a_weak_session_on_a_rule_that_denies_logins_gets_the_challenge() {
    let h = harness().await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    b.navigate("/profile").await.seen();
    let before = h.upstream.count();
    let r = b.navigate("/api/admin").await;
    assert_eq!(b.visited.len(), 1, "no login: {:?}", b.visited);
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("acr_values=\"gold\""));
    // Not a browser navigation either: no login, the same answer.
    let r = b
        .request(
            "GET",
            &format!("http://{}/admin/x", h.addr()),
            &[("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("insufficient_user_authentication"));
    assert_eq!(h.upstream.count(), before);
}

#[tokio::test]
async fn a_step_up_with_the_redis_store_deletes_the_weaker_session() {
    let redis = support::redis::Redis::start();
    let h = Harness::with_edit(RULES, |t| redis.store_in(&t)).await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    b.navigate("/profile").await.seen();
    let weak = b.jar.clone();
    let keys = |r: &support::redis::Redis| {
        r.dump()
            .into_iter()
            .filter(|(k, _, _)| k.contains(":s:"))
            .count()
    };
    assert_eq!(keys(&redis), 1, "{:?}", redis.dump());
    b.navigate("/admin/").await.seen();
    assert_eq!(
        keys(&redis),
        1,
        "the weaker session is gone: {:?}",
        redis.dump()
    );
    let mut old = Browser::new(h.addr());
    old.jar = weak;
    let r = old.api_get("/profile").await;
    assert_eq!(r.status, 401);
}

#[test]
fn step_up_settings_are_checked_with_their_key() {
    let errors = |rule: &str| {
        let toml = support::config_toml(
            "http://127.0.0.1:1/realms/test",
            "http://127.0.0.1:2",
            &format!("[[rule]]\n{rule}\n"),
        );
        match portcullis::config::load_figment(figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&toml),
        )) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let cases = [
        (
            "path = \"/a\"\naccess = \"public\"\nacr = [\"gold\"]",
            "rule[0].acr",
        ),
        (
            "path = \"/a\"\naccess = \"public\"\nmax_age = \"5m\"",
            "rule[0].max_age",
        ),
        ("path = \"/a\"\nmax_age = \"soon\"", "rule[0].max_age"),
        ("path = \"/a\"\nmax_age = \"2s\"", "rule[0].max_age"),
        ("path = \"/a\"\nacr = [\"go\\\"ld\"]", "rule[0].acr[0]"),
        ("path = \"/a\"\nacr = [\"\"]", "rule[0].acr[0]"),
    ];
    for (rule, key) in cases {
        let e = errors(rule);
        assert!(e.contains(key), "{rule}: {e}");
    }
    assert_eq!(
        errors("path = \"/a\"\nacr = [\"gold\", \"urn:x:2\"]\nmax_age = \"10m\""),
        ""
    );
}
