//! Named upstreams (`[upstreams.NAME]`, rule `upstream`) and host rules (rule `host`):
//! each request reaches the upstream its rule names, with the host the rule was chosen by.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use portcullis::testing::EchoUpstream;
use support::{raw, Harness, RawResponse};

/// A GET with exactly these header lines (the caller chooses the Host lines).
async fn get_with(addr: SocketAddr, target: &str, lines: &[&str]) -> RawResponse {
    let mut req = format!("GET {target} HTTP/1.1\r\nConnection: close\r\n");
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes()).await
}

/// A bearer token for `sub` with these gateway client roles.
fn with_roles(h: &Harness, sub: &str, roles: &[&str]) -> String {
    let mut claims = h.idp.claims(sub, "gateway", "");
    claims["resource_access"] = serde_json::json!({"gateway": {"roles": roles}});
    h.idp.mint(&claims)
}

async fn setup() -> (Harness, EchoUpstream, EchoUpstream) {
    let billing = EchoUpstream::start().await;
    let admin = EchoUpstream::start().await;
    let extra = format!(
        r#"
[upstreams.billing]
url = "{billing}/base"

[upstreams.admin-app]
url = "{admin}"
timeout = "1s"

[[rule]]
path = "/billing/**"
upstream = "billing"

[[rule]]
path = "/**"
host = "admin.example.com"
roles = ["admin"]
upstream = "admin-app"

[[rule]]
path = "/**"
host = "*.public.example.com"
access = "public"

[[rule]]
path = "/**"
"#,
        billing = billing.url(),
        admin = admin.url(),
    );
    (Harness::with(&extra).await, billing, admin)
}

#[tokio::test]
async fn a_rule_sends_its_requests_to_the_upstream_it_names() {
    let (h, billing, admin) = setup().await;
    let token = h.token("svc", "");
    let auth = format!("Authorization: Bearer {token}");
    let host = format!("Host: {}", h.addr());

    let r = get_with(h.addr(), "/billing/invoices?id=7", &[&host, &auth]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(billing.count(), 1);
    assert_eq!(h.upstream.count(), 0);
    let seen = billing.seen().pop().unwrap();
    // The upstream URL's path is a prefix; the query passes untouched.
    assert_eq!(seen.target, "/base/billing/invoices?id=7");
    assert_eq!(seen.header("x-auth-subject"), Some("svc"));

    let r = get_with(h.addr(), "/other", &[&host, &auth]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.upstream.count(), 1, "no upstream named: [upstream]");
    assert_eq!(admin.count(), 0);
}

#[tokio::test]
async fn a_host_rule_beats_the_rule_without_host_and_the_host_reaches_the_upstream() {
    let (h, _billing, admin) = setup().await;
    let alice = with_roles(&h, "alice", &["admin", "user"]);
    let bob = with_roles(&h, "bob", &["user"]);

    // admin.example.com needs the admin role, whatever the letter case or port.
    for host in [
        "admin.example.com",
        "ADMIN.Example.com:8443",
        "admin.example.com.",
    ] {
        let r = get_with(
            h.addr(),
            "/dashboard",
            &[
                &format!("Host: {host}"),
                &format!("Authorization: Bearer {bob}"),
            ],
        )
        .await;
        assert_eq!(r.status, 403, "bob on {host}: {}", r.body);
    }
    assert_eq!(admin.count(), 0, "a denial never reaches the upstream");
    let r = get_with(
        h.addr(),
        "/dashboard",
        &[
            "Host: admin.example.com",
            &format!("Authorization: Bearer {alice}"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(admin.count(), 1);
    assert_eq!(
        admin.seen()[0].header("host"),
        Some("admin.example.com"),
        "the upstream gets the host the rule was chosen by"
    );

    // Another host falls to the rule without host: any valid token, default upstream.
    let r = get_with(
        h.addr(),
        "/dashboard",
        &[
            "Host: app.example.com",
            &format!("Authorization: Bearer {bob}"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.upstream.count(), 1);

    // A wildcard host: one label only.
    let r = get_with(h.addr(), "/x", &["Host: docs.public.example.com"]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get_with(h.addr(), "/x", &["Host: a.docs.public.example.com"]).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn the_host_cannot_be_smuggled_past_the_rules() {
    let (h, _billing, admin) = setup().await;
    let bob = with_roles(&h, "bob", &["user"]);
    let auth = format!("Authorization: Bearer {bob}");

    // Two Host headers: ambiguous, refused.
    let r = get_with(
        h.addr(),
        "/dashboard",
        &["Host: app.example.com", "Host: admin.example.com", &auth],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // An absolute-form target whose authority disagrees with Host is ambiguous too: 400
    // either way round, never forwarded (contract: Host and authority validation).
    for (target, host) in [
        (
            "http://admin.example.com/dashboard",
            "Host: app.example.com",
        ),
        (
            "http://app.example.com/dashboard",
            "Host: admin.example.com",
        ),
    ] {
        let r = get_with(h.addr(), target, &[host, &auth]).await;
        assert_eq!(r.status, 400, "{target} with {host}: {}", r.body);
    }
    // When they agree, the upstream gets the host it was judged by.
    let r = get_with(
        h.addr(),
        "http://app.example.com/dashboard",
        &["Host: APP.example.com", &auth],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.last_seen().header("host"),
        Some("app.example.com"),
        "forwarded with the host it was judged by"
    );
    assert_eq!(admin.count(), 0);

    // X-Forwarded-Host from an untrusted client does not choose the rule.
    let r = get_with(
        h.addr(),
        "/dashboard",
        &[
            "Host: app.example.com",
            "X-Forwarded-Host: admin.example.com",
            &auth,
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(admin.count(), 0);
}

#[test]
fn unknown_upstreams_and_bad_hosts_are_configuration_errors() {
    let toml = support::config_toml(
        "http://127.0.0.1:1/realms/x",
        "http://127.0.0.1:2",
        r#"
[upstreams.billing]
url = "ftp://example.com"

[upstreams."bad name"]
url = "http://127.0.0.1:3"

[upstreams.unused]
url = "http://127.0.0.1:4"

[[rule]]
path = "/a/**"
upstream = "billin"

[[rule]]
path = "/b/**"
host = "https://b.example.com"

[[rule]]
path = "/**"
"#,
    );
    let err = portcullis::config::load_figment(figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(&toml),
    ))
    .unwrap_err()
    .to_string();
    for needle in [
        "upstreams.billing.url: \"ftp://example.com\" is not an http:// or https:// URL",
        "upstreams.bad name: an upstream name may only have",
        "rule[0].upstream: \"billin\" is not defined; add [upstreams.billin] with a url (defined: billing, unused)",
        "rule[1].host: \"https://b.example.com\" must be a host name without a port or scheme",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn an_unused_upstream_is_a_warning() {
    let toml = support::config_toml(
        "http://127.0.0.1:1/realms/x",
        "http://127.0.0.1:2",
        r#"
[upstreams.unused]
url = "http://127.0.0.1:4"

[[rule]]
path = "/**"
"#,
    );
    let cfg = support::load(&toml);
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.key == "upstreams.unused"
                && w.message.contains("no rule names this upstream")),
        "{:?}",
        cfg.warnings
    );
}
