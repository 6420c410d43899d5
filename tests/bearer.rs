//! Bearer-token validation end to end: the tutorial's resource-server endpoints, every way
//! a token can be wrong, key rotation and provider outages. A denied request must never
//! reach the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::testing::idp::{unsigned_token, SigningKey};
use portcullis::testing::now;
use serde_json::json;
use support::Harness;

const REALM: &str = "Bearer realm=\"portcullis\"";

fn assert_invalid_token(r: &support::RawResponse, desc: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    let www = r.header("www-authenticate").expect("WWW-Authenticate");
    assert_eq!(
        www,
        format!("{REALM}, error=\"invalid_token\", error_description=\"{desc}\"")
    );
    assert_eq!(r.json()["error"], "invalid_token");
    assert_eq!(r.json()["error_description"], desc);
}

#[tokio::test]
async fn tutorial_endpoints() {
    let h = Harness::start().await;
    let plain = h.token("svc-1", "profile email");
    let scoped = h.token("svc-1", "profile test_api_access");

    // Public: open with and without a token.
    let r = h.get("/api/public", &[]).await;
    assert_eq!(r.seen().target, "/api/public");
    assert_eq!(r.seen().header("x-auth-subject"), None);
    let r = h.get_bearer("/api/public", &plain).await;
    assert_eq!(
        r.seen().header("x-auth-subject"),
        Some("svc-1"),
        "public rules still get identity headers"
    );

    // Private: any valid token.
    let before = h.upstream.count();
    let r = h.get("/api/private", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(REALM));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        h.upstream.count(),
        before,
        "a denial never reaches the upstream"
    );
    let r = h.get_bearer("/api/private", &plain).await;
    let seen = r.seen();
    assert_eq!(seen.header("x-auth-subject"), Some("svc-1"));
    assert_eq!(seen.header("x-auth-user"), Some("svc-1"));
    assert_eq!(seen.header("x-auth-scopes"), Some("email profile"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {plain}").as_str()),
        "passed on unchanged"
    );

    // Scoped: needs test_api_access.
    let before = h.upstream.count();
    let r = h.get_bearer("/api/private-scoped", &plain).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"test_api_access\""
        )
    );
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert_eq!(h.upstream.count(), before);
    let r = h.get_bearer("/api/private-scoped", &scoped).await;
    assert_eq!(r.seen().target, "/api/private-scoped");
    let r = h
        .get_bearer("/api/private-scoped/items?page=2&x=%2F", &scoped)
        .await;
    assert_eq!(
        r.seen().target,
        "/api/private-scoped/items?page=2&x=%2F",
        "query untouched"
    );

    // Two scopes: all required.
    let r = h.get_bearer("/api/two-scopes", &scoped).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"test_api_access write\"")
    );
    let both = h.token("svc-1", "write test_api_access");
    assert_eq!(h.get_bearer("/api/two-scopes", &both).await.status, 200);
    // `scp` works too.
    let mut c = h.idp.claims("svc-2", "gateway", "");
    c["scp"] = json!(["test_api_access", "write"]);
    assert_eq!(
        h.get_bearer("/api/two-scopes", &h.idp.mint(&c))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn roles_come_from_keycloak_claims() {
    let h = Harness::start().await;
    let mut c = h.idp.claims("alice-id", "gateway", "openid");
    c["preferred_username"] = json!("alice");
    c["email"] = json!("alice@example.com");
    c["realm_access"] = json!({"roles": ["user", "offline_access"]});
    c["resource_access"] =
        json!({"gateway": {"roles": ["admin", "user"]}, "other": {"roles": ["admin2"]}});
    let alice = h.idp.mint(&c);
    let seen = h.get_bearer("/admin/users", &alice).await.seen();
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(seen.header("x-auth-email"), Some("alice@example.com"));
    assert_eq!(
        seen.header("x-auth-roles"),
        Some("admin,offline_access,user")
    );

    let mut c = h.idp.claims("bob-id", "gateway", "openid");
    c["resource_access"] = json!({"gateway": {"roles": ["user"]}, "other": {"roles": ["admin"]}});
    let before = h.upstream.count();
    let r = h.get_bearer("/admin/users", &h.idp.mint(&c)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "access_denied");
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(h.upstream.count(), before);
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused() {
    let h = Harness::start().await;
    let before = h.upstream.count();
    let t = now();
    let base = h.idp.claims("svc", "gateway", "test_api_access");

    let mut expired = base.clone();
    expired["exp"] = json!(t - 120);
    assert_invalid_token(
        &h.get_bearer("/api/private", &h.idp.mint(&expired)).await,
        "the token has expired",
    );

    // Within the 30 s leeway an expired token still passes.
    let mut barely = base.clone();
    barely["exp"] = json!(t - 5);
    assert_eq!(
        h.get_bearer("/api/private", &h.idp.mint(&barely))
            .await
            .status,
        200
    );

    let mut future = base.clone();
    future["nbf"] = json!(t + 600);
    assert_invalid_token(
        &h.get_bearer("/api/private", &h.idp.mint(&future)).await,
        "the token is not valid yet",
    );

    let mut issuer = base.clone();
    issuer["iss"] = json!("http://127.0.0.1:1/realms/other");
    assert_invalid_token(
        &h.get_bearer("/api/private", &h.idp.mint(&issuer)).await,
        "the token was issued by another issuer",
    );

    let mut aud = base.clone();
    aud["aud"] = json!(["account", "other"]);
    assert_invalid_token(
        &h.get_bearer("/api/private", &h.idp.mint(&aud)).await,
        "the token is not meant for this audience",
    );
    let mut aud_list = base.clone();
    aud_list["aud"] = json!(["account", "gateway"]);
    assert_eq!(
        h.get_bearer("/api/private", &h.idp.mint(&aud_list))
            .await
            .status,
        200
    );

    let mut no_exp = base.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(
        &h.get_bearer("/api/private", &h.idp.mint(&no_exp)).await,
        "the token lacks a required claim",
    );

    // Signed by another key that claims the provider's kid.
    let forger = tokio::task::spawn_blocking(|| SigningKey::generate("key-1"))
        .await
        .unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-1".into());
    let forged = h.idp.mint_with(&header, &base, &forger.encoding);
    assert_invalid_token(
        &h.get_bearer("/api/private", &forged).await,
        "the token's signature is invalid",
    );

    // A tampered payload.
    let good = h.idp.mint(&base);
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = base.clone();
    evil["sub"] = json!("admin");
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(evil.to_string());
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert_invalid_token(
        &h.get_bearer("/api/private", &tampered).await,
        "the token's signature is invalid",
    );

    // alg: none.
    assert_invalid_token(
        &h.get_bearer("/api/private", &unsigned_token(&base)).await,
        "the token's signing algorithm is not accepted",
    );

    // HS256 "signed" with the provider's public key.
    let key = h.idp.current_key();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let confused = h.idp.mint_with(
        &hs,
        &base,
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    );
    assert_invalid_token(
        &h.get_bearer("/api/private", &confused).await,
        "the token's signing algorithm is not accepted",
    );

    // RS384 is not on the default allow-list.
    let mut rs384 = Header::new(Algorithm::RS384);
    rs384.kid = Some(key.kid.clone());
    let t384 = h.idp.mint_with(&rs384, &base, &key.encoding);
    assert_invalid_token(
        &h.get_bearer("/api/private", &t384).await,
        "the token's signing algorithm is not accepted",
    );

    // Unknown kid.
    let mut unknown = Header::new(Algorithm::RS256);
    unknown.kid = Some("no-such-key".into());
    let t = h.idp.mint_with(&unknown, &base, &key.encoding);
    assert_invalid_token(
        &h.get_bearer("/api/private", &t).await,
        "the token was signed by an unknown key",
    );

    // An ID token (Keycloak marks them typ "ID").
    let mut id = base.clone();
    id["typ"] = json!("ID");
    assert_invalid_token(
        &h.get_bearer("/api/private", &h.idp.mint(&id)).await,
        "an ID or refresh token is not an access token",
    );

    // A JOSE typ other than JWT / at+jwt.
    let mut typed = Header::new(Algorithm::RS256);
    typed.kid = Some(key.kid.clone());
    typed.typ = Some("logout+jwt".into());
    let t = h.idp.mint_with(&typed, &base, &key.encoding);
    assert_invalid_token(
        &h.get_bearer("/api/private", &t).await,
        "the token's type is not an access token",
    );
    let mut at = Header::new(Algorithm::RS256);
    at.kid = Some(key.kid.clone());
    at.typ = Some("at+jwt".into());
    assert_eq!(
        h.get_bearer("/api/private", &h.idp.mint_with(&at, &base, &key.encoding))
            .await
            .status,
        200
    );

    // Garbage.
    for junk in ["", "abc", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA"] {
        let r = h
            .get(
                "/api/private",
                &[("Authorization", &format!("Bearer {junk}"))],
            )
            .await;
        assert_eq!(r.status, 401, "{junk:?}: {}", r.body);
    }

    // Three accepted above went through; nothing refused did.
    assert_eq!(h.upstream.count(), before + 3);
}

#[tokio::test]
async fn an_invalid_bearer_on_a_public_rule_is_forwarded_without_identity() {
    let h = Harness::start().await;
    let mut c = h.idp.claims("svc", "gateway", "");
    c["exp"] = json!(now() - 3600);
    let r = h.get_bearer("/api/public", &h.idp.mint(&c)).await;
    assert_eq!(r.seen().header("x-auth-subject"), None);
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request() {
    let h = Harness::start().await;
    let t = h.token("svc", "");
    let auth = format!("Bearer {t}");
    let r = h
        .get(
            "/api/private",
            &[("Authorization", &auth), ("Authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_random_kids_cause_no_fetch_storm() {
    let h = Harness::start().await;
    let fetches_at_start = h.idp.jwks_fetches();
    assert!(fetches_at_start >= 1);

    // The provider rotates: tokens signed by the new key work without a restart.
    h.idp.rotate("key-2", false).await;
    let t = h.token("svc", "");
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
    assert_eq!(h.idp.jwks_fetches(), fetches_at_start + 1);

    // A burst of tokens with random kids: at most one more fetch in the refetch interval.
    let key = h.idp.current_key();
    let claims = h.idp.claims("svc", "gateway", "");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("random-{i}"));
        let token = h.idp.mint_with(&header, &claims, &key.encoding);
        let addr = h.addr();
        tasks.push(tokio::spawn(async move {
            support::get(
                addr,
                "/api/private",
                &[("Authorization", &format!("Bearer {token}"))],
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert!(
        h.idp.jwks_fetches() <= fetches_at_start + 2,
        "random kids caused {} fetches",
        h.idp.jwks_fetches() - fetches_at_start
    );
    // The good key still works.
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
}

/// RFC 7518 §3.3: RSA keys of at least 2048 bits. A provider that publishes a shorter
/// one gets its tokens refused with the usual answer for a bad signature, not a crash.
#[tokio::test]
async fn a_token_signed_by_an_rsa_key_under_2048_bits_is_an_invalid_token() {
    let h = Harness::start().await;
    let good = h.token("svc", "");
    let weak = tokio::task::spawn_blocking(|| SigningKey::generate_bits("weak", 1024))
        .await
        .unwrap();
    let weak = h.idp.publish(weak, true);
    assert_eq!(weak.jwk["kid"], "weak");
    let before = h.upstream.count();
    let t = h.token("svc", "");
    assert_invalid_token(
        &h.get_bearer("/api/private", &t).await,
        "the token's signature is invalid",
    );
    // Again, now that the key is in the gateway's set (the first try fetched it).
    assert_invalid_token(
        &h.get_bearer("/api/private", &t).await,
        "the token's signature is invalid",
    );
    assert_eq!(h.upstream.count(), before, "never forwarded");
    // The gateway is fine, and the provider's 2048-bit key still works.
    assert_eq!(h.get_bearer("/api/private", &good).await.status, 200);
}

#[tokio::test]
async fn keys_survive_a_failed_refresh() {
    let h = Harness::start().await;
    let t = h.token("svc", "");
    h.idp.set_available(false);
    h.gw.gateway
        .jwks
        .refresh()
        .await
        .expect_err("the provider is down");
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
    assert_eq!(
        support::get(h.gw.admin_addr, "/readyz", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn provider_down_at_start_means_503_until_it_comes_back() {
    let idp = portcullis::testing::TestIdp::start().await;
    let upstream = portcullis::testing::EchoUpstream::start().await;
    idp.set_available(false);
    let toml = support::config_toml(&idp.issuer(), &upstream.url(), support::TUTORIAL_RULES);
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts without the provider");
    let t = idp.mint(&idp.claims("svc", "gateway", ""));

    assert_eq!(
        support::get(gw.admin_addr, "/healthz", &[]).await.status,
        200
    );
    assert_eq!(
        support::get(gw.admin_addr, "/readyz", &[]).await.status,
        503
    );
    let r = support::get(
        gw.addr,
        "/api/private",
        &[("Authorization", &format!("Bearer {t}"))],
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    // Public routes still work.
    assert_eq!(support::get(gw.addr, "/api/public", &[]).await.status, 200);
    assert_eq!(upstream.count(), 1);

    idp.set_available(true);
    let h = Harness { idp, upstream, gw };
    h.wait_ready().await;
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
}

#[tokio::test]
async fn verified_tokens_are_cached_but_never_beyond_their_expiry() {
    let h = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replace("[tokens]\n", "[tokens]\nleeway = \"1s\"\n")
    })
    .await;
    let mut c = h.idp.claims("svc", "gateway", "");
    c["exp"] = json!(now() + 2);
    let t = h.idp.mint(&c);
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
    let m = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        m.contains("portcullis_token_cache_total{result=\"hit\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_token_cache_total{result=\"miss\"} 1"),
        "{m}"
    );
    // Past exp + leeway the cached entry is not used: the token is refused.
    let exp = c["exp"].as_u64().unwrap();
    while now() <= exp + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = h.get_bearer("/api/private", &t).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error_description"], "the token has expired");
}
