//! Every header family the gateway owns is owned in every spelling (`-`, `_`, `.`, any
//! case), because CGI, PHP, WSGI and Rack upstreams fold them into one name. Client sends
//! each family in many spellings / upstream sees only the gateway's own values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use figment::providers::{Format, Toml};
use figment::Figment;
use support::Harness;

/// Every spelling a folding upstream reads as `name`.
fn spellings(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    vec![
        name.to_owned(),
        lower.clone(),
        name.to_ascii_uppercase(),
        name.replace('-', "_"),
        lower.replace('-', "_"),
        name.replace('-', "."),
        // Mixed separators.
        name.replacen('-', "_", 1),
        name.replacen('-', ".", 1),
    ]
}

const FORWARDING: &[&str] = &[
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Ssl",
    "X-Forwarded-Scheme",
    "X-Forwarded-Uri",
    "X-Forwarded-Method",
    "Forwarded",
    "X-Real-IP",
    "X-Client-IP",
    "Client-IP",
    "True-Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Url-Scheme",
    "Front-End-Https",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-URI",
    "X-Original-Method",
    "X-Original-Host",
];

const OVERRIDES: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];

fn folded(k: &str) -> String {
    k.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn forged_headers(names: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in names {
        for (i, s) in spellings(n).into_iter().enumerate() {
            out.push((s, format!("forged-{i}.evil.example")));
        }
    }
    out
}

#[tokio::test]
async fn forwarding_headers_from_a_client_are_replaced_in_every_spelling() {
    let h = Harness::start().await;
    let t = h.token("svc", "");
    let auth = format!("Bearer {t}");
    // A few families per request, to stay under the header-count limit.
    for names in FORWARDING.chunks(5) {
        let forged = forged_headers(names);
        let refs: Vec<(&str, &str)> = forged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (path, with_token) in [("/api/public", false), ("/api/private", true)] {
            let mut hs = refs.clone();
            if with_token {
                hs.push(("Authorization", &auth));
            }
            let r = h.get(path, &hs).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            let seen = r.seen();
            for (k, v) in &seen.headers {
                assert!(
                    !v.contains("evil.example"),
                    "{path}: forged {k}: {v} reached the upstream"
                );
            }
            // Only the gateway's own values, once each, in the canonical spelling.
            assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"], "{path}");
            assert_eq!(seen.header_all("x-forwarded-proto"), ["http"], "{path}");
            assert_eq!(seen.header_all("x-forwarded-host").len(), 1, "{path}");
            let forwarding: Vec<&String> = seen
                .headers
                .iter()
                .map(|(k, _)| k)
                .filter(|k| FORWARDING.iter().any(|f| folded(f) == folded(k)))
                .collect();
            assert_eq!(
                forwarding,
                ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"],
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn method_overrides_are_removed_in_every_spelling() {
    let h = Harness::start().await;
    let forged = forged_headers(OVERRIDES);
    let refs: Vec<(&str, &str)> = forged
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let seen = h.get("/api/public", &refs).await.seen();
    for (k, _) in &seen.headers {
        assert!(
            !OVERRIDES.iter().any(|o| folded(o) == folded(k)),
            "method override {k} reached the upstream"
        );
    }
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_canonical_headers_but_never_the_other_spellings() {
    // The loopback peer is a trusted proxy here.
    let trusted = Harness::with_edit(support::TUTORIAL_RULES, |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("shutdown_grace = ") {
                    format!("{l}\ntrusted_proxies = [\"127.0.0.1/32\"]")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await;
    let hs = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.com"),
        ("X-Forwarded-Prefix", "/app"),
        ("X-Real-IP", "203.0.113.7"),
        // What a client behind the proxy slipped through: other spellings.
        ("X_Forwarded_For", "198.51.100.66"),
        ("X.Forwarded.Proto", "gopher"),
        ("x_forwarded_host", "evil.example"),
        ("X_Forwarded_Prefix", "/admin"),
        ("X_Real_IP", "198.51.100.66"),
        ("X_Original_URL", "/admin"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("X-HTTP-Method-Override", "DELETE"),
    ];
    let seen = trusted.get("/api/public", &hs).await.seen();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(seen.header_all("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.header_all("x-forwarded-host"), ["app.example.com"]);
    assert_eq!(seen.header_all("x-forwarded-prefix"), ["/app"]);
    assert_eq!(seen.header_all("x-real-ip"), ["203.0.113.7"]);
    for (k, v) in &seen.headers {
        assert!(
            !k.contains('_') && !k.contains('.'),
            "non-canonical {k}: {v} reached the upstream"
        );
        assert!(!k.contains("method-override"), "{k} reached the upstream");
    }
}

#[test]
fn an_identity_header_cannot_be_configured_as_an_owned_header_in_any_spelling() {
    for name in [
        "X-Forwarded-User",
        "X_Forwarded_For",
        "x.real.ip",
        "X_Original_URL",
        "X_HTTP_Method_Override",
        "Forwarded",
        "True_Client_IP",
        "Transfer_Encoding",
        "Cookie",
    ] {
        let toml = support::config_toml(
            "http://127.0.0.1:1/realms/x",
            "http://127.0.0.1:2",
            &format!("[headers]\nuser = \"{name}\"\n{}", support::TUTORIAL_RULES),
        );
        let err =
            portcullis::config::load_figment(Figment::from(Toml::string(&toml))).expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains("headers.user")
                && text.contains("a header the gateway or HTTP itself controls"),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn identity_values_that_would_split_their_header_are_left_out() {
    let h = Harness::with(&format!(
        "[headers.claims]\n\"X-Auth-Groups\" = \"groups\"\n\"X-Auth-Tenant\" = \"tenant\"\n\"X-Auth-Team\" = \"team\"\n{}",
        support::TUTORIAL_RULES
    ))
    .await;
    let mut c = h.idp.claims("svc", "gateway", "read");
    c["realm_access"] = serde_json::json!({"roles": [
        "user", "admin,superuser", "ops\u{0001}", "tab\trole", "del\u{007f}", "", "auditor"
    ]});
    c["scp"] = serde_json::json!(["write", "admin read", "x\ty", "nl\nz"]);
    c["preferred_username"] = serde_json::json!("mallory\u{0007}");
    c["email"] = serde_json::json!("m@example.com\u{0009}");
    c["groups"] = serde_json::json!(["eng", "a,b", "c\u{0000}"]);
    c["tenant"] = serde_json::json!("acme\u{001b}[31m");
    c["team"] = serde_json::json!("blue");
    let r = h.get_bearer("/api/private", &h.idp.mint(&c)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.seen();
    assert_eq!(seen.header_all("x-auth-roles"), ["auditor,user"]);
    assert_eq!(seen.header_all("x-auth-scopes"), ["read write"]);
    assert_eq!(seen.header_all("x-auth-groups"), ["eng"]);
    assert_eq!(seen.header_all("x-auth-team"), ["blue"]);
    // A single value with a control character is left out whole.
    assert!(seen.header("x-auth-tenant").is_none());
    assert!(seen.header("x-auth-email").is_none());
    // The user header falls back to nothing rather than a corrupted name.
    assert!(seen.header("x-auth-user").is_none());
    assert_eq!(seen.header_all("x-auth-subject"), ["svc"]);
    // A rule still judges the real role strings: "admin,superuser" is not "admin".
    let r = h.get_bearer("/admin/x", &h.idp.mint(&c)).await;
    assert_eq!(r.status, 403);
}
