//! WebSocket upgrades: who may open one, and the tunnel that carries it once both sides
//! switched protocols.
//!
//! A tunnel opened on a browser session carries a [`Watch`]: every `session.websocket_check`
//! it asks whether the session still stands (not logged out, not ended by the provider, not
//! expired). When it does not, the gateway waits for the end of the frame each side is
//! sending (frames are never cut), sends the browser a close frame (1008, "session
//! ended"), the upstream a masked close frame of its own, and closes both connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderMap};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// A client connection once it switched protocols.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How the client's side of an upgrade arrives. A connection served by hyper's own
/// upgrade support hands it over through hyper; a plain HTTP/1.1 connection that the
/// listener takes back from hyper between requests (to hold no buffers while idle) hands
/// it over itself, through a [`HandOff`] in the request's extensions.
pub enum ClientUpgrade {
    Hyper(OnUpgrade),
    HandOff(Handed),
}

/// Where the listener sends a connection that switched protocols.
type Handed = oneshot::Receiver<Box<dyn Io>>;

/// The listener's promise, put into an upgrade request's extensions, to send the
/// connection once the `101` response is written.
#[derive(Clone)]
pub struct HandOff(Arc<Mutex<Option<Handed>>>);

impl HandOff {
    /// The promise, and the sender the listener keeps.
    pub fn new() -> (HandOff, oneshot::Sender<Box<dyn Io>>) {
        let (tx, rx) = oneshot::channel();
        (HandOff(Arc::new(Mutex::new(Some(rx)))), tx)
    }
}

impl ClientUpgrade {
    /// Takes the client's side of an upgrade out of its request.
    pub fn take<B>(req: &mut http::Request<B>) -> ClientUpgrade {
        let handed = req
            .extensions_mut()
            .remove::<HandOff>()
            .and_then(|h| h.0.lock().ok().and_then(|mut rx| rx.take()));
        match handed {
            Some(rx) => ClientUpgrade::HandOff(rx),
            None => ClientUpgrade::Hyper(hyper::upgrade::on(req)),
        }
    }

    async fn connection(self) -> std::io::Result<Box<dyn Io>> {
        match self {
            ClientUpgrade::Hyper(on) => on
                .await
                .map(|u| Box::new(TokioIo::new(u)) as Box<dyn Io>)
                .map_err(std::io::Error::other),
            ClientUpgrade::HandOff(rx) => rx
                .await
                .map_err(|_| std::io::Error::other("the connection was not handed over")),
        }
    }
}

/// A browser session's cookie rides along on cross-site requests, so an upgrade that a
/// cookie authenticates must come from the gateway's own origin (`public_url`).
pub fn origin_allowed(headers: &HeaderMap, public_origin: &str) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == public_origin)
}

/// Does the session a tunnel was opened on still stand?
pub type StillValid = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

/// How a tunnel keeps checking its session.
pub struct Watch {
    /// `session.websocket_check`.
    pub every: Duration,
    pub still_valid: StillValid,
    /// Called once when the session ended and the tunnel was closed for it.
    pub on_close: Box<dyn FnOnce() + Send>,
}

/// The close frame the browser gets: status 1008 (policy violation), "session ended".
/// A server's frames are not masked.
const CLOSE_TO_CLIENT: &[u8] = &[
    0x88, 15, 0x03, 0xf0, b's', b'e', b's', b's', b'i', b'o', b'n', b' ', b'e', b'n', b'd', b'e',
    b'd',
];

/// The close frame the upstream gets (1001, going away): a client's frames are masked.
fn close_to_upstream() -> [u8; 8] {
    let mask: [u8; 4] = rand::random();
    let body = [0x03u8, 0xe9];
    [
        0x88,
        0x80 | 2,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        body[0] ^ mask[0],
        body[1] ^ mask[1],
    ]
}

/// Copies bytes both ways between the client and the upstream until either side closes;
/// with a `watch`, also until the session it was opened on ends.
pub fn tunnel(client: ClientUpgrade, upstream: OnUpgrade, watch: Option<Watch>) {
    tokio::spawn(async move {
        let upstream = async { upstream.await.map_err(std::io::Error::other) };
        match tokio::try_join!(client.connection(), upstream) {
            Ok((mut client, upstream)) => {
                let mut upstream = TokioIo::new(upstream);
                let result = match watch {
                    None => tokio::io::copy_bidirectional(&mut client, &mut upstream)
                        .await
                        .map(|_| ()),
                    Some(watch) => watched(&mut client, &mut upstream, watch).await,
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "websocket tunnel closed with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
}

/// How long a closing tunnel waits for the frames in flight to end before it cuts them.
const DRAIN: Duration = Duration::from_secs(5);

/// The tunnel of a session: bytes are copied as they come, frame boundaries are tracked
/// in both directions, and the session is checked every `watch.every`.
async fn watched<C, U>(client: &mut C, upstream: &mut U, mut watch: Watch) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut c_rd, mut c_wr) = tokio::io::split(client);
    let (mut u_rd, mut u_wr) = tokio::io::split(upstream);
    let mut from_client = Frames::default();
    let mut from_upstream = Frames::default();
    let mut c_buf = vec![0u8; 16 * 1024];
    let mut u_buf = vec![0u8; 16 * 1024];
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + watch.every, watch.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        if let Some(since) = closing_since {
            let drained = from_upstream.at_boundary() && from_client.at_boundary();
            if drained || since.elapsed() >= DRAIN {
                // Counted before the frames go out: whoever sees the close (the browser,
                // a test) then also sees it in the metrics.
                (watch.on_close)();
                if from_upstream.at_boundary() {
                    c_wr.write_all(CLOSE_TO_CLIENT).await?;
                }
                if from_client.at_boundary() {
                    u_wr.write_all(&close_to_upstream()).await?;
                }
                let _ = c_wr.shutdown().await;
                let _ = u_wr.shutdown().await;
                return Ok(());
            }
        }
        let wait = async {
            match closing_since {
                Some(since) => tokio::time::sleep_until(since + DRAIN).await,
                None => {
                    ticker.tick().await;
                }
            }
        };
        tokio::select! {
            n = c_rd.read(&mut c_buf) => {
                let n = n?;
                if n == 0 {
                    let _ = u_wr.shutdown().await;
                    return copy_rest(&mut u_rd, &mut c_wr).await;
                }
                from_client.advance(&c_buf[..n]);
                u_wr.write_all(&c_buf[..n]).await?;
            }
            n = u_rd.read(&mut u_buf) => {
                let n = n?;
                if n == 0 {
                    let _ = c_wr.shutdown().await;
                    return copy_rest(&mut c_rd, &mut u_wr).await;
                }
                from_upstream.advance(&u_buf[..n]);
                c_wr.write_all(&u_buf[..n]).await?;
            }
            () = wait => {
                if closing_since.is_none() && !(watch.still_valid)().await {
                    tracing::info!("closing a websocket: its session ended");
                    closing_since = Some(tokio::time::Instant::now());
                }
            }
        }
    }
}

/// One side closed: what the other still sends is passed on until it closes too.
async fn copy_rest<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::io::copy(from, to).await?;
    to.shutdown().await
}

/// Where one direction of a WebSocket stream is: inside a frame header, inside a payload,
/// or between frames (RFC 6455 §5.2). Nothing is buffered but a header's few bytes.
#[derive(Debug, Default)]
pub struct Frames {
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
}

impl Frames {
    /// Between two frames: a close frame may be written now.
    pub fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.remaining == 0
    }

    /// Accounts for bytes that were passed on.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(len) = self.payload_len() {
                self.remaining = len;
                self.header.clear();
            }
        }
    }

    /// The payload length once the header is complete.
    fn payload_len(&self) -> Option<u64> {
        let h = &self.header;
        if h.len() < 2 {
            return None;
        }
        let masked = h[1] & 0x80 != 0;
        let (ext, len) = match h[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let need = 2 + ext + if masked { 4 } else { 0 };
        if h.len() < need {
            return None;
        }
        Some(match len {
            Some(n) => n,
            None if ext == 2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            None => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match payload_len {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend([1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, payload_len));
        f
    }

    #[test]
    fn frame_boundaries_are_found_however_the_bytes_are_split() {
        for (len, masked) in [
            (0, false),
            (5, true),
            (125, false),
            (126, true),
            (70_000, false),
        ] {
            let f = frame(len, masked);
            for chunk in [1, 2, 3, 7, 1000, f.len()] {
                let mut frames = Frames::default();
                let pieces: Vec<&[u8]> = f.chunks(chunk).collect();
                for (i, p) in pieces.iter().enumerate() {
                    frames.advance(p);
                    let last = i + 1 == pieces.len();
                    assert_eq!(
                        frames.at_boundary(),
                        last,
                        "len {len} chunk {chunk} piece {i}"
                    );
                }
            }
        }
        let mut frames = Frames::default();
        let mut two = frame(3, true);
        two.extend(frame(200, true));
        frames.advance(&two[..two.len() - 1]);
        assert!(!frames.at_boundary());
        frames.advance(&two[two.len() - 1..]);
        assert!(frames.at_boundary());
    }

    #[test]
    fn the_close_frames_are_well_formed() {
        let mut f = Frames::default();
        f.advance(CLOSE_TO_CLIENT);
        assert!(f.at_boundary());
        assert_eq!(CLOSE_TO_CLIENT[1] as usize, CLOSE_TO_CLIENT.len() - 2);
        assert_eq!(
            u16::from_be_bytes([CLOSE_TO_CLIENT[2], CLOSE_TO_CLIENT[3]]),
            1008
        );
        let up = close_to_upstream();
        let mut f = Frames::default();
        f.advance(&up);
        assert!(f.at_boundary());
        let code = u16::from_be_bytes([up[6] ^ up[2], up[7] ^ up[3]]);
        assert_eq!(code, 1001);
    }
}
