//! The gateway's own endpoints under `server.auth_prefix` (default `/oauth2`): login,
//! callback, logout, back-channel logout, userinfo, forward-auth, and the JWKS of the
//! identity assertions. Requests here never
//! reach the rules or the upstream.

mod backchannel;
mod callback;
mod forward_auth;
mod jwks;
pub mod login;
mod logout;
pub mod public_host;
pub mod redirect;
mod userinfo;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::context::RequestContext;
use crate::gateway::{Gateway, Runtime};
use crate::response::{Body, Denial};

/// One of the reserved endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Callback,
    Logout,
    UserInfo,
    ForwardAuth,
    /// `POST /backchannel-logout`: OpenID Connect Back-Channel Logout.
    BackchannelLogout,
    /// `GET /jwks`: the public keys of the identity assertions.
    Jwks,
    /// Under the prefix but not an endpoint: 404, never forwarded.
    Unknown,
}

/// Is this normalized path under the prefix, and which endpoint is it?
pub fn route(prefix: &str, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(match rest {
        "/login" => Endpoint::Login,
        "/callback" => Endpoint::Callback,
        "/logout" => Endpoint::Logout,
        "/userinfo" => Endpoint::UserInfo,
        "/auth" => Endpoint::ForwardAuth,
        "/backchannel-logout" => Endpoint::BackchannelLogout,
        "/jwks" => Endpoint::Jwks,
        _ => Endpoint::Unknown,
    })
}

pub async fn handle(
    endpoint: Endpoint,
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    match endpoint {
        Endpoint::UserInfo => userinfo::handle(gw, rt, ctx, req).await,
        Endpoint::ForwardAuth => forward_auth::handle(gw, rt, ctx, req).await,
        Endpoint::Login => login::handle(gw, rt, ctx, req).await,
        Endpoint::Callback => callback::handle(gw, rt, ctx, req).await,
        Endpoint::Logout => logout::handle(gw, rt, ctx, req).await,
        Endpoint::BackchannelLogout => backchannel::handle(gw, rt, ctx, req).await,
        Endpoint::Jwks => jwks::handle(gw, ctx, &req),
        Endpoint::Unknown => Err(Denial::NotFound),
    }
}
