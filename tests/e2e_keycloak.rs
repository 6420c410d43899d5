//! Bearer tokens end to end against a REAL Keycloak (26.7.3, realms from `deploy/keycloak/`).
//!
//! Every test is `#[ignore]`d: run them with `tests/e2e/run.sh`, which starts Keycloak, sets
//! `KEYCLOAK_URL` and runs `cargo test --test e2e_keycloak -- --ignored --test-threads=1`.
//! By hand, with a Keycloak from `tests/e2e/keycloak.sh start`:
//!
//! ```sh
//! KEYCLOAK_URL=http://127.0.0.1:PORT cargo test --test e2e_keycloak -- --ignored
//! ```
//!
//! Tokens come from Keycloak's token endpoint (client-credentials grant); the gateway and an
//! echo upstream run in-process. A denied request must never reach the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;
mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e_support::KcAdmin;
use portcullis::server::{self, Running};
use portcullis::testing::EchoUpstream;
use serde_json::Value;
use support::RawResponse;

const REALM: &str = "Bearer realm=\"portcullis\"";

/// The tutorial's resource-server rules; anything else needs a token and never redirects.
const RULES: &str = r#"
[[rule]]
path = "/api/public"
access = "public"

[[rule]]
path = "/api/private"
access = "authenticated"

[[rule]]
path = "/api/private-scoped/**"
scopes = ["test_api_access"]

[[rule]]
path = "/**"
access = "authenticated"
login = "deny"
"#;

/// Keycloak's base URL (no trailing slash), from `KEYCLOAK_URL`.
fn keycloak_url() -> String {
    match std::env::var("KEYCLOAK_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "KEYCLOAK_URL is not set: these tests need a running Keycloak. \
             Run tests/e2e/run.sh, or start one with tests/e2e/keycloak.sh start and set \
             KEYCLOAK_URL from its state file."
        ),
    }
}

/// Keycloak, an echo upstream and the gateway (issuer: realm `myorg`), ready to serve.
struct Env {
    kc: String,
    upstream: EchoUpstream,
    gw: Running,
    /// The realm lock, shared; `None` when the test holds it exclusively itself.
    _realm: Option<e2e_support::SharedRealm>,
}

impl Env {
    async fn start() -> Env {
        let realm = e2e_support::shared_realm().await;
        Env::launch(|toml| toml, Some(realm)).await
    }

    /// The gateway with its configuration text passed through `edit` first.
    async fn launch(
        edit: impl FnOnce(String) -> String,
        realm: Option<e2e_support::SharedRealm>,
    ) -> Env {
        let kc = keycloak_url();
        let upstream = EchoUpstream::start().await;
        let toml = edit(support::config_toml(
            &format!("{kc}/realms/myorg"),
            &upstream.url(),
            RULES,
        ));
        let gw = server::start(support::load(&toml))
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start against {kc}: {e}"));
        let env = Env {
            kc,
            upstream,
            gw,
            _realm: realm,
        };
        env.wait_ready().await;
        env
    }

    /// Polls the admin `/readyz` until 200 (discovery done, Keycloak's keys loaded).
    async fn wait_ready(&self) {
        support::wait_ready(self.gw.admin_addr, Duration::from_secs(30)).await;
    }

    async fn get(&self, path: &str, token: Option<&str>) -> RawResponse {
        self.get_with(path, token, &[]).await
    }

    async fn get_with(
        &self,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> RawResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        support::get(self.gw.addr, path, &headers).await
    }

    /// A request that must be refused with `status` and must not reach the upstream.
    async fn denied(&self, path: &str, token: Option<&str>, status: u16) -> RawResponse {
        self.denied_with(path, token, &[], status).await
    }

    async fn denied_with(
        &self,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        status: u16,
    ) -> RawResponse {
        let before = self.upstream.count();
        let r = self.get_with(path, token, extra).await;
        assert_eq!(
            r.status, status,
            "GET {path}: expected {status}, got {}: {}",
            r.status, r.body
        );
        assert_eq!(
            self.upstream.count(),
            before,
            "GET {path}: a denial must never reach the upstream"
        );
        r
    }

    /// An access token from realm `myorg` (client-credentials grant).
    async fn token(&self, client_id: &str, secret: &str, scope: Option<&str>) -> String {
        client_credentials(&self.kc, "myorg", client_id, secret, scope).await
    }

    async fn stop(self) {
        self.gw.shutdown().await;
    }
}

/// The full token response of a client-credentials grant.
async fn token_response(
    kc: &str,
    realm: &str,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
) -> Value {
    let endpoint = format!("{kc}/realms/{realm}/protocol/openid-connect/token");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let r = e2e_support::post_form(&endpoint, &form).await;
    assert_eq!(
        r.status, 200,
        "Keycloak refused the client-credentials grant for {client_id} in {realm}: {}",
        r.body
    );
    r.json()
}

async fn client_credentials(
    kc: &str,
    realm: &str,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
) -> String {
    let v = token_response(kc, realm, client_id, secret, scope).await;
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_owned()
}

/// A JWT's claims, without checking anything (to compare with what the gateway forwards).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn scopes(c: &Value) -> Vec<&str> {
    c["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

fn assert_invalid_token(r: &RawResponse, desc: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("{REALM}, error=\"invalid_token\", error_description=\"{desc}\"").as_str()),
        "{}",
        r.body
    );
    assert_eq!(r.json()["error"], "invalid_token");
    assert_eq!(r.json()["error_description"], desc);
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn scoped_token_reaches_the_scoped_endpoint_with_identity_headers() {
    let env = Env::start().await;
    let token = env
        .token(
            "test_api_client",
            "test-api-secret",
            Some("test_api_access"),
        )
        .await;
    let c = claims(&token);
    assert_eq!(
        c["iss"],
        format!("{}/realms/myorg", env.kc),
        "Keycloak's issuer"
    );
    assert!(
        scopes(&c).contains(&"test_api_access"),
        "Keycloak granted the optional scope: {c}"
    );
    let sub = c["sub"].as_str().expect("sub").to_owned();

    for path in [
        "/api/private-scoped",
        "/api/private-scoped/items?page=2&x=%2F",
    ] {
        let before = env.upstream.count();
        let r = env.get(path, Some(&token)).await;
        let seen = r.seen();
        assert_eq!(env.upstream.count(), before + 1);
        assert_eq!(seen.target, path, "path and query forwarded as is");
        assert_eq!(seen.header("x-auth-subject"), Some(sub.as_str()));
        assert_eq!(
            seen.header("x-auth-user"),
            Some("service-account-test_api_client"),
            "Keycloak's preferred_username"
        );
        let fwd_scopes = seen.header("x-auth-scopes").expect("X-Auth-Scopes");
        assert!(
            fwd_scopes.split(' ').any(|s| s == "test_api_access"),
            "X-Auth-Scopes = {fwd_scopes:?}"
        );
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {token}").as_str()),
            "a bearer request's Authorization is passed on unchanged"
        );
        // Roles: Keycloak's `realm_access.roles` (sorted, comma-separated); the roles of
        // other clients (`resource_access.account`) are not the gateway's.
        let mut want: Vec<&str> = c["realm_access"]["roles"]
            .as_array()
            .expect("realm_access.roles")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        want.sort_unstable();
        assert!(want.contains(&"offline_access"), "{c}");
        assert_eq!(
            seen.header("x-auth-roles"),
            Some(want.join(",").as_str()),
            "{c}"
        );
    }

    // The same token is good for the other protected and the public endpoints.
    let seen = env.get("/api/private", Some(&token)).await.seen();
    assert_eq!(seen.header("x-auth-subject"), Some(sub.as_str()));
    let seen = env.get("/api/public", Some(&token)).await.seen();
    assert_eq!(
        seen.header("x-auth-subject"),
        Some(sub.as_str()),
        "public rules get identity headers when a valid token is present"
    );
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn token_without_the_scope_is_403_on_scoped_and_200_on_private() {
    let env = Env::start().await;
    let token = env.token("test_api_client", "test-api-secret", None).await;
    let c = claims(&token);
    assert!(
        !scopes(&c).contains(&"test_api_access"),
        "an optional scope is left out unless asked for: {c}"
    );

    for path in ["/api/private-scoped", "/api/private-scoped/items"] {
        let r = env.denied(path, Some(&token), 403).await;
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                "Bearer realm=\"portcullis\", error=\"insufficient_scope\", \
                 scope=\"test_api_access\""
            )
        );
        assert_eq!(r.json()["error"], "insufficient_scope");
    }

    let seen = env.get("/api/private", Some(&token)).await.seen();
    assert_eq!(seen.target, "/api/private");
    assert_eq!(seen.header("x-auth-subject"), c["sub"].as_str());
    assert_eq!(
        seen.header("x-auth-user"),
        Some("service-account-test_api_client")
    );
    let fwd_scopes = seen.header("x-auth-scopes").unwrap_or_default();
    assert!(
        !fwd_scopes.split(' ').any(|s| s == "test_api_access"),
        "X-Auth-Scopes = {fwd_scopes:?}"
    );
    // Anything else is covered by `/**` (authenticated).
    assert_eq!(env.get("/anything/else", Some(&token)).await.status, 200);
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn no_token_is_401_and_public_is_open() {
    let env = Env::start().await;
    for path in [
        "/api/private",
        "/api/private-scoped",
        "/api/private-scoped/items",
        "/anything/else",
    ] {
        let r = env.denied(path, None, 401).await;
        assert_eq!(r.header("www-authenticate"), Some(REALM), "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
    // `login = "deny"`: even a browser-looking request gets 401, not a redirect to Keycloak.
    let r = env
        .denied_with(
            "/anything/else",
            None,
            &[("Accept", "text/html,application/xhtml+xml")],
            401,
        )
        .await;
    assert_eq!(r.header("location"), None);

    let seen = env.get("/api/public", None).await.seen();
    assert_eq!(seen.target, "/api/public");
    assert_eq!(seen.header("x-auth-subject"), None);
    assert_eq!(seen.header("x-auth-user"), None);
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn token_from_another_realm_is_refused() {
    let env = Env::start().await;
    let token = client_credentials(
        &env.kc,
        "otherrealm",
        "test_api_client",
        "test-api-secret",
        Some("test_api_access"),
    )
    .await;
    let c = claims(&token);
    assert_eq!(c["iss"], format!("{}/realms/otherrealm", env.kc));
    assert!(scopes(&c).contains(&"test_api_access"), "{c}");

    for path in ["/api/private-scoped", "/api/private"] {
        let r = env.denied(path, Some(&token), 401).await;
        assert_eq!(r.json()["error"], "invalid_token", "{}", r.body);
        // The key is checked before the issuer: another realm's key is unknown here.
        assert_invalid_token(&r, "the token was signed by an unknown key");
    }
    // On a public rule an invalid token is simply no identity.
    let seen = env.get("/api/public", Some(&token)).await.seen();
    assert_eq!(seen.header("x-auth-subject"), None);
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn token_for_another_audience_is_refused() {
    let env = Env::start().await;
    let token = env.token("other_client", "other-secret", None).await;
    let c = claims(&token);
    let aud_has_gateway = match &c["aud"] {
        Value::String(a) => a == "gateway",
        Value::Array(list) => list.iter().any(|a| a == "gateway"),
        _ => false,
    };
    assert!(!aud_has_gateway, "other_client's aud lacks gateway: {c}");

    for path in ["/api/private", "/api/private-scoped", "/anything/else"] {
        let r = env.denied(path, Some(&token), 401).await;
        assert_invalid_token(&r, "the token is not meant for this audience");
    }
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn tampered_token_is_refused() {
    let env = Env::start().await;
    let token = env.token("test_api_client", "test-api-secret", None).await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // Grant ourselves the scope by editing the payload; the signature no longer matches.
    let mut c = claims(&token);
    let scope = format!(
        "{} test_api_access",
        c["scope"].as_str().unwrap_or_default()
    );
    c["scope"] = Value::String(scope.trim().to_owned());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
    let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
    for path in ["/api/private-scoped", "/api/private"] {
        let r = env.denied(path, Some(&forged), 401).await;
        assert_invalid_token(&r, "the token's signature is invalid");
    }

    // Another subject, same trick.
    let mut c = claims(&token);
    c["sub"] = Value::String("someone-else".into());
    c["preferred_username"] = Value::String("admin".into());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
    let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
    let r = env.denied("/api/private", Some(&forged), 401).await;
    assert_invalid_token(&r, "the token's signature is invalid");

    // A flipped bit in the signature.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 0x01;
    let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    let r = env.denied("/api/private", Some(&forged), 401).await;
    assert_invalid_token(&r, "the token's signature is invalid");

    // The untouched token still works: the denials were about the edits.
    assert_eq!(env.get("/api/private", Some(&token)).await.status, 200);
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn spoofed_identity_headers_are_replaced_by_the_tokens() {
    let env = Env::start().await;
    let token = env.token("test_api_client", "test-api-secret", None).await;
    let c = claims(&token);
    let spoof = [
        ("X-Auth-User", "admin"),
        ("x_auth_subject", "admin-id"),
        ("X.Auth.Roles", "admin"),
        ("X-Auth-Scopes", "test_api_access"),
    ];
    // Spoofed scopes do not open the scoped endpoint.
    env.denied_with("/api/private-scoped", Some(&token), &spoof, 403)
        .await;
    let seen = env
        .get_with("/api/private", Some(&token), &spoof)
        .await
        .seen();
    assert_eq!(
        seen.header_all("x-auth-user"),
        vec!["service-account-test_api_client"]
    );
    assert_eq!(
        seen.header_all("x-auth-subject"),
        vec![c["sub"].as_str().unwrap()]
    );
    assert!(seen.header("x_auth_subject").is_none());
    assert!(seen.header("x.auth.roles").is_none());
    let fwd_scopes = seen.header_all("x-auth-scopes");
    assert_eq!(fwd_scopes.len(), 1, "{fwd_scopes:?}");
    assert!(!fwd_scopes[0].split(' ').any(|s| s == "test_api_access"));
    // Without a token, on a public rule, they are removed and nothing replaces them.
    let seen = env.get_with("/api/public", None, &spoof).await.seen();
    for (name, _) in spoof {
        assert!(seen.header(name).is_none(), "{name} reached the upstream");
    }
    assert!(seen.header("x-auth-user").is_none());
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn keycloak_id_token_is_not_a_bearer_credential() {
    // Keycloak returns an ID token for a client-credentials grant with `scope=openid`. Its
    // `aud` is the client (`test_api_client`), so accept that audience too: then only the
    // `typ: "ID"` claim can refuse it.
    let realm = e2e_support::shared_realm().await;
    let wide = |toml: String| {
        let wide = toml.replace(
            "audiences = [\"gateway\"]",
            "audiences = [\"gateway\", \"test_api_client\"]",
        );
        assert_ne!(wide, toml, "the harness' [tokens] section changed");
        wide
    };
    let env = Env::launch(wide, Some(realm)).await;

    let v = token_response(
        &env.kc,
        "myorg",
        "test_api_client",
        "test-api-secret",
        Some("openid test_api_access"),
    )
    .await;
    let id = v["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("Keycloak sent no id_token: {v}"));
    let c = claims(id);
    assert_eq!(c["typ"], "ID", "{c}");
    assert_eq!(c["aud"], "test_api_client", "{c}");
    for path in ["/api/private", "/api/private-scoped"] {
        let r = env.denied(path, Some(id), 401).await;
        assert_invalid_token(&r, "an ID or refresh token is not an access token");
    }
    // The access token of the same response is fine.
    let at = v["access_token"].as_str().expect("access_token");
    assert_eq!(env.get("/api/private-scoped", Some(at)).await.status, 200);
    env.stop().await;
}

#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn rotated_signing_key_is_fetched_for_the_first_token_that_names_it() {
    // This test changes the realm's keys: no other test of this binary runs meanwhile.
    let _realm = e2e_support::exclusive_realm().await;
    // Keys are refreshed hourly: only the refetch for an unknown `kid` can bring the new key.
    let env = Env::launch(e2e_support::hourly_jwks_refresh, None).await;
    let admin = env.gw.admin_addr;
    assert_eq!(
        e2e_support::jwks_fetches(admin).await,
        1,
        "one key fetch at start"
    );
    let token = || env.token("test_api_client", "test-api-secret", None);

    // Before the rotation: a token signed by the current key works...
    let verified = token().await;
    let old_kid = e2e_support::kid(&verified);
    assert_eq!(env.get("/api/private", Some(&verified)).await.status, 200);
    // ... and two more by the same key that the gateway has not seen yet.
    let (unseen_a, unseen_b) = (token().await, token().await);

    let rotation = KcAdmin::login(&env.kc).await.rotate_signing_key().await;
    assert!(rotation.old_kids.contains(&old_kid), "{rotation:?}");
    assert_ne!(rotation.new_kid, old_kid);
    assert!(
        rotation.passive_published,
        "Keycloak keeps passive keys in the JWKS (verification only): {rotation:?}"
    );
    let published = e2e_support::jwks_kids(&env.kc).await;
    assert!(
        published.contains(&rotation.new_kid) && !published.contains(&old_kid),
        "Keycloak publishes the new key and no longer the disabled one: {published:?}"
    );

    // The gateway's keys are those of its last fetch, which still has the old key: a token
    // by the old key is accepted until the gateway fetches the keys again.
    assert_eq!(env.get("/api/private", Some(&unseen_a)).await.status, 200);
    assert_eq!(e2e_support::jwks_fetches(admin).await, 1, "no fetch yet");

    // A token by the new key: its unknown `kid` makes the gateway fetch the keys at once.
    let fresh = token().await;
    assert_eq!(e2e_support::kid(&fresh), rotation.new_kid);
    let seen = env.get("/api/private", Some(&fresh)).await.seen();
    assert_eq!(
        seen.header("x-auth-subject"),
        claims(&fresh)["sub"].as_str()
    );
    assert_eq!(
        e2e_support::jwks_fetches(admin).await,
        2,
        "exactly one fetch, for the unknown kid"
    );
    // Later tokens by the new key need no fetch.
    let scoped = env
        .token(
            "test_api_client",
            "test-api-secret",
            Some("test_api_access"),
        )
        .await;
    assert_eq!(e2e_support::kid(&scoped), rotation.new_kid);
    assert_eq!(
        env.get("/api/private-scoped", Some(&scoped)).await.status,
        200
    );
    assert_eq!(e2e_support::jwks_fetches(admin).await, 2);

    // That fetch came after the old key was disabled: a token by the old key that the
    // gateway has not verified before is now signed by an unknown key.
    let r = env.denied("/api/private", Some(&unseen_b), 401).await;
    assert_invalid_token(&r, "the token was signed by an unknown key");

    // Tokens verified before come from the verified-token cache, which keeps an entry until
    // the token expires (here within Keycloak's 300 s): they stay accepted until then.
    let hits = "portcullis_token_cache_total{result=\"hit\"}";
    let hits_before = e2e_support::metric(admin, hits).await;
    for t in [&verified, &unseen_a] {
        assert_eq!(env.get("/api/private", Some(t)).await.status, 200);
    }
    assert_eq!(e2e_support::metric(admin, hits).await, hits_before + 2);
    env.stop().await;
}

/// A DPoP-bound token (RFC 9449) from Keycloak: the client `dpop_client` requires DPoP, so
/// Keycloak binds its token to the key of the proof the test sends to the token endpoint.
/// With a proof of its own for the gateway's URL it reaches `/api/private`; the same token
/// as Bearer, a replayed proof, or a proof by another key are refused.
#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn a_dpop_bound_keycloak_token_needs_its_proof() {
    use portcullis::testing::dpop::DpopKey;
    let env = Env::start().await;
    let (key, other) = tokio::task::spawn_blocking(|| (DpopKey::generate(), DpopKey::generate()))
        .await
        .unwrap();
    let endpoint = format!("{}/realms/myorg/protocol/openid-connect/token", env.kc);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_id", "dpop_client"),
            ("client_secret", "dpop-secret"),
        ])
        .finish();
    let form = Some(("application/x-www-form-urlencoded", body.as_str()));
    // Keycloak itself refuses this client's grant without a proof.
    let r = e2e_support::http("POST", &endpoint, &[], form).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let proof = key.proof("POST", &endpoint, None);
    let r = e2e_support::http("POST", &endpoint, &[("DPoP", &proof)], form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("dpop"),
        "{v}"
    );
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token)["cnf"]["jkt"], key.jkt().as_str());

    // The gateway's public_url (support::config_toml) names the URL the proof is for.
    let url = "http://127.0.0.1:8080/api/private";
    let auth = format!("DPoP {token}");
    let proof = key.proof("GET", url, Some(&token));
    let r = env
        .get_with(
            "/api/private",
            None,
            &[("Authorization", &auth), ("DPoP", &proof)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.seen().header("x-auth-user"),
        Some("service-account-dpop_client")
    );

    let r = env.denied("/api/private", Some(&token), 401).await;
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(www.starts_with("DPoP "), "{www}");
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    // The proof again: a replay.
    let r = env
        .denied_with(
            "/api/private",
            None,
            &[("Authorization", &auth), ("DPoP", &proof)],
            401,
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    // Another key's proof.
    let foreign = other.proof("GET", url, Some(&token));
    let r = env
        .denied_with(
            "/api/private",
            None,
            &[("Authorization", &auth), ("DPoP", &foreign)],
            401,
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    env.stop().await;
}

/// `otherrealm` as a further issuer: its tokens are accepted where it is configured (with
/// its own keys), and the realm `myorg` keeps working beside it.
#[tokio::test]
#[ignore = "needs a running Keycloak: run tests/e2e/run.sh"]
async fn a_token_from_another_realm_is_accepted_where_configured() {
    let kc = keycloak_url();
    let realm = e2e_support::shared_realm().await;
    let env = Env::launch(
        |toml| {
            format!(
                "{toml}\n[[tokens.issuers]]\nissuer = \"{kc}/realms/otherrealm\"\naudiences = [\"gateway\"]\nroles_claims = [\"realm_access.roles\"]\n"
            )
        },
        Some(realm),
    )
    .await;
    let other = client_credentials(
        &env.kc,
        "otherrealm",
        "test_api_client",
        "test-api-secret",
        Some("test_api_access"),
    )
    .await;
    let r = env.get("/api/private-scoped/x", Some(&other)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.seen().header("x-auth-subject"),
        claims(&other)["sub"].as_str()
    );
    let mine = env.token("test_api_client", "test-api-secret", None).await;
    assert_eq!(env.get("/api/private", Some(&mine)).await.status, 200);
    env.stop().await;
}
