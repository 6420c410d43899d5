//! TLS termination with rustls, HTTP/1.1 and HTTP/2 (ALPN) on the main listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::Harness;

fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[tokio::test]
async fn tls_with_http1_and_http2() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            &format!(
            "shutdown_grace = \"2s\"\n[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n"
        ),
        );
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    support::wait_ready(gw.admin_addr, std::time::Duration::from_secs(20)).await;

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let token = h.token("svc", "test_api_access");
    for alpn in [b"h2".to_vec(), b"http/1.1".to_vec()] {
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.clone()];
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let req = http::Request::get(format!(
            "https://localhost:{}/api/private-scoped/x",
            gw.addr.port()
        ))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
        let resp = if alpn == b"h2" {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let (mut parts, body) = req.into_parts();
            parts.uri = "/api/private-scoped/x".parse().unwrap();
            parts.headers.insert("host", "localhost".parse().unwrap());
            send.send_request(http::Request::from_parts(parts, body))
                .await
                .unwrap()
        };
        assert_eq!(
            resp.status(),
            200,
            "alpn {:?}",
            String::from_utf8_lossy(&alpn)
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let seen: portcullis::testing::Seen = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen.target, "/api/private-scoped/x");
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert_eq!(seen.header("x-auth-subject"), Some("svc"));
    }
}

#[test]
fn bad_tls_files_are_configuration_errors() {
    let toml = support::config_toml(
        "http://127.0.0.1:1/realms/x",
        "http://127.0.0.1:2",
        support::TUTORIAL_RULES,
    )
    .replace(
        "shutdown_grace = \"2s\"",
        "shutdown_grace = \"2s\"\n[server.tls]\ncert_file = \"/nonexistent.crt\"\n",
    );
    use figment::providers::Format;
    let err = portcullis::config::load_figment(figment::Figment::from(
        figment::providers::Toml::string(&toml),
    ))
    .expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("server.tls.key_file: missing"), "{text}");
}
