//! Hot reload: a changed rule takes effect while requests keep flowing (none fails), and a
//! broken configuration keeps the old one serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::EnvOverrides;
use portcullis::server::reload;
use portcullis::testing::{EchoUpstream, TestIdp};

const OPEN: &str = "[[rule]]\npath = \"/api/**\"\naccess = \"public\"\n";
const CLOSED: &str = "[[rule]]\npath = \"/api/**\"\nlogin = \"deny\"\n";

/// Replaces the file the way editors do: write a new file, rename it over the old one.
fn replace(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_changed_rule_applies_without_dropping_requests() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let base = |rules: &str| support::config_toml(&idp.issuer(), &upstream.url(), rules);
    std::fs::write(&path, base(OPEN)).unwrap();
    let env = EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&path, &env).unwrap())
        .await
        .unwrap();
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    tokio::spawn(reload::watch(
        gw.gateway.clone(),
        path.clone(),
        env.clone(),
        Duration::from_millis(50),
        gw.shutdown_handle().subscribe(),
    ));

    // Load: clients send requests back to back until told to stop, counting statuses.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, denied, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, denied, other) = (stop.clone(), ok.clone(), denied.clone(), other.clone());
        let addr = gw.addr;
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match support::get(addr, "/api/x", &[]).await.status {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    401 => denied.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    while ok.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replace(&path, &base(CLOSED));
    let deadline = Instant::now() + Duration::from_secs(10);
    while denied.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "the new rule never took effect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        other.load(Ordering::Relaxed),
        0,
        "a request failed during the reload"
    );
    let m = support::get(gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        m.contains("portcullis_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );

    // A broken file is refused: the closed rule keeps serving.
    replace(
        &path,
        &format!("{}\n[server]\nnonsense = 1\n", base(CLOSED)),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = support::get(gw.admin_addr, "/metrics", &[]).await.body;
        if m.contains("portcullis_config_reloads_total{result=\"error\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(support::get(gw.addr, "/api/x", &[]).await.status, 401);
}

#[tokio::test]
async fn reload_refuses_a_new_issuer_and_reports_restart_only_settings() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let toml = support::config_toml(&idp.issuer(), &upstream.url(), OPEN);
    std::fs::write(&path, &toml).unwrap();
    let env = EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&path, &env).unwrap())
        .await
        .unwrap();

    std::fs::write(
        &path,
        toml.replace(&idp.issuer(), "http://127.0.0.1:1/realms/other"),
    )
    .unwrap();
    let err = reload::reload(&gw.gateway, &path, &env).expect_err("refused");
    assert_eq!(err.0[0].key, "oidc.issuer");

    std::fs::write(
        &path,
        toml.replace("shutdown_grace = \"2s\"", "shutdown_grace = \"9s\"")
            .replace(OPEN, CLOSED),
    )
    .unwrap();
    let restart = reload::reload(&gw.gateway, &path, &env).expect("applied");
    assert_eq!(restart, ["server.shutdown_grace"]);
    assert_eq!(
        support::get(gw.addr, "/api/x", &[]).await.status,
        401,
        "the rest was applied"
    );
}

/// Keep-alive clients, one connection each, keep sending while a reload moves their rule
/// to another upstream: no request fails, no connection is closed, and the requests after
/// the reload reach the new upstream.
#[tokio::test]
async fn a_reload_moves_a_rule_to_another_upstream_under_keep_alive_load() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;

    let idp = TestIdp::start().await;
    let (a, b) = (EchoUpstream::start().await, EchoUpstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let config = |to: &str| {
        support::config_toml(
            &idp.issuer(),
            &a.url(),
            &format!(
                "[upstreams.a]\nurl = \"{}\"\n[upstreams.b]\nurl = \"{}\"\n[[rule]]\npath = \"/api/**\"\naccess = \"public\"\nupstream = \"{to}\"\n[[rule]]\npath = \"/other/**\"\nupstream = \"{}\"\n",
                a.url(),
                b.url(),
                if to == "a" { "b" } else { "a" },
            ),
        )
    };
    std::fs::write(&path, config("a")).unwrap();
    let env = EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&path, &env).unwrap())
        .await
        .unwrap();
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let (stop, failed) = (stop.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::get("/api/x")
                    .header("host", "gateway")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                match send.send_request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        resp.into_body().collect().await.unwrap();
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                sent += 1;
            }
            drop(send);
            // The connection ends only because this client let go of it.
            conn.await.unwrap().unwrap();
            sent
        }));
    }
    while a.count() < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::write(&path, config("b")).unwrap();
    reload::reload(&gw.gateway, &path, &env).expect("the new configuration loads");
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.count() < 50 {
        assert!(
            Instant::now() < deadline,
            "the new upstream never got a request"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a_after = a.count();
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a request failed");
    assert_eq!(
        sent,
        a.count() + b.count(),
        "every request was answered once"
    );
    // Requests already on their way to `a` when the swap happened may still finish there,
    // but nothing new goes to it.
    assert!(a.count() <= a_after + 4, "{} then {}", a_after, a.count());
}
