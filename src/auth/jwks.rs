//! The provider's signing keys: discovered, fetched, refreshed, and looked up by `kid`.
//!
//! Keys live behind an atomic pointer, so request handling never waits on a lock to read
//! them. A background task discovers the provider and refreshes the keys every
//! `tokens.jwks_refresh`; until the first fetch succeeds the cache is not ready (`/readyz`
//! is 503 and bearer requests get 503). A failed refresh keeps the keys already held. A
//! token with an unknown `kid` may trigger one extra fetch, at most once per
//! [`MIN_REFETCH_INTERVAL`], so random `kid`s cannot cause a fetch storm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

use super::provider::{ProviderClient, ProviderError, ProviderMetadata};
use super::ring_crypto;
use crate::metrics::Metrics;

/// The shortest time between two fetches caused by unknown `kid`s.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Key families, for matching a token's `alg` with a key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Okp,
}

impl KeyFamily {
    pub fn of(alg: Algorithm) -> Option<KeyFamily> {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(KeyFamily::Rsa),
            ES256 | ES384 => Some(KeyFamily::Ec),
            EdDSA => Some(KeyFamily::Okp),
            _ => None,
        }
    }
}

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one: then only that algorithm may use the key.
    pub alg: Option<Algorithm>,
    pub family: KeyFamily,
    pub key: DecodingKey,
}

impl Key {
    pub fn fits(&self, alg: Algorithm) -> bool {
        KeyFamily::of(alg) == Some(self.family) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The keys of one fetch.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    all: Vec<Arc<Key>>,
    /// The same keys for `openidconnect`'s ID-token verifier.
    pub oidc: openidconnect::core::CoreJsonWebKeySet,
}

impl KeySet {
    /// Keeps the signature keys the gateway can use: RSA, EC and OKP public keys not marked
    /// for encryption. Symmetric (`oct`) keys are dropped: they would make HS* possible.
    pub fn from_jwks(set: &JwkSet) -> KeySet {
        let mut out = KeySet::default();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
                AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Okp,
                _ => continue,
            };
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(ka) => match signing_alg(ka) {
                    Some(a) => Some(a),
                    None => continue, // an encryption algorithm such as RSA-OAEP
                },
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            // Kept, so its tokens get the usual answer for a bad signature; but say why.
            if let Some(bits) = ring_crypto::rsa_modulus_bits(&key) {
                if bits < ring_crypto::MIN_RSA_BITS {
                    tracing::warn!(
                        kid = jwk.common.key_id.as_deref().unwrap_or(""),
                        bits,
                        "an RSA key of the provider is shorter than 2048 bits: tokens it signs are refused"
                    );
                }
            }
            let key = Arc::new(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                family,
                key,
            });
            if let Some(kid) = &key.kid {
                out.by_kid.insert(kid.clone(), key.clone());
            }
            out.all.push(key);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Keys that may verify a token with this `kid` and `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<Key>> {
        match kid {
            Some(k) => self
                .by_kid
                .get(k)
                .filter(|key| key.fits(alg))
                .cloned()
                .into_iter()
                .collect(),
            None => self
                .all
                .iter()
                .filter(|key| key.fits(alg))
                .cloned()
                .collect(),
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}

fn signing_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match ka {
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Why a token's signature was not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The provider's keys were never fetched.
    KeysUnavailable,
    /// No key fits the token's `kid` and `alg` (after at most one refetch).
    UnknownKey,
    /// Not a compact JWS.
    Malformed,
    /// No fitting key verifies the signature.
    Invalid,
}

/// Verifies the signature of a compact JWS with any of `keys` (already chosen for its
/// `kid` and `alg`).
pub fn verify_with(token: &str, alg: Algorithm, keys: &[Arc<Key>]) -> Result<(), SignatureError> {
    let (h, p, sig) = super::jose::split(token).map_err(|_| SignatureError::Malformed)?;
    // `split` returned sub-slices of `token`: the signed message is its first two parts.
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let verified = keys
        .iter()
        .any(|key| ring_crypto::verify(sig, message, &key.key, alg));
    if verified {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// Discovery and keys of the configured issuer, shared by every request.
pub struct JwksCache {
    issuer: String,
    client: ProviderClient,
    /// Discovery result; `None` until discovery succeeded once.
    metadata: ArcSwapOption<ProviderMetadata>,
    /// The current keys (empty until the first fetch).
    keys: ArcSwap<KeySet>,
    /// Set once keys were fetched; never cleared (old keys keep serving).
    ready: AtomicBool,
    /// Single flight for fetches triggered by unknown `kid`s, and when the last one ran.
    refetch: Mutex<Option<Instant>>,
    /// Seconds since the epoch of the last successful key fetch.
    last_success: AtomicU64,
    metrics: Arc<Metrics>,
}

impl JwksCache {
    pub fn new(issuer: String, client: ProviderClient, metrics: Arc<Metrics>) -> Arc<Self> {
        // Whatever else in the process uses `jsonwebtoken` then verifies with ring too
        // (the gateway's own checks call ring directly, installed or not).
        super::ring_crypto::install();
        Arc::new(JwksCache {
            issuer,
            client,
            metadata: ArcSwapOption::empty(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            ready: AtomicBool::new(false),
            refetch: Mutex::new(None),
            last_success: AtomicU64::new(0),
            metrics,
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn metadata(&self) -> Option<Arc<ProviderMetadata>> {
        self.metadata.load_full()
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Discovers (if not yet done) and fetches the keys once.
    pub async fn refresh(&self) -> Result<usize, ProviderError> {
        let meta = match self.metadata.load_full() {
            Some(m) => m,
            None => {
                let m = Arc::new(self.client.discover(&self.issuer).await?);
                self.metadata.store(Some(m.clone()));
                m
            }
        };
        let result = self
            .client
            .get_json::<serde_json::Value>(&meta.jwks_uri)
            .await;
        self.metrics.jwks_fetch(result.is_ok());
        let doc = result?;
        let invalid = |e: serde_json::Error| ProviderError::Document {
            url: meta.jwks_uri.clone(),
            reason: e.to_string(),
        };
        // Key by key, so one key of a kind this library does not know spoils nothing.
        let keys = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let jwks = JwkSet {
            keys: keys
                .iter()
                .filter_map(|k| serde_json::from_value(k.clone()).ok())
                .collect(),
        };
        let mut set = KeySet::from_jwks(&jwks);
        set.oidc = serde_json::from_value(doc).unwrap_or_else(|e| {
            tracing::warn!(error = %invalid(e), "the JWKS cannot be used for ID tokens");
            Default::default()
        });
        let n = set.len();
        if n == 0 {
            return Err(ProviderError::Document {
                url: meta.jwks_uri.clone(),
                reason: "no usable signature keys".into(),
            });
        }
        self.keys.store(Arc::new(set));
        self.ready.store(true, Ordering::Release);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_success.store(now, Ordering::Relaxed);
        Ok(n)
    }

    /// Called for a `kid` not in the current set: fetches again unless a `kid`-triggered
    /// fetch ran within [`MIN_REFETCH_INTERVAL`]. Returns the keys to use afterwards.
    ///
    /// Every verification path (bearer tokens, ID tokens at the callback and on refresh,
    /// logout tokens) goes through here, so one shared, rate-limited fetch serves them all.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> Arc<KeySet> {
        self.refetch(kid, false).await
    }

    /// Like [`JwksCache::refetch_for_unknown_kid`], but when a fetch ran within the last
    /// [`MIN_REFETCH_INTERVAL`] (perhaps for an attacker's random `kid`), waits until the
    /// interval is over and fetches then, instead of failing at once. For ID tokens: a
    /// login or a refresh is worth a wait of a few seconds, and they come at human rates.
    pub async fn refetch_for_unknown_kid_patiently(&self, kid: &str) -> Arc<KeySet> {
        self.refetch(kid, true).await
    }

    /// Verifies a token's signature with the issuer's keys for its `kid` and `alg`; a
    /// `kid` the current set lacks makes [`JwksCache::refetch_for_unknown_kid`] run.
    pub async fn verify_signature(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<(), SignatureError> {
        if !self.is_ready() {
            return Err(SignatureError::KeysUnavailable);
        }
        let mut keys = self.keys().candidates(kid, alg);
        if keys.is_empty() {
            if let Some(k) = kid {
                keys = self
                    .refetch_for_unknown_kid(k)
                    .await
                    .candidates(Some(k), alg);
            }
        }
        if keys.is_empty() {
            return Err(SignatureError::UnknownKey);
        }
        verify_with(token, alg, &keys)
    }

    async fn refetch(&self, kid: &str, patient: bool) -> Arc<KeySet> {
        let mut waited = false;
        loop {
            let mut last = self.refetch.lock().await;
            // Another request may have fetched while this one waited.
            let current = self.keys();
            if current.has_kid(kid) {
                return current;
            }
            if let Some(t) = *last {
                let since = t.elapsed();
                if since < MIN_REFETCH_INTERVAL {
                    if !patient || waited {
                        return current;
                    }
                    drop(last);
                    tokio::time::sleep(MIN_REFETCH_INTERVAL - since).await;
                    waited = true;
                    continue;
                }
            }
            *last = Some(Instant::now());
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "fetching the provider's keys for an unknown kid failed");
            }
            return self.keys();
        }
    }

    /// Runs until the process ends: discovers, fetches, then refreshes every `every`,
    /// retrying failures with exponential backoff.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut backoff = BACKOFF_START;
        loop {
            match self.refresh().await {
                Ok(n) => {
                    tracing::debug!(keys = n, issuer = %self.issuer, "fetched the provider's signing keys");
                    backoff = BACKOFF_START;
                    tokio::time::sleep(every).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the OpenID provider");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX).min(every);
                }
            }
        }
    }
}
