//! The identity side of the load benchmark: an in-process OpenID provider (discovery and
//! JWKS with a key made at start), a valid RS256 bearer token with a scope and roles, and
//! a valid encrypted session cookie for the same configuration. Writes them as shell
//! variables to the file named by the first argument, then serves until killed.
//!
//! For the peer benchmark's enforcement probes it also writes tokens that must each be
//! refused: `NOSCOPE_TOKEN` (no `test_api_access` scope), `WRONGAUD_TOKEN` (`aud`
//! "other"), `WRONGISS_TOKEN` (another issuer) and `EXPIRED_TOKEN` (expired an hour ago),
//! all signed with the same key.
//!
//! For the cold-token scenario it writes `COLD_N` (`BENCH_COLD_TOKENS`, default 20000; 0: none)
//! distinct valid tokens, one per line, each with its own `jti` and otherwise the claims of
//! `TOKEN`, to the file that `COLD_TOKENS` names (`OUT.cold`). They are signed after the
//! env file is written, on every core, and the file appears (by rename) only when all are
//! in it, so the other scenarios need not wait for them.
//!
//! ```sh
//! cargo run --release --features test-util --example bench_env -- /tmp/bench.env SESSION_SECRET [REDIS_URL]
//! ```
//!
//! With a `REDIS_URL` the same session is also stored there (`session.store = "redis"`,
//! key prefix `portcullis:`), and `REDIS_COOKIE` names it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::auth::session::{random_token, SessionCodec, SessionData};
use portcullis::config::{SameSite, Secret, SessionSettings, SessionStoreKind};
use portcullis::testing::{now, TestIdp};
use serde_json::json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "bench.env".into());
    let secret = args
        .next()
        .unwrap_or_else(|| "bench-session-secret-0123456789abcdef".into());
    let redis_url = args.next();
    let idp = TestIdp::start().await;
    let mut claims = idp.claims("bench-client", "gateway", "openid test_api_access");
    claims["exp"] = json!(now() + 24 * 3600);
    claims["preferred_username"] = json!("bench");
    claims["realm_access"] = json!({"roles": ["user", "offline_access"]});
    claims["resource_access"] = json!({"gateway": {"roles": ["admin", "user"]}});
    let token = idp.mint(&claims);
    let probe = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims.clone();
        change(&mut c);
        idp.mint(&c)
    };
    let noscope = probe(&|c| c["scope"] = json!("openid"));
    let wrong_aud = probe(&|c| {
        c["aud"] = json!("other");
        c["azp"] = json!("other");
    });
    let wrong_iss = probe(&|c| c["iss"] = json!("http://127.0.0.1:1/realms/other"));
    let expired = probe(&|c| {
        c["iat"] = json!(now() - 7200);
        c["exp"] = json!(now() - 3600);
    });
    let mut id_claims = claims.clone();
    id_claims["typ"] = json!("ID");
    let id_token = idp.mint(&id_claims);

    let settings = SessionSettings {
        secret: Secret::new(secret),
        cookie_name: "portcullis".into(),
        lifetime: std::time::Duration::from_secs(24 * 3600),
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
    let codec = SessionCodec::new(&settings, &idp.issuer(), "gateway", Default::default());
    let data = SessionData {
        sid: random_token(18),
        iat: now(),
        exp: now() + 24 * 3600,
        id_token,
        access_token: Some(token.clone()),
        refresh_token: None,
        at_exp: Some(now() + 24 * 3600),
    };
    let cookies: Vec<String> = codec
        .seal(&data, 0)
        .iter()
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
        .collect();
    let cold_n: usize = std::env::var("BENCH_COLD_TOKENS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let cold_path = format!("{out}.cold");
    let mut env = format!(
        "ISSUER='{}'\nTOKEN='{}'\nCOOKIE='{}'\nNOSCOPE_TOKEN='{noscope}'\n\
         WRONGAUD_TOKEN='{wrong_aud}'\nWRONGISS_TOKEN='{wrong_iss}'\nEXPIRED_TOKEN='{expired}'\n\
         COLD_TOKENS='{cold_path}'\nCOLD_N={cold_n}\n",
        idp.issuer(),
        token,
        cookies.join("; ")
    );
    if let Some(url) = redis_url {
        let sealed = codec
            .seal_stored(&data)
            .ok_or_else(|| std::io::Error::other("the session cannot be sealed"))?;
        let mut con = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .map_err(std::io::Error::other)?;
        redis::cmd("SET")
            .arg(format!("portcullis:s:{}", data.sid))
            .arg(sealed)
            .arg("EX")
            .arg(24 * 3600)
            .query::<()>(&mut con)
            .map_err(std::io::Error::other)?;
        let reference = portcullis::auth::authenticate::store_cookie(&codec, &data, 0);
        let cookie: Vec<&str> = reference
            .iter()
            .map(|c| c.split(';').next().unwrap_or(""))
            .collect();
        env.push_str(&format!("REDIS_COOKIE='{}'\n", cookie.join("; ")));
    }
    std::fs::write(&out, env)?;
    let key = idp.current_key();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": key.kid});
    let der = key.encoding.as_bytes().to_vec();
    if cold_n > 0 {
        tokio::task::spawn_blocking(move || {
            cold_tokens(&cold_path, cold_n, &header, &claims, &der)
        })
        .await
        .map_err(std::io::Error::other)??;
    }
    // Serve discovery and JWKS until the benchmark kills this process.
    std::future::pending::<()>().await;
    Ok(())
}

/// Writes `n` tokens that differ only by `jti`, signed (RS256) with the provider's key.
/// ring signs them (RustCrypto's signer parses the key again for every token), on every
/// core.
fn cold_tokens(
    path: &str,
    n: usize,
    header: &serde_json::Value,
    claims: &serde_json::Value,
    pkcs1_der: &[u8],
) -> std::io::Result<()> {
    let pair = ring::signature::RsaKeyPair::from_der(pkcs1_der)
        .map_err(|e| std::io::Error::other(format!("the provider's key: {e}")))?;
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let chunks: Vec<std::io::Result<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (pair, head) = (&pair, &head);
                scope.spawn(move || -> std::io::Result<String> {
                    let rng = ring::rand::SystemRandom::new();
                    let mut out = String::new();
                    let mut sig = vec![0u8; pair.public().modulus_len()];
                    for i in (t..n).step_by(threads) {
                        let mut c = claims.clone();
                        c["jti"] = json!(format!("cold-{i}-{}", random_token(6)));
                        let signed = format!("{head}.{}", URL_SAFE_NO_PAD.encode(c.to_string()));
                        pair.sign(
                            &ring::signature::RSA_PKCS1_SHA256,
                            &rng,
                            signed.as_bytes(),
                            &mut sig,
                        )
                        .map_err(|e| std::io::Error::other(format!("signing: {e}")))?;
                        out.push_str(&signed);
                        out.push('.');
                        out.push_str(&URL_SAFE_NO_PAD.encode(&sig));
                        out.push('\n');
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a signer panicked")))
            })
            .collect()
    });
    let mut all = String::new();
    for c in chunks {
        all.push_str(&c?);
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, all)?;
    std::fs::rename(&tmp, path)
}
