#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{DecodingKey, Validation};
use p256::pkcs8::LineEnding;

use super::*;

fn secret(byte: u8) -> p256::SecretKey {
    p256::SecretKey::from_slice(&[byte; 32]).unwrap()
}

fn pem(byte: u8) -> String {
    secret(byte)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string()
}

fn who<'a>(roles: &'a [String]) -> Subject<'a> {
    Subject {
        sub: "u-1",
        email: Some("alice@example.com"),
        user: "alice",
        roles,
    }
}

fn verify(key: &SigningKey, token: &str, aud: &str) -> serde_json::Value {
    let jwk: Jwk = serde_json::from_value(key.public_jwk().clone()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&["https://gw.example"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
        .unwrap()
        .claims
}

#[test]
fn a_pem_key_has_its_thumbprint_as_kid_and_its_public_half_in_the_jwk() {
    let key = SigningKey::from_pem(&pem(7)).unwrap();
    assert_eq!(key.kid(), SigningKey::from_pem(&pem(7)).unwrap().kid());
    assert_ne!(key.kid(), SigningKey::from_pem(&pem(8)).unwrap().kid());
    // jsonwebtoken's own RFC 7638 thumbprint of the key gives the same kid.
    let ours: Jwk = serde_json::from_value(key.public_jwk().clone()).unwrap();
    assert_eq!(ours.thumbprint(ThumbprintHash::SHA256).unwrap(), key.kid());
    let enc = EncodingKey::from_ec_pem(pem(7).as_bytes()).unwrap();
    let theirs = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    assert_eq!(
        theirs.thumbprint(ThumbprintHash::SHA256).unwrap(),
        key.kid()
    );
    let jwk = key.public_jwk();
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "never the private part");
    assert!(!format!("{key:?}").contains(&pem(7)[40..60]));
}

#[test]
fn unusable_key_files_say_why() {
    let sec1 = secret(7).to_sec1_pem(LineEnding::LF).unwrap().to_string();
    assert_eq!(SigningKey::from_pem(&sec1).unwrap_err(), KeyError::Sec1);
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(
        SigningKey::from_pem(encrypted).unwrap_err(),
        KeyError::Encrypted
    );
    for bad in [
        "",
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        assert_eq!(SigningKey::from_pem(bad).unwrap_err(), KeyError::NotP256);
    }
}

#[test]
fn generated_keys_differ_and_sign() {
    let (a, b) = (SigningKey::generate(), SigningKey::generate());
    assert_ne!(a.kid(), b.kid());
    let signer = Signer::new(Arc::new(a), "https://gw.example".into());
    let roles = vec!["admin".to_owned()];
    let v = signer.assertion(&who(&roles), "http://app:3000").unwrap();
    let claims = verify(signer.key(), v.to_str().unwrap(), "http://app:3000");
    assert_eq!(claims["sub"], "u-1");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["user"], "alice");
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["iss"], "https://gw.example");
    assert_eq!(claims["aud"], "http://app:3000");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, LIFETIME);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 20));
    let header = jsonwebtoken::decode_header(v.to_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(signer.key().kid()));
    assert_eq!(header.alg, Algorithm::ES256);
}

#[test]
fn an_assertion_is_reused_while_a_third_of_its_life_remains() {
    let signer = Signer::new(
        Arc::new(SigningKey::generate()),
        "https://gw.example".into(),
    );
    let roles = vec!["admin".to_owned(), "ops".to_owned()];
    let t0 = 1_000_000;
    let first = signer.assertion_at(&who(&roles), "http://app", t0).unwrap();
    assert_eq!(
        signer.assertion_at(&who(&roles), "http://app", t0 + 1),
        Some(first.clone())
    );
    let last_reuse = t0 + LIFETIME - REUSE_WHILE_REMAINING - 1;
    assert_eq!(
        signer.assertion_at(&who(&roles), "http://app", last_reuse),
        Some(first.clone())
    );
    let renewed = signer
        .assertion_at(&who(&roles), "http://app", last_reuse + 1)
        .unwrap();
    assert_ne!(renewed, first);
    // Another audience, other roles, another email: another assertion.
    assert_ne!(
        signer.assertion_at(&who(&roles), "http://other", t0),
        Some(first.clone())
    );
    let fewer = vec!["admin".to_owned()];
    assert_ne!(
        signer.assertion_at(&who(&fewer), "http://app", t0),
        Some(first.clone())
    );
    let mut no_email = who(&roles);
    no_email.email = None;
    let v = signer.assertion_at(&no_email, "http://app", t0).unwrap();
    assert_ne!(v, first);
    // A clock that went back does not hand out an assertion "from the future".
    assert_ne!(
        signer.assertion_at(&no_email, "http://app", t0 - 5),
        Some(v)
    );
}

#[test]
fn a_replaced_key_stays_in_the_jwks_for_one_lifetime() {
    let ring = KeyRing::default();
    assert_eq!(ring.jwks(), json!({ "keys": [] }));
    let a = Arc::new(SigningKey::from_pem(&pem(1)).unwrap());
    let b = Arc::new(SigningKey::from_pem(&pem(2)).unwrap());
    let kids = |ring: &KeyRing, at: Instant| -> Vec<String> {
        ring.jwks_at(at)["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let t0 = Instant::now();
    ring.publish_at(Some(&a), t0);
    assert_eq!(kids(&ring, t0), [a.kid()]);
    // The same key again (a reload that re-read the same file): nothing retires.
    let a_again = Arc::new(SigningKey::from_pem(&pem(1)).unwrap());
    ring.publish_at(Some(&a_again), t0);
    assert_eq!(kids(&ring, t0), [a.kid()]);
    ring.publish_at(Some(&b), t0);
    assert_eq!(kids(&ring, t0), [b.kid(), a.kid()]);
    let lifetime = Duration::from_secs(LIFETIME);
    assert_eq!(kids(&ring, t0 + lifetime), [b.kid(), a.kid()]);
    assert_eq!(kids(&ring, t0 + RETIRED_FOR), [b.kid()]);
    // Assertions turned off: the last key is still listed for its assertions' lifetime.
    let t1 = t0 + RETIRED_FOR;
    ring.publish_at(None, t1);
    assert_eq!(kids(&ring, t1), [b.kid()]);
    assert!(kids(&ring, t1 + RETIRED_FOR).is_empty());
    // The generated key is made once.
    assert_eq!(ring.generated().kid(), ring.generated().kid());
}
