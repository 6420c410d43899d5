//! Session administration on the admin listener (`server.admin_token`): list and end the
//! sessions of a subject, or one session; with the cookie store on this instance, with
//! the Redis store on every replica. Never a token in an answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use portcullis::server::Running;
use portcullis::testing::{EchoUpstream, TestIdp};
use support::redis::Redis;
use support::{Browser, Harness, RawResponse};

const TOKEN: &str = "an-admin-token-for-the-tests-0123456789";

fn with_admin_token(toml: String) -> String {
    toml.replacen(
        "[server]\n",
        &format!("[server]\nadmin_token = \"{TOKEN}\"\n"),
        1,
    )
}

async fn admin(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> RawResponse {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n"
    );
    support::raw(addr, req.as_bytes()).await
}

async fn login(gw: SocketAddr, idp: &TestIdp, user: &str) -> String {
    idp.login_as(user);
    let mut b = Browser::new(gw);
    assert_eq!(b.navigate("/profile").await.status, 200, "{user} logs in");
    b.jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn status(gw: SocketAddr, cookie: &str) -> u16 {
    support::get(
        gw,
        "/profile",
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
    .await
    .status
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_session_administration() {
    let h = Harness::start().await;
    let r = admin(
        h.gw.admin_addr,
        "GET",
        "/sessions?sub=alice-id",
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn the_cookie_store_lists_and_ends_the_sessions_made_on_this_instance() {
    let h = Harness::with_edit(support::TUTORIAL_RULES, with_admin_token).await;
    let a = h.gw.admin_addr;
    let first = login(h.addr(), &h.idp, "alice").await;
    let second = login(h.addr(), &h.idp, "alice").await;
    let bob = login(h.addr(), &h.idp, "bob").await;

    assert_eq!(
        admin(a, "GET", "/sessions?sub=alice-id", None).await.status,
        401
    );
    let wrong = admin(a, "GET", "/sessions?sub=alice-id", Some("not-the-token")).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(admin(a, "GET", "/sessions", Some(TOKEN)).await.status, 400);
    assert_eq!(
        admin(a, "POST", "/sessions?sub=alice-id", Some(TOKEN))
            .await
            .status,
        405
    );

    let list = admin(a, "GET", "/sessions?sub=alice-id", Some(TOKEN)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        !list.body.contains("eyJ"),
        "no token in the answer: {}",
        list.body
    );
    let sessions = list.json();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for s in sessions {
        assert_eq!(s["sub"], "alice-id");
        assert_eq!(s["user"], "alice");
        assert!(s["created"].as_u64().unwrap() <= s["expires"].as_u64().unwrap());
    }
    let sid = sessions[0]["sid"].as_str().unwrap();

    let one = admin(a, "DELETE", &format!("/sessions/{sid}"), Some(TOKEN)).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["ended"], 1);
    let (s1, s2) = (
        status(h.addr(), &first).await,
        status(h.addr(), &second).await,
    );
    assert_eq!(s1 + s2, 200 + 401, "exactly one of alice's sessions ended");

    let all = admin(a, "DELETE", "/sessions?sub=alice-id", Some(TOKEN)).await;
    assert_eq!(all.json()["ended"], 1);
    assert_eq!(status(h.addr(), &first).await, 401);
    assert_eq!(status(h.addr(), &second).await, 401);
    assert_eq!(status(h.addr(), &bob).await, 200, "bob's session stays");
    let list = admin(a, "GET", "/sessions?sub=alice-id", Some(TOKEN)).await;
    assert_eq!(list.json(), serde_json::json!([]));
}

async fn replica(idp: &TestIdp, upstream: &EchoUpstream, redis: &Redis) -> Running {
    let port = support::free_port();
    let toml = with_admin_token(support::config_toml_on(
        &format!("127.0.0.1:{port}"),
        &format!("http://127.0.0.1:{port}"),
        &idp.issuer(),
        &upstream.url(),
        support::TUTORIAL_RULES,
    ));
    support::serve(&redis.store_in(&toml)).await
}

#[tokio::test]
async fn the_redis_store_lists_and_ends_the_sessions_of_every_replica() {
    let idp = TestIdp::start().await;
    let upstream = EchoUpstream::start().await;
    let redis = Redis::start();
    let a = replica(&idp, &upstream, &redis).await;
    let b = replica(&idp, &upstream, &redis).await;
    let alice = login(a.addr, &idp, "alice").await;
    let bob = login(a.addr, &idp, "bob").await;

    // Replica B's admin listener sees the session made on A ...
    let list = admin(b.admin_addr, "GET", "/sessions?sub=alice-id", Some(TOKEN)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(!list.body.contains("eyJ"), "{}", list.body);
    let sessions = list.json();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["user"], "alice");

    // ... and ending it there ends it on A.
    let ended = admin(
        b.admin_addr,
        "DELETE",
        "/sessions?sub=alice-id",
        Some(TOKEN),
    )
    .await;
    assert_eq!(ended.json()["ended"], 1);
    assert_eq!(status(a.addr, &alice).await, 401);
    assert_eq!(status(a.addr, &bob).await, 200);
    let bob_sid = admin(a.admin_addr, "GET", "/sessions?sub=bob-id", Some(TOKEN))
        .await
        .json()[0]["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = admin(
        b.admin_addr,
        "DELETE",
        &format!("/sessions/{bob_sid}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(one.json()["ended"], 1);
    assert_eq!(status(a.addr, &bob).await, 401);
}
