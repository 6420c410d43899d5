//! Starting a login: `GET /oauth2/login?rd=URL`, and the 302 to the provider that a
//! browser without a credential gets on a rule that lets it log in. Either way a browser
//! that asked for another host than `public_url`'s is first sent there
//! ([`super::public_host`]), so that the login cookie lands where the callback arrives.

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::public_host;
use super::redirect::{query_param, validate};
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
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Denial::MethodNotAllowed);
    }
    if rt.session.is_none() {
        return Err(Denial::NotFound);
    }
    let rd = validate(
        query_param(req.uri().query(), "rd").as_deref(),
        &rt.config.server.public_url,
    );
    if let Some(moved) = on_public_host(rt, ctx, &req, &login_path(rt, &rd)) {
        return Ok(moved);
    }
    let step_up = step_up_for(rt, ctx.host.as_deref(), &rd);
    start(gw, rt, ctx, rd, step_up.as_ref())
}

/// The step-up of the rule that a `GET` of `rd` selects: a login for a page that needs a
/// stronger authentication asks for it at once (forward-auth's login links land here).
fn step_up_for(rt: &Runtime, host: Option<&str>, rd: &str) -> Option<StepUp> {
    let path = rd.split(['?', '#']).next().unwrap_or("/");
    let path = crate::path::normalize(path, rt.config.server.allow_path_params).ok()?;
    rt.config
        .rules
        .find_for(&Method::GET, host, &path)?
        .step_up
        .clone()
}

/// A login for a request on the main listener that the rules let log in, returning to
/// `rd` (its own path and query); a browser on another host is first sent to that path on
/// `public_url`.
pub fn begin<B>(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: &Request<B>,
    rd: String,
    step_up: Option<&StepUp>,
) -> Result<Response<Body>, Denial> {
    if let Some(moved) = on_public_host(rt, ctx, req, &rd) {
        return Ok(moved);
    }
    start(gw, rt, ctx, rd, step_up)
}

/// `<auth_prefix>/login?rd=<rd>` (just the login path when that would not pass `rd`
/// validation as a whole).
pub fn login_path(rt: &Runtime, rd: &str) -> String {
    let prefix = &rt.config.server.auth_prefix;
    let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let path = format!("{prefix}/login?rd={encoded}");
    if validate(Some(&path), &rt.config.server.public_url) == path {
        path
    } else {
        format!("{prefix}/login")
    }
}

/// The 302 to `target` on `public_url` for a browser on the main listener that asked for
/// another host.
fn on_public_host<B>(
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: &Request<B>,
    target: &str,
) -> Option<Response<Body>> {
    let authority = crate::authority::request_authority(req.version(), req.uri(), req.headers())
        .ok()
        .flatten();
    let asked = public_host::asked(rt, ctx, authority, req.headers());
    public_host::move_to_public(rt, ctx, asked, req.headers(), target)
}

/// Sends the browser to the provider's login page, keeping the attempt (state, nonce,
/// PKCE verifier, `rd`, the step-up asked for) in a cookie. `rd` must be validated
/// already. A step-up asks the provider for its `acr_values` and `max_age`.
pub fn start(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    rd: String,
    step_up: Option<&StepUp>,
) -> Result<Response<Body>, Denial> {
    let (Some(codec), Some(meta)) = (&rt.session, gw.jwks.metadata()) else {
        return Err(Denial::ProviderUnavailable);
    };
    let (url, login) = rt
        .oidc
        .start(&meta, &gw.jwks.keys(), rd, step_up)
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot start a login");
            Denial::ProviderUnavailable
        })?;
    if let Some(c) = codec.seal_login(&login) {
        ctx.set_cookies.push(c);
    }
    ctx.reason = "login";
    Ok(redirect(url.as_str()))
}
