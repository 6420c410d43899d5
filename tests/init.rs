//! `portcullis init`, run as the real binary against the in-process provider: the file it
//! writes passes `check` once the secret files are made as it says, `serve` runs on it,
//! and a wrong or unreachable issuer or an existing file is a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use portcullis::testing::{EchoUpstream, TestIdp};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Runs the binary off the runtime's threads (the provider answers on them meanwhile).
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn init_args(issuer: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["init", "--issuer", issuer, "--client-id", "gateway"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Stops a `serve` child however the test ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_the_printed_commands_give_a_running_gateway() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("gateway.toml");
    let port = support::free_port();
    let public = format!("http://localhost:{port}");
    let out = run(init_args(
        &idp.issuer(),
        &[
            "--upstream",
            &upstream.url(),
            "--public-url",
            &public,
            "--output",
            output.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let steps = text(&out.stdout);
    assert!(
        steps.contains(&format!("{public}/oauth2/callback")),
        "{steps}"
    );
    let serve_line = format!("portcullis serve --config {}", output.display());
    assert!(steps.contains(&serve_line), "{steps}");

    // The file names its secrets by file only, and says what the provider offers.
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(written.contains("client_secret_file = "), "{written}");
    assert!(written.contains("secret_file = "), "{written}");
    assert!(!written.contains("client_secret = "), "{written}");
    assert!(!written.contains("\nsecret = "), "{written}");
    assert!(
        written.contains(&format!("end_session_endpoint ({}", idp.issuer())),
        "{written}"
    );
    assert!(
        written.contains("RS256 (id_token_signing_alg_values_supported)"),
        "{written}"
    );

    // The secret files, made by the printed command (the placeholder replaced).
    let make_secrets = steps
        .lines()
        .map(str::trim)
        .find(|l| l.contains("/dev/urandom"))
        .expect("a command that makes the secret files")
        .replace(portcullis::init::SECRET_PLACEHOLDER, "gateway-secret");
    let status = Command::new("sh")
        .args(["-c", &make_secrets])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "{make_secrets}");
    let session_secret = std::fs::read_to_string(dir.path().join("session.secret")).unwrap();
    assert!(session_secret.trim().len() >= 32, "{session_secret:?}");
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(!written.contains(session_secret.trim()));
    assert!(!written.contains("gateway-secret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["session.secret", "client.secret"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
        }
    }

    let out = run(vec![
        "check".into(),
        "--config".into(),
        output.to_str().unwrap().into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: configuration is valid (3 rule(s), 0 warning(s))\n",
            output.display()
        )
    );

    // `serve` on it (the admin port moved off 9090 for the test) becomes ready, forwards
    // the public health path and sends a browser to the provider.
    let admin_port = support::free_port();
    let child = Command::new(BIN)
        .args(["serve", "--config", output.to_str().unwrap()])
        .env(
            "PORTCULLIS_SERVER__ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .env_remove("PORTCULLIS_CONFIG")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serving = Serving(child);
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let main: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(admin).await;
    support::wait_ready(admin, Duration::from_secs(20)).await;
    assert_eq!(support::get(admin, "/healthz", &[]).await.status, 200);

    let host = format!("localhost:{port}");
    let r = support::raw(
        main,
        format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().target, "/health");
    let r = support::raw(
        main,
        format!(
            "GET /app HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(
        r.header("location")
            .unwrap()
            .starts_with(&format!("{}/protocol/openid-connect/auth?", idp.issuer())),
        "{:?}",
        r.header("location")
    );
    let r = support::raw(
        main,
        format!(
            "GET /api/x HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401, "login = \"deny\" on /api/**");
}

/// Waits until something accepts connections on `addr` (the child has just started).
async fn wait_listening(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_other_than_the_discovered_one_is_refused() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("gateway.toml");
    let out_arg = output.to_str().unwrap();
    // The same provider under another name, and with a trailing slash: discovery names
    // the issuer exactly, and tokens carry that exact string.
    let other_name = idp.issuer().replace("127.0.0.1", "localhost");
    let slash = format!("{}/", idp.issuer());
    for given in [other_name.as_str(), slash.as_str()] {
        let out = run(init_args(given, &["--output", out_arg])).await;
        assert_eq!(out.status.code(), Some(1), "{given}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "error: the provider's discovery document says its issuer is {:?}, not {given:?}; pass --issuer {:?} (tokens carry that exact string in \"iss\")\n",
                idp.issuer(),
                idp.issuer()
            )
        );
        assert!(text(&out.stdout).is_empty());
        assert!(!output.exists(), "nothing is written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_wrong_issuer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("gateway.toml");
    let out_arg = output.to_str().unwrap();
    let port = support::free_port();
    let issuer = format!("http://127.0.0.1:{port}/realms/nowhere");
    let out = run(init_args(&issuer, &["--output", out_arg])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: cannot read the provider's discovery document: request to {issuer}/.well-known/openid-configuration failed: "
        )),
        "{err}"
    );
    assert!(!output.exists());

    // A server that is not a provider: its 404 is named.
    let idp = TestIdp::start().await;
    let not_a_realm = format!("{}/nothing", idp.issuer());
    let out = run(init_args(&not_a_realm, &["--output", out_arg])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("error: cannot read the provider's discovery document: {not_a_realm}/.well-known/openid-configuration answered 404\n")
    );

    // Not a URL at all: named by its flag, before any network work.
    let out = run(init_args("localhost:8180/realms/x", &["--output", out_arg])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: --issuer: \"localhost:8180/realms/x\" is not an http:// or https:// URL\n"
    );
    // A missing required flag is clap's usage error.
    let out = run(vec!["init".into(), "--issuer".into(), issuer]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--client-id"),
        "{}",
        text(&out.stderr)
    );
    assert!(!output.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_file_is_kept_unless_force() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("gateway.toml");
    std::fs::write(&output, "# mine\n").unwrap();
    let out_arg = output.to_str().unwrap();
    let out = run(init_args(&idp.issuer(), &["--output", out_arg])).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {} already exists; pass --force to overwrite it\n",
            output.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "# mine\n");
    assert_eq!(
        idp.discovery_fetches(),
        0,
        "refused before any network work"
    );

    let out = run(init_args(&idp.issuer(), &["--output", out_arg, "--force"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(written.contains(&format!("issuer = \"{}\"", idp.issuer())));
    assert!(!Path::new(&dir.path().join("session.secret")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_output_is_gateway_toml_in_the_working_directory() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let args = init_args(&idp.issuer(), &[]);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .current_dir(&cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    assert!(written.contains("client_secret_file = \"client.secret\""));
    assert!(written.contains("secret_file = \"session.secret\""));
    let steps = text(&out.stdout);
    assert!(
        steps.contains("head -c 32 /dev/urandom | base64 > session.secret;"),
        "{steps}"
    );
    assert!(
        steps.contains("portcullis serve --config gateway.toml\n"),
        "{steps}"
    );
}
