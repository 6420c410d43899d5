//! Request smuggling: framing the gateway and the upstream could read differently.
//! Client sends an ambiguous frame carrying a second, forbidden request / upstream must
//! never see the smuggled request / client gets a 400 or one well-framed answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The smuggled request: it needs the admin role, which nobody here has.
const SMUGGLED: &str = "GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n";

async fn exchange(h: &Harness, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn ambiguous_framing_never_smuggles_a_request_to_the_upstream() {
    let h = Harness::start().await;
    let n = SMUGGLED.len();
    let cases = [
        // CL.TE and TE.CL.
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}", 5 + n),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", n),
        // Obfuscated Transfer-Encoding.
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}", 5 + n),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}", 5 + n),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}", 5 + n),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        // Two different Content-Lengths, a signed one, a list.
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {n}\r\n\r\n{SMUGGLED}"),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: +{n}\r\n\r\n{SMUGGLED}"),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nContent-Length: 0, {n}\r\n\r\n{SMUGGLED}"),
        // Bare LF and header folding.
        format!("POST /api/public HTTP/1.1\nHost: x\nContent-Length: 0\n Transfer-Encoding: chunked\n\n{SMUGGLED}"),
        // A chunk-size with an extension or bad hex.
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0;ext=\"\r\n\r\n\"\r\n\r\n{SMUGGLED}"),
        format!("POST /api/public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n{SMUGGLED}"),
    ];
    for case in &cases {
        let answer = exchange(&h, case.as_bytes()).await;
        for seen in h.upstream.seen() {
            assert_ne!(
                seen.target, "/admin/secret",
                "smuggled through {case:?}; answer {answer:?}"
            );
        }
        // The smuggled request, if the gateway read it as one, was judged: never a 200.
        assert!(
            answer.matches("HTTP/1.1 200").count() <= 1,
            "{case:?} gave two answers: {answer:?}"
        );
    }
}
