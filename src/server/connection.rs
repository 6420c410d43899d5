//! What the listener's connections are made of: the TCP stream with the bytes already
//! read from it put back in front, and the count of a connection's open requests (an
//! HTTP/2 connection is closed after a quiet period, an HTTP/1.1 one gives its buffers
//! back; both need to know when it last served anything).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::forward::headers::is_websocket_upgrade;
use crate::forward::websocket::{HandOff, Io};
use crate::response::Body;

/// Resolves once shutdown has been requested (at once if it already was).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once everything stops.
    let _ = stop.wait_for(|s| *s).await;
}

// === impl Activity ===

/// The open requests (HTTP/2: streams) of one connection, and since when it has had none.
pub(super) struct Activity {
    /// Requests whose response has not ended yet (counted until the body is done).
    open: AtomicUsize,
    /// Requests begun since the connection opened.
    begun: AtomicU64,
    /// When the last request ended (or the connection started), as time since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// Did the last write to the socket wait for room? Then bytes of a response are still
    /// in hyper's write buffer (the client reads slowly), and the connection is not idle.
    write_blocked: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            write_blocked: AtomicBool::new(false),
        }
    }

    fn begin(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// How many requests have begun since the connection opened.
    pub(super) fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// Is a request open, or a response still being written?
    pub(super) fn busy(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0 || self.write_blocked.load(Ordering::Acquire)
    }

    /// When the last request ended, or the connection opened if none has.
    pub(super) fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }

    /// Resolves once the connection has had no open stream for `limit`.
    pub(super) async fn idle_for(&self, limit: Duration) {
        loop {
            let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            let deadline = self.epoch + since + limit;
            tokio::time::sleep_until(deadline.into()).await;
            let still = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            if self.open.load(Ordering::Acquire) == 0 && still == since {
                return;
            }
            if self.open.load(Ordering::Acquire) > 0 {
                // Busy: look again one period from now (a stream ending resets the clock).
                tokio::time::sleep(limit).await;
            }
        }
    }
}

/// Marks one request open until dropped (with its response body).
pub(super) struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(now, Ordering::Release);
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as open until it ends or is dropped.
    pub(super) struct TrackedBody {
        #[pin]
        inner: Body,
        guard: Option<StreamGuard>,
    }
}

impl HttpBody for TrackedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a connection that hyper hands back keeps the promise of an upgrade in flight.
pub(super) type UpgradeSlot = Arc<Mutex<Option<oneshot::Sender<Box<dyn Io>>>>>;

/// The gateway's service with every request counted in [`Activity`]. With an `upgrades`
/// slot (HTTP/1.1 connections the listener takes back from hyper), a WebSocket upgrade
/// request carries a [`HandOff`] and the slot keeps its sender until the response says
/// whether the protocol switched.
#[derive(Clone)]
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) activity: Arc<Activity>,
    pub(super) upgrades: Option<UpgradeSlot>,
}

impl<S> Service<http::Request<Incoming>> for Tracked<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let guard = self.activity.begin();
        let upgrade = match &self.upgrades {
            Some(slot) if is_websocket_upgrade(req.headers()) => {
                let (handoff, tx) = HandOff::new();
                req.extensions_mut().insert(handoff);
                if let Ok(mut s) = slot.lock() {
                    *s = Some(tx);
                }
                Some(slot.clone())
            }
            _ => None,
        };
        TrackedFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
            upgrade,
        }
    }
}

/// The response of a [`Tracked`] request.
pub(super) struct TrackedFuture<F> {
    inner: F,
    guard: Option<StreamGuard>,
    upgrade: Option<UpgradeSlot>,
}

impl<F> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<http::Response<TrackedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(resp) = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if let Some(slot) = self.upgrade.take() {
            if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                // No switch: nothing will be handed over.
                if let Ok(mut s) = slot.lock() {
                    s.take();
                }
            }
        }
        let guard = self.guard.take();
        Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, guard })))
    }
}

// === impl Rewind ===

/// A TCP stream whose first bytes were already read and are handed out again before the
/// rest: the bytes read to tell the protocol, and the bytes hyper had read but not used
/// when it gave the connection back.
pub(super) struct Rewind {
    /// Handed out first (hyper read them after the `seen` bytes it was given).
    extra: Bytes,
    seen: [u8; 24],
    pos: u8,
    len: u8,
    pub(super) inner: TcpStream,
    /// Told whether each write waited for room (see [`Activity::busy`]).
    writes: Option<Arc<Activity>>,
}

impl Rewind {
    /// `seen` holds `len` bytes already read from `inner`.
    pub(super) fn new(seen: [u8; 24], len: u8, inner: TcpStream) -> Rewind {
        Rewind {
            extra: Bytes::new(),
            seen,
            pos: 0,
            len,
            inner,
            writes: None,
        }
    }

    /// From now on, tells `activity` whether the socket keeps writes waiting.
    pub(super) fn report_writes(&mut self, activity: Arc<Activity>) {
        self.writes = Some(activity);
    }

    /// Records the outcome of a write or flush.
    fn wrote<T>(&self, r: Poll<T>) -> Poll<T> {
        if let Some(a) = &self.writes {
            a.write_blocked.store(r.is_pending(), Ordering::Release);
        }
        r
    }

    /// Puts back in front bytes that were read from this stream but not used. They are
    /// copied: `unread` is a slice of hyper's read buffer and would keep all of it alive.
    pub(super) fn put_back(&mut self, unread: Bytes) {
        debug_assert!(self.extra.is_empty());
        self.extra = if unread.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&unread)
        };
    }

    /// Are there bytes to hand out before the socket's?
    pub(super) fn has_buffered(&self) -> bool {
        !self.extra.is_empty() || self.pos < self.len
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.extra.is_empty() {
            let n = self.extra.len().min(buf.remaining());
            buf.put_slice(&self.extra[..n]);
            self.extra.advance(n);
            return Poll::Ready(Ok(()));
        }
        let (pos, len) = (usize::from(self.pos), usize::from(self.len));
        if pos < len {
            let n = (len - pos).min(buf.remaining());
            buf.put_slice(&self.seen[pos..pos + n]);
            self.pos += n as u8;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_waiting_for_room_keeps_the_connection_busy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connecting = tokio::spawn(TcpStream::connect(addr));
        let (server, _) = listener.accept().await.unwrap();
        let mut peer = connecting.await.unwrap().unwrap();
        let activity = Arc::new(Activity::new());
        let mut io = Rewind::new([0; 24], 0, server);
        io.report_writes(activity.clone());
        assert!(!activity.busy());

        // The peer reads nothing: write until the socket has no room left.
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        loop {
            let polled =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, &chunk)))
                    .await;
            match polled {
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break,
            }
            assert!(!activity.busy(), "busy after a write that went through");
        }
        assert!(
            activity.busy(),
            "not busy with {sent} bytes waiting for room"
        );

        // The peer reads them all; the next write goes through and it is idle again.
        let mut got = vec![0u8; sent];
        peer.read_exact(&mut got).await.unwrap();
        io.write_all(b"end").await.unwrap();
        assert!(!activity.busy());
        io.flush().await.unwrap();
        assert!(!activity.busy());
    }
}
