//! Listeners: the main gateway listener (HTTP/1.1 and HTTP/2, optional TLS) and the admin
//! listener, plus the graceful shutdown that drains both.

pub mod admin;
mod connection;
mod keepalive;
pub mod listener;
mod memory;
pub mod reload;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, RuntimeKind};
use crate::gateway::Gateway;

/// A started gateway: its addresses, and the handle that stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (up to `server.shutdown_grace`), waits,
    /// and sends the spans still batched to the collector.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        for b in self.background {
            b.abort();
        }
        if let Some(t) = &self.gateway.telemetry {
            t.shutdown().await;
        }
    }

    /// Resolves when a shutdown was requested and everything has drained.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Binds both listeners and starts serving. Provider discovery and key fetching run in the
/// background, so the gateway starts even while the provider is unreachable.
pub async fn start(config: Config) -> Result<Running, String> {
    let listen = config.server.listen;
    let admin_listen = config.server.admin_listen;
    let jwks_refresh = config.tokens.jwks_refresh;
    let (runtime, workers) = (config.server.runtime, config.server.workers);
    let gateway = Gateway::new(config)?;
    let cannot = |e: std::io::Error| format!("cannot listen on {listen} (server.listen): {e}");
    let main = TcpListener::bind(listen).await.map_err(cannot)?;
    let admin = TcpListener::bind(admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {admin_listen} (server.admin_listen): {e}"))?;
    let addr = main.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let (shutdown, rx) = watch::channel(false);

    let mut background: Vec<_> = gateway
        .issuer_keys
        .iter()
        .map(|k| tokio::spawn(k.clone().run(jwks_refresh)))
        .collect();
    background.push(tokio::spawn(memory::run()));
    let slots = listener::slots(&gateway);
    let serving = match runtime {
        RuntimeKind::Shared => {
            tokio::spawn(listener::serve(gateway.clone(), main, rx.clone(), slots))
        }
        RuntimeKind::PerCore => {
            workers::start(gateway.clone(), main, workers, rx.clone(), slots).map_err(cannot)?
        }
    };
    let tasks = vec![
        serving,
        tokio::spawn(admin::serve(gateway.clone(), admin, rx)),
    ];
    tracing::info!(%addr, %admin_addr, "portcullis is listening");
    Ok(Running {
        addr,
        admin_addr,
        gateway,
        shutdown,
        tasks,
        background,
    })
}
