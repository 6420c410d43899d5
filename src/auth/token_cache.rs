//! A bounded cache of verified bearer tokens, so a token seen again costs a hash and a
//! look-up instead of a signature check.
//!
//! Keyed by a seeded 64-bit hash of the token (foldhash, random seed per cache); a hit
//! counts only if the cached identity's token is the presented token, byte for byte, so a
//! hash collision is a miss, never someone else's identity. Entries never outlive the
//! token: a hit past `exp` (plus leeway) is dropped and the token is verified
//! again (and refused). Only valid tokens are cached, so random tokens cannot fill it.
//! The cache belongs to one configuration and is rebuilt with it.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::Identity;

pub struct TokenCache {
    cache: Option<Cache<u64, Arc<Identity>>>,
    hasher: foldhash::quality::RandomState,
    leeway: u64,
}

impl TokenCache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize, leeway: u64) -> TokenCache {
        TokenCache {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            hasher: foldhash::quality::RandomState::default(),
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
            Some(exp) if crate::unix_now() <= exp.saturating_add(self.leeway) => Some(id),
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
    check: u64,
}

/// Where a sealed session cookie is cached: two independently seeded 64-bit hashes of the
/// whole sealed value, one to find the entry and one to confirm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey {
    slot: u64,
    check: u64,
}

/// Decrypted session cookies by a 128-bit seeded hash of their sealed value, so a
/// browser's repeated requests skip decryption and JSON decoding. The seeds are random per
/// cache: nobody can make another cookie land on someone's entry without knowing that
/// cookie, and then they would hold it anyway; a changed byte anywhere is a different key,
/// so a tampered cookie is decrypted (and refused) like any new one. Expiry, refresh and
/// revocation are still checked on every hit by the caller.
pub struct SessionCache {
    cache: Cache<u64, Arc<CachedSession>>,
    slot: foldhash::quality::RandomState,
    check: foldhash::quality::RandomState,
}

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache {
            cache: Cache::new(capacity.max(1)),
            slot: foldhash::quality::RandomState::default(),
            check: foldhash::quality::RandomState::default(),
        }
    }

    pub fn key(&self, sealed: &str) -> SessionKey {
        use std::hash::BuildHasher;
        SessionKey {
            slot: self.slot.hash_one(sealed.as_bytes()),
            check: self.check.hash_one(sealed.as_bytes()),
        }
    }

    pub fn get(&self, key: &SessionKey) -> Option<Arc<CachedSession>> {
        self.cache
            .get(&key.slot)
            .filter(|hit| hit.check == key.check)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn insert(
        &self,
        key: SessionKey,
        data: super::session::SessionData,
        identity: Arc<Identity>,
    ) {
        self.cache.insert(
            key.slot,
            Arc::new(CachedSession {
                data,
                identity,
                check: key.check,
            }),
        );
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
            session: None,
            headers: Default::default(),
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

    #[test]
    fn a_session_hit_needs_the_same_sealed_value() {
        let cache = SessionCache::new(100);
        let sealed = "A".repeat(4000);
        let data = crate::auth::session::SessionData {
            sid: "s1".into(),
            iat: 1,
            exp: 2,
            id_token: "x".into(),
            access_token: None,
            refresh_token: None,
            at_exp: None,
        };
        cache.insert(cache.key(&sealed), data, identity("t", 2));
        assert!(cache.get(&cache.key(&sealed)).is_some());
        let mut tampered = sealed.clone().into_bytes();
        tampered[1234] = b'B';
        let tampered = String::from_utf8(tampered).unwrap_or_default();
        assert!(cache.get(&cache.key(&tampered)).is_none());
        assert!(cache.get(&cache.key(&sealed[..3999])).is_none());
        // Another cache (another configuration, another process) has other seeds.
        let other = SessionCache::new(100);
        assert_ne!(other.key(&sealed), cache.key(&sealed));
    }
}
