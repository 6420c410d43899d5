//! Keep-alive connections to the upstream: one small pool per worker, on hyper's
//! connection API.
//!
//! Each per-core worker takes idle connections from its own pool first, so a connection
//! is normally used by the thread that drives it. When its pool is empty it takes one
//! from another worker's pool before it opens a new connection, and gives it back to the
//! pool it came from: the number of upstream connections follows the number of requests
//! in flight, not how the kernel happened to spread client connections over the workers
//! (with one pool per worker and no sharing, each pool kept the most it had ever needed).
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
}

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
        if let Some((mut tx, owner)) = self.checkout(home) {
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    self.after(tx, owner, &resp);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written: send it on a new one.
                    Some(r) => req = r,
                    None => return Err(SendError::Io(e.into_error())),
                },
            }
        }
        let mut tx = self.connect_h1().await?;
        let resp = tx.send_request(req).await.map_err(SendError::Io)?;
        self.after(tx, home, &resp);
        Ok(resp)
    }

    /// An idle, open connection: the worker's own first, then another worker's.
    fn checkout(&self, home: usize) -> Option<(http1::SendRequest<UpstreamBody>, usize)> {
        if let Some(tx) = self.take(home, false) {
            return Some((tx, home));
        }
        (1..self.pools.len())
            .map(|i| (home + i) % self.pools.len())
            .find_map(|other| self.take(other, true).map(|tx| (tx, other)))
    }

    fn take(&self, pool: usize, contended: bool) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut idle = if contended {
            self.pools[pool].idle.try_lock().ok()?
        } else {
            self.pools[pool]
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        let now = Instant::now();
        while let Some((tx, since)) = idle.h1.pop_back() {
            if !tx.is_closed() && now.saturating_duration_since(since) < self.idle_timeout {
                return Some(tx);
            }
        }
        None
    }

    /// After the response head: the connection goes back to `owner`'s pool once hyper can
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
        let mut idle = self.pools[pool]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while idle.h1.front().is_some_and(|(t, since)| {
            t.is_closed() || now.saturating_duration_since(*since) >= self.idle_timeout
        }) {
            idle.h1.pop_front();
        }
        if idle.h1.len() < self.max_idle {
            idle.h1.push_back((tx, now));
        }
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(SendError::Connect)?;
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
            let idle = self.pools[home]
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner());
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
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(SendError::Connect)?;
        let (mut tx, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(SendError::Io)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        self.pools[home]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .h2 = Some(tx.clone());
        tx.send_request(req).await.map_err(SendError::Io)
    }
}

/// HTTP/1.1 sends the path and query (origin form), or the authority for `CONNECT`.
fn request_target(req: &mut Request<UpstreamBody>) {
    let target = if req.method() == Method::CONNECT {
        req.uri().authority().map(|a| Uri::from(a.clone()))
    } else {
        Some(Uri::from(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        ))
    };
    if let Some(t) = target {
        *req.uri_mut() = t;
    }
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

    #[test]
    fn the_default_host_omits_only_the_scheme_default_port() {
        let pools = |scheme: Scheme, a: &str| {
            let http = HttpConnector::new();
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
                .wrap_connector(http);
            Pools::new(
                c,
                scheme,
                &a.parse().unwrap(),
                false,
                2,
                Duration::from_secs(90),
                8,
            )
            .unwrap()
        };
        assert_eq!(pools(Scheme::HTTP, "up:80").host, "up");
        assert_eq!(pools(Scheme::HTTP, "up:8080").host, "up:8080");
        assert_eq!(pools(Scheme::HTTPS, "up:443").host, "up");
        assert_eq!(pools(Scheme::HTTPS, "up:80").host, "up:80");
        assert_eq!(pools(Scheme::HTTP, "up").host, "up");
        assert_eq!(
            pools(Scheme::HTTP, "up:8080").target.to_string(),
            "http://up:8080/"
        );
    }
}
