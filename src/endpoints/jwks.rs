//! `GET /oauth2/jwks`: the public keys of the identity assertions (`headers.assertion`),
//! as a JSON Web Key Set. Public: an upstream fetches it to verify assertions.
//!
//! It lists the key the serving configuration signs with and, after a reload changed the
//! key, the previous one for one assertion lifetime. Without `headers.assertion` the set
//! is empty (`{"keys": []}`), so a verifier fails closed. Cached by clients for a minute at
//! most: a verifier that meets an unknown `kid` should fetch the set again.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::context::RequestContext;
use crate::gateway::Gateway;
use crate::response::{full, Body, Denial};

pub fn handle(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Denial::MethodNotAllowed);
    }
    ctx.reason = "jwks";
    let mut resp = Response::new(full(gw.assertion_keys.jwks().to_string()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(resp)
}
