//! Two replicas behind a real nginx doing round robin (`deploy/compose/nginx.conf`, only
//! its addresses changed), sharing their sessions in a real Redis: a login whose steps
//! land on different replicas works, every request is served whichever replica gets it,
//! a logout through one ends the session on both, and when one replica goes away the
//! other serves its sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use portcullis::server::Running;
use portcullis::testing::{EchoUpstream, TestIdp};
use support::nginx::{replace_once, Nginx};
use support::redis::Redis;
use support::{Browser, TUTORIAL_RULES};

const EXAMPLE: &str = "deploy/compose/nginx.conf";

/// What goes inside `http { }` of the compose example, pointed at this test's replicas.
fn balancer_conf(port: u16, a: &Running, b: &Running) -> String {
    let example =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE))
            .unwrap();
    let start = example.find("http {").expect("an http block") + "http {".len();
    let end = example.rfind('}').expect("its end");
    let http = &example[start..end];
    let http = replace_once(http, "listen 8080;", &format!("listen 127.0.0.1:{port};"));
    let http = replace_once(
        &http,
        "server 127.0.0.1:8081",
        &format!("server {}", a.addr),
    );
    replace_once(
        &http,
        "server 127.0.0.1:8082",
        &format!("server {}", b.addr),
    )
}

async fn replica(public: &str, idp: &TestIdp, upstream: &EchoUpstream, redis: &Redis) -> Running {
    let toml = support::config_toml_on(
        "127.0.0.1:0",
        public,
        &idp.issuer(),
        &upstream.url(),
        TUTORIAL_RULES,
    )
    .replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    );
    support::serve(&redis.store_in(&toml)).await
}

/// Requests this replica answered with 200 after a decision (its own metrics).
async fn served(gw: &Running) -> u64 {
    let m = support::get(gw.admin_addr, "/metrics", &[]).await.body;
    m.lines()
        .filter(|l| l.starts_with("portcullis_requests_total{") && l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn replicas_behind_nginx_serve_and_end_sessions_together() {
    let redis = Redis::start();
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let port = support::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let a = replica(&public, &idp, &upstream, &redis).await;
    let b = replica(&public, &idp, &upstream, &redis).await;
    let nginx = Nginx::start(port, &balancer_conf(port, &a, &b)).await;

    // The login's requests (start, callback, return) alternate between the replicas.
    idp.login_as("alice");
    let mut alice = Browser::new(nginx.addr);
    let r = alice.navigate("/profile").await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, nginx.error_log());
    let (before_a, before_b) = (served(&a).await, served(&b).await);
    for i in 0..10 {
        let r = alice.navigate(&format!("/profile?n={i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    }
    assert!(
        served(&a).await > before_a && served(&b).await > before_b,
        "round robin sent requests to both replicas"
    );

    let cookie = alice
        .jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = alice
        .request(
            "POST",
            &format!("{public}/oauth2/logout"),
            &[("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    for i in 0..6 {
        let replay = nginx
            .get(
                "/profile",
                &[("Cookie", &cookie), ("Accept", "application/json")],
            )
            .await;
        assert_eq!(replay.status, 401, "replay {i} after logout");
    }

    // A new session survives the loss of one replica: nginx passes to the other.
    let mut bob = Browser::new(nginx.addr);
    idp.login_as("bob");
    assert_eq!(bob.navigate("/profile").await.status, 200);
    a.shutdown().await;
    for i in 0..4 {
        let r = bob.navigate(&format!("/profile?after={i}")).await;
        assert_eq!(
            r.status, 200,
            "with one replica gone, request {i}: {}",
            r.body
        );
        assert_eq!(r.seen().header("x-auth-user"), Some("bob"));
    }
}
