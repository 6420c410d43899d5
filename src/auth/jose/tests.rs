use base64::Engine;
use serde_json::json;

use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn token(header: &str, claims: &str) -> String {
    format!("{}.{}.c2ln", b64(header), b64(claims))
}

#[test]
fn header_reads_alg_typ_kid() {
    let h = Header::parse(&token(r#"{"alg":"RS256","typ":"at+jwt","kid":"k1"}"#, "{}")).unwrap();
    assert_eq!(h.alg, Some(Algorithm::RS256));
    assert_eq!(h.typ.as_deref(), Some("at+jwt"));
    assert_eq!(h.kid.as_deref(), Some("k1"));
}

#[test]
fn header_refusals() {
    let cases: &[(&str, JoseError)] = &[
        (r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, JoseError::Crit),
        (r#"{"alg":"RS256","crit":[]}"#, JoseError::Crit),
        (r#"{"alg":"RS256","crit":"b64"}"#, JoseError::Crit),
        (r#"{"alg":"RS256","b64":false}"#, JoseError::Encoding),
        (r#"{"alg":"RS256","zip":"DEF"}"#, JoseError::Encoding),
        (r#"{"alg":"RS256","alg":"none"}"#, JoseError::HeaderJson),
        (r#"{"alg":"none","alg":"RS256"}"#, JoseError::HeaderJson),
        (
            r#"{"alg":"RS256","x":{"a":1,"a":2}}"#,
            JoseError::HeaderJson,
        ),
        (r#"["RS256"]"#, JoseError::HeaderJson),
        (r#"{"alg":"RS256""#, JoseError::HeaderJson),
        (r#"{"typ":"JWT"}"#, JoseError::Alg),
        (r#"{"alg":["RS256"]}"#, JoseError::HeaderType),
        (r#"{"alg":"RS256","kid":7}"#, JoseError::HeaderType),
        (r#"{"alg":"RS256","typ":null}"#, JoseError::HeaderType),
    ];
    for (h, want) in cases {
        assert_eq!(Header::parse(&token(h, "{}")), Err(*want), "{h}");
    }
    // Unknown algorithms parse to `None` (the allow-list refuses them later).
    for alg in ["none", "None", "rs256", "HS256x", ""] {
        let h = Header::parse(&token(&format!(r#"{{"alg":"{alg}"}}"#), "{}")).unwrap();
        assert_eq!(h.alg, None, "{alg}");
    }
}

#[test]
fn shapes_and_encodings() {
    let good = token(r#"{"alg":"RS256"}"#, "{}");
    assert!(split(&good).is_ok());
    for bad in ["a.b", "a.b.c.d", "a.b.c.d.e", ".b.c", "a..c", "", "..."] {
        assert_eq!(split(bad), Err(JoseError::Shape), "{bad}");
    }
    // Padding and the standard alphabet are not base64url.
    let padded = format!("{}=.{}.x", b64(r#"{"alg":"RS256"}"#), b64("{}"));
    assert!(Header::parse(&padded).is_err());
    let std_alphabet = format!(
        "{}.e30.x",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(r#"{"alg":"RS256","kid":"??>"}"#)
    );
    assert!(Header::parse(&std_alphabet).is_err());
}

#[test]
fn duplicate_claims_are_refused_at_every_depth() {
    for c in [
        r#"{"iss":"a","iss":"b"}"#,
        r#"{"sub":"x","realm_access":{"roles":["user"],"roles":["admin"]}}"#,
        r#"{"a":[{"k":1,"k":2}]}"#,
    ] {
        assert_eq!(
            claims(&token(r#"{"alg":"RS256"}"#, c)),
            Err(JoseError::ClaimsJson),
            "{c}"
        );
    }
    assert!(claims(&token(r#"{"alg":"RS256"}"#, r#"{"a":{"k":1},"b":{"k":2}}"#)).is_ok());
    assert!(claims(&token(r#"{"alg":"RS256"}"#, "[1]")).is_err());
}

#[test]
fn claim_types_are_checked() {
    let map = |v: serde_json::Value| v.as_object().unwrap().clone();
    let ok = [
        json!({"exp": 1, "nbf": 0, "iat": 1.5, "aud": "a", "iss": "i", "sub": "s"}),
        json!({"aud": ["a", "b"], "scope": "a b", "scp": ["a"]}),
        json!({"scp": "a b"}),
        json!({}),
    ];
    for c in ok {
        assert_eq!(check_shapes(&map(c.clone())), Ok(()), "{c}");
    }
    let bad = [
        (json!({"exp": "9999999999"}), "exp"),
        (json!({"nbf": "0"}), "nbf"),
        (json!({"iat": true}), "iat"),
        (json!({"exp": null}), "exp"),
        (json!({"exp": [1]}), "exp"),
        (json!({"aud": []}), "aud"),
        (json!({"aud": ["a", 1]}), "aud"),
        (json!({"aud": {"a": 1}}), "aud"),
        (json!({"aud": null}), "aud"),
        (json!({"iss": ["i"]}), "iss"),
        (json!({"iss": {"x": "i"}}), "iss"),
        (json!({"sub": 5}), "sub"),
        (json!({"typ": ["Bearer"]}), "typ"),
        (json!({"scope": 3}), "scope"),
        (json!({"scp": [1]}), "scp"),
    ];
    for (c, name) in bad {
        assert_eq!(
            check_shapes(&map(c.clone())),
            Err(ClaimShape::Type(name)),
            "{c}"
        );
    }
}
