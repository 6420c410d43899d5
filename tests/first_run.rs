//! First-run friction: the gateway opened at `127.0.0.1` while `server.public_url` says
//! `localhost`. The login cookie would be set on the host the browser asked for and the
//! callback arrives on `public_url`'s, so a browser that asks for another host is first
//! sent to the same path and query on `public_url`'s origin, and only there is the login
//! started. The browser here keeps its cookies by host name, as real browsers do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use support::{Harness, RawResponse};

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");

/// The gateway on 127.0.0.1:PORT with `public_url = "http://localhost:PORT"`.
async fn on_localhost(extra_server: &str, rules: &str) -> Harness {
    Harness::with_edit(rules, |toml| {
        toml.lines()
            .map(|l| {
                if let Some(rest) = l.strip_prefix("public_url = \"http://127.0.0.1:") {
                    format!("public_url = \"http://localhost:{rest}\n{extra_server}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await
}

fn localhost(h: &Harness) -> String {
    format!("http://localhost:{}", h.addr().port())
}

/// A browser that keeps cookies per host name (not per port, as RFC 6265 says) and reaches
/// the gateway under any name: every URL on the gateway's port connects to the gateway and
/// sends the URL's authority as `Host`.
struct HostBrowser {
    gateway: SocketAddr,
    jars: BTreeMap<String, BTreeMap<String, String>>,
    visited: Vec<String>,
}

impl HostBrowser {
    fn new(gateway: SocketAddr) -> HostBrowser {
        HostBrowser {
            gateway,
            jars: BTreeMap::new(),
            visited: Vec::new(),
        }
    }

    fn jar(&self, host: &str) -> Vec<&str> {
        self.jars
            .get(host)
            .map(|j| j.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    async fn request(&mut self, url: &str, headers: &[(&str, &str)]) -> RawResponse {
        let u = url::Url::parse(url).unwrap();
        let host = u.host_str().unwrap().to_owned();
        let port = u.port().unwrap();
        let addr: SocketAddr = if port == self.gateway.port() {
            self.gateway
        } else {
            format!("{host}:{port}").parse().unwrap()
        };
        let target = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        let mut req =
            format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n");
        if let Some(jar) = self.jars.get(&host).filter(|j| !j.is_empty()) {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let r = support::raw(addr, req.as_bytes()).await;
        let jar = self.jars.entry(host).or_default();
        for sc in r.header_all("set-cookie") {
            let first = sc.split(';').next().unwrap_or("");
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            if sc.contains("Max-Age=0") || value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        r
    }

    async fn follow(&mut self, url: &str) -> RawResponse {
        self.visited.clear();
        let mut url = url.to_owned();
        for _ in 0..10 {
            self.visited.push(url.clone());
            let r = self.request(&url, &[HTML]).await;
            if r.status != 302 {
                return r;
            }
            let loc = r.header("location").unwrap().to_owned();
            url = url::Url::parse(&url)
                .unwrap()
                .join(&loc)
                .unwrap()
                .to_string();
        }
        panic!("redirect loop: {:?}", self.visited);
    }
}

#[tokio::test]
async fn a_browser_on_127_0_0_1_is_sent_to_localhost_and_then_logs_in() {
    let h = on_localhost("", support::TUTORIAL_RULES).await;
    let port = h.addr().port();
    let mut b = HostBrowser::new(h.addr());

    let asked = format!("http://127.0.0.1:{port}/same/path?q=1&x=a%20b");
    let r = b.request(&asked, &[HTML]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/same/path?q=1&x=a%20b", localhost(&h)).as_str())
    );
    assert!(
        b.jar("127.0.0.1").iter().all(|c| !c.contains("_login_")),
        "no login starts on the wrong host: {:?}",
        b.jar("127.0.0.1")
    );
    assert_eq!(h.upstream.count(), 0);

    // The whole way, in a fresh browser: moved, the provider, the callback on localhost,
    // the page.
    h.idp.login_as("alice");
    let mut b = HostBrowser::new(h.addr());
    let r = b.follow(&asked).await;
    assert_eq!(b.visited.len(), 5, "{:?}", b.visited);
    assert!(b.visited[1].starts_with(&localhost(&h)), "{:?}", b.visited);
    assert!(b.visited[2].starts_with(&h.idp.issuer()), "{:?}", b.visited);
    assert!(
        b.visited[3].starts_with(&format!("{}/oauth2/callback?", localhost(&h))),
        "{:?}",
        b.visited
    );
    let seen = r.seen();
    assert_eq!(seen.target, "/same/path?q=1&x=a%20b");
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert!(b.jar("localhost").contains(&"portcullis"), "{:?}", b.jars);

    // HEAD is a navigation too; the explicit login endpoint moves as well.
    let r = support::raw(
        h.addr(),
        format!("HEAD /other HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/other", localhost(&h)).as_str())
    );
    let mut b = HostBrowser::new(h.addr());
    let r = b
        .request(
            &format!("http://127.0.0.1:{port}/oauth2/login?rd=%2Fprofile%3Ftab%3D2"),
            &[HTML],
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/oauth2/login?rd=%2Fprofile%3Ftab%3D2", localhost(&h)).as_str())
    );
    let mut b = HostBrowser::new(h.addr());
    let r = b
        .follow(&format!(
            "http://127.0.0.1:{port}/oauth2/login?rd=%2Fprofile%3Ftab%3D2"
        ))
        .await;
    assert_eq!(r.seen().target, "/profile?tab=2");
}

#[tokio::test]
async fn api_requests_and_public_url_itself_are_not_redirected() {
    let h = on_localhost("", support::TUTORIAL_RULES).await;
    let port = h.addr().port();
    let wrong_host = format!("127.0.0.1:{port}");
    let send = |req: String| {
        let addr = h.addr();
        async move { support::raw(addr, req.as_bytes()).await }
    };
    // Not a browser: JSON, a POST, a bearer token.
    let r = send(format!("GET /profile HTTP/1.1\r\nHost: {wrong_host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("location"), None);
    let r = send(format!("POST /profile HTTP/1.1\r\nHost: {wrong_host}\r\nAccept: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("location"), None);
    let token = h.token("svc", "");
    let r = send(format!("GET /profile HTTP/1.1\r\nHost: {wrong_host}\r\nAuthorization: Bearer {token}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(r.seen().header("x-auth-subject"), Some("svc"));
    // Public rules and login = "deny" rules start no login, so nothing moves.
    let r = send(format!("GET /api/public HTTP/1.1\r\nHost: {wrong_host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(r.status, 200);
    // On public_url's own host (any letter case) the login starts at once.
    for host in [format!("localhost:{port}"), format!("LocalHost:{port}")] {
        let r = send(format!(
            "GET /profile HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(r.status, 302);
        assert!(
            r.header("location").unwrap().starts_with(&h.idp.issuer()),
            "{host}: {:?}",
            r.header("location")
        );
    }
}

#[tokio::test]
async fn a_foreign_host_header_only_ever_redirects_to_public_url() {
    let h = on_localhost("", support::TUTORIAL_RULES).await;
    let origin = localhost(&h);
    let cases = [
        ("evil.example", "/x?y=1", "/x?y=1"),
        ("evil.example:443", "/x", "/x"),
        ("localhost.evil.example", "/x", "/x"),
        ("localhost", "/x", "/x"),
        ("127.0.0.1", "//evil.example/x", "/evil.example/x"),
        (
            "evil.example",
            "/x?next=//evil.example",
            "/x?next=//evil.example",
        ),
        ("evil.example", "/x?a=%5Cevil", "/"),
        ("evil.example", "/x?a=%0d%0aSet-Cookie:%20a=b", "/"),
    ];
    for (host, target, expected) in cases {
        let r = support::raw(
            h.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(r.status, 302, "{host} {target}: {}", r.body);
        assert_eq!(
            r.header("location"),
            Some(format!("{origin}{expected}").as_str()),
            "{host} {target}"
        );
    }
    // An absolute-form target names its own authority: still only public_url's origin.
    let r = support::raw(
        h.addr(),
        b"GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.header("location"), Some(format!("{origin}/x").as_str()));
    // X-Forwarded-Host from a client outside trusted_proxies is not believed either way.
    let r = support::raw(
        h.addr(),
        format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Host: localhost:{}\r\nAccept: text/html\r\nConnection: close\r\n\r\n", h.addr().port())
            .as_bytes(),
    )
    .await;
    assert_eq!(r.header("location"), Some(format!("{origin}/x").as_str()));
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn a_proxy_that_rewrites_host_gets_one_redirect_then_the_login() {
    let h = on_localhost("", support::TUTORIAL_RULES).await;
    let port = h.addr().port();
    // The browser is on localhost, but the proxy in front says Host: 127.0.0.1.
    let send = |cookie: Option<String>| {
        let addr = h.addr();
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        async move {
            support::raw(
                addr,
                format!("GET /app?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Accept: text/html\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
        }
    };
    let r = send(None).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/app?x=1", localhost(&h)).as_str())
    );
    let marker = r.header_all("set-cookie");
    assert_eq!(marker.len(), 1, "{marker:?}");
    assert!(marker[0].starts_with("portcullis_host="), "{marker:?}");
    assert!(marker[0].contains("Max-Age=10") && marker[0].contains("HttpOnly"));
    let marker = marker[0].split(';').next().unwrap().to_owned();

    // The same request again with that cookie: no second redirect, the login starts.
    let r = send(Some(marker.clone())).await;
    assert_eq!(r.status, 302);
    assert!(
        r.header("location").unwrap().starts_with(&h.idp.issuer()),
        "{:?}",
        r.header("location")
    );
    assert!(r
        .header_all("set-cookie")
        .iter()
        .any(|c| c.starts_with("portcullis_login_")));
    // The marker is for that target only; it never reaches the upstream.
    let r = support::raw(
        h.addr(),
        format!("GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {marker}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(
        r.header("location"),
        Some(format!("{}/elsewhere", localhost(&h)).as_str())
    );
    let r = support::raw(
        h.addr(),
        format!("GET /api/public HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {marker}; app=1\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(r.seen().header("cookie"), Some("app=1"));
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_host_is_the_browsers_host() {
    let h = on_localhost(
        "trusted_proxies = [\"127.0.0.1/32\"]",
        support::TUTORIAL_RULES,
    )
    .await;
    let port = h.addr().port();
    let ask = |xfh: String| {
        let addr = h.addr();
        async move {
            support::raw(
                addr,
                format!("GET /app HTTP/1.1\r\nHost: portcullis\r\nX-Forwarded-Host: {xfh}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
        }
    };
    // The proxy says the browser asked for localhost: the login starts here.
    let r = ask(format!("localhost:{port}")).await;
    assert!(
        r.header("location").unwrap().starts_with(&h.idp.issuer()),
        "{:?}",
        r.header("location")
    );
    // It says 127.0.0.1: moved to public_url.
    let r = ask(format!("127.0.0.1:{port}")).await;
    assert_eq!(
        r.header("location"),
        Some(format!("{}/app", localhost(&h)).as_str())
    );

    // Forward-auth with login=redirect: a browser on another host is sent to the
    // gateway's login URL on public_url instead of to the provider.
    let forward = |xfh: String| {
        let addr = h.addr();
        async move {
            support::raw(
                addr,
                format!("GET /oauth2/auth?login=redirect HTTP/1.1\r\nHost: portcullis\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: {xfh}\r\nX-Forwarded-Uri: /profile?tab=2\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
        }
    };
    let r = forward(format!("127.0.0.1:{port}")).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{}/oauth2/login?rd=%2Fprofile%3Ftab%3D2", localhost(&h)).as_str())
    );
    assert!(r
        .header_all("set-cookie")
        .iter()
        .all(|c| !c.starts_with("portcullis_login_")));
    let r = forward(format!("localhost:{port}")).await;
    assert!(r.header("location").unwrap().starts_with(&h.idp.issuer()));
}

#[tokio::test]
async fn a_rule_for_its_own_host_logs_in_where_it_is() {
    let rules = format!(
        "{}\n[[rule]]\npath = \"/**\"\nhost = \"app.example\"\n",
        support::TUTORIAL_RULES
    );
    let h = on_localhost("", &rules).await;
    let r = support::raw(
        h.addr(),
        b"GET /x HTTP/1.1\r\nHost: app.example\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 302);
    assert!(
        r.header("location").unwrap().starts_with(&h.idp.issuer()),
        "{:?}",
        r.header("location")
    );
}

#[tokio::test]
async fn the_callback_on_another_host_names_public_url() {
    let h = on_localhost("", support::TUTORIAL_RULES).await;
    let port = h.addr().port();
    let callback = |host: String| {
        let addr = h.addr();
        async move {
            support::raw(
                addr,
                format!("GET /oauth2/callback?state=abc&code=def HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
        }
    };
    let r = callback(format!("127.0.0.1:{port}")).await;
    assert_eq!(r.status, 400);
    let origin = localhost(&h);
    assert!(
        r.body.contains(&format!(
            "this page is not on the gateway&#39;s address {origin}: a browser keeps cookies apart by host name, so a login must start and end there. Open {origin} and start again"
        )),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("<a href=\"{origin}\">Open {origin}</a>")),
        "{}",
        r.body
    );
    // On public_url's host, an unknown attempt is only that.
    let r = callback(format!("localhost:{port}")).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("the login attempt is unknown or expired; start again"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("Open http"), "{}", r.body);
}
