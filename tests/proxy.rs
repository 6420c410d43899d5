//! Proxy mechanics: upstream failures, timeouts, limits, streaming, WebSocket, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    let h = Harness::start().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let toml = support::config_toml(
        &h.idp.issuer(),
        &format!("http://{closed}"),
        support::TUTORIAL_RULES,
    );
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    let r = support::get(gw.addr, "/api/public", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");

    // The echo upstream's /slow takes 5 s; upstream.timeout is 2 s.
    let r = h.get("/slow", &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "gateway_timeout");
    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("portcullis_upstream_errors_total{kind=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn oversized_headers_get_431_and_never_reach_the_upstream() {
    let h = Harness::start().await;
    let big = "x".repeat(64 * 1024);
    let r = h.get("/api/public", &[("X-Big", &big)]).await;
    assert_eq!(r.status, 431);
    assert_eq!(h.upstream.count(), 0);
}

/// A second gateway beside the harness's, with `header_read_timeout = "300ms"`.
async fn with_short_header_timeout(h: &Harness) -> portcullis::server::Running {
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\nheader_read_timeout = \"300ms\"",
        );
    portcullis::server::start(support::load(&toml))
        .await
        .expect("starts")
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let toml_extra = format!("{}\n", support::TUTORIAL_RULES);
    let h = Harness::with(&toml_extra).await;
    let gw = with_short_header_timeout(&h).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /api/public HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the head: the server must answer or close by itself.
    let mut buf = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(done.is_ok(), "the connection was kept open");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let h = Harness::start().await;
    let body = "a".repeat(300_000);
    let req = format!(
        "POST /api/public HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = support::raw(h.addr(), req.as_bytes()).await;
    let seen = r.seen();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body.len(), body.len());
    // Chunked request bodies too.
    let req = "POST /api/public HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = support::raw(h.addr(), req.as_bytes()).await;
    assert_eq!(r.seen().body, "hello world");
}

#[tokio::test]
async fn websocket_upgrades_are_proxied_after_the_decision() {
    let h = Harness::start().await;
    let upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    // Without a credential: refused, upstream never sees it.
    let r = support::raw(
        h.addr(),
        format!("{upgrade}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(h.upstream.count(), 0);

    // With a token: 101, then bytes flow both ways.
    let t = h.token("svc", "");
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    s.write_all(format!("{upgrade}Authorization: Bearer {t}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "connection closed during the handshake"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping-through-the-gateway").await.unwrap();
    let mut echo = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping-through-the-gateway");
    let seen = h.last_seen();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("x-auth-subject"), Some("svc"));
}

#[tokio::test]
async fn auth_prefix_is_never_forwarded() {
    let h = Harness::start().await;
    for p in ["/oauth2/anything", "/oauth2/", "/oauth2"] {
        assert_eq!(h.get(p, &[]).await.status, 404, "{p}");
    }
    let r = h.get("/oauth2/userinfo", &[]).await;
    assert_eq!(r.status, 401);
    let t = h.token("svc", "a b");
    let r = h.get_bearer("/oauth2/userinfo", &t).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["sub"], "svc");
    assert_eq!(v["scopes"], serde_json::json!(["a", "b"]));
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn metrics_count_requests_by_decision_and_status() {
    let h = Harness::start().await;
    h.get("/api/public", &[]).await;
    h.get("/api/private", &[]).await;
    h.get("/api/private", &[]).await;
    let m = support::get(h.gw.admin_addr, "/metrics", &[]).await;
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("portcullis_requests_total{decision=\"public\",status=\"200\"} 1"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("portcullis_requests_total{decision=\"unauthenticated\",status=\"401\"} 2"),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("portcullis_request_duration_seconds_bucket"));
    assert!(m
        .body
        .contains("portcullis_jwks_fetches_total{result=\"ok\"}"));
    // The admin endpoints are not on the main listener.
    assert_eq!(h.get("/metrics", &[]).await.status, 401);
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let h = Harness::start().await;
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace("timeout = \"2s\"", "timeout = \"10s\"")
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"8s\"");
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    let addr = gw.addr;
    let inflight = tokio::spawn(async move { support::get(addr, "/slow", &[]).await });
    // Wait until the upstream has the request, then shut down.
    while h.upstream.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(gw.shutdown());
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request completed");
    stopping.await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn forward_auth_decides_for_the_asking_proxy() {
    // Untrusted caller: 403 whatever it asks.
    let h = Harness::start().await;
    let r = h
        .get("/oauth2/auth", &[("X-Forwarded-Uri", "/api/public")])
        .await;
    assert_eq!(r.status, 403);

    let h = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
        )
    })
    .await;
    let t = h.token("svc", "test_api_access");
    let auth = format!("Bearer {t}");
    let r = h
        .get(
            "/oauth2/auth",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/api/private-scoped/x?y=1"),
                ("Authorization", &auth),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-subject"), Some("svc"));
    assert_eq!(r.header("x-auth-scopes"), Some("test_api_access"));
    // nginx spelling, no credential.
    let r = h
        .get(
            "/oauth2/auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/api/private"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
    // Path tricks are judged after normalization, or refused.
    let r = h
        .get("/oauth2/auth", &[("X-Forwarded-Uri", "/api/../../admin/x")])
        .await;
    assert_eq!(r.status, 400);
    let r = h
        .get("/oauth2/auth", &[("X-Forwarded-Uri", "/public/../admin/x")])
        .await;
    assert_eq!(r.status, 401);
    let r = h
        .get("/oauth2/auth", &[("X-Forwarded-Uri", "/api/public")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.upstream.count(), 0, "forward-auth never forwards");
}

#[tokio::test]
async fn http2_to_the_upstream_when_configured() {
    let h = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.replace("[upstream]\n", "[upstream]\nhttp2 = true\n")
    })
    .await;
    let t = h.token("svc", "");
    let seen = h.get_bearer("/api/private?q=1", &t).await.seen();
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.target, "/api/private?q=1");
    assert_eq!(seen.header("x-auth-subject"), Some("svc"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(h.addr().to_string().as_str())
    );
    // The default stays HTTP/1.1.
    let h1 = Harness::start().await;
    assert_eq!(h1.get("/api/public", &[]).await.seen().version, "HTTP/1.1");
}

/// Clients may speak HTTP/2 with prior knowledge (h2c) to the plain listener; the
/// protocol is told by the connection preface, and HTTP/1.1 requests that happen to start
/// like it (`PRI`, `POST`, `PUT`) stay HTTP/1.1.
#[tokio::test]
async fn h2c_prior_knowledge_and_http1_share_the_plain_listener() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let h = Harness::start().await;
    let token = h.token("svc", "test_api_access");
    let stream = TcpStream::connect(h.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/api/private-scoped/a", "/api/private-scoped/b"] {
        let req = hyper::Request::get(format!("http://{}{path}", h.addr()))
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let seen: portcullis::testing::Seen = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen.target, path);
        assert_eq!(seen.header("x-auth-subject"), Some("svc"));
    }
    // A denial over h2c is still a denial, and never reaches the upstream.
    let before = h.upstream.count();
    let req = hyper::Request::get(format!("http://{}/admin/x", h.addr()))
        .header("accept", "application/json")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 401);
    assert_eq!(h.upstream.count(), before);

    let r = support::raw(
        h.addr(),
        format!(
            "POST /api/public HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            h.addr()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().body, "hi");
    // Not quite the preface: answered as HTTP/1.1 (and refused as a bad request).
    let r = support::raw(
        h.addr(),
        b"PRI * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.status == 400 || r.status == 403,
        "{} {}",
        r.status,
        r.body
    );
}

/// `server.header_read_timeout` also bounds how long a keep-alive connection may wait for
/// its next request (documented: behind a load balancer, set it above the balancer's idle
/// timeout), and a connection that never says anything is closed after it too.
#[tokio::test]
async fn idle_connections_are_closed_after_the_header_read_timeout() {
    let h = Harness::start().await;
    let gw = with_short_header_timeout(&h).await;

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /api/public HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(done.is_ok(), "the idle keep-alive connection was kept open");
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "the request was answered first"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );

    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(done.is_ok(), "a silent connection was kept open");
}
