use super::*;
use base64::Engine;
use std::time::Duration;

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
            algorithms: vec![Algorithm::RS256],
            leeway: Duration::from_secs(30),
            roles_claims: Vec::new(),
            jwks_refresh: Duration::from_secs(300),
            cache_size: 0,
            introspection: false,
            introspection_ttl: std::time::Duration::from_secs(60),
            introspection_cache_size: 0,
            dpop: crate::config::DpopMode::Allow,
            issuers: Vec::new(),
        },
    )
}

fn token(claims: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims)
    )
}

#[test]
fn offline_check_takes_extreme_exp_and_nbf() {
    let v = validator();
    let iss = r#""iss":"http://idp/realms/x","aud":"gateway""#;
    let max = u64::MAX;
    assert!(v
        .check_offline(&token(&format!("{{{iss},\"exp\":{max}}}")))
        .is_ok());
    assert_eq!(
        v.check_offline(&token(&format!("{{{iss},\"exp\":{max},\"nbf\":{max}}}"))),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        v.check_offline(&token(&format!("{{{iss},\"exp\":1}}"))),
        Err(TokenError::Expired)
    );
}
