use super::*;
use crate::config::{DpopMode, OidcSettings, TokenSettings};
use serde_json::json;

fn validator() -> BearerValidator {
    BearerValidator::new(
        &OidcSettings {
            issuer: "http://idp/realms/x".into(),
            client_id: "gateway".into(),
            client_secret: None,
            scopes: vec!["openid".into()],
        },
        &TokenSettings {
            audiences: vec!["gateway".into()],
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            leeway: Duration::from_secs(30),
            roles_claims: Vec::new(),
            jwks_refresh: Duration::from_secs(300),
            cache_size: 0,
            introspection: true,
            introspection_ttl: Duration::from_secs(60),
            introspection_cache_size: 10,
            dpop: DpopMode::Allow,
            issuers: Vec::new(),
        },
    )
}

fn judged(v: serde_json::Value) -> Result<Map<String, Value>, TokenError> {
    judge(v.to_string().as_bytes(), &validator())
}

#[test]
fn every_rejection_of_an_introspection_answer() {
    let now = crate::unix_now();
    let good = json!({"active": true, "aud": "gateway", "exp": now + 60, "sub": "s"});
    assert!(judged(good.clone()).is_ok());
    let with = |k: &str, v: Value| {
        let mut g = good.clone();
        g[k] = v;
        g
    };
    let cases = [
        (json!({"active": false}), TokenError::Inactive),
        (with("active", json!(false)), TokenError::Inactive),
        (json!({"aud": "gateway"}), TokenError::Introspection),
        (with("active", json!("true")), TokenError::Introspection),
        (with("active", json!(1)), TokenError::Introspection),
        (with("active", Value::Null), TokenError::Introspection),
        (with("exp", json!(now - 120)), TokenError::Expired),
        (with("exp", json!("soon")), TokenError::ClaimType),
        (with("nbf", json!(now + 3600)), TokenError::NotYetValid),
        (with("iat", json!(now + 3600)), TokenError::IssuedInFuture),
        (
            with("iss", json!("http://idp/realms/other")),
            TokenError::Issuer,
        ),
        (
            with("iss", json!(["http://idp/realms/x"])),
            TokenError::ClaimType,
        ),
        (with("aud", json!("other")), TokenError::Audience),
        (with("aud", json!([])), TokenError::ClaimType),
        (with("scope", json!(1)), TokenError::ClaimType),
        (
            with("token_type", json!("refresh_token")),
            TokenError::NotAccessToken,
        ),
        (with("typ", json!("Refresh")), TokenError::NotAccessToken),
    ];
    for (answer, want) in cases {
        assert_eq!(judged(answer.clone()), Err(want), "{answer}");
    }
    let mut no_aud = good.clone();
    no_aud.as_object_mut().map(|o| o.remove("aud"));
    assert_eq!(judged(no_aud), Err(TokenError::MissingClaim));
    // Without `exp` or `iss` (both optional in RFC 7662): accepted.
    let mut bare = good.clone();
    bare.as_object_mut().map(|o| o.remove("exp"));
    assert!(judged(bare).is_ok());
    assert!(judged(with("iss", json!("http://idp/realms/x"))).is_ok());
}

#[test]
fn only_a_json_object_without_duplicate_keys_is_an_answer() {
    let v = validator();
    for body in [
        &b"not json"[..],
        b"[]",
        b"\"active\"",
        br#"{"active": true, "active": false}"#,
        br#"{"active": false, "active": true}"#,
        br#"{"active": true, "aud": "gateway", "sub": "a", "sub": "b"}"#,
        b"",
    ] {
        assert_eq!(
            judge(body, &v),
            Err(TokenError::Introspection),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn the_cache_key_is_keyed_per_cache() {
    let a = Introspector::new(1, Duration::from_secs(1), "gateway", None);
    let b = Introspector::new(1, Duration::from_secs(1), "gateway", None);
    assert_eq!(a.cache_key("tok"), a.cache_key("tok"));
    assert_ne!(a.cache_key("tok"), a.cache_key("tok2"));
    assert_ne!(a.cache_key("tok"), b.cache_key("tok"));
}
