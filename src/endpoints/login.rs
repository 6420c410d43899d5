//! Starting a login: `GET /oauth2/login?rd=URL`, and the 302 to the provider that a
//! browser without a credential gets on a rule that lets it log in.

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::redirect::{query_param, validate};
use crate::context::RequestContext;
use crate::gateway::{Gateway, Runtime};
use crate::response::{redirect, Body, Denial};

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
    start(gw, rt, ctx, rd)
}

/// Sends the browser to the provider's login page, keeping the attempt (state, nonce,
/// PKCE verifier, `rd`) in a cookie. `rd` must be validated already.
pub fn start(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    rd: String,
) -> Result<Response<Body>, Denial> {
    let (Some(codec), Some(meta)) = (&rt.session, gw.jwks.metadata()) else {
        return Err(Denial::ProviderUnavailable);
    };
    let (url, login) = rt.oidc.start(&meta, &gw.jwks.keys(), rd).map_err(|e| {
        tracing::warn!(error = %e, "cannot start a login");
        Denial::ProviderUnavailable
    })?;
    if let Some(c) = codec.seal_login(&login) {
        ctx.set_cookies.push(c);
    }
    ctx.reason = "login";
    Ok(redirect(url.as_str()))
}
