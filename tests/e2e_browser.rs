//! Browser login end to end: the gateway in-process, a REAL Keycloak (26.7.3, realm
//! `myorg` from `deploy/keycloak/`) and a real Chromium driven by
//! `tests/e2e/browser/session.mjs` (playwright-core).
//!
//! Every test is `#[ignore]`d: run them with `tests/e2e/run.sh`, which starts Keycloak, sets
//! `KEYCLOAK_URL`, makes sure Chromium and the driver's `node_modules` are there and runs
//! `cargo test --test e2e_browser -- --ignored --test-threads=1`. By hand, with a Keycloak
//! from `tests/e2e/keycloak.sh start`:
//!
//! ```sh
//! (cd tests/e2e/browser && npm ci)
//! KEYCLOAK_URL=http://127.0.0.1:PORT cargo test --test e2e_browser -- --ignored --test-threads=1
//! ```
//!
//! Screenshots go to `$E2E_OUTPUT/<test>/` (default `target/e2e-output/<test>/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e_support::KcAdmin;
use portcullis::server::{self, Running};
use portcullis::testing::{EchoUpstream, Seen};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Admin area for role `admin`, everything else for any signed-in user (browsers are sent
/// to Keycloak's login page).
const RULES: &str = r#"
[[rule]]
path = "/admin/**"
roles = ["admin"]

[[rule]]
path = "/**"
access = "authenticated"
"#;

/// Hands the upstream the session's access token, to compare it with Keycloak's view.
const WITH_TOKEN: &str = "[headers]\naccess_token = \"X-Auth-Token\"\n";

/// How long one driver command (a page load, a login) may take at most.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// Keycloak's base URL (no trailing slash), from `KEYCLOAK_URL`.
fn keycloak_url() -> String {
    match std::env::var("KEYCLOAK_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "KEYCLOAK_URL is not set: these tests need a running Keycloak and Chromium. \
             Run tests/e2e/run.sh, or start one with tests/e2e/keycloak.sh start and set \
             KEYCLOAK_URL from its state file."
        ),
    }
}

/// Where screenshots go: `$E2E_OUTPUT/<test>`, else `target/e2e-output/<test>`.
fn output_dir(test: &str) -> PathBuf {
    let base = match std::env::var_os("E2E_OUTPUT") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-output"),
    };
    let dir = base.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT's claims, without checking anything.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

// ---------------------------------------------------------------------------------------
// The gateway under test.

/// Keycloak, an echo upstream and the gateway on `127.0.0.1:{port}` with `public_url`
/// naming that port (the redirect URI Keycloak sends the browser back to).
struct Env {
    kc: String,
    public: String,
    upstream: EchoUpstream,
    gw: Running,
    out: PathBuf,
    /// The realm lock, shared; `None` when the test holds it exclusively itself.
    _realm: Option<e2e_support::SharedRealm>,
}

impl Env {
    async fn start(test: &str, extra: &str) -> Env {
        let realm = e2e_support::shared_realm().await;
        Env::launch(test, extra, |toml| toml, Some(realm)).await
    }

    /// For a test that holds `e2e_support::exclusive_realm()` itself: the gateway with
    /// `tokens.jwks_refresh = "1h"`, so that it has only the keys of its first fetch until
    /// a token names a `kid` it does not know.
    async fn start_exclusive(test: &str, extra: &str) -> Env {
        Env::launch(test, extra, e2e_support::hourly_jwks_refresh, None).await
    }

    /// The gateway with its configuration text passed through `edit` first.
    async fn launch(
        test: &str,
        extra: &str,
        edit: impl FnOnce(String) -> String,
        realm: Option<e2e_support::SharedRealm>,
    ) -> Env {
        let kc = keycloak_url();
        let upstream = EchoUpstream::start().await;
        let port = support::free_port();
        let public = format!("http://127.0.0.1:{port}");
        let toml = edit(support::config_toml_on(
            &format!("127.0.0.1:{port}"),
            &public,
            &format!("{kc}/realms/myorg"),
            &upstream.url(),
            &format!("{RULES}\n{extra}"),
        ));
        let gw = server::start(support::load(&toml))
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start against {kc}: {e}"));
        let env = Env {
            kc,
            public,
            upstream,
            gw,
            out: output_dir(test),
            _realm: realm,
        };
        env.wait_ready().await;
        env
    }

    /// Polls the admin `/readyz` until 200 (discovery done, Keycloak's keys loaded).
    async fn wait_ready(&self) {
        support::wait_ready(self.gw.admin_addr, Duration::from_secs(30)).await;
    }

    async fn browser(&self) -> Chromium {
        Chromium::start(&self.public, &self.out).await
    }

    /// What reached the upstream (path and query), without Chromium's own `/favicon.ico`
    /// requests.
    fn forwarded(&self) -> Vec<String> {
        self.upstream
            .seen()
            .into_iter()
            .map(|s| s.target)
            .filter(|t| t != "/favicon.ico")
            .collect()
    }

    /// `portcullis_session_refreshes_total{result="ok"}` from the admin `/metrics`.
    async fn refreshes_ok(&self) -> u64 {
        e2e_support::metric(
            self.gw.admin_addr,
            "portcullis_session_refreshes_total{result=\"ok\"}",
        )
        .await
    }

    /// Successful fetches of Keycloak's JWKS by this gateway.
    async fn jwks_fetches(&self) -> u64 {
        e2e_support::jwks_fetches(self.gw.admin_addr).await
    }

    async fn stop(self) {
        self.gw.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// The browser: `node tests/e2e/browser/session.mjs`, one JSON command per line on stdin,
// one JSON answer per line on stdout.

/// One hop of a navigation (every main-frame response, redirects included).
#[derive(Debug, Clone, serde::Deserialize)]
struct Hop {
    url: String,
    status: u16,
    location: Option<String>,
}

/// What the browser shows after a command.
#[derive(Debug, Clone, serde::Deserialize)]
struct Page {
    url: String,
    status: Option<u16>,
    body: String,
    title: String,
    on_gateway: bool,
    login_form: bool,
    chain: Vec<Hop>,
    screenshot: Option<String>,
}

impl Page {
    /// The echo upstream's report of the request behind this page.
    fn seen(&self) -> Seen {
        assert_eq!(
            self.status,
            Some(200),
            "expected a page from the upstream at {}, got {:?}: {}",
            self.url,
            self.status,
            self.body
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}) at {}: {}", self.url, self.body))
    }

    /// Keycloak's login form is showing: the password is being asked for.
    fn assert_login_form(&self, kc: &str, what: &str) {
        assert!(
            self.login_form && self.url.starts_with(kc) && !self.on_gateway,
            "{what}: expected Keycloak's login form, got {} ({:?}, title {:?}): {}\nchain: {:#?}",
            self.url,
            self.status,
            self.title,
            self.body.chars().take(600).collect::<String>(),
            self.chain
        );
    }

    fn assert_screenshot(&self) -> PathBuf {
        let p = PathBuf::from(
            self.screenshot
                .as_deref()
                .expect("a screenshot was asked for"),
        );
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG screenshot",
            p.display()
        );
        p
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct BrowserCookie {
    name: String,
    value: String,
    path: String,
    #[serde(rename = "httpOnly")]
    http_only: bool,
    secure: bool,
    #[serde(rename = "sameSite")]
    same_site: String,
}

struct Chromium {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Chromium {
    async fn start(gateway: &str, out: &Path) -> Chromium {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/browser/session.mjs");
        let modules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/e2e/browser/node_modules/playwright-core");
        assert!(
            modules.is_dir(),
            "{} is missing: run `npm ci` in tests/e2e/browser (tests/e2e/run.sh does)",
            modules.display()
        );
        let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg(&script)
            .env("GATEWAY_URL", gateway)
            .env("OUTPUT_DIR", out)
            .env("E2E_TIMEOUT_MS", "30000")
            .env("E2E_MAX_MS", "240000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (Node 20+ is needed): {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        // With E2E_TRACE set the driver logs every command; show that as it happens.
        let trace = std::env::var_os("E2E_TRACE").is_some();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                if trace {
                    eprint!("{text}");
                }
                sink.lock().unwrap().push_str(&text);
            }
        });
        let stdin = child.stdin.take();
        let mut b = Chromium {
            child,
            stdin,
            lines,
            stderr,
        };
        let ready = b.answer().await;
        assert_eq!(
            ready["ready"], true,
            "the browser driver did not start: {ready}"
        );
        b
    }

    fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap();
        let start = s.len().saturating_sub(2000);
        s.get(start..).unwrap_or(&s).to_owned()
    }

    async fn answer(&mut self) -> Value {
        match tokio::time::timeout(STEP_TIMEOUT, self.lines.recv()).await {
            Ok(Some(line)) => serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("the driver wrote something that is not JSON ({e}): {line}")
            }),
            Ok(None) => panic!(
                "the browser driver exited early; its stderr:\n{}",
                self.stderr_tail()
            ),
            Err(_) => panic!(
                "the browser driver did not answer within {STEP_TIMEOUT:?}; its stderr:\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// Sends a command and returns the answer, whatever it says.
    async fn send(&mut self, cmd: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("the driver is open");
        writeln!(stdin, "{cmd}").expect("write to the driver");
        stdin.flush().expect("flush");
        self.answer().await
    }

    /// Sends a page command that must succeed.
    async fn page(&mut self, cmd: Value) -> Page {
        let v = self.send(cmd.clone()).await;
        assert_eq!(
            v["ok"],
            true,
            "browser command {cmd} failed: {}\nat {} ({}), screenshot {}\npage: {}\nchain: {}\ndriver stderr:\n{}",
            v["error"],
            v["url"],
            v["status"],
            v["screenshot"],
            v["body"].as_str().unwrap_or("").chars().take(800).collect::<String>(),
            v["chain"],
            self.stderr_tail()
        );
        serde_json::from_value(v).expect("a page snapshot")
    }

    /// Opens a gateway path (typed into the address bar).
    async fn goto(&mut self, path: &str, shot: Option<&str>) -> Page {
        self.page(json!({"cmd": "goto", "path": path, "shot": shot}))
            .await
    }

    /// Fills and submits Keycloak's login form on the current page.
    async fn login(&mut self, user: &str, password: &str, shot: Option<&str>) -> Page {
        self.page(json!({"cmd": "login", "username": user, "password": password, "shot": shot}))
            .await
    }

    /// Every cookie of the browser context.
    async fn cookies(&mut self) -> Vec<BrowserCookie> {
        let v = self.send(json!({"cmd": "cookies"})).await;
        assert_eq!(v["ok"], true, "{v}");
        serde_json::from_value(v["cookies"].clone()).expect("cookies")
    }

    /// The gateway's session cookies (`portcullis`, `portcullis_1`, ...; not login cookies).
    async fn session_cookies(&mut self) -> Vec<BrowserCookie> {
        self.cookies()
            .await
            .into_iter()
            .filter(|c| is_session_cookie(&c.name))
            .collect()
    }

    /// Closes the browser and waits (bounded) for the driver to exit.
    async fn close(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", json!({"cmd": "close"}));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Drop kills it.
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Normally `close` has run. After a failed assertion: end the driver's stdin, which
        // makes it close Chromium and exit (so Playwright reaps the browser's processes);
        // kill it if that takes too long. (Killed, node closes Chromium's DevTools pipe
        // and Chromium exits too.)
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_session_cookie(name: &str) -> bool {
    name == "portcullis"
        || name
            .strip_prefix("portcullis_")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// `Cookie` header value for these cookies.
fn cookie_header(cookies: &[BrowserCookie]) -> String {
    cookies
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The upstream saw `user` with (at least) these roles, and none of the gateway's cookies.
fn assert_identity(seen: &Seen, user: &str, email: &str, roles: &[&str], not_roles: &[&str]) {
    assert_eq!(seen.header("x-auth-user"), Some(user), "{seen:?}");
    assert_eq!(seen.header("x-auth-email"), Some(email), "{seen:?}");
    assert!(
        seen.header("x-auth-subject").is_some_and(|s| !s.is_empty()),
        "{seen:?}"
    );
    let have: Vec<&str> = seen
        .header("x-auth-roles")
        .unwrap_or_default()
        .split(',')
        .collect();
    for r in roles {
        assert!(have.contains(r), "X-Auth-Roles {have:?} lacks {r}");
    }
    for r in not_roles {
        assert!(!have.contains(r), "X-Auth-Roles {have:?} has {r}");
    }
    for c in seen.header_all("cookie") {
        assert!(
            !c.split(';')
                .any(|p| p.trim().to_ascii_lowercase().starts_with("portcullis")),
            "the gateway's cookies must not reach the upstream: {c}"
        );
    }
    assert_eq!(
        seen.header("authorization"),
        None,
        "a browser session sends no Authorization upstream"
    );
}

/// Keycloak's SSO session id (`sid`) of the access token the upstream received.
fn keycloak_sid(seen: &Seen) -> String {
    let token = seen
        .header("x-auth-token")
        .expect("X-Auth-Token (headers.access_token)");
    claims(token)["sid"]
        .as_str()
        .expect("sid in the access token")
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn alice_logs_in_and_lands_on_the_original_path_with_her_identity() {
    let env = Env::start("alice", "").await;
    let mut b = env.browser().await;

    // Not signed in: the gateway sends the browser to Keycloak's login page.
    let p = b.goto("/profile?x=1", Some("keycloak-login")).await;
    p.assert_login_form(&env.kc, "first visit");
    p.assert_screenshot();
    let first = &p.chain[0];
    assert_eq!(first.url, format!("{}/profile?x=1", env.public));
    assert_eq!(first.status, 302, "{:?}", p.chain);
    let authorize = url::Url::parse(first.location.as_deref().expect("Location")).unwrap();
    assert_eq!(
        authorize.as_str().split('?').next().unwrap(),
        format!("{}/realms/myorg/protocol/openid-connect/auth", env.kc),
        "Keycloak's authorization endpoint, from discovery"
    );
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(q.get("client_id").map(String::as_str), Some("gateway"));
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    for k in ["code_challenge", "state", "nonce"] {
        assert!(
            q.get(k).is_some_and(|v| v.len() >= 16),
            "{k} in {authorize}"
        );
    }
    assert!(
        q.get("scope")
            .is_some_and(|s| s.split(' ').any(|s| s == "openid")),
        "{authorize}"
    );
    assert_eq!(
        q.get("redirect_uri"),
        Some(&format!("{}/oauth2/callback", env.public))
    );
    assert!(
        env.upstream.seen().is_empty(),
        "nothing reaches the upstream before the login"
    );

    // Log in: back on the original path and query, with alice's identity at the upstream.
    let p = b.login("alice", "alice", Some("alice-landing")).await;
    assert_eq!(
        p.url,
        format!("{}/profile?x=1", env.public),
        "{:?}",
        p.chain
    );
    let shot = p.assert_screenshot();
    assert!(
        p.chain.iter().any(|h| h
            .url
            .starts_with(&format!("{}/oauth2/callback?", env.public))
            && h.status == 302),
        "the login went through the gateway's callback: {:?}",
        p.chain
    );
    let seen = p.seen();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/profile?x=1");
    assert_identity(&seen, "alice", "alice@example.com", &["admin", "user"], &[]);
    assert_eq!(
        env.forwarded(),
        ["/profile?x=1"],
        "exactly one request reached the upstream"
    );

    // The session cookie: HttpOnly, SameSite=Lax, Path=/, not Secure on plain http; the
    // login-attempt cookie is gone.
    let cookies = b.cookies().await;
    let session: Vec<_> = cookies
        .iter()
        .filter(|c| is_session_cookie(&c.name))
        .collect();
    assert!(
        !session.is_empty(),
        "a session cookie: {:?}",
        cookies.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    // The session may be split over several cookies (with this realm's tokens it is about
    // 4.7 kB: `portcullis` + `portcullis_1`); each part stays within the browser's
    // 4096-byte limit for name and value.
    for c in &session {
        assert!(
            c.name.len() + c.value.len() <= 4096,
            "{} is {} bytes",
            c.name,
            c.value.len()
        );
        assert!(c.http_only, "{c:?}");
        assert_eq!(c.same_site, "Lax", "{c:?}");
        assert_eq!(c.path, "/", "{c:?}");
        assert!(!c.secure, "public_url is http: {c:?}");
    }
    assert!(
        !cookies
            .iter()
            .any(|c| c.name.starts_with("portcullis_login_")),
        "the login-attempt cookie is cleared after the callback: {:?}",
        cookies.iter().map(|c| &c.name).collect::<Vec<_>>()
    );

    // The admin area is open to her.
    let p = b.goto("/admin/", Some("alice-admin")).await;
    assert_eq!(p.url, format!("{}/admin/", env.public));
    let seen = p.seen();
    assert_eq!(seen.target, "/admin/");
    assert_identity(&seen, "alice", "alice@example.com", &["admin", "user"], &[]);

    // userinfo describes the same session.
    let p = b.goto("/oauth2/userinfo", None).await;
    assert_eq!(p.status, Some(200), "{}", p.body);
    let info: Value = serde_json::from_str(&p.body).expect("userinfo JSON");
    assert_eq!(info["user"], "alice", "{info}");
    assert_eq!(info["email"], "alice@example.com", "{info}");
    assert!(
        info["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("admin"))),
        "{info}"
    );
    assert_eq!(
        env.forwarded(),
        ["/profile?x=1", "/admin/"],
        "userinfo is never forwarded"
    );

    eprintln!("landing page screenshot: {}", shot.display());
    b.close().await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn bob_gets_the_forbidden_page_for_admin_and_can_log_out_from_it() {
    let env = Env::start("bob", WITH_TOKEN).await;
    let kc_admin = KcAdmin::login(&env.kc).await;
    let mut b = env.browser().await;

    let p = b.goto("/admin/", None).await;
    p.assert_login_form(&env.kc, "first visit");
    let p = b.login("bob", "bob", Some("bob-forbidden")).await;
    assert_eq!(p.url, format!("{}/admin/", env.public), "{:?}", p.chain);
    assert_eq!(p.status, Some(403), "{}", p.body);
    p.assert_screenshot();
    assert!(p.title.contains("403"), "title {:?}", p.title);
    assert!(
        p.body.contains("<!doctype html>") && p.body.contains("<strong>bob</strong>"),
        "the gateway's HTML page names bob: {}",
        p.body
    );
    assert!(
        env.forwarded().is_empty(),
        "a denial never reaches the upstream: {:?}",
        env.forwarded()
    );

    // Elsewhere bob is signed in, without the admin role.
    let p = b.goto("/profile", None).await;
    let seen = p.seen();
    assert_identity(&seen, "bob", "bob@example.com", &["user"], &["admin"]);
    let sid = keycloak_sid(&seen);
    assert!(
        kc_admin.sessions("bob").await.contains(&sid),
        "bob's SSO session {sid} at Keycloak"
    );

    // The 403 page's "Log out" button (a same-origin POST) ends both sessions.
    let p = b.goto("/admin/", None).await;
    assert_eq!(p.status, Some(403));
    let p = b
        .page(json!({"cmd": "click", "selector": "form[action$='/logout'] button", "shot": "bob-after-logout"}))
        .await;
    assert!(
        p.chain.iter().any(|h| h.url.starts_with(&format!(
            "{}/realms/myorg/protocol/openid-connect/logout?",
            env.kc
        ))),
        "the gateway sent the browser to Keycloak's end-session endpoint: {:?}",
        p.chain
    );
    p.assert_login_form(&env.kc, "after logging out from the 403 page");
    assert!(
        b.session_cookies().await.is_empty(),
        "the session cookie is gone"
    );
    assert!(
        !kc_admin.sessions("bob").await.contains(&sid),
        "Keycloak's session {sid} for bob ended"
    );
    assert_eq!(
        env.forwarded(),
        ["/profile"],
        "only the allowed page reached the upstream"
    );

    b.close().await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn logout_ends_the_keycloak_session_and_the_old_cookie() {
    let env = Env::start("logout", WITH_TOKEN).await;
    let kc_admin = KcAdmin::login(&env.kc).await;
    let mut b = env.browser().await;

    let p = b.goto("/profile", None).await;
    p.assert_login_form(&env.kc, "first visit");
    let p = b.login("alice", "alice", None).await;
    let seen = p.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    let sid = keycloak_sid(&seen);

    // The session cookie as the browser holds it; replayed from Rust it works...
    let old = cookie_header(&b.session_cookies().await);
    assert!(!old.is_empty());
    let replay = support::get(
        env.gw.addr,
        "/profile?replay=1",
        &[("Cookie", &old), ("Accept", "application/json")],
    )
    .await;
    assert_identity(
        &replay.seen(),
        "alice",
        "alice@example.com",
        &["admin"],
        &[],
    );
    assert!(
        kc_admin.sessions("alice").await.contains(&sid),
        "alice's SSO session {sid} at Keycloak"
    );

    // A logout link followed from another origin (Keycloak's, which is same-site but
    // cross-origin) ends nothing: the gateway asks for confirmation.
    let p = b
        .page(json!({"cmd": "goto", "url": format!("{}/realms/myorg/.well-known/openid-configuration", env.kc)}))
        .await;
    assert!(!p.on_gateway);
    let p = b
        .page(json!({"cmd": "assign", "path": "/oauth2/logout", "shot": "cross-origin-logout"}))
        .await;
    assert_eq!(
        p.url,
        format!("{}/oauth2/logout", env.public),
        "{:?}",
        p.chain
    );
    assert_eq!(p.status, Some(200), "{}", p.body);
    assert!(
        p.body.contains("Do you want to log out?") && p.body.contains("method=\"post\""),
        "the confirmation page: {}",
        p.body
    );
    assert_eq!(b.session_cookies().await.len(), old.split("; ").count());
    let replay = support::get(
        env.gw.addr,
        "/profile?replay=cross-origin",
        &[("Cookie", &old), ("Accept", "application/json")],
    )
    .await;
    assert_eq!(replay.status, 200, "still signed in: {}", replay.body);
    assert!(kc_admin.sessions("alice").await.contains(&sid));

    // ... then alice logs out with a same-origin navigation to /oauth2/logout.
    b.goto("/profile?before-logout=1", None).await.seen();
    let p = b
        .page(json!({"cmd": "assign", "path": "/oauth2/logout", "shot": "after-logout"}))
        .await;
    let hops: Vec<&str> = p.chain.iter().map(|h| h.url.as_str()).collect();
    let end_session = p
        .chain
        .iter()
        .find(|h| {
            h.url.starts_with(&format!(
                "{}/realms/myorg/protocol/openid-connect/logout?",
                env.kc
            ))
        })
        .unwrap_or_else(|| panic!("no visit to Keycloak's end-session endpoint: {hops:?}"));
    let q: std::collections::HashMap<String, String> = url::Url::parse(&end_session.url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(q.contains_key("id_token_hint"), "{}", end_session.url);
    assert_eq!(q.get("client_id").map(String::as_str), Some("gateway"));
    assert_eq!(
        q.get("post_logout_redirect_uri"),
        Some(&format!("{}/", env.public))
    );
    assert_eq!(
        end_session.status, 302,
        "Keycloak logs out without asking (id_token_hint): {hops:?}"
    );
    // Back at the gateway's "/", which is protected: Keycloak asks for the password.
    p.assert_login_form(&env.kc, "right after the logout");
    assert!(
        b.session_cookies().await.is_empty(),
        "the session cookie is gone"
    );
    assert!(
        !kc_admin.sessions("alice").await.contains(&sid),
        "Keycloak's session {sid} for alice ended"
    );

    // A protected path again: the password is asked for again (no silent SSO login).
    let p = b.goto("/profile?again=1", Some("login-again")).await;
    p.assert_login_form(&env.kc, "visiting again after the logout");

    // The old cookie is dead, even replayed.
    let before = env.forwarded();
    let replay = support::get(
        env.gw.addr,
        "/profile?replay=2",
        &[("Cookie", &old), ("Accept", "application/json")],
    )
    .await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert_eq!(
        replay.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
    assert_eq!(env.forwarded(), before, "a dead cookie reaches nothing");

    // And logging in again works.
    let p = b.login("alice", "alice", None).await;
    assert_eq!(p.url, format!("{}/profile?again=1", env.public));
    assert_identity(&p.seen(), "alice", "alice@example.com", &["admin"], &[]);

    b.close().await;
    env.stop().await;
}

/// The gateway client's access tokens live this long during the refresh test.
const SHORT_LIFESPAN: u64 = 10;

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn session_survives_access_token_expiry_by_refreshing() {
    with_short_lifespan(refresh_scenario()).await;
}

/// Runs `scenario` with the `gateway` client's access tokens living [`SHORT_LIFESPAN`]
/// seconds, holding the realm exclusively; puts the previous lifespan back afterwards,
/// also when the scenario fails.
async fn with_short_lifespan(scenario: impl std::future::Future<Output = ()> + Send + 'static) {
    restoring_client_attribute(
        "access.token.lifespan",
        Some(&SHORT_LIFESPAN.to_string()),
        scenario,
    )
    .await;
}

/// Runs `scenario` holding the realm exclusively, with the `gateway` client's attribute
/// `key` set to `value` first (when given; the scenario may also set it itself), and puts
/// the previous value back afterwards, also when the scenario fails.
async fn restoring_client_attribute(
    key: &str,
    value: Option<&str>,
    scenario: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let _realm = e2e_support::exclusive_realm().await;
    let kc = keycloak_url();
    let admin = KcAdmin::login(&kc).await;
    let previous = admin.client_attribute("gateway", key).await;
    if let Some(v) = value {
        admin.set_client_attribute("gateway", key, v).await;
    }
    // Run the scenario as its own task so that the realm is restored even if it fails.
    let outcome = tokio::spawn(scenario).await;
    // The admin token lives 60 s; take a fresh one.
    KcAdmin::login(&kc)
        .await
        .set_client_attribute("gateway", key, &previous)
        .await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => panic!("the scenario did not finish: {e}"),
        }
    }
}

/// Waits until the clock has passed the access token's `exp`.
async fn until_expired(token: &str) {
    let exp = claims(token)["exp"].as_u64().unwrap();
    let wait = exp.saturating_sub(unix_now()) + 1;
    assert!(wait <= SHORT_LIFESPAN + 5, "the token expires in {wait} s");
    let deadline = Instant::now() + Duration::from_secs(wait + 5);
    while unix_now() <= exp {
        assert!(Instant::now() < deadline, "the clock did not pass {exp}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn refresh_scenario() {
    // `with_short_lifespan` holds the realm lock.
    let env = Env::launch("refresh", WITH_TOKEN, |toml| toml, None).await;
    let mut b = env.browser().await;

    let p = b.goto("/profile", None).await;
    p.assert_login_form(&env.kc, "first visit");
    let p = b.login("alice", "alice", None).await;
    let seen = p.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    let mut token = seen
        .header("x-auth-token")
        .expect("X-Auth-Token")
        .to_owned();
    let c = claims(&token);
    let lifespan = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(
        lifespan, SHORT_LIFESPAN,
        "the client's access.token.lifespan applies: {c}"
    );
    let mut cookie = cookie_header(&b.session_cookies().await);
    let mut refreshes = env.refreshes_ok().await;
    assert_eq!(refreshes, 0, "no refresh right after the login");

    // Twice: wait until the access token has expired, then the same browser session still
    // reaches the upstream as alice, with a new access token (the second round uses the
    // refresh token the first refresh returned).
    for round in 1..=2u64 {
        until_expired(&token).await;

        let path = format!("/profile?round={round}");
        let p = b.goto(&path, Some(&format!("after-expiry-{round}"))).await;
        assert_eq!(
            p.url,
            format!("{}{path}", env.public),
            "no new login: {:?}",
            p.chain
        );
        let seen = p.seen();
        assert_eq!(seen.target, path);
        assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
        let fresh = seen
            .header("x-auth-token")
            .expect("X-Auth-Token")
            .to_owned();
        assert_ne!(fresh, token, "round {round}: a refreshed access token");
        let fc = claims(&fresh);
        assert!(
            fc["exp"].as_u64().unwrap() > unix_now(),
            "round {round}: the new access token is valid: {fc}"
        );
        assert_eq!(fc["sub"], c["sub"]);
        let now_refreshes = env.refreshes_ok().await;
        assert!(
            now_refreshes > refreshes,
            "round {round}: the gateway counted a successful refresh"
        );
        refreshes = now_refreshes;
        let now_cookie = cookie_header(&b.session_cookies().await);
        assert_ne!(now_cookie, cookie, "the session cookie was re-sealed");
        token = fresh;
        cookie = now_cookie;
    }

    b.close().await;
    env.stop().await;
}

/// Logs out with a same-origin navigation to `/oauth2/logout` and returns the ID token the
/// gateway handed Keycloak's end-session endpoint as `id_token_hint` (Keycloak accepted
/// it: it logged out without asking).
async fn logout_id_token(env: &Env, b: &mut Chromium) -> String {
    let p = b
        .page(json!({"cmd": "assign", "path": "/oauth2/logout"}))
        .await;
    let end_session = p
        .chain
        .iter()
        .find(|h| {
            h.url.starts_with(&format!(
                "{}/realms/myorg/protocol/openid-connect/logout?",
                env.kc
            ))
        })
        .unwrap_or_else(|| panic!("no visit to Keycloak's end-session endpoint: {:?}", p.chain));
    assert_eq!(
        end_session.status, 302,
        "Keycloak accepted the id_token_hint: {:?}",
        p.chain
    );
    url::Url::parse(&end_session.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "id_token_hint")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no id_token_hint in {}", end_session.url))
}

/// The `kid` of the access token the upstream received.
fn access_token_kid(seen: &Seen) -> String {
    e2e_support::kid(seen.header("x-auth-token").expect("X-Auth-Token"))
}

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn login_after_a_key_rotation_verifies_the_id_token_by_the_new_key() {
    // This test changes the realm's keys: no other test of this binary runs meanwhile.
    let _realm = e2e_support::exclusive_realm().await;
    let env = Env::start_exclusive("rotation-login", WITH_TOKEN).await;
    assert_eq!(env.jwks_fetches().await, 1, "one key fetch at start");

    // alice signs in while the gateway's keys are current.
    let mut alice = env.browser().await;
    alice
        .goto("/profile", None)
        .await
        .assert_login_form(&env.kc, "alice's first visit");
    let seen = alice.login("alice", "alice", None).await.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    let old_kid = access_token_kid(&seen);

    let rotation = KcAdmin::login(&env.kc).await.rotate_signing_key().await;
    assert!(rotation.old_kids.contains(&old_kid), "{rotation:?}");

    // bob signs in, in another browser: Keycloak signs his ID token with the new key, which
    // is not among the keys the gateway fetched at start.
    let mut bob = env.browser().await;
    bob.goto("/profile?after-rotation=1", None)
        .await
        .assert_login_form(&env.kc, "bob's first visit");
    let p = bob.login("bob", "bob", Some("bob-after-rotation")).await;
    assert_eq!(
        (p.url.as_str(), p.status),
        (
            format!("{}/profile?after-rotation=1", env.public).as_str(),
            Some(200)
        ),
        "bob's login after the rotation: {}\nchain: {:?}",
        p.body.chars().take(600).collect::<String>(),
        p.chain
    );
    let seen = p.seen();
    assert_identity(&seen, "bob", "bob@example.com", &["user"], &["admin"]);
    assert_eq!(access_token_kid(&seen), rotation.new_kid);
    assert_eq!(
        env.jwks_fetches().await,
        2,
        "the gateway fetched the keys once more, for the ID token's unknown kid"
    );
    // The session keeps that ID token: it is what the logout hands back to Keycloak.
    let id_token = logout_id_token(&env, &mut bob).await;
    assert_eq!(e2e_support::kid(&id_token), rotation.new_kid);
    assert_eq!(claims(&id_token)["typ"], "ID");
    assert_eq!(claims(&id_token)["preferred_username"], "bob");

    // alice's session from before the rotation goes on, although the gateway's keys no
    // longer have the old key (the session's tokens were verified when it was created).
    let seen = alice.goto("/profile?still=1", None).await.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    assert_eq!(access_token_kid(&seen), old_kid);

    alice.close().await;
    bob.close().await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn session_refreshed_after_a_key_rotation_keeps_its_user() {
    with_short_lifespan(rotation_refresh_scenario()).await;
}

async fn rotation_refresh_scenario() {
    // `with_short_lifespan` holds the realm lock.
    let env = Env::start_exclusive("rotation-refresh", WITH_TOKEN).await;
    let mut b = env.browser().await;

    b.goto("/profile", None)
        .await
        .assert_login_form(&env.kc, "first visit");
    let seen = b.login("alice", "alice", None).await.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    let token = seen
        .header("x-auth-token")
        .expect("X-Auth-Token")
        .to_owned();
    let c = claims(&token);
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        SHORT_LIFESPAN,
        "{c}"
    );
    let old_kid = e2e_support::kid(&token);

    // The key rotates during her session; then her access token expires.
    let rotation = KcAdmin::login(&env.kc).await.rotate_signing_key().await;
    assert!(rotation.old_kids.contains(&old_kid), "{rotation:?}");
    until_expired(&token).await;
    assert_eq!(env.jwks_fetches().await, 1, "no key fetch since the start");
    assert_eq!(env.refreshes_ok().await, 0);

    // Her next request makes the gateway refresh the session; Keycloak's new ID token is
    // signed by the new key.
    let path = "/profile?after-rotation=1";
    let p = b.goto(path, Some("after-rotation")).await;
    assert!(
        p.url == format!("{}{path}", env.public) && p.chain.len() == 1,
        "still signed in, no new login: {} ({:?}): {}\nchain: {:?}",
        p.url,
        p.status,
        p.body.chars().take(600).collect::<String>(),
        p.chain
    );
    let seen = p.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    let fresh = seen.header("x-auth-token").expect("X-Auth-Token");
    assert_ne!(fresh, token, "a refreshed access token");
    assert_eq!(e2e_support::kid(fresh), rotation.new_kid);
    assert_eq!(claims(fresh)["sub"], c["sub"]);
    assert_eq!(env.refreshes_ok().await, 1, "one successful refresh");
    assert_eq!(
        env.jwks_fetches().await,
        2,
        "the gateway fetched the keys once more, for the ID token's unknown kid"
    );
    // The session now holds the refreshed ID token.
    let id_token = logout_id_token(&env, &mut b).await;
    assert_eq!(e2e_support::kid(&id_token), rotation.new_kid);
    assert_eq!(claims(&id_token)["sub"], c["sub"]);

    b.close().await;
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn an_admin_ending_alices_keycloak_session_ends_her_gateway_session() {
    // The scenario points the back-channel logout URL at its own gateway.
    restoring_client_attribute("backchannel.logout.url", None, backchannel_scenario()).await;
}

async fn backchannel_scenario() {
    let env = Env::launch("backchannel-logout", WITH_TOKEN, |t| t, None).await;
    let admin = KcAdmin::login(&env.kc).await;
    // Keycloak calls this gateway (on its test port) when a session of alice ends there.
    admin
        .set_client_attribute(
            "gateway",
            "backchannel.logout.url",
            &format!("{}/oauth2/backchannel-logout", env.public),
        )
        .await;
    let mut b = env.browser().await;
    let p = b.goto("/profile", None).await;
    p.assert_login_form(&env.kc, "first visit");
    let p = b.login("alice", "alice", None).await;
    let seen = p.seen();
    assert_identity(&seen, "alice", "alice@example.com", &["admin"], &[]);
    let sid = keycloak_sid(&seen);
    let cookie = cookie_header(&b.session_cookies().await);
    let replay = support::get(
        env.gw.addr,
        "/profile?replay=before",
        &[("Cookie", &cookie), ("Accept", "application/json")],
    )
    .await;
    assert_eq!(replay.status, 200, "{}", replay.body);

    // An administrator ends alice's SSO session through Keycloak's admin API.
    let r = admin
        .call("DELETE", &format!("/sessions/{sid}"), None)
        .await;
    assert!(
        r.status == 204 || r.status == 200,
        "DELETE session: {} {}",
        r.status,
        r.body
    );
    e2e_support::poll(
        "Keycloak's back-channel logout reaching the gateway",
        Duration::from_secs(20),
        || async {
            let n = e2e_support::metric(
                env.gw.admin_addr,
                "portcullis_sessions_ended_total{reason=\"backchannel\"}",
            )
            .await;
            (n >= 1).then_some(())
        },
    )
    .await;

    // Her cookie is dead, replayed or in the browser: the next page asks for the password.
    let before = env.forwarded();
    let replay = support::get(
        env.gw.addr,
        "/profile?replay=after",
        &[("Cookie", &cookie), ("Accept", "application/json")],
    )
    .await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert_eq!(env.forwarded(), before, "a dead session reaches nothing");
    let p = b
        .goto("/profile?after=1", Some("after-backchannel-logout"))
        .await;
    p.assert_login_form(&env.kc, "after the admin ended her session");

    b.close().await;
    env.stop().await;
}

// ---------------------------------------------------------------------------------------
// Step-up: the realm's browser flow has levels of assurance (password = `silver`,
// password + one-time code = `gold`, deploy/keycloak/myorg-realm.json).

/// A TOTP code (RFC 6238: HMAC-SHA1, 30 s, 6 digits) for Keycloak's raw OTP secret.
fn totp(secret: &[u8], at: u64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = ring::hmac::sign(&key, &(at / 30).to_be_bytes());
    let h = mac.as_ref();
    let offset = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

#[test]
fn totp_matches_the_rfc_6238_test_vector() {
    // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) ends in 287082.
    assert_eq!(totp(b"12345678901234567890", 59), "287082");
}

/// Creates (or replaces) `olivia`, an admin of the gateway client with a password and a
/// one-time-code credential whose secret the test knows, through Keycloak's admin API.
async fn olivia_with_a_second_factor(admin: &KcAdmin, secret: &str) {
    let secret_data = json!({ "value": secret }).to_string();
    let credential_data = json!({
        "subType": "totp", "digits": 6, "counter": 0, "period": 30, "algorithm": "HmacSHA1"
    })
    .to_string();
    let body = json!({
        "ifResourceExists": "OVERWRITE",
        "users": [{
            "username": "olivia",
            "enabled": true,
            "email": "olivia@example.com",
            "emailVerified": true,
            "firstName": "Olivia",
            "lastName": "Operator",
            "credentials": [
                {"type": "password", "value": "olivia", "temporary": false},
                {"type": "otp", "userLabel": "e2e", "secretData": secret_data, "credentialData": credential_data}
            ],
            "clientRoles": {"gateway": ["admin", "user"]},
            "requiredActions": []
        }]
    });
    let r = admin.call("POST", "/partialImport", Some(&body)).await;
    assert_eq!(r.status, 200, "partial import of olivia: {}", r.body);
}

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn a_password_reaches_profile_and_admin_steps_up_to_a_one_time_code() {
    let realm = e2e_support::shared_realm().await;
    let env = Env::launch(
        "step-up",
        WITH_TOKEN,
        |toml| {
            toml.replacen(
                "roles = [\"admin\"]\n",
                "roles = [\"admin\"]\nacr = [\"gold\"]\n",
                1,
            )
        },
        Some(realm),
    )
    .await;
    let secret: String = portcullis::auth::session::random_token(15)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    olivia_with_a_second_factor(&KcAdmin::login(&env.kc).await, &secret).await;
    let mut b = env.browser().await;

    // A password is enough for /profile: no level is asked for, Keycloak says silver.
    let p = b.goto("/profile", None).await;
    p.assert_login_form(&env.kc, "first visit");
    let p = b.login("olivia", "olivia", Some("step-up-password")).await;
    let seen = p.seen();
    assert_eq!(seen.target, "/profile");
    assert_eq!(seen.header("x-auth-user"), Some("olivia"));
    let token = seen
        .header("x-auth-token")
        .expect("the access token")
        .to_owned();
    assert_eq!(claims(&token)["acr"], "silver", "{}", claims(&token));

    // /admin needs gold: the gateway asks Keycloak for it, Keycloak asks for the code only.
    let p = b.goto("/admin/users?page=2", None).await;
    assert!(
        p.chain
            .iter()
            .any(|h| h.url.contains("/protocol/openid-connect/auth?")
                && h.url.contains("acr_values=gold")),
        "the gateway asked for the rule's level: {:?}",
        p.chain
    );
    assert!(
        !p.on_gateway && !p.login_form,
        "the one-time code is asked for, not the password: {} {}",
        p.url,
        p.body.chars().take(400).collect::<String>()
    );
    assert_eq!(env.forwarded(), ["/profile"], "nothing reached /admin yet");
    let code = totp(secret.as_bytes(), unix_now());
    let p = b
        .page(json!({"cmd": "form", "fields": {"#otp": code}, "submit": "#kc-login", "shot": "step-up-otp"}))
        .await;
    p.assert_screenshot();
    let seen = p.seen();
    assert_eq!(seen.target, "/admin/users?page=2", "back to the same page");
    let token = seen
        .header("x-auth-token")
        .expect("the access token")
        .to_owned();
    assert_eq!(claims(&token)["acr"], "gold", "{}", claims(&token));

    // The stronger session serves both pages without another trip to Keycloak.
    for path in ["/admin/", "/profile"] {
        let p = b.goto(path, None).await;
        assert!(
            p.chain.iter().all(|h| h.url.starts_with(&env.public)),
            "{path}: {:?}",
            p.chain
        );
        assert_eq!(p.seen().header("x-auth-user"), Some("olivia"));
    }
    let started = e2e_support::metric(
        env.gw.admin_addr,
        "portcullis_step_ups_total{result=\"started\"}",
    )
    .await;
    let completed = e2e_support::metric(
        env.gw.admin_addr,
        "portcullis_step_ups_total{result=\"completed\"}",
    )
    .await;
    assert_eq!((started, completed), (1, 1));

    b.close().await;
    env.stop().await;
}

// ---------------------------------------------------------------------------------------
// WebSockets bound to their session.

#[tokio::test]
#[ignore = "needs Keycloak and Chromium: run tests/e2e/run.sh"]
async fn a_websocket_of_alices_page_closes_when_she_logs_out_in_another_tab() {
    let realm = e2e_support::shared_realm().await;
    let env = Env::launch(
        "websocket",
        "",
        |toml| toml.replacen("[session]\n", "[session]\nwebsocket_check = \"1s\"\n", 1),
        Some(realm),
    )
    .await;
    let mut b = env.browser().await;
    let p = b.goto("/ws-page", None).await;
    p.assert_login_form(&env.kc, "first visit");
    b.login("alice", "alice", None).await;
    let open = b
        .send(json!({"cmd": "wait_text", "selector": "#state", "contains": "echo: hello", "timeout_ms": 15000}))
        .await;
    assert_eq!(
        open["ok"], true,
        "the page's WebSocket echoes through the gateway: {open}"
    );
    assert!(
        env.forwarded().iter().any(|t| t == "/ws-echo"),
        "the upgrade reached the upstream: {:?}",
        env.forwarded()
    );

    // Another tab of the same browser logs out.
    let t = b.send(json!({"cmd": "newtab"})).await;
    assert_eq!(t["ok"], true, "{t}");
    let p = b.goto("/oauth2/logout", Some("websocket-logout")).await;
    p.assert_login_form(&env.kc, "after logging out in the second tab");
    let back = b.send(json!({"cmd": "tab", "index": 0})).await;
    assert_eq!(back["ok"], true, "{back}");
    let closed = b
        .send(json!({"cmd": "wait_text", "selector": "#state", "contains": "closed", "timeout_ms": 10000}))
        .await;
    assert_eq!(
        closed["ok"], true,
        "the socket closed after the logout: {closed}"
    );
    let text = closed["text"].as_str().unwrap_or("");
    assert!(
        text.contains("code=1008") && text.contains("session ended"),
        "closed by the gateway's close frame: {text}"
    );
    let n = e2e_support::metric(
        env.gw.admin_addr,
        "portcullis_websockets_closed_by_session_end_total",
    )
    .await;
    assert_eq!(n, 1);

    b.close().await;
    env.stop().await;
}
