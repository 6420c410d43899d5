//! The provider rotates its signing keys under a running gateway: every verification
//! path (ID tokens at the callback and on refresh, bearer tokens) refetches the JWKS for
//! an unknown `kid`, through one shared, rate-limited fetch. `jwks_refresh` is the default
//! five minutes here, so only the unknown-`kid` refetch can make these tests pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::{Algorithm, Header};
use support::{Browser, Harness};

#[tokio::test]
async fn a_login_after_a_rotation_verifies_the_id_token_with_the_new_key() {
    let h = Harness::start().await;
    let fetches = h.idp.jwks_fetches();
    // The old key is gone from the JWKS: the gateway's copy knows only the old kid.
    h.idp.rotate("rotated-1", false).await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    let r = b.navigate("/profile").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    assert_eq!(
        h.idp.jwks_fetches(),
        fetches + 1,
        "one refetch, for the new kid"
    );

    // A second login with the same key needs no fetch.
    let mut b2 = Browser::new(h.addr());
    h.idp.login_as("bob");
    assert_eq!(b2.navigate("/profile").await.status, 200);
    assert_eq!(h.idp.jwks_fetches(), fetches + 1);
}

#[tokio::test]
async fn a_live_session_survives_a_rotation_at_its_next_refresh() {
    let h = Harness::start().await;
    h.idp.set_access_ttl(1);
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    assert_eq!(b.navigate("/profile").await.status, 200);
    h.idp.set_access_ttl(300);
    // The key rotates while alice is signed in; her access token is expiring, so the next
    // request refreshes, and the refreshed ID token is signed by the new key.
    h.idp.rotate("rotated-2", false).await;
    let refreshes = h.idp.refreshes();
    let r = b.navigate("/profile").await;
    assert_eq!(r.status, 200, "the session survived: {}", r.body);
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    assert_eq!(h.idp.refreshes(), refreshes + 1);
    // And it goes on working.
    assert_eq!(b.navigate("/profile").await.status, 200);
    assert_eq!(h.idp.refreshes(), refreshes + 1);
}

#[tokio::test]
async fn a_login_right_after_a_random_kid_fetch_waits_for_the_interval_and_succeeds() {
    let h = Harness::start().await;
    let fetches = h.idp.jwks_fetches();
    // An attacker's token with a random kid uses up the refetch for the next interval.
    let key = h.idp.current_key();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("random-kid".into());
    let forged = h
        .idp
        .mint_with(&header, &h.idp.claims("x", "gateway", ""), &key.encoding);
    assert_eq!(h.get_bearer("/api/private", &forged).await.status, 401);
    assert_eq!(h.idp.jwks_fetches(), fetches + 1);

    // Then the provider rotates, and a user logs in within that interval.
    h.idp.rotate("rotated-3", false).await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    let r = b.navigate("/profile").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    assert_eq!(h.idp.jwks_fetches(), fetches + 2);
    // Bearer tokens with the new key work too, with no further fetch.
    let t = h.token("svc", "");
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
    assert_eq!(h.idp.jwks_fetches(), fetches + 2);
}

#[tokio::test]
async fn random_kids_at_the_callback_cause_no_fetch_storm() {
    let h = Harness::start().await;
    let fetches = h.idp.jwks_fetches();
    // ID tokens whose kid the provider never published: the login fails, and however
    // many try, the JWKS is fetched at most once per interval.
    h.idp.set_id_token_kid(Some("never-published"));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let addr = h.addr();
        tasks.push(tokio::spawn(async move {
            let mut b = Browser::new(addr);
            b.navigate("/profile").await.status
        }));
    }
    h.idp.login_as("alice");
    for t in tasks {
        assert_ne!(t.await.unwrap(), 200);
    }
    assert!(
        h.idp.jwks_fetches() <= fetches + 2,
        "{} fetches",
        h.idp.jwks_fetches() - fetches
    );
}
