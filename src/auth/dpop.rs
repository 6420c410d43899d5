//! DPoP (RFC 9449): access tokens bound to a key the client holds, proved on every request.
//!
//! A token whose claims carry `cnf.jkt` (the SHA-256 thumbprint of the client's public
//! key, RFC 7638) is accepted only as `Authorization: DPoP <token>` together with exactly
//! one `DPoP` header: a proof JWT signed by that key. [`verify_proof`] makes every check of
//! RFC 9449 §4.3, in this order:
//!
//! 1. one `DPoP` header, at most [`MAX_PROOF_LEN`] bytes;
//! 2. a compact JWS whose header and claims are JSON objects without duplicate keys, no
//!    `crit`, `b64` or `zip` (read by [`super::jose`]);
//! 3. `typ` = `dpop+jwt`;
//! 4. `alg` an asymmetric algorithm the gateway verifies ([`ALGS`]), never `none` or HS*;
//! 5. `jwk` a public key (no private member, not symmetric) that fits `alg`;
//! 6. the signature verifies with that key;
//! 7. `jti`, `htm`, `htu`, `iat` and `ath` present with the right types;
//! 8. `htm` = the request's method;
//! 9. `htu` = the request's URL on `server.public_url` (origin of `public_url`, the
//!    request's normalized path), without query or fragment; the `Host` header is never
//!    read, and `htu` is normalized the way request paths are before the comparison;
//! 10. `iat` within `tokens.leeway` of now, either way;
//! 11. `ath` = base64url(SHA-256(token));
//! 12. the key's thumbprint = the token's `cnf.jkt`;
//! 13. `jti` not seen before within the proof's lifetime ([`ReplayGuard`], shared through
//!     Redis when sessions are kept there, so a proof replayed to another replica fails).
//!
//! The gateway issues no `DPoP-Nonce` (RFC 9449 §8 is optional for resource servers).

use std::time::Duration;

use base64::Engine;
use http::Method;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use quick_cache::sync::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jose;
use super::jwks::KeyFamily;
use super::store::{RedisStore, StoreError};

/// The algorithms a proof may use, as the `algs` parameter of a `DPoP` challenge lists
/// them.
pub const ALGS: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA";

/// Largest `DPoP` header accepted.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Largest `jti` accepted (RFC 9449 asks for at least 96 bits of randomness; a longer one
/// only costs memory in the replay store).
const MAX_JTI_LEN: usize = 256;

/// JWK members that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a DPoP proof was refused. Each variant has a fixed public description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the DPoP proof is missing")]
    Missing,
    #[error("more than one DPoP proof")]
    Multiple,
    #[error("the DPoP proof is malformed")]
    Malformed,
    #[error("the DPoP proof's typ is not dpop+jwt")]
    Type,
    #[error("the DPoP proof's algorithm is not accepted")]
    Algorithm,
    #[error("the DPoP proof's jwk is not a usable public key")]
    Key,
    #[error("the DPoP proof's signature is invalid")]
    Signature,
    #[error("the DPoP proof lacks a required claim or has one of the wrong type")]
    Claims,
    #[error("the DPoP proof is for another method")]
    Method,
    #[error("the DPoP proof is for another URL")]
    Url,
    #[error("the DPoP proof was not issued within the accepted time window")]
    Time,
    #[error("the DPoP proof is for another access token")]
    TokenHash,
    #[error("the DPoP proof is signed by a key the token is not bound to")]
    KeyBinding,
    #[error("the DPoP proof was used before")]
    Replayed,
}

/// What a proof must match: the request and the token.
pub struct Expected<'a> {
    pub method: &'a Method,
    /// `public_url` (its origin is compared with the proof's `htu`).
    pub public_url: &'a url::Url,
    /// The request's normalized path.
    pub path: &'a str,
    pub allow_path_params: bool,
    /// The access token the proof comes with.
    pub token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
    /// `tokens.leeway`, in seconds.
    pub leeway: u64,
}

/// A verified proof: its `jti` still has to pass the [`ReplayGuard`].
#[derive(Debug)]
pub struct Proof {
    /// SHA-256 of the key's thumbprint and the `jti`: the replay store's key.
    pub replay_key: [u8; 32],
    /// How long the `jti` must be remembered (until the proof is too old anyway).
    pub remember: Duration,
}

/// A `cnf` claim that is not an object with a string `jkt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedBinding;

/// The `cnf.jkt` of a token's claims: `Ok(None)` = not bound; a `cnf` that is not an object
/// with a string `jkt` is a malformed binding.
pub fn bound_key(claims: &Map<String, Value>) -> Result<Option<&str>, MalformedBinding> {
    match claims.get("cnf") {
        None => Ok(None),
        Some(Value::Object(cnf)) => match cnf.get("jkt") {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            // Another confirmation method (such as `x5t#S256`, RFC 8705): not DPoP.
            None => Ok(None),
            Some(_) => Err(MalformedBinding),
        },
        Some(_) => Err(MalformedBinding),
    }
}

/// Checks one request's proof (`values`: every `DPoP` header value).
pub fn verify_proof<'v>(
    mut values: impl Iterator<Item = &'v http::HeaderValue>,
    expected: &Expected<'_>,
    now: u64,
) -> Result<Proof, ProofError> {
    let first = values.next().ok_or(ProofError::Missing)?;
    if values.next().is_some() {
        return Err(ProofError::Multiple);
    }
    if first.len() > MAX_PROOF_LEN {
        return Err(ProofError::Malformed);
    }
    let proof = first.to_str().map_err(|_| ProofError::Malformed)?.trim();
    let header = jose::header_map(proof).map_err(|_| ProofError::Malformed)?;
    let typed = jose::Header::from_map(&header).map_err(|_| ProofError::Malformed)?;
    if !typed
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(ProofError::Type);
    }
    let alg = typed
        .alg
        .filter(|a| KeyFamily::of(*a).is_some())
        .ok_or(ProofError::Algorithm)?;
    let (key, thumbprint) = public_key(header.get("jwk"), alg)?;
    let (h, p, sig) = jose::split(proof).map_err(|_| ProofError::Malformed)?;
    let message = &proof.as_bytes()[..h.len() + 1 + p.len()];
    if !super::ring_crypto::verify(sig, message, &key, alg) {
        return Err(ProofError::Signature);
    }
    let claims = jose::claims(proof).map_err(|_| ProofError::Malformed)?;
    let string = |k: &str| match claims.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
        _ => Err(ProofError::Claims),
    };
    let jti = string("jti")?;
    let htm = string("htm")?;
    let htu = string("htu")?;
    let ath = string("ath")?;
    let iat = jose::numeric_date(&claims, "iat")
        .ok()
        .flatten()
        .ok_or(ProofError::Claims)?;
    if jti.len() > MAX_JTI_LEN {
        return Err(ProofError::Claims);
    }
    if htm != expected.method.as_str() {
        return Err(ProofError::Method);
    }
    if !same_url(htu, expected) {
        return Err(ProofError::Url);
    }
    let (now_f, leeway) = (now as f64, expected.leeway as f64);
    if iat > now_f + leeway || iat < now_f - leeway {
        return Err(ProofError::Time);
    }
    let token_hash = b64(&Sha256::digest(expected.token.as_bytes()));
    if !constant_eq(ath, &token_hash) {
        return Err(ProofError::TokenHash);
    }
    if !constant_eq(&thumbprint, expected.jkt) {
        return Err(ProofError::KeyBinding);
    }
    let mut h = Sha256::new();
    h.update(thumbprint.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    Ok(Proof {
        replay_key: h.finalize().into(),
        // Until `iat` + leeway has passed, plus a second for the fraction.
        remember: Duration::from_secs(expected.leeway.saturating_mul(2).saturating_add(1)),
    })
}

/// The proof's `jwk`: a public key for `alg`, and its RFC 7638 thumbprint.
fn public_key(jwk: Option<&Value>, alg: Algorithm) -> Result<(DecodingKey, String), ProofError> {
    let Some(Value::Object(members)) = jwk else {
        return Err(ProofError::Key);
    };
    if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err(ProofError::Key);
    }
    let parsed: Jwk =
        serde_json::from_value(Value::Object(members.clone())).map_err(|_| ProofError::Key)?;
    let family = match &parsed.algorithm {
        AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => {
            let curve_fits = matches!(
                (alg, &ec.curve),
                (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
            );
            if !curve_fits {
                return Err(ProofError::Key);
            }
            KeyFamily::Ec
        }
        AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Okp,
        _ => return Err(ProofError::Key),
    };
    if KeyFamily::of(alg) != Some(family) {
        return Err(ProofError::Key);
    }
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| ProofError::Key)?;
    let thumbprint = parsed
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| ProofError::Key)?;
    Ok((key, thumbprint))
}

/// The JWK SHA-256 thumbprint (RFC 7638) of a public key given as JSON members.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let parsed: Jwk = serde_json::from_value(Value::Object(jwk.clone())).ok()?;
    parsed.thumbprint(ThumbprintHash::SHA256).ok()
}

/// Is `htu` the request's URL on `public_url`? Scheme, host and port (default ports
/// implied) must be `public_url`'s; the path, normalized as request paths are, must be
/// the request's; query and fragment are ignored (RFC 9449 §4.3, item 9).
fn same_url(htu: &str, expected: &Expected<'_>) -> bool {
    let Ok(url) = url::Url::parse(htu) else {
        return false;
    };
    let public = expected.public_url;
    if url.scheme() != public.scheme()
        || url.host_str() != public.host_str()
        || url.port_or_known_default() != public.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    crate::path::normalize(url.path(), expected.allow_path_params)
        .is_ok_and(|p| p.as_str() == expected.path)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn constant_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The proofs seen recently, so that none is accepted twice: in memory (bounded), or in
/// Redis when the session store is there, so that every replica sees every proof.
pub struct ReplayGuard {
    seen: Cache<[u8; 32], u64>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(100_000)
    }
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: Cache::new(capacity.max(1)),
        }
    }

    /// Records the proof; false if it was seen before (a replay). Atomic: of concurrent
    /// requests with one proof, exactly one gets true.
    pub async fn first_use(
        &self,
        proof: &Proof,
        store: Option<&RedisStore>,
    ) -> Result<bool, StoreError> {
        match store {
            Some(store) => {
                let key: String = proof
                    .replay_key
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                store.first_use("dpop", &key, proof.remember).await
            }
            None => Ok(super::session::mark_once(
                &self.seen,
                &proof.replay_key,
                crate::unix_now().saturating_add(proof.remember.as_secs()),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
