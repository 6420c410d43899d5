//! Shared test harness: an in-process provider, an echo upstream and the gateway, all on
//! `127.0.0.1:0`, plus a raw HTTP/1.1 client that can send requests no library would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use figment::providers::{Format, Toml};
use figment::Figment;
use portcullis::server::{self, Running};
use portcullis::testing::{EchoUpstream, Seen, TestIdp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod nginx;
pub mod otelcol;
pub mod redis;

pub const SESSION_SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// The rules of the tutorial's resource server, plus an admin area and a two-scope rule.
pub const TUTORIAL_RULES: &str = r#"
[[rule]]
path = "/api/public"
access = "public"

[[rule]]
path = "/api/private"

[[rule]]
path = "/api/private-scoped/**"
scopes = ["test_api_access"]

[[rule]]
path = "/api/two-scopes"
scopes = ["test_api_access", "write"]

[[rule]]
path = "/admin/**"
roles = ["admin"]

[[rule]]
path = "/public/**"
access = "public"

[[rule]]
path = "/ws"

[[rule]]
path = "/slow"
access = "public"

[[rule]]
path = "/**"
"#;

pub struct Harness {
    pub idp: TestIdp,
    pub upstream: EchoUpstream,
    pub gw: Running,
}

/// Builds the gateway configuration around a provider and an upstream.
pub fn config_toml(issuer: &str, upstream: &str, extra: &str) -> String {
    config_toml_on(
        "127.0.0.1:0",
        "http://127.0.0.1:8080",
        issuer,
        upstream,
        extra,
    )
}

/// A free port on 127.0.0.1 (for a gateway whose `public_url` must name its own port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The same, listening on `listen` and reachable at `public_url`.
pub fn config_toml_on(
    listen: &str,
    public_url: &str,
    issuer: &str,
    upstream: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
admin_listen = "127.0.0.1:0"
public_url = "{public_url}"
shutdown_grace = "2s"

[upstream]
url = "{upstream}"
timeout = "2s"
connect_timeout = "1s"

[oidc]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "gateway-secret"

[tokens]
audiences = ["gateway"]

[session]
secret = "{SESSION_SECRET}"

{extra}
"#
    )
}

/// The configuration with `server.runtime = "shared"`: started in a test, the gateway then
/// serves on the test's own runtime (on its thread, where a thread-local subscriber sees
/// its events) instead of worker threads of its own.
pub fn shared_runtime(toml: String) -> String {
    toml.replacen("[server]\n", "[server]\nruntime = \"shared\"\n", 1)
}

/// Starts a gateway on `toml` and waits until it is ready.
pub async fn serve(toml: &str) -> Running {
    let gw = server::start(load(toml)).await.expect("the gateway starts");
    wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    gw
}

pub fn load(toml: &str) -> portcullis::config::Config {
    match portcullis::config::load_figment(Figment::from(Toml::string(toml))) {
        Ok(c) => c,
        Err(e) => panic!("test configuration is invalid:\n{e}\n---\n{toml}"),
    }
}

impl Harness {
    /// Provider + upstream + gateway with the tutorial rules, ready to serve.
    pub async fn start() -> Harness {
        Self::with(TUTORIAL_RULES).await
    }

    /// Same, with other rules or settings appended to the base configuration.
    pub async fn with(extra: &str) -> Harness {
        Self::with_edit(extra, |t| t).await
    }

    /// Same, with the whole configuration text passed through `edit` first.
    pub async fn with_edit(extra: &str, edit: impl Fn(String) -> String) -> Harness {
        let idp = TestIdp::start().await;
        let upstream = EchoUpstream::start().await;
        let mut attempt = 0;
        let gw = loop {
            attempt += 1;
            let port = free_port();
            let toml = edit(config_toml_on(
                &format!("127.0.0.1:{port}"),
                &format!("http://127.0.0.1:{port}"),
                &idp.issuer(),
                &upstream.url(),
                extra,
            ));
            match server::start(load(&toml)).await {
                Ok(gw) => break gw,
                // The port was free when it was picked, but another test may have taken
                // it since: then pick another.
                Err(e) if attempt < 5 && format!("{e:?}").contains("Address already in use") => {}
                Err(e) => panic!("gateway starts: {e:?}"),
            }
        };
        let h = Harness { idp, upstream, gw };
        h.wait_ready().await;
        h
    }

    pub fn addr(&self) -> SocketAddr {
        self.gw.addr
    }

    /// The gateway's `public_url` (its own address).
    pub fn public(&self) -> String {
        format!("http://{}", self.gw.addr)
    }

    /// Polls `/readyz` until it answers 200 (the provider's keys are loaded).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = get(self.gw.admin_addr, "/readyz", &[]).await;
            if r.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never became ready: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        get(self.addr(), path, headers).await
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> RawResponse {
        let auth = format!("Bearer {token}");
        get(self.addr(), path, &[("Authorization", &auth)]).await
    }

    /// A token for `sub` with audience `gateway` and these scopes.
    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.idp.mint(&self.idp.claims(sub, "gateway", scope))
    }

    /// The last request the upstream received, parsed from the echo response.
    pub fn last_seen(&self) -> Seen {
        self.upstream
            .seen()
            .last()
            .cloned()
            .expect("the upstream saw a request")
    }
}

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The echo upstream's report (only for forwarded requests).
    pub fn seen(&self) -> Seen {
        assert_eq!(
            self.status, 200,
            "expected a forwarded request, got {}: {}",
            self.status, self.body
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.body))
    }
}

/// Polls a gateway's admin `/readyz` until it answers 200 (discovery done, keys loaded).
pub async fn wait_ready(admin: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let r = get(admin, "/readyz", &[]).await;
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never became ready: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes()).await
}

/// Reads a response head byte by byte (what follows it stays unread: a tunnel's bytes).
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed in the head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked WebSocket text frame, as a client (a browser) sends it.
pub fn text_frame(text: &str) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut f = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
    f.extend(mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Sends a text frame and reads the upstream's echo of it: the tunnel is open.
pub async fn round_trip(s: &mut TcpStream, text: &str) {
    let f = text_frame(text);
    s.write_all(&f).await.unwrap();
    let mut echo = vec![0u8; f.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .expect("the echo in time")
        .expect("the tunnel is open");
    assert_eq!(echo, f);
}

/// Sends raw bytes and reads the whole response (the request should say `Connection: close`).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "no complete response within 15 s");
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

impl RawResponse {
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A cookie-keeping client that follows redirects between the gateway and the provider,
/// the way a browser does (without JavaScript).
pub struct Browser {
    pub gateway: SocketAddr,
    /// The gateway's cookies, by name.
    pub jar: std::collections::BTreeMap<String, String>,
    /// Every URL visited by the last `navigate`.
    pub visited: Vec<String>,
    /// Extra headers sent with every request.
    pub extra: Vec<(String, String)>,
}

impl Browser {
    pub fn new(gateway: SocketAddr) -> Browser {
        Browser {
            gateway,
            jar: Default::default(),
            visited: Vec::new(),
            extra: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn store_cookies(&mut self, r: &RawResponse) {
        for sc in r.header_all("set-cookie") {
            let first = sc.split(';').next().unwrap_or("");
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let removal = sc.contains("Max-Age=0") || value.is_empty();
            if removal {
                self.jar.remove(name.trim());
            } else {
                self.jar
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// One request to an absolute URL (the gateway gets the jar's cookies).
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> RawResponse {
        let u = url::Url::parse(url).expect("absolute URL");
        let addr: SocketAddr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
            .parse()
            .unwrap();
        let target = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n");
        if addr == self.gateway && !self.jar.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", self.cookie_header()));
        }
        for (k, v) in headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .chain(self.extra.clone())
        {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let r = raw(addr, req.as_bytes()).await;
        if addr == self.gateway {
            self.store_cookies(&r);
        }
        r
    }

    /// A gateway path fetched the way an API client (or a page's script) would: with the
    /// jar's cookies, `Accept: application/json`, no redirect followed.
    pub async fn api_get(&mut self, path: &str) -> RawResponse {
        let url = format!("http://{}{}", self.gateway, path);
        self.request("GET", &url, &[("Accept", "application/json")])
            .await
    }

    /// Navigates to a gateway path as a browser would, following redirects.
    pub async fn navigate(&mut self, path: &str) -> RawResponse {
        let url = format!("http://{}{}", self.gateway, path);
        self.follow("GET", &url).await
    }

    pub async fn follow(&mut self, method: &str, url: &str) -> RawResponse {
        self.visited.clear();
        let mut url = url.to_owned();
        let mut method = method.to_owned();
        for _ in 0..10 {
            self.visited.push(url.clone());
            let r = self
                .request(
                    &method,
                    &url,
                    &[("Accept", "text/html,application/xhtml+xml")],
                )
                .await;
            if r.status != 302 {
                return r;
            }
            let loc = r
                .header("location")
                .expect("a redirect has a Location")
                .to_owned();
            url = url::Url::parse(&url)
                .unwrap()
                .join(&loc)
                .unwrap()
                .to_string();
            method = "GET".into();
        }
        panic!("redirect loop: {:?}", self.visited);
    }
}

/// A log writer that keeps what the gateway's tracing subscriber writes, for tests that
/// read the log lines.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
