//! JWT claim and header strictness (RFC 7515, RFC 7519, RFC 8725, RFC 9068), through the
//! running gateway: each token below is signed by the provider's real key, so only the
//! strict reading refuses it. Client sends a forged-but-signed token / upstream must not
//! be called / client gets 401 `invalid_token` with a fixed description.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use portcullis::testing::now;
use serde_json::json;
use support::Harness;

/// Signs the exact header and claims text with the provider's current key.
fn sign_raw(h: &Harness, header: &str, claims: &str) -> String {
    let key = h.idp.current_key();
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key.encoding, Algorithm::RS256).unwrap();
    format!("{msg}.{sig}")
}

fn header(h: &Harness) -> String {
    format!(
        r#"{{"alg":"RS256","typ":"JWT","kid":"{}"}}"#,
        h.idp.current_key().kid
    )
}

async fn refused(h: &Harness, token: &str, desc: &str, case: &str) {
    let before = h.upstream.count();
    let r = h.get_bearer("/api/private", token).await;
    assert_eq!(r.status, 401, "{case}: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_token", "{case}");
    assert_eq!(r.json()["error_description"], desc, "{case}");
    assert_eq!(h.upstream.count(), before, "{case}: reached the upstream");
}

#[tokio::test]
async fn a_well_formed_raw_token_is_accepted() {
    // The control: the raw signer makes tokens the gateway accepts.
    let h = Harness::start().await;
    let claims = h.idp.claims("svc", "gateway", "").to_string();
    let t = sign_raw(&h, &header(&h), &claims);
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
    // A fractional NumericDate is a number too (RFC 7519 §2).
    let mut c = h.idp.claims("svc", "gateway", "");
    c["exp"] = json!(now() as f64 + 3600.5);
    c["iat"] = json!(now() as f64 - 0.25);
    let t = sign_raw(&h, &header(&h), &c.to_string());
    assert_eq!(h.get_bearer("/api/private", &t).await.status, 200);
}

#[tokio::test]
async fn critical_header_extensions_and_payload_encodings_are_refused() {
    let h = Harness::start().await;
    let kid = h.idp.current_key().kid.clone();
    let claims = h.idp.claims("svc", "gateway", "").to_string();
    let desc = "the token uses a JOSE extension that is not supported";
    for hdr in [
        format!(r#"{{"alg":"RS256","kid":"{kid}","crit":["exp"],"exp":1}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","crit":["http://example.com/x"]}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","crit":[]}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","crit":"b64"}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","b64":false,"crit":["b64"]}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","b64":true}}"#),
        format!(r#"{{"alg":"RS256","kid":"{kid}","zip":"DEF"}}"#),
    ] {
        refused(&h, &sign_raw(&h, &hdr, &claims), desc, &hdr).await;
    }
}

#[tokio::test]
async fn duplicate_keys_are_refused_in_header_and_claims() {
    let h = Harness::start().await;
    let kid = h.idp.current_key().kid.clone();
    let iss = h.idp.issuer();
    let n = now();
    let good = h.idp.claims("svc", "gateway", "").to_string();
    let malformed = "the token is malformed";
    // Header: two algs, two kids.
    for hdr in [
        format!(r#"{{"alg":"RS256","alg":"RS256","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"RS256","kid":"other","kid":"{kid}"}}"#),
    ] {
        refused(&h, &sign_raw(&h, &hdr, &good), malformed, &hdr).await;
    }
    // Claims: a second iss, aud, exp, sub, or a nested role list.
    for c in [
        format!(
            r#"{{"iss":"https://evil","iss":"{iss}","aud":"gateway","exp":{}}}"#,
            n + 60
        ),
        format!(
            r#"{{"iss":"{iss}","aud":"other","aud":"gateway","exp":{}}}"#,
            n + 60
        ),
        format!(
            r#"{{"iss":"{iss}","aud":"gateway","exp":1,"exp":{}}}"#,
            n + 60
        ),
        format!(
            r#"{{"iss":"{iss}","aud":"gateway","exp":{},"sub":"a","sub":"b"}}"#,
            n + 60
        ),
        format!(
            r#"{{"iss":"{iss}","aud":"gateway","exp":{},"realm_access":{{"roles":["user"],"roles":["admin"]}}}}"#,
            n + 60
        ),
    ] {
        refused(&h, &sign_raw(&h, &header(&h), &c), malformed, &c).await;
    }
}

#[tokio::test]
async fn registered_claims_of_the_wrong_type_are_refused() {
    let h = Harness::start().await;
    let n = now();
    let wrong_type = "a claim of the token has the wrong type";
    let base = h.idp.claims("svc", "gateway", "");
    let cases = [
        ("exp", json!((n + 3600).to_string())),
        ("exp", json!(null)),
        ("exp", json!([n + 3600])),
        ("exp", json!({"value": n + 3600})),
        ("exp", json!(true)),
        ("nbf", json!("0")),
        ("iat", json!(n.to_string())),
        ("aud", json!([])),
        ("aud", json!(["gateway", 7])),
        ("aud", json!({"gateway": true})),
        ("aud", json!(null)),
        ("iss", json!([h.idp.issuer()])),
        ("iss", json!({"iss": h.idp.issuer()})),
        ("iss", json!(null)),
        ("sub", json!(42)),
        ("sub", json!(["svc"])),
        ("scope", json!({"test_api_access": true})),
        ("scope", json!(1)),
        ("scp", json!([1, 2])),
        ("typ", json!(["Bearer"])),
    ];
    for (name, value) in cases {
        let mut c = base.clone();
        c[name] = value.clone();
        refused(
            &h,
            &h.idp.mint(&c),
            wrong_type,
            &format!("{name} = {value}"),
        )
        .await;
    }
}

#[tokio::test]
async fn issuer_must_equal_the_configured_one_exactly() {
    let h = Harness::start().await;
    let iss = h.idp.issuer();
    let desc = "the token was issued by another issuer";
    for other in [
        format!("{iss}/"),
        iss.trim_end_matches('/').to_owned() + "x",
        iss.to_uppercase(),
        format!("{iss}/../{}", iss.rsplit('/').next().unwrap()),
        format!(" {iss}"),
        iss[..iss.len() - 1].to_owned(),
        String::new(),
    ] {
        let mut c = h.idp.claims("svc", "gateway", "");
        c["iss"] = json!(other);
        refused(&h, &h.idp.mint(&c), desc, &other).await;
    }
    let mut c = h.idp.claims("svc", "gateway", "");
    c.as_object_mut().unwrap().remove("iss");
    refused(
        &h,
        &h.idp.mint(&c),
        "the token lacks a required claim",
        "no iss",
    )
    .await;
}

#[tokio::test]
async fn times_are_judged_with_the_leeway() {
    let h = Harness::start().await;
    let n = now();
    let base = h.idp.claims("svc", "gateway", "");
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        h.idp.mint(&c)
    };
    // iat in the future beyond the 30 s leeway.
    refused(
        &h,
        &with("iat", json!(n + 120)),
        "the token was issued in the future",
        "iat +120",
    )
    .await;
    // Within the leeway: accepted.
    assert_eq!(
        h.get_bearer("/api/private", &with("iat", json!(n + 10)))
            .await
            .status,
        200
    );
    refused(
        &h,
        &with("nbf", json!(n + 120)),
        "the token is not valid yet",
        "nbf +120",
    )
    .await;
    assert_eq!(
        h.get_bearer("/api/private", &with("nbf", json!(n + 10)))
            .await
            .status,
        200
    );
    refused(
        &h,
        &with("exp", json!(n - 120)),
        "the token has expired",
        "exp -120",
    )
    .await;
    refused(
        &h,
        &with("exp", json!(-1)),
        "the token has expired",
        "exp -1",
    )
    .await;
    assert_eq!(
        h.get_bearer("/api/private", &with("exp", json!(n - 10)))
            .await
            .status,
        200
    );
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("exp");
    refused(
        &h,
        &h.idp.mint(&c),
        "the token lacks a required claim",
        "no exp",
    )
    .await;
}

#[tokio::test]
async fn audience_shapes() {
    let h = Harness::start().await;
    let base = h.idp.claims("svc", "gateway", "");
    let with = |v: serde_json::Value| {
        let mut c = base.clone();
        c["aud"] = v;
        h.idp.mint(&c)
    };
    assert_eq!(
        h.get_bearer("/api/private", &with(json!(["account", "gateway"])))
            .await
            .status,
        200
    );
    let desc = "the token is not meant for this audience";
    for aud in [
        json!("gateway2"),
        json!("Gateway"),
        json!(["account"]),
        json!(""),
        json!(" gateway"),
    ] {
        refused(&h, &with(aud.clone()), desc, &aud.to_string()).await;
    }
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("aud");
    refused(
        &h,
        &h.idp.mint(&c),
        "the token lacks a required claim",
        "no aud",
    )
    .await;
}

#[tokio::test]
async fn extreme_numeric_dates_are_judged_without_overflow() {
    let h = Harness::start().await;
    let base = h.idp.claims("svc", "gateway", "");
    for exp in [json!(u64::MAX), json!(1e300), json!(i64::MAX)] {
        let mut c = base.clone();
        c["exp"] = exp.clone();
        let t = h.idp.mint(&c);
        // Twice: the second answer comes from the verified-token cache.
        for _ in 0..2 {
            assert_eq!(
                h.get_bearer("/api/private", &t).await.status,
                200,
                "exp {exp}"
            );
        }
    }
    for (k, v) in [
        ("nbf", json!(u64::MAX)),
        ("iat", json!(1e300)),
        ("exp", json!(i64::MIN)),
    ] {
        let mut c = base.clone();
        c[k] = v.clone();
        let r = h.get_bearer("/api/private", &h.idp.mint(&c)).await;
        assert_eq!(r.status, 401, "{k} {v}");
    }
}
