//! The pooled client to the upstream, with its timeouts and error classes.

use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;

use super::pool::{Pools, SendError};
use crate::config::UpstreamSettings;

/// Why the upstream gave no response. Decides 502 versus 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, unreachable, or not made within `upstream.connect_timeout` (502).
    #[error("cannot connect to the upstream")]
    Connect,
    /// No response head within `upstream.timeout` (504).
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The connection broke while the request was sent or the response read (502).
    #[error("the upstream connection failed")]
    Io,
}

impl UpstreamError {
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Io => "io",
        }
    }
}

/// A request body for the upstream: streamed from the client, or already read (a body the
/// gateway had to look into before deciding).
pub type UpstreamBody = http_body_util::Either<Incoming, http_body_util::Full<bytes::Bytes>>;

/// The upstream service and a keep-alive connection pool to it.
#[derive(Clone)]
pub struct Upstream {
    /// Keep-alive connections: one pool per worker thread with `server.runtime =
    /// "per-core"` (a worker uses its own connections first), one with `"shared"`.
    pools: std::sync::Arc<Pools>,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing `/`, prefixed to every forwarded path.
    base_path: String,
    timeout: Duration,
    /// The version requests are sent with (HTTP/2 when `upstream.http2`).
    pub version: http::Version,
    /// The URL's origin (`scheme://host[:port]`): the `aud` of identity assertions.
    pub origin: String,
}

/// Idle upstream connections kept for reuse, per upstream, across all workers.
const IDLE_UPSTREAM_CONNECTIONS: usize = 1024;

/// How long an idle upstream connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl Upstream {
    /// `pools`: how many connection pools (the per-core workers; 1 for a shared runtime).
    pub fn new(s: &UpstreamSettings, pools: usize) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(s.connect_timeout));
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_roots();
        roots.add_parsable_certificates(native);
        let tls = tls.with_root_certificates(roots).with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let scheme = if s.url.scheme() == "https" {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let host = s.url.host_str().ok_or("upstream.url has no host")?;
        let authority: Authority = match s.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        // Split across the pools (at least 64 each): a burst of client connections must
        // not leave every worker holding a thousand idle upstream connections.
        let workers = pools.max(1);
        let pools = Pools::new(
            https,
            scheme.clone(),
            &authority,
            s.http2,
            workers,
            IDLE_TIMEOUT,
            (IDLE_UPSTREAM_CONNECTIONS / workers).max(64),
        )?;
        Ok(Upstream {
            pools: std::sync::Arc::new(pools),
            scheme,
            authority,
            base_path: s.url.path().trim_end_matches('/').to_owned(),
            origin: s.url.origin().ascii_serialization(),
            timeout: s.timeout,
            version: if s.http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            },
        })
    }

    /// The upstream URI for a normalized path and the untouched query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq: PathAndQuery = pq.parse().ok()?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    }

    /// Sends the request; returns the response head (the body streams) and how long the
    /// upstream took to answer.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Duration), UpstreamError> {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, self.pools.send(worker(), req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(SendError::Connect(e))) => {
                tracing::debug!(error = %e, "upstream connect failed");
                Err(UpstreamError::Connect)
            }
            Ok(Err(SendError::Io(e))) => {
                tracing::debug!(error = ?e, "upstream request failed");
                Err(UpstreamError::Io)
            }
            Ok(Ok(resp)) => Ok((resp, start.elapsed())),
        }
    }
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as per-core worker `index`: its upstream requests use that
/// worker's connection pools.
pub fn set_worker(index: usize) {
    WORKER.set(index);
}

fn worker() -> usize {
    WORKER.get()
}

fn rustls_native_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}
