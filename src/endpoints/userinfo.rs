//! `GET /oauth2/userinfo`: the current credential's identity as JSON, or 401.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::auth::{Authenticate, Presented};
use crate::context::RequestContext;
use crate::gateway::{Gateway, Runtime};
use crate::response::{full, Body, Denial};

pub async fn handle(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Denial::MethodNotAllowed);
    }
    let mut auth = gw.authenticator(rt);
    // A DPoP proof for userinfo names its own URL (the path under auth_prefix).
    let presented = Presented {
        method: req.method(),
        path: req.uri().path(),
        headers: req.headers(),
    };
    let id = auth.authenticate(&presented).await;
    ctx.set_cookies.append(&mut auth.set_cookies);
    let id = id?.ok_or(Denial::Unauthenticated)?;
    ctx.subject = Some(id.subject.clone());
    ctx.reason = "userinfo";
    let body = serde_json::json!({
        "sub": id.subject,
        "user": id.user(),
        "email": id.email,
        "roles": id.roles,
        "scopes": id.scopes,
        "exp": id.expires_at,
    });
    let mut resp = Response::new(full(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
