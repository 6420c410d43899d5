//! Session administration (`/sessions` on the admin listener): list and end the sessions
//! of a subject, or one session.
//!
//! With the Redis store this covers every replica's sessions: they are found through the
//! subject's index in Redis and deleted there. With the cookie store a session lives only
//! in its browser's cookie, so an instance knows the sessions logged in through it since
//! it started ([`LocalSessions`], bounded); ending a subject's sessions revokes that
//! subject on this instance (as a back-channel logout does), which also ends the sessions
//! it never saw, when they next come to it.
//!
//! A summary never holds a token.

use serde::Serialize;

use super::oidc::jwt_payload;
use super::session::{Revocations, SessionCodec, SessionData};
use super::store::{RedisStore, StoreError};

/// Sessions remembered per instance with the cookie store.
const LOCAL_CAPACITY: usize = 100_000;

/// What an administrator sees of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    pub sid: String,
    pub sub: String,
    /// `preferred_username`, else `sub`.
    pub user: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub expires: u64,
}

impl SessionSummary {
    pub fn of(data: &SessionData) -> SessionSummary {
        let claims = jwt_payload(&data.id_token).unwrap_or_default();
        let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let sub = text("sub").unwrap_or_default();
        SessionSummary {
            sid: data.sid.clone(),
            user: text("preferred_username").unwrap_or_else(|| sub.clone()),
            sub,
            created: data.iat,
            expires: data.exp,
        }
    }
}

/// The sessions logged in through this instance (cookie store).
pub struct LocalSessions {
    by_sid: quick_cache::sync::Cache<String, SessionSummary>,
}

impl Default for LocalSessions {
    fn default() -> Self {
        LocalSessions {
            by_sid: quick_cache::sync::Cache::new(LOCAL_CAPACITY),
        }
    }
}

impl LocalSessions {
    pub fn record(&self, summary: SessionSummary) {
        self.by_sid.insert(summary.sid.clone(), summary);
    }

    fn of_subject(&self, sub: &str, codec: &SessionCodec) -> Vec<SessionSummary> {
        let now = crate::unix_now();
        let mut out: Vec<SessionSummary> = self
            .by_sid
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.sub == sub && s.expires > now && !codec.is_revoked(&s.sid))
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.sid.cmp(&b.sid)));
        out
    }
}

/// Where the sessions are, for one request of the administrator.
pub struct Admin<'a> {
    pub codec: &'a SessionCodec,
    pub store: Option<&'a RedisStore>,
    pub local: &'a LocalSessions,
    pub revocations: &'a Revocations,
}

impl Admin<'_> {
    /// The live sessions of `sub`, oldest first.
    pub async fn list(&self, sub: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let Some(store) = self.store else {
            return Ok(self.local.of_subject(sub, self.codec));
        };
        let mut out = Vec::new();
        for sid in store.sessions_of("sub", sub).await? {
            let Some(value) = store.get(&sid).await? else {
                continue;
            };
            if let Some(data) = self.codec.open_stored(&sid, &value) {
                out.push(SessionSummary::of(&data));
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.sid.cmp(&b.sid)));
        Ok(out)
    }

    /// Ends every session of `sub`; returns how many live ones were known.
    pub async fn end_subject(&self, sub: &str) -> Result<usize, StoreError> {
        let Some(store) = self.store else {
            let known = self.local.of_subject(sub, self.codec);
            let now = crate::unix_now();
            let keep_until = now.saturating_add(self.codec.settings().lifetime.as_secs());
            // A revocation that cannot be written durably (session.state_dir) is a failure.
            self.revocations
                .end_subject(sub, now, keep_until)
                .map_err(|_| StoreError)?;
            for s in &known {
                self.revocations
                    .revoke(&s.sid, s.expires)
                    .map_err(|_| StoreError)?;
            }
            return Ok(known.len());
        };
        let mut ended = 0;
        for sid in store.sessions_of("sub", sub).await? {
            if store.delete(&sid).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends session `sid`; returns 1 if it was a live session, else 0.
    pub async fn end_one(&self, sid: &str) -> Result<usize, StoreError> {
        let Some(store) = self.store else {
            let now = crate::unix_now();
            let known = self
                .local
                .by_sid
                .get(sid)
                .filter(|s| s.expires > now && !self.codec.is_revoked(sid));
            // Revoked even when unknown here: it may have been made on another instance.
            let until = known.as_ref().map_or_else(
                || now.saturating_add(self.codec.settings().lifetime.as_secs()),
                |s| s.expires,
            );
            self.revocations
                .revoke(sid, until)
                .map_err(|_| StoreError)?;
            return Ok(usize::from(known.is_some()));
        };
        Ok(usize::from(store.delete(sid).await?))
    }
}
