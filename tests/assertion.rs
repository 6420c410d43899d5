//! The signed identity assertion (`headers.assertion`, contract §9): what the upstream
//! receives, verified the way an upstream would (the gateway's `/oauth2/jwks`, ES256,
//! `iss`, `aud`, a short `exp`), client copies stripped on every rule, and the key from a
//! file, checked at load and replaced by a reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use figment::providers::{Format, Toml};
use figment::Figment;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use portcullis::config::EnvOverrides;
use portcullis::server::reload;
use portcullis::testing::{EchoUpstream, TestIdp};
use serde_json::{json, Value};
use support::Harness;

const HEADER: &str = "x-portcullis-assertion";

fn rules_with(headers: &str) -> String {
    format!(
        "[headers]\nassertion = \"X-Portcullis-Assertion\"\n{headers}\n{}",
        support::TUTORIAL_RULES
    )
}

/// A PKCS#8 PEM P-256 key made from one repeated byte.
fn pem(byte: u8) -> String {
    p256::SecretKey::from_slice(&[byte; 32])
        .unwrap()
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string()
}

/// A token with these realm roles and an email.
fn token(h: &Harness, sub: &str, roles: &[&str]) -> String {
    let mut claims = h.idp.claims(sub, "gateway", "read");
    claims["realm_access"] = json!({ "roles": roles });
    claims["email"] = json!(format!("{sub}@example.com"));
    claims["preferred_username"] = json!(format!("user-{sub}"));
    h.idp.mint(&claims)
}

async fn jwks(gateway: SocketAddr) -> JwkSet {
    let r = support::get(gateway, "/oauth2/jwks", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Verifies `assertion` as an upstream would: the key named by its `kid` in the
/// gateway's JWKS, ES256 only, this issuer and audience, `exp` and `iat` required.
async fn verify(gateway: SocketAddr, assertion: &str, iss: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("a kid in the assertion's header");
    let set = jwks(gateway).await;
    let jwk = set.find(&kid).expect("the assertion's kid is in the JWKS");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[iss]);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap_or_else(|e| panic!("the assertion does not verify: {e}"))
        .claims;
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 60, "iat {iat} exp {exp}");
    claims
}

#[tokio::test]
async fn the_upstream_gets_an_assertion_it_can_verify_with_the_gateways_jwks() {
    let h = Harness::with(&rules_with("")).await;
    let t = token(&h, "u-1", &["ops", "admin", "ops"]);
    let seen = h.get_bearer("/api/private", &t).await.seen();
    let values = seen.header_all(HEADER);
    assert_eq!(values.len(), 1, "exactly one assertion: {values:?}");
    let claims = verify(h.addr(), values[0], &h.public(), &h.upstream.url()).await;
    assert_eq!(claims["iss"], h.public());
    assert_eq!(claims["aud"], h.upstream.url());
    assert_eq!(claims["sub"], "u-1");
    assert_eq!(claims["email"], "u-1@example.com");
    assert_eq!(claims["user"], "user-u-1");
    assert_eq!(claims["roles"], json!(["admin", "ops"]));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // The JWKS: public, JSON, cached briefly, public keys only.
    let r = h.get("/oauth2/jwks", &[]).await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    let cc = r.header("cache-control").unwrap();
    assert!(cc.contains("max-age=") && !cc.contains("no-store"), "{cc}");
    let keys = r.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none());

    // The same identity again: the cached assertion (same jti), not a new signature.
    let again = h.get_bearer("/api/private", &t).await.seen();
    assert_eq!(again.header_all(HEADER), values);
    // Other roles: another assertion.
    let t2 = token(&h, "u-1", &["ops"]);
    let other = h.get_bearer("/api/private", &t2).await.seen();
    let other_claims = verify(
        h.addr(),
        other.header(HEADER).unwrap(),
        &h.public(),
        &h.upstream.url(),
    )
    .await;
    assert_eq!(other_claims["roles"], json!(["ops"]));
    assert_ne!(other_claims["jti"], claims["jti"]);
    h.gw.shutdown().await;
}

#[tokio::test]
async fn client_copies_are_stripped_on_public_and_protected_rules() {
    let h = Harness::with(&rules_with("")).await;
    let forged = [
        ("X-Portcullis-Assertion", "forged.forged.forged"),
        ("x_portcullis_assertion", "forged2"),
        ("X.Portcullis.Assertion", "forged3"),
    ];
    let has_copy = |seen: &portcullis::testing::Seen| {
        seen.headers
            .iter()
            .any(|(k, _)| k.replace(['_', '.'], "-") == HEADER)
    };
    // A public rule without a credential: no assertion at all, and no forged one.
    let seen = h.get("/api/public", &forged).await.seen();
    assert!(!has_copy(&seen), "{:?}", seen.headers);
    // A protected rule: only the gateway's own.
    let t = token(&h, "u-2", &[]);
    let auth = format!("Bearer {t}");
    let mut with_auth = forged.to_vec();
    with_auth.push(("Authorization", &auth));
    let seen = h.get("/api/private", &with_auth).await.seen();
    let values = seen.header_all(HEADER);
    assert_eq!(values.len(), 1, "{:?}", seen.headers);
    assert!(seen.header("x_portcullis_assertion").is_none());
    assert!(seen.header("x.portcullis.assertion").is_none());
    let claims = verify(h.addr(), values[0], &h.public(), &h.upstream.url()).await;
    assert_eq!(claims["sub"], "u-2");
    assert!(claims.get("email").is_some());
    // A public rule with a valid credential gets the assertion, like the identity headers.
    let seen = h.get("/api/public", &with_auth).await.seen();
    assert_eq!(seen.header_all(HEADER).len(), 1);
    assert_ne!(seen.header(HEADER), Some("forged.forged.forged"));
    // A public rule with a refused credential: no identity, no assertion.
    let bad = [("Authorization", "Bearer not.a.token"), forged[0]];
    let seen = h.get("/api/public", &bad).await.seen();
    assert!(!has_copy(&seen), "{:?}", seen.headers);
    h.gw.shutdown().await;
}

#[tokio::test]
async fn the_audience_is_the_origin_of_the_rules_upstream() {
    let billing = EchoUpstream::start().await;
    let extra = format!(
        "[upstreams.billing]\nurl = \"{}/base/path\"\n\n[[rule]]\npath = \"/billing/**\"\nupstream = \"billing\"\n",
        billing.url()
    );
    let h = Harness::with(&format!("{}{extra}", rules_with(""))).await;
    let t = token(&h, "u-3", &[]);
    let r = h.get_bearer("/billing/x", &t).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = billing.seen().pop().unwrap();
    // The origin: scheme, host and port, never the URL's path.
    let claims = verify(
        h.addr(),
        seen.header(HEADER).unwrap(),
        &h.public(),
        &billing.url(),
    )
    .await;
    assert_eq!(claims["aud"], billing.url());
    // The default upstream gets its own audience.
    let seen = h.get_bearer("/api/private", &t).await.seen();
    let claims = verify(
        h.addr(),
        seen.header(HEADER).unwrap(),
        &h.public(),
        &h.upstream.url(),
    )
    .await;
    assert_eq!(claims["aud"], h.upstream.url());
    h.gw.shutdown().await;
}

#[tokio::test]
async fn a_key_from_a_pem_file_is_the_one_published_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("assertion.pem");
    std::fs::write(&file, pem(9)).unwrap();
    let h = Harness::with(&rules_with(&format!(
        "assertion_key_file = {:?}",
        file.display().to_string()
    )))
    .await;
    // The key's own RFC 7638 thumbprint, computed by jsonwebtoken from the PEM.
    let enc = EncodingKey::from_ec_pem(pem(9).as_bytes()).unwrap();
    let expected = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    let kid = expected.thumbprint(ThumbprintHash::SHA256).unwrap();
    let set = jwks(h.addr()).await;
    assert_eq!(set.keys.len(), 1);
    let published = &set.keys[0];
    assert_eq!(published.common.key_id.as_deref(), Some(kid.as_str()));
    assert_eq!(published.algorithm, expected.algorithm, "same public key");
    let t = token(&h, "u-4", &[]);
    let seen = h.get_bearer("/api/private", &t).await.seen();
    let assertion = seen.header(HEADER).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(assertion)
            .unwrap()
            .kid
            .as_deref(),
        Some(kid.as_str())
    );
    verify(h.addr(), assertion, &h.public(), &h.upstream.url()).await;
    h.gw.shutdown().await;
}

fn load_error(toml_extra: &str) -> String {
    let toml = support::config_toml(
        "http://127.0.0.1:1/realm",
        "http://127.0.0.1:2",
        &format!("{toml_extra}\n[[rule]]\npath = \"/**\"\n"),
    );
    match portcullis::config::load_figment(Figment::from(Toml::string(&toml))) {
        Ok(_) => panic!("the configuration should be refused:\n{toml_extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unusable_key_file_is_a_configuration_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let sec1 = dir.path().join("sec1.pem");
    std::fs::write(
        &sec1,
        p256::SecretKey::from_slice(&[3; 32])
            .unwrap()
            .to_sec1_pem(LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (file, why) in [
        (&sec1, "SEC1"),
        (
            &junk,
            "is not a PKCS#8 PEM (\"PRIVATE KEY\") EC key on P-256",
        ),
        (&missing, "cannot read"),
    ] {
        let extra = format!(
            "[headers]\nassertion = \"X-Portcullis-Assertion\"\nassertion_key_file = {:?}\n",
            file.display().to_string()
        );
        let err = load_error(&extra);
        assert!(err.contains("headers.assertion_key_file"), "{err}");
        assert!(err.contains(why), "{err}");
    }
    let err = load_error("[headers]\nassertion = \"Authorization\"\n");
    assert!(err.contains("headers.assertion"), "{err}");
    let err = load_error("[headers]\nassertion = \"X-Auth-User\"\n");
    assert!(err.contains("configured twice"), "{err}");
}

#[tokio::test]
async fn a_reload_with_a_new_key_keeps_the_previous_one_in_the_jwks() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("assertion.pem");
    std::fs::write(&key_file, pem(1)).unwrap();
    let path = dir.path().join("gateway.toml");
    let extra = format!(
        "[headers]\nassertion = \"X-Portcullis-Assertion\"\nassertion_key_file = {:?}\n\n[[rule]]\npath = \"/**\"\n",
        key_file.display().to_string()
    );
    std::fs::write(
        &path,
        support::config_toml(&idp.issuer(), &upstream.url(), &extra),
    )
    .unwrap();
    let env = EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&path, &env).unwrap())
        .await
        .unwrap();
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    let kids = |set: JwkSet| -> Vec<String> {
        set.keys
            .into_iter()
            .map(|k| k.common.key_id.unwrap())
            .collect()
    };
    let first = kids(jwks(gw.addr).await);
    assert_eq!(first.len(), 1);
    let t = idp.mint(&idp.claims("u-5", "gateway", ""));
    let auth = format!("Bearer {t}");
    let r = support::get(gw.addr, "/x", &[("Authorization", &auth)]).await;
    let old_assertion = r.seen().header(HEADER).unwrap().to_owned();

    // New contents in the same file, then a reload: the new key signs, the old one stays
    // listed, so what it signed still verifies.
    std::fs::write(&key_file, pem(2)).unwrap();
    reload::reload(&gw.gateway, &path, &env).unwrap();
    let second = kids(jwks(gw.addr).await);
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[1], first[0]);
    let r = support::get(gw.addr, "/x", &[("Authorization", &auth)]).await;
    let new_assertion = r.seen().header(HEADER).unwrap().to_owned();
    let new_kid = jsonwebtoken::decode_header(&new_assertion)
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(new_kid, second[0]);
    let public = "http://127.0.0.1:8080";
    verify(gw.addr, &old_assertion, public, &upstream.url()).await;
    verify(gw.addr, &new_assertion, public, &upstream.url()).await;

    // The watcher notices a changed key file as it notices a changed configuration.
    tokio::spawn(reload::watch(
        gw.gateway.clone(),
        path.clone(),
        env.clone(),
        Duration::from_millis(50),
        gw.shutdown_handle().subscribe(),
    ));
    // Let the watcher take its first fingerprint (it does so before its first await).
    tokio::task::yield_now().await;
    let tmp = dir.path().join("assertion.tmp");
    std::fs::write(&tmp, pem(3)).unwrap();
    std::fs::rename(&tmp, &key_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = kids(jwks(gw.addr).await);
        if now.len() == 3 {
            assert_eq!(now[1..], second[..]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new key file was never loaded: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn without_a_key_file_the_generated_key_survives_reloads() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let config = |rule: &str| {
        support::config_toml(
            &idp.issuer(),
            &upstream.url(),
            &format!("[headers]\nassertion = \"X-Portcullis-Assertion\"\n\n[[rule]]\npath = \"{rule}\"\n"),
        )
    };
    std::fs::write(&path, config("/**")).unwrap();
    let env = EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&path, &env).unwrap())
        .await
        .unwrap();
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    let before = jwks(gw.addr).await;
    assert_eq!(before.keys.len(), 1);
    std::fs::write(&path, config("/api/**")).unwrap();
    reload::reload(&gw.gateway, &path, &env).unwrap();
    assert_eq!(jwks(gw.addr).await, before);
    gw.shutdown().await;
}

#[tokio::test]
async fn forward_auth_answers_with_the_assertion_too() {
    let h = Harness::with_edit(&rules_with(""), |toml| {
        toml.replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
        )
    })
    .await;
    let t = token(&h, "u-6", &["admin"]);
    let auth = format!("Bearer {t}");
    let r = h
        .get(
            "/oauth2/auth",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/api/private"),
                ("Authorization", &auth),
                ("X-Portcullis-Assertion", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let claims = verify(
        h.addr(),
        r.header(HEADER).unwrap(),
        &h.public(),
        &h.upstream.url(),
    )
    .await;
    assert_eq!(claims["sub"], "u-6");
    // No credential on a public rule: 200 without an assertion.
    let r = h
        .get(
            "/oauth2/auth",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/api/public"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header(HEADER).is_none());
    h.gw.shutdown().await;
}

/// A Python that has PyJWT and cryptography: `$PYTHON`, else `python3`, else
/// `/usr/bin/python3` (Debian's python3-jwt and python3-cryptography, which `.ci/run`
/// installs). Without one this test fails; it never passes silently.
fn python_with_pyjwt() -> String {
    let candidates: Vec<String> = std::env::var("PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_owned(), "/usr/bin/python3".to_owned()])
        .collect();
    for p in &candidates {
        let ok = std::process::Command::new(p)
            .args(["-c", "import jwt, cryptography; jwt.PyJWKClient"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p.clone();
        }
    }
    panic!(
        "this test runs deploy/assertion/verify.py, which needs PyJWT with cryptography, but \
         none of {candidates:?} has them. Install them with `apt-get install python3-jwt \
         python3-cryptography` or `pip install \"pyjwt[crypto]\"`, or set PYTHON to such a \
         python."
    );
}

#[tokio::test]
async fn the_shipped_python_verifier_accepts_the_assertion_and_refuses_others() {
    let python = python_with_pyjwt();
    let h = Harness::with(&rules_with("")).await;
    let mut got = Vec::new();
    for sub in ["u-7", "u-8"] {
        let t = token(&h, sub, &["admin"]);
        let seen = h.get_bearer("/api/private", &t).await.seen();
        got.push(seen.header(HEADER).unwrap().to_owned());
    }
    let (first, other) = (got[0].clone(), got[1].clone());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/assertion/verify.py");
    // The script fetches the JWKS from this gateway, so it runs off the test's thread.
    let run = |audience: String, assertion: String| {
        let (python, script, public) = (python.clone(), script.clone(), h.public());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(script)
                .arg(public)
                .arg(audience)
                .arg(assertion)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .output()
                .unwrap()
        })
    };
    let out = run(h.upstream.url(), first.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "verify.py refused the assertion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["sub"], "u-7");
    assert_eq!(claims["roles"], json!(["admin"]));
    // Meant for another upstream: refused.
    let out = run("http://other.example:3000".into(), first.clone())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Another assertion's claims under this one's signature: refused.
    let parts: Vec<&str> = first.split('.').collect();
    let other_payload = other.split('.').nth(1).unwrap();
    let forged = format!("{}.{other_payload}.{}", parts[0], parts[2]);
    let out = run(h.upstream.url(), forged).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    h.gw.shutdown().await;
}
