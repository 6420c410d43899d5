//! Authentication of one request: its credential becomes an [`Identity`] or a typed
//! [`AuthError`].
//!
//! A bearer token wins over a session cookie, and an invalid bearer token never falls back
//! to the cookie. `Authorization` with another scheme (Basic, ...) is not the gateway's:
//! then the session cookie decides. A session whose access token expired is refreshed
//! ([`super::refresh`]); one the provider no longer honours ends, and its cookies are
//! cleared. So is one the provider ended by a back-channel logout (its `sid`, or its
//! subject logged out after it was created; [`super::logout_token`]), on the fast path of
//! an already decrypted cookie as well.
//!
//! [`Authenticate`] is what the decision ([`crate::decision::decide`]) asks for an
//! identity: [`RequestAuth`] reads the request's own credential (the running gateway);
//! [`Given`] hands over one that was made elsewhere (`explain --claims`, `--offline`).

use std::future::Future;
use std::sync::Arc;

use http::header::HeaderMap;

use super::bearer::{BearerValidator, TokenError};
use super::jwks::JwksCache;
use super::refresh::{Provider, Refresher};
use super::session::{SealedSession, SessionCodec, SessionData, SessionLookup};
use super::token_cache::{SessionCache, TokenCache};
use super::{extract, Credential, Identity};
use crate::config::TokenSettings;
use crate::metrics::Metrics;

/// Why a presented credential gives no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Two `Authorization` headers: a 400, never a guess.
    #[error("two Authorization headers")]
    Ambiguous,
    /// A bearer token that failed validation: 401.
    #[error("{0}")]
    InvalidToken(TokenError),
    /// The provider's keys were never fetched, so no token can be checked: 503.
    #[error("the provider's keys are not available")]
    KeysUnavailable,
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> AuthError {
        match e {
            TokenError::KeysUnavailable => AuthError::KeysUnavailable,
            e => AuthError::InvalidToken(e),
        }
    }
}

/// Where the decision gets the identity from. `Ok(None)`: no credential.
pub trait Authenticate {
    fn authenticate(
        &mut self,
        headers: &HeaderMap,
    ) -> impl Future<Output = Result<Option<Arc<Identity>>, AuthError>> + Send;
}

/// An identity (or failure) decided elsewhere; the request's headers are not read.
#[derive(Debug, Clone)]
pub struct Given(pub Result<Option<Arc<Identity>>, AuthError>);

impl Authenticate for Given {
    async fn authenticate(
        &mut self,
        _headers: &HeaderMap,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        self.0.clone()
    }
}

/// The running gateway's authentication of a request's own credential.
pub struct RequestAuth<'a> {
    pub bearer: &'a BearerValidator,
    pub jwks: &'a JwksCache,
    pub tokens: &'a TokenSettings,
    pub token_cache: &'a TokenCache,
    pub metrics: &'a Metrics,
    /// `None` without `[session]`: only bearer tokens count.
    pub sessions: Option<Sessions<'a>>,
    /// `Set-Cookie` values for the response: a session refreshed or cleared.
    pub set_cookies: Vec<String>,
}

/// What reading and refreshing a session cookie needs.
pub struct Sessions<'a> {
    pub codec: &'a SessionCodec,
    pub cache: &'a SessionCache,
    pub refresher: &'a Refresher,
    pub provider: Provider<'a>,
}

impl Authenticate for RequestAuth<'_> {
    async fn authenticate(
        &mut self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        match extract(headers).map_err(|_| AuthError::Ambiguous)? {
            Credential::Bearer(token) => self.bearer_identity(token).await.map(Some),
            Credential::OtherAuthorization | Credential::None => {
                Ok(self.session_identity(headers).await)
            }
        }
    }
}

impl RequestAuth<'_> {
    async fn bearer_identity(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if let Some(id) = self.token_cache.get(token) {
            self.metrics.token_cache(true);
            return Ok(id);
        }
        self.metrics.token_cache(false);
        let claims = self
            .bearer
            .validate(token, self.jwks)
            .await
            .inspect_err(|e| tracing::debug!(reason = %e, "bearer token refused"))?;
        let mut id = Identity::from_claims(claims, self.tokens);
        id.access_token = Some(token.to_owned());
        id.from_bearer = true;
        let id = Arc::new(id);
        self.token_cache.insert(token, id.clone());
        Ok(id)
    }

    /// The identity of the session cookie, refreshing its tokens when they expired.
    async fn session_identity(&mut self, headers: &HeaderMap) -> Option<Arc<Identity>> {
        let s = self.sessions.as_ref()?;
        let (sealed, chunks) = match s.codec.read(headers) {
            SealedSession::None => return None,
            SealedSession::Malformed { chunks } => {
                self.set_cookies.extend(s.codec.clear(chunks));
                return None;
            }
            SealedSession::Sealed { sealed, chunks } => (sealed, chunks),
        };
        let refreshes = s.codec.settings().refresh;
        // Fast path: this exact cookie was decrypted before and nothing about it changed.
        let key = s.cache.key(&sealed);
        if let Some(hit) = s.cache.get(&key) {
            let now = crate::unix_now();
            let fresh = hit.data.at_exp.is_none_or(|t| t > now.saturating_add(5)) || !refreshes;
            if hit.data.exp > now && fresh && !ended(s.codec, &hit.data, &hit.identity) {
                return Some(hit.identity.clone());
            }
        }
        let (data, chunks) = match s.codec.unseal(&sealed, chunks) {
            SessionLookup::None => return None,
            SessionLookup::Invalid { chunks } => {
                self.set_cookies.extend(s.codec.clear(chunks));
                return None;
            }
            SessionLookup::Valid { data, chunks } => (data, chunks),
        };
        let identity = Identity::from_session(&data, self.tokens)?;
        if ended(s.codec, &data, &identity) {
            // Ended by the provider (back-channel logout): like a revoked session.
            s.codec.revoke(&data.sid, data.exp);
            self.set_cookies.extend(s.codec.clear(chunks));
            return None;
        }
        let expired = data
            .at_exp
            .is_some_and(|t| t <= crate::unix_now().saturating_add(5));
        if !(expired && refreshes && data.refresh_token.is_some()) {
            let identity = Arc::new(identity);
            s.cache.insert(key, data, identity.clone());
            return Some(identity);
        }
        match s.refresher.refresh(&s.provider, &data).await {
            Some(fresh) => {
                self.set_cookies.extend(s.codec.seal(&fresh, chunks));
                Identity::from_session(&fresh, self.tokens).map(Arc::new)
            }
            None => {
                // The provider no longer honours the session: it is over.
                s.codec.revoke(&data.sid, data.exp);
                self.metrics.session_ended("refresh_failed");
                self.set_cookies.extend(s.codec.clear(chunks));
                None
            }
        }
    }
}

/// Is the session over: revoked here, or ended by a back-channel logout (by the `sid` and
/// `sub` of its identity: the ID token's claims, completed by the access token's)?
fn ended(codec: &SessionCodec, data: &SessionData, identity: &Identity) -> bool {
    let sid = identity
        .claims
        .get("sid")
        .and_then(serde_json::Value::as_str);
    codec.is_ended(data, sid, &identity.subject)
}
