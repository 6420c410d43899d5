//! Keep-alive connections to the upstream: one small pool per worker, on hyper's
//! connection API.
//!
//! Each per-core worker has its own pool, so a connection is only ever used by the thread
//! that drives it. A request takes the most recently used idle connection, or opens a new
//! one when there is none; it does not race the connect against connections that might
//! come back meanwhile (hyper-util's pooled client does, and under load each such race
//! left one more idle connection behind), so a worker keeps at most as many connections
//! as it had requests in flight. Taking idle connections from another worker's pool was
//! tried: fewer connections, but the requests that crossed threads made the 99th
//! percentile worse (docs/performance.md).
//!
//! An HTTP/1.1 connection goes back to its pool once hyper is ready to send the next
//! request on it (the response body has been read to its end); one whose response body
//! was dropped half-read, or that switched protocols, is never reused. A connection idle
//! for longer than the idle timeout is closed when the pool next looks at it. A request
//! that a pooled connection could not start (it closed just before) is sent once more on
//! a new connection: it never reached the upstream. With `upstream.http2` every pool
//! keeps one connection and sends all its requests over it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use super::upstream::UpstreamBody;

type Connector = HttpsConnector<HttpConnector>;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, the connect timeout, TLS).
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while the request was sent or the response head read.
    Io(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The pools of one upstream, one per worker.
pub struct Pools {
    pools: Box<[Pool]>,
    connector: Connector,
    http2: bool,
    /// `scheme://authority/`: what the connector is asked to connect to.
    target: Uri,
    /// The `Host` an HTTP/1.1 request gets when it has none (the authority, without a
    /// default port).
    host: HeaderValue,
    idle_timeout: Duration,
    /// Idle HTTP/1.1 connections each pool keeps; more are closed when they come back.
    max_idle: usize,
}

#[derive(Default)]
struct Pool {
    idle: Mutex<Idle>,
    /// Whether this pool's sweeper runs (started with the first connection it keeps).
    swept: std::sync::atomic::AtomicBool,
}

/// How often idle connections that closed or expired are dropped when no request looks
/// at the pool (each still holds hyper's request channel, about 20 KiB).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Idle {
    /// Oldest first; taken from the back (the most recently used, warmest connection).
    h1: VecDeque<(http1::SendRequest<UpstreamBody>, Instant)>,
    h2: Option<http2::SendRequest<UpstreamBody>>,
}

impl Pools {
    pub fn new(
        connector: Connector,
        scheme: Scheme,
        authority: &Authority,
        http2: bool,
        workers: usize,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, String> {
        let target = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| e.to_string())?;
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(p) if p != default_port => authority.as_str().to_owned(),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| e.to_string())?;
        Ok(Pools {
            pools: (0..workers.max(1)).map(|_| Pool::default()).collect(),
            connector,
            http2,
            target,
            host,
            idle_timeout,
            max_idle,
        })
    }

    /// Sends `req` (an absolute URI to this upstream) from worker `worker`.
    pub async fn send(
        self: &Arc<Self>,
        worker: usize,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let home = worker % self.pools.len();
        if self.http2 {
            self.send_h2(home, req).await
        } else {
            self.send_h1(home, req).await
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        home: usize,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        request_target(&mut req);
        if let Some(mut tx) = self.checkout(home) {
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    self.after(tx, home, &resp);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written: send it on a new one.
                    Some(r) => req = r,
                    None => return Err(SendError::Io(e.into_error())),
                },
            }
        }
        // Boxed: a new connection's futures (the TLS handshake's state among them) would
        // otherwise make every request's future, which is moved about, that much larger.
        let mut tx = Box::pin(self.connect_h1()).await?;
        let resp = tx.send_request(req).await.map_err(SendError::Io)?;
        self.after(tx, home, &resp);
        Ok(resp)
    }

    /// The most recently used idle connection of pool `pool` that is still open and not
    /// past the idle timeout; the closed and expired ones passed on the way are dropped.
    fn checkout(&self, pool: usize) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut idle = self.lock(pool);
        let now = Instant::now();
        while let Some((tx, since)) = idle.h1.pop_back() {
            if self.usable(&tx, since, now) {
                return Some(tx);
            }
        }
        None
    }

    /// After the response head: the connection goes back to pool `owner` once hyper can
    /// send the next request on it.
    fn after(
        self: &Arc<Self>,
        mut tx: http1::SendRequest<UpstreamBody>,
        owner: usize,
        resp: &Response<Incoming>,
    ) {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return; // the connection now belongs to the tunnel
        }
        if !self.pools[owner]
            .swept
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(sweep(Arc::downgrade(self), owner));
        }
        if tx.is_ready() {
            self.put(owner, tx);
            return;
        }
        let pools = Arc::clone(self);
        tokio::spawn(async move {
            // An error: the connection closed (a body dropped half-read, `Connection:
            // close`, the upstream went away); it is not reused.
            if tx.ready().await.is_ok() {
                pools.put(owner, tx);
            }
        });
    }

    fn put(&self, pool: usize, tx: http1::SendRequest<UpstreamBody>) {
        let mut idle = self.lock(pool);
        let now = Instant::now();
        while idle
            .h1
            .front()
            .is_some_and(|(t, since)| !self.usable(t, *since, now))
        {
            idle.h1.pop_front();
        }
        if idle.h1.len() < self.max_idle {
            idle.h1.push_back((tx, now));
        }
    }

    /// Drops the idle connections of pool `pool` that closed or outlived the idle timeout.
    fn sweep_once(&self, pool: usize) {
        let mut idle = self.lock(pool);
        let now = Instant::now();
        idle.h1.retain(|(tx, since)| self.usable(tx, *since, now));
        if idle.h2.as_ref().is_some_and(|tx| tx.is_closed()) {
            idle.h2 = None;
        }
    }

    /// Pool `pool`'s idle connections, locked.
    fn lock(&self, pool: usize) -> std::sync::MutexGuard<'_, Idle> {
        self.pools[pool]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an idle connection kept since `since` may still be used at `now`.
    fn usable(&self, tx: &http1::SendRequest<UpstreamBody>, since: Instant, now: Instant) -> bool {
        !tx.is_closed() && now.saturating_duration_since(since) < self.idle_timeout
    }

    /// A new transport to the upstream (TCP, and TLS for `https`).
    async fn dial(&self) -> Result<<Connector as Service<Uri>>::Response, SendError> {
        self.connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(SendError::Connect)
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
        let io = self.dial().await?;
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Io)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    async fn send_h2(
        &self,
        home: usize,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let pooled = {
            let idle = self.lock(home);
            idle.h2.as_ref().filter(|tx| !tx.is_closed()).cloned()
        };
        if let Some(mut tx) = pooled {
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(SendError::Io(e.into_error())),
                },
            }
        }
        let mut tx = Box::pin(self.connect_h2()).await?;
        self.lock(home).h2 = Some(tx.clone());
        tx.send_request(req).await.map_err(SendError::Io)
    }

    async fn connect_h2(&self) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
        let io = self.dial().await?;
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(SendError::Io)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

/// Sweeps pool `pool` every [`SWEEP_EVERY`] until its upstream is dropped (a reload
/// builds new pools).
async fn sweep(pools: std::sync::Weak<Pools>, pool: usize) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match pools.upgrade() {
            Some(p) => p.sweep_once(pool),
            None => return,
        }
    }
}

/// HTTP/1.1 sends the path and query (origin form), or the authority for `CONNECT`.
fn request_target(req: &mut Request<UpstreamBody>) {
    // Taken apart rather than cloned: the path's bytes move as they are.
    let parts = std::mem::take(req.uri_mut()).into_parts();
    *req.uri_mut() = if req.method() == Method::CONNECT {
        parts.authority.map(Uri::from).unwrap_or_default()
    } else {
        parts
            .path_and_query
            .map(Uri::from)
            .unwrap_or_else(|| Uri::from(PathAndQuery::from_static("/")))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<UpstreamBody> {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(http_body_util::Either::Right(http_body_util::Full::new(
                bytes::Bytes::new(),
            )))
            .unwrap()
    }

    #[test]
    fn http1_requests_carry_the_path_and_query_or_the_authority_for_connect() {
        let mut r = req(Method::GET, "http://up.example:8080/a/b?c=d&e");
        request_target(&mut r);
        assert_eq!(r.uri().to_string(), "/a/b?c=d&e");
        let mut r = req(Method::GET, "http://up.example");
        request_target(&mut r);
        assert_eq!(r.uri().to_string(), "/");
        let mut r = req(Method::CONNECT, "http://up.example:8080/x");
        request_target(&mut r);
        assert_eq!(r.uri().to_string(), "up.example:8080");
    }

    fn pools(scheme: Scheme, authority: &str) -> Pools {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let c = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(HttpConnector::new());
        let a = authority.parse().unwrap();
        Pools::new(c, scheme, &a, false, 2, Duration::from_secs(90), 8).unwrap()
    }

    #[test]
    fn the_default_host_omits_only_the_scheme_default_port() {
        assert_eq!(pools(Scheme::HTTP, "up:80").host, "up");
        assert_eq!(pools(Scheme::HTTP, "up:8080").host, "up:8080");
        assert_eq!(pools(Scheme::HTTPS, "up:443").host, "up");
        assert_eq!(pools(Scheme::HTTPS, "up:80").host, "up:80");
        assert_eq!(pools(Scheme::HTTP, "up").host, "up");
        let target = pools(Scheme::HTTP, "up:8080").target.to_string();
        assert_eq!(target, "http://up:8080/");
    }

    /// A connection over an in-memory pipe, and the pipe's other end.
    async fn connection() -> (http1::SendRequest<UpstreamBody>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(1024);
        let (tx, conn) = http1::handshake(hyper_util::rt::TokioIo::new(a))
            .await
            .unwrap();
        tokio::spawn(conn);
        (tx, b)
    }

    fn idle(p: &Pools, pool: usize) -> std::sync::MutexGuard<'_, Idle> {
        p.pools[pool].idle.lock().unwrap()
    }

    #[tokio::test]
    async fn closed_and_expired_connections_are_swept_and_never_handed_out() {
        let p = pools(Scheme::HTTP, "up:80");
        let (open, _open_end) = connection().await;
        let (closed, closed_end) = connection().await;
        let (old, _old_end) = connection().await;
        p.put(0, open);
        p.put(0, closed);
        idle(&p, 0)
            .h1
            .push_front((old, Instant::now() - Duration::from_secs(91)));
        drop(closed_end);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !idle(&p, 0).h1.iter().any(|(t, _)| t.is_closed()) {
            assert!(Instant::now() < deadline, "the close was never seen");
            tokio::task::yield_now().await;
        }
        p.sweep_once(0);
        assert_eq!(idle(&p, 0).h1.len(), 1, "only the open, recent one stays");
        assert!(!idle(&p, 0).h1[0].0.is_closed());

        // Handed out: closed or expired ones are skipped and dropped; another worker's
        // pool is not looked at.
        let (closed, closed_end) = connection().await;
        let (old, _old_end) = connection().await;
        p.put(1, closed);
        drop(closed_end);
        while !idle(&p, 1).h1.iter().any(|(t, _)| t.is_closed()) {
            assert!(Instant::now() < deadline, "the close was never seen");
            tokio::task::yield_now().await;
        }
        idle(&p, 1)
            .h1
            .push_back((old, Instant::now() - Duration::from_secs(91)));
        assert!(p.checkout(1).is_none());
        assert!(idle(&p, 1).h1.is_empty());
        assert!(p.checkout(0).is_some_and(|tx| !tx.is_closed()));
        assert!(p.checkout(0).is_none());
    }

    #[tokio::test]
    async fn a_pool_keeps_at_most_its_share_of_idle_connections() {
        let p = pools(Scheme::HTTP, "up:80");
        let mut ends = Vec::new();
        for _ in 0..12 {
            let (tx, end) = connection().await;
            ends.push(end);
            p.put(0, tx);
        }
        assert_eq!(idle(&p, 0).h1.len(), 8);
    }
}
