//! The keep-alive connections to the upstream: reused, no more of them than requests were
//! in flight on each worker, and never reused once the upstream has closed them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A plain HTTP/1.1 upstream that counts the connections it accepts. Every answer is
/// `200 ok` after `delay`; with `one_per_connection` it closes the connection after its
/// first answer without saying so (no `Connection: close`), as a server whose keep-alive
/// timeout just ran out does.
struct CountingUpstream {
    url: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingUpstream {
    async fn start(delay: Duration, one_per_connection: bool) -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(s, delay, one_per_connection));
            }
        });
        CountingUpstream {
            url,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers each request head (the gateway sends these GETs without a body).
async fn answer(mut s: TcpStream, delay: Duration, one_per_connection: bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        tokio::time::sleep(delay).await;
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if s.write_all(reply).await.is_err() {
            return;
        }
        if one_per_connection {
            let _ = s.shutdown().await;
            return;
        }
    }
}

fn config(h: &Harness, upstream: &str, runtime: &str) -> String {
    support::config_toml(&h.idp.issuer(), upstream, support::TUTORIAL_RULES).replacen(
        "[server]\n",
        &format!("[server]\n{runtime}\n"),
        1,
    )
}

#[tokio::test]
async fn sequential_requests_use_one_upstream_connection() {
    let h = Harness::start().await;
    let up = CountingUpstream::start(Duration::ZERO, false).await;
    let gw = support::serve(&config(&h, &up.url, "runtime = \"shared\"")).await;
    for _ in 0..10 {
        // A new client connection each time (`Connection: close`): the upstream one stays.
        let r = support::get(gw.addr, "/api/public", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn per_core_workers_keep_no_more_connections_than_requests_in_flight() {
    let h = Harness::start().await;
    let up = CountingUpstream::start(Duration::from_millis(40), false).await;
    let gw = support::serve(&config(&h, &up.url, "runtime = \"per-core\"\nworkers = 2")).await;
    // Rounds of six concurrent requests, each on a new client connection: the kernel
    // spreads each round over the two workers differently, and each worker needs at most
    // six connections of its own. Connections are reused, so fifteen rounds (90 requests)
    // open no more than that.
    for _ in 0..15 {
        let round: Vec<_> = (0..6)
            .map(|_| tokio::spawn(support::get(gw.addr, "/api/public", &[])))
            .collect();
        for r in round {
            let r = r.await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    let opened = up.accepted();
    assert!(
        (6..=12).contains(&opened),
        "{opened} upstream connections for six requests at a time"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    let h = Harness::start().await;
    let up = CountingUpstream::start(Duration::ZERO, true).await;
    for runtime in [
        "runtime = \"shared\"",
        "runtime = \"per-core\"\nworkers = 2",
    ] {
        let before = up.accepted();
        let gw = support::serve(&config(&h, &up.url, runtime)).await;
        for i in 0..20 {
            let r = support::get(gw.addr, "/api/public", &[]).await;
            assert_eq!(r.status, 200, "request {i} ({runtime}): {}", r.body);
        }
        assert_eq!(up.accepted() - before, 20, "{runtime}");
    }
}
