//! `GET /oauth2/login?rd=URL`: starts a login and returns to `rd` afterwards.

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::redirect::{query_param, validate};
use crate::gateway::{Gateway, Runtime};
use crate::pipeline::{start_login, RequestContext};
use crate::response::{Body, Denial};

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
    Err(start_login(gw, rt, ctx, rd))
}
