//! `GET /oauth2/callback`: the provider sends the browser back here.
//!
//! The `state` must match a login-attempt cookie of this browser (which also carries the
//! nonce and PKCE verifier) and must not have been used before; then the code is exchanged,
//! the ID token verified, the session cookie set, and the browser sent to `rd`.

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::redirect::query_param;
use crate::auth::authenticate::store_cookie;
use crate::auth::oidc::Tokens;
use crate::auth::refresh::access_token_expiry;
use crate::auth::session::{random_token, LoginState, SessionData, LOGIN_TTL};
use crate::auth::session::{SealedSession, SessionCodec, SessionLookup};
use crate::context::RequestContext;
use crate::gateway::{Gateway, Runtime};
use crate::response::{redirect, Body, Denial};
use crate::rules::StepUp;

pub async fn handle(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    if req.method() != Method::GET {
        return Err(Denial::MethodNotAllowed);
    }
    let Some(codec) = &rt.session else {
        return Err(Denial::NotFound);
    };
    // Shown as a page even to clients that did not ask for HTML: this is a browser step.
    ctx.browser = true;
    let query = req.uri().query();
    let state = query_param(query, "state")
        .ok_or(Denial::LoginFailed("the provider's answer has no state"))?;
    if let Some(err) = query_param(query, "error") {
        tracing::info!(error = %err, description = ?query_param(query, "error_description"), "the provider refused the login");
        ctx.set_cookies.push(codec.clear_login(&state));
        return Err(Denial::LoginFailed(provider_error(&err)));
    }
    let code = query_param(query, "code")
        .ok_or(Denial::LoginFailed("the provider's answer has no code"))?;
    let Some(login) = codec.open_login(req.headers(), &state) else {
        return Err(unknown_attempt(rt, ctx, &req));
    };
    ctx.set_cookies.push(codec.clear_login(&state));
    if !gw.revocations.first_use(
        &format!("state:{state}"),
        crate::unix_now() + LOGIN_TTL.as_secs(),
    ) {
        return Err(Denial::LoginFailed("this login answer was already used"));
    }
    let meta = gw.jwks.metadata().ok_or(Denial::ProviderUnavailable)?;
    let tokens = rt
        .oidc
        .exchange(&gw.provider, &meta, &gw.jwks, &code, &login)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "login failed at the code exchange");
            Denial::LoginFailed("the identity provider's answer could not be verified")
        })?;
    let data = new_session(tokens, codec.settings().lifetime.as_secs())?;
    if let Some(sub) = crate::auth::oidc::jwt_payload(&data.id_token)
        .and_then(|c| c.get("sub").and_then(|v| v.as_str().map(str::to_owned)))
    {
        ctx.subject = Some(sub);
    }
    // The new session replaces the one this browser had (a step-up's weaker one, or
    // another user's): that one ends here and now, for every copy of its cookie.
    let previous = end_previous(gw, codec, req.headers()).await?;
    let cookies = match &gw.store {
        Some(store) => {
            // Written before the browser learns of it: any replica serves its next request.
            let sealed = codec
                .seal_stored(&data)
                .ok_or(Denial::LoginFailed("the session could not be sealed"))?;
            let ttl = std::time::Duration::from_secs(data.exp.saturating_sub(data.iat));
            let sub = ctx.subject.as_deref().unwrap_or("");
            let provider_sid = crate::auth::oidc::jwt_payload(&data.id_token)
                .and_then(|c| c.get("sid").and_then(|v| v.as_str().map(str::to_owned)));
            store
                .put(&data.sid, sub, provider_sid.as_deref(), sealed, ttl)
                .await
                .map_err(|_| Denial::StoreUnavailable)?;
            store_cookie(codec, &data, previous)
        }
        None => {
            gw.local_sessions
                .record(crate::auth::sessions::SessionSummary::of(&data));
            codec.seal(&data, previous)
        }
    };
    ctx.set_cookies.extend(cookies);
    gw.metrics.session_started();
    if !stepped_up(&login, &data, rt.config.tokens.leeway.as_secs()) {
        // The provider answered with a weaker or older authentication than was asked for:
        // the session stands, but the page that needs more is not sent there again (that
        // would be a loop of logins).
        gw.metrics.step_up("refused");
        tracing::info!(
            subject = ctx.subject.as_deref().unwrap_or("-"),
            "the provider did not give the authentication level the page needs"
        );
        return Err(Denial::StepUpRefused);
    }
    if !login.acr.is_empty() || login.max_age.is_some() {
        gw.metrics.step_up("completed");
    }
    ctx.reason = "login_complete";
    Ok(redirect(&login.rd))
}

/// Does the new session's ID token carry what a step-up login asked for: one of the `acr`
/// values, and an `auth_time` within `max_age` (plus the leeway)?
fn stepped_up(login: &LoginState, data: &SessionData, leeway: u64) -> bool {
    if login.acr.is_empty() && login.max_age.is_none() {
        return true;
    }
    let Some(claims) = crate::auth::oidc::jwt_payload(&data.id_token) else {
        return false;
    };
    let asked = StepUp {
        acr: login.acr.clone(),
        max_age: login.max_age.map(|m| m.saturating_add(leeway)),
    };
    asked.satisfied(
        claims.get("acr").and_then(|v| v.as_str()),
        claims.get("auth_time").and_then(|v| v.as_u64()),
        crate::unix_now(),
    )
}

/// Ends the session the browser comes with, if any, and returns how many cookies it had.
/// Cookie store: revoked on this instance (and in `session.state_dir`); Redis store:
/// deleted, so no replica serves it.
async fn end_previous(
    gw: &Gateway,
    codec: &SessionCodec,
    headers: &http::HeaderMap,
) -> Result<usize, Denial> {
    let (sealed, chunks) = match codec.read(headers) {
        SealedSession::Sealed { sealed, chunks } => (sealed, chunks),
        SealedSession::Malformed { chunks } => return Ok(chunks),
        SealedSession::None => return Ok(0),
    };
    match &gw.store {
        Some(store) => {
            if let Some((r, _)) = codec.open_ref(&sealed) {
                if store
                    .delete(&r.sid)
                    .await
                    .map_err(|_| Denial::StoreUnavailable)?
                {
                    gw.metrics.session_ended("replaced");
                }
            }
        }
        None => {
            if let SessionLookup::Valid { data, .. } = codec.unseal(&sealed, chunks) {
                // A failed journal write is logged; the old cookie is replaced anyway.
                let _ = codec.revoke(&data.sid, data.exp);
                gw.metrics.session_ended("replaced");
            }
        }
    }
    Ok(chunks)
}

/// No login attempt for this state. On another host than `public_url`'s that is most
/// likely why (the browser keeps cookies apart by host name), and the page says so.
fn unknown_attempt(rt: &Runtime, ctx: &RequestContext, req: &Request<Incoming>) -> Denial {
    let public_url = &rt.config.server.public_url;
    let authority = crate::authority::request_authority(req.version(), req.uri(), req.headers())
        .ok()
        .flatten();
    match super::public_host::asked(rt, ctx, authority, req.headers()) {
        Some(asked) if !super::public_host::is_public(asked, public_url) => {
            Denial::LoginElsewhere {
                public_url: public_url.origin().ascii_serialization(),
            }
        }
        _ => Denial::LoginFailed("the login attempt is unknown or expired; start again"),
    }
}

/// What the browser is told when the provider answered with `error=...`.
fn provider_error(err: &str) -> &'static str {
    match err {
        "access_denied" => "access was denied at the identity provider",
        "login_required" | "interaction_required" | "consent_required" => {
            "the identity provider needs you to sign in again"
        }
        _ => "the identity provider reported an error",
    }
}

/// A new session (fresh id) holding the tokens of a completed login.
fn new_session(tokens: Tokens, lifetime: u64) -> Result<SessionData, Denial> {
    let id_token = tokens.id_token.ok_or(Denial::LoginFailed("no ID token"))?;
    let now = crate::unix_now();
    Ok(SessionData {
        sid: random_token(18),
        iat: now,
        exp: now + lifetime,
        at_exp: access_token_expiry(&tokens.access_token, tokens.expires_in),
        id_token,
        access_token: Some(tokens.access_token),
        refresh_token: tokens.refresh_token,
    })
}
