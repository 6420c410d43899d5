//! Session refresh: one token-endpoint call per expired access token, however many
//! requests of the session ask at the same time.
//!
//! The requests that race on one expired cookie share one [`OnceCell`]: the first runs
//! the refresh, the others wait for its result. The cell stays for [`SHARED_FOR`], so a
//! request that still carries the old cookie a moment later gets the same fresh tokens
//! instead of spending the (by then rotated) refresh token a second time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::jwks::JwksCache;
use super::oidc::{self, Oidc};
use super::provider::ProviderClient;
use super::session::SessionData;
use crate::metrics::Metrics;

/// How long the result of one refresh answers the requests of the old cookie.
const SHARED_FOR: Duration = Duration::from_secs(60);
/// Refreshes remembered at once; the oldest go first beyond it.
const CAPACITY: usize = 4096;

/// One refresh and the moment it started.
struct Flight {
    started: Instant,
    result: OnceCell<Option<SessionData>>,
}

/// Refreshes in progress (and just finished), shared by every request; survives reloads.
pub struct Refresher {
    flights: quick_cache::sync::Cache<String, Arc<Flight>>,
}

impl Default for Refresher {
    fn default() -> Self {
        Refresher {
            flights: quick_cache::sync::Cache::new(CAPACITY),
        }
    }
}

/// What a refresh needs of the gateway: the provider, its keys, and the client settings.
pub struct Provider<'a> {
    pub oidc: &'a Oidc,
    pub client: &'a ProviderClient,
    pub jwks: &'a JwksCache,
    pub metrics: &'a Metrics,
}

impl Refresher {
    /// Refreshes in progress, for the `refreshes_in_flight` gauge.
    pub fn in_flight(&self) -> usize {
        self.flights
            .iter()
            .filter(|(_, f)| !f.result.initialized())
            .count()
    }

    /// The session's data with fresh tokens, or `None` when the provider refuses: then the
    /// session is over.
    pub async fn refresh(&self, p: &Provider<'_>, data: &SessionData) -> Option<SessionData> {
        // One refresh per access token: its signature part is unique.
        let at = data.access_token.as_deref().unwrap_or("");
        let key = format!("{}:{}", data.sid, &at[at.len().saturating_sub(24)..]);
        self.flights
            .remove_if(&key, |f| f.started.elapsed() >= SHARED_FOR);
        let flight = self
            .flights
            .get_or_insert_with(&key, || {
                Ok::<_, std::convert::Infallible>(Arc::new(Flight {
                    started: Instant::now(),
                    result: OnceCell::new(),
                }))
            })
            .unwrap_or_else(|never| match never {});
        flight.result.get_or_init(|| run(p, data)).await.clone()
    }
}

async fn run(p: &Provider<'_>, data: &SessionData) -> Option<SessionData> {
    let meta = p.jwks.metadata()?;
    let token = data.refresh_token.as_deref()?;
    match p.oidc.refresh(p.client, &meta, p.jwks, token).await {
        Ok(t) => {
            let mut fresh = data.clone();
            fresh.at_exp = access_token_expiry(&t.access_token, t.expires_in);
            fresh.access_token = Some(t.access_token);
            if let Some(id) = t.id_token {
                fresh.id_token = id;
            }
            if let Some(r) = t.refresh_token {
                fresh.refresh_token = Some(r);
            }
            p.metrics.session_refresh(true);
            Some(fresh)
        }
        Err(e) => {
            tracing::info!(error = %e, "session refresh failed; the session ends");
            p.metrics.session_refresh(false);
            None
        }
    }
}

/// When an access token expires: `expires_in`, else its `exp` claim.
pub fn access_token_expiry(token: &str, expires_in: Option<Duration>) -> Option<u64> {
    match expires_in {
        Some(d) => Some(crate::unix_now().saturating_add(d.as_secs())),
        None => {
            oidc::jwt_payload(token).and_then(|c| c.get("exp").and_then(serde_json::Value::as_u64))
        }
    }
}
