//! An upstream that answers every request with a JSON description of what it received.
//!
//! Special paths: `/slow` waits 5 s before answering (timeouts); `/ws` accepts a WebSocket
//! upgrade and then echoes raw bytes back; `/ws-echo` is a WebSocket echo server a browser
//! accepts (handshake with `Sec-WebSocket-Accept`, each message sent back unmasked);
//! `/ws-page` is an HTML page whose script opens `/ws-echo` and shows the socket's state in
//! `#state` (`open`, `echo: ...`, `closed code=... reason=...`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the upstream saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    #[serde(default)]
    pub version: String,
    /// Path and query exactly as received.
    pub target: String,
    /// Header names (lower case) and values in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    /// All values of a header (name in any case).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }
}

#[derive(Clone)]
pub struct EchoUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        super::serve(listener, move |req| answer(s.clone(), req));
        EchoUpstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn answer(seen: Arc<Mutex<Vec<Seen>>>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let framed = req.uri().path() == "/ws-echo";
    let is_ws = req.uri().path() == "/ws" || framed;
    let accept = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| websocket_accept(k.as_bytes()));
    let upgrade = is_ws.then(|| hyper::upgrade::on(&mut req));
    let body = if is_ws {
        String::new()
    } else {
        req.into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default()
    };
    let s = Seen {
        method,
        version,
        target: target.clone(),
        headers,
        body,
    };
    seen.lock().unwrap().push(s.clone());

    if let Some(upgrade) = upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                if framed {
                    let _ = echo_frames(&mut io).await;
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        r.headers_mut().insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        if let Some(v) = accept.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
            r.headers_mut().insert("sec-websocket-accept", v);
        }
        return r;
    }
    if target.starts_with("/ws-page") {
        let mut r = Response::new(Full::new(Bytes::from_static(WS_PAGE.as_bytes())));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return r;
    }
    if target.starts_with("/public/big") {
        // 8 MiB: more than the socket buffers and hyper's together hold.
        return Response::new(Full::new(Bytes::from(vec![b'x'; 8 << 20])));
    }
    if target.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_string(&s).unwrap_or_default(),
    )));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert("x-upstream", http::HeaderValue::from_static("echo"));
    r
}

/// `Sec-WebSocket-Accept` for a client's key (RFC 6455 §4.2.2).
fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// Reads the client's (masked) frames and sends each back unmasked, as a server must; a
/// close frame is answered with a close frame and ends the connection.
async fn echo_frames<S>(io: &mut S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                io.read_exact(&mut b).await?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                io.read_exact(&mut b).await?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; usize::try_from(len).unwrap_or(0).min(1 << 20)];
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let mut out = vec![head[0]];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        out.extend(&payload);
        io.write_all(&out).await?;
        if opcode == 0x8 {
            return io.shutdown().await;
        }
    }
}

/// A page that opens `/ws-echo` on its own origin and shows what happens to the socket.
const WS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>websocket</title></head>
<body><p id="state">connecting</p>
<script>
const state = document.getElementById('state');
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws-echo');
ws.onopen = () => { state.textContent = 'open'; ws.send('hello'); };
ws.onmessage = (e) => { state.textContent = 'echo: ' + e.data; };
ws.onclose = (e) => { state.textContent = 'closed code=' + e.code + ' reason=' + e.reason; };
</script></body></html>
"#;
