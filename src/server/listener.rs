//! The main listener: accept loop, TLS, HTTP/1.1 + HTTP/2, header limits, graceful drain.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;
use crate::pipeline::{self, ConnInfo};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` turns true, then drains open connections for up to
/// `server.shutdown_grace`.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let settings = gw.runtime().config.server.clone();
    let tls = settings
        .tls
        .as_ref()
        .map(|t| TlsAcceptor::from(t.config.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

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
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = ConnInfo {
                peer,
                tls: tls.is_some(),
            };
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                // Boxed so that an idle connection does not carry the full size of the
                // request pipeline's state machine.
                Box::pin(async move {
                    Ok::<_, std::convert::Infallible>(pipeline::handle(gw, conn, req).await)
                })
            });
            let result = match tls {
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .into_owned(),
                        )
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            watcher
                                .watch(
                                    builder
                                        .serve_connection_with_upgrades(
                                            TokioIo::new(tls_stream),
                                            svc,
                                        )
                                        .into_owned(),
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = settings.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown grace period over; closing remaining connections"),
    }
}
