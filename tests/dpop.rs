//! DPoP-bound access tokens (RFC 9449): every check a resource server makes on a proof
//! (§4.3), the binding of the token to the proof's key, replays on one instance and across
//! replicas that share a Redis, and the `tokens.dpop` modes. A refused request never
//! reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::testing::dpop::{ath, DpopKey};
use portcullis::testing::now;
use serde_json::{json, Value};
use std::sync::OnceLock;
use support::{Harness, RawResponse};

const ALGS: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA";

/// Key generation is slow in debug builds: two keys for the whole file.
fn client_key() -> &'static DpopKey {
    static K: OnceLock<DpopKey> = OnceLock::new();
    K.get_or_init(DpopKey::generate)
}

fn other_key() -> &'static DpopKey {
    static K: OnceLock<DpopKey> = OnceLock::new();
    K.get_or_init(DpopKey::generate)
}

/// A token bound to `key` (`cnf.jkt`), audience gateway.
fn bound_token(h: &Harness, key: &DpopKey, scope: &str) -> String {
    let mut claims = h.idp.claims("svc-dpop", "gateway", scope);
    claims["cnf"] = json!({ "jkt": key.jkt() });
    h.idp.mint(&claims)
}

async fn dpop_get(h: &Harness, path: &str, token: &str, proofs: &[&str]) -> RawResponse {
    let auth = format!("DPoP {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    for p in proofs {
        headers.push(("DPoP", p));
    }
    h.get(path, &headers).await
}

fn assert_dpop_refusal(r: &RawResponse, code: &str, desc: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                "DPoP realm=\"portcullis\", error=\"{code}\", error_description=\"{desc}\", algs=\"{ALGS}\""
            )
            .as_str()
        ),
        "{}",
        r.body
    );
    assert_eq!(r.json()["error"], code);
}

/// The claims of a valid proof for `GET url` with `token`.
fn proof_claims(url: &str, token: &str) -> Value {
    json!({
        "jti": portcullis::auth::session::random_token(16),
        "htm": "GET",
        "htu": url,
        "iat": now(),
        "ath": ath(token),
    })
}

#[tokio::test]
async fn a_bound_token_with_its_proof_is_accepted_and_never_as_bearer() {
    let h = Harness::start().await;
    let key = client_key();
    let token = bound_token(&h, key, "profile test_api_access");
    let url = format!("{}/api/private-scoped/x", h.public());
    let proof = key.proof("GET", &url, Some(&token));
    let r = dpop_get(&h, "/api/private-scoped/x", &token, &[&proof]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.seen();
    assert_eq!(seen.header("x-auth-subject"), Some("svc-dpop"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("DPoP {token}").as_str()),
        "passed on unchanged"
    );
    // The token is cached now; a new proof is still needed and checked.
    let proof2 = key.proof("GET", &url, Some(&token));
    let r = dpop_get(&h, "/api/private-scoped/x", &token, &[&proof2]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The same token as Bearer: always refused, even with a proof.
    let before = h.upstream.count();
    let r = h.get_bearer("/api/private-scoped/x", &token).await;
    assert_dpop_refusal(
        &r,
        "invalid_token",
        "a DPoP-bound token must be sent with the DPoP scheme and a proof",
    );
    let bearer = format!("Bearer {token}");
    let proof3 = key.proof("GET", &url, Some(&token));
    let r = h
        .get(
            "/api/private-scoped/x",
            &[("Authorization", &bearer), ("DPoP", &proof3)],
        )
        .await;
    assert_eq!(r.status, 401);
    // On a public rule, the refused credential only means no identity.
    let r = h.get_bearer("/api/public", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen().header("x-auth-subject"), None);
    assert_eq!(h.upstream.count(), before + 1);
}

#[tokio::test]
async fn every_proof_check_of_rfc_9449() {
    let h = Harness::start().await;
    let key = client_key();
    let token = bound_token(&h, key, "profile");
    let path = "/api/private";
    let url = format!("{}{path}", h.public());
    let good = proof_claims(&url, &token);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let header = key.header();
    let mut typ_jwt = header.clone();
    typ_jwt.typ = Some("JWT".into());
    let mut no_typ = header.clone();
    no_typ.typ = None;
    let mut no_jwk = header.clone();
    no_jwk.jwk = None;
    let mut foreign_jwk = header.clone();
    foreign_jwk.jwk = other_key().header().jwk;
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("dpop+jwt".into());
    hs.jwk = header.jwk.clone();
    let hs_proof = jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(b"secret")).unwrap();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good_proof = key.sign(&header, &good);
    let (gh, gp, _) = {
        let mut it = good_proof.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let none_proof = format!(
        "{}.{gp}.",
        b64(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk()}))
    );
    let mut private_jwk = key.public_jwk();
    private_jwk["d"] = json!("AQAB");
    let private_proof = {
        let h = b64(&json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": private_jwk}));
        // Signed over the new header, by the right key.
        let msg = format!("{h}.{gp}");
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key.key.encoding, Algorithm::RS256)
            .unwrap();
        format!("{msg}.{sig}")
    };
    let crit_proof = {
        let h = b64(
            &json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": key.public_jwk(), "crit": ["x"], "x": 1}),
        );
        let msg = format!("{h}.{gp}");
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key.key.encoding, Algorithm::RS256)
            .unwrap();
        format!("{msg}.{sig}")
    };
    let tampered = format!("{gh}.{}.{}", b64(&with("jti", json!("other"))), {
        good_proof.rsplit('.').next().unwrap()
    });
    let dup_claims = {
        let p = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
                r#"{{"jti":"a","jti":"b","htm":"GET","htu":"{url}","iat":{},"ath":"{}"}}"#,
                now(),
                ath(&token)
            ))
        };
        let msg = format!("{gh}.{p}");
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key.key.encoding, Algorithm::RS256)
            .unwrap();
        format!("{msg}.{sig}")
    };
    let other_token = bound_token(&h, key, "email");
    let host_url = format!("http://evil.example{path}");
    let cases: Vec<(&str, String, &str)> = vec![
        ("not a JWT", "abc".into(), "the DPoP proof is malformed"),
        (
            "a JWE-like five parts",
            "a.b.c.d.e".into(),
            "the DPoP proof is malformed",
        ),
        (
            "duplicate claims",
            dup_claims,
            "the DPoP proof is malformed",
        ),
        ("crit", crit_proof, "the DPoP proof is malformed"),
        (
            "typ JWT",
            key.sign(&typ_jwt, &good),
            "the DPoP proof's typ is not dpop+jwt",
        ),
        (
            "no typ",
            key.sign(&no_typ, &good),
            "the DPoP proof's typ is not dpop+jwt",
        ),
        (
            "alg HS256",
            hs_proof,
            "the DPoP proof's algorithm is not accepted",
        ),
        (
            "alg none",
            none_proof,
            "the DPoP proof's algorithm is not accepted",
        ),
        (
            "no jwk",
            key.sign(&no_jwk, &good),
            "the DPoP proof's jwk is not a usable public key",
        ),
        (
            "private jwk",
            private_proof,
            "the DPoP proof's jwk is not a usable public key",
        ),
        (
            "jwk of another key",
            key.sign(&foreign_jwk, &good),
            "the DPoP proof's signature is invalid",
        ),
        (
            "tampered claims",
            tampered,
            "the DPoP proof's signature is invalid",
        ),
        (
            "no jti",
            key.sign(&header, &without("jti")),
            "the DPoP proof lacks a required claim or has one of the wrong type",
        ),
        (
            "no htm",
            key.sign(&header, &without("htm")),
            "the DPoP proof lacks a required claim or has one of the wrong type",
        ),
        (
            "no htu",
            key.sign(&header, &without("htu")),
            "the DPoP proof lacks a required claim or has one of the wrong type",
        ),
        (
            "no iat",
            key.sign(&header, &without("iat")),
            "the DPoP proof lacks a required claim or has one of the wrong type",
        ),
        (
            "no ath",
            key.sign(&header, &without("ath")),
            "the DPoP proof lacks a required claim or has one of the wrong type",
        ),
        (
            "iat a string",
            key.sign(&header, &with("iat", json!(now().to_string()))),
            "the DPoP proof lacks a required claim or has one of the wrong type",
        ),
        (
            "htm POST",
            key.sign(&header, &with("htm", json!("POST"))),
            "the DPoP proof is for another method",
        ),
        (
            "htm get",
            key.sign(&header, &with("htm", json!("get"))),
            "the DPoP proof is for another method",
        ),
        (
            "htu other path",
            key.sign(
                &header,
                &with("htu", json!(format!("{}/api/public", h.public()))),
            ),
            "the DPoP proof is for another URL",
        ),
        (
            "htu other host",
            key.sign(&header, &with("htu", json!(host_url))),
            "the DPoP proof is for another URL",
        ),
        (
            "htu https",
            key.sign(
                &header,
                &with("htu", json!(url.replace("http://", "https://"))),
            ),
            "the DPoP proof is for another URL",
        ),
        (
            "iat old",
            key.sign(&header, &with("iat", json!(now() - 120))),
            "the DPoP proof was not issued within the accepted time window",
        ),
        (
            "iat future",
            key.sign(&header, &with("iat", json!(now() + 120))),
            "the DPoP proof was not issued within the accepted time window",
        ),
        (
            "ath of another token",
            key.sign(&header, &with("ath", json!(ath(&other_token)))),
            "the DPoP proof is for another access token",
        ),
        (
            "proof by another key",
            other_key().proof("GET", &url, Some(&token)),
            "the DPoP proof is signed by a key the token is not bound to",
        ),
    ];
    let before = h.upstream.count();
    for (what, proof, desc) in &cases {
        let r = dpop_get(&h, path, &token, &[proof]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.json()["error_description"], *desc, "{what}");
        assert_dpop_refusal(&r, "invalid_dpop_proof", desc);
    }
    // No proof, and two proofs.
    let r = dpop_get(&h, path, &token, &[]).await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "the DPoP proof is missing");
    let (p1, p2) = (
        key.proof("GET", &url, Some(&token)),
        key.proof("GET", &url, Some(&token)),
    );
    let r = dpop_get(&h, path, &token, &[&p1, &p2]).await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "more than one DPoP proof");
    assert_eq!(
        h.upstream.count(),
        before,
        "no refusal reached the upstream"
    );

    // The Host header never makes a proof for another host valid.
    let evil = key.sign(
        &header,
        &with("htu", json!(format!("http://evil.example{path}"))),
    );
    let auth = format!("DPoP {token}");
    let r = h
        .get(
            path,
            &[
                ("Authorization", &auth),
                ("DPoP", &evil),
                ("X-Forwarded-Host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);

    // The good proof works once; its replay is refused.
    let r = dpop_get(&h, path, &token, &[&good_proof]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = dpop_get(&h, path, &token, &[&good_proof]).await;
    assert_dpop_refusal(&r, "invalid_dpop_proof", "the DPoP proof was used before");
    // A query and dot segments in the request do not change htu's path.
    let r = dpop_get(
        &h,
        "/api/./private?x=1",
        &token,
        &[&key.proof("GET", &url, Some(&token))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("portcullis_dpop_proofs_total{result=\"replayed\"} 1"),
        "{metrics}"
    );
}

/// A proof signed by an RSA key under 2048 bits (RFC 7518 §3.3) is refused like a bad
/// signature, and the token bound to that key gets nowhere.
#[tokio::test]
async fn a_proof_key_under_2048_bits_is_refused() {
    let h = Harness::start().await;
    let weak = tokio::task::spawn_blocking(|| DpopKey {
        key: portcullis::testing::idp::SigningKey::generate_bits("dpop", 1024),
    })
    .await
    .unwrap();
    let token = bound_token(&h, &weak, "profile test_api_access");
    let url = format!("{}/api/private-scoped/x", h.public());
    let proof = weak.proof("GET", &url, Some(&token));
    let before = h.upstream.count();
    let r = dpop_get(&h, "/api/private-scoped/x", &token, &[&proof]).await;
    assert_dpop_refusal(
        &r,
        "invalid_dpop_proof",
        "the DPoP proof's signature is invalid",
    );
    assert_eq!(h.upstream.count(), before);
}

#[tokio::test]
async fn the_dpop_scheme_needs_a_bound_token() {
    let h = Harness::start().await;
    let key = client_key();
    let plain = h.token("svc-1", "profile");
    let url = format!("{}/api/private", h.public());
    let proof = key.proof("GET", &url, Some(&plain));
    let r = dpop_get(&h, "/api/private", &plain, &[&proof]).await;
    assert_dpop_refusal(&r, "invalid_token", "the token is not DPoP-bound");
    // A token that fails validation under the DPoP scheme gets a DPoP challenge.
    let r = dpop_get(&h, "/api/private", "garbage", &[&proof]).await;
    assert_dpop_refusal(&r, "invalid_token", "the token is malformed");
    // A malformed binding.
    let mut claims = h.idp.claims("svc-1", "gateway", "profile");
    claims["cnf"] = json!("jkt");
    let bad = h.idp.mint(&claims);
    let r = h.get_bearer("/api/private", &bad).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_token");
}

#[tokio::test]
async fn dpop_modes_off_and_require() {
    let key = client_key();
    let off = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replace("[tokens]\n", "[tokens]\ndpop = \"off\"\n")
    })
    .await;
    let token = bound_token(&off, key, "profile");
    let url = format!("{}/api/private", off.public());
    let r = dpop_get(
        &off,
        "/api/private",
        &token,
        &[&key.proof("GET", &url, Some(&token))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\""),
        "with dpop off the DPoP scheme is no credential"
    );
    let r = off.get_bearer("/api/private", &token).await;
    assert_eq!(r.status, 401, "a bound token is never accepted as Bearer");

    let req = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replace("[tokens]\n", "[tokens]\ndpop = \"require\"\n")
    })
    .await;
    let plain = req.token("svc-1", "profile");
    let r = req.get_bearer("/api/private", &plain).await;
    assert_dpop_refusal(&r, "invalid_token", "only DPoP-bound tokens are accepted");
    let token = bound_token(&req, key, "profile");
    let url = format!("{}/api/private", req.public());
    let r = dpop_get(
        &req,
        "/api/private",
        &token,
        &[&key.proof("GET", &url, Some(&token))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_proof_used_at_one_replica_is_refused_by_another() {
    let redis = support::redis::Redis::start();
    let idp = portcullis::testing::TestIdp::start().await;
    let upstream = portcullis::testing::EchoUpstream::start().await;
    // Both replicas answer at one public URL, as behind a load balancer.
    let public = "http://gateway.example";
    let toml = redis.store_in(&support::config_toml_on(
        "127.0.0.1:0",
        public,
        &idp.issuer(),
        &upstream.url(),
        support::TUTORIAL_RULES,
    ));
    let a = support::serve(&toml).await;
    let b = support::serve(&toml).await;
    let key = client_key();
    let mut claims = idp.claims("svc-dpop", "gateway", "profile");
    claims["cnf"] = json!({ "jkt": key.jkt() });
    let token = idp.mint(&claims);
    let proof = key.proof("GET", &format!("{public}/api/private"), Some(&token));
    let auth = format!("DPoP {token}");
    let headers = [("Authorization", auth.as_str()), ("DPoP", proof.as_str())];
    let r = support::get(a.addr, "/api/private", &headers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = support::get(b.addr, "/api/private", &headers).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.json()["error_description"],
        "the DPoP proof was used before"
    );
}
