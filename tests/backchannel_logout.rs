//! OpenID Connect Back-Channel Logout at `POST /oauth2/backchannel-logout`: a logout token
//! from the provider ends the sessions of its `sid` (or, with only `sub`, of its subject);
//! every malformed, forged, stale or replayed one is a 400 that ends nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::testing::idp::{unsigned_token, SigningKey};
use portcullis::testing::now;
use serde_json::{json, Map, Value};
use support::{Browser, Harness, RawResponse};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const FORM: &str = "application/x-www-form-urlencoded";

/// A browser logged in as `user` (a new provider session, so a new `sid`), and that `sid`.
async fn logged_in(h: &Harness, user: &str) -> (Browser, String) {
    h.idp.login_as(user);
    let mut b = Browser::new(h.addr());
    let r = b.navigate("/profile").await;
    assert_eq!(r.seen().header("x-auth-user"), Some(user));
    let sid = h.idp.last_sid().expect("the provider made a session");
    (b, sid)
}

async fn post(h: &Harness, content_type: Option<&str>, body: &str) -> RawResponse {
    let mut req = format!(
        "POST /oauth2/backchannel-logout HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        h.addr(),
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    support::raw(h.addr(), req.as_bytes()).await
}

/// Posts a logout token the way a provider does.
async fn send(h: &Harness, token: &str) -> RawResponse {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish();
    post(h, Some(FORM), &body).await
}

fn assert_accepted(r: &RawResponse) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.body, "");
}

/// A 400 `invalid_request` whose description contains `why`.
fn assert_refused(r: &RawResponse, why: &str, token: Option<&str>) {
    assert_eq!(r.status, 400, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.contains(why)),
        "expected {why:?}: {v}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    if let Some(t) = token {
        assert!(!r.body.contains(t), "the token is never echoed");
    }
}

async fn request(b: &mut Browser, path: &str, accept: &str) -> RawResponse {
    let url = format!("http://{}{path}", b.gateway);
    b.request("GET", &url, &[("Accept", accept)]).await
}

/// The session still serves requests.
async fn assert_signed_in(b: &mut Browser, user: &str) {
    let r = request(b, "/profile", "application/json").await;
    assert_eq!(r.seen().header("x-auth-user"), Some(user));
    let info = request(b, "/oauth2/userinfo", "application/json").await;
    assert_eq!(info.status, 200, "{}", info.body);
}

/// The session is over: no identity for userinfo (and its cookies are cleared), a 302 to
/// the provider for a browser navigation, a 401 for an API client, also when the same
/// cookies are sent again.
async fn assert_ended(b: &mut Browser) {
    let jar = b.jar.clone();
    assert!(jar.contains_key("portcullis"), "{jar:?}");
    let info = request(b, "/oauth2/userinfo", "application/json").await;
    assert_eq!(info.status, 401, "{}", info.body);
    assert!(
        !b.jar.contains_key("portcullis"),
        "the cookies are cleared: {:?}",
        b.jar
    );
    b.jar = jar.clone();
    let r = request(b, "/profile", "text/html").await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(
        r.header("location")
            .is_some_and(|l| l.contains("/protocol/openid-connect/auth?")),
        "{:?}",
        r.header("location")
    );
    b.jar = jar;
    let r = request(b, "/profile", "application/json").await;
    assert_eq!(r.status, 401, "{}", r.body);
}

async fn metric(h: &Harness, sample: &str) -> f64 {
    let body = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_logout_token_with_a_sid_ends_that_session_only() {
    let h = Harness::start().await;
    let (mut first, sid) = logged_in(&h, "alice").await;
    let (mut second, other_sid) = logged_in(&h, "alice").await;
    assert_ne!(sid, other_sid, "each login is its own provider session");

    let token = h
        .idp
        .mint_logout(&h.idp.logout_token(Some("alice-id"), Some(&sid)));
    assert_accepted(&send(&h, &token).await);
    assert_ended(&mut first).await;
    assert_signed_in(&mut second, "alice").await;
    assert_eq!(
        metric(
            &h,
            "portcullis_sessions_ended_total{reason=\"backchannel\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_logout_token_with_only_a_sub_ends_every_session_of_that_subject() {
    let h = Harness::start().await;
    let (mut a1, _) = logged_in(&h, "alice").await;
    let (mut a2, _) = logged_in(&h, "alice").await;
    let (mut bob, _) = logged_in(&h, "bob").await;

    let token = h
        .idp
        .mint_logout(&h.idp.logout_token(Some("alice-id"), None));
    assert_accepted(&send(&h, &token).await);
    assert_ended(&mut a1).await;
    assert_ended(&mut a2).await;
    assert_signed_in(&mut bob, "bob").await;

    // Sessions made after the logout are not affected.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (mut again, _) = logged_in(&h, "alice").await;
    assert_signed_in(&mut again, "alice").await;
}

#[tokio::test]
async fn a_plain_jwt_type_and_an_unknown_session_are_accepted() {
    let h = Harness::start().await;
    let (mut b, _) = logged_in(&h, "alice").await;
    // `typ: JWT` (Keycloak's choice) and a session this instance never saw: 200, nothing
    // of ours ends.
    let token = h
        .idp
        .mint(&h.idp.logout_token(Some("alice-id"), Some("unknown-sid")));
    assert_accepted(&send(&h, &token).await);
    assert_signed_in(&mut b, "alice").await;
}

#[tokio::test]
async fn a_session_ended_before_its_refresh_is_not_refreshed() {
    let h = Harness::start().await;
    h.idp.set_access_ttl(1);
    let (mut b, sid) = logged_in(&h, "alice").await;
    let token = h.idp.mint_logout(&h.idp.logout_token(None, Some(&sid)));
    assert_accepted(&send(&h, &token).await);
    let refreshes = h.idp.refreshes();
    assert_ended(&mut b).await;
    assert_eq!(
        h.idp.refreshes(),
        refreshes,
        "an ended session is not refreshed"
    );
}

#[tokio::test]
async fn without_sessions_the_endpoint_does_not_exist() {
    let h = Harness::with_edit("[[rule]]\npath = \"/**\"\nlogin = \"deny\"\n", |t| {
        t.replace(
            &format!("[session]\nsecret = \"{}\"\n", support::SESSION_SECRET),
            "",
        )
    })
    .await;
    let token = h
        .idp
        .mint_logout(&h.idp.logout_token(Some("alice-id"), None));
    assert_eq!(send(&h, &token).await.status, 404);
}

// === one refusal per rule; the session is still there afterwards ===

/// Logs alice in, posts what `make` builds from valid logout-token claims for her session,
/// and checks the 400 and that the session still works.
async fn refused(why: &str, make: impl FnOnce(&Harness, Value) -> String) {
    let h = Harness::start().await;
    let (mut b, sid) = logged_in(&h, "alice").await;
    let claims = h.idp.logout_token(Some("alice-id"), Some(&sid));
    let token = make(&h, claims);
    let r = send(&h, &token).await;
    assert_refused(&r, why, Some(&token));
    assert_signed_in(&mut b, "alice").await;
    assert_eq!(
        metric(
            &h,
            "portcullis_sessions_ended_total{reason=\"backchannel\"}"
        )
        .await,
        0.0
    );
}

/// The same with claims edited and signed properly.
async fn refused_claims(why: &str, edit: impl FnOnce(&mut Map<String, Value>)) {
    refused(why, |h, mut claims| {
        edit(claims.as_object_mut().unwrap());
        h.idp.mint_logout(&claims)
    })
    .await;
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let forger = tokio::task::spawn_blocking(|| SigningKey::generate("key-1"))
        .await
        .unwrap();
    refused("signature is invalid", move |h, claims| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("key-1".into());
        header.typ = Some("logout+jwt".into());
        h.idp.mint_with(&header, &claims, &forger.encoding)
    })
    .await;
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    refused("signature is invalid", |h, claims| {
        let token = h.idp.mint_logout(&claims);
        let (head, sig) = token.rsplit_once('.').unwrap();
        let (h64, _) = head.split_once('.').unwrap();
        let mut other = claims.clone();
        other["sid"] = json!("someone-else");
        use base64::Engine;
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.to_string());
        format!("{h64}.{p}.{sig}")
    })
    .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    refused("signing algorithm", |_, claims| unsigned_token(&claims)).await;
}

#[tokio::test]
async fn hs256_is_refused() {
    refused("signing algorithm", |h, claims| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("key-1".into());
        h.idp.mint_with(
            &header,
            &claims,
            &EncodingKey::from_secret(b"gateway-secret"),
        )
    })
    .await;
}

#[tokio::test]
async fn a_wrong_typ_is_refused() {
    refused("type is not accepted", |h, claims| {
        let key = h.idp.current_key();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        h.idp.mint_with(&header, &claims, &key.encoding)
    })
    .await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    refused_claims("another issuer", |c| {
        let iss = format!("{}/", c["iss"].as_str().unwrap());
        c.insert("iss".into(), json!(iss));
    })
    .await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    refused_claims("not meant for this client", |c| {
        c.insert("aud".into(), json!(["account", "other-client"]));
    })
    .await;
}

#[tokio::test]
async fn iat_in_the_future_is_refused() {
    refused_claims("issued in the future", |c| {
        c.insert("iat".into(), json!(now() + 3600));
    })
    .await;
}

#[tokio::test]
async fn iat_too_old_is_refused() {
    refused_claims("too old", |c| {
        c.insert("iat".into(), json!(now() - 3600));
    })
    .await;
}

#[tokio::test]
async fn a_missing_iat_is_refused() {
    refused_claims("no valid iat", |c| {
        c.remove("iat");
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    refused_claims("expired", |c| {
        c.insert("exp".into(), json!(now() - 3600));
    })
    .await;
}

#[tokio::test]
async fn missing_events_are_refused() {
    refused_claims("no events claim", |c| {
        c.remove("events");
    })
    .await;
}

#[tokio::test]
async fn a_wrong_events_member_is_refused() {
    refused_claims("no back-channel logout event", |c| {
        c.insert(
            "events".into(),
            json!({"http://schemas.openid.net/event/other": {}}),
        );
    })
    .await;
}

#[tokio::test]
async fn an_event_value_that_is_not_an_object_is_refused() {
    refused_claims("not a JSON object", |c| {
        c.insert("events".into(), json!({ EVENT: "yes" }));
    })
    .await;
}

#[tokio::test]
async fn neither_sid_nor_sub_is_refused() {
    refused_claims("neither sid nor sub", |c| {
        c.remove("sid");
        c.remove("sub");
    })
    .await;
}

#[tokio::test]
async fn a_nonce_is_refused() {
    refused_claims("nonce", |c| {
        c.insert("nonce".into(), json!("n-1"));
    })
    .await;
}

#[tokio::test]
async fn a_missing_jti_is_refused() {
    refused_claims("no jti", |c| {
        c.remove("jti");
    })
    .await;
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let h = Harness::start().await;
    let (mut b, sid) = logged_in(&h, "alice").await;
    let first = h
        .idp
        .logout_token(Some("alice-id"), Some("another-provider-session"));
    let token = h.idp.mint_logout(&first);
    assert_accepted(&send(&h, &token).await);
    // The same token again, and another one with the same jti for alice's session.
    assert_refused(&send(&h, &token).await, "already used", Some(&token));
    let mut again = h.idp.logout_token(Some("alice-id"), Some(&sid));
    again["jti"] = first["jti"].clone();
    let token = h.idp.mint_logout(&again);
    assert_refused(&send(&h, &token).await, "already used", Some(&token));
    assert_signed_in(&mut b, "alice").await;
}

#[tokio::test]
async fn get_is_not_allowed() {
    let h = Harness::start().await;
    let (mut b, sid) = logged_in(&h, "alice").await;
    let token = h.idp.mint_logout(&h.idp.logout_token(None, Some(&sid)));
    let r = h
        .get(
            &format!("/oauth2/backchannel-logout?logout_token={token}"),
            &[],
        )
        .await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_signed_in(&mut b, "alice").await;
}

#[tokio::test]
async fn a_form_without_the_field_is_refused() {
    let h = Harness::start().await;
    let (mut b, sid) = logged_in(&h, "alice").await;
    let token = h.idp.mint_logout(&h.idp.logout_token(None, Some(&sid)));
    assert_refused(
        &post(&h, Some(FORM), &format!("token={token}")).await,
        "exactly one logout_token",
        None,
    );
    assert_refused(
        &post(&h, Some(FORM), "").await,
        "exactly one logout_token",
        None,
    );
    assert_refused(
        &post(
            &h,
            Some(FORM),
            &format!("logout_token={token}&logout_token={token}"),
        )
        .await,
        "exactly one logout_token",
        None,
    );
    assert_signed_in(&mut b, "alice").await;
}

#[tokio::test]
async fn a_body_that_is_not_a_form_is_refused() {
    let h = Harness::start().await;
    let (mut b, sid) = logged_in(&h, "alice").await;
    let token = h.idp.mint_logout(&h.idp.logout_token(None, Some(&sid)));
    let json_body = json!({ "logout_token": token }).to_string();
    assert_refused(
        &post(&h, Some("application/json"), &json_body).await,
        "x-www-form-urlencoded",
        Some(&token),
    );
    assert_refused(
        &post(&h, None, &format!("logout_token={token}")).await,
        "x-www-form-urlencoded",
        Some(&token),
    );
    let big = format!("logout_token={}", "a".repeat(70 * 1024));
    assert_refused(&post(&h, Some(FORM), &big).await, "too large", None);
    assert_signed_in(&mut b, "alice").await;
}
