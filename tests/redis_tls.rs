//! `rediss://`: the session store over TLS to a real `redis-server` (its TLS port, with a
//! certificate from a test CA made by `openssl`), verified against the trust store. The
//! gateway runs as its own process so that `SSL_CERT_FILE` (read by the system trust
//! store loader) names the test CA for it alone: with it, sessions work through Redis;
//! without it, the server's certificate is refused and the store never becomes healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::testing::{EchoUpstream, TestIdp};
use support::{Browser, TUTORIAL_RULES};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (apt-get install openssl)")
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A CA, and a certificate for 127.0.0.1 that it signed.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=portcullis test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

fn redis_tls(dir: &Path, port: u16) -> Killed {
    let bin = std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "/usr/bin/redis-server".into());
    let child = Command::new(bin)
        .current_dir(dir)
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "redis.crt",
            "--tls-key-file",
            "redis.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    Killed(child)
}

/// The gateway binary on a configuration with the Redis store at `rediss://`.
fn gateway(dir: &Path, toml: &str, trust: Option<&Path>) -> Killed {
    let cfg = dir.join(format!("gateway-{}.toml", trust.is_some()));
    std::fs::write(&cfg, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("serve")
        .arg("-c")
        .arg(&cfg)
        .env_remove("PORTCULLIS_CONFIG");
    match trust {
        Some(ca) => cmd.env("SSL_CERT_FILE", ca),
        None => cmd.env_remove("SSL_CERT_FILE"),
    };
    Killed(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway starts"),
    )
}

fn config(port: u16, admin: u16, idp: &TestIdp, upstream: &EchoUpstream, redis: u16) -> String {
    support::config_toml_on(
        &format!("127.0.0.1:{port}"),
        &format!("http://127.0.0.1:{port}"),
        &idp.issuer(),
        &upstream.url(),
        TUTORIAL_RULES,
    )
    .replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"127.0.0.1:{admin}\""),
    )
    .replacen(
        "[session]\n",
        &format!("[session]\nstore = \"redis\"\nredis_url = \"rediss://127.0.0.1:{redis}/0\"\n"),
        1,
    )
}

/// Waits until the gateway process accepts on its admin port.
async fn listening(admin: u16) -> std::net::SocketAddr {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the gateway never listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    addr
}

/// A counter of the gateway's metrics (0 while absent).
async fn metric(admin: u16, series: &str) -> f64 {
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();
    support::get(addr, "/metrics", &[])
        .await
        .body
        .lines()
        .find(|l| l.split(' ').next() == Some(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn sessions_go_over_tls_to_a_verified_redis_and_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let redis_port = support::free_port();
    let _redis = redis_tls(dir.path(), redis_port);
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;

    // Trusting the test CA: ready once Redis answers over TLS, and sessions work.
    let (port, admin) = (support::free_port(), support::free_port());
    let toml = config(port, admin, &idp, &upstream, redis_port);
    let _trusted = gateway(dir.path(), &toml, Some(&dir.path().join("ca.crt")));
    let admin_addr = listening(admin).await;
    support::wait_ready(admin_addr, Duration::from_secs(20)).await;
    idp.login_as("alice");
    let mut alice = Browser::new(format!("127.0.0.1:{port}").parse().unwrap());
    let r = alice.navigate("/profile").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    assert!(metric(admin, "portcullis_session_store_seconds_count{op=\"put\"}").await >= 1.0);

    // Without the test CA in its trust store the gateway refuses the server's certificate.
    let (port2, admin2) = (support::free_port(), support::free_port());
    let toml2 = config(port2, admin2, &idp, &upstream, redis_port);
    let _untrusted = gateway(dir.path(), &toml2, None);
    let addr2 = listening(admin2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(admin2, "portcullis_session_store_errors_total{op=\"ping\"}").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no failed TLS handshake was counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(support::get(addr2, "/readyz", &[]).await.status, 503);
}
