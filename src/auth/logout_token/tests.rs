use super::*;
use crate::auth::session::Revocations;
use base64::Engine;
use serde_json::json;

const ISS: &str = "http://idp/realms/x";
const NOW: f64 = 1_700_000_000.0;

fn verifier() -> LogoutTokenVerifier {
    LogoutTokenVerifier::from_parts(ISS, "gateway", vec![Algorithm::RS256], 30)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn with_header(header: &str) -> String {
    format!("{}.{}.c2ln", b64(header), b64("{}"))
}

/// Valid logout-token claims at [`NOW`].
fn claims() -> Map<String, Value> {
    match json!({
        "iss": ISS,
        "aud": ["account", "gateway"],
        "iat": NOW,
        "exp": NOW + 120.0,
        "jti": "jti-1",
        "sid": "sid-1",
        "sub": "alice-id",
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn check(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<LogoutClaims, LogoutTokenError> {
    let mut c = claims();
    edit(&mut c);
    verifier().check_claims(&c, NOW)
}

#[test]
fn a_valid_logout_token_names_what_it_ends() {
    let got = check(|_| {}).expect("valid");
    assert_eq!(got.target, LogoutTarget::ProviderSession("sid-1".into()));
    assert_eq!(got.sub.as_deref(), Some("alice-id"));
    assert_eq!(got.jti, "jti-1");
    assert_eq!(got.remember_until(30), NOW as u64 + MAX_AGE + 31);
    // A single audience string, no exp, only sid or only sub.
    assert!(check(|c| {
        c.insert("aud".into(), json!("gateway"));
        c.remove("exp");
        c.remove("sub");
    })
    .is_ok());
    assert_eq!(
        check(|c| {
            c.remove("sid");
        })
        .map(|c| c.target),
        Ok(LogoutTarget::Subject("alice-id".into()))
    );
}

#[test]
fn header_rules() {
    let v = verifier();
    for ok in [
        r#"{"alg":"RS256"}"#,
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"alg":"RS256","typ":"logout+jwt"}"#,
        r#"{"alg":"RS256","typ":"application/logout+jwt","kid":"k"}"#,
    ] {
        assert!(v.inspect(&with_header(ok)).is_ok(), "{ok}");
    }
    let cases = [
        (r#"{"alg":"none"}"#, LogoutTokenError::Algorithm),
        (r#"{"alg":"HS256"}"#, LogoutTokenError::Algorithm),
        (r#"{"alg":"RS384"}"#, LogoutTokenError::Algorithm),
        (r#"{"typ":"JWT"}"#, LogoutTokenError::Algorithm),
        (
            r#"{"alg":"RS256","typ":"at+jwt"}"#,
            LogoutTokenError::HeaderType,
        ),
        (
            r#"{"alg":"RS256","crit":["x"]}"#,
            LogoutTokenError::UnsupportedHeader,
        ),
        (
            r#"{"alg":"RS256","alg":"RS256"}"#,
            LogoutTokenError::Malformed,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(v.inspect(&with_header(h)), Err(want), "{h}");
    }
    assert_eq!(v.inspect(""), Err(LogoutTokenError::Malformed));
    assert_eq!(v.inspect("a.b"), Err(LogoutTokenError::Malformed));
    // HS256 stays refused even when configured: it has no key family.
    let hs = LogoutTokenVerifier::from_parts(ISS, "gateway", vec![Algorithm::HS256], 30);
    assert_eq!(
        hs.inspect(&with_header(r#"{"alg":"HS256"}"#)),
        Err(LogoutTokenError::Algorithm)
    );
}

#[test]
fn each_claim_rule_has_its_own_refusal() {
    use LogoutTokenError as E;
    type Edit = Box<dyn FnOnce(&mut Map<String, Value>)>;
    let set = |k: &'static str, v: Value| -> Edit {
        Box::new(move |c: &mut Map<String, Value>| {
            c.insert(k.into(), v);
        })
    };
    let remove = |k: &'static str| -> Edit {
        Box::new(move |c: &mut Map<String, Value>| {
            c.remove(k);
        })
    };
    let cases: Vec<(&str, Edit, E)> = vec![
        ("no iss", remove("iss"), E::Issuer),
        (
            "other iss",
            set("iss", json!("http://idp/realms/y")),
            E::Issuer,
        ),
        (
            "iss with a slash",
            set("iss", json!(format!("{ISS}/"))),
            E::Issuer,
        ),
        ("iss an array", set("iss", json!([ISS])), E::Issuer),
        ("no aud", remove("aud"), E::Audience),
        ("other aud", set("aud", json!("other")), E::Audience),
        ("aud a number", set("aud", json!(1)), E::Audience),
        ("empty aud", set("aud", json!([])), E::Audience),
        ("no iat", remove("iat"), E::IssuedAt),
        (
            "iat a string",
            set("iat", json!(NOW.to_string())),
            E::IssuedAt,
        ),
        (
            "iat in the future",
            set("iat", json!(NOW + 31.0)),
            E::IssuedInFuture,
        ),
        (
            "iat too old",
            set("iat", json!(NOW - (MAX_AGE as f64) - 31.0)),
            E::TooOld,
        ),
        ("expired", set("exp", json!(NOW - 31.0)), E::Expired),
        ("exp a string", set("exp", json!("never")), E::Expired),
        ("no events", remove("events"), E::NoEvents),
        (
            "events a string",
            set("events", json!("logout")),
            E::NoEvents,
        ),
        (
            "other event",
            set(
                "events",
                json!({"http://schemas.openid.net/event/other": {}}),
            ),
            E::NotLogoutEvent,
        ),
        (
            "event value not an object",
            set("events", json!({ BACKCHANNEL_LOGOUT_EVENT: true })),
            E::EventValue,
        ),
        (
            "neither sid nor sub",
            Box::new(|c: &mut Map<String, Value>| {
                c.remove("sid");
                c.remove("sub");
            }),
            E::NoSubject,
        ),
        ("sid a number", set("sid", json!(7)), E::SubjectType),
        ("nonce", set("nonce", json!("n")), E::Nonce),
        ("no jti", remove("jti"), E::Jti),
        ("empty jti", set("jti", json!("")), E::Jti),
        ("jti a number", set("jti", json!(1)), E::Jti),
    ];
    for (what, edit, want) in cases {
        assert_eq!(check(edit), Err(want), "{what}");
    }
    // Within the leeway on every side.
    assert!(check(set("iat", json!(NOW + 30.0))).is_ok());
    assert!(check(set("iat", json!(NOW - (MAX_AGE as f64) - 30.0))).is_ok());
    assert!(check(set("exp", json!(NOW - 30.0))).is_ok());
}

#[test]
fn refusals_have_fixed_texts_and_codes() {
    let all = [
        LogoutTokenError::Signature,
        LogoutTokenError::Replayed,
        LogoutTokenError::Nonce,
    ];
    for e in all {
        assert!(!e.to_string().is_empty());
        assert!(!e.code().is_empty());
    }
}

#[test]
fn ended_provider_sessions_and_subjects() {
    let r = Revocations::default();
    let now = crate::unix_now();
    assert!(!r.is_ended("gw-1", Some("sid-1"), "alice", now));

    r.end_provider_session("sid-1", now + 60).unwrap();
    assert!(r.is_ended("gw-1", Some("sid-1"), "alice", now));
    assert!(!r.is_ended("gw-2", Some("sid-2"), "alice", now));
    assert!(!r.is_ended("gw-3", None, "alice", now));

    // A subject's sessions created at or before the logout end; later ones do not.
    r.end_subject("bob", now, now + 60).unwrap();
    assert!(r.is_ended("gw-4", None, "bob", now - 100));
    assert!(r.is_ended("gw-4", Some("sid-9"), "bob", now));
    assert!(!r.is_ended("gw-5", None, "bob", now + 1));
    // An earlier logout does not move the time back.
    r.end_subject("bob", now - 1000, now + 60).unwrap();
    assert!(r.is_ended("gw-4", None, "bob", now));

    // Records past their expiry count as absent.
    r.end_provider_session("sid-old", now - 1).unwrap();
    r.end_subject("carol", now, now - 1).unwrap();
    assert!(!r.is_ended("gw-6", Some("sid-old"), "carol", now - 100));

    // A revoked gateway session id is ended too.
    r.revoke("gw-7", now + 60).unwrap();
    assert!(r.is_ended("gw-7", None, "dave", now));
}

#[test]
fn a_logout_token_id_is_used_once() {
    let r = Revocations::default();
    let now = crate::unix_now();
    assert!(r.first_logout_token("jti-1", now + 60));
    assert!(!r.first_logout_token("jti-1", now + 60));
    assert!(r.first_logout_token("jti-2", now + 60));
    // Expired entries count as unused.
    assert!(r.first_logout_token("jti-3", now - 1));
    assert!(r.first_logout_token("jti-3", now + 60));
    assert!(!r.first_logout_token("jti-3", now + 60));
}

#[cfg(feature = "test-util")]
#[test]
fn the_signature_is_checked_with_the_providers_key() {
    use crate::auth::jwks::{verify_with, KeySet};
    use crate::testing::idp::SigningKey;
    let key = SigningKey::generate("k1");
    let other = SigningKey::generate("k1");
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json!({ "keys": [key.jwk.clone()] })).expect("jwks");
    let keys = KeySet::from_jwks(&set);
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.typ = Some("logout+jwt".into());
    let good = jsonwebtoken::encode(&header, &claims(), &key.encoding).expect("sign");
    let forged = jsonwebtoken::encode(&header, &claims(), &other.encoding).expect("sign");
    let v = verifier();
    let (alg, kid) = v.inspect(&good).expect("header");
    let candidates = keys.candidates(kid.as_deref(), alg);
    assert_eq!(verify_with(&good, alg, &candidates), Ok(()));
    assert_eq!(
        verify_with(&forged, alg, &candidates),
        Err(SignatureError::Invalid)
    );
    let claims = jose::claims(&good).expect("claims");
    assert!(v.check_claims(&claims, NOW).is_ok());
}
