//! Path normalization as the upstream experiences it: what is judged is what is forwarded,
//! and malformed paths are refused with 400 before anything is forwarded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Harness;

#[tokio::test]
async fn normalized_paths_are_judged_and_forwarded() {
    let h = Harness::start().await;
    // Each of these is /admin/... in disguise: without a token it must be 401 (the admin
    // rule, via the catch-all for authentication), never reach the upstream.
    for p in [
        "//admin",
        "/a/../admin",
        "/%61dmin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "///admin//x",
        "/./admin",
    ] {
        let r = h.get(p, &[]).await;
        assert_eq!(r.status, 401, "{p}: {}", r.body);
    }
    assert_eq!(h.upstream.count(), 0);

    // Forwarded paths are the normalized ones.
    let cases = [
        ("/public//a/./b", "/public/a/b"),
        ("/public/x/../y", "/public/y"),
        ("/public/%7Euser", "/public/~user"),
        ("/public/a%20b?q=%2F..%2F", "/public/a%20b?q=%2F..%2F"),
        ("/public/", "/public/"),
    ];
    for (sent, want) in cases {
        let r = h.get(sent, &[]).await;
        assert_eq!(r.seen().target, want, "{sent}");
    }
}

#[tokio::test]
async fn malformed_paths_are_refused_with_400() {
    let h = Harness::start().await;
    let t = h.token("svc", "test_api_access");
    for p in [
        "/admin%2F..",
        "/..%2f",
        "/public/..%2F..%2Fadmin",
        "/public%5C..%5Cadmin",
        "/public/a;b",
        "/admin;x/",
        "/..;/admin",
        "/public/%00",
        "/public/%zz",
        "/..",
        "/public/../../admin",
    ] {
        let r = h.get_bearer(p, &t).await;
        assert_eq!(r.status, 400, "{p}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request");
    }
    // A literal backslash (hyper may refuse it itself; either way it is a 400).
    let addr = h.addr();
    let r = support::raw(
        addr,
        b"GET /public\\..\\admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(h.upstream.count(), 0, "no malformed path was forwarded");
}

#[tokio::test]
async fn case_insensitive_paths_when_configured() {
    let rules = r#"
[server]
case_insensitive_paths = true
"#;
    // The [server] table is already in the base config; merge by replacing.
    let h = Harness::start().await;
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace("[server]\n", rules.trim_start());
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    assert_eq!(support::get(gw.addr, "/ADMIN/x", &[]).await.status, 401);
    // Case-sensitive by default: /ADMIN is not /admin, so the catch-all decides.
    assert_eq!(h.get("/API/PUBLIC", &[]).await.status, 401);
    assert_eq!(h.get("/api/public", &[]).await.status, 200);
}

#[tokio::test]
async fn unmatched_requests_are_403() {
    let h = Harness::with(
        r#"
[[rule]]
path = "/only"
access = "public"
"#,
    )
    .await;
    let r = h.get("/other", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "access_denied");
    assert_eq!(h.get("/only", &[]).await.status, 200);
    assert_eq!(h.upstream.count(), 1);
}

#[tokio::test]
async fn browser_requests_get_an_html_error_page() {
    let h = Harness::with(
        r#"
[[rule]]
path = "/only"
access = "public"
"#,
    )
    .await;
    let r = h
        .get(
            "/other?x=%3Cscript%3E",
            &[("Accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.body.contains("<h1>403 Forbidden</h1>"));
    assert!(!r.body.contains("<script>"));
}
