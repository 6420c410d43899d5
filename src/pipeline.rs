//! The request pipeline: the only place where the phases are put in order. Each phase is
//! one call into its own module.
//!
//! ```text
//! context             -> context::RequestContext: connection, method, browser or not
//! normalize path      -> path::normalize                400 on a malformed path
//! authority           -> authority::request_authority   400 on an ambiguous host
//! auth_prefix?        -> endpoints::handle (login, callback, logout, userinfo, forward-auth)
//! body _method?       -> method_override::inspect        413 / 400 on a body it cannot read
//! decide              -> admission::authorize -> decision::decide:
//!                        match rule(s) 403, authenticate 400/401/503, authorize 401/403;
//!                        a browser that may log in -> endpoints::login::begin (302;
//!                        first to public_url's host when it asked for another);
//!                        an allowed CORS preflight loses its credential headers
//! forward             -> forward::proxy::forward: rewrite headers, send, stream back,
//!                        WebSocket tunnel (-> session_watch: closed when its session
//!                        ends); 502 connect failure, 504 timeout
//! respond             -> response::Denial::render for every refusal, Set-Cookie
//! log + metrics       -> one access-log line with the decision's reason and fault;
//!                        with [telemetry], telemetry::RequestSpan::finish ends the span
//! ```
//!
//! With `[telemetry]`, `telemetry::Telemetry::request` opens the request's span first and
//! the forward phase makes the upstream call its child; without it there is no span.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::admission::{self, Admitted};
use crate::authority;
use crate::decision::Asked;
use crate::endpoints;
use crate::forward::{headers, proxy};
use crate::gateway::{Gateway, Runtime};
use crate::method_override;
use crate::path;
use crate::response::{is_browser, Body, Denial};
use crate::session_watch;
use crate::telemetry::{Finished, RequestSpan};

pub use crate::context::{ConnInfo, LoginStart, RequestContext};

/// Handles one request end to end. Never fails: every refusal is a response.
pub async fn handle(gw: Arc<Gateway>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let rt = gw.runtime();
    // `None` without [telemetry]: then no span object exists for this request.
    let trace = gw.telemetry.as_ref().map(|t| {
        t.request(
            conn.peer.ip(),
            conn.tls,
            req.method(),
            req.version(),
            req.headers(),
        )
    });
    let browser = is_browser(req.method(), req.headers());
    let mut ctx = RequestContext::new(conn, req.method().clone(), browser);
    let mut resp = match run(&gw, &rt, &mut ctx, req, trace.as_ref()).await {
        Ok(resp) => resp,
        Err(denial) => refuse(&gw, &rt, &mut ctx, &denial),
    };
    for c in ctx.set_cookies.drain(..) {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    log(&gw, &rt, &ctx, resp.status().as_u16(), start, trace);
    resp
}

/// The phases, in order.
async fn run(
    gw: &Arc<Gateway>,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
    trace: Option<&RequestSpan>,
) -> Result<Response<Body>, Denial> {
    let path = path::normalize(req.uri().path(), rt.config.server.allow_path_params)?;
    ctx.path = Some(path.as_str().to_owned());
    let authority = authority::request_authority(req.version(), req.uri(), req.headers())?;
    if rt.config.rules.has_hosts() {
        ctx.host = authority.and_then(crate::rules::host::request_host);
    }

    if let Some(endpoint) = endpoints::route(&rt.config.server.auth_prefix, path.as_str()) {
        // Boxed: the endpoints' futures (code exchange, logout) are large and rare.
        return Box::pin(endpoints::handle(endpoint, gw, rt, ctx, req)).await;
    }

    let host = ctx.host.clone();
    let sensitive = rt.config.rules.method_sensitive(host.as_deref(), &path);
    let (mut req, body_methods) = method_override::inspect(req, sensitive).await?;
    let asked = Asked {
        method: req.method(),
        path: &path,
        query: req.uri().query(),
        host: host.as_deref(),
        headers: req.headers(),
        body_methods: &body_methods,
    };
    let identity = match admission::authorize(gw, rt, ctx, &asked).await? {
        Admitted::Forward(identity) => identity,
        Admitted::Preflight => {
            headers::strip_credentials(req.headers_mut());
            None
        }
        Admitted::LogIn(rd, step_up) => {
            return endpoints::login::begin(gw, rt, ctx, &req, rd, step_up.as_ref())
        }
    };

    let route = rt.route(ctx.upstream, &ctx.conn);
    let watch = || session_watch::for_tunnel(gw, rt, identity.as_deref());
    let (resp, took) =
        proxy::forward(&route, req, &path, identity.as_deref(), trace, watch).await?;
    ctx.upstream_time = Some(took);
    gw.metrics.upstream(took);
    Ok(resp.map(Either::Left))
}

/// The response for a refusal; its reason and fault go to the log and metrics.
fn refuse(gw: &Gateway, rt: &Runtime, ctx: &mut RequestContext, denial: &Denial) -> Response<Body> {
    ctx.reason = denial.reason();
    ctx.fault = Some(denial.fault().as_str());
    if let Some(kind) = denial.upstream_kind() {
        gw.metrics.upstream_error(kind);
    }
    denial.render(
        ctx.browser,
        ctx.signed_in.as_deref(),
        &rt.config.server.auth_prefix,
    )
}

/// One access-log line, the request metrics, and the end of the request's span.
fn log(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &RequestContext,
    status: u16,
    start: Instant,
    trace: Option<RequestSpan>,
) {
    let took = start.elapsed();
    gw.metrics.request(ctx.reason, status, took);
    let upstream = ctx.upstream.and_then(|i| rt.config.upstreams.get(i));
    crate::logging::access(&crate::logging::AccessRecord {
        method: ctx.method.as_str(),
        path: ctx.path.as_deref().unwrap_or("-"),
        status,
        decision: ctx.reason,
        fault: ctx.fault.unwrap_or("-"),
        rule: ctx.rule.map(|i| i as i64).unwrap_or(-1),
        host: ctx.host.as_deref().unwrap_or("-"),
        upstream: upstream.map_or("default", |u| u.name.as_str()),
        subject: ctx.subject.as_deref().unwrap_or("-"),
        client: ctx.conn.peer_ip.as_str(),
        upstream_ms: ctx
            .upstream_time
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0),
        duration_ms: took.as_secs_f64() * 1000.0,
    });
    if let Some(span) = trace {
        span.finish(
            ctx,
            status,
            Finished {
                route: ctx
                    .rule
                    .and_then(|i| rt.config.rules.rules().get(i))
                    .map(|r| r.path.as_str()),
                upstream: upstream.map(|u| u.name.as_str()),
            },
        );
    }
}
