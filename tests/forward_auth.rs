//! Forward-auth (`/oauth2/auth`) for browsers: the 401 that names the login URL (what
//! nginx `auth_request` needs) and `?login=redirect` (what Traefik `forwardAuth` needs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Browser, Harness};

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
