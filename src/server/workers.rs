//! `server.runtime = "per-core"`: one thread per worker, each with a single-threaded tokio
//! runtime and its own `SO_REUSEPORT` listener on `server.listen`. The kernel spreads new
//! connections over the listeners; a connection, its requests and the upstream
//! connections they use (each worker has its own pools) stay on one thread, with no
//! work-stealing and no cross-thread wake-ups. The gateway state (configuration, caches,
//! keys, metrics) is shared by all workers; provider discovery, key refresh, reloads and
//! the admin listener run on the process's other runtime.
//!
//! `SO_REUSEPORT` lets another process of the same user bind the same port and receive
//! part of the connections, as with nginx's `reuseport`; run the gateway as its own user.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::listener;
use crate::forward::upstream;
use crate::gateway::Gateway;

/// The first listener, bound with `SO_REUSEPORT` (the others bind to its address, which
/// fixes the port when `server.listen` asks for port 0).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Starts `workers` threads serving `first` and `workers - 1` more listeners on its
/// address. The handle resolves when every worker has drained after `shutdown`.
pub fn start(
    gw: Arc<Gateway>,
    first: TcpListener,
    workers: usize,
    shutdown: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
) -> std::io::Result<JoinHandle<()>> {
    let addr = first.local_addr()?;
    let mut listeners = vec![first.into_std()?];
    for _ in 1..workers {
        listeners.push(bind(addr)?.into_std()?);
    }
    let mut done = Vec::with_capacity(workers);
    for (index, std_listener) in listeners.into_iter().enumerate() {
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let (gw, stop, slots) = (gw.clone(), shutdown.clone(), slots.clone());
        std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .spawn(move || {
                upstream::set_worker(index);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "cannot start a worker runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => listener::serve(gw, l, stop, slots).await,
                        Err(e) => tracing::error!(worker = index, error = %e, "cannot listen"),
                    }
                });
                drop(finished);
            })?;
        done.push(finished_rx);
    }
    Ok(tokio::spawn(async move {
        for d in done {
            let _ = d.await;
        }
    }))
}
