//! Test doubles for the integration tests and benchmarks (feature `test-util`): an
//! in-process OpenID provider that signs tokens with keys made at start, and an echo
//! upstream that reports exactly what it received. Both bind `127.0.0.1:0`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod dpop;
pub mod idp;
pub mod upstream;

pub use idp::TestIdp;
pub use upstream::{EchoUpstream, Seen};

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Accepts connections until the runtime ends and serves each one with `handler`
/// (HTTP/1.1 with upgrades, or HTTP/2 with prior knowledge).
pub(crate) fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
}
