//! Host and authority validation (RFC 9112 §3.2, RFC 9110 §7.2 and §4.2.3, RFC 9113
//! §8.3.1): client sends an ambiguous or malformed authority / upstream must not be
//! called / client gets 400.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Harness;

async fn refused(h: &Harness, request: &str) {
    let before = h.upstream.count();
    let r = support::raw(h.addr(), request.as_bytes()).await;
    assert_eq!(r.status, 400, "{request:?}: {}", r.body);
    assert_eq!(
        h.upstream.count(),
        before,
        "{request:?} reached the upstream"
    );
    assert!(
        !r.body.contains("evil"),
        "the bad host is not echoed: {}",
        r.body
    );
}

#[tokio::test]
async fn ambiguous_or_malformed_authorities_are_400() {
    let h = Harness::start().await;
    let a = h.addr();
    for host in [
        format!("user@{a}"),
        format!("user:pass@{a}"),
        format!("{a}@evil.example"),
        "@evil.example".to_owned(),
        format!("{a}:80"),
        format!("{a}/x"),
        format!("{a}?x"),
        format!("{a}#x"),
        format!("{a},evil.example"),
        "evil.example:http".to_owned(),
        "evil.example:99999".to_owned(),
        "[::1".to_owned(),
        "[evil.example]".to_owned(),
        "evil%2eexample".to_owned(),
        "evil\\example".to_owned(),
        String::new(),
    ] {
        for path in ["/api/public", "/api/private"] {
            refused(
                &h,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            )
            .await;
        }
    }
    // No Host on HTTP/1.1; two Host headers, alike or not.
    refused(&h, "GET /api/public HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    refused(
        &h,
        &format!("GET /api/public HTTP/1.1\r\nHost: {a}\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    refused(
        &h,
        &format!("GET /api/public HTTP/1.1\r\nHost: {a}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
    )
    .await;
    // An absolute-form target whose authority disagrees with Host, or carries userinfo.
    for (target, host) in [
        ("http://evil.example/api/public".to_owned(), a.to_string()),
        (format!("http://{a}/api/public"), "evil.example".to_owned()),
        (format!("http://user@{a}/api/public"), a.to_string()),
        (
            format!("https://{}/api/public", a.ip()),
            format!("{}:80", a.ip()),
        ),
    ] {
        refused(
            &h,
            &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
    }
}

#[tokio::test]
async fn agreeing_authorities_are_forwarded_with_that_host() {
    let h = Harness::start().await;
    let a = h.addr();
    // Absolute form that agrees with Host (in another case): forwarded, Host is the target's.
    let r = support::raw(
        a,
        format!(
            "GET http://{a}/api/public HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            a.to_string().to_uppercase()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().header_all("x-forwarded-host"), [a.to_string()]);
    // HTTP/1.0 may omit Host.
    let r = support::raw(a, b"GET /api/public HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.seen().header("x-forwarded-host").is_none());
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let h = Harness::start().await;
    let stream = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let before = h.upstream.count();
    for (host, want) in [
        ("evil.example".to_owned(), 400),
        (format!("user@{}", h.addr()), 400),
        (h.addr().to_string(), 200),
    ] {
        let req = hyper::Request::get(format!("http://{}/api/public", h.addr()))
            .header("host", host.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), want, "{host}");
    }
    assert_eq!(h.upstream.count(), before + 1);
}
