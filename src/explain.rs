//! `portcullis explain`: what the running gateway would decide for a request, from the
//! configuration alone.
//!
//! It runs the gateway's own decision ([`decision::decide`]), on the same normalized path,
//! the same rule table and the same `_method` reading. A `--token` goes through the same
//! bearer validation as on the main listener, against the issuer's live keys. Only where
//! the identity comes from can differ: `--claims` and `--offline` hand over an identity
//! whose signature was never checked, and a token is checked offline when the keys cannot
//! be fetched.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use http::Method;
use serde_json::{Map, Value};

use crate::auth::authenticate::DpopCheck;
use crate::auth::bearer::{Bearers, TokenError};
use crate::auth::dpop::ReplayGuard;
use crate::auth::jwks::JwksCache;
use crate::auth::token_cache::TokenCache;
use crate::auth::{AuthError, Authenticate, Given, Identity, Presented, RequestAuth};
use crate::config::Config;
use crate::decision::{self, Asked, Verdict};
use crate::metrics::Metrics;
use crate::path::{self, NormalizedPath, PathRejection};

/// Where the identity comes from.
#[derive(Clone)]
pub enum Source {
    /// No credential.
    None,
    /// A bearer token, validated as the main listener validates it with these keys (one
    /// per issuer, in the order of `oidc.issuer` then `[[tokens.issuers]]`; only the one
    /// the token names needs to have been fetched).
    Token {
        token: String,
        keys: Vec<Arc<JwksCache>>,
    },
    /// A bearer token whose claims are checked but not its signature (`--offline`, or the
    /// keys could not be fetched).
    Unverified(String),
    /// These claims, as if a valid token had carried them (`--claims`).
    Claims(Map<String, Value>),
    /// An identity made elsewhere, such as a session's (for callers of this library).
    Identity(Arc<Identity>),
    /// A credential that cannot be read at all (an unreadable `--claims` file): judged as
    /// the main listener judges a malformed token.
    Unreadable,
}

/// What `explain` found.
#[derive(Debug)]
pub enum Explanation<'c> {
    /// The path is refused by normalization (400).
    BadPath(PathRejection),
    /// The path is one of the gateway's own endpoints (`auth_prefix`).
    Endpoint(NormalizedPath),
    /// The decision for the path.
    Decided {
        path: NormalizedPath,
        verdict: Verdict<'c>,
    },
}

/// Explains `method target` (a path with an optional query) on `host`, which must be
/// lower case without a port (as [`crate::rules::host::request_host`] gives it).
pub async fn explain<'c>(
    cfg: &'c Config,
    method: &Method,
    target: &str,
    host: Option<&str>,
    source: Source,
) -> Explanation<'c> {
    explain_with_headers(cfg, method, target, host, &HeaderMap::new(), source).await
}

/// The same, for a request that also carries `headers` (such as `Origin` and
/// `Access-Control-Request-Method`, which make an `OPTIONS` a CORS preflight). The
/// credential comes from `source` only: an `Authorization` among `headers` is replaced.
pub async fn explain_with_headers<'c>(
    cfg: &'c Config,
    method: &Method,
    target: &str,
    host: Option<&str>,
    headers: &HeaderMap,
    source: Source,
) -> Explanation<'c> {
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = match path::normalize(raw_path, cfg.server.allow_path_params) {
        Ok(p) => p,
        Err(e) => return Explanation::BadPath(e),
    };
    if crate::endpoints::route(&cfg.server.auth_prefix, path.as_str()).is_some() {
        return Explanation::Endpoint(path);
    }
    let host = host.filter(|_| cfg.rules.has_hosts());
    let checks = Checks {
        bearer: Bearers::new(&cfg.oidc, &cfg.tokens),
        cache: TokenCache::new(1, cfg.tokens.leeway.as_secs()),
        metrics: Metrics::new(),
        replay: ReplayGuard::new(1),
    };
    let keys = match &source {
        Source::Token { keys, .. } => Some(keys.clone()),
        _ => None,
    };
    let mut headers = headers.clone();
    headers.remove(AUTHORIZATION);
    let mut auth = authenticator(cfg, &checks, keys.as_ref(), source, &mut headers);
    let asked = Asked {
        method,
        path: &path,
        query,
        host,
        headers: &headers,
        body_methods: &[],
    };
    let verdict = decision::decide(&cfg.rules, &asked, &mut auth).await;
    Explanation::Decided { path, verdict }
}

/// What a live token check needs besides the keys.
struct Checks {
    bearer: Bearers,
    cache: TokenCache,
    metrics: Metrics,
    replay: ReplayGuard,
}

/// The authenticator for `source`. A token goes into `headers` as the main listener
/// would receive it, and is checked by the main listener's own [`RequestAuth`].
fn authenticator<'a>(
    cfg: &'a Config,
    checks: &'a Checks,
    keys: Option<&'a Vec<Arc<JwksCache>>>,
    source: Source,
    headers: &mut HeaderMap,
) -> Auth<'a> {
    let (Source::Token { token, .. }, Some(keys)) = (&source, keys) else {
        return Auth::Given(Given(given(cfg, &checks.bearer, source)));
    };
    let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return Auth::Given(Given(Err(AuthError::InvalidToken(TokenError::Malformed))));
    };
    headers.insert(AUTHORIZATION, v);
    Auth::Live(RequestAuth {
        bearer: &checks.bearer,
        jwks: keys,
        tokens: &cfg.tokens,
        // An opaque token is not explained against the provider (no client call).
        introspection: None,
        dpop: DpopCheck {
            public_url: &cfg.server.public_url,
            allow_path_params: cfg.server.allow_path_params,
            replay: &checks.replay,
            store: None,
        },
        token_cache: &checks.cache,
        metrics: &checks.metrics,
        sessions: None,
        set_cookies: Vec::new(),
    })
}

/// The identity source as the decision's authenticator.
enum Auth<'a> {
    /// The main listener's own bearer authentication.
    Live(RequestAuth<'a>),
    Given(Given),
}

impl Authenticate for Auth<'_> {
    async fn authenticate(
        &mut self,
        request: &Presented<'_>,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        match self {
            Auth::Live(auth) => auth.authenticate(request).await,
            Auth::Given(given) => given.authenticate(request).await,
        }
    }
}

/// An identity (or its refusal) that does not come from a live token check.
fn given(
    cfg: &Config,
    bearer: &Bearers,
    source: Source,
) -> Result<Option<Arc<Identity>>, AuthError> {
    let identity = match source {
        Source::None | Source::Token { .. } => return Ok(None),
        Source::Identity(id) => return Ok(Some(id)),
        Source::Unreadable => return Err(AuthError::InvalidToken(TokenError::Malformed)),
        Source::Claims(claims) => Identity::from_claims(claims, &cfg.tokens),
        Source::Unverified(token) => {
            let (claims, validator) = bearer.check_offline(&token).map_err(AuthError::from)?;
            validator.identity(claims)
        }
    };
    Ok(Some(Arc::new(identity)))
}
