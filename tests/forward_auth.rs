//! Forward-auth (`/oauth2/auth`) for browsers: the 401 that names the login URL (what
//! nginx `auth_request` needs), `?login=redirect` (what Traefik `forwardAuth` needs), a
//! whole login through a stand-in for Traefik's forwardAuth middleware, and the example
//! files under `deploy/nginx/` and `deploy/traefik/`. The real nginx runs in
//! `tests/forward_auth_nginx.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use portcullis::config::{self, Config, EnvOverrides};
use support::{Browser, Harness, RawResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DENY_RULE: &str = r#"
[[rule]]
path = "/api/tokens-only/**"
login = "deny"
"#;

/// The gateway with 127.0.0.1 as a trusted proxy and `public_url` on `public` (the proxy's
/// port), or on its own address.
async fn gateway_behind(public: Option<u16>) -> Harness {
    let rules = format!("{}{DENY_RULE}", support::TUTORIAL_RULES);
    Harness::with_edit(&rules, |toml| {
        toml.lines()
            .map(|l| {
                if let (Some(port), true) = (public, l.starts_with("public_url = ")) {
                    format!("public_url = \"http://127.0.0.1:{port}\"")
                } else if l.starts_with("shutdown_grace = ") {
                    format!("{l}\ntrusted_proxies = [\"127.0.0.1/32\"]")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await
}

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");

#[tokio::test]
async fn by_default_a_browser_gets_401_naming_the_login_url_and_no_login_starts() {
    let h = gateway_behind(None).await;
    let asked = [
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/profile?tab=2&q=a%20b"),
        HTML,
    ];
    let r = h.get("/oauth2/auth", &asked).await;
    assert_eq!(
        r.status, 401,
        "nginx auth_request understands only 2xx, 401, 403"
    );
    let login = format!(
        "{}/oauth2/login?rd=%2Fprofile%3Ftab%3D2%26q%3Da%2520b",
        h.public()
    );
    assert_eq!(r.header("x-portcullis-login"), Some(login.as_str()));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
    assert!(r.header_all("set-cookie").is_empty(), "{:?}", r.headers);
    // Traefik without `login=redirect` shows this page: it links to the same URL.
    assert!(
        r.body.contains(&format!(
            "<a href=\"{}\">Sign in</a>",
            login.replace('&', "&amp;")
        )),
        "{}",
        r.body
    );

    // The login URL works and comes back to the asked path and query.
    h.idp.login_as("alice");
    let mut b = Browser::new(h.addr());
    let r = b.follow("GET", &login).await;
    assert_eq!(b.visited.len(), 4, "{:?}", b.visited);
    assert_eq!(r.seen().target, "/profile?tab=2&q=a%20b");

    // Not a browser, a bad token, or a rule that never logs in: a plain 401.
    for headers in [
        vec![
            ("X-Original-URI", "/profile"),
            ("Accept", "application/json"),
        ],
        vec![
            ("X-Original-URI", "/profile"),
            HTML,
            ("Authorization", "Bearer not.a.token"),
        ],
        vec![("X-Original-URI", "/api/tokens-only/x"), HTML],
        vec![
            ("X-Original-URI", "/profile"),
            ("X-Original-Method", "POST"),
            HTML,
        ],
    ] {
        let r = h.get("/oauth2/auth", &headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.header("x-portcullis-login"), None, "{headers:?}");
    }
}

#[tokio::test]
async fn with_login_redirect_a_browser_is_sent_to_the_provider_by_the_endpoint() {
    let port = support::free_port();
    let h = gateway_behind(Some(port)).await;
    let r = h
        .get(
            "/oauth2/auth?login=redirect",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", &format!("127.0.0.1:{port}")),
                ("X-Forwarded-Uri", "/profile?tab=2"),
                HTML,
            ],
        )
        .await;
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap();
    assert!(location.starts_with(&h.idp.issuer()), "{location}");
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    assert!(
        location.contains(&format!(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Foauth2%2Fcallback"
        )),
        "{location}"
    );
    let cookies = r.header_all("set-cookie");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portcullis_login_") && c.contains("HttpOnly")),
        "{cookies:?}"
    );

    // Only browsers, and only where a login may start.
    for headers in [
        vec![
            ("X-Forwarded-Uri", "/profile"),
            ("Accept", "application/json"),
        ],
        vec![("X-Forwarded-Uri", "/api/tokens-only/x"), HTML],
        vec![
            ("X-Forwarded-Uri", "/profile"),
            ("X-Forwarded-Method", "DELETE"),
            HTML,
        ],
    ] {
        let r = h.get("/oauth2/auth?login=redirect", &headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.header_all("set-cookie").is_empty(), "{headers:?}");
    }
    // Allowed and denied requests are answered as without the parameter.
    let token = h.token("svc", "");
    let auth = format!("Bearer {token}");
    let r = h
        .get(
            "/oauth2/auth?login=redirect",
            &[("X-Forwarded-Uri", "/profile"), ("Authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-subject"), Some("svc"));
    let r = h
        .get(
            "/oauth2/auth?login=redirect",
            &[("X-Forwarded-Uri", "/admin/x"), ("Authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 403);

    // A mistyped mode is refused rather than ignored.
    let r = h
        .get(
            "/oauth2/auth?login=redirct",
            &[("X-Forwarded-Uri", "/profile"), HTML],
        )
        .await;
    assert_eq!(r.status, 400);
    // Still only for trusted proxies.
    let h2 = Harness::start().await;
    let r = h2
        .get(
            "/oauth2/auth?login=redirect",
            &[("X-Forwarded-Uri", "/profile"), HTML],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.upstream.count() + h2.upstream.count(), 0);
}

// === Traefik forwardAuth, played by a stand-in ===

/// The `authResponseHeaders` of `deploy/traefik/dynamic.yml`.
fn auth_response_headers() -> Vec<String> {
    yaml_list(&read("deploy/traefik/dynamic.yml"), "authResponseHeaders:")
}

/// Plays Traefik with `deploy/traefik/dynamic.yml`: `/oauth2/` except `/oauth2/auth` is
/// routed to portcullis; every other request goes through forwardAuth as Traefik's
/// middleware does it: a GET to `address` carrying the client's headers plus
/// `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` and `-For` (the client's own
/// `X-Forwarded-*` dropped, as the entry point does for untrusted clients); a 2xx answer
/// lets the request through with the `authResponseHeaders` replaced, any other answer
/// goes to the client as it is (status, headers, body).
async fn traefik_stand_in(
    listener: TcpListener,
    gateway: SocketAddr,
    app: SocketAddr,
    address: String,
) {
    let copy = auth_response_headers();
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let copy = copy.clone();
        let address = address.clone();
        tokio::spawn(async move {
            let Some((method, target, mut headers, body)) = read_request(&mut conn).await else {
                return;
            };
            headers.retain(|(k, _)| !k.to_ascii_lowercase().starts_with("x-forwarded-"));
            let host = header(&headers, "host").unwrap_or_default().to_owned();
            let forwarded = [
                ("X-Forwarded-For".to_owned(), "127.0.0.1".to_owned()),
                ("X-Forwarded-Proto".to_owned(), "http".to_owned()),
                ("X-Forwarded-Host".to_owned(), host),
            ];
            let path = target.split('?').next().unwrap_or_default();
            let resp = if path.starts_with("/oauth2/") && path != "/oauth2/auth" {
                headers.extend(forwarded);
                send(gateway, &method, &target, &headers, &body).await
            } else {
                let mut ask: Vec<(String, String)> = headers
                    .iter()
                    .filter(|(k, _)| !is_hop_by_hop(k) && !k.eq_ignore_ascii_case("content-length"))
                    .cloned()
                    .collect();
                ask.extend(forwarded.clone());
                ask.push(("X-Forwarded-Method".into(), method.clone()));
                ask.push(("X-Forwarded-Uri".into(), target.clone()));
                let answer = send(gateway, "GET", &address, &ask, "").await;
                if (200..300).contains(&answer.status) {
                    for name in &copy {
                        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
                        for v in answer.header_all(name) {
                            headers.push((name.clone(), v.to_owned()));
                        }
                    }
                    headers.extend(forwarded);
                    send(app, &method, &target, &headers, &body).await
                } else {
                    answer
                }
            };
            let _ = conn.write_all(&response_bytes(&resp)).await;
        });
    }
}

type Request = (String, String, Vec<(String, String)>, String);

async fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, target) = (start.next()?.to_owned(), start.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((
        method,
        target,
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

async fn send(
    to: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> RawResponse {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        if !is_hop_by_hop(k) && !k.eq_ignore_ascii_case("content-length") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    support::raw(to, req.as_bytes()).await
}

fn response_bytes(r: &RawResponse) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} X\r\n", r.status);
    for (k, v) in &r.headers {
        if !is_hop_by_hop(k) && k != "content-length" {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    out.push_str(&r.body);
    out.into_bytes()
}

/// The gateway behind the Traefik stand-in, with the example's forwardAuth `address` path.
async fn behind_traefik() -> (Harness, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = gateway_behind(Some(addr.port())).await;
    let example = yaml_value(&read("deploy/traefik/dynamic.yml"), "address:");
    let address = url::Url::parse(&example).unwrap();
    let target = format!("{}?{}", address.path(), address.query().unwrap_or_default());
    tokio::spawn(traefik_stand_in(
        listener,
        h.addr(),
        h.upstream.addr,
        target,
    ));
    (h, addr)
}

#[tokio::test]
async fn a_browser_logs_in_through_traefik_forward_auth() {
    let (h, traefik) = behind_traefik().await;
    let public = format!("http://{traefik}");
    let target = "/profile?tab=2&q=a%20b";

    // Traefik hands portcullis's 302 and login cookie to the browser.
    let r = support::get(traefik, target, &[HTML]).await;
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with(&h.idp.issuer()));
    assert!(r
        .header_all("set-cookie")
        .iter()
        .any(|c| c.starts_with("portcullis_login_")));
    assert_eq!(h.upstream.count(), 0);

    // The whole login: Traefik -> provider -> callback (routed to portcullis) -> target.
    h.idp.login_as("alice");
    let mut b = Browser::new(traefik);
    let r = b.navigate(target).await;
    assert_eq!(b.visited.len(), 4, "{:?}", b.visited);
    assert!(b.visited[1].starts_with(&h.idp.issuer()));
    assert!(b.visited[2].starts_with(&format!("{public}/oauth2/callback?")));
    assert_eq!(b.visited[3], format!("{public}{target}"));
    let seen = r.seen();
    assert_eq!(seen.target, target);
    assert_eq!(seen.header_all("x-auth-user"), ["alice"]);
    assert_eq!(seen.header("x-auth-roles"), Some("admin,employee,user"));

    // With the session, a client copy of an identity header is replaced.
    b.extra = vec![("X-Auth-User".into(), "mallory".into())];
    let r = b.navigate("/admin/").await;
    assert_eq!(r.seen().header_all("x-auth-user"), ["alice"]);
}

#[tokio::test]
async fn api_clients_behind_traefik_get_the_contract_answers() {
    let (h, traefik) = behind_traefik().await;
    let r = support::get(traefik, "/profile", &[("Accept", "application/json")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
    assert_eq!(r.json()["error"], "unauthorized");

    let token = h.token("svc", "");
    let auth = format!("Bearer {token}");
    let r = support::get(traefik, "/admin/users", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 403);
    let r = support::get(
        traefik,
        "/api/private-scoped/x",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|w| w.contains("insufficient_scope")));
    assert_eq!(h.upstream.count(), 0);

    let seen = support::get(
        traefik,
        "/api/private?x=1",
        &[("Authorization", &auth), ("x-auth-user", "mallory")],
    )
    .await
    .seen();
    assert_eq!(seen.target, "/api/private?x=1");
    assert_eq!(seen.header_all("x-auth-user"), ["svc"]);
}

// === The example files ===

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The items of the block list under `key` (`- item` lines), in a plain YAML file.
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != key).skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        match l.trim().strip_prefix("- ") {
            Some(item) => out.push(item.trim_matches('"').to_owned()),
            None if l.trim().starts_with('#') => {}
            None => break,
        }
    }
    assert!(!out.is_empty(), "no list under {key}");
    out
}

/// The value of the first `key: value` line.
fn yaml_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key}"))
        .trim()
        .trim_matches('"')
        .to_owned()
}

/// Loads an example gateway configuration, with its secret files supplied.
fn load_example(rel: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("client_secret");
    let session = dir.path().join("session_secret");
    std::fs::write(&client, "client-secret").unwrap();
    std::fs::write(&session, "0123456789abcdef0123456789abcdef0123456789").unwrap();
    let env = EnvOverrides::from_vars([
        (
            "PORTCULLIS_OIDC__CLIENT_SECRET_FILE".to_owned(),
            client.display().to_string(),
        ),
        (
            "PORTCULLIS_SESSION__SECRET_FILE".to_owned(),
            session.display().to_string(),
        ),
    ]);
    let cfg = config::load(&repo_file(rel), &env).unwrap_or_else(|e| panic!("{rel}:\n{e}"));
    // Except `session.state_dir` (logouts kept across restarts), which the files under
    // deploy/ do not set yet: `check` warns about it for every cookie-store setup.
    let warnings: Vec<_> = cfg
        .warnings
        .iter()
        .filter(|w| w.key != "session.state_dir")
        .collect();
    assert!(warnings.is_empty(), "{rel}: {warnings:?}");
    assert!(!cfg.server.trusted_proxies.is_empty(), "{rel}");
    cfg
}

fn identity_header_names(cfg: &Config) -> Vec<String> {
    cfg.headers
        .identity_names()
        .map(|h| h.as_str().to_owned())
        .collect()
}

#[test]
fn the_nginx_example_copies_exactly_the_configured_identity_headers() {
    let cfg = load_example("deploy/nginx/gateway.toml");
    let conf = read("deploy/nginx/portcullis.conf");
    let names = identity_header_names(&cfg);
    assert_eq!(names.len(), 5);
    for name in names {
        let var = name.replace('-', "_");
        let set = format!("auth_request_set ${} $upstream_http_{var};", &var[2..]);
        assert!(conf.contains(&set), "missing `{set}`");
        let pass = format!("proxy_set_header {} ${};", header_case(&name), &var[2..]);
        assert!(conf.contains(&pass), "missing `{pass}`");
    }
    assert!(conf.contains("$upstream_http_x_portcullis_login"));
    assert!(!conf.contains("underscores_in_headers on"));
    assert!(!conf.contains("ignore_invalid_headers off"));
}

#[test]
fn the_traefik_example_copies_exactly_the_configured_identity_headers() {
    let cfg = load_example("deploy/traefik/gateway.toml");
    let dynamic = read("deploy/traefik/dynamic.yml");
    let names: Vec<String> = identity_header_names(&cfg)
        .iter()
        .map(|n| header_case(n))
        .collect();
    assert_eq!(auth_response_headers(), names);
    for name in &names {
        let underscored = format!("{}: \"\"", name.replace('-', "_"));
        assert!(dynamic.contains(&underscored), "missing `{underscored}`");
    }
    let address = yaml_value(&dynamic, "address:");
    assert_eq!(
        address,
        format!("http://{}/oauth2/auth?login=redirect", cfg.server.listen)
    );
    assert!(dynamic.contains("!Path(`/oauth2/auth`)"));
    let cookies = yaml_list(&dynamic, "addAuthCookiesToResponse:");
    assert_eq!(cookies[0], "portcullis");
    assert_eq!(cookies.len(), 12, "every session chunk");
    assert!(dynamic.contains("trustForwardHeader: false"));
}

/// `x-auth-user` -> `X-Auth-User`.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// With host rules, forward-auth judges the host the proxy was asked for
/// (`X-Forwarded-Host`), never the auth request's own `Host`.
#[tokio::test]
async fn host_rules_judge_the_forwarded_host() {
    let rules = r#"
[[rule]]
path = "/**"
host = "admin.example.com"
roles = ["admin"]

[[rule]]
path = "/**"
access = "public"
"#;
    let h = Harness::with_edit(rules, |toml| {
        toml.replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
        )
    })
    .await;
    let asked = |host: &'static str| {
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/dashboard"),
            ("X-Forwarded-Host", host),
        ]
    };
    assert_eq!(
        h.get("/oauth2/auth", &asked("app.example.com"))
            .await
            .status,
        200
    );
    assert_eq!(
        h.get("/oauth2/auth", &asked("Admin.Example.com:443"))
            .await
            .status,
        401
    );
    let mut claims = h.idp.claims("alice", "gateway", "");
    claims["resource_access"] = serde_json::json!({"gateway": {"roles": ["admin"]}});
    let bearer = format!("Bearer {}", h.idp.mint(&claims));
    let mut with_token = asked("admin.example.com");
    with_token.push(("Authorization", &bearer));
    let r = h.get("/oauth2/auth", &with_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-auth-roles"), Some("admin"));

    // Without X-Forwarded-Host the host is unknown: refused, never judged by the
    // host-less rules.
    let r = h
        .get(
            "/oauth2/auth",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/dashboard"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}
