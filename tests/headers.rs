//! What the upstream receives (contract §4), in four parts: what the client sends, what
//! the upstream must see, what it must not see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::Harness;

#[tokio::test]
async fn identity_headers_are_stripped_in_every_spelling() {
    let h = Harness::start().await;
    let forged = [
        ("X-Auth-User", "mallory"),
        ("x-auth-user", "mallory2"),
        ("X_Auth_User", "mallory3"),
        ("X.Auth.User", "mallory4"),
        ("X-AUTH-ROLES", "admin"),
        ("X_auth_roles", "admin"),
        ("X-Auth-Email", "m@evil.example"),
        ("X-Auth-Subject", "root"),
        ("X-Auth-Scopes", "test_api_access"),
    ];
    // Public rule, no credential: nothing of these survives.
    let seen = h.get("/api/public", &forged).await.seen();
    for (k, _) in &seen.headers {
        let folded = k.replace(['_', '.'], "-");
        assert!(
            !folded.starts_with("x-auth-"),
            "forged header {k} reached the upstream"
        );
    }
    // Authenticated: only the gateway's values.
    let t = h.token("svc-1", "read");
    let auth = format!("Bearer {t}");
    let mut with_auth = forged.to_vec();
    with_auth.push(("Authorization", &auth));
    let seen = h.get("/api/private", &with_auth).await.seen();
    assert_eq!(seen.header_all("x-auth-user"), ["svc-1"]);
    assert_eq!(seen.header_all("x-auth-subject"), ["svc-1"]);
    assert_eq!(seen.header_all("x-auth-roles"), [""]);
    assert_eq!(seen.header_all("x-auth-scopes"), ["read"]);
    assert!(seen.header("x_auth_user").is_none() && seen.header("x.auth.user").is_none());
}

#[tokio::test]
async fn connection_cannot_remove_the_gateways_headers() {
    let h = Harness::start().await;
    let t = h.token("svc-1", "");
    let auth = format!("Bearer {t}");
    let seen = h
        .get(
            "/api/private",
            &[
                ("Authorization", &auth),
                (
                    "Connection",
                    "close, X-Auth-User, X-Forwarded-For, Authorization",
                ),
                ("X-Keep", "yes"),
            ],
        )
        .await
        .seen();
    assert_eq!(seen.header("x-auth-user"), Some("svc-1"));
    assert!(seen.header("x-forwarded-for").is_some());
    assert_eq!(seen.header("x-keep"), Some("yes"));
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed() {
    let h = Harness::start().await;
    let seen = h
        .get(
            "/api/public",
            &[
                ("Connection", "close, X-Secret-Hop"),
                ("X-Secret-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("Proxy-Authorization", "Basic eDp5"),
                ("TE", "trailers"),
                ("Upgrade", "h2c"),
                ("X-Other", "kept"),
            ],
        )
        .await
        .seen();
    for gone in [
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(seen.header(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(seen.header("x-other"), Some("kept"));
}

#[tokio::test]
async fn method_override_headers_are_removed_and_query_override_is_judged() {
    let h = Harness::with(
        r#"
[[rule]]
path = "/items/**"
methods = ["GET"]
access = "public"

[[rule]]
path = "/items/**"
methods = ["DELETE"]
roles = ["admin"]

[[rule]]
path = "/**"
login = "deny"
"#,
    )
    .await;
    let seen = h
        .get(
            "/items/1",
            &[
                ("X-HTTP-Method-Override", "DELETE"),
                ("X-HTTP-Method", "DELETE"),
                ("X-Method-Override", "DELETE"),
            ],
        )
        .await
        .seen();
    assert!(seen.header("x-http-method-override").is_none());
    assert!(seen.header("x-http-method").is_none());
    assert!(seen.header("x-method-override").is_none());

    // GET with _method=DELETE must be allowed as DELETE too.
    let before = h.upstream.count();
    assert_eq!(h.get("/items/1?_method=DELETE", &[]).await.status, 401);
    assert_eq!(h.get("/items/1?a=1&_method=delete", &[]).await.status, 401);
    assert_eq!(h.upstream.count(), before);
    let mut c = h.idp.claims("root", "gateway", "");
    c["realm_access"] = json!({"roles": ["admin"]});
    let admin = h.idp.mint(&c);
    assert_eq!(
        h.get_bearer("/items/1?_method=DELETE", &admin).await.status,
        200
    );
}

#[tokio::test]
async fn gateway_cookies_are_removed_and_others_pass() {
    let h = Harness::start().await;
    let seen = h
        .get(
            "/api/public",
            &[(
                "Cookie",
                "a=1; portcullis=secret; portcullis_1=chunk; portcullis_login_x=s; b=2",
            )],
        )
        .await
        .seen();
    assert_eq!(seen.header("cookie"), Some("a=1; b=2"));
    let seen = h
        .get("/api/public", &[("Cookie", "portcullis=only")])
        .await
        .seen();
    assert_eq!(seen.header("cookie"), None);
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_clients_are_replaced() {
    let h = Harness::start().await;
    let seen = h
        .get(
            "/api/public",
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-Prefix", "/evil"),
                ("X-Real-IP", "6.6.6.6"),
                ("Forwarded", "for=6.6.6.6"),
            ],
        )
        .await
        .seen();
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(h.addr().to_string().as_str())
    );
    assert!(seen.header("x-forwarded-prefix").is_none());
    assert!(seen.header("x-real-ip").is_none());
    assert!(seen.header("forwarded").is_none());
}

#[tokio::test]
async fn forwarded_headers_from_trusted_proxies_are_kept_and_appended() {
    let h = Harness::start().await;
    // Restart with trusted_proxies: build the config by hand.
    let toml = support::config_toml(&h.idp.issuer(), &h.upstream.url(), support::TUTORIAL_RULES)
        .replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
        );
    let gw = portcullis::server::start(support::load(&toml))
        .await
        .expect("starts");
    let r = support::get(
        gw.addr,
        "/api/public",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example.com"),
        ],
    )
    .await;
    let seen = r.seen();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example.com"));
}

#[tokio::test]
async fn claim_headers_and_access_token_header() {
    let h = Harness::with(&format!(
        "{}\n{}",
        r#"
[headers]
access_token = "X-Auth-Token"
roles = ""
[headers.claims]
"X-Auth-Tenant" = "tenant"
"X-Auth-Groups" = "groups"
"#,
        support::TUTORIAL_RULES
    ))
    .await;
    let mut c = h.idp.claims("svc", "gateway", "");
    c["tenant"] = json!("acme");
    c["groups"] = json!(["a", "b"]);
    let t = h.idp.mint(&c);
    let seen = h
        .get(
            "/api/private",
            &[
                ("Authorization", &format!("Bearer {t}")),
                ("X-Auth-Tenant", "evil"),
                ("X_Auth_Token", "forged"),
                ("X-Auth-Roles", "admin"),
            ],
        )
        .await
        .seen();
    assert_eq!(seen.header_all("x-auth-tenant"), ["acme"]);
    assert_eq!(seen.header("x-auth-groups"), Some("a,b"));
    assert_eq!(seen.header_all("x-auth-token"), [t.as_str()]);
    // roles = "" turns that header off; a client copy still reaches the upstream because
    // it is no longer an identity header.
    assert_eq!(seen.header("x-auth-roles"), Some("admin"));
}
