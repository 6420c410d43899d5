//! `cors_preflight = "allow"` on a rule (contract §9): a CORS preflight (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) is forwarded without a credential; every
//! other request on that rule is judged as usual. `serve`, forward-auth and `explain` give
//! the same decision, and a denied request never reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue, Method};
use portcullis::explain::{self, Explanation, Source};
use support::{Harness, RawResponse};

const RULES: &str = r#"
[[rule]]
path = "/api/**"
cors_preflight = "allow"

[[rule]]
path = "/strict/**"

# OPTIONS selects the first (methods beat none), every other method the second.
[[rule]]
path = "/mixed/**"
methods = ["OPTIONS"]
cors_preflight = "allow"

[[rule]]
path = "/mixed/**"
roles = ["admin"]

# OPTIONS never selects the first, so its cors_preflight never applies.
[[rule]]
path = "/get-only/**"
methods = ["GET"]
cors_preflight = "allow"

[[rule]]
path = "/get-only/**"

[[rule]]
path = "/**"
"#;

const ORIGIN: (&str, &str) = ("Origin", "https://spa.example");
const ACRM: (&str, &str) = ("Access-Control-Request-Method", "DELETE");

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    support::raw(addr, req.as_bytes()).await
}

async fn start() -> Harness {
    Harness::with_edit(RULES, |toml| {
        toml.replace(
            "shutdown_grace = \"2s\"",
            "shutdown_grace = \"2s\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
        )
    })
    .await
}

/// What `explain` decides for the same request: (status, reason).
async fn explained(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, &'static str) {
    let rt = h.gw.gateway.runtime();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    match explain::explain_with_headers(&rt.config, &method, path, None, &map, Source::None).await {
        Explanation::Decided { verdict, .. } => (verdict.status().as_u16(), verdict.reason()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_preflight_passes_without_a_credential_and_nothing_else_does() {
    let h = start().await;
    let t = h.token("svc-1", "read");
    let auth = format!("Bearer {t}");
    let forged = ("X-Auth-User", "mallory");

    // The preflight: forwarded, as OPTIONS, with no identity and no credential, even
    // when it carries a (here invalid) one.
    let r = send(
        h.addr(),
        "OPTIONS",
        "/api/items/1",
        &[
            ORIGIN,
            ACRM,
            forged,
            ("Authorization", "Bearer not-a-token"),
        ],
    )
    .await;
    let seen = r.seen();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.target, "/api/items/1");
    assert_eq!(seen.header("origin"), Some("https://spa.example"));
    assert_eq!(seen.header("access-control-request-method"), Some("DELETE"));
    assert!(seen.header("authorization").is_none());
    assert!(seen.header("x-auth-user").is_none() && seen.header("x-auth-subject").is_none());
    assert_eq!(
        explained(&h, "OPTIONS", "/api/items/1", &[ORIGIN, ACRM]).await,
        (200, "cors_preflight")
    );
    // A valid bearer on the preflight is not judged either: no identity reaches the upstream.
    let seen = send(
        h.addr(),
        "OPTIONS",
        "/api/items/1",
        &[ORIGIN, ACRM, ("Authorization", &auth)],
    )
    .await
    .seen();
    assert!(seen.header("x-auth-subject").is_none() && seen.header("authorization").is_none());

    // Everything else on the same rule is judged: 401 without a credential, never
    // forwarded.
    let before = h.upstream.count();
    for (method, headers) in [
        ("OPTIONS", vec![]),
        ("OPTIONS", vec![ORIGIN]),
        ("OPTIONS", vec![ACRM]),
        ("OPTIONS", vec![("Origin", ""), ACRM]),
        ("GET", vec![ORIGIN, ACRM]),
        ("DELETE", vec![ORIGIN, ACRM]),
        ("GET", vec![]),
    ] {
        let r = send(h.addr(), method, "/api/items/1", &headers).await;
        assert_eq!(r.status, 401, "{method} {headers:?}: {}", r.body);
        assert_eq!(
            explained(&h, method, "/api/items/1", &headers).await,
            (401, "unauthenticated"),
            "{method} {headers:?}"
        );
    }
    assert_eq!(h.upstream.count(), before, "a denial reached the upstream");
    // With a valid credential, those are allowed as usual, with the identity.
    let seen = send(
        h.addr(),
        "OPTIONS",
        "/api/items/1",
        &[("Authorization", &auth)],
    )
    .await
    .seen();
    assert_eq!(seen.header("x-auth-subject"), Some("svc-1"));
    let seen = send(
        h.addr(),
        "GET",
        "/api/items/1",
        &[ORIGIN, ACRM, ("Authorization", &auth)],
    )
    .await
    .seen();
    assert_eq!(seen.header("x-auth-subject"), Some("svc-1"));
    h.gw.shutdown().await;
}

#[tokio::test]
async fn only_the_rule_the_options_request_selects_counts() {
    let h = start().await;
    let before = h.upstream.count();
    // No cors_preflight on the rule: the preflight is judged, and denied.
    for path in ["/strict/x", "/get-only/x", "/elsewhere"] {
        let r = send(h.addr(), "OPTIONS", path, &[ORIGIN, ACRM]).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(
            explained(&h, "OPTIONS", path, &[ORIGIN, ACRM]).await,
            (401, "unauthenticated")
        );
    }
    assert_eq!(h.upstream.count(), before, "a denial reached the upstream");
    // The OPTIONS-only rule allows preflights; the other methods' rule asks for a role.
    let r = send(h.addr(), "OPTIONS", "/mixed/x", &[ORIGIN, ACRM]).await;
    assert_eq!(r.seen().method, "OPTIONS");
    let t = h.token("svc-2", "");
    let auth = format!("Bearer {t}");
    let r = send(
        h.addr(),
        "GET",
        "/mixed/x",
        &[ORIGIN, ACRM, ("Authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(h.upstream.count(), before + 1);
    // A `_method` override must be allowed too: its rule has no cors_preflight.
    let r = send(h.addr(), "OPTIONS", "/mixed/x?_method=GET", &[ORIGIN, ACRM]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(h.upstream.count(), before + 1);
    h.gw.shutdown().await;
}

#[tokio::test]
async fn forward_auth_decides_preflights_the_same_way() {
    let h = start().await;
    let ask =
        |method: &'static str, path: &'static str, extra: Vec<(&'static str, &'static str)>| {
            let mut headers = vec![("X-Forwarded-Method", method), ("X-Forwarded-Uri", path)];
            headers.extend(extra);
            headers
        };
    let r = h
        .get(
            "/oauth2/auth",
            &ask("OPTIONS", "/api/x", vec![ORIGIN, ACRM]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-auth-subject").is_none());
    let r = h
        .get("/oauth2/auth", &ask("OPTIONS", "/api/x", vec![ORIGIN]))
        .await;
    assert_eq!(r.status, 401);
    let r = h
        .get(
            "/oauth2/auth",
            &ask("OPTIONS", "/strict/x", vec![ORIGIN, ACRM]),
        )
        .await;
    assert_eq!(r.status, 401);
    h.gw.shutdown().await;
}

#[test]
fn any_other_value_is_a_configuration_error_and_a_useless_one_a_warning() {
    let load = |rule: &str| {
        let toml = support::config_toml("http://127.0.0.1:1/realm", "http://127.0.0.1:2", rule);
        portcullis::config::load_figment(figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&toml),
        ))
    };
    let err = load(
        "[[rule]]\npath = \"/**\"\n\n[[rule]]\npath = \"/api/**\"\ncors_preflight = \"yes\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("rule[1].cors_preflight"), "{err}");
    assert!(
        err.contains("\"yes\" is not one of \"allow\", \"off\""),
        "{err}"
    );
    let cfg = load("[[rule]]\npath = \"/**\"\ncors_preflight = \"off\"\n").unwrap();
    assert!(!cfg.rules.rules()[0].cors_preflight);
    let cfg = load("[[rule]]\npath = \"/**\"\nmethods = [\"GET\"]\ncors_preflight = \"allow\"\n")
        .unwrap();
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.key == "rule[0].cors_preflight"),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn explain_on_the_command_line_takes_the_preflight_headers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        support::config_toml("http://127.0.0.1:1/realm", "http://127.0.0.1:2", RULES),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("explain")
            .arg("-c")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&[
        "OPTIONS",
        "/api/x",
        "-H",
        "Origin: https://spa.example",
        "--header",
        "Access-Control-Request-Method: PUT",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("decision: allow (cors_preflight)"), "{out}");
    assert!(out.contains("rule:     rule[0] \"/api/**\""), "{out}");
    let (code, out, _) = run(&["OPTIONS", "/api/x", "-H", "Origin: https://spa.example"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("decision: deny (unauthenticated, 401)"),
        "{out}"
    );
    let (code, _, err) = run(&["GET", "/api/x", "-H", "Authorization: Bearer x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--token"), "{err}");
    let (code, _, err) = run(&["GET", "/api/x", "-H", "no colon"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NAME: VALUE"), "{err}");
}
