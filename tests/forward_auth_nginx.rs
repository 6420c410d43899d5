//! A real nginx with `auth_request` in front of the echo upstream, portcullis deciding every
//! request through `/oauth2/auth`. nginx runs on the example `deploy/nginx/portcullis.conf`
//! itself (only its ports are changed), so the example is what these tests prove.
//!
//! nginx must be installed: `apt-get install nginx-light` (or `nginx`) puts it at
//! `/usr/sbin/nginx`; `NGINX=/path/to/nginx` picks another binary. Without it these tests
//! fail; they never pass silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::nginx::{replace_once, Nginx};
use support::{Browser, Harness};

/// Rules on top of the tutorial's: a GET-only public area (to show that nginx asks for the
/// client's method, not its subrequest's) and an API area that never starts a login.
const EXTRA_RULES: &str = r#"
[[rule]]
path = "/reports/**"
methods = ["GET"]
access = "public"

[[rule]]
path = "/api/tokens-only/**"
login = "deny"
"#;

const EXAMPLE: &str = "deploy/nginx/portcullis.conf";

/// nginx on the example, its ports pointed at this test's gateway and app.
async fn start_nginx(port: u16, gateway: SocketAddr, app: SocketAddr) -> Nginx {
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE))
        .unwrap_or_else(|e| panic!("cannot read {EXAMPLE}: {e}"));
    let site = replace_once(&example, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let site = replace_once(
        &site,
        "server 127.0.0.1:8080;",
        &format!("server {gateway};"),
    );
    let site = replace_once(&site, "server 127.0.0.1:3000;", &format!("server {app};"));
    Nginx::start(port, &site).await
}

/// The gateway with `public_url` on nginx's origin and nginx as a trusted proxy, and nginx
/// in front of the echo upstream.
async fn setup() -> (Harness, Nginx) {
    let port = support::free_port();
    let rules = format!("{}{EXTRA_RULES}", support::TUTORIAL_RULES);
    let h = Harness::with_edit(&rules, |toml| {
        let toml: Vec<String> = toml
            .lines()
            .map(|l| {
                if l.starts_with("public_url = ") {
                    format!("public_url = \"http://127.0.0.1:{port}\"")
                } else if l.starts_with("shutdown_grace = ") {
                    format!("{l}\ntrusted_proxies = [\"127.0.0.1/32\"]")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        toml.join("\n")
    })
    .await;
    let nginx = start_nginx(port, h.addr(), h.upstream.addr).await;
    (h, nginx)
}

#[tokio::test]
async fn a_bearer_request_reaches_the_app_with_the_identity_from_portcullis_only() {
    let (h, nginx) = setup().await;
    let token = h.token("svc", "test_api_access");
    let auth = format!("Bearer {token}");
    let r = nginx
        .get(
            "/api/private-scoped/x?y=1",
            &[
                ("Authorization", &auth),
                ("X-Auth-User", "mallory"),
                ("x-auth-roles", "admin"),
                ("X_Auth_User", "mallory"),
                ("X.Auth.User", "mallory"),
            ],
        )
        .await;
    let seen = r.seen();
    assert_eq!(seen.target, "/api/private-scoped/x?y=1");
    assert_eq!(seen.header_all("x-auth-user"), ["svc"]);
    assert_eq!(seen.header_all("x-auth-subject"), ["svc"]);
    assert_eq!(seen.header_all("x-auth-scopes"), ["test_api_access"]);
    assert_eq!(
        seen.header("x-auth-roles"),
        None,
        "the client's copy is gone and the token has no roles"
    );
    for (name, _) in &seen.headers {
        assert!(
            !name.contains('_') && !name.contains('.'),
            "a client spelling reached the app: {name}"
        );
    }
    assert_eq!(
        seen.header("authorization"),
        Some(auth.as_str()),
        "the bearer token passes on unchanged"
    );

    // No credential on a public path: the app sees no identity, forged or not.
    let seen = nginx
        .get("/api/public", &[("X-Auth-User", "mallory")])
        .await
        .seen();
    assert_eq!(seen.header("x-auth-user"), None);

    // nginx asks about the client's method: GET /reports is public, POST is not.
    assert_eq!(nginx.get("/reports/q3", &[]).await.status, 200);
    let before = h.upstream.count();
    let r = support::raw(
        nginx.addr,
        b"POST /reports/q3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(h.upstream.count(), before);
}

#[tokio::test]
async fn an_api_client_without_a_credential_gets_401_and_the_app_sees_nothing() {
    let (h, nginx) = setup().await;
    let r = nginx
        .get("/api/private", &[("Accept", "application/json")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
    assert_eq!(r.header("location"), None);

    let r = nginx
        .get("/api/private", &[("Authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"invalid_token\"")),
        "{:?}",
        r.headers
    );

    // A browser on a rule with login = "deny" is not sent to a login either.
    let r = nginx
        .get("/api/tokens-only/x", &[("Accept", "text/html")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("location"), None);

    // A path portcullis refuses (400) is an error to nginx (500); it never reaches the app.
    let r = nginx.get("/public/a%2F..%2F..%2Fadmin", &[]).await;
    assert_eq!(r.status, 500);

    // Clients cannot reach the decision endpoint itself.
    let r = nginx
        .get("/oauth2/auth", &[("X-Original-URI", "/api/public")])
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(h.upstream.count(), 0, "the app never saw a request");
}

#[tokio::test]
async fn a_token_without_the_role_or_scope_gets_403() {
    let (h, nginx) = setup().await;
    let token = h.token("svc", "");
    let auth = format!("Bearer {token}");
    let r = nginx.get("/admin/users", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 403);
    let r = nginx
        .get("/api/private-scoped/x", &[("Authorization", &auth)])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.upstream.count(), 0);
    // The same token where no role is needed does pass.
    let seen = nginx
        .get("/api/private", &[("Authorization", &auth)])
        .await
        .seen();
    assert_eq!(seen.header("x-auth-subject"), Some("svc"));
}

#[tokio::test]
async fn a_browser_logs_in_through_nginx_and_returns_where_it_was() {
    let (h, nginx) = setup().await;
    let public = format!("http://{}", nginx.addr);
    let target = "/profile?tab=2&q=a%20b";

    // Without a session nginx sends the browser to the login endpoint on its own origin,
    // with the whole original path and query in `rd`; nothing reached the app yet.
    let r = nginx.get(target, &[("Accept", "text/html")]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("{public}/oauth2/login?rd=%2Fprofile%3Ftab%3D2%26q%3Da%2520b").as_str())
    );
    assert!(
        r.header("set-cookie").is_none(),
        "no login attempt is made before the browser asks"
    );
    assert_eq!(h.upstream.count(), 0);

    // The whole login through nginx: nginx -> login -> provider -> callback -> target.
    h.idp.login_as("alice");
    let mut b = Browser::new(nginx.addr);
    let r = b.navigate(target).await;
    assert_eq!(b.visited.len(), 5, "{:?}", b.visited);
    assert!(b.visited[1].starts_with(&format!("{public}/oauth2/login?rd=")));
    assert!(b.visited[2].starts_with(&h.idp.issuer()));
    assert!(b.visited[3].starts_with(&format!("{public}/oauth2/callback?")));
    assert_eq!(b.visited[4], format!("{public}{target}"));
    let seen = r.seen();
    assert_eq!(seen.target, target);
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(seen.header("x-auth-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-auth-roles"), Some("admin,employee,user"));
    assert!(b.jar.contains_key("portcullis"), "{:?}", b.jar);

    // The session now works for every path behind nginx, by role.
    let r = b.navigate("/admin/").await;
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    h.idp.login_as("bob");
    let mut bob = Browser::new(nginx.addr);
    assert_eq!(bob.navigate("/profile").await.status, 200);
    let before = h.upstream.count();
    assert_eq!(bob.navigate("/admin/").await.status, 403);
    assert_eq!(h.upstream.count(), before);
}
