//! The command line, run as a real binary on temporary files; output compared exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[upstream]
url = "http://127.0.0.1:3000"

[oidc]
issuer = "http://127.0.0.1:1/realms/myorg"
client_id = "gateway"
client_secret = "s"

[session]
secret = "0123456789abcdef0123456789abcdef"
"#;

/// What `check` says about `BASE` (the cookie store without `session.state_dir`).
const STATE_DIR_WARNING: &str = "warning: session.state_dir: not set, so with the cookie store a restart forgets every logout: a copy of a logged-out session cookie is accepted again until the session expires (set session.state_dir to a directory the gateway may write)\n";

const RULES: &str = r#"
[[rule]]
path = "/api/public"
access = "public"

[[rule]]
path = "/api/private-scoped/**"
scopes = ["test_api_access"]

[[rule]]
path = "/admin/**"
roles = ["admin"]

[[rule]]
path = "/**"
"#;

fn write(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.env_remove("PORTCULLIS_CONFIG");
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_a_valid_file_and_the_example_config() {
    let f = write(&format!("{BASE}{RULES}"));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{STATE_DIR_WARNING}{}: configuration is valid (4 rule(s), 1 warning(s))\n",
            f.path().display()
        )
    );

    let out = run(
        &[
            "check",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_reports_every_error_with_its_key() {
    let f = write(
        r#"
[server]
listen = "nowhere"
shutdown_grace = "soon"
trusted_proxies = ["10.0.0.0/8", "not-a-cidr"]

[upstream]
url = "ftp://x"

[oidc]
issuer = "http://127.0.0.1:1/realms/myorg"
client_id = "gateway"

[tokens]
algorithms = ["RS256", "HS256", "none", "XX1"]

[session]
secret = "short"

[[rule]]
path = "**"

[[rule]]
path = "/a/**"
roles = ["admin"]

[[rule]]
path = "/a/**"
"#,
    );
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let expected = [
        "error: server.listen: \"nowhere\" is not an address such as \"0.0.0.0:8080\"",
        "error: server.trusted_proxies[1]: \"not-a-cidr\" is not a CIDR such as \"10.0.0.0/8\" or an IP address",
        "error: server.shutdown_grace: \"soon\" is not a duration such as \"500ms\", \"30s\", \"5m\" or \"8h\"",
        "error: upstream.url: \"ftp://x\" is not an http:// or https:// URL",
        "error: rule[0].path: \"**\" must start with \"/\"",
        "error: rule[2].path: \"/a/**\" ties with rule[1] (\"/a/**\"): both can match the same request with the same precedence; make one more specific or give them distinct methods or hosts",
        "error: oidc.client_secret: missing, and rule[1] may log a browser in (set it, or set login = \"deny\" on such rules)",
        "error: tokens.algorithms[1]: \"HS256\" is never accepted: tokens are checked against the provider's public keys",
        "error: tokens.algorithms[2]: \"none\" is never accepted: tokens are checked against the provider's public keys",
        "error: tokens.algorithms[3]: \"XX1\" is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
        "error: session.secret: must be at least 32 bytes long",
    ];
    for line in expected {
        assert!(
            err.lines().any(|l| l == line),
            "missing line:\n{line}\nin:\n{err}"
        );
    }
    assert!(
        err.ends_with(&format!(
            "{}: 11 error(s); the configuration is invalid\n",
            f.path().display()
        )),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_errors() {
    let f = write(&format!("{BASE}{RULES}\n[tokens]\naudience = [\"x\"]\n"));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: tokens.audience: unknown key"),
        "{err}"
    );
}

#[test]
fn check_warns_about_a_missing_audience_check() {
    let f = write(&format!("{BASE}{RULES}\n[tokens]\naudiences = []\n"));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with(
        "warning: tokens.audiences: is empty, so the \"aud\" claim of bearer tokens is not checked; any token of the issuer is accepted\n"
    ));
}

#[test]
fn environment_overrides_and_secret_files() {
    let mut secret = tempfile::NamedTempFile::new().unwrap();
    writeln!(secret, "from-a-file").unwrap();
    let no_secret = BASE.replace("client_secret = \"s\"\n", "");
    let f = write(&format!("{no_secret}{RULES}"));
    let path = f.path().to_str().unwrap();

    // Missing secret: invalid.
    assert_eq!(run(&["check", "-c", path], &[]).status.code(), Some(1));
    // From the environment, also a number-looking value.
    let out = run(
        &["check", "-c", path],
        &[("PORTCULLIS_OIDC__CLIENT_SECRET", "12345")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // From a file named in the environment.
    let out = run(
        &["check", "-c", path],
        &[(
            "PORTCULLIS_OIDC__CLIENT_SECRET_FILE",
            secret.path().to_str().unwrap(),
        )],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A bad override names the key.
    let out = run(
        &["check", "-c", path],
        &[
            ("PORTCULLIS_OIDC__CLIENT_SECRET", "x"),
            ("PORTCULLIS_SERVER__LISTEN", "bad"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: server.listen: \"bad\" is not an address"),
        "{}",
        text(&out.stderr)
    );
    // Other PORTCULLIS_ variables (without a section) are not configuration.
    let out = run(
        &["check", "-c", path],
        &[
            ("PORTCULLIS_OIDC__CLIENT_SECRET", "x"),
            ("PORTCULLIS_CACHE", "/tmp"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // -c defaults to $PORTCULLIS_CONFIG.
    let mut c = Command::new(BIN);
    let out = c
        .args(["check"])
        .env("PORTCULLIS_CONFIG", path)
        .env("PORTCULLIS_OIDC__CLIENT_SECRET", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn missing_file_is_an_error() {
    let out = run(&["check", "-c", "/nonexistent/gateway.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: configuration file /nonexistent/gateway.toml does not exist\n/nonexistent/gateway.toml: 1 error(s); the configuration is invalid\n"
    );
}

#[test]
fn explain_prints_the_rule_and_decision() {
    let f = write(&format!("{BASE}{RULES}"));
    let path = f.path().to_str().unwrap();
    let mut claims = tempfile::NamedTempFile::new().unwrap();
    write!(
        claims,
        r#"{{"sub":"u1","preferred_username":"alice","scope":"openid test_api_access","resource_access":{{"gateway":{{"roles":["admin","user"]}}}}}}"#
    )
    .unwrap();
    let claims_path = claims.path().to_str().unwrap();

    let out = run(&["explain", "-c", path, "GET", "/api/public"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "request:  GET /api/public\npath:     /api/public\nidentity: none\nrule:     rule[0] \"/api/public\"\ndecision: allow (public)\n"
    );

    let out = run(&["explain", "-c", path, "get", "//admin/../admin/x"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stdout),
        "request:  GET //admin/../admin/x\npath:     /admin/x\nidentity: none\nrule:     rule[2] \"/admin/**\"\ndecision: deny (unauthenticated, 401): no valid credential\n"
    );

    let out = run(
        &[
            "explain",
            "-c",
            path,
            "POST",
            "/admin/x",
            "--claims",
            claims_path,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout)
        .contains("identity: alice (roles: admin,user; scopes: openid test_api_access)\n"));
    assert!(text(&out.stdout).ends_with("decision: allow (authorized)\n"));

    let mut bob = tempfile::NamedTempFile::new().unwrap();
    write!(bob, r#"{{"sub":"u2","scope":"openid"}}"#).unwrap();
    let out = run(
        &[
            "explain",
            "-c",
            path,
            "GET",
            "/api/private-scoped/x",
            "--claims",
            bob.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).ends_with(
        "decision: deny (insufficient_scope, 403): missing scope(s); the rule requires test_api_access\n"
    ));

    let out = run(&["explain", "-c", path, "GET", "/a/%2F.."], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("path:     refused (the path contains an encoded '/')\n"));

    let out = run(&["explain", "-c", "/nonexistent.toml", "GET", "/"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(
        &[
            "explain",
            "-c",
            path,
            "GET",
            "/",
            "--claims",
            "/nonexistent.json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn explain_names_the_step_up_a_rule_needs() {
    let f = write(&format!(
        "{BASE}\n[[rule]]\npath = \"/admin/**\"\nacr = [\"gold\"]\nmax_age = \"5m\"\n"
    ));
    let path = f.path().to_str().unwrap();
    let explain = |claims: &str| {
        let mut c = tempfile::NamedTempFile::new().unwrap();
        write!(c, "{claims}").unwrap();
        let out = run(
            &[
                "explain",
                "-c",
                path,
                "GET",
                "/admin/x",
                "--claims",
                c.path().to_str().unwrap(),
            ],
            &[],
        );
        (out.status.code(), text(&out.stdout))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (code, out) = explain(r#"{"sub":"u1","acr":"silver"}"#);
    assert_eq!(code, Some(3));
    assert!(
        out.ends_with("decision: deny (insufficient_user_authentication, 401): the rule requires an acr of gold and an authentication at most 300 s old\n"),
        "{out}"
    );
    let (code, out) = explain(&format!(r#"{{"sub":"u1","acr":"gold","auth_time":{now}}}"#));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("decision: allow (authorized)\n"), "{out}");
}

#[test]
fn serve_refuses_an_invalid_configuration() {
    let f = write("[server]\nlisten = \"x\"\n");
    let out = run(&["serve", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error: server.listen:"));
}

#[test]
fn serve_exits_cleanly_on_sigterm() {
    let f = write(&format!("{BASE}{RULES}"));
    let mut child = Command::new(BIN)
        .args(["serve", "-c", f.path().to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it says it listens.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    loop {
        let line = lines
            .next()
            .expect("the gateway printed its address")
            .unwrap();
        if line.contains("portcullis is listening") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn help_is_available_on_every_command() {
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["check", "--help"],
        &["explain", "--help"],
        &["init", "--help"],
    ] {
        let out = run(cmd, &[]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("Usage: portcullis"));
    }
}

#[test]
fn the_redis_store_is_checked_offline() {
    let f = write(&format!("{BASE}{RULES}\n").replace(
        "[session]\n",
        "[session]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\n",
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let f = write(&format!("{BASE}{RULES}\n").replace(
        "[session]\n",
        "[session]\nstore = \"redis\"\nredis_url = \"http://127.0.0.1:6379\"\n",
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: session.redis_url: "),
        "{}",
        text(&out.stderr)
    );
}

/// Kills the child it holds when dropped (a failed assertion included).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reloads_the_configuration() {
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let metrics = |admin: u16| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
        std::io::Write::write_all(
            &mut s,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .ok()?;
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).ok()?;
        Some(out)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The ports are free when picked but another test may take one before the gateway
    // binds it: then the gateway exits at start, and it is started again on new ones.
    let mut attempt = 0;
    let (f, config, mut child, admin) = loop {
        attempt += 1;
        let (main, admin) = (port(0), port(1));
        let config = move |extra: &str| {
            format!("{BASE}{extra}")
                .replace(
                    "admin_listen = \"127.0.0.1:0\"",
                    &format!("admin_listen = \"127.0.0.1:{admin}\""),
                )
                .replace(
                    "\nlisten = \"127.0.0.1:0\"",
                    &format!("\nlisten = \"127.0.0.1:{main}\""),
                )
        };
        let f = write(&config(RULES));
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = KillOnDrop(
            Command::new(BIN)
                .args(["serve", "-c", f.path().to_str().unwrap()])
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap(),
        );
        let started = loop {
            if metrics(admin).is_some_and(|m| m.contains("portcullis_config_hash")) {
                break true;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
                assert!(
                    attempt < 5 && stderr.contains("127.0.0.1:"),
                    "the gateway exited at start ({status}): {stderr}"
                );
                break false;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw portcullis_config_hash"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        if started {
            break (f, config, child, admin);
        }
    };
    let wait_for = |needle: &str| loop {
        if metrics(admin).is_some_and(|m| m.contains(needle)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never saw {needle}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::fs::write(
        f.path(),
        config(&RULES.replace("path = \"/api/public\"", "path = \"/api/open\"")),
    )
    .unwrap();
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("portcullis_config_reloads_total{result=\"ok\"} 1");
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        child.0.wait().unwrap().code(),
        Some(0),
        "still running after SIGHUP, clean exit on SIGTERM"
    );
}

#[test]
fn check_warns_about_rules_that_cannot_apply() {
    let extra = "\n[tokens]\nroles_claims = []\n\n[[rule]]\npath = \"/oauth2/**\"\naccess = \"public\"\n\n[[rule]]\npath = \"/x\"\nroles = [\"admin\"]\n";
    let f = write(&format!("{BASE}{RULES}{extra}"));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("warning: rule[4].path: \"/oauth2/**\" is under server.auth_prefix (/oauth2); the gateway's own endpoints answer there, so this rule never applies\n"), "{stdout}");
    assert!(stdout.contains("warning: rule[2].roles: tokens.roles_claims is empty, so no credential can have roles and this rule always denies\n"), "{stdout}");
    assert!(stdout.contains("warning: rule[5].roles:"), "{stdout}");
}

#[test]
fn check_warns_about_shadowed_rules_and_refuses_unknown_upstreams() {
    let f = write(&format!(
        r#"{BASE}
[[rule]]
path = "/files/**"

[[rule]]
path = "/files"
access = "public"

[[rule]]
path = "/files/"
access = "public"

[[rule]]
path = "/files/*/**"
access = "public"

[[rule]]
path = "/**"
"#
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{STATE_DIR_WARNING}warning: rule[0].path: \"/files/**\" is shadowed: every request it matches is decided by a more specific rule (rule[1] \"/files\", rule[2] \"/files/\", rule[3] \"/files/*/**\"), so it never applies\n{}: configuration is valid (5 rule(s), 2 warning(s))\n",
            f.path().display()
        )
    );

    let f = write(&format!(
        "{BASE}\n[upstreams.billing]\nurl = \"http://127.0.0.1:3001\"\n\n[[rule]]\npath = \"/**\"\nupstream = \"biling\"\n"
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: rule[0].upstream: \"biling\" is not defined; add [upstreams.biling] with a url (defined: billing)\n"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_takes_a_host_and_names_the_upstream() {
    let f = write(&format!(
        r#"{BASE}
[upstreams.admin]
url = "http://127.0.0.1:3002"

[[rule]]
path = "/**"
host = "admin.example.com"
roles = ["admin"]
upstream = "admin"

[[rule]]
path = "/**"
access = "public"
"#
    ));
    let path = f.path().to_str().unwrap();
    let out = run(&["explain", "-c", path, "GET", "/x"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "request:  GET /x\npath:     /x\nidentity: none\nrule:     rule[1] \"/**\"\nupstream: [upstream] (http://127.0.0.1:3000/)\ndecision: allow (public)\n"
    );
    let out = run(
        &[
            "explain",
            "-c",
            path,
            "GET",
            "/x",
            "--host",
            "Admin.Example.com:443",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "request:  GET /x\nhost:     admin.example.com\npath:     /x\nidentity: none\nrule:     rule[0] \"/**\" (host admin.example.com)\ndecision: deny (unauthenticated, 401): no valid credential\n"
    );
    let out = run(&["explain", "-c", path, "GET", "/x", "--host", "a b"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

/// `--token` is verified against the provider's keys when the provider answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_verifies_a_token_against_the_live_jwks() {
    let idp = portcullis::testing::TestIdp::start().await;
    let cfg = BASE.replace("http://127.0.0.1:1/realms/myorg", &idp.issuer());
    let f = write(&format!(
        "{cfg}\n[tokens]\naudiences = [\"gateway\"]\n{RULES}"
    ));
    let path = f.path().to_str().unwrap().to_owned();
    let good = idp.mint(&idp.claims("svc", "gateway", "test_api_access"));
    // Same claims, signed by a key the provider does not publish.
    let stranger = portcullis::testing::TestIdp::start().await;
    let mut claims = stranger.claims("svc", "gateway", "test_api_access");
    claims["iss"] = idp.issuer().into();
    let forged = stranger.mint(&claims);

    let explain = |token: String, extra: &'static [&'static str]| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["explain", "-c", &path, "GET", "/api/private-scoped/x"];
            args.extend_from_slice(extra);
            args.extend(["--token", &token]);
            run(&args, &[])
        })
    };
    let out = explain(good.clone(), &[]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!(
            "token:    signature verified with the provider's keys ({}/protocol/openid-connect/certs); iss, aud, exp and nbf checked\n",
            idp.issuer()
        )),
        "{}",
        text(&out.stdout)
    );

    let out = explain(forged.clone(), &[]).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).ends_with("decision: deny (invalid_token, 401)\n"),
        "{}",
        text(&out.stdout)
    );

    // --offline never asks the provider, so the forged signature goes unnoticed.
    let out = explain(forged, &["--offline"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout)
        .contains("token:    signature not verified (--offline); iss, aud, exp and nbf checked\n"));
}

#[test]
fn explain_falls_back_to_claims_checks_when_the_provider_is_unreachable() {
    let f = write(&format!("{BASE}{RULES}"));
    let path = f.path().to_str().unwrap();
    // An unsigned-looking but well-formed RS256 token for the configured issuer.
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT","kid":"k"}"#),
        b64(&format!(
            r#"{{"iss":"http://127.0.0.1:1/realms/myorg","aud":"gateway","sub":"svc","exp":{exp}}}"#
        )),
        b64("sig")
    );
    let out = run(
        &["explain", "-c", path, "GET", "/x", "--token", &token],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout)
            .contains("token:    signature not verified (the provider's keys cannot be fetched: "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_validates_session_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let with = |state_dir: &std::path::Path| {
        write(&format!(
            "{}{RULES}",
            BASE.replace(
                "[session]\n",
                &format!(
                    "[session]\nstate_dir = {:?}\n",
                    state_dir.display().to_string()
                )
            )
        ))
    };
    // A directory, or one that can be created: valid, and no warning about restarts.
    for ok in [dir.path().to_owned(), dir.path().join("a/b")] {
        let f = with(&ok);
        let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            !text(&out.stdout).contains("session.state_dir"),
            "{}",
            text(&out.stdout)
        );
        assert!(!dir.path().join("a").exists(), "check creates nothing");
    }
    // A file is not a directory, nor can one be created below it.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for bad in [file.clone(), file.join("below")] {
        let f = with(&bad);
        let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.starts_with("error: session.state_dir: "), "{err}");
        assert!(err.contains("is not a directory"), "{err}");
    }
}

#[test]
fn check_warns_that_the_cookie_store_forgets_logouts_without_a_state_dir() {
    let f = write(&format!("{BASE}{RULES}"));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("warning: session.state_dir: not set, so with the cookie store a restart forgets every logout"),
        "{}",
        text(&out.stdout)
    );
    // Not with the Redis store, where the sessions themselves live in Redis.
    let redis = BASE.replace(
        "[session]\n",
        "[session]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\n",
    );
    let f = write(&format!("{redis}{RULES}"));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("session.state_dir"),
        "{}",
        text(&out.stdout)
    );
}

/// Text logs written to a file (or a pipe) carry no ANSI colour codes.
#[test]
fn text_logs_to_a_file_have_no_colour_codes() {
    let f = write(&format!(
        "{BASE}[log]\nformat = \"text\"\nlevel = \"info\"\n{RULES}"
    ));
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "-c", f.path().to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let written = loop {
        let s = std::fs::read_to_string(&log_path).unwrap();
        if s.contains("portcullis is listening") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never said it listens: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let all = std::fs::read_to_string(&log_path).unwrap();
    assert!(written.contains(" INFO "), "{written}");
    assert!(
        !all.contains('\x1b'),
        "ANSI escape codes in a log file: {all:?}"
    );
}

#[test]
fn check_reports_telemetry_errors_and_keys_without_an_endpoint() {
    let f = write(&format!(
        "{BASE}{RULES}\n[telemetry]\notlp_endpoint = \"grpc://collector:4317\"\notlp_protocol = \"grpc\"\notlp_timeout = \"0s\"\nservice_name = \" \"\ntrust_traceparent_from = [\"10.0.0.0/8\", \"proxies\"]\n"
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for line in [
        "error: telemetry.otlp_endpoint: \"grpc://collector:4317\" is not an http:// or https:// URL",
        "error: telemetry.otlp_protocol: \"grpc\" is not one of \"http/protobuf\", \"http/json\" (gRPC is not supported)",
        "error: telemetry.otlp_timeout: must be more than 0s",
        "error: telemetry.service_name: must not be empty",
        "error: telemetry.trust_traceparent_from[1]: \"proxies\" is not a CIDR such as \"10.0.0.0/8\" or an IP address",
    ] {
        assert!(err.lines().any(|l| l == line), "missing line:\n{line}\nin:\n{err}");
    }

    let f = write(&format!(
        "{BASE}{RULES}\n[telemetry]\nservice_name = \"edge\"\n"
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("warning: telemetry.service_name: has no effect without telemetry.otlp_endpoint (no traces are sent)\n"),
        "{}",
        text(&out.stdout)
    );

    let f = write(&format!(
        "{BASE}{RULES}\n[telemetry]\notlp_endpoint = \"https://collector.example:4318/otlp/\"\n"
    ));
    let out = run(&["check", "-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
