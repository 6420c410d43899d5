//! Slow and idle clients, over HTTP/2 as over HTTP/1.1, and the connection limit.
//! `header_read_timeout` is 300 ms in these gateways.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn gateway(h: &Harness, extra_server: &str) -> portcullis::server::Running {
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            &format!("shutdown_grace = \"2s\"\nheader_read_timeout = \"300ms\"\n{extra_server}"),
        );
    portcullis::server::start(support::load(&toml))
        .await
        .expect("starts")
}

/// Reads until the server closes; fails if it keeps the connection longer than `within`.
async fn closed_within(s: &mut TcpStream, within: Duration, what: &str) {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(within, async {
        loop {
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "{what}: the connection was kept open");
}

#[tokio::test]
async fn an_http2_connection_that_dribbles_a_headers_frame_is_cut_off() {
    let h = Harness::start().await;
    let gw = gateway(&h, "").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    // HEADERS on stream 1 announcing 64 bytes, of which only 3 ever come, one at a time.
    s.write_all(&[0, 0, 64, 1, 4, 0, 0, 0, 1]).await.unwrap();
    for b in [0x82u8, 0x86, 0x84] {
        let _ = s.write_all(&[b]).await;
    }
    closed_within(&mut s, Duration::from_secs(5), "dribbled HEADERS").await;
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn a_silent_or_idle_http2_connection_is_closed() {
    let h = Harness::start().await;
    let gw = gateway(&h, "").await;
    // The preface and nothing more.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    closed_within(&mut s, Duration::from_secs(5), "silent h2").await;

    // A request, answered; then idle: the server ends the connection (GOAWAY, close).
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://{}/api/public", gw.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle h2 connection was kept open");
}

#[tokio::test]
async fn a_stream_in_progress_keeps_its_http2_connection() {
    let h = Harness::start().await;
    let gw = gateway(&h, "").await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // /slow outlasts header_read_timeout many times over (the upstream timeout, 2 s, ends
    // it with a 504): the connection must stay for the answer.
    let req = hyper::Request::get(format!("http://{}/slow", gw.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 504);
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_slot() {
    let h = Harness::start().await;
    // A longer head timeout here, so the held connections stay until dropped.
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\nmax_connections = 2",
        );
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    let a = TcpStream::connect(gw.addr).await.unwrap();
    let b = TcpStream::connect(gw.addr).await.unwrap();
    // The third connects (the kernel queues it) but is not served while two are open.
    let third = tokio::spawn(support::get(gw.addr, "/api/public", &[]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = support::get(gw.admin_addr, "/metrics", &[]).await.body;
        let open = m
            .lines()
            .find(|l| l.starts_with("portcullis_connections_open "));
        let at_limit = m
            .lines()
            .find(|l| l.starts_with("portcullis_connections_at_limit_total "));
        if open == Some("portcullis_connections_open 2")
            && at_limit.is_some_and(|l| !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "limit never reached:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !third.is_finished(),
        "a third connection was served past the limit"
    );
    drop(a);
    let r = tokio::time::timeout(Duration::from_secs(10), third).await;
    assert_eq!(r.expect("served once a slot was free").unwrap().status, 200);
    drop(b);
}

#[test]
fn max_connections_must_be_positive() {
    use figment::providers::{Format, Toml};
    let toml = support::config_toml("http://127.0.0.1:1/realms/x", "http://127.0.0.1:2", "")
        .replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\nmax_connections = 0",
        );
    let err = portcullis::config::load_figment(figment::Figment::from(Toml::string(&toml)))
        .expect_err("0 is refused")
        .to_string();
    assert!(
        err.contains("server.max_connections: must be at least 1"),
        "{err}"
    );
}
