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

/// The end-entity certificate a new TLS handshake with the gateway presents (not verified:
/// the test compares it with the files).
async fn presented_cert(addr: std::net::SocketAddr) -> Vec<u8> {
    #[derive(Debug)]
    struct AcceptAny;
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn first_cert(file: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(file)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// A renewed certificate (new files written over the old ones) is served from the next
/// handshake on, without a restart.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let conf = dir.path().join("gateway.toml");
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            &format!(
            "shutdown_grace = \"2s\"\n[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n"
        ),
        );
    std::fs::write(&conf, &toml).unwrap();
    let env = portcullis::config::EnvOverrides::default();
    let gw = portcullis::server::start(portcullis::config::load(&conf, &env).unwrap())
        .await
        .expect("starts");
    tokio::spawn(portcullis::server::reload::watch(
        gw.gateway.clone(),
        conf.clone(),
        env,
        std::time::Duration::from_millis(50),
        gw.shutdown_handle().subscribe(),
    ));
    let old = first_cert(&cert);
    assert_eq!(presented_cert(gw.addr).await, old);

    // Renew: a new pair, moved over the old files (as certificate tools do).
    let renewed = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = self_signed(renewed.path());
    let new = first_cert(&new_cert);
    assert_ne!(old, new);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while presented_cert(gw.addr).await != new {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let m = support::get(gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        m.contains("portcullis_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
}
