//! `server.runtime = "per-core"`: one thread per worker, each with a single-threaded tokio
//! runtime that accepts from the one listening socket on `server.listen` (each worker
//! registers its own handle of it). A new connection goes to whichever worker accepts it
//! first; the connection, its requests and the upstream connections they use (each worker
//! has its own pools) then stay on that thread, with no work-stealing and no cross-thread
//! wake-ups. The gateway state (configuration, caches, keys, metrics) is shared by all
//! workers; provider discovery, key refresh, reloads and the admin listener run on the
//! process's other runtime.
//!
//! One socket, not one `SO_REUSEPORT` socket per worker: a second gateway started on the
//! same port by mistake fails with "address in use" instead of silently taking part of
//! the connections, and an idle worker takes the next connection instead of the kernel
//! hashing connections onto a busy one.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::listener;
use crate::forward::upstream;
use crate::gateway::Gateway;

/// Starts `workers` threads serving `listener`. The handle resolves when every worker has
/// drained after `shutdown`.
pub fn start(
    gw: Arc<Gateway>,
    listener: TcpListener,
    workers: usize,
    shutdown: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
) -> std::io::Result<JoinHandle<()>> {
    let socket = listener.into_std()?;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 1..workers {
        listeners.push(socket.try_clone()?);
    }
    listeners.push(socket);
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
