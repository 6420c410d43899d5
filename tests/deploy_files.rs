//! The deployment files stay in step with the code and with each other:
//! `deploy/compose/gateway.toml` is a valid configuration with the demo's rules (also with
//! the overrides `deploy/local/demo.sh` applies), `docker-compose.yml` runs the Keycloak
//! version the e2e suite pins and imports `deploy/keycloak`, and the image runs as a
//! non-root user. Plain string checks for YAML and the Dockerfile (no YAML parser here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use http::Method;
use portcullis::config::{self, Config, EnvOverrides};
use portcullis::rules::{Access, Login, Rule};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn load(env: EnvOverrides) -> Config {
    match config::load(&repo_file("deploy/compose/gateway.toml"), &env) {
        Ok(c) => c,
        Err(e) => panic!("deploy/compose/gateway.toml is invalid:\n{e}"),
    }
}

/// The rule that decides `GET path`.
fn rule_for<'a>(cfg: &'a Config, path: &str) -> &'a Rule {
    let p = portcullis::path::normalize(path, false).unwrap();
    cfg.rules
        .find(&Method::GET, &p)
        .unwrap_or_else(|| panic!("no rule for {path}"))
}

/// `KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.7.3}"` in tests/e2e/keycloak.sh.
fn pinned_keycloak_version() -> String {
    let script = read("tests/e2e/keycloak.sh");
    let line = script
        .lines()
        .find(|l| l.starts_with("KEYCLOAK_VERSION="))
        .expect("KEYCLOAK_VERSION= in tests/e2e/keycloak.sh");
    let start = line.find(":-").expect("a ${KEYCLOAK_VERSION:-default}") + 2;
    let end = line[start..].find('}').expect("closing brace") + start;
    let v = line[start..end].to_owned();
    assert!(
        v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()),
        "unexpected KEYCLOAK_VERSION {v:?}"
    );
    v
}

#[test]
fn compose_gateway_config_is_valid_and_has_the_demo_rules() {
    let cfg = load(EnvOverrides::default());
    // Except `session.state_dir` (logouts kept across restarts), which the files under
    // deploy/ do not set yet: `check` warns about it for every cookie-store setup.
    let warnings: Vec<_> = cfg
        .warnings
        .iter()
        .filter(|w| w.key != "session.state_dir")
        .collect();
    assert!(warnings.is_empty(), "warnings: {warnings:?}");
    assert_eq!(cfg.server.public_url.as_str(), "http://localhost:8080/");
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(cfg.server.admin_listen.to_string(), "0.0.0.0:9090");
    assert_eq!(cfg.oidc.issuer, "http://localhost:8180/realms/myorg");
    assert_eq!(cfg.oidc.client_id, "gateway");
    assert_eq!(cfg.upstream.url.as_str(), "http://upstream:3000/");
    assert!(
        cfg.session.is_some(),
        "browser logins need a session secret"
    );

    let public = rule_for(&cfg, "/api/public");
    assert_eq!(public.path, "/api/public");
    assert_eq!(public.access, Access::Public);

    let private = rule_for(&cfg, "/api/private");
    assert_eq!(private.path, "/api/private");
    assert_eq!(private.access, Access::Authenticated);
    assert_eq!(private.login, Login::Deny);

    for p in ["/api/private-scoped", "/api/private-scoped/items/1"] {
        let scoped = rule_for(&cfg, p);
        assert_eq!(scoped.path, "/api/private-scoped/**", "{p}");
        assert_eq!(scoped.scopes, ["test_api_access"], "{p}");
        assert_eq!(scoped.login, Login::Deny, "{p}");
    }

    let admin = rule_for(&cfg, "/admin/users");
    assert_eq!(admin.path, "/admin/**");
    assert_eq!(admin.roles, ["admin"]);
    assert_eq!(admin.login, Login::Auto);

    let rest = rule_for(&cfg, "/profile");
    assert_eq!(rest.path, "/**");
    assert_eq!(rest.access, Access::Authenticated);
    assert!(rest.roles.is_empty() && rest.scopes.is_empty());
    assert_eq!(rest.login, Login::Auto);
}

/// The example `gateway.toml` and the demo's agree on which paths may start a browser
/// login: the rules they share have the same `login`, and so do the requests they decide.
#[test]
fn the_example_and_the_compose_config_agree_on_browser_logins() {
    let compose = load(EnvOverrides::default());
    let example = match config::load(&repo_file("gateway.toml"), &EnvOverrides::default()) {
        Ok(c) => c,
        Err(e) => panic!("gateway.toml is invalid:\n{e}"),
    };
    let mut shared = 0;
    for rule in compose.rules.rules() {
        let Some(twin) = example.rules.rules().iter().find(|r| r.path == rule.path) else {
            continue;
        };
        shared += 1;
        assert_eq!(
            twin.login, rule.login,
            "rule {:?}: gateway.toml and deploy/compose/gateway.toml disagree on login",
            rule.path
        );
    }
    assert!(shared >= 5, "the two files share {shared} rule path(s)");
    for p in [
        "/api/public",
        "/api/private",
        "/api/private-scoped",
        "/api/private-scoped/items/1",
        "/api/other",
        "/admin/users",
        "/profile",
    ] {
        assert_eq!(
            rule_for(&example, p).login,
            rule_for(&compose, p).login,
            "GET {p}"
        );
    }
    assert_eq!(rule_for(&example, "/api/private").login, Login::Deny);
}

#[test]
fn compose_gateway_config_with_the_local_demo_overrides_is_valid() {
    // The variables deploy/local/demo.sh sets; keep the two in step.
    let script = read("deploy/local/demo.sh");
    let vars = [
        ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:8080"),
        ("PORTCULLIS_SERVER__ADMIN_LISTEN", "127.0.0.1:9090"),
        ("PORTCULLIS_SERVER__PUBLIC_URL", "http://127.0.0.1:8080"),
        (
            "PORTCULLIS_OIDC__ISSUER",
            "http://127.0.0.1:8180/realms/myorg",
        ),
        ("PORTCULLIS_UPSTREAM__URL", "http://127.0.0.1:3000"),
        ("PORTCULLIS_SESSION__STORE", "cookie"),
    ];
    for (k, _) in vars {
        assert!(script.contains(k), "deploy/local/demo.sh does not set {k}");
    }
    let cfg = load(EnvOverrides::from_vars(
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    ));
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.server.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(cfg.server.public_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(cfg.oidc.issuer, "http://127.0.0.1:8180/realms/myorg");
    assert_eq!(cfg.upstream.url.as_str(), "http://127.0.0.1:3000/");
    let session = cfg.session.as_ref().expect("[session]");
    assert_eq!(session.store, portcullis::config::SessionStoreKind::Cookie);
}

#[test]
fn compose_runs_the_pinned_keycloak_with_the_repository_realms() {
    let compose = read("docker-compose.yml");
    let version = pinned_keycloak_version();
    let image = format!("image: quay.io/keycloak/keycloak:{version}");
    assert!(
        compose.contains(&image),
        "docker-compose.yml must use `{image}` (KEYCLOAK_VERSION of tests/e2e/keycloak.sh)"
    );
    assert_eq!(
        compose.matches("quay.io/keycloak/keycloak:").count(),
        1,
        "one Keycloak image only"
    );
    assert!(compose.contains("./deploy/keycloak:/opt/keycloak/data/import"));
    assert!(compose.contains("--import-realm"));
    // The issuer the gateway is configured with is the one Keycloak writes into tokens.
    assert!(compose.contains("KC_HOSTNAME: http://localhost:8180\n"));
    assert!(compose.contains("KC_HTTP_PORT: \"8180\""));
    // The gateway gets the file this test validates, where the image looks for it.
    assert!(compose.contains("./deploy/compose/gateway.toml:/etc/portcullis/gateway.toml"));
    assert!(compose.contains("network_mode: \"service:keycloak\""));
    assert!(compose.contains("./deploy/demo:/srv/demo"));
    assert!(compose.contains("/srv/demo/upstream.py"));
    assert!(repo_file("deploy/demo/upstream.py").is_file());
    // Two replicas behind nginx, sharing their sessions in Redis.
    for service in [
        "  redis:\n",
        "  gateway-a: &gateway\n",
        "  gateway-b:\n",
        "  lb:\n",
    ] {
        assert!(
            compose.contains(service),
            "docker-compose.yml has no {service:?}"
        );
    }
    assert!(compose.contains("./deploy/compose/nginx.conf:/etc/nginx/nginx.conf"));
    let nginx = read("deploy/compose/nginx.conf");
    for (replica, listen) in [
        ("127.0.0.1:8081", "0.0.0.0:8081"),
        ("127.0.0.1:8082", "0.0.0.0:8082"),
    ] {
        assert!(
            nginx.contains(&format!("server {replica}")),
            "nginx balances to {replica}"
        );
        assert!(
            compose.contains(&format!("PORTCULLIS_SERVER__LISTEN: \"{listen}\"")),
            "a replica listens on {listen}"
        );
    }
    let cfg = load(EnvOverrides::default());
    let session = cfg.session.as_ref().expect("[session]");
    assert_eq!(session.store, portcullis::config::SessionStoreKind::Redis);
    assert_eq!(
        session.redis_url.as_ref().map(|u| u.expose()),
        Some("redis://redis:6379/0"),
        "the compose service"
    );
    for port in ["8180", "8080", "9091", "9092"] {
        assert!(
            compose.contains(&format!("\"127.0.0.1:{port}:{port}\"")),
            "port {port} is not published on 127.0.0.1"
        );
    }
}

#[test]
fn dockerfile_runtime_stage_runs_as_non_root() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    assert!(
        instructions
            .iter()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "multi-stage build"
    );
    let runtime = &instructions[last_from..];
    assert!(runtime[0].starts_with("FROM debian:bookworm-slim"));
    let user = runtime
        .iter()
        .rfind(|l| l.starts_with("USER "))
        .expect("the runtime stage sets USER");
    let who = user["USER ".len()..].trim();
    let name = who.split(':').next().unwrap();
    assert!(
        !matches!(name, "root" | "0" | ""),
        "the runtime stage runs as {who:?}"
    );
    assert!(runtime.contains(&"EXPOSE 8080 9090"));
    assert!(runtime.contains(&r#"ENTRYPOINT ["portcullis"]"#));
    assert!(runtime.contains(&r#"CMD ["serve", "-c", "/etc/portcullis/gateway.toml"]"#));
    assert!(dockerfile.contains("cargo build --release --locked"));

    let ignore = read(".dockerignore");
    for entry in ["target/", ".git/", "**/node_modules/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[test]
fn the_assertion_verifier_is_valid_python_and_checks_what_the_gateway_signs() {
    let rel = "deploy/assertion/verify.py";
    let cache = tempfile::tempdir().unwrap();
    // The byte code goes to a temporary directory, never next to the script.
    let out = std::process::Command::new("python3")
        .args(["-m", "py_compile"])
        .arg(repo_file(rel))
        .env("PYTHONPYCACHEPREFIX", cache.path())
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to check {rel}: {e}"));
    assert!(
        out.status.success(),
        "{rel} does not compile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It verifies what the gateway promises: ES256 only, iss, aud, and the times.
    let script = read(rel);
    for needle in [
        "PyJWKClient(",
        "\"/jwks\"",
        "algorithms=[\"ES256\"]",
        "audience=audience",
        "issuer=issuer",
        "\"exp\", \"iat\"",
    ] {
        assert!(script.contains(needle), "{rel} lacks {needle}");
    }
}
