//! What both Keycloak suites (`tests/e2e_keycloak.rs`, `tests/e2e_browser.rs`) share:
//! Keycloak's admin REST API (bootstrap admin `admin`/`admin`), the realm's signing-key
//! rotation, and the lock that keeps tests which change the realm apart from the others.
//!
//! A test binary that uses this module also declares `mod support;` (tests/support/).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::support::{self, RawResponse};

/// The realm the gateways under test use.
pub const REALM: &str = "myorg";

// ---------------------------------------------------------------------------------------
// The realm lock.
//
// Tests that change realm `myorg` itself (a client's token lifespan, the signing keys) take
// it exclusively; every other test holds it shared for as long as its gateway runs. With
// `--test-threads=1` (as `tests/e2e/run.sh` runs the suites) it never waits; in a parallel
// run it keeps, for example, a logout's `id_token_hint` signed by a key another test just
// disabled (Keycloak refuses such a hint) out of the other tests. One lock per test binary:
// run the two suites one after the other against one Keycloak, as `run.sh` does.

static REALM_LOCK: RwLock<()> = RwLock::const_new(());

/// Held by a test that only uses the realm.
pub type SharedRealm = RwLockReadGuard<'static, ()>;
/// Held by a test that changes the realm.
pub type ExclusiveRealm = RwLockWriteGuard<'static, ()>;

pub async fn shared_realm() -> SharedRealm {
    REALM_LOCK.read().await
}

pub async fn exclusive_realm() -> ExclusiveRealm {
    REALM_LOCK.write().await
}

/// A gateway configuration (from `support::config_toml*`) with `tokens.jwks_refresh` set
/// to an hour: during a test the gateway then fetches the provider's keys once at start and
/// again only when a token names a `kid` it does not know.
pub fn hourly_jwks_refresh(toml: String) -> String {
    let edited = toml.replace("[tokens]\n", "[tokens]\njwks_refresh = \"1h\"\n");
    assert_ne!(edited, toml, "the harness' [tokens] section changed");
    edited
}

// ---------------------------------------------------------------------------------------
// Plain HTTP/1.1 to Keycloak.

/// One request with `Connection: close`; `body` is `(content type, content)`.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> RawResponse {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    assert_eq!(u.scheme(), "http", "only plain http is supported: {url}");
    let host = u.host_str().expect("a host").to_owned();
    let port = u.port_or_known_default().expect("a port");
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap_or_else(|e| panic!("cannot resolve {host}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{host} has no address"));
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nAccept: application/json\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let (ctype, content) = body.unwrap_or(("", ""));
    if body.is_some() {
        req.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\n\r\n{content}",
        content.len()
    ));
    support::raw(addr, req.as_bytes()).await
}

/// POSTs an `application/x-www-form-urlencoded` body.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> RawResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    http(
        "POST",
        url,
        &[],
        Some(("application/x-www-form-urlencoded", &body)),
    )
    .await
}

/// A JWT's protected header, without checking anything.
pub fn jwt_header(jwt: &str) -> Value {
    let head = jwt.split('.').next().expect("a JWT");
    let bytes = URL_SAFE_NO_PAD.decode(head).expect("base64url header");
    serde_json::from_slice(&bytes).expect("a JSON header")
}

/// The `kid` of a JWT's header.
pub fn kid(jwt: &str) -> String {
    let h = jwt_header(jwt);
    h["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("no kid in the JWT header {h}"))
        .to_owned()
}

/// The `kid`s the realm publishes at its JWKS endpoint (what a relying party fetches).
pub async fn jwks_kids(kc: &str) -> Vec<String> {
    let url = format!("{kc}/realms/{REALM}/protocol/openid-connect/certs");
    let r = http("GET", &url, &[], None).await;
    assert_eq!(r.status, 200, "GET {url}: {}", r.body);
    r.json()["keys"]
        .as_array()
        .expect("a JWKS")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// A fresh access token of `test_api_client` (client-credentials grant, realm `myorg`).
pub async fn service_token(kc: &str) -> String {
    let r = post_form(
        &format!("{kc}/realms/{REALM}/protocol/openid-connect/token"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "test_api_client"),
            ("client_secret", "test-api-secret"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "client-credentials grant: {}", r.body);
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `within`.
pub async fn poll<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A counter of a gateway's admin `/metrics` (0 when the series does not exist yet), e.g.
/// `portcullis_jwks_fetches_total{result="ok"}`.
pub async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let r = support::get(admin, "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find(|l| l.split(' ').next() == Some(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Successful JWKS fetches of a gateway (its first one, then refreshes and refetches).
pub async fn jwks_fetches(admin: SocketAddr) -> u64 {
    metric(admin, "portcullis_jwks_fetches_total{result=\"ok\"}").await
}

// ---------------------------------------------------------------------------------------
// The admin API.

pub struct KcAdmin {
    kc: String,
    token: String,
}

/// What [`KcAdmin::rotate_signing_key`] did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The new RS256 key: the realm's active signing key now.
    pub new_kid: String,
    /// The RSA signing keys that were in use before; all disabled now.
    pub old_kids: Vec<String>,
    /// Whether the old keys were still in the JWKS while they were passive (`active` false,
    /// `enabled` still true), before they were disabled.
    pub passive_published: bool,
}

impl KcAdmin {
    /// An admin token from the master realm (it lives 60 s: log in again for later calls).
    pub async fn login(kc: &str) -> KcAdmin {
        let r = post_form(
            &format!("{kc}/realms/master/protocol/openid-connect/token"),
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", "admin"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "Keycloak admin login: {}", r.body);
        KcAdmin {
            kc: kc.to_owned(),
            token: r.json()["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A request to `/admin/realms/myorg{path}` (`path` may be empty: the realm itself).
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> RawResponse {
        let auth = format!("Bearer {}", self.token);
        let text = body.map(Value::to_string);
        http(
            method,
            &format!("{}/admin/realms/{REALM}{path}", self.kc),
            &[("Authorization", &auth)],
            text.as_deref().map(|t| ("application/json", t)),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.call("GET", path, None).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    /// Sets (or with `""` removes) an attribute of a client.
    pub async fn set_client_attribute(&self, client_id: &str, key: &str, value: &str) {
        let list = self.get(&format!("/clients?clientId={client_id}")).await;
        let mut client = list[0].clone();
        let id = client["id"].as_str().expect("client id").to_owned();
        client["attributes"][key] = json!(value);
        let r = self
            .call("PUT", &format!("/clients/{id}"), Some(&client))
            .await;
        assert_eq!(r.status, 204, "PUT client {client_id}: {}", r.body);
        let after = self.get(&format!("/clients/{id}")).await;
        let now = after["attributes"][key].as_str().unwrap_or("");
        assert_eq!(now, value, "client {client_id} attribute {key}");
    }

    pub async fn client_attribute(&self, client_id: &str, key: &str) -> String {
        let list = self.get(&format!("/clients?clientId={client_id}")).await;
        list[0]["attributes"][key].as_str().unwrap_or("").to_owned()
    }

    /// The ids of the user's SSO sessions at Keycloak.
    pub async fn sessions(&self, username: &str) -> Vec<String> {
        let users = self
            .get(&format!("/users?username={username}&exact=true"))
            .await;
        let id = users[0]["id"].as_str().expect("user id").to_owned();
        self.get(&format!("/users/{id}/sessions"))
            .await
            .as_array()
            .expect("a list of sessions")
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The realm's keys as `GET /keys` lists them (every provider's, disabled ones too).
    async fn keys(&self) -> Vec<Value> {
        self.get("/keys").await["keys"]
            .as_array()
            .expect("keys")
            .clone()
    }

    /// Sets `config.<key>` = `value` on a key provider component.
    async fn set_provider_config(&self, id: &str, settings: &[(&str, &str)]) {
        let mut c = self.get(&format!("/components/{id}")).await;
        for (k, v) in settings {
            c["config"][*k] = json!([v]);
        }
        let r = self
            .call("PUT", &format!("/components/{id}"), Some(&c))
            .await;
        assert_eq!(r.status, 204, "PUT component {id}: {}", r.body);
    }

    /// Rotates realm `myorg`'s signing key the way an operator would: adds an
    /// `rsa-generated` key provider with a priority above every existing key, waits until
    /// its key is in the JWKS, makes the previous RSA signing providers passive (`active`
    /// false) and then disables them (`enabled` false), and waits until their keys have
    /// left the JWKS. Checks that a freshly minted token is signed by the new key.
    ///
    /// Every step is polled (bounded); nothing is restored afterwards: the realm keeps the
    /// new key, which is all a later test needs (a gateway started later fetches it).
    pub async fn rotate_signing_key(&self) -> Rotation {
        let t0 = Instant::now();
        let realm = self.get("").await;
        let realm_id = realm["id"].as_str().expect("realm id").to_owned();

        let before = self.keys().await;
        let rsa_signing = |k: &&Value| {
            k["type"] == "RSA" && k["use"] == "SIG" && k["status"].as_str() != Some("DISABLED")
        };
        let old: Vec<(String, String)> = before
            .iter()
            .filter(rsa_signing)
            .map(|k| {
                (
                    k["providerId"].as_str().expect("providerId").to_owned(),
                    k["kid"].as_str().expect("kid").to_owned(),
                )
            })
            .collect();
        assert!(
            !old.is_empty(),
            "realm {REALM} has no RSA signing key: {before:?}"
        );
        let top = before
            .iter()
            .filter_map(|k| k["providerPriority"].as_i64())
            .max()
            .unwrap_or(0);

        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let name = format!("rotated-rsa-{stamp}");
        let component = json!({
            "name": name,
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {
                "priority": [(top + 100).to_string()],
                "enabled": ["true"],
                "active": ["true"],
                "algorithm": ["RS256"],
                "keySize": ["2048"],
            },
        });
        let r = self.call("POST", "/components", Some(&component)).await;
        assert_eq!(r.status, 201, "POST a key provider: {}", r.body);
        let new_provider = r
            .header("location")
            .and_then(|l| l.rsplit('/').next())
            .expect("Location of the new component")
            .to_owned();

        let new_kid = poll(
            "the new key in GET /keys",
            Duration::from_secs(15),
            || async {
                self.keys()
                    .await
                    .iter()
                    .find(|k| k["providerId"] == new_provider.as_str() && k["use"] == "SIG")
                    .and_then(|k| k["kid"].as_str().map(str::to_owned))
            },
        )
        .await;
        poll(
            "the new key in the JWKS",
            Duration::from_secs(15),
            || async { jwks_kids(&self.kc).await.contains(&new_kid).then_some(()) },
        )
        .await;

        // Passive first: no longer used for signing, still valid for verification.
        for (provider, _) in &old {
            self.set_provider_config(provider, &[("active", "false")])
                .await;
        }
        let published = jwks_kids(&self.kc).await;
        let passive_published = old.iter().all(|(_, kid)| published.contains(kid));
        // Then disabled: gone.
        for (provider, _) in &old {
            self.set_provider_config(provider, &[("enabled", "false"), ("active", "false")])
                .await;
        }
        poll(
            "the old keys out of the JWKS",
            Duration::from_secs(15),
            || async {
                let now = jwks_kids(&self.kc).await;
                old.iter().all(|(_, kid)| !now.contains(kid)).then_some(())
            },
        )
        .await;

        // What Keycloak signs with now.
        poll(
            "a token signed by the new key",
            Duration::from_secs(15),
            || async { (kid(&service_token(&self.kc).await) == new_kid).then_some(()) },
        )
        .await;
        let active = self.get("/keys").await["active"]["RS256"].clone();
        assert_eq!(active, json!(new_kid), "the realm's active RS256 key");

        let rotation = Rotation {
            new_kid,
            old_kids: old.into_iter().map(|(_, kid)| kid).collect(),
            passive_published,
        };
        eprintln!(
            "rotated realm {REALM}'s signing key in {:?}: {rotation:?}",
            t0.elapsed()
        );
        rotation
    }
}
