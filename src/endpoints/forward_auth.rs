//! `/oauth2/auth`: forward-auth for nginx `auth_request` and Traefik `forwardAuth`.
//!
//! The calling proxy says which request it is asking about with `X-Forwarded-Method` +
//! `X-Forwarded-Uri` (Traefik) or `X-Original-Method` + `X-Original-URI` (nginx). The answer
//! is 200 with the identity headers, or the same 401/403 a proxied request would get.
//! Only callers inside `server.trusted_proxies` are served. When any rule has a `host`,
//! the asked request's host is the proxy's `X-Forwarded-Host` (required then).
//!
//! A browser without a credential is never redirected by default: nginx's `auth_request`
//! turns anything but 2xx, 401 and 403 into a 500. It gets a 401 whose `X-Portcullis-Login`
//! header names `<public_url><auth_prefix>/login?rd=<the asked path>`, and the proxy sends
//! the browser there (nginx: `error_page 401` + `auth_request_set`). With
//! `?login=redirect` on the endpoint (for Traefik, which hands a non-2xx answer to the
//! client as it is) the endpoint itself answers with the 302 to the provider and the
//! login cookie, exactly as a proxied request would; when `X-Forwarded-Host` is another
//! host than `public_url`'s, where that cookie would never reach the callback, it answers
//! with a 302 to `<public_url><auth_prefix>/login?rd=...` instead.

use http::header::HeaderMap;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use url::Url;

use super::redirect::{query_param, validate};
use crate::admission::{self, Admitted};
use crate::config::ServerSettings;
use crate::context::{LoginStart, RequestContext};
use crate::decision::Asked;
use crate::forward::forwarded;
use crate::forward::headers::{
    X_FORWARDED_HOST, X_FORWARDED_METHOD, X_FORWARDED_PROTO, X_FORWARDED_URI, X_ORIGINAL_METHOD,
    X_ORIGINAL_URI,
};
use crate::gateway::{Gateway, Runtime};
use crate::path::{self, NormalizedPath};
use crate::response::{empty, Body, Denial};

/// The endpoint's query parameter that chooses how a browser without a credential is told
/// to log in.
const LOGIN_PARAM: &str = "login";

pub async fn handle(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    if !forwarded::is_trusted(&rt.config.server.trusted_proxies, ctx.conn.peer.ip()) {
        return Err(Denial::UntrustedCaller);
    }
    let redirect = login_mode(req.uri().query())?;
    let headers = req.headers();
    let method = asked_method(headers)?;
    let uri = asked_uri(headers)?;
    let (raw_path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri.as_str(), None),
    };
    let target = path::normalize(raw_path, rt.config.server.allow_path_params)?;
    ctx.path = Some(target.as_str().to_owned());
    ctx.method = method.clone();
    ctx.browser = crate::response::is_browser(&method, headers);
    if rt.config.rules.has_hosts() {
        ctx.host = Some(asked_host(headers)?);
    }
    let rd = return_to(
        headers,
        &target,
        query,
        &rt.config.server.public_url,
        ctx.conn.tls,
    );
    ctx.login = if redirect {
        LoginStart::RedirectTo(rd)
    } else {
        LoginStart::Offer(login_url(&rt.config.server, &rd))
    };
    let host = ctx.host.clone();
    let asked = Asked {
        method: &method,
        path: &target,
        query,
        host: host.as_deref(),
        headers,
        body_methods: &[],
    };
    let identity = match admission::authorize(gw, rt, ctx, &asked).await? {
        Admitted::Forward(identity) => identity,
        // The proxy forwards the preflight itself; the answer carries no identity.
        Admitted::Preflight => None,
        Admitted::LogIn(rd, step_up) => {
            // The login cookie is set on the host the proxy was asked for; on another host
            // than public_url's the callback would not see it, so the browser starts the
            // login at the gateway's own login URL instead (which asks for the level of
            // the rule of `rd` itself).
            let target = super::login::login_path(rt, &rd);
            let asked = super::public_host::forwarded_host(headers);
            if let Some(moved) =
                super::public_host::move_to_public(rt, ctx, asked, headers, &target)
            {
                return Ok(moved);
            }
            return super::login::start(gw, rt, ctx, rd, step_up.as_ref());
        }
    };
    let mut resp = Response::new(empty());
    if let Some(id) = &identity {
        rt.headers.set_identity(resp.headers_mut(), id);
        if let Some(signer) = &rt.assertion {
            // `aud` is the origin of the rule's upstream, as on the main listener.
            let origin = &rt.upstream_for(ctx.upstream).origin;
            rt.headers
                .set_assertion(resp.headers_mut(), id, signer, origin);
        }
    }
    Ok(resp)
}

/// `?login=redirect` on the endpoint: answer a browser that may log in with the 302.
fn login_mode(query: Option<&str>) -> Result<bool, Denial> {
    match query_param(query, LOGIN_PARAM).as_deref() {
        None => Ok(false),
        Some("redirect") => Ok(true),
        Some(_) => Err(Denial::BadRequest(
            "unknown login mode (only login=redirect)",
        )),
    }
}

/// The host the proxy was asked for (`X-Forwarded-Host`); never the auth request's own
/// Host.
fn asked_host(headers: &HeaderMap) -> Result<String, Denial> {
    let host = first_value(headers, &X_FORWARDED_HOST).ok_or(Denial::BadRequest(
        "missing X-Forwarded-Host (rules with a host need it)",
    ))?;
    crate::rules::host::request_host(host).ok_or(Denial::BadRequest("invalid X-Forwarded-Host"))
}

/// Where a login started for the asked request returns to. The proxy's
/// `X-Forwarded-Proto` + `X-Forwarded-Host` + the asked URI make the absolute URL; it must
/// have `public_url`'s origin, else only its path and query are kept (the browser then
/// returns to that path on `public_url`, never to another origin). Always a path that
/// passes `rd` validation, or `/`.
fn return_to(
    headers: &HeaderMap,
    target: &NormalizedPath,
    query: Option<&str>,
    public_url: &Url,
    tls: bool,
) -> String {
    let path = match query {
        Some(q) => format!("{}?{q}", target.as_str()),
        None => target.as_str().to_owned(),
    };
    let Some(host) = first_value(headers, &X_FORWARDED_HOST) else {
        return validate(Some(&path), public_url);
    };
    let proto =
        first_value(headers, &X_FORWARDED_PROTO).unwrap_or(if tls { "https" } else { "http" });
    let asked = format!("{proto}://{host}{path}");
    match Url::parse(&asked) {
        Ok(u) if u.origin() == public_url.origin() => validate(Some(&asked), public_url),
        _ => {
            // Host and scheme are whatever the proxy was told; they only ever decide
            // between "that URL" and "that path on public_url".
            tracing::debug!(
                "the forwarded origin is not public_url's; the login returns to the path on public_url"
            );
            validate(Some(&path), public_url)
        }
    }
}

/// `<public_url><auth_prefix>/login?rd=<rd>`, with `rd` percent-encoded.
fn login_url(server: &ServerSettings, rd: &str) -> String {
    let base = server.public_url.as_str().trim_end_matches('/');
    let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    format!("{base}{}/login?rd={rd}", server.auth_prefix)
}

/// The first comma-separated value of a header, trimmed; `None` when absent or empty.
fn first_value<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("valid value"));
        }
        h
    }

    type Case = (
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
        &'static str,
    );

    #[test]
    fn the_login_returns_to_the_asked_path_and_never_to_another_origin() {
        let public = Url::parse("https://app.example.com").expect("valid");
        let target = path::normalize("/a/../docs/x", false).expect("valid path");
        // (forwarded headers, asked query, expected rd)
        let cases: [Case; 7] = [
            (&[], Some("q=1&r=2"), "/docs/x?q=1&r=2"),
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "app.example.com"),
                ],
                None,
                "/docs/x",
            ),
            // Default port spelled out: still the same origin.
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "app.example.com:443"),
                ],
                Some("a=b"),
                "/docs/x?a=b",
            ),
            // Another host, scheme or port: only the path survives.
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "evil.example"),
                ],
                None,
                "/docs/x",
            ),
            (
                &[
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-host", "app.example.com"),
                ],
                None,
                "/docs/x",
            ),
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "app.example.com@evil.example"),
                ],
                None,
                "/docs/x",
            ),
            // A query that fails rd validation falls back to `/`.
            (&[], Some("x=%0d%0aSet-Cookie:a"), "/"),
        ];
        for (pairs, query, want) in cases {
            let got = return_to(&headers(pairs), &target, query, &public, false);
            assert_eq!(got, want, "{pairs:?} {query:?}");
        }
    }
}
