//! `server.runtime = "per-core"`: several worker threads, each with its own runtime
//! accepting from the listening socket, behave as one gateway: one port (that a second
//! gateway cannot share), one connection limit, one drain, one configuration that reloads
//! for all of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::Harness;
use tokio::net::TcpStream;

/// The tutorial configuration on `workers` per-core workers, with `more` server keys.
fn per_core(h: &Harness, workers: usize, more: &str) -> String {
    support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES).replace(
        "shutdown_grace = \"2s\"",
        &format!("shutdown_grace = \"8s\"\nruntime = \"per-core\"\nworkers = {workers}\n{more}"),
    )
}

/// The value of an admin metric line (without labels).
async fn metric(admin: std::net::SocketAddr, name: &str) -> Option<String> {
    let m = support::get(admin, "/metrics", &[]).await.body;
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

#[tokio::test]
async fn max_connections_is_one_limit_across_workers() {
    let h = Harness::start().await;
    let toml = per_core(&h, 4, "max_connections = 2\nheader_read_timeout = \"30s\"");
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .unwrap();
    let a = TcpStream::connect(gw.addr).await.unwrap();
    let b = TcpStream::connect(gw.addr).await.unwrap();
    // Four listeners, but one limit: further connections wait whichever worker the kernel
    // gives them to.
    let waiting: Vec<_> = (0..6)
        .map(|_| tokio::spawn(support::get(gw.addr, "/api/public", &[])))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = metric(gw.admin_addr, "portcullis_connections_open").await;
        let at_limit = metric(gw.admin_addr, "portcullis_connections_at_limit_total").await;
        if open.as_deref() == Some("2") && at_limit.is_some_and(|v| v != "0") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the limit was never reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "a connection was served past the limit"
    );
    assert_eq!(h.upstream.count(), 0);
    drop(a);
    drop(b);
    for w in waiting {
        let r = tokio::time::timeout(Duration::from_secs(10), w).await;
        assert_eq!(r.expect("served once slots were free").unwrap().status, 200);
    }
}

#[tokio::test]
async fn every_worker_drains_its_requests_on_shutdown() {
    let h = Harness::start().await;
    let toml = per_core(&h, 4, "").replace("timeout = \"2s\"", "timeout = \"10s\"");
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .unwrap();
    let addr = gw.addr;
    // Many connections, so every listener has some (the kernel hashes them over the four).
    let inflight: Vec<_> = (0..24)
        .map(|_| tokio::spawn(async move { support::get(addr, "/slow", &[]).await }))
        .collect();
    while h.upstream.count() < 24 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(gw.shutdown());
    for r in inflight {
        assert_eq!(
            r.await.unwrap().status,
            200,
            "an in-flight request completed"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("every worker finished")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no listener is left on the port"
    );
}

#[tokio::test]
async fn every_worker_serves_the_same_port_and_the_same_reloaded_rules() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let toml = per_core(&h, 3, "");
    std::fs::write(&path, &toml).unwrap();
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .unwrap();
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    let token = h.token("svc", "test_api_access");
    let all = |path: &'static str| {
        let token = token.clone();
        let addr = gw.addr;
        async move {
            let mut statuses = Vec::new();
            // A new connection each time: the kernel spreads them over the listeners.
            for _ in 0..30 {
                let auth = format!("Bearer {token}");
                let r = support::get(addr, path, &[("Authorization", &auth)]).await;
                statuses.push(r.status);
            }
            statuses
        }
    };
    assert!(all("/api/private").await.iter().all(|s| *s == 200));
    // A reload that gives the path a role nobody has: every worker denies it at once.
    let denied = toml.replace(
        "path = \"/api/private\"",
        "path = \"/api/private\"\nroles = [\"nobody\"]",
    );
    assert_ne!(denied, toml, "the rule was edited");
    std::fs::write(&path, &denied).unwrap();
    portcullis::server::reload::reload(&gw.gateway, &path, &Default::default()).unwrap();
    assert!(all("/api/private").await.iter().all(|s| *s == 403));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_second_gateway_cannot_take_the_same_port() {
    let h = Harness::start().await;
    let first = portcullis::server::start(support::load(&per_core(&h, 2, "")))
        .await
        .unwrap();
    let taken = per_core(&h, 2, "").replacen(
        "\nlisten = \"127.0.0.1:0\"",
        &format!("\nlisten = \"{}\"", first.addr),
        1,
    );
    assert!(taken.contains(&first.addr.to_string()));
    let err = portcullis::server::start(support::load(&taken))
        .await
        .err()
        .expect("the port is taken");
    assert!(err.contains("server.listen"), "{err}");
    first.shutdown().await;
}
