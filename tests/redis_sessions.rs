//! Sessions in a real Redis (`session.store = "redis"`), shared by two gateway replicas:
//! a login on one is served by the other, a logout on one ends the session on both, one
//! refresh serves concurrent requests on both, Redis going away costs session requests a
//! 503 (and nothing else), and Redis never holds a token in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use portcullis::server::{self, Running};
use portcullis::testing::{EchoUpstream, TestIdp};
use support::redis::Redis;
use support::{Browser, RawResponse, TUTORIAL_RULES};

struct Replicas {
    idp: TestIdp,
    _upstream: EchoUpstream,
    redis: Redis,
    a: Running,
    b: Running,
}

async fn replica(idp: &TestIdp, upstream: &EchoUpstream, redis: &Redis) -> Running {
    replica_with(idp, upstream, redis, "").await
}

/// A replica with more `[session]` keys (`session`); tokens get a 1-second leeway.
async fn replica_with(
    idp: &TestIdp,
    upstream: &EchoUpstream,
    redis: &Redis,
    session: &str,
) -> Running {
    let port = support::free_port();
    let toml = support::config_toml_on(
        &format!("127.0.0.1:{port}"),
        &format!("http://127.0.0.1:{port}"),
        &idp.issuer(),
        &upstream.url(),
        &format!("{TUTORIAL_RULES}\n[headers]\naccess_token = \"X-Auth-Token\"\n"),
    )
    .replacen(
        "[session]\n",
        &format!(
            "[session]\nstore = \"redis\"\nredis_url = \"{}\"\nlifetime = \"1h\"\n{session}\n",
            redis.url()
        ),
        1,
    )
    .replace(
        "audiences = [\"gateway\"]",
        "audiences = [\"gateway\"]\nleeway = \"1s\"",
    );
    let gw = server::start(support::load(&toml)).await.expect("starts");
    support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
    gw
}

async fn replicas() -> Replicas {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let redis = Redis::start();
    let a = replica(&idp, &upstream, &redis).await;
    let b = replica(&idp, &upstream, &redis).await;
    Replicas {
        idp,
        _upstream: upstream,
        redis,
        a,
        b,
    }
}

fn cookie_header(b: &Browser) -> String {
    b.jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An API request (no redirects) with the session cookie.
async fn with_cookie(gw: &Running, path: &str, cookie: &str) -> RawResponse {
    support::get(
        gw.addr,
        path,
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
    .await
}

async fn login(gw: &Running, user: &str, idp: &TestIdp) -> Browser {
    idp.login_as(user);
    let mut b = Browser::new(gw.addr);
    let r = b.navigate("/profile").await;
    assert_eq!(r.status, 200, "{user} logs in: {}", r.body);
    b
}

/// Polls `/readyz` until it answers `status`.
async fn readyz_becomes(gw: &Running, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if support::get(gw.admin_addr, "/readyz", &[]).await.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_is_served_by_both_replicas_and_a_logout_on_one_ends_it_on_both() {
    let r = replicas().await;
    let mut alice = login(&r.a, "alice", &r.idp).await;
    let cookie = cookie_header(&alice);

    let on_b = with_cookie(&r.b, "/profile", &cookie).await;
    assert_eq!(
        on_b.status, 200,
        "replica B serves A's session: {}",
        on_b.body
    );
    assert_eq!(on_b.seen().header("x-auth-user"), Some("alice"));

    let out = alice
        .request(
            "POST",
            &format!("http://{}/oauth2/logout", r.a.addr),
            &[("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    for gw in [&r.a, &r.b] {
        let replay = with_cookie(gw, "/profile", &cookie).await;
        assert_eq!(
            replay.status, 401,
            "the logged-out cookie is refused everywhere"
        );
    }
    assert!(
        r.redis.dump().iter().all(|(k, _, _)| !k.contains(":s:")),
        "the session is gone from Redis: {:?}",
        r.redis.dump()
    );
}

#[tokio::test]
async fn redis_holds_no_token_in_clear_and_sessions_expire_with_their_lifetime() {
    let r = replicas().await;
    let alice = login(&r.a, "alice", &r.idp).await;
    let seen = with_cookie(&r.a, "/profile", &cookie_header(&alice))
        .await
        .seen();
    let access_token = seen
        .header("x-auth-token")
        .expect("the access token")
        .to_owned();
    let dump = r.redis.dump();
    let sessions: Vec<_> = dump
        .iter()
        .filter(|(k, _, _)| k.starts_with("portcullis:s:"))
        .collect();
    assert_eq!(sessions.len(), 1, "{dump:?}");
    let (_, _, ttl) = sessions[0];
    assert!(
        (3500..=3600).contains(ttl),
        "TTL follows session.lifetime: {ttl}"
    );
    for (k, v, _) in &dump {
        assert!(
            k.starts_with("portcullis:"),
            "every key has the prefix: {k}"
        );
        assert!(
            !v.contains("eyJ") && !v.contains(&access_token),
            "{k} holds a token in clear"
        );
    }
    // The cookie names the session only: it is small and holds no token either.
    let cookie = cookie_header(&alice);
    assert!(cookie.len() < 400, "{} bytes", cookie.len());
}

#[tokio::test]
async fn one_refresh_serves_concurrent_requests_on_both_replicas() {
    let r = replicas().await;
    // Access tokens that are due for refresh as soon as they are issued.
    r.idp.set_access_ttl(2);
    let alice = login(&r.a, "alice", &r.idp).await;
    let cookie = cookie_header(&alice);
    r.idp.set_access_ttl(3600);
    let before = r.idp.refreshes();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = if i % 2 == 0 { r.a.addr } else { r.b.addr };
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            support::get(
                addr,
                "/profile",
                &[("Cookie", &cookie), ("Accept", "application/json")],
            )
            .await
        }));
    }
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        let resp = t.await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        tokens.insert(resp.seen().header("x-auth-token").unwrap().to_owned());
    }
    assert_eq!(
        r.idp.refreshes() - before,
        1,
        "one refresh grant for both replicas"
    );
    assert_eq!(tokens.len(), 1, "every request carries the refreshed token");
    // The refreshed session is what both replicas serve from now on, without refreshing.
    for gw in [&r.a, &r.b] {
        assert_eq!(with_cookie(gw, "/profile", &cookie).await.status, 200);
    }
    assert_eq!(r.idp.refreshes() - before, 1);
}

#[tokio::test]
async fn without_redis_only_session_requests_fail_and_all_recovers_when_it_returns() {
    let mut r = replicas().await;
    let alice = login(&r.a, "alice", &r.idp).await;
    let cookie = cookie_header(&alice);
    let token = r.idp.mint(&r.idp.claims("svc", "gateway", ""));
    let bearer = format!("Bearer {token}");

    r.redis.stop();
    let down = with_cookie(&r.a, "/profile", &cookie).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains("session store"), "{}", down.body);
    let api = support::get(r.a.addr, "/api/private", &[("Authorization", &bearer)]).await;
    assert_eq!(api.status, 200, "bearer requests do not need Redis");
    assert_eq!(support::get(r.b.addr, "/api/public", &[]).await.status, 200);
    readyz_becomes(&r.a, 503).await;

    r.redis.resume();
    readyz_becomes(&r.a, 200).await;
    for gw in [&r.a, &r.b] {
        let back = with_cookie(gw, "/profile", &cookie).await;
        assert_eq!(back.status, 200, "the session survives: {}", back.body);
    }
}

#[test]
fn check_validates_the_redis_keys_with_their_paths() {
    let base = support::config_toml("http://127.0.0.1:1/realms/x", "http://127.0.0.1:2", "");
    let with = |session: &str| base.replacen("[session]\n", &format!("[session]\n{session}"), 1);
    let errors = |toml: String| -> Vec<String> {
        match portcullis::config::load_figment(figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&toml),
        )) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}: {}", e.key, e.message))
                    .collect()
            }
        }
    };
    let e = errors(with("store = \"redis\"\n"));
    assert!(
        e.iter()
            .any(|m| m.starts_with("session.redis_url: missing")),
        "{e:?}"
    );
    let e = errors(with(
        "store = \"redis\"\nredis_url = \"http://user:hunter2@x\"\n",
    ));
    assert!(
        e.iter().any(|m| m.starts_with("session.redis_url:")),
        "{e:?}"
    );
    assert!(
        e.iter().all(|m| !m.contains("hunter2")),
        "the URL's password is never repeated"
    );
    assert!(errors(with(
        "store = \"redis\"\nredis_url = \"redis://127.0.0.1:1/0\"\n"
    ))
    .is_empty());
}

/// A back-channel logout delivered to one replica ends the session on every replica.
#[tokio::test]
async fn a_back_channel_logout_on_one_replica_ends_the_session_on_both() {
    let r = replicas().await;
    let alice = login(&r.a, "alice", &r.idp).await;
    let cookie = cookie_header(&alice);
    let sid = r.idp.last_sid().expect("the provider's session id");
    let bob = login(&r.a, "bob", &r.idp).await;
    let bob_cookie = cookie_header(&bob);

    let token = r.idp.mint_logout(&r.idp.logout_token(None, Some(&sid)));
    let body = format!("logout_token={token}");
    let req = format!(
        "POST /oauth2/backchannel-logout HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        r.b.addr,
        body.len()
    );
    let answer = support::raw(r.b.addr, req.as_bytes()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for gw in [&r.a, &r.b] {
        assert_eq!(with_cookie(gw, "/profile", &cookie).await.status, 401);
        assert_eq!(
            with_cookie(gw, "/profile", &bob_cookie).await.status,
            200,
            "bob stays"
        );
    }
}

/// `session.redis_urls`: the same guarantees on a Redis Cluster of three real nodes.
#[tokio::test]
async fn a_redis_cluster_shares_sessions_between_replicas_too() {
    let cluster = support::redis::RedisCluster::start();
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let urls = cluster
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let port = support::free_port();
        let toml = support::config_toml_on(
            &format!("127.0.0.1:{port}"),
            &format!("http://127.0.0.1:{port}"),
            &idp.issuer(),
            &upstream.url(),
            TUTORIAL_RULES,
        )
        .replacen(
            "[session]\n",
            &format!("[session]\nstore = \"redis\"\nredis_urls = [{urls}]\n"),
            1,
        );
        let gw = server::start(support::load(&toml)).await.expect("starts");
        support::wait_ready(gw.admin_addr, Duration::from_secs(20)).await;
        replicas.push(gw);
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    let mut alice = login(a, "alice", &idp).await;
    let cookie = cookie_header(&alice);
    assert_eq!(with_cookie(b, "/profile", &cookie).await.status, 200);
    assert!(
        cluster
            .keys()
            .iter()
            .any(|k| k.starts_with("portcullis:s:")),
        "the session is in the cluster: {:?}",
        cluster.keys()
    );
    let out = alice
        .request(
            "POST",
            &format!("http://{}/oauth2/logout", a.addr),
            &[("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, 302);
    assert_eq!(with_cookie(b, "/profile", &cookie).await.status, 401);
    assert!(!cluster
        .keys()
        .iter()
        .any(|k| k.starts_with("portcullis:s:")));
}

/// `refresh = false` with the Redis store: the session ends with its access token (plus
/// the leeway) on every replica, as with the cookie store.
#[tokio::test]
async fn without_refresh_a_stored_session_ends_with_its_access_token() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let redis = Redis::start();
    let a = replica_with(&idp, &upstream, &redis, "refresh = false").await;
    let b = replica_with(&idp, &upstream, &redis, "refresh = false").await;
    idp.set_access_ttl(2);
    let start = portcullis::unix_now();
    let alice = login(&a, "alice", &idp).await;
    let cookie = cookie_header(&alice);
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended_at = loop {
        let on_b = with_cookie(&b, "/profile", &cookie).await;
        if on_b.status == 401 {
            break portcullis::unix_now();
        }
        assert_eq!(on_b.status, 200, "{}", on_b.body);
        assert!(
            Instant::now() < deadline,
            "the session outlived its access token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    const TTL_AND_LEEWAY: u64 = 2 + 1;
    assert!(
        ended_at >= start + TTL_AND_LEEWAY,
        "ended before the token expired"
    );
    assert_eq!(with_cookie(&a, "/profile", &cookie).await.status, 401);
}
