//! One decision everywhere: for thousands of generated requests, `explain`'s verdict
//! (status, rule, reason) equals what the running gateway answers, and forward-auth's
//! answer equals what the main listener does for the same method, URI and host.
//!
//! Requests vary in method, path (encodings, dot segments, doubled slashes), query
//! (`_method` in every spelling), host, browser or not, and credential: none, valid
//! tokens with and without roles, scopes and claims, expired, wrong audience, forged,
//! garbage, and browser sessions with and without roles; with or without the headers of a
//! CORS preflight. The rule table has every rule kind: public, authenticated, roles,
//! any_roles, scopes, claims, login = "deny", methods, host, wildcards, cors_preflight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Capture;

use std::sync::Arc;

use http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use portcullis::auth::jwks::JwksCache;
use portcullis::auth::session::{Revocations, SessionCodec, SessionLookup};
use portcullis::auth::Identity;
use portcullis::explain::{self, Explanation, Source};
use support::{Browser, Harness};

const RULES: &str = r#"
[[rule]]
path = "/pub/**"
access = "public"

[[rule]]
path = "/items/**"
methods = ["GET", "POST"]
access = "public"

[[rule]]
path = "/items/**"
roles = ["admin"]

[[rule]]
path = "/api/scoped/**"
scopes = ["read"]

[[rule]]
path = "/api/any"
any_roles = ["admin", "ops"]

[[rule]]
path = "/api/tenant/*"
claims = { tenant = "acme" }

[[rule]]
path = "/api/machine/**"
login = "deny"

[[rule]]
path = "/exact"

# OPTIONS on paths no other rule takes: authenticated, but CORS preflights pass (other
# methods there have no rule: 403).
[[rule]]
path = "/**"
methods = ["OPTIONS"]
cors_preflight = "allow"

[[rule]]
path = "/host/**"
host = "admin.example.com"
roles = ["admin"]

[[rule]]
path = "/host/**"
access = "public"
"#;

/// Forward-auth serves only trusted proxies: the test's client is one.
fn with_trusted_proxies(toml: String) -> String {
    toml.replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        1,
    )
}

impl Capture {
    /// The access-log lines written since the last call, as JSON.
    fn take_access(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "portcullis::access")
            .collect()
    }
}

/// The credential of one generated request.
#[derive(Debug, Clone, Copy)]
enum Cred {
    None,
    /// An index into the minted tokens.
    Token(usize),
    /// An index into the sessions.
    Session(usize),
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: String,
    query: Option<String>,
    host: &'static str,
    browser: bool,
    cred: Cred,
    /// Which of `Origin` and `Access-Control-Request-Method` it carries (bit 0, bit 1).
    preflight: u8,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const SEGMENTS: &[&str] = &[
    "pub", "items", "1", "api", "scoped", "any", "tenant", "machine", "exact", "host", "cors", "x",
    "..", ".", "%2e%2e", "%2E", "%61pi", "it%65ms", "%2F", "%5C", "a;b", "%00", "~", "A",
];
const QUERIES: &[&str] = &[
    "_method=DELETE",
    "%5Fmethod=delete",
    "_METHOD=put",
    "_method[]=PATCH",
    "%20method=DELETE",
    "+_method=PUT",
    ".method=DELETE",
    "_method=GET&_method=DELETE",
    "_method=a%20b",
    "_method=",
    "x=1",
    "_method=POST",
];
const HOSTS: &[&str] = &[
    "admin.example.com",
    "ADMIN.example.com:8443",
    "other.example.com",
];

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(METHODS),
        prop::collection::vec(prop::sample::select(SEGMENTS), 0..5),
        any::<bool>(),
        prop::option::of(prop::sample::select(QUERIES)),
        prop::sample::select(HOSTS),
        any::<bool>(),
        0usize..12,
        0u8..4,
    )
        .prop_map(
            |(method, segs, double, query, host, browser, cred, preflight)| {
                let sep = if double { "//" } else { "/" };
                let path = format!("/{}", segs.join(sep));
                let cred = match cred {
                    0 | 1 => Cred::None,
                    n @ 2..=9 => Cred::Token(n - 2),
                    n => Cred::Session(n - 10),
                };
                Case {
                    method,
                    path,
                    query: query.map(str::to_owned),
                    host,
                    browser,
                    cred,
                    preflight,
                }
            },
        )
}

struct World {
    h: Harness,
    cfg: portcullis::config::Config,
    keys: Arc<JwksCache>,
    tokens: Vec<String>,
    /// Cookie header and identity of each session.
    sessions: Vec<(String, Arc<Identity>)>,
    capture: Capture,
}

async fn world(capture: Capture) -> World {
    let h = Harness::with_edit(RULES, |t| support::shared_runtime(with_trusted_proxies(t))).await;
    let toml = with_trusted_proxies(support::config_toml_on(
        "127.0.0.1:0",
        &h.public(),
        &h.idp.issuer(),
        &h.upstream.url(),
        RULES,
    ));
    let cfg = support::load(&toml);
    let keys = JwksCache::new(
        h.idp.issuer(),
        portcullis::auth::provider::ProviderClient::new(),
        Arc::new(portcullis::metrics::Metrics::new()),
    );
    keys.refresh().await.expect("the provider's keys");

    let mint = |extra: Value, aud: &str, scope: &str| {
        let mut c = h.idp.claims("svc", aud, scope);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        h.idp.mint(&c)
    };
    let forged = {
        let t = mint(
            json!({"realm_access": {"roles": ["admin"]}}),
            "gateway",
            "read",
        );
        let (rest, _) = t.rsplit_once('.').unwrap();
        format!("{rest}.AAAA")
    };
    let tokens = vec![
        mint(json!({}), "gateway", ""),
        mint(
            json!({"realm_access": {"roles": ["admin"]}, "tenant": "acme"}),
            "gateway",
            "read",
        ),
        mint(
            json!({"realm_access": {"roles": ["ops"]}}),
            "gateway",
            "write",
        ),
        mint(json!({"tenant": "other"}), "gateway", "read write"),
        mint(
            json!({"exp": 1, "realm_access": {"roles": ["admin"]}}),
            "gateway",
            "read",
        ),
        mint(
            json!({"realm_access": {"roles": ["admin"]}}),
            "someone-else",
            "read",
        ),
        forged,
        "not-a-token".to_owned(),
    ];

    h.idp.set_user(
        "alice",
        json!({"realm_access": {"roles": ["admin"]}, "tenant": "acme"}),
    );
    let codec = SessionCodec::new(
        cfg.session.as_ref().unwrap(),
        &cfg.oidc.issuer,
        &cfg.oidc.client_id,
        Arc::new(Revocations::default()),
    );
    let mut sessions = Vec::new();
    for user in ["alice", "bob"] {
        h.idp.login_as(user);
        let mut b = Browser::new(h.addr());
        assert_eq!(b.navigate("/exact").await.status, 200, "{user} logs in");
        let cookie = b
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, cookie.parse().unwrap());
        let SessionLookup::Valid { data, .. } = codec.open(&headers) else {
            panic!("{user}'s session cookie opens");
        };
        let id = Identity::from_session(&data, &cfg.tokens).expect("a session identity");
        sessions.push((cookie, Arc::new(id)));
    }
    capture.take_access();
    World {
        h,
        cfg,
        keys,
        tokens,
        sessions,
        capture,
    }
}

/// The headers of a CORS preflight a case carries.
fn preflight_headers(c: &Case) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if c.preflight & 1 != 0 {
        out.push(("Origin".to_owned(), "https://spa.example".to_owned()));
    }
    if c.preflight & 2 != 0 {
        out.push(("Access-Control-Request-Method".to_owned(), "PUT".to_owned()));
    }
    out
}

/// The headers a case sends besides Host.
fn credential_headers(w: &World, c: &Case) -> Vec<(String, String)> {
    let mut out = preflight_headers(c);
    if c.browser {
        out.push(("Accept".to_owned(), "text/html".to_owned()));
    }
    match c.cred {
        Cred::None => {}
        Cred::Token(i) => out.push(("Authorization".into(), format!("Bearer {}", w.tokens[i]))),
        Cred::Session(i) => out.push(("Cookie".into(), w.sessions[i].0.clone())),
    }
    out
}

fn target(c: &Case) -> String {
    match &c.query {
        Some(q) => format!("{}?{q}", c.path),
        None => c.path.clone(),
    }
}

/// One raw HTTP/1.1 request; the status and the gateway's access-log line for it.
async fn send(
    w: &World,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(String, String)],
) -> (u16, Value) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if method == "POST" || method == "PUT" || method == "PATCH" {
        req.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let r = support::raw(w.h.addr(), req.as_bytes()).await;
    let logged = w.capture.take_access();
    assert_eq!(
        logged.len(),
        1,
        "one access-log line per request: {logged:?}"
    );
    (r.status, logged[0].clone())
}

async fn check(w: &World, c: Case) -> Result<(), TestCaseError> {
    let target = target(&c);
    let headers = credential_headers(w, &c);
    let (status, log) = send(w, c.method, &target, c.host, &headers).await;

    // explain, on the same configuration, with the same identity source.
    let source = match c.cred {
        Cred::None => Source::None,
        Cred::Token(i) => Source::Token {
            token: w.tokens[i].clone(),
            keys: vec![w.keys.clone()],
        },
        Cred::Session(i) => Source::Identity(w.sessions[i].1.clone()),
    };
    let host = portcullis::rules::host::request_host(c.host);
    let method = Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut asked_headers = http::HeaderMap::new();
    for (k, v) in preflight_headers(&c) {
        asked_headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let explained = explain::explain_with_headers(
        &w.cfg,
        &method,
        &target,
        host.as_deref(),
        &asked_headers,
        source,
    )
    .await;
    let (want_status, want_reason, want_rule, may_log_in) = match &explained {
        Explanation::BadPath(_) => (400, "bad_path", -1, false),
        Explanation::Endpoint(_) => return Ok(()),
        Explanation::Decided { verdict, .. } => (
            verdict.status().as_u16(),
            verdict.reason(),
            verdict.rule().map_or(-1, |r| r as i64),
            verdict.may_log_in(),
        ),
    };
    let browser_login = c.browser
        && may_log_in
        && (c.method == "GET" || c.method == "HEAD")
        && !matches!(c.cred, Cred::Token(_));
    let (want_status, want_reason) = if browser_login {
        (302, "login")
    } else {
        (want_status, want_reason)
    };
    prop_assert_eq!(status, want_status, "status of {:?}: log {}", c, log);
    // A login asked for on another host than public_url's first moves the browser there
    // (endpoints::public_host): also a 302 that starts the login.
    let reason = match log["decision"].as_str() {
        Some("login_on_public_url") if browser_login => Some("login"),
        other => other,
    };
    prop_assert_eq!(reason, Some(want_reason), "reason of {:?}", c);
    if want_reason != "bad_path" && want_reason != "login" {
        prop_assert_eq!(log["rule"].as_i64(), Some(want_rule), "rule of {:?}", c);
    }

    // forward-auth, asked about the same method, URI and host.
    let mut fa_headers = headers.clone();
    fa_headers.push(("X-Forwarded-Method".into(), c.method.to_owned()));
    fa_headers.push(("X-Forwarded-Uri".into(), target.clone()));
    fa_headers.push(("X-Forwarded-Host".into(), c.host.to_owned()));
    let (fa_status, fa_log) = send(w, "GET", "/oauth2/auth", "127.0.0.1", &fa_headers).await;
    // A browser that may log in gets forward-auth's 401 offer instead of the 302.
    let fa_want = match status {
        302 => 401,
        // The upstream answered: forward-auth says yes with its 200.
        s if s < 300 => 200,
        s => s,
    };
    prop_assert_eq!(
        fa_status,
        fa_want,
        "forward-auth of {:?}: log {}",
        c,
        fa_log
    );
    if status != 302 {
        prop_assert_eq!(fa_log["decision"].as_str(), Some(want_reason));
    }
    Ok(())
}

#[test]
fn explain_and_forward_auth_agree_with_the_running_gateway() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread: the gateway's tasks run while a case waits for its answers, and the
    // subscriber above sees them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let w = rt.block_on(world(capture));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let result = runner.run(&case(), |c| rt.block_on(check(&w, c)));
    if let Err(e) = result {
        panic!("{e}");
    }
}
