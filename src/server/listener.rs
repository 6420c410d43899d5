//! The main listener: accept loop, TLS, HTTP/1.1 + HTTP/2, header limits, graceful drain.
//!
//! Each connection is one task. Its protocol is known before its connection state is
//! built: ALPN says it for TLS, and on plain TCP the first bytes do (HTTP/2 with prior
//! knowledge starts with the connection preface). An HTTP/1.1 connection, the common and
//! the long-idle kind, then carries only HTTP/1.1 state; HTTP/2 state lives in a box of
//! its own. That keeps an idle keep-alive connection small.
//!
//! Time limits are the same for both protocols: a connection that has not shown its
//! protocol, has not sent a complete request head, or has sat idle between requests for
//! `server.header_read_timeout` is closed. hyper enforces that for HTTP/1.1; for HTTP/2 an
//! `Activity` watch counts open streams (until their response bodies end) and sends
//! GOAWAY when there has been none for that long, so a client that dribbles a HEADERS
//! frame, or opens connections and says nothing, holds nothing for long. At most
//! `server.max_connections` connections are open at once; further ones wait in the
//! kernel's listen backlog until one closes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::connection::{stopped, Activity, Rewind, Tracked};
use super::keepalive;
use crate::config::ServerSettings;
use crate::gateway::Gateway;
use crate::pipeline::{self, ConnInfo};
use crate::response::Body;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP/2 connection with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type Answer = Result<http::Response<Body>, Infallible>;
type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// The per-connection service: every request goes through the pipeline.
fn service(
    gw: Arc<Gateway>,
    conn: ConnInfo,
) -> impl Service<
    http::Request<Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = AnswerFuture,
> + Clone {
    service_fn(move |req| {
        let gw = gw.clone();
        // Boxed so that an idle connection does not carry the full size of the request
        // pipeline's state machine.
        Box::pin(async move { Ok(pipeline::handle(gw, conn, req).await) }) as AnswerFuture
    })
}

/// The HTTP/1.1 and HTTP/2 connection settings, shared by all connections.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// Also bounds how long a new plain connection may take to show its protocol, and
    /// how long an HTTP/2 connection may go without a stream.
    header_read_timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Protocols {
    fn new(s: &ServerSettings, metrics: Arc<crate::metrics::Metrics>) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(s.header_read_timeout)
            .max_buf_size(s.max_header_bytes);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX));
        Protocols {
            h1,
            h2,
            header_read_timeout: s.header_read_timeout,
            metrics,
        }
    }

    /// A plain TCP connection: HTTP/2 if it opens with the preface, else HTTP/1.1.
    async fn serve_plain<S>(&self, mut stream: TcpStream, svc: S, stop: watch::Receiver<bool>)
    where
        S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Unpin
            + 'static,
        S::Future: Send + Unpin + 'static,
    {
        let mut seen = [0u8; 24];
        let mut len = 0;
        let sniff = async {
            while len < seen.len() {
                let n = stream.read(&mut seen[len..]).await?;
                if n == 0 {
                    break;
                }
                len += n;
                if seen[..len] != H2_PREFACE[..len] {
                    break;
                }
            }
            Ok::<_, io::Error>(())
        };
        match tokio::time::timeout(self.header_read_timeout, sniff).await {
            Ok(Ok(())) if len > 0 => {}
            // Closed, failed, or silent for too long before saying anything.
            _ => return,
        }
        let io = Rewind::new(seen, len as u8, stream);
        if len == H2_PREFACE.len() && seen == *H2_PREFACE {
            self.serve_h2(io, svc, stop).await;
        } else {
            let (h1, limit) = (&self.h1, self.header_read_timeout);
            keepalive::serve(h1, limit, &self.metrics, io, svc, stop).await;
        }
    }

    async fn serve_h1<I, S>(&self, io: I, svc: S, mut stop: watch::Receiver<bool>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let conn = self
            .h1
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(&mut stop) => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    async fn serve_h2<I, S>(&self, io: I, svc: S, mut stop: watch::Receiver<bool>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + Unpin + 'static,
    {
        let activity = Arc::new(Activity::new());
        let svc = Tracked {
            inner: svc,
            activity: activity.clone(),
            upgrades: None,
        };
        // Boxed: HTTP/2 state is large, and an HTTP/1.1 task should not be sized for it.
        let mut conn = Box::pin(self.h2.serve_connection(TokioIo::new(io), svc));
        let limit = self.header_read_timeout;
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = activity.idle_for(limit) => {
                tracing::debug!(?limit, "closing an HTTP/2 connection without requests");
                self.metrics.idle_closed("http2");
                conn.as_mut().graceful_shutdown();
                // GOAWAY was sent and no stream is open: the connection ends at once
                // unless the peer holds it; then it is cut after another period.
                match tokio::time::timeout(limit, conn.as_mut()).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// The places of `server.max_connections`.
pub fn slots(gw: &Gateway) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(gw.runtime().config.server.max_connections))
}

/// A connection's place under `server.max_connections`, given back when it closes.
struct ConnectionSlot {
    _slot: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.metrics.connection(-1);
        super::memory::released();
    }
}

/// Serves until `shutdown` turns true, then drains open connections for up to
/// `server.shutdown_grace`.
/// `slots` holds `server.max_connections` places, shared by every listener of a per-core
/// gateway.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
) {
    let settings = gw.runtime().config.server.clone();
    let tls = settings
        .tls
        .as_ref()
        .map(|t| TlsAcceptor::from(t.config.clone()));
    let protocols = Arc::new(Protocols::new(&settings, gw.metrics.clone()));
    // Every connection task holds a sender; when all are gone, the drain is complete.
    let (open, mut drained) = mpsc::channel::<()>(1);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Then its slot: past `max_connections` it waits, unserved, and the connections
        // after it wait in the backlog. (Taking the slot after the accept matters with
        // per-core listeners: a worker waiting in `accept` holds no slot another
        // worker's connection could use.)
        let slot = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                gw.metrics.connections_at_limit();
                tracing::warn!(
                    max = settings.max_connections,
                    "server.max_connections reached; new connections wait"
                );
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnInfo::new(peer, tls.is_some());
        let svc = service(gw.clone(), conn);
        let protocols = protocols.clone();
        let stop = shutdown.clone();
        let open = open.clone();
        let metrics = gw.metrics.clone();
        metrics.connection(1);
        let held = ConnectionSlot {
            _slot: slot,
            metrics,
        };
        // Plain and TLS connections are different tasks, so that a plain connection does
        // not carry the size of a TLS session.
        match tls.clone() {
            None => {
                tokio::spawn(async move {
                    protocols.serve_plain(stream, svc, stop).await;
                    drop(open);
                    drop(held);
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _held = held;
                    let tls_stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        protocols.serve_h2(tls_stream, svc, stop).await;
                    } else {
                        protocols.serve_h1(tls_stream, svc, stop).await;
                    }
                    drop(open);
                });
            }
        }
    }
    drop(listener);
    drop(open);
    let grace = settings.shutdown_grace;
    tokio::select! {
        _ = drained.recv() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown grace period over; closing remaining connections"),
    }
}
