//! Micro-benchmarks of the hot path: path normalization, rule matching as the table grows,
//! bearer-token validation (signature check versus cache hit), one signature check with
//! each backend (RustCrypto, as jsonwebtoken's default provider does it, and ring, as the
//! gateway does it), session cookie decoding.
//!
//! ```sh
//! cargo bench --bench micro
//! cargo bench --bench micro -- signature/   # the backends only
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use portcullis::auth::bearer::BearerValidator;
use portcullis::auth::jwks::JwksCache;
use portcullis::auth::provider::ProviderClient;
use portcullis::auth::session::{random_token, SessionCodec, SessionData, SessionLookup};
use portcullis::auth::token_cache::TokenCache;
use portcullis::auth::Identity;
use portcullis::config::diagnostics::Diagnostics;
use portcullis::config::raw::RawRule;
use portcullis::config::{
    OidcSettings, SameSite, Secret, SessionSettings, SessionStoreKind, TokenSettings,
};
use portcullis::metrics::Metrics;
use portcullis::path::normalize;
use portcullis::rules;
use portcullis::testing::{now, TestIdp};

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    g.bench_function("clean", |b| {
        b.iter(|| normalize(black_box("/api/v1/users/42/orders"), false))
    });
    g.bench_function("messy", |b| {
        b.iter(|| normalize(black_box("//api/./v1/../v1/%75sers/42/x%20y/"), false))
    });
    g.finish();
}

fn rule(path: String, scopes: Vec<String>) -> RawRule {
    RawRule {
        path: Some(path),
        scopes,
        ..RawRule::default()
    }
}

fn table(n: usize) -> rules::RuleTable {
    let mut raw = vec![rule("/**".into(), vec![])];
    for i in 0..n {
        let r = match i % 3 {
            0 => rule(format!("/svc{i}/**"), vec!["read".into()]),
            1 => rule(format!("/svc{i}/items/*"), vec![]),
            _ => rule(format!("/svc{i}/health"), vec![]),
        };
        raw.push(r);
    }
    let mut d = Diagnostics::default();
    let t = portcullis::config::rules::build(&raw, false, &[], &mut d);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    t
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules/find");
    for n in [10usize, 1_000, 10_000] {
        let t = table(n);
        // A path that walks the trie and ends in a wildcard rule, near the middle of the table.
        let i = (n / 2) / 3 * 3 + 1;
        let p = normalize(&format!("/svc{i}/items/42"), false).expect("valid");
        assert!(t.find(&Method::GET, &p).is_some());
        g.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| t.find(&Method::GET, black_box(p)))
        });
    }
    g.finish();
}

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let idp = rt.block_on(TestIdp::start());
    let jwks = JwksCache::new(
        idp.issuer(),
        ProviderClient::new(),
        Arc::new(Metrics::new()),
    );
    rt.block_on(jwks.refresh()).expect("keys");
    let oidc = OidcSettings {
        issuer: idp.issuer(),
        client_id: "gateway".into(),
        client_secret: None,
        scopes: vec!["openid".into()],
    };
    let settings = TokenSettings {
        audiences: vec!["gateway".into()],
        algorithms: vec![jsonwebtoken::Algorithm::RS256],
        leeway: std::time::Duration::from_secs(30),
        roles_claims: vec![
            portcullis::claims::ClaimPath::parse("realm_access.roles").expect("valid")
        ],
        jwks_refresh: std::time::Duration::from_secs(300),
        cache_size: 10_000,
        introspection: false,
        introspection_ttl: std::time::Duration::from_secs(60),
        introspection_cache_size: 0,
        dpop: portcullis::config::DpopMode::Allow,
        issuers: Vec::new(),
    };
    let v = BearerValidator::new(&oidc, &settings);
    let mut claims = idp.claims("svc", "gateway", "read write");
    claims["realm_access"] = serde_json::json!({"roles": ["a", "b"]});
    let token = idp.mint(&claims);
    let cache = TokenCache::new(10_000, 30);
    let verified = rt.block_on(v.validate(&token, &jwks)).expect("valid");
    let mut id = Identity::from_claims(verified, &settings);
    id.access_token = Some(token.clone());
    cache.insert(&token, Arc::new(id));

    let mut g = c.benchmark_group("bearer");
    g.bench_function("validate_cold_rs256", |b| {
        b.iter(|| {
            let claims = rt
                .block_on(v.validate(black_box(&token), &jwks))
                .expect("valid");
            Identity::from_claims(claims, &settings)
        })
    });
    g.bench_function("cache_hit", |b| {
        b.iter(|| cache.get(black_box(&token)).expect("hit"))
    });
    g.finish();

    let session = SessionSettings {
        secret: Secret::new("bench-session-secret-0123456789abcdef".into()),
        cookie_name: "portcullis".into(),
        lifetime: std::time::Duration::from_secs(3600),
        secure: false,
        same_site: SameSite::Lax,
        refresh: false,
        store: SessionStoreKind::Cookie,
        redis_url: None,
        redis_urls: Vec::new(),
        redis_key_prefix: "portcullis:".into(),
        previous_secrets: Vec::new(),
        state_dir: None,
        outlive_access_token: false,
        websocket_check: std::time::Duration::from_secs(30),
    };
    let codec = SessionCodec::new(&session, &idp.issuer(), "gateway", Default::default());
    let data = SessionData {
        sid: random_token(18),
        iat: now(),
        exp: now() + 3600,
        id_token: token.clone(),
        access_token: Some(token.clone()),
        refresh_token: Some(random_token(600)),
        at_exp: Some(now() + 3600),
    };
    let cookie: Vec<String> = codec
        .seal(&data, 0)
        .iter()
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&cookie.join("; ")).expect("valid"),
    );
    let mut g = c.benchmark_group("session");
    g.bench_function("open", |b| {
        b.iter(|| match codec.open(black_box(&headers)) {
            SessionLookup::Valid { data, .. } => data,
            other => panic!("{other:?}"),
        })
    });
    g.bench_function("open_and_identity", |b| {
        b.iter(|| match codec.open(black_box(&headers)) {
            SessionLookup::Valid { data, .. } => Identity::from_session(&data, &settings),
            other => panic!("{other:?}"),
        })
    });
    g.finish();
}

/// One compact-JWS signature check per iteration, the way each backend is called per
/// token: RustCrypto through jsonwebtoken's verifier factory (what
/// `jsonwebtoken::crypto::verify` does with its default provider: a verifier per call,
/// the signature decoded from base64url), ring through `ring_crypto::verify`.
fn signatures(c: &mut Criterion) {
    use base64::Engine;
    use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
    use portcullis::auth::ring_crypto;
    use ring::signature::KeyPair;

    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let rsa = portcullis::testing::idp::SigningKey::generate("bench");
    let rsa_public = DecodingKey::from_rsa_components(
        rsa.jwk["n"].as_str().expect("n"),
        rsa.jwk["e"].as_str().expect("e"),
    )
    .expect("RSA key");
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256 key");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
    let point = pair.public_key().as_ref();
    let ec_public =
        DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..])).expect("EC key");
    let ec_signing = EncodingKey::from_ec_der(pkcs8.as_ref());

    // A token-sized message: header and claims as the benchmark provider writes them.
    let message = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"RS256","kid":"bench"}"#),
        b64(&[b'x'; 400])
    );
    let mut g = c.benchmark_group("signature");
    for (name, alg, signing, public) in [
        ("rs256", Algorithm::RS256, &rsa.encoding, &rsa_public),
        ("es256", Algorithm::ES256, &ec_signing, &ec_public),
    ] {
        let sig = (DEFAULT_PROVIDER.signer_factory)(&alg, signing)
            .expect("signer")
            .try_sign(message.as_bytes())
            .expect("sign");
        let sig = b64(&sig);
        let rust_crypto = |sig: &str| {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .expect("base64url");
            (DEFAULT_PROVIDER.verifier_factory)(&alg, public)
                .expect("verifier")
                .verify(message.as_bytes(), &raw)
                .is_ok()
        };
        assert!(rust_crypto(&sig));
        assert!(ring_crypto::verify(&sig, message.as_bytes(), public, alg));
        g.bench_function(format!("{name}_rust_crypto"), |b| {
            b.iter(|| assert!(rust_crypto(black_box(&sig))))
        });
        g.bench_function(format!("{name}_ring"), |b| {
            b.iter(|| {
                assert!(ring_crypto::verify(
                    black_box(&sig),
                    message.as_bytes(),
                    public,
                    alg
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, paths, matching, tokens, signatures);
criterion_main!(benches);
