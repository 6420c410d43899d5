//! `/oauth2/auth`: forward-auth for nginx `auth_request` and Traefik `forwardAuth`.
//!
//! The calling proxy says which request it is asking about with `X-Forwarded-Method` +
//! `X-Forwarded-Uri` (Traefik) or `X-Original-Method` + `X-Original-URI` (nginx). The answer
//! is 200 with the identity headers, or the same 401/403 a proxied request would get.
//! Only callers inside `server.trusted_proxies` are served.

use http::header::HeaderMap;
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::forward::forwarded;
use crate::forward::headers::{
    X_FORWARDED_METHOD, X_FORWARDED_URI, X_ORIGINAL_METHOD, X_ORIGINAL_URI,
};
use crate::gateway::{Gateway, Runtime};
use crate::path;
use crate::pipeline::{self, RequestContext};
use crate::response::{empty, Body, Denial};

pub async fn handle(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    if !forwarded::is_trusted(&rt.config.server.trusted_proxies, ctx.conn.peer.ip()) {
        return Err(Denial::UntrustedCaller);
    }
    let headers = req.headers();
    let method = asked_method(headers)?;
    let uri = asked_uri(headers)?;
    let (raw_path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri.as_str(), None),
    };
    let target =
        path::normalize(raw_path, rt.config.server.allow_path_params).map_err(Denial::BadPath)?;
    ctx.path = Some(target.as_str().to_owned());
    ctx.method = method.clone();
    ctx.browser = crate::response::is_browser(&method, headers);
    let identity = pipeline::authorize(gw, rt, ctx, &method, &target, query, headers).await?;
    let mut resp = Response::new(empty());
    if let Some(id) = &identity {
        rt.headers.set_identity(resp.headers_mut(), id);
    }
    Ok(resp)
}

fn header_str<'a>(headers: &'a HeaderMap, names: [&http::HeaderName; 2]) -> Option<&'a str> {
    names
        .into_iter()
        .find_map(|n| headers.get(n))
        .and_then(|v| v.to_str().ok())
}

fn asked_method(headers: &HeaderMap) -> Result<Method, Denial> {
    match header_str(headers, [&X_FORWARDED_METHOD, &X_ORIGINAL_METHOD]) {
        None => Ok(Method::GET),
        Some(m) => Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| Denial::BadRequest("invalid X-Forwarded-Method")),
    }
}

fn asked_uri(headers: &HeaderMap) -> Result<String, Denial> {
    let raw = header_str(headers, [&X_FORWARDED_URI, &X_ORIGINAL_URI]).ok_or(
        Denial::BadRequest("missing X-Forwarded-Uri or X-Original-URI"),
    )?;
    // An absolute URI: keep its path and query.
    let raw = raw.trim();
    if raw.starts_with('/') {
        return Ok(raw.to_owned());
    }
    match raw.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() => Ok(u
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".into())),
        _ => Err(Denial::BadRequest("invalid X-Forwarded-Uri")),
    }
}
