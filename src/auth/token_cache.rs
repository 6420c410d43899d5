//! A bounded cache of verified bearer tokens, so a token seen again costs a hash and a
//! look-up instead of a signature check.
//!
//! Keyed by a keyed 64-bit hash of the token (SipHash with a random key per cache); a hit
//! counts only if the cached identity's token is the presented token, byte for byte, so a
//! hash collision is a miss, never someone else's identity. Entries never outlive the
//! token: a hit past `exp` (plus leeway) is dropped and the token is verified
//! again (and refused). Only valid tokens are cached, so random tokens cannot fill it.
//! The cache belongs to one configuration and is rebuilt with it.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::Identity;

pub struct TokenCache {
    cache: Option<Cache<u64, Arc<Identity>>>,
    hasher: std::hash::RandomState,
    leeway: u64,
}

impl TokenCache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize, leeway: u64) -> TokenCache {
        TokenCache {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            hasher: std::hash::RandomState::new(),
            leeway,
        }
    }

    fn key(&self, token: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(token.as_bytes())
    }

    pub fn get(&self, token: &str) -> Option<Arc<Identity>> {
        let cache = self.cache.as_ref()?;
        let key = self.key(token);
        let id = cache.get(&key)?;
        if id.access_token.as_deref() != Some(token) {
            return None;
        }
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
            // The identity must carry the token: that is what a hit is checked against.
            if id.access_token.as_deref() == Some(token) {
                cache.insert(self.key(token), id);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(token: &str, exp: u64) -> Arc<Identity> {
        Arc::new(Identity {
            subject: "svc".into(),
            username: None,
            email: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: Default::default(),
            expires_at: Some(exp),
            access_token: Some(token.to_owned()),
            from_bearer: true,
        })
    }

    #[test]
    fn a_hit_needs_the_same_token_and_a_live_expiry() {
        let now = crate::unix_now();
        let cache = TokenCache::new(100, 30);
        cache.insert("a.b.c", identity("a.b.c", now + 60));
        assert!(cache.get("a.b.c").is_some());
        assert!(cache.get("a.b.d").is_none());
        // An identity that does not carry the token is never cached.
        cache.insert("x.y.z", identity("other", now + 60));
        assert!(cache.get("x.y.z").is_none());
        // Past exp plus leeway: gone.
        cache.insert("old", identity("old", now - 31));
        assert!(cache.get("old").is_none());
        cache.insert("lenient", identity("lenient", now - 29));
        assert!(cache.get("lenient").is_some());
        // Disabled.
        let off = TokenCache::new(0, 30);
        off.insert("a.b.c", identity("a.b.c", now + 60));
        assert!(off.get("a.b.c").is_none());
    }
}
