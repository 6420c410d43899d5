//! The browser login end to end with the in-process provider: code flow with PKCE, state
//! and nonce, encrypted session cookies, roles from the access token, refresh, logout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::{Browser, Harness};

async fn logged_in(h: &Harness, user: &str, path: &str) -> (Browser, support::RawResponse) {
    h.idp.login_as(user);
    let mut b = Browser::new(h.addr());
    let r = b.navigate(path).await;
    (b, r)
}

#[tokio::test]
async fn alice_logs_in_and_reaches_admin_with_her_identity() {
    let h = Harness::start().await;
    let (mut b, r) = logged_in(&h, "alice", "/admin/dashboard?tab=2").await;
    // Gateway -> provider authorize -> gateway callback -> original path and query.
    assert_eq!(b.visited.len(), 4, "{:?}", b.visited);
    assert!(b.visited[1].contains("/protocol/openid-connect/auth?"));
    assert!(b.visited[1].contains("code_challenge_method=S256"));
    assert!(b.visited[2].contains("/oauth2/callback?code="));
    let seen = r.seen();
    assert_eq!(seen.target, "/admin/dashboard?tab=2");
    assert_eq!(seen.header("x-auth-user"), Some("alice"));
    assert_eq!(seen.header("x-auth-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice-id"));
    assert_eq!(seen.header("x-auth-roles"), Some("admin,employee,user"));
    assert_eq!(
        seen.header("cookie"),
        None,
        "the gateway's cookies never reach the upstream"
    );
    assert!(b.jar.contains_key("portcullis"), "{:?}", b.jar);
    assert!(
        !b.jar.keys().any(|k| k.contains("_login_")),
        "the login cookie was cleared"
    );

    let r = b.navigate("/profile").await;
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    let info = b
        .request("GET", &format!("http://{}/oauth2/userinfo", h.addr()), &[])
        .await;
    assert_eq!(info.json()["user"], "alice");
    assert_eq!(info.json()["roles"], json!(["admin", "employee", "user"]));
}

#[tokio::test]
async fn bob_gets_a_403_page_that_names_him() {
    let h = Harness::start().await;
    let (mut b, r) = logged_in(&h, "bob", "/profile").await;
    assert_eq!(r.seen().header("x-auth-user"), Some("bob"));
    let before = h.upstream.count();
    let r = b.navigate("/admin/").await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("signed in as <strong>bob</strong>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("action=\"/oauth2/logout\""));
    assert_eq!(h.upstream.count(), before);
}

#[tokio::test]
async fn api_clients_without_a_session_get_401_not_a_redirect() {
    let h = Harness::start().await;
    let r = h.get("/profile", &[("Accept", "application/json")]).await;
    assert_eq!(r.status, 401);
    let r = support::raw(h.addr(), b"POST /profile HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.status, 401, "only GET/HEAD navigations are redirected");
    // login = "deny" rules never redirect.
    let h2 = Harness::with("[[rule]]\npath = \"/**\"\nlogin = \"deny\"\n").await;
    let r = h2.get("/x", &[("Accept", "text/html")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
}

#[tokio::test]
async fn two_tabs_can_log_in_at_the_same_time() {
    let h = Harness::start().await;
    let mut b = Browser::new(h.addr());
    // Both tabs start a login before either finishes.
    let first = b
        .request(
            "GET",
            &format!("http://{}/a", h.addr()),
            &[("Accept", "text/html")],
        )
        .await;
    let second = b
        .request(
            "GET",
            &format!("http://{}/b", h.addr()),
            &[("Accept", "text/html")],
        )
        .await;
    assert_eq!((first.status, second.status), (302, 302));
    assert_eq!(b.jar.keys().filter(|k| k.contains("_login_")).count(), 2);
    let r2 = b.follow("GET", second.header("location").unwrap()).await;
    assert_eq!(r2.seen().target, "/b");
    let r1 = b.follow("GET", first.header("location").unwrap()).await;
    assert_eq!(r1.seen().target, "/a");
}

#[tokio::test]
async fn state_must_match_this_browsers_login_attempt() {
    let h = Harness::start().await;
    let mut victim = Browser::new(h.addr());
    let start = victim
        .request(
            "GET",
            &format!("http://{}/x", h.addr()),
            &[("Accept", "text/html")],
        )
        .await;
    // Let the provider answer, but do not follow into the gateway.
    let at_idp = victim
        .request("GET", start.header("location").unwrap(), &[])
        .await;
    let callback = at_idp.header("location").unwrap().to_owned();

    // Another browser (no login cookie) presenting that callback: 400, no session.
    let mut attacker = Browser::new(h.addr());
    let r = attacker.request("GET", &callback, &[]).await;
    assert_eq!(r.status, 400);
    assert!(!attacker.jar.contains_key("portcullis"));

    // A foreign or missing state.
    let r = victim
        .request(
            "GET",
            &format!("http://{}/oauth2/callback?code=x&state=forged", h.addr()),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = victim
        .request(
            "GET",
            &format!("http://{}/oauth2/callback?code=x", h.addr()),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);

    // The real callback works once...
    let saved_jar = victim.jar.clone();
    let r = victim.request("GET", &callback, &[]).await;
    assert_eq!(r.status, 302);
    assert!(victim.jar.contains_key("portcullis"));
    // ...and a replay with the same cookies is refused.
    let mut replay = Browser::new(h.addr());
    replay.jar = saved_jar;
    let r = replay.request("GET", &callback, &[]).await;
    assert_eq!(r.status, 400);
    assert!(!replay.jar.contains_key("portcullis"));
}

#[tokio::test]
async fn provider_errors_and_bad_id_tokens_never_make_a_session() {
    let h = Harness::start().await;
    h.idp.set_authorize_error(Some("access_denied"));
    let (b, r) = logged_in(&h, "alice", "/x").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("access was denied"), "{}", r.body);
    assert!(!b.jar.contains_key("portcullis"));
    h.idp.set_authorize_error(None);

    for (overrides, what) in [
        (json!({"nonce": "not-the-one"}), "nonce"),
        (json!({"aud": "someone-else"}), "aud"),
        (json!({"aud": ["gateway", "other"], "azp": "other"}), "azp"),
        (json!({"azp": "other"}), "azp alone"),
        (json!({"iss": "http://evil.example/realms/test"}), "iss"),
        (json!({"exp": 1000}), "exp"),
    ] {
        h.idp.set_id_token_overrides(overrides);
        let (b, r) = logged_in(&h, "alice", "/x").await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert!(!b.jar.contains_key("portcullis"), "{what}");
    }
    assert_eq!(h.upstream.count(), 0);
}

/// An ID token is held to the key rules of every other token: signed by an RSA key under
/// 2048 bits (RFC 7518 §3.3), it makes no session.
#[tokio::test]
async fn an_id_token_signed_by_an_rsa_key_under_2048_bits_makes_no_session() {
    let h = Harness::start().await;
    let weak = tokio::task::spawn_blocking(|| {
        portcullis::testing::idp::SigningKey::generate_bits("weak", 1024)
    })
    .await
    .unwrap();
    h.idp.publish(weak, true);
    let (b, r) = logged_in(&h, "alice", "/x").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!b.jar.contains_key("portcullis"));
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn tampered_and_swapped_cookies_are_no_session() {
    let h = Harness::start().await;
    let big = "x".repeat(2000);
    h.idp.set_user("alice", json!({"preferred_username": "alice", "bio": big, "resource_access": {"gateway": {"roles": ["admin"]}}}));
    let (a, r) = logged_in(&h, "alice", "/x").await;
    assert_eq!(r.status, 200);
    assert!(
        a.jar.contains_key("portcullis_1"),
        "a large session is chunked: {:?}",
        a.jar.keys()
    );
    h.idp.set_user(
        "bob",
        json!({"preferred_username": "bob", "bio": "y".repeat(2000)}),
    );
    let (b, _) = logged_in(&h, "bob", "/x").await;

    // Bob swaps in one of alice's chunks.
    let mut mixed = Browser::new(h.addr());
    mixed.jar = b.jar.clone();
    mixed
        .jar
        .insert("portcullis_1".into(), a.jar["portcullis_1"].clone());
    let r = mixed
        .request(
            "GET",
            &format!("http://{}/x", h.addr()),
            &[("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("portcullis=;")),
        "bad cookies are cleared"
    );

    // A flipped character.
    let mut t = Browser::new(h.addr());
    t.jar = a.jar.clone();
    let v = t.jar.get_mut("portcullis").unwrap();
    let flipped: String = v.chars().rev().collect();
    *v = flipped;
    assert_eq!(
        t.request("GET", &format!("http://{}/x", h.addr()), &[])
            .await
            .status,
        401
    );
    // A truncated set.
    let mut tr = Browser::new(h.addr());
    tr.jar = a.jar.clone();
    tr.jar.remove("portcullis_1");
    assert_eq!(
        tr.request("GET", &format!("http://{}/x", h.addr()), &[])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn expired_access_tokens_are_refreshed_and_new_roles_apply() {
    let h = Harness::start().await;
    h.idp.set_access_ttl(1);
    h.idp.set_user(
        "carol",
        json!({"preferred_username": "carol", "resource_access": {"gateway": {"roles": ["user"]}}}),
    );
    let (mut b, r) = logged_in(&h, "carol", "/profile").await;
    assert_eq!(r.seen().header("x-auth-roles"), Some("user"));
    // Carol becomes an admin at the provider; the refresh brings the new role.
    h.idp.set_user("carol", json!({"preferred_username": "carol", "resource_access": {"gateway": {"roles": ["admin", "user"]}}}));
    h.idp.set_access_ttl(300);
    // The access token (1 s) is within the 5 s refresh margin: the next request refreshes.
    let before = h.idp.refreshes();
    let r = b.navigate("/admin/").await;
    assert_eq!(r.seen().header("x-auth-roles"), Some("admin,user"));
    assert_eq!(h.idp.refreshes(), before + 1);
    // The refreshed session is stored: no second refresh.
    b.navigate("/admin/").await;
    assert_eq!(h.idp.refreshes(), before + 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_refresh() {
    let h = Harness::start().await;
    h.idp.set_access_ttl(1);
    let (b, _) = logged_in(&h, "alice", "/profile").await;
    h.idp.set_access_ttl(300);
    let before = h.idp.refreshes();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = Browser::new(h.addr());
        c.jar = b.jar.clone();
        let url = format!("http://{}/profile", h.addr());
        tasks.push(tokio::spawn(async move {
            c.request("GET", &url, &[]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "no request was logged out");
    }
    assert_eq!(h.idp.refreshes(), before + 1);
}

#[tokio::test]
async fn a_failed_refresh_ends_the_session() {
    let h = Harness::start().await;
    h.idp.set_access_ttl(1);
    let (mut b, _) = logged_in(&h, "alice", "/profile").await;
    h.idp.set_refresh_fails(true);
    let api = b.api_get("/profile").await;
    assert_eq!(api.status, 401);
    assert!(
        !b.jar.contains_key("portcullis"),
        "the dead session was cleared"
    );
}

#[tokio::test]
async fn logout_ends_the_session_even_for_a_replayed_cookie() {
    let h = Harness::start().await;
    let (mut b, _) = logged_in(&h, "alice", "/profile").await;
    let stolen = b.jar.clone();
    let r = b
        .request(
            "POST",
            &format!("http://{}/oauth2/logout?rd=/bye", h.addr()),
            &[("Origin", &h.public())],
        )
        .await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with(&format!(
            "{}/protocol/openid-connect/logout?",
            h.idp.issuer()
        )),
        "{loc}"
    );
    let q: std::collections::HashMap<String, String> = url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["client_id"], "gateway");
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/bye", h.public()));
    assert!(q["id_token_hint"].split('.').count() == 3);
    assert!(!b.jar.contains_key("portcullis"));

    let mut replay = Browser::new(h.addr());
    replay.jar = stolen;
    let r = replay.api_get("/profile").await;
    assert_eq!(r.status, 401, "the logged-out session cannot be replayed");
}

#[tokio::test]
async fn cross_site_logout_needs_a_click() {
    let h = Harness::start().await;
    let (mut b, _) = logged_in(&h, "alice", "/profile").await;
    let r = b
        .request(
            "GET",
            &format!("http://{}/oauth2/logout", h.addr()),
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("<form method=\"post\" action=\"/oauth2/logout?rd=%2F\">"),
        "{}",
        r.body
    );
    assert!(b.jar.contains_key("portcullis"), "nothing ended");
    let r = b
        .request(
            "GET",
            &format!("http://{}/oauth2/logout", h.addr()),
            &[("Referer", "https://evil.example/page")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(b.jar.contains_key("portcullis"));
    assert_eq!(b.navigate("/profile").await.status, 200);
}

#[tokio::test]
async fn open_redirects_are_replaced_by_the_root() {
    let h = Harness::start().await;
    for rd in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "/%2F%2Fevil.example",
        "javascript:alert(1)",
    ] {
        let mut b = Browser::new(h.addr());
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = b
            .follow("GET", &format!("http://{}/oauth2/login?rd={enc}", h.addr()))
            .await;
        assert_eq!(r.seen().target, "/", "rd={rd}");
        let r = b
            .request(
                "GET",
                &format!("http://{}/oauth2/logout?rd={enc}", h.addr()),
                &[("Sec-Fetch-Site", "same-origin")],
            )
            .await;
        let loc = r.header("location").unwrap();
        let want: String =
            url::form_urlencoded::byte_serialize(format!("{}/", h.public()).as_bytes()).collect();
        assert!(
            loc.contains(&format!("post_logout_redirect_uri={want}&"))
                || loc.ends_with(&format!("post_logout_redirect_uri={want}")),
            "rd={rd}: {loc}"
        );
        assert!(!loc.contains("evil"), "rd={rd}: {loc}");
    }
    let mut b = Browser::new(h.addr());
    let r = b
        .follow(
            "GET",
            &format!("http://{}/oauth2/login?rd=%2Fhere%3Fx%3D1", h.addr()),
        )
        .await;
    assert_eq!(r.seen().target, "/here?x=1");
}

#[tokio::test]
async fn session_websocket_needs_the_gateways_origin() {
    let h = Harness::start().await;
    let (b, _) = logged_in(&h, "alice", "/profile").await;
    let cookies = b
        .jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let req = |origin: &str| {
        format!("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\nCookie: {cookies}\r\n\r\n")
    };
    let before = h.upstream.count();
    let r = support::raw(h.addr(), req("https://evil.example").as_bytes()).await;
    assert_eq!(r.status, 403);
    assert_eq!(h.upstream.count(), before);
    let mut s = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req(&h.public()).as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
}

#[tokio::test]
async fn access_token_header_for_sessions() {
    let h = Harness::with(&format!(
        "[headers]\naccess_token = \"Authorization\"\n{}",
        support::TUTORIAL_RULES
    ))
    .await;
    let (_, r) = logged_in(&h, "alice", "/profile").await;
    let seen = r.seen();
    let auth = seen
        .header("authorization")
        .expect("the session's access token");
    assert!(auth.starts_with("Bearer ey"), "{auth}");
}

/// The value of one sample line of `/metrics`, 0 when it is absent.
async fn metric(h: &Harness, sample: &str) -> f64 {
    let body = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn session_metrics_follow_logins_refreshes_and_logouts() {
    let h = Harness::start().await;
    assert_eq!(metric(&h, "portcullis_sessions_started_total").await, 0.0);
    assert_eq!(metric(&h, "portcullis_sessions_cached").await, 0.0);

    h.idp.set_access_ttl(1);
    let (mut alice, _) = logged_in(&h, "alice", "/profile").await;
    h.idp.set_access_ttl(300);
    let (mut bob, _) = logged_in(&h, "bob", "/profile").await;
    assert_eq!(metric(&h, "portcullis_sessions_started_total").await, 2.0);

    // Alice's 1 s access token is refreshed on her next request; Bob's cookie is cached.
    alice.navigate("/profile").await;
    bob.navigate("/profile").await;
    // Every refresh the provider answered, no more, no less.
    let refreshes = h.idp.refreshes() as f64;
    assert!(refreshes >= 1.0);
    assert_eq!(
        metric(&h, "portcullis_session_refreshes_total{result=\"ok\"}").await,
        refreshes
    );
    assert_eq!(
        metric(&h, "portcullis_session_refreshes_in_flight").await,
        0.0
    );
    assert!(metric(&h, "portcullis_sessions_cached").await >= 1.0);

    let r = bob
        .request(
            "POST",
            &format!("http://{}/oauth2/logout", h.addr()),
            &[("Origin", &h.public())],
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        metric(&h, "portcullis_sessions_ended_total{reason=\"logout\"}").await,
        1.0
    );

    // A refresh the provider refuses ends the session, and is counted as such.
    h.idp.set_access_ttl(1);
    let (mut carol, _) = logged_in(&h, "alice", "/profile").await;
    h.idp.set_refresh_fails(true);
    let r = carol.api_get("/profile").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        metric(&h, "portcullis_session_refreshes_total{result=\"error\"}").await,
        1.0
    );
    assert_eq!(
        metric(
            &h,
            "portcullis_sessions_ended_total{reason=\"refresh_failed\"}"
        )
        .await,
        1.0
    );
    assert_eq!(metric(&h, "portcullis_sessions_started_total").await, 3.0);
}

/// `refresh = false` with 2-second access tokens and a 1-second leeway: (the time the
/// login started, the browser).
async fn short_token_session(extra_session: &str) -> (Harness, u64, Browser) {
    let h = Harness::with_edit(
        &format!(
            "refresh = false\n{extra_session}\n{}",
            support::TUTORIAL_RULES
        ),
        |t| {
            t.replace(
                "audiences = [\"gateway\"]",
                "audiences = [\"gateway\"]\nleeway = \"1s\"",
            )
        },
    )
    .await;
    h.idp.set_access_ttl(2);
    let start = portcullis::unix_now();
    let (b, r) = logged_in(&h, "alice", "/profile").await;
    assert_eq!(r.seen().header("x-auth-user"), Some("alice"));
    (h, start, b)
}

#[tokio::test]
async fn without_refresh_a_session_ends_with_its_access_token() {
    let (h, start, mut b) = short_token_session("").await;
    let stolen = b.jar.clone();
    // Until the token's exp (issued after `start`, 2 s, plus 1 s of leeway) it works; then
    // it is over. Polled, with a deadline well past that exp.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let ended_at = loop {
        let r = b.api_get("/profile").await;
        if r.status == 401 {
            break portcullis::unix_now();
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived its access token"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    const TTL_AND_LEEWAY: u64 = 2 + 1;
    assert!(
        ended_at >= start + TTL_AND_LEEWAY,
        "ended before the token expired"
    );
    assert!(
        !b.jar.contains_key("portcullis"),
        "the cookies were cleared"
    );
    // A browser with the same cookie is sent to log in again.
    let mut browser = Browser::new(h.addr());
    browser.jar = stolen;
    let r = browser
        .request(
            "GET",
            &format!("http://{}/profile", h.addr()),
            &[("Accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, 302);
    assert!(
        r.header("location")
            .unwrap()
            .contains("/protocol/openid-connect/auth?"),
        "{:?}",
        r.header("location")
    );
}

#[tokio::test]
async fn outlive_access_token_keeps_the_session_until_its_lifetime() {
    let (_h, start, mut b) =
        short_token_session("outlive_access_token = true\nlifetime = \"6s\"").await;
    // Past the access token's exp and the leeway (a wait bounded by that exp).
    let expired = start + 2 + 1 + 1;
    while portcullis::unix_now() < expired {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = b.api_get("/profile").await;
    assert_eq!(
        r.status, 200,
        "the operator let it outlive the token: {}",
        r.body
    );
    // ... until session.lifetime.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = b.api_get("/profile").await;
        if r.status == 401 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived session.lifetime"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        portcullis::unix_now() >= start + 6,
        "ended before session.lifetime"
    );
}
