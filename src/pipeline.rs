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
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::auth::session::{SealedSession, SessionData, SessionLookup};
use crate::auth::{self, Credential, Identity};
use crate::authority;
use crate::authz::DenyReason;
use crate::decision;
use crate::endpoints;
use crate::forward::upstream::UpstreamBody;
use crate::forward::{forwarded, headers as hdr};
use crate::gateway::{Gateway, Runtime};
use crate::method_override;
use crate::path::{self, NormalizedPath};
use crate::response::{is_browser, Body, Denial};

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
    /// The request's host (lower-case, no port), looked at only when some rule has a `host`.
    pub host: Option<String>,
    /// The matched rule's named upstream; `None` = `[upstream]`.
    pub upstream: Option<usize>,
    pub reason: &'static str,
    pub subject: Option<String>,
    pub upstream_time: Option<Duration>,
    /// `Set-Cookie` values for the response (session refreshed, cleared, login started).
    pub set_cookies: Vec<String>,
    /// The signed-in user of a browser session, for the 403 page.
    pub signed_in: Option<String>,
    /// What `authorize` does for a browser without a credential that may log in.
    /// Forward-auth changes it; everything else keeps the default redirect.
    pub login: LoginStart,
}

/// How `authorize` answers a browser request without a credential on rules that allow a
/// login (`login` not `"deny"`, sessions configured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoginStart {
    /// 302 to the provider; the login returns to the request's own path and query.
    #[default]
    Redirect,
    /// 302 to the provider; the login returns to this `rd` (already validated).
    RedirectTo(String),
    /// No redirect and no login attempt: 401 that names this URL of the gateway's login
    /// endpoint (`Denial::LoginRequired`), for proxies that can only pass a 401 on.
    Offer(String),
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
        host: None,
        upstream: None,
        reason: "forwarded",
        subject: None,
        upstream_time: None,
        set_cookies: Vec::new(),
        signed_in: None,
        login: LoginStart::Redirect,
    };
    let mut resp = match run(&gw, &rt, &mut ctx, req).await {
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
            denial.render(
                ctx.browser,
                ctx.signed_in.as_deref(),
                &rt.config.server.auth_prefix,
            )
        }
    };
    for c in ctx.set_cookies.drain(..) {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
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
        host = ctx.host.as_deref().unwrap_or("-"),
        upstream = ctx
            .upstream
            .and_then(|i| rt.config.upstreams.get(i))
            .map_or("default", |u| u.name.as_str()),
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
    let authority = authority::request_authority(req.version(), req.uri(), req.headers())
        .map_err(|e| Denial::BadRequest(e.describe()))?;
    if rt.config.rules.has_hosts() {
        ctx.host = authority.and_then(crate::rules::host::request_host);
    }

    if let Some(endpoint) = endpoints::route(&rt.config.server.auth_prefix, path.as_str()) {
        return endpoints::handle(endpoint, gw, rt, ctx, req).await;
    }

    let (req, body_methods) = read_body_overrides(rt, ctx, req, &path).await?;
    let judged = Judged {
        method: req.method(),
        path: &path,
        query: req.uri().query(),
        headers: req.headers(),
        body_methods: &body_methods,
    };
    let identity = authorize(gw, rt, ctx, judged).await?;
    forward(gw, rt, ctx, req, &path, identity).await
}

/// A `POST` form, multipart or JSON body may carry `_method`, which Rails, Laravel and
/// Symfony obey. On a path where the method changes the rule, such a body is read (up to
/// [`method_override::MAX_INSPECTED_BODY`]) and every method it asks for is judged too;
/// the body read is what is forwarded. Everywhere else bodies stream untouched.
async fn read_body_overrides(
    rt: &Runtime,
    ctx: &RequestContext,
    req: Request<Incoming>,
    path: &NormalizedPath,
) -> Result<(Request<UpstreamBody>, Vec<Method>), Denial> {
    let kind = method_override::body_kind(req.method(), req.headers())
        .filter(|_| rt.config.rules.method_sensitive(ctx.host.as_deref(), path));
    let Some(kind) = kind else {
        return Ok((req.map(Either::Left), Vec::new()));
    };
    let (parts, body) = req.into_parts();
    let bytes = method_override::read_body(body).await?;
    let methods = method_override::from_body(&kind, &bytes)?;
    Ok((
        Request::from_parts(parts, Either::Right(Full::new(bytes))),
        methods,
    ))
}

/// What a request is judged by: its method, normalized path, query and headers, and the
/// methods its body asks for (`_method` in a form or JSON body).
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    pub method: &'a Method,
    pub path: &'a NormalizedPath,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body_methods: &'a [Method],
}

/// Finds the rule(s), authenticates, and decides. Returns the identity to forward.
pub async fn authorize(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Judged<'_>,
) -> Result<Option<Arc<Identity>>, Denial> {
    let Judged {
        method,
        path,
        query,
        headers,
        body_methods,
    } = req;
    let host = ctx.host.as_deref();
    let selection = decision::select(&rt.config.rules, method, host, path, query, body_methods)?;
    ctx.rule = Some(selection.rule.index);
    ctx.upstream = selection.rule.upstream;
    let all_public = selection.all_public();

    let identity = match authenticate(gw, rt, ctx, headers).await {
        Ok(id) => id,
        // On a public rule a bad credential only means no identity headers.
        Err(_) if all_public => None,
        Err(d) => return Err(d),
    };
    if let Some(id) = &identity {
        ctx.subject = Some(id.subject.clone());
        if !id.from_bearer {
            ctx.signed_in = Some(id.user().to_owned());
        }
    }
    if let Err(denied) = decision::judge(&selection, identity.as_deref()) {
        if let Some(id) = &identity {
            tracing::debug!(subject = %id.subject, rule = denied.rule, reason = %denied.reason.explain(), "denied");
        }
        return Err(match denied.reason {
            DenyReason::Unauthenticated => {
                if ctx.browser && selection.may_login() && rt.session.is_some() {
                    let rd = match std::mem::take(&mut ctx.login) {
                        LoginStart::Redirect => match query {
                            Some(q) => format!("{}?{q}", path.as_str()),
                            None => path.as_str().to_owned(),
                        },
                        LoginStart::RedirectTo(rd) => rd,
                        LoginStart::Offer(login) => {
                            return Err(Denial::LoginRequired { login });
                        }
                    };
                    return Err(start_login(gw, rt, ctx, rd));
                }
                Denial::Unauthenticated
            }
            DenyReason::InsufficientScope { required } => Denial::InsufficientScope { required },
            other => Denial::Forbidden(other.code()),
        });
    }
    ctx.reason = if all_public { "public" } else { "authorized" };
    Ok(identity)
}

/// Sends the browser to the provider's login page, keeping the attempt in a cookie.
pub fn start_login(gw: &Gateway, rt: &Runtime, ctx: &mut RequestContext, rd: String) -> Denial {
    let (Some(codec), Some(meta)) = (&rt.session, gw.jwks.metadata()) else {
        return Denial::ProviderUnavailable;
    };
    match rt.oidc.start(&meta, &gw.jwks.keys(), rd) {
        Ok((url, login)) => {
            if let Some(c) = codec.seal_login(&login) {
                ctx.set_cookies.push(c);
            }
            ctx.reason = "login";
            Denial::Redirect(url.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a login");
            Denial::ProviderUnavailable
        }
    }
}

/// Authenticates the request's credential. `Ok(None)` = no credential. A bearer token
/// wins over a session cookie; an invalid bearer token never falls back to the cookie.
pub async fn authenticate(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<Option<Arc<Identity>>, Denial> {
    match auth::extract(headers).map_err(|_| Denial::AmbiguousCredentials)? {
        Credential::Bearer(token) => {
            if let Some(id) = rt.token_cache.get(token) {
                gw.metrics.token_cache(true);
                return Ok(Some(id));
            }
            gw.metrics.token_cache(false);
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
            let id = Arc::new(id);
            rt.token_cache.insert(token, id.clone());
            Ok(Some(id))
        }
        // Basic and other schemes are not the gateway's: the session cookie decides.
        Credential::OtherAuthorization | Credential::None => {
            Ok(session_identity(gw, rt, ctx, headers).await)
        }
    }
}

/// The identity of the session cookie, refreshing its tokens when they expired.
async fn session_identity(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Option<Arc<Identity>> {
    let codec = rt.session.as_ref()?;
    let (sealed, chunks) = match codec.read(headers) {
        SealedSession::None => return None,
        SealedSession::Malformed { chunks } => {
            ctx.set_cookies.extend(codec.clear(chunks));
            return None;
        }
        SealedSession::Sealed { sealed, chunks } => (sealed, chunks),
    };
    // Fast path: this exact cookie was decrypted before and nothing about it changed.
    let key = rt.session_cache.key(&sealed);
    if let Some(hit) = rt.session_cache.get(&key) {
        let now = crate::unix_now();
        let fresh =
            hit.data.at_exp.is_none_or(|t| t > now.saturating_add(5)) || !codec.settings().refresh;
        if hit.data.exp > now && fresh && !codec.is_revoked(&hit.data.sid) {
            return Some(hit.identity.clone());
        }
    }
    let (data, chunks) = match codec.unseal(&sealed, chunks) {
        SessionLookup::None => return None,
        SessionLookup::Invalid { chunks } => {
            ctx.set_cookies.extend(codec.clear(chunks));
            return None;
        }
        SessionLookup::Valid { data, chunks } => (data, chunks),
    };
    let expired = data.at_exp.is_some_and(|t| t <= crate::unix_now() + 5);
    let data = if expired && codec.settings().refresh && data.refresh_token.is_some() {
        match refresh(gw, rt, &data).await {
            Some(fresh) => {
                ctx.set_cookies.extend(codec.seal(&fresh, chunks));
                fresh
            }
            None => {
                // The provider no longer honours the session: it is over.
                codec.revoke(&data.sid, data.exp);
                gw.metrics.session_ended("refresh_failed");
                ctx.set_cookies.extend(codec.clear(chunks));
                return None;
            }
        }
    } else {
        let identity = Arc::new(Identity::from_session(&data, &rt.config.tokens)?);
        rt.session_cache.insert(key, data, identity.clone());
        return Some(identity);
    };
    Identity::from_session(&data, &rt.config.tokens).map(Arc::new)
}

/// Refreshes a session's tokens once, however many requests ask at the same time.
async fn refresh(gw: &Gateway, rt: &Runtime, data: &SessionData) -> Option<SessionData> {
    // One refresh per access token: its signature part is unique.
    let at = data.access_token.as_deref().unwrap_or("");
    let key = format!("{}:{}", data.sid, &at[at.len().saturating_sub(24)..]);
    let cell = {
        let mut map = gw.refreshing.lock().ok()?;
        map.retain(|_, (started, _)| started.elapsed() < Duration::from_secs(60));
        map.entry(key)
            .or_insert_with(|| (Instant::now(), Default::default()))
            .1
            .clone()
    };
    cell.get_or_init(|| async {
        let meta = gw.jwks.metadata()?;
        let token = data.refresh_token.as_deref()?;
        match rt.oidc.refresh(&gw.provider, &meta, &gw.jwks, token).await {
            Ok(t) => {
                let mut fresh = data.clone();
                fresh.at_exp = access_token_expiry(&t.access_token, t.expires_in);
                fresh.access_token = Some(t.access_token);
                if let Some(id) = t.id_token {
                    fresh.id_token = id;
                }
                if let Some(r) = t.refresh_token {
                    fresh.refresh_token = Some(r);
                }
                gw.metrics.session_refresh(true);
                Some(fresh)
            }
            Err(e) => {
                tracing::info!(error = %e, "session refresh failed; the session ends");
                gw.metrics.session_refresh(false);
                None
            }
        }
    })
    .await
    .clone()
}

/// When an access token expires: `expires_in`, else its `exp` claim.
pub fn access_token_expiry(token: &str, expires_in: Option<Duration>) -> Option<u64> {
    match expires_in {
        Some(d) => Some(crate::unix_now().saturating_add(d.as_secs())),
        None => auth::oidc::jwt_payload(token)
            .and_then(|c| c.get("exp").and_then(serde_json::Value::as_u64)),
    }
}

/// Rewrites the request for the upstream and sends it; streams the answer back.
async fn forward(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    mut req: Request<UpstreamBody>,
    path: &NormalizedPath,
    identity: Option<Arc<Identity>>,
) -> Result<Response<Body>, Denial> {
    let websocket = hdr::is_websocket_upgrade(req.headers());
    if websocket && identity.as_ref().is_some_and(|id| !id.from_bearer) {
        // A cookie rides along on cross-site requests; the Origin shows where it came from.
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if origin
            != Some(
                rt.config
                    .server
                    .public_url
                    .origin()
                    .ascii_serialization()
                    .as_str(),
            )
        {
            return Err(Denial::Forbidden("websocket_origin"));
        }
    }
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let query = req.uri().query().map(str::to_owned);
    let authority = req.uri().authority().cloned();
    let (mut parts, body) = req.into_parts();

    let h = &mut parts.headers;
    hdr::strip_hop_by_hop(h);
    let peer = ctx.conn.peer.ip();
    let trusted = forwarded::is_trusted(&rt.config.server.trusted_proxies, peer);
    let stripped = rt.headers.strip_owned(h, trusted);
    if !stripped.is_empty() {
        tracing::debug!(headers = ?stripped, "removed client-supplied headers the gateway owns");
    }
    rt.headers.strip_gateway_cookies(h);
    // The host the rules saw is the host the upstream gets: the URI's authority wins.
    if let Some(a) = &authority {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            h.insert(header::HOST, v);
        }
    }
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
    let upstream = rt.upstream_for(ctx.upstream);
    parts.uri = upstream
        .uri_for(path.as_str(), query.as_deref())
        .ok_or(Denial::BadRequest("the request target cannot be forwarded"))?;
    parts.version = upstream.version;
    if parts.version == Version::HTTP_2 {
        // Over HTTP/2 the upstream's address is the `:authority`; the client's host
        // travels in X-Forwarded-Host.
        parts.headers.remove(header::HOST);
    }

    let (mut resp, took) = upstream
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
