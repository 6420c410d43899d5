//! Idle plain HTTP/1.1 keep-alive connections give their buffers back ("park") and are
//! served again on the same TCP connection when the next request comes. The gateway here
//! has `header_read_timeout = "800ms"`, so a connection parks after 200 ms of quiet.
//! Each test waits for the park through `portcullis_connections_parked_total`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Harness, RawResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(h: &Harness) -> portcullis::server::Running {
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\nheader_read_timeout = \"800ms\"",
        );
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    gw
}

/// The value of a counter line of `/metrics` (0 when absent).
async fn metric(admin: SocketAddr, line: &str) -> u64 {
    let m = support::get(admin, "/metrics", &[]).await.body;
    m.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

async fn parked(admin: SocketAddr) -> u64 {
    metric(admin, "portcullis_connections_parked_total").await
}

/// Waits until connections have parked `n` times in all.
async fn wait_parked(admin: SocketAddr, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while parked(admin).await < n {
        assert!(Instant::now() < deadline, "no connection parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one response (with a `content-length` body) off a keep-alive connection.
async fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = support::parse_response(&buf[..end + 4]);
                let len: usize = head
                    .header("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                if buf.len() >= end + 4 + len {
                    return support::parse_response(&buf);
                }
            }
            let n = s.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response: {buf:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response in time")
}

/// A connection that has had one request (`/public/one`) answered.
async fn answered(gw: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(get("/public/one").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.seen().target, "/public/one");
    s
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// Reads until the gateway closes the connection; what it sent before.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the gateway closed the connection")
        .unwrap_or_default();
    got
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    let mut s = answered(gw.addr).await;
    for (n, path) in [(1, "/public/two"), (2, "/public/three")] {
        wait_parked(gw.admin_addr, n).await;
        s.write_all(get(path).as_bytes()).await.unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(r.seen().target, path);
    }
    assert_eq!(h.upstream.count(), 3);
}

#[tokio::test]
async fn a_request_head_split_across_a_park_is_served_whole() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    let mut s = answered(gw.addr).await;
    // Half a head before the park (hyper has read it when it hands the connection back),
    // the rest after.
    s.write_all(b"GET /public/two?q=1 HTTP/1.1\r\nHo")
        .await
        .unwrap();
    wait_parked(gw.admin_addr, 1).await;
    s.write_all(b"st: x\r\nX-Test: after\r\n\r\n")
        .await
        .unwrap();
    let seen = read_response(&mut s).await.seen();
    assert_eq!(seen.target, "/public/two?q=1");
    assert_eq!(seen.header_all("x-test"), ["after"]);
}

#[tokio::test]
async fn a_parked_connection_is_still_closed_at_the_idle_limit() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    let closed_before = metric(
        gw.admin_addr,
        "portcullis_connections_idle_closed_total{kind=\"http1\"}",
    )
    .await;
    let mut s = answered(gw.addr).await;
    let since = Instant::now();
    wait_parked(gw.admin_addr, 1).await;
    let got = until_closed(&mut s).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(
        since.elapsed() >= Duration::from_millis(700),
        "closed after {:?}, before the idle limit",
        since.elapsed()
    );
    let closed = metric(
        gw.admin_addr,
        "portcullis_connections_idle_closed_total{kind=\"http1\"}",
    )
    .await;
    assert_eq!(closed, closed_before + 1);

    // The part of a head that came before the park does not buy more time, nor does one
    // that starts after it: the limit counts from the last response.
    for early in [true, false] {
        let mut s = answered(gw.addr).await;
        let before = parked(gw.admin_addr).await;
        if early {
            s.write_all(b"GET /public/two HTTP/1.1\r\n").await.unwrap();
        }
        wait_parked(gw.admin_addr, before + 1).await;
        if !early {
            s.write_all(b"GET /public/two HTTP/1.1\r\n").await.unwrap();
        }
        let got = until_closed(&mut s).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert_eq!(
        h.upstream.count(),
        3,
        "no partial request reached the upstream"
    );
}

#[tokio::test]
async fn a_request_in_progress_is_not_parked() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // /slow outlasts the park delay many times over (the upstream timeout, 2 s, ends it
    // with a 504): the connection stays with hyper until the answer is written.
    s.write_all(get("/slow").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.status, 504);
    assert_eq!(parked(gw.admin_addr).await, 0);
    wait_parked(gw.admin_addr, 1).await;
    s.write_all(get("/public/after").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.seen().target, "/public/after");
}

#[tokio::test]
async fn a_websocket_upgrade_after_a_park_opens_the_tunnel() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    let upgrade = |auth: &str| {
        format!("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n")
    };
    let mut s = answered(gw.addr).await;
    wait_parked(gw.admin_addr, 1).await;
    // Refused: the connection stays an HTTP connection.
    s.write_all(upgrade("").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.status, 401);
    wait_parked(gw.admin_addr, 2).await;
    // Allowed: 101, then frames both ways through the tunnel, which is never parked.
    let token = h.token("svc", "");
    let auth = format!("Authorization: Bearer {token}\r\n");
    s.write_all(upgrade(&auth).as_bytes()).await.unwrap();
    let head = support::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for text in ["ping", "pong"] {
        support::round_trip(&mut s, text).await;
        // Quiet for longer than the park delay: a tunnel is not an idle HTTP connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(parked(gw.admin_addr).await, 2, "the tunnel was parked");
}

#[tokio::test]
async fn a_shutdown_closes_parked_connections() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    let mut s = answered(gw.addr).await;
    wait_parked(gw.admin_addr, 1).await;
    let asked = Instant::now();
    let stopping = tokio::spawn(gw.shutdown());
    assert!(until_closed(&mut s).await.is_empty());
    // At once, not at the end of shutdown_grace (2 s): nothing is in flight.
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the shutdown finished")
        .unwrap();
}

#[tokio::test]
async fn a_response_still_being_sent_to_a_slow_reader_is_not_cut() {
    let h = Harness::start().await;
    let gw = gateway(&h).await;
    // A small receive window, so most of the 8 MiB waits in the gateway.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap();
    s.write_all(get("/public/big").as_bytes()).await.unwrap();
    let mut got = vec![0u8; 64 * 1024];
    s.read_exact(&mut got).await.unwrap();
    let mut buf = Vec::new();
    buf.extend_from_slice(&got);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = s.read_buf(&mut buf).await.unwrap();
        assert!(n > 0);
    };
    let want = end + (8 << 20);
    // From 2 MiB on, a pause longer than the park delay after every 512 KiB read: the
    // body ends (hyper has taken all of it from upstream, the rest waits in the socket's
    // send buffer and in hyper's) during one of them.
    let mut next_pause = 2 << 20;
    while buf.len() < want {
        if buf.len() >= next_pause {
            next_pause += 512 << 10;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut sip = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut sip))
            .await
            .expect("the rest of the response in time")
            .unwrap();
        assert!(n > 0, "closed after {} of {want} bytes", buf.len());
        buf.extend_from_slice(&sip[..n]);
    }
    assert_eq!(buf.len(), want);
    assert!(buf[end..].iter().all(|&b| b == b'x'));
    // (The pauses add up to more than the idle limit, which hyper counts from the end of
    // the response it wrote into its buffer, so the connection may be closed now.)
}
