//! A bounded cache of verified bearer tokens, so a token seen again costs a hash and a
//! look-up instead of a signature check.
//!
//! Keyed by the token's SHA-256 (the token itself is not kept as a key). Entries never
//! outlive the token: a hit past `exp` (plus leeway) is dropped and the token is verified
//! again (and refused). Only valid tokens are cached, so random tokens cannot fill it.
//! The cache belongs to one configuration and is rebuilt with it.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::Identity;

pub struct TokenCache {
    cache: Option<Cache<[u8; 32], Arc<Identity>>>,
    leeway: u64,
}

impl TokenCache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize, leeway: u64) -> TokenCache {
        TokenCache {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            leeway,
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn get(&self, token: &str) -> Option<Arc<Identity>> {
        let cache = self.cache.as_ref()?;
        let key = Self::key(token);
        let id = cache.get(&key)?;
        match id.expires_at {
            Some(exp) if crate::unix_now() <= exp + self.leeway => Some(id),
            _ => {
                cache.remove(&key);
                None
            }
        }
    }

    pub fn insert(&self, token: &str, id: Arc<Identity>) {
        if let (Some(cache), Some(_)) = (&self.cache, id.expires_at) {
            cache.insert(Self::key(token), id);
        }
    }

    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decrypted session cookie with the identity built from it.
pub struct CachedSession {
    pub data: super::session::SessionData,
    pub identity: Arc<Identity>,
}

/// Decrypted session cookies by the SHA-256 of their sealed value, so a browser's repeated
/// requests skip decryption and JSON decoding. Expiry, refresh and revocation are still
/// checked on every hit by the caller.
pub struct SessionCache {
    cache: Cache<[u8; 32], Arc<CachedSession>>,
}

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache {
            cache: Cache::new(capacity.max(1)),
        }
    }

    pub fn key(&self, sealed: &str) -> [u8; 32] {
        Sha256::digest(sealed.as_bytes()).into()
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<CachedSession>> {
        self.cache.get(key)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn insert(
        &self,
        key: [u8; 32],
        data: super::session::SessionData,
        identity: Arc<Identity>,
    ) {
        self.cache
            .insert(key, Arc::new(CachedSession { data, identity }));
    }
}
