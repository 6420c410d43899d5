//! Plain HTTP/1.1 connections that hold no buffers while idle.
//!
//! hyper keeps a connection's read and write buffers (8-16 KiB each) for as long as the
//! connection is open, so 10 000 idle keep-alive connections would hold about 200 MB.
//! Here a connection that has served nothing for [`PARK_AFTER`] is taken back from hyper
//! (its state is dropped, the buffers freed), waits for the next bytes with only the
//! socket, and gets a new hyper connection when they arrive.
//!
//! Only a connection with nothing in flight parks: no request open, and no response
//! still waiting in hyper's write buffer for a client that reads slowly (the socket's
//! last write did not have to wait).
//!
//! What does not change for the client:
//! - Bytes hyper had read but not used (a request head still arriving) are put back in
//!   front of the socket, so nothing is lost or reordered.
//! - The idle limit: a connection must send a complete request head within
//!   `server.header_read_timeout` of its last response, parked or not. hyper measures
//!   that up to the park; after it, the listener holds the same deadline.
//! - WebSocket upgrades: the `101` ends hyper's part, and the connection is handed to the
//!   tunnel with the bytes hyper read after the request (see [`HandOff`]).
//! - A shutdown drains the request in flight, then closes.
//!
//! TLS connections are not parked: rustls may hold decrypted bytes that the socket's
//! readiness would not show.
//!
//! [`HandOff`]: crate::forward::websocket::HandOff

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::connection::{stopped, Activity, Rewind, Tracked, UpgradeSlot};
use super::memory;
use crate::metrics::Metrics;
use crate::response::Body;

/// How long a connection serves nothing before it gives its buffers back. Long enough
/// that a connection in steady use never pays for a new hyper connection. With a short
/// `server.header_read_timeout` it is a quarter of that, so a connection still parks
/// before it is closed for being idle.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// How long a connection idles before it parks, under `header_read_timeout`.
fn park_after(header_read_timeout: Duration) -> Duration {
    PARK_AFTER.min(header_read_timeout / 4)
}

/// How one period of a connection under hyper ended.
enum Ended {
    /// hyper is done with it: closed by either side, or switched protocols.
    Done(hyper::Result<()>),
    /// Taken back to park (or the listener is shutting down and it was idle).
    Parked(hyper::Result<()>),
    /// Past the idle deadline without a complete request head.
    Expired,
}

/// Serves one plain HTTP/1.1 connection until it closes.
pub(super) async fn serve<S>(
    h1: &http1::Builder,
    header_read_timeout: Duration,
    metrics: &Metrics,
    mut io: Rewind,
    svc: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    let activity = Arc::new(Activity::new());
    io.report_writes(activity.clone());
    let upgrades = UpgradeSlot::default();
    let svc = Tracked {
        inner: svc,
        activity: activity.clone(),
        upgrades: Some(upgrades.clone()),
    };
    // Set after a park: the deadline for a complete request head, and how many requests
    // had begun when it was set.
    let mut deadline: Option<(Instant, u64)> = None;
    let park_after = park_after(header_read_timeout);
    loop {
        // Boxed: hyper's connection state is large, and a parked connection's task
        // should not keep room for it.
        let mut conn = Box::new(h1.serve_connection(TokioIo::new(io), svc.clone()));
        let ended = drive(&mut conn, &activity, &mut stop, deadline, park_after).await;
        let parked = match ended {
            Ended::Expired => {
                metrics.idle_closed("http1");
                return;
            }
            Ended::Done(r) | Ended::Parked(r) if r.is_err() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            Ended::Done(_) => false,
            Ended::Parked(_) => true,
        };
        let parts = conn.into_parts();
        io = parts.io.into_inner();
        io.put_back(parts.read_buf);
        let upgraded = upgrades.lock().ok().and_then(|mut s| s.take());
        if let Some(tx) = upgraded {
            // The 101 is written: the rest of the connection is the tunnel's.
            let _ = tx.send(Box::new(io));
            return;
        }
        if !parked || *stop.borrow() {
            let _ = io.shutdown().await;
            return;
        }
        metrics.connection_parked();
        memory::released();
        let idle_until = activity.idle_since() + header_read_timeout;
        if deadline.is_none_or(|(_, begun)| begun != activity.begun()) {
            deadline = Some((idle_until, activity.begun()));
        }
        if io.has_buffered() {
            // A request head is arriving: hand it straight to a new hyper connection.
            continue;
        }
        let until = deadline.map_or(idle_until, |(d, _)| d);
        tokio::select! {
            r = io.inner.readable() => if r.is_err() { return },
            () = tokio::time::sleep_until(until.into()) => {
                metrics.idle_closed("http1");
                return;
            }
            () = stopped(&mut stop) => return,
        }
    }
}

/// Runs hyper on the connection until it is done, is parked, or misses its deadline.
async fn drive<S>(
    conn: &mut http1::Connection<TokioIo<Rewind>, Tracked<S>>,
    activity: &Activity,
    stop: &mut watch::Receiver<bool>,
    mut deadline: Option<(Instant, u64)>,
    park_after: Duration,
) -> Ended
where
    S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
        + Unpin,
    S::Future: Unpin,
{
    let started = Instant::now();
    // Requests begun before this hyper connection took over.
    let begun_before = activity.begun();
    let mut park = pin!(tokio::time::sleep_until((started + park_after).into()));
    let mut stopping = pin!(stopped(stop));
    let mut expiry = pin!(tokio::time::sleep_until(
        deadline.map_or(started, |(d, _)| d).into()
    ));
    // Set once hyper was told to finish: it then runs until it is done.
    let mut finishing: Option<bool> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
            return Poll::Ready(match finishing {
                Some(true) => Ended::Parked(r),
                _ => Ended::Done(r),
            });
        }
        if finishing.is_some() {
            return Poll::Pending;
        }
        if let Some((_, begun)) = deadline {
            if activity.begun() != begun {
                // A request came: from here on hyper's own limits apply.
                deadline = None;
            } else if expiry.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Expired);
            }
        }
        if stopping.as_mut().poll(cx).is_ready() {
            // Drain: the request in flight finishes, then the connection closes.
            finishing = Some(false);
            Pin::new(&mut *conn).graceful_shutdown();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        while park.as_mut().poll(cx).is_ready() {
            let quiet_since = activity.idle_since().max(started);
            let due = quiet_since + park_after;
            // Only between requests: until this hyper connection has answered one, hyper
            // would not hand it back at once but finish the request and close (and the
            // deadline above still holds).
            let answered = activity.begun() > begun_before && !activity.busy();
            if answered && Instant::now() >= due {
                // hyper closes an idle connection at once (a partly read request head
                // stays in its read buffer and comes back with the connection).
                finishing = Some(true);
                Pin::new(&mut *conn).graceful_shutdown();
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let next = if answered {
                due
            } else {
                Instant::now() + park_after
            };
            park.as_mut().reset(next.into());
        }
        Poll::Pending
    })
    .await
}
