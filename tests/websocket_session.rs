//! WebSockets bound to their session (contract §9): a WebSocket opened on a browser session
//! is closed with a close frame within `session.websocket_check` once the session ends:
//! logged out, ended by the provider, expired, or logged out on another replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis::server;
use portcullis::testing::{EchoUpstream, TestIdp};
use support::redis::Redis;
use support::{Browser, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHECK: &str = "[session]\nwebsocket_check = \"1s\"\n";

/// The close frame the gateway sends: 1008 "session ended".
const CLOSE: &[u8] = b"\x88\x0f\x03\xf0session ended";

fn cookie_of(b: &Browser) -> String {
    b.jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Opens `/ws` on `gw` with the session cookie, from the gateway's own origin.
async fn open(gw: SocketAddr, origin: &str, cookie: &str) -> TcpStream {
    let mut s = TcpStream::connect(gw).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {gw}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\nCookie: {cookie}\r\n\r\n"
    );
    let head = handshake(&mut s, &req).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Sends an upgrade request and reads the response head.
async fn handshake(s: &mut TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).await.unwrap();
    support::read_head(s).await
}

/// Reads until the gateway closes the connection; what came, and when.
async fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("the websocket was still open after {within:?}: {got:?}"))
        .unwrap();
    (got, t0.elapsed())
}

#[tokio::test]
async fn a_logout_closes_the_websocket_of_the_session_with_a_close_frame() {
    let h = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replacen("[session]\n", CHECK, 1)
    })
    .await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    b.navigate("/profile").await.seen();
    let mut ws = open(h.addr(), &h.public(), &cookie_of(&b)).await;
    support::round_trip(&mut ws, "hello").await;
    // Checks that find the session standing leave the socket alone.
    let checked = Instant::now();
    while checked.elapsed() < Duration::from_millis(2200) {
        support::round_trip(&mut ws, "still here").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = b.navigate("/oauth2/logout").await;
    assert_ne!(r.status, 0);
    let (got, took) = until_closed(&mut ws, Duration::from_secs(4)).await;
    assert!(got.ends_with(CLOSE), "a close frame, then the end: {got:?}");
    assert!(
        took <= Duration::from_secs(3),
        "within the check interval: {took:?}"
    );
    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("portcullis_websockets_closed_by_session_end_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_session_that_expires_closes_its_websocket() {
    let h = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replacen(
            "[session]\n",
            "[session]\nwebsocket_check = \"1s\"\nlifetime = \"3s\"\n",
            1,
        )
    })
    .await;
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    b.navigate("/profile").await.seen();
    let mut ws = open(h.addr(), &h.public(), &cookie_of(&b)).await;
    support::round_trip(&mut ws, "hello").await;
    let (got, _) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert!(got.ends_with(CLOSE), "{got:?}");
}

#[tokio::test]
async fn a_bearer_websocket_is_not_bound_to_any_session() {
    let h = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replacen("[session]\n", "[session]\nwebsocket_check = \"1s\"\n", 1)
    })
    .await;
    let t = h.token("svc", "");
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    let req = format!("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {t}\r\n\r\n");
    handshake(&mut s, &req).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        support::round_trip(&mut s, "ping").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

async fn replica(idp: &TestIdp, upstream: &EchoUpstream, redis: &Redis) -> server::Running {
    let port = support::free_port();
    let toml = redis
        .store_in(&support::config_toml_on(
            &format!("127.0.0.1:{port}"),
            &format!("http://127.0.0.1:{port}"),
            &idp.issuer(),
            &upstream.url(),
            support::TUTORIAL_RULES,
        ))
        .replacen("[session]\n", "[session]\nwebsocket_check = \"1s\"\n", 1);
    let gw = server::start(support::load(&toml)).await.expect("starts");
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    gw
}

#[tokio::test]
async fn a_logout_on_one_replica_closes_the_websocket_on_another() {
    let redis = Redis::start();
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let a = replica(&idp, &upstream, &redis).await;
    let b = replica(&idp, &upstream, &redis).await;
    idp.login_as("alice");
    let mut browser = Browser::new(a.addr);
    browser.navigate("/profile").await.seen();
    let cookie = cookie_of(&browser);
    let mut ws = open(b.addr, &format!("http://{}", b.addr), &cookie).await;
    support::round_trip(&mut ws, "through b").await;
    browser.navigate("/oauth2/logout").await;
    let (got, took) = until_closed(&mut ws, Duration::from_secs(4)).await;
    assert!(got.ends_with(CLOSE), "{got:?}");
    assert!(took <= Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn the_framed_echo_answers_as_a_browser_expects() {
    // The upstream of the browser suite: RFC 6455's handshake example, unmasked echoes.
    let up = EchoUpstream::start().await;
    let mut s = TcpStream::connect(up.addr).await.unwrap();
    let head = handshake(&mut s, "GET /ws-echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    s.write_all(&support::text_frame("hi")).await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"\x81\x02hi");
}
