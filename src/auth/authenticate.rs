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
//! A session whose access token cannot be renewed (`session.refresh = false`, or no
//! refresh token) ends when that token expires (its `exp` plus `tokens.leeway`), as the
//! decorators of the tutorials sent the user back to the login then; only
//! `session.outlive_access_token = true` keeps it until `session.lifetime`.
//!
//! [`Authenticate`] is what the decision ([`crate::decision::decide`]) asks for an
//! identity: [`RequestAuth`] reads the request's own credential (the running gateway);
//! [`Given`] hands over one that was made elsewhere (`explain --claims`, `--offline`).

use std::future::Future;
use std::sync::Arc;

use http::header::HeaderMap;
use http::Method;

use super::bearer::{Bearers, TokenError};
use super::dpop::{self, ProofError, ReplayGuard};
use super::introspection::{self, IntrospectionError, Introspector};
use super::jwks::JwksCache;
use super::provider::ProviderClient;
use super::refresh::{Provider, Refresher};
use super::session::{SealedSession, SessionCodec, SessionData, SessionLookup, SessionRef};
use super::store::{RedisStore, StoreError, REFRESH_LOCK};
use super::token_cache::{SessionCache, TokenCache};
use super::{extract, Credential, Identity};
use crate::config::{DpopMode, SessionSettings, TokenSettings};
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
    /// A DPoP token, or a proof, that failed validation (or a DPoP-bound token sent as
    /// Bearer): 401 with a `DPoP` challenge.
    #[error("{0}")]
    Dpop(DpopRefusal),
    /// The introspection endpoint cannot be reached: 503.
    #[error("the introspection endpoint is unavailable")]
    IntrospectionUnavailable,
    /// The provider's keys were never fetched, so no token can be checked: 503.
    #[error("the provider's keys are not available")]
    KeysUnavailable,
    /// The session store (Redis) did not answer: 503, never "no session".
    #[error("the session store is unavailable")]
    StoreUnavailable,
}

/// What a `DPoP` challenge reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopRefusal {
    /// `invalid_dpop_proof`.
    #[error("{0}")]
    Proof(ProofError),
    /// `invalid_token`.
    #[error("{0}")]
    Token(TokenError),
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> AuthError {
        match e {
            TokenError::KeysUnavailable => AuthError::KeysUnavailable,
            e => AuthError::InvalidToken(e),
        }
    }
}

/// The request a credential comes with: a DPoP proof names its method and URL.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub method: &'a Method,
    /// The normalized path (what rules see).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// Where the decision gets the identity from. `Ok(None)`: no credential.
pub trait Authenticate {
    fn authenticate(
        &mut self,
        request: &Presented<'_>,
    ) -> impl Future<Output = Result<Option<Arc<Identity>>, AuthError>> + Send;
}

/// An identity (or failure) decided elsewhere; the request's headers are not read.
#[derive(Debug, Clone)]
pub struct Given(pub Result<Option<Arc<Identity>>, AuthError>);

impl Authenticate for Given {
    async fn authenticate(
        &mut self,
        _request: &Presented<'_>,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        self.0.clone()
    }
}

/// The running gateway's authentication of a request's own credential.
pub struct RequestAuth<'a> {
    /// `oidc.issuer`'s validator first, then `[[tokens.issuers]]`.
    pub bearer: &'a Bearers,
    /// The keys of each issuer, in the order of `bearer.all()`.
    pub jwks: &'a [Arc<JwksCache>],
    pub tokens: &'a TokenSettings,
    /// Opaque tokens, with `tokens.introspection`.
    pub introspection: Option<Introspection<'a>>,
    /// DPoP proofs: what `htu` must name, and the proofs seen.
    pub dpop: DpopCheck<'a>,
    pub token_cache: &'a TokenCache,
    pub metrics: &'a Metrics,
    /// `None` without `[session]`: only bearer tokens count.
    pub sessions: Option<Sessions<'a>>,
    /// `Set-Cookie` values for the response: a session refreshed or cleared.
    pub set_cookies: Vec<String>,
}

/// What introspecting an opaque token needs.
pub struct Introspection<'a> {
    pub introspector: &'a Introspector,
    pub client: &'a ProviderClient,
}

/// What checking a DPoP proof needs.
pub struct DpopCheck<'a> {
    pub public_url: &'a url::Url,
    pub allow_path_params: bool,
    pub replay: &'a ReplayGuard,
    /// With the Redis session store, proofs seen by any replica are refused by all.
    pub store: Option<&'a RedisStore>,
}

/// What reading and refreshing a session cookie needs.
pub struct Sessions<'a> {
    pub codec: &'a SessionCodec,
    /// `Some` with `session.store = "redis"`: the cookie only names the session.
    pub store: Option<&'a RedisStore>,
    pub cache: &'a SessionCache,
    pub refresher: &'a Refresher,
    pub provider: Provider<'a>,
}

impl Authenticate for RequestAuth<'_> {
    async fn authenticate(
        &mut self,
        request: &Presented<'_>,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        let headers = request.headers;
        let dpop_on = self.tokens.dpop != DpopMode::Off;
        match extract(headers).map_err(|_| AuthError::Ambiguous)? {
            Credential::Bearer(token) => self.bearer_identity(token, None).await.map(Some),
            Credential::Dpop(token) if dpop_on => {
                self.bearer_identity(token, Some(request)).await.map(Some)
            }
            Credential::Dpop(_) | Credential::OtherAuthorization | Credential::None => {
                match self.sessions.as_ref().and_then(|s| s.store) {
                    // Boxed: the store's futures are large, and every request's future
                    // would otherwise carry their size (and copy it).
                    Some(store) => Box::pin(self.stored_identity(store, headers)).await,
                    None => Ok(self.session_identity(headers).await),
                }
            }
        }
    }
}

impl RequestAuth<'_> {
    /// A token from `Authorization: Bearer` (`dpop` = `None`) or `Authorization: DPoP`
    /// (with the request its proof must name). Then its binding: a DPoP-bound token
    /// (`cnf.jkt`) only with the DPoP scheme and a valid proof, never as Bearer.
    async fn bearer_identity(
        &self,
        token: &str,
        dpop: Option<&Presented<'_>>,
    ) -> Result<Arc<Identity>, AuthError> {
        let id = match self.token_identity(token).await {
            Ok(id) => id,
            Err(AuthError::InvalidToken(e)) if dpop.is_some() => {
                return Err(AuthError::Dpop(DpopRefusal::Token(e)))
            }
            Err(e) => return Err(e),
        };
        let token_err = |e| Err(AuthError::Dpop(DpopRefusal::Token(e)));
        let bound = dpop::bound_key(&id.claims)
            .map_err(|_| AuthError::InvalidToken(TokenError::ClaimType))?;
        match (dpop, bound) {
            (None, Some(_)) => token_err(TokenError::BoundToKey),
            (None, None) if self.tokens.dpop == DpopMode::Require => {
                token_err(TokenError::DpopRequired)
            }
            (None, None) => Ok(id),
            (Some(_), None) => token_err(TokenError::NotBound),
            (Some(request), Some(jkt)) => {
                Box::pin(self.check_proof(request, token, jkt)).await?;
                Ok(id)
            }
        }
    }

    /// The proof of a DPoP request, then its `jti` against replays.
    async fn check_proof(
        &self,
        request: &Presented<'_>,
        token: &str,
        jkt: &str,
    ) -> Result<(), AuthError> {
        let expected = dpop::Expected {
            method: request.method,
            public_url: self.dpop.public_url,
            path: request.path,
            allow_path_params: self.dpop.allow_path_params,
            token,
            jkt,
            leeway: self.tokens.leeway.as_secs(),
        };
        let refused = |e: ProofError| {
            tracing::debug!(reason = %e, "DPoP proof refused");
            AuthError::Dpop(DpopRefusal::Proof(e))
        };
        let proof = dpop::verify_proof(
            request.headers.get_all("dpop").iter(),
            &expected,
            crate::unix_now(),
        )
        .inspect_err(|_| self.metrics.dpop_proof("invalid"))
        .map_err(refused)?;
        if !self.dpop.replay.first_use(&proof, self.dpop.store).await? {
            self.metrics.dpop_proof("replayed");
            return Err(refused(ProofError::Replayed));
        }
        self.metrics.dpop_proof("ok");
        Ok(())
    }

    /// The identity of a token, from the cache, a JWT's signature and claims, or (for an
    /// opaque token, with `tokens.introspection`) the provider's introspection endpoint.
    async fn token_identity(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if let Some(id) = self.token_cache.get(token) {
            self.metrics.token_cache(true);
            return Ok(id);
        }
        if let Some(intro) = &self.introspection {
            if !super::jose::looks_like_jwt(token) {
                return Box::pin(self.introspected(intro, token)).await;
            }
        }
        self.metrics.token_cache(false);
        // Boxed: validation may fetch keys, a large future most requests never run (they
        // hit the token cache).
        let (claims, validator) = Box::pin(self.bearer.validate(token, self.jwks))
            .await
            .inspect_err(|e| tracing::debug!(reason = %e, "bearer token refused"))?;
        let mut id = validator.identity(claims);
        id.access_token = Some(token.to_owned());
        id.from_bearer = true;
        let id = Arc::new(id);
        self.token_cache.insert(token, id.clone());
        Ok(id)
    }

    async fn introspected(
        &self,
        intro: &Introspection<'_>,
        token: &str,
    ) -> Result<Arc<Identity>, AuthError> {
        let cx = introspection::Context {
            client: intro.client,
            metadata: self.jwks.first().and_then(|k| k.metadata()),
            validator: self.bearer.primary(),
            metrics: self.metrics,
        };
        intro
            .introspector
            .identity(token, &cx)
            .await
            .map_err(|e| match e {
                IntrospectionError::Refused(e) => {
                    tracing::debug!(reason = %e, "opaque token refused");
                    AuthError::InvalidToken(e)
                }
                IntrospectionError::Unavailable => AuthError::IntrospectionUnavailable,
            })
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
        let settings = s.codec.settings();
        let refreshes = settings.refresh;
        let leeway = self.tokens.leeway.as_secs();
        // Fast path: this exact cookie was decrypted before and nothing about it changed.
        let key = s.cache.key(&sealed);
        if let Some(hit) = s.cache.get(&key) {
            let now = crate::unix_now();
            let fresh = hit.data.at_exp.is_none_or(|t| t > now.saturating_add(5)) || !refreshes;
            if hit.data.exp > now
                && fresh
                && !outlived(settings, leeway, &hit.data, now)
                && !ended(s.codec, &hit.data, &hit.identity)
            {
                return Some(hit.identity.clone());
            }
        }
        let (data, chunks, stale) = match s.codec.unseal(&sealed, chunks) {
            SessionLookup::None => return None,
            SessionLookup::Invalid { chunks } => {
                self.set_cookies.extend(s.codec.clear(chunks));
                return None;
            }
            SessionLookup::Valid {
                data,
                chunks,
                stale,
            } => (data, chunks, stale),
        };
        if outlived(settings, leeway, &data, crate::unix_now()) {
            // Its access token expired and will not be renewed: like an expired session.
            self.set_cookies.extend(s.codec.clear(chunks));
            return None;
        }
        let identity = Identity::from_session(&data, self.tokens)?;
        if ended(s.codec, &data, &identity) {
            // Ended by the provider (back-channel logout): like a revoked session. The
            // provider's record is what outlasts a restart; a failed write is logged.
            let _ = s.codec.revoke(&data.sid, data.exp);
            self.set_cookies.extend(s.codec.clear(chunks));
            return None;
        }
        let expired = data
            .at_exp
            .is_some_and(|t| t <= crate::unix_now().saturating_add(5));
        if !(expired && refreshes && data.refresh_token.is_some()) {
            if stale {
                // Sealed with a previous secret: from now on it carries the current one.
                self.set_cookies.extend(s.codec.seal(&data, chunks));
            }
            let identity = Arc::new(identity);
            s.cache.insert(key, data, identity.clone());
            return Some(identity);
        }
        match Box::pin(s.refresher.refresh(&s.provider, &data)).await {
            Some(fresh) => {
                self.set_cookies.extend(s.codec.seal(&fresh, chunks));
                Identity::from_session(&fresh, self.tokens).map(Arc::new)
            }
            None => {
                // The provider no longer honours the session: it is over (a failed write
                // is logged; after a restart the refresh token is refused again).
                let _ = s.codec.revoke(&data.sid, data.exp);
                self.metrics.session_ended("refresh_failed");
                self.set_cookies.extend(s.codec.clear(chunks));
                None
            }
        }
    }
}

/// Has the session outlived an access token that will not be renewed (refresh off or no
/// refresh token), unless `session.outlive_access_token` allows it? Expired means `exp` +
/// `tokens.leeway` is past.
fn outlived(settings: &SessionSettings, leeway: u64, data: &SessionData, now: u64) -> bool {
    access_token_outlived(
        settings,
        leeway,
        data.at_exp,
        data.refresh_token.is_some(),
        now,
    )
}

/// [`outlived`] for a session known by its access token's expiry and whether it holds a
/// refresh token (what an open WebSocket keeps of its session).
pub fn access_token_outlived(
    settings: &SessionSettings,
    leeway: u64,
    at_exp: Option<u64>,
    has_refresh_token: bool,
    now: u64,
) -> bool {
    let renewable = settings.refresh && has_refresh_token;
    !settings.outlive_access_token
        && !renewable
        && at_exp.is_some_and(|t| t.saturating_add(leeway) <= now)
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

impl From<StoreError> for AuthError {
    fn from(_: StoreError) -> AuthError {
        AuthError::StoreUnavailable
    }
}

/// The Redis store: the cookie names a session that every replica reads from the store,
/// so an ending or refresh anywhere is seen on the next request everywhere.
impl RequestAuth<'_> {
    async fn stored_identity(
        &mut self,
        store: &RedisStore,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        let Some(s) = self.sessions.as_ref() else {
            return Ok(None);
        };
        let codec = s.codec;
        let (sealed, chunks) = match codec.read(headers) {
            SealedSession::None => return Ok(None),
            SealedSession::Malformed { chunks } => {
                self.set_cookies.extend(codec.clear(chunks));
                return Ok(None);
            }
            SealedSession::Sealed { sealed, chunks } => (sealed, chunks),
        };
        let Some((r, stale)) = codec.open_ref(&sealed) else {
            self.set_cookies.extend(codec.clear(chunks));
            return Ok(None);
        };
        // Read on every request: an ending on any replica is seen here at once.
        let Some(value) = store.get(&r.sid).await? else {
            // Ended (logout, refresh failure, back-channel logout) or expired.
            self.set_cookies.extend(codec.clear(chunks));
            return Ok(None);
        };
        if stale {
            self.set_cookies.extend(codec.seal_ref(&r, chunks));
        }
        let now = crate::unix_now();
        let leeway = self.tokens.leeway.as_secs();
        let refreshes = codec.settings().refresh;
        let due = |d: &SessionData| {
            refreshes
                && d.refresh_token.is_some()
                && d.at_exp.is_some_and(|t| t <= now.saturating_add(5))
        };
        // Fast path: this very value was opened before (same bytes, same session).
        let key = s.cache.key(&value);
        if let Some(hit) = s.cache.get(&key) {
            let d = &hit.data;
            if d.sid == r.sid
                && d.exp > now
                && !due(d)
                && !codec.is_revoked(&d.sid)
                && !ended(codec, d, &hit.identity)
                && !outlived(codec.settings(), leeway, d, now)
            {
                return Ok(Some(hit.identity.clone()));
            }
        }
        let data = codec.open_stored(&r.sid, &value);
        let identity = data
            .as_ref()
            .and_then(|d| Identity::from_session(d, self.tokens));
        let (Some(data), Some(identity)) = (data, identity) else {
            self.set_cookies.extend(codec.clear(chunks));
            return Ok(None);
        };
        if ended(codec, &data, &identity) || outlived(codec.settings(), leeway, &data, now) {
            self.set_cookies.extend(codec.clear(chunks));
            return Ok(None);
        }
        if !due(&data) {
            let identity = Arc::new(identity);
            s.cache.insert(key, data, identity.clone());
            return Ok(Some(identity));
        }
        match self.refresh_stored(store, data).await? {
            Some(fresh) => Ok(Identity::from_session(&fresh, self.tokens).map(Arc::new)),
            None => {
                self.set_cookies.extend(codec.clear(chunks));
                Ok(None)
            }
        }
    }

    /// One refresh per session across replicas: the replica that takes the lock refreshes
    /// and writes the result; the others wait (bounded) for it and read it.
    async fn refresh_stored(
        &self,
        store: &RedisStore,
        data: SessionData,
    ) -> Result<Option<SessionData>, AuthError> {
        let Some(s) = self.sessions.as_ref() else {
            return Ok(None);
        };
        if !store.lock_refresh(&data.sid).await? {
            return wait_for_refresh(store, s.codec, &data).await;
        }
        let sid = data.sid.clone();
        let result = self.refresh_locked(store, s, data).await;
        // Released on every path (else it expires after REFRESH_LOCK).
        store.unlock_refresh(&sid).await;
        result
    }

    /// The refresh itself, with the lock held.
    async fn refresh_locked(
        &self,
        store: &RedisStore,
        s: &Sessions<'_>,
        data: SessionData,
    ) -> Result<Option<SessionData>, AuthError> {
        // Another replica may have refreshed between the read of `data` and the lock: its
        // result stands, and the old refresh token must not be spent a second time.
        let Some(v) = store.get(&data.sid).await? else {
            return Ok(None);
        };
        if let Some(now) = s.codec.open_stored(&data.sid, &v) {
            if now.access_token != data.access_token {
                return Ok(Some(now));
            }
        }
        let fresh = s.refresher.refresh(&s.provider, &data).await;
        match fresh {
            Some(fresh) => match s.codec.seal_stored(&fresh) {
                // `false`: ended meanwhile on another replica.
                Some(v) => Ok(store
                    .replace(&fresh.sid, v)
                    .await
                    .map(|kept| kept.then_some(fresh))?),
                None => Ok(None),
            },
            None => {
                // The provider no longer honours the session: it is over everywhere.
                self.metrics.session_ended("refresh_failed");
                Ok(store.delete(&data.sid).await.map(|_| None)?)
            }
        }
    }
}

/// Another replica refreshes `old`: its result, once written.
async fn wait_for_refresh(
    store: &RedisStore,
    codec: &SessionCodec,
    old: &SessionData,
) -> Result<Option<SessionData>, AuthError> {
    let deadline = tokio::time::Instant::now() + REFRESH_LOCK;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let Some(v) = store.get(&old.sid).await? else {
            return Ok(None);
        };
        if let Some(now) = codec.open_stored(&old.sid, &v) {
            if now.access_token != old.access_token {
                return Ok(Some(now));
            }
        }
    }
    Err(AuthError::StoreUnavailable)
}

/// The cookie of a session kept in the store.
pub fn store_cookie(
    codec: &SessionCodec,
    data: &SessionData,
    previous_chunks: usize,
) -> Vec<String> {
    codec.seal_ref(
        &SessionRef {
            sid: data.sid.clone(),
            exp: data.exp,
        },
        previous_chunks,
    )
}
