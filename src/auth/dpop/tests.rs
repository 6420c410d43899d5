use super::*;
use serde_json::json;

#[test]
fn thumbprint_of_rfc_7638_example() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let map = jwk.as_object().cloned().unwrap_or_default();
    assert_eq!(
        thumbprint(&map).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn bound_key_reads_cnf_jkt_only() {
    let claims = |v: Value| v.as_object().cloned().unwrap_or_default();
    assert_eq!(bound_key(&claims(json!({}))), Ok(None));
    assert_eq!(
        bound_key(&claims(json!({"cnf": {"jkt": "abc"}}))),
        Ok(Some("abc"))
    );
    assert_eq!(
        bound_key(&claims(json!({"cnf": {"x5t#S256": "abc"}}))),
        Ok(None)
    );
    assert_eq!(
        bound_key(&claims(json!({"cnf": "abc"}))),
        Err(MalformedBinding)
    );
    assert_eq!(
        bound_key(&claims(json!({"cnf": {"jkt": 1}}))),
        Err(MalformedBinding)
    );
    assert_eq!(
        bound_key(&claims(json!({"cnf": {"jkt": ""}}))),
        Err(MalformedBinding)
    );
}

fn expected<'a>(url: &'a url::Url, path: &'a str) -> Expected<'a> {
    Expected {
        method: &Method::GET,
        public_url: url,
        path,
        allow_path_params: false,
        token: "t",
        jkt: "k",
        leeway: 30,
    }
}

#[test]
fn htu_is_compared_on_public_url_after_normalization() {
    let public = url::Url::parse("https://gw.example").unwrap_or_else(|_| unreachable!());
    let e = expected(&public, "/api/x");
    for ok in [
        "https://gw.example/api/x",
        "https://GW.example:443/api/x",
        "https://gw.example/api/./x?q=1#f",
        "https://gw.example/api/%78",
    ] {
        assert!(same_url(ok, &e), "{ok}");
    }
    for bad in [
        "http://gw.example/api/x",
        "https://gw.example:8443/api/x",
        "https://evil.example/api/x",
        "https://user@gw.example/api/x",
        "https://gw.example/api/y",
        "https://gw.example/api/x/",
        "https://gw.example/api%2Fx",
        "/api/x",
        "",
    ] {
        assert!(!same_url(bad, &e), "{bad}");
    }
}

#[test]
fn proof_header_problems_come_before_any_key_work() {
    let public = url::Url::parse("https://gw.example").unwrap_or_else(|_| unreachable!());
    let e = expected(&public, "/");
    let none = std::iter::empty();
    assert_eq!(verify_proof(none, &e, 0).err(), Some(ProofError::Missing));
    let two = [
        http::HeaderValue::from_static("a.b.c"),
        http::HeaderValue::from_static("a.b.c"),
    ];
    assert_eq!(
        verify_proof(two.iter(), &e, 0).err(),
        Some(ProofError::Multiple)
    );
    let one = [http::HeaderValue::from_static("not-a-jwt")];
    assert_eq!(
        verify_proof(one.iter(), &e, 0).err(),
        Some(ProofError::Malformed)
    );
}

#[tokio::test]
async fn replay_guard_accepts_a_proof_once() {
    let guard = ReplayGuard::new(16);
    let proof = Proof {
        replay_key: [7; 32],
        remember: Duration::from_secs(60),
    };
    assert_eq!(guard.first_use(&proof, None).await, Ok(true));
    assert_eq!(guard.first_use(&proof, None).await, Ok(false));
    let other = Proof {
        replay_key: [8; 32],
        remember: Duration::from_secs(60),
    };
    assert_eq!(guard.first_use(&other, None).await, Ok(true));
}
