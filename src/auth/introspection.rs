//! Opaque access tokens, judged by the provider (OAuth 2.0 Token Introspection, RFC 7662).
//!
//! With `tokens.introspection = true`, a bearer token that is not a JWT is POSTed to the
//! `introspection_endpoint` of `oidc.issuer`'s discovery document, with the gateway's
//! client id and secret (HTTP Basic, RFC 6749 §2.3.1). The answer:
//!
//! - must be a 200 JSON object whose `active` is a JSON boolean; anything else is
//!   `invalid_token` (401), an unreachable endpoint or a 5xx answer is 503;
//! - `active: false` is `invalid_token` (RFC 7662 says nothing more to a resource server);
//! - an active answer is judged like a JWT's claims (types, `iss` when present, `aud`
//!   against `tokens.audiences`, `exp`/`nbf`/`iat` with the leeway, the `typ` claim), and
//!   its `scope`, `sub`, `username`, roles and other claims feed rules and headers.
//!
//! Answers are cached under a keyed SHA-256 of the token (a random key per cache, so the
//! cache holds no token and its keys say nothing about one) until `min(exp,
//! introspection_ttl)`; inactive answers for `introspection_ttl` (an inactive token never
//! becomes active again). The cache is bounded; a burst of one new token makes one call:
//! the first request introspects, the others wait for its answer (single flight).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use quick_cache::sync::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::bearer::{BearerValidator, TokenError};
use super::provider::{ProviderClient, ProviderError, ProviderMetadata};
use super::Identity;
use crate::config::Secret;
use crate::metrics::Metrics;

/// Largest opaque token sent to the provider.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// How long an unreachable endpoint is remembered for one token, so that the requests
/// waiting for one answer do not each wait for their own timeout.
const UNAVAILABLE_FOR: u64 = 1;

/// Why an opaque token gives no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionError {
    /// Refused: 401 `invalid_token`.
    Refused(TokenError),
    /// The endpoint cannot be reached, or is not in the discovery document: 503.
    Unavailable,
}

#[derive(Clone)]
enum Answer {
    /// Until (seconds since the epoch).
    Active(Arc<Identity>, u64),
    Refused(TokenError, u64),
    Unavailable(u64),
}

impl Answer {
    fn until(&self) -> u64 {
        match self {
            Answer::Active(_, t) | Answer::Refused(_, t) | Answer::Unavailable(t) => *t,
        }
    }
}

/// The introspection client and its cache, for one configuration.
pub struct Introspector {
    cache: Option<Cache<[u8; 32], Answer>>,
    key: [u8; 32],
    ttl: u64,
    client_id: String,
    client_secret: Option<Secret>,
}

/// What one introspection needs from the gateway.
pub struct Context<'a> {
    pub client: &'a ProviderClient,
    /// `oidc.issuer`'s discovery document (`None` before discovery succeeded).
    pub metadata: Option<Arc<ProviderMetadata>>,
    /// `oidc.issuer`'s validator: audiences, leeway, role paths.
    pub validator: &'a BearerValidator,
    pub metrics: &'a Metrics,
}

impl Introspector {
    /// `capacity` 0 asks the provider for every request.
    pub fn new(
        capacity: usize,
        ttl: Duration,
        client_id: &str,
        client_secret: Option<Secret>,
    ) -> Introspector {
        Introspector {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            key: rand::random(),
            ttl: ttl.as_secs().max(1),
            client_id: client_id.to_owned(),
            client_secret,
        }
    }

    fn cache_key(&self, token: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(token.as_bytes());
        h.finalize().into()
    }

    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The identity of an opaque token.
    pub async fn identity(
        &self,
        token: &str,
        cx: &Context<'_>,
    ) -> Result<Arc<Identity>, IntrospectionError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(IntrospectionError::Refused(TokenError::Malformed));
        }
        let Some(cache) = &self.cache else {
            let now = crate::unix_now();
            return answer_result(self.ask(token, cx, now).await);
        };
        let key = self.cache_key(token);
        // Twice at most: a second round only after dropping an answer that expired.
        for _ in 0..2 {
            match cache.get_value_or_guard_async(&key).await {
                Ok(answer) if answer.until() > crate::unix_now() => {
                    cx.metrics.introspection("hit");
                    return answer_result(answer);
                }
                Ok(_) => {
                    cache.remove(&key);
                }
                Err(guard) => {
                    let answer = self.ask(token, cx, crate::unix_now()).await;
                    let _ = guard.insert(answer.clone());
                    return answer_result(answer);
                }
            }
        }
        answer_result(self.ask(token, cx, crate::unix_now()).await)
    }

    /// One call to the endpoint, turned into a cacheable answer.
    async fn ask(&self, token: &str, cx: &Context<'_>, now: u64) -> Answer {
        let unavailable = Answer::Unavailable(now + UNAVAILABLE_FOR);
        let Some(endpoint) = cx
            .metadata
            .as_ref()
            .and_then(|m| m.introspection_endpoint.clone())
        else {
            cx.metrics.introspection("unavailable");
            tracing::warn!("the provider's discovery document names no introspection_endpoint");
            return unavailable;
        };
        let response = match self.call(&endpoint, token, cx.client).await {
            Ok(r) => r,
            Err(e) => {
                cx.metrics.introspection("unavailable");
                tracing::warn!(error = %e, "the introspection endpoint cannot be reached");
                return unavailable;
            }
        };
        let status = response.status();
        if status.is_server_error() {
            cx.metrics.introspection("unavailable");
            tracing::warn!(
                status = status.as_u16(),
                "the introspection endpoint failed"
            );
            return unavailable;
        }
        let refused = |e: TokenError| Answer::Refused(e, now + self.ttl);
        if !status.is_success() {
            cx.metrics.introspection("error");
            tracing::warn!(
                status = status.as_u16(),
                "the introspection endpoint refused the gateway's request (check oidc.client_id and client_secret)"
            );
            // Not cached: the next request asks again.
            return Answer::Refused(TokenError::Introspection, now);
        }
        match judge(response.body(), cx.validator) {
            Ok(claims) => {
                cx.metrics.introspection("active");
                let exp = claims.get("exp").and_then(Value::as_f64).map(|e| e as u64);
                let until = exp.map_or(now + self.ttl, |e| e.min(now + self.ttl));
                let mut id = cx.validator.identity(claims);
                id.expires_at = Some(exp.unwrap_or(until));
                id.access_token = Some(token.to_owned());
                id.from_bearer = true;
                Answer::Active(Arc::new(id), until)
            }
            Err(TokenError::Inactive) => {
                cx.metrics.introspection("inactive");
                refused(TokenError::Inactive)
            }
            Err(TokenError::Introspection) => {
                cx.metrics.introspection("error");
                Answer::Refused(TokenError::Introspection, now)
            }
            Err(e) => {
                cx.metrics.introspection("refused");
                refused(e)
            }
        }
    }

    async fn call(
        &self,
        endpoint: &str,
        token: &str,
        client: &ProviderClient,
    ) -> Result<http::Response<Vec<u8>>, ProviderError> {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let secret = self.client_secret.as_ref().map_or("", |s| s.expose());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&self.client_id),
            enc(secret)
        ));
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let transport = |reason: String| ProviderError::Transport {
            url: endpoint.to_owned(),
            reason,
        };
        let req = http::Request::post(endpoint)
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body.into_bytes())
            .map_err(|e| transport(e.to_string()))?;
        client.call(req).await
    }
}

fn answer_result(a: Answer) -> Result<Arc<Identity>, IntrospectionError> {
    match a {
        Answer::Active(id, _) => Ok(id),
        Answer::Refused(e, _) => Err(IntrospectionError::Refused(e)),
        Answer::Unavailable(_) => Err(IntrospectionError::Unavailable),
    }
}

/// An introspection response body (RFC 7662 §2.2): a JSON object, without duplicate keys,
/// whose `active` is a boolean; an active one's claims judged as a JWT's would be.
fn judge(body: &[u8], validator: &BearerValidator) -> Result<Map<String, Value>, TokenError> {
    let mut claims = super::jose::strict_object(body).ok_or(TokenError::Introspection)?;
    match claims.remove("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(TokenError::Inactive),
        _ => return Err(TokenError::Introspection),
    }
    if let Some(Value::String(t)) = claims.get("token_type") {
        if t.to_ascii_lowercase().contains("refresh") {
            return Err(TokenError::NotAccessToken);
        }
    }
    validator.check_introspected(claims)
}

#[cfg(test)]
mod tests;
