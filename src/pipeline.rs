//! The request pipeline: the only place where the phases are put in order.
//!
//! ```text
//! normalize path      -> 400 on a malformed path
//! auth_prefix?        -> endpoints (userinfo, forward-auth, ...)
//! match rule          -> 403 when none matches
//! authenticate        -> 400 two Authorization headers, 401 invalid bearer, 503 no keys yet
//! authorize           -> 401 no credential, 403 scope / role / claim
//! rewrite headers     -> strip spoofable headers, set identity and X-Forwarded-*
//! forward             -> 502 connect failure, 504 timeout; bodies stream both ways
//! log + metrics       -> one access-log line with the decision's reason
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::auth::{self, Credential, Identity};
use crate::authz::{self, Decision, DenyReason};
use crate::endpoints;
use crate::forward::{forwarded, headers as hdr};
use crate::gateway::{Gateway, Runtime};
use crate::path::{self, NormalizedPath};
use crate::response::{is_browser, Body, Denial};
use crate::rules::Rule;

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Per-request facts gathered by the phases, for the access log.
#[derive(Debug)]
pub struct RequestContext {
    pub conn: ConnInfo,
    pub method: Method,
    pub browser: bool,
    pub path: Option<String>,
    pub rule: Option<usize>,
    pub reason: &'static str,
    pub subject: Option<String>,
    pub upstream_time: Option<Duration>,
}

/// Handles one request end to end. Never fails: every refusal is a response.
pub async fn handle(gw: Arc<Gateway>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let rt = gw.runtime();
    let mut ctx = RequestContext {
        conn,
        method: req.method().clone(),
        browser: is_browser(req.method(), req.headers()),
        path: None,
        rule: None,
        reason: "forwarded",
        subject: None,
        upstream_time: None,
    };
    let resp = match run(&gw, &rt, &mut ctx, req).await {
        Ok(resp) => resp,
        Err(denial) => {
            ctx.reason = denial.reason();
            if let Denial::UpstreamConnect | Denial::UpstreamTimeout | Denial::UpstreamBroken =
                denial
            {
                gw.metrics.upstream_error(match denial {
                    Denial::UpstreamConnect => "connect",
                    Denial::UpstreamTimeout => "timeout",
                    _ => "io",
                });
            }
            denial.render(ctx.browser)
        }
    };
    let took = start.elapsed();
    let status = resp.status().as_u16();
    gw.metrics.request(ctx.reason, status, took);
    tracing::info!(
        target: "portcullis::access",
        method = %ctx.method,
        path = ctx.path.as_deref().unwrap_or("-"),
        status,
        decision = ctx.reason,
        rule = ctx.rule.map(|i| i as i64).unwrap_or(-1),
        subject = ctx.subject.as_deref().unwrap_or("-"),
        client = %ctx.conn.peer.ip(),
        upstream_ms = ctx.upstream_time.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        duration_ms = took.as_secs_f64() * 1000.0,
    );
    resp
}

async fn run(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    let path = path::normalize(req.uri().path(), rt.config.server.allow_path_params)
        .map_err(Denial::BadPath)?;
    ctx.path = Some(path.as_str().to_owned());

    if let Some(endpoint) = endpoints::route(&rt.config.server.auth_prefix, path.as_str()) {
        return endpoints::handle(endpoint, gw, rt, ctx, req).await;
    }

    let identity = authorize(
        gw,
        rt,
        ctx,
        req.method(),
        &path,
        req.uri().query(),
        req.headers(),
    )
    .await?;
    forward(gw, rt, ctx, req, &path, identity).await
}

/// The `_method=X` of a query, if any. A value that is not a method token is a 400.
fn method_override(query: Option<&str>) -> Result<Option<Method>, Denial> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "_method" || k == "%5Fmethod" || k == "%5fmethod" {
            let v = percent_decode(v).ok_or(Denial::BadRequest("invalid _method value"))?;
            return Method::from_bytes(v.to_ascii_uppercase().as_bytes())
                .map(Some)
                .map_err(|_| Denial::BadRequest("invalid _method value"));
        }
    }
    Ok(None)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Finds the rule(s), authenticates, and decides. Returns the identity to forward.
pub async fn authorize(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    method: &Method,
    path: &NormalizedPath,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<Identity>, Denial> {
    let rules = &rt.config.rules;
    let rule = rules.find(method, path).ok_or(Denial::NoRule)?;
    ctx.rule = Some(rule.index);
    // A request carrying `_method=X` must be allowed as itself and as X.
    let extra: Option<&Rule> = match method_override(query)? {
        Some(m) if m != *method => Some(rules.find(&m, path).ok_or(Denial::NoRule)?),
        _ => None,
    };
    let all_public = rule.access == crate::rules::Access::Public
        && extra.is_none_or(|r| r.access == crate::rules::Access::Public);

    let identity = match authenticate(gw, rt, headers).await {
        Ok(id) => id,
        // On a public rule a bad credential only means no identity headers.
        Err(_) if all_public => None,
        Err(d) => return Err(d),
    };
    if let Some(id) = &identity {
        ctx.subject = Some(id.subject.clone());
    }
    for r in std::iter::once(rule).chain(extra) {
        match authz::decide(r, identity.as_ref()) {
            Decision::Allow(_) => {}
            Decision::Deny(reason) => {
                if let Some(id) = &identity {
                    tracing::debug!(subject = %id.subject, rule = r.index, reason = %reason.explain(), "denied");
                }
                return Err(match reason {
                    DenyReason::Unauthenticated => Denial::Unauthenticated,
                    DenyReason::InsufficientScope { required } => {
                        Denial::InsufficientScope { required }
                    }
                    other => Denial::Forbidden(other.code()),
                });
            }
        }
    }
    ctx.reason = if all_public { "public" } else { "authorized" };
    Ok(identity)
}

/// Authenticates the request's credential. `Ok(None)` = no credential.
pub async fn authenticate(
    gw: &Gateway,
    rt: &Runtime,
    headers: &HeaderMap,
) -> Result<Option<Identity>, Denial> {
    match auth::extract(headers).map_err(|_| Denial::AmbiguousCredentials)? {
        Credential::Bearer(token) => {
            let claims = rt
                .bearer
                .validate(token, &gw.jwks)
                .await
                .map_err(|e| match e {
                    auth::bearer::TokenError::KeysUnavailable => Denial::ProviderUnavailable,
                    e => {
                        tracing::debug!(reason = %e, "bearer token refused");
                        Denial::InvalidToken(e)
                    }
                })?;
            let mut id = Identity::from_claims(claims, &rt.config.tokens);
            id.access_token = Some(token.to_owned());
            id.from_bearer = true;
            Ok(Some(id))
        }
        Credential::None | Credential::OtherAuthorization => Ok(None),
    }
}

/// Rewrites the request for the upstream and sends it; streams the answer back.
async fn forward(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    mut req: Request<Incoming>,
    path: &NormalizedPath,
    identity: Option<Identity>,
) -> Result<Response<Body>, Denial> {
    let websocket = hdr::is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let query = req.uri().query().map(str::to_owned);
    let authority = req.uri().authority().cloned();
    let (mut parts, body) = req.into_parts();

    let h = &mut parts.headers;
    hdr::strip_hop_by_hop(h);
    let stripped = rt.headers.strip_identity(h);
    if !stripped.is_empty() {
        tracing::debug!(headers = ?stripped, "removed client-supplied identity headers");
    }
    hdr::strip_method_overrides(h);
    rt.headers.strip_gateway_cookies(h);
    if !h.contains_key(header::HOST) {
        if let Some(a) = &authority {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                h.insert(header::HOST, v);
            }
        }
    }
    let peer = ctx.conn.peer.ip();
    let trusted = forwarded::is_trusted(&rt.config.server.trusted_proxies, peer);
    forwarded::apply(
        h,
        peer,
        trusted,
        if ctx.conn.tls { "https" } else { "http" },
        None,
    );
    if let Some(id) = &identity {
        rt.headers.set_identity(h, id);
    }
    if websocket {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    parts.uri = rt
        .upstream
        .uri_for(path.as_str(), query.as_deref())
        .ok_or(Denial::BadRequest("the request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;

    let (mut resp, took) = rt
        .upstream
        .send(Request::from_parts(parts, body))
        .await
        .map_err(|e| match e {
            crate::forward::upstream::UpstreamError::Connect => Denial::UpstreamConnect,
            crate::forward::upstream::UpstreamError::Timeout => Denial::UpstreamTimeout,
            crate::forward::upstream::UpstreamError::Io => Denial::UpstreamBroken,
        })?;
    ctx.upstream_time = Some(took);
    gw.metrics.upstream(took);

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // An upstream may not switch protocols the client did not ask for.
            return Err(Denial::UpstreamBroken);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(error = %e, "websocket tunnel closed with an error");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        return Ok(resp.map(Either::Left));
    }
    hdr::strip_hop_by_hop(resp.headers_mut());
    Ok(resp.map(Either::Left))
}
