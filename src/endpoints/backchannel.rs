//! `POST /oauth2/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//!
//! The provider posts a form with one `logout_token`, a JWT verified by
//! [`crate::auth::logout_token`]. A valid one ends every session made with its `sid`, or,
//! when it names only a `sub`, every session of that subject created up to now. With the
//! cookie store that is recorded in this process (it holds no list of sessions): every
//! later request with such a session is treated as logged out, on this instance only.
//!
//! The endpoint needs no session and is not subject to the cross-site check: the request
//! comes from the provider, and the token's signature is what authenticates it. 200 with
//! `Cache-Control: no-store` and an empty body on success, 400 with a JSON
//! `invalid_request` otherwise (503 while the provider's keys were never fetched).

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::auth::logout_token::{
    LogoutClaims, LogoutTarget, LogoutTokenError, LogoutTokenVerifier,
};
use crate::auth::store::RedisStore;
use crate::context::RequestContext;
use crate::gateway::{Gateway, Runtime};
use crate::response::{empty, Body, Denial};

/// Largest form read.
const MAX_BODY: usize = 64 * 1024;
/// The shortest time an ended provider session or subject is remembered (the configured
/// `session.lifetime` when longer): no session made before the logout outlives it.
const MIN_REMEMBER: Duration = Duration::from_secs(24 * 3600);

pub async fn handle(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    let Some(codec) = &rt.session else {
        return Err(Denial::NotFound);
    };
    if req.method() != Method::POST {
        return Err(Denial::MethodNotAllowed);
    }
    let verifier = LogoutTokenVerifier::new(&rt.config.oidc, &rt.config.tokens);
    let claims = match verify(gw, &verifier, req).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(reason = e.code(), "back-channel logout refused");
            return Err(match e {
                LogoutTokenError::KeysUnavailable => Denial::ProviderUnavailable,
                e => Denial::InvalidLogoutToken(e),
            });
        }
    };

    let now = crate::unix_now();
    let keep_until = now.saturating_add(codec.settings().lifetime.max(MIN_REMEMBER).as_secs());
    let (by, recorded) = match &claims.target {
        LogoutTarget::ProviderSession(sid) => {
            ("sid", gw.revocations.end_provider_session(sid, keep_until))
        }
        LogoutTarget::Subject(sub) => ("sub", gw.revocations.end_subject(sub, now, keep_until)),
    };
    if recorded.is_err() {
        // In force here until a restart, but not on disk (`session.state_dir`): a 503 lets
        // the provider retry, and its retry of this token is accepted.
        gw.revocations.forget_logout_token(&claims.jti);
        return Err(Denial::LogoutNotRecorded);
    }
    if let Some(store) = &gw.store {
        end_stored(store, &claims.target).await?;
    }
    gw.metrics.session_ended("backchannel");
    tracing::info!(by, "back-channel logout: the provider ended a session");
    ctx.subject = claims.sub;
    ctx.reason = "backchannel_logout";
    let mut resp = Response::new(empty());
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// With the Redis store: deletes the sessions the logout names, for every replica,
/// before the provider gets its answer (a 503 lets it retry if Redis does not answer).
async fn end_stored(store: &RedisStore, target: &LogoutTarget) -> Result<usize, Denial> {
    let (by, id) = match target {
        LogoutTarget::ProviderSession(sid) => ("psid", sid),
        LogoutTarget::Subject(sub) => ("sub", sub),
    };
    let unavailable = |_| Denial::StoreUnavailable;
    let mut ended = 0;
    for sid in store.sessions_of(by, id).await.map_err(unavailable)? {
        if store.delete(&sid).await.map_err(unavailable)? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Reads the form, verifies its logout token and marks its `jti` used.
async fn verify(
    gw: &Gateway,
    verifier: &LogoutTokenVerifier,
    req: Request<Incoming>,
) -> Result<LogoutClaims, LogoutTokenError> {
    if !is_form(req.headers()) {
        return Err(LogoutTokenError::NotAForm);
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| LogoutTokenError::Body)?
        .to_bytes();
    let token = logout_token(&body)?;
    let claims = verifier.verify(&token, &gw.jwks).await?;
    if !gw
        .revocations
        .first_logout_token(&claims.jti, claims.remember_until(verifier.leeway()))
    {
        return Err(LogoutTokenError::Replayed);
    }
    Ok(claims)
}

/// `Content-Type: application/x-www-form-urlencoded` (parameters such as `charset` aside).
fn is_form(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    v.to_str().is_ok_and(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// The one non-empty `logout_token` field of the form.
fn logout_token(body: &[u8]) -> Result<String, LogoutTokenError> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(body) {
        if k == "logout_token" {
            if found.is_some() {
                return Err(LogoutTokenError::Missing);
            }
            found = Some(v.into_owned());
        }
    }
    found
        .filter(|t| !t.is_empty())
        .ok_or(LogoutTokenError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exactly_one_logout_token() {
        assert_eq!(logout_token(b"logout_token=a.b.c").as_deref(), Ok("a.b.c"));
        assert_eq!(
            logout_token(b"x=1&logout_token=a%2Eb.c").as_deref(),
            Ok("a.b.c")
        );
        for bad in [
            &b""[..],
            b"logout_token=",
            b"token=a",
            b"logout_token=a&logout_token=b",
        ] {
            assert_eq!(logout_token(bad), Err(LogoutTokenError::Missing));
        }
    }

    #[test]
    fn only_a_form_is_read() {
        let mut h = HeaderMap::new();
        assert!(!is_form(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        );
        assert!(is_form(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_form(&h));
    }
}
