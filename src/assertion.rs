//! Signed identity assertions (`headers.assertion`): a short-lived ES256 JWT the gateway
//! signs for the upstream, so an upstream can verify who the gateway let in instead of
//! trusting plain identity headers on faith.
//!
//! Three parts, each with its own lifetime:
//!
//! - [`SigningKey`]: one P-256 key, read from `headers.assertion_key_file` (PKCS#8 PEM) or
//!   generated at start and kept in memory only. Its `kid` is its RFC 7638 thumbprint, so
//!   the same key always has the same `kid`.
//! - [`KeyRing`]: the keys whose public halves `GET <auth_prefix>/jwks` lists, kept for
//!   the process's lifetime: the key the serving configuration signs with, and a key a
//!   reload replaced, for one assertion lifetime after it stopped signing.
//! - [`Signer`]: one configuration's key, issuer and a bounded cache of signed assertions.
//!   Signing is not on every request's path: an assertion for the same identity and the
//!   same upstream origin is reused while more than a third of its lifetime remains.
//!   The `jti` is therefore per token, not per request: an upstream must not treat a
//!   repeated `jti` as a replay.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use quick_cache::sync::Cache;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Seconds from `iat` to `exp` of every assertion.
pub const LIFETIME: u64 = 60;

/// A cached assertion is handed out again only while more than this many seconds of its
/// lifetime remain (a third), so an upstream never receives one about to expire.
const REUSE_WHILE_REMAINING: u64 = LIFETIME / 3;

/// How long a replaced key stays in the JWKS: one assertion lifetime, plus a margin for
/// requests that were still being forwarded with the previous configuration.
const RETIRED_FOR: Duration = Duration::from_secs(LIFETIME + 5);

/// Signed assertions kept per configuration (one per identity and upstream origin).
const CACHE_CAPACITY: usize = 10_000;

/// Why a key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A SEC1 `EC PRIVATE KEY` instead of PKCS#8.
    #[error("is a SEC1 \"EC PRIVATE KEY\"; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in FILE`")]
    Sec1,
    /// An `ENCRYPTED PRIVATE KEY`: the gateway has no passphrase to open it.
    #[error("is an encrypted private key; the gateway needs it unencrypted (`openssl pkcs8 -topk8 -nocrypt`)")]
    Encrypted,
    /// Anything else: not PEM, another key type, another curve.
    #[error("is not a PKCS#8 PEM (\"PRIVATE KEY\") EC key on P-256 (prime256v1)")]
    NotP256,
}

/// One ES256 key: the private half signs, the public half is published.
pub struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    /// The public JWK (`kty`, `crv`, `x`, `y`, `kid`, `use`, `alg`).
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

// === impl SigningKey ===

impl SigningKey {
    /// Reads a PKCS#8 PEM P-256 private key (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`).
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        match p256::SecretKey::from_pkcs8_pem(pem) {
            Ok(k) => Self::from_secret(&k).ok_or(KeyError::NotP256),
            Err(_) if pem.contains("-----BEGIN EC PRIVATE KEY-----") => Err(KeyError::Sec1),
            Err(_) if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
                Err(KeyError::Encrypted)
            }
            Err(_) => Err(KeyError::NotP256),
        }
    }

    /// A new random key, held in memory only.
    pub fn generate() -> SigningKey {
        loop {
            // A 32-byte string is a valid scalar unless it is 0 or not below the group
            // order (probability about 2^-128), so this loop ends at once in practice.
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
                if let Some(key) = Self::from_secret(&k) {
                    return key;
                }
            }
        }
    }

    fn from_secret(secret: &p256::SecretKey) -> Option<SigningKey> {
        let der = secret.to_pkcs8_der().ok()?;
        let point = secret.public_key().to_encoded_point(false);
        let x = URL_SAFE_NO_PAD.encode(point.x()?);
        let y = URL_SAFE_NO_PAD.encode(point.y()?);
        // RFC 7638: the required members in lexicographic order, no white space.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
        });
        Some(SigningKey {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            kid,
            jwk,
        })
    }

    /// The key's id: its RFC 7638 SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    fn sign(&self, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// The keys the JWKS endpoint lists. Lives as long as the process, across reloads.
#[derive(Default)]
pub struct KeyRing {
    /// The key used when no `assertion_key_file` is configured: made on first use, then the
    /// same for every configuration of this process.
    generated: OnceLock<Arc<SigningKey>>,
    state: Mutex<RingState>,
}

#[derive(Default)]
struct RingState {
    /// The key of the configuration being served (`None`: assertions are off).
    current: Option<Arc<SigningKey>>,
    /// Keys that stopped signing, with the moment they leave the JWKS.
    retired: Vec<(Arc<SigningKey>, Instant)>,
}

// === impl KeyRing ===

impl KeyRing {
    /// The generated key of this process.
    pub fn generated(&self) -> Arc<SigningKey> {
        self.generated
            .get_or_init(|| Arc::new(SigningKey::generate()))
            .clone()
    }

    /// Publishes the key the serving configuration signs with (call before that
    /// configuration serves). A different key it replaces stays listed for one assertion
    /// lifetime, so assertions it signed can still be verified until they expire.
    pub fn publish(&self, key: Option<&Arc<SigningKey>>) {
        self.publish_at(key, Instant::now());
    }

    fn publish_at(&self, key: Option<&Arc<SigningKey>>, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let same = match (&st.current, key) {
            (Some(a), Some(b)) => a.kid == b.kid,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if let Some(key) = key {
            // A key that comes back is current again, not also retired.
            st.retired.retain(|(k, _)| k.kid != key.kid);
        }
        if let Some(old) = st.current.take() {
            // Most recently retired first.
            st.retired.insert(0, (old, now + RETIRED_FOR));
        }
        st.current = key.cloned();
    }

    /// The JWK Set: the current key first, then the retired ones still listed, newest
    /// first.
    pub fn jwks(&self) -> Value {
        self.jwks_at(Instant::now())
    }

    fn jwks_at(&self, now: Instant) -> Value {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.retired.retain(|(_, until)| *until > now);
        let keys: Vec<Value> = st
            .current
            .iter()
            .chain(st.retired.iter().map(|(k, _)| k))
            .map(|k| k.jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

/// Who an assertion is about: the identity's `sub`, `email`, user name and roles.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub sub: &'a str,
    pub email: Option<&'a str>,
    pub user: &'a str,
    pub roles: &'a [String],
}

impl Subject<'_> {
    fn hash_into<H: Hasher>(&self, h: &mut H) {
        self.sub.hash(h);
        self.email.hash(h);
        self.user.hash(h);
        self.roles.hash(h);
    }
}

/// A signed assertion kept for reuse, with what it was signed for (a hit must match it
/// exactly: the cache key is only a hash).
struct Cached {
    sub: String,
    email: Option<String>,
    user: String,
    roles: Vec<String>,
    audience: String,
    iat: u64,
    exp: u64,
    value: HeaderValue,
}

impl Cached {
    fn is_for(&self, who: &Subject<'_>, audience: &str) -> bool {
        self.sub == who.sub
            && self.email.as_deref() == who.email
            && self.user == who.user
            && self.roles == who.roles
            && self.audience == audience
    }

    fn fresh_at(&self, now: u64) -> bool {
        self.iat <= now && self.exp.saturating_sub(now) > REUSE_WHILE_REMAINING
    }
}

/// One configuration's assertions: its key, its issuer, its cache.
pub struct Signer {
    key: Arc<SigningKey>,
    /// `server.public_url` without a trailing `/`.
    issuer: String,
    cache: Cache<u64, Arc<Cached>>,
    hasher: foldhash::quality::RandomState,
}

// === impl Signer ===

impl Signer {
    pub fn new(key: Arc<SigningKey>, issuer: String) -> Signer {
        Signer {
            key,
            issuer,
            cache: Cache::new(CACHE_CAPACITY),
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// The key it signs with (to publish).
    pub fn key(&self) -> &Arc<SigningKey> {
        &self.key
    }

    /// The assertion about `who` for the upstream at `audience` (its URL origin), from the
    /// cache while it is fresh, else newly signed. `None` only if signing fails (logged).
    pub fn assertion(&self, who: &Subject<'_>, audience: &str) -> Option<HeaderValue> {
        self.assertion_at(who, audience, crate::unix_now())
    }

    fn assertion_at(&self, who: &Subject<'_>, audience: &str, now: u64) -> Option<HeaderValue> {
        let mut h = self.hasher.build_hasher();
        who.hash_into(&mut h);
        audience.hash(&mut h);
        let key = h.finish();
        if let Some(c) = self.cache.get(&key) {
            if c.is_for(who, audience) && c.fresh_at(now) {
                return Some(c.value.clone());
            }
        }
        let exp = now + LIFETIME;
        let jti: [u8; 16] = rand::random();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": who.sub,
            "user": who.user,
            "roles": who.roles,
            "iat": now,
            "exp": exp,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        if let (Some(email), Some(map)) = (who.email, claims.as_object_mut()) {
            map.insert("email".into(), Value::from(email));
        }
        let token = match self.key.sign(&claims) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an identity assertion; none is sent");
                return None;
            }
        };
        // A JWT is base64url and dots: always a valid header value.
        let value = HeaderValue::from_str(&token).ok()?;
        self.cache.insert(
            key,
            Arc::new(Cached {
                sub: who.sub.to_owned(),
                email: who.email.map(str::to_owned),
                user: who.user.to_owned(),
                roles: who.roles.to_vec(),
                audience: audience.to_owned(),
                iat: now,
                exp,
                value: value.clone(),
            }),
        );
        Some(value)
    }
}

#[cfg(test)]
mod tests;
