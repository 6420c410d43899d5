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

use crate::auth::bearer::{BearerValidator, TokenError};
use crate::auth::jwks::JwksCache;
use crate::auth::token_cache::TokenCache;
use crate::auth::{AuthError, Given, Identity, RequestAuth};
use crate::config::Config;
use crate::decision::{self, Asked, Verdict};
use crate::metrics::Metrics;
use crate::path::{self, NormalizedPath, PathRejection};

/// Where the identity comes from.
#[derive(Clone)]
pub enum Source {
    /// No credential.
    None,
    /// A bearer token, validated as the main listener validates it with these keys.
    Token { token: String, keys: Arc<JwksCache> },
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
    let mut headers = HeaderMap::new();
    let verdict = match source {
        Source::Token { token, keys } => {
            let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) else {
                let mut given = Given(Err(AuthError::InvalidToken(TokenError::Malformed)));
                let asked = asked(method, &path, query, host, &headers);
                return decided(
                    path.clone(),
                    decision::decide(&cfg.rules, &asked, &mut given).await,
                );
            };
            headers.insert(AUTHORIZATION, v);
            let bearer = BearerValidator::new(&cfg.oidc, &cfg.tokens);
            let cache = TokenCache::new(1, cfg.tokens.leeway.as_secs());
            let metrics = Metrics::new();
            let mut auth = RequestAuth {
                bearer: &bearer,
                jwks: &keys,
                tokens: &cfg.tokens,
                token_cache: &cache,
                metrics: &metrics,
                sessions: None,
                set_cookies: Vec::new(),
            };
            let asked = asked(method, &path, query, host, &headers);
            decision::decide(&cfg.rules, &asked, &mut auth).await
        }
        Source::Identity(id) => {
            let asked = asked(method, &path, query, host, &headers);
            decision::decide(&cfg.rules, &asked, &mut Given(Ok(Some(id)))).await
        }
        Source::Unreadable => {
            let mut given = Given(Err(AuthError::InvalidToken(TokenError::Malformed)));
            let asked = asked(method, &path, query, host, &headers);
            decision::decide(&cfg.rules, &asked, &mut given).await
        }
        Source::None => {
            let asked = asked(method, &path, query, host, &headers);
            decision::decide(&cfg.rules, &asked, &mut Given(Ok(None))).await
        }
        Source::Unverified(token) => {
            let claims = BearerValidator::new(&cfg.oidc, &cfg.tokens)
                .check_offline(&token)
                .map_err(AuthError::from);
            let mut given =
                Given(claims.map(|c| Some(Arc::new(Identity::from_claims(c, &cfg.tokens)))));
            let asked = asked(method, &path, query, host, &headers);
            decision::decide(&cfg.rules, &asked, &mut given).await
        }
        Source::Claims(claims) => {
            let mut given = Given(Ok(Some(Arc::new(Identity::from_claims(
                claims,
                &cfg.tokens,
            )))));
            let asked = asked(method, &path, query, host, &headers);
            decision::decide(&cfg.rules, &asked, &mut given).await
        }
    };
    decided(path, verdict)
}

fn decided(path: NormalizedPath, verdict: Verdict<'_>) -> Explanation<'_> {
    Explanation::Decided { path, verdict }
}

fn asked<'a>(
    method: &'a Method,
    path: &'a NormalizedPath,
    query: Option<&'a str>,
    host: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Asked<'a> {
    Asked {
        method,
        path,
        query,
        host,
        headers,
        body_methods: &[],
    }
}
