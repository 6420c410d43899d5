//! A small OpenID provider: discovery, JWKS, token minting, key rotation, outages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One RSA signing key.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public_pem: String,
    pub jwk: Value,
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        SigningKey::generate_bits(kid, 2048)
    }

    /// A key with a modulus of `bits` bits (the gateway refuses fewer than 2048).
    pub fn generate_bits(kid: &str, bits: usize) -> SigningKey {
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, bits).expect("RSA key generation");
        let pem = private
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .expect("PEM encoding");
        let public = private.to_public_key();
        let public_pem =
            rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_pem(&public, rsa::pkcs8::LineEnding::LF)
                .expect("PEM");
        let jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        });
        SigningKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key"),
            public_pem,
            jwk,
        }
    }
}

/// One authorization code handed out by the authorize endpoint.
#[derive(Clone)]
struct Grant {
    user: String,
    redirect_uri: String,
    nonce: String,
    challenge: String,
    /// The level this login reached (`acr`) and when the user authenticated.
    acr: String,
    auth_time: u64,
}

/// Levels of assurance, weakest first (like a Keycloak realm's `acr.loa.map`: password =
/// `silver`, password + OTP = `gold`).
pub const LEVELS: [&str; 2] = ["silver", "gold"];

/// How users authenticate: the strongest level each can reach (a user without a second
/// factor reaches only `silver`), the time of each one's current provider session, and
/// the step-up parameters every authorization request asked for.
#[derive(Default)]
struct Assurance {
    ceiling: std::collections::HashMap<String, String>,
    /// Per user: (auth_time, level) of the provider's single sign-on session.
    sso: std::collections::HashMap<String, (u64, String)>,
    asked: Vec<(Option<String>, Option<String>)>,
}

struct State {
    issuer: String,
    /// Users by name: extra claims put into their tokens.
    users: Mutex<std::collections::HashMap<String, Value>>,
    /// Who the authorize endpoint logs in (no login page: it consents at once).
    login_as: Mutex<String>,
    codes: Mutex<std::collections::HashMap<String, Grant>>,
    refresh_tokens: Mutex<std::collections::HashMap<String, String>>,
    access_ttl: std::sync::atomic::AtomicU64,
    /// Merged into every ID token's claims (to make the provider misbehave).
    id_token_overrides: Mutex<Value>,
    /// A `kid` for ID tokens other than the signing key's own (an unpublished key).
    id_token_kid: Mutex<Option<String>>,
    authorize_error: Mutex<Option<String>>,
    refresh_fails: AtomicBool,
    refreshes: AtomicUsize,
    logouts: Mutex<Vec<String>>,
    /// The `sid` of the last completed login (each login gets a new one; refreshes keep it).
    last_sid: Mutex<Option<String>>,
    /// Keys published in the JWKS; the last one signs.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    available: AtomicBool,
    /// Introspection (RFC 7662): answers by opaque token; unknown tokens are inactive.
    introspection: Mutex<Introspection>,
    assurance: Mutex<Assurance>,
}

#[derive(Default)]
struct Introspection {
    answers: std::collections::HashMap<String, Value>,
    /// Set: the endpoint answers this status and body instead.
    failure: Option<(u16, String)>,
    calls: usize,
}

/// The in-process provider. Dropping it does not stop the server task; tests end with
/// the runtime.
#[derive(Clone)]
pub struct TestIdp {
    state: Arc<State>,
    pub addr: SocketAddr,
}

impl TestIdp {
    /// Starts a provider with one key (`kid` "key-1").
    pub async fn start() -> TestIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let key = tokio::task::spawn_blocking(|| SigningKey::generate("key-1"))
            .await
            .expect("keygen");
        let state = Arc::new(State {
            issuer: format!("http://{addr}/realms/test"),
            users: Mutex::new(default_users()),
            login_as: Mutex::new("alice".into()),
            codes: Mutex::new(Default::default()),
            refresh_tokens: Mutex::new(Default::default()),
            access_ttl: std::sync::atomic::AtomicU64::new(300),
            id_token_overrides: Mutex::new(json!({})),
            id_token_kid: Mutex::new(None),
            authorize_error: Mutex::new(None),
            refresh_fails: AtomicBool::new(false),
            refreshes: AtomicUsize::new(0),
            logouts: Mutex::new(Vec::new()),
            last_sid: Mutex::new(None),
            keys: Mutex::new(vec![Arc::new(key)]),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            available: AtomicBool::new(true),
            introspection: Mutex::new(Introspection::default()),
            assurance: Mutex::new(Assurance::default()),
        });
        let s = state.clone();
        super::serve(listener, move |req| {
            let s = s.clone();
            async move { answer(&s, req).await }
        });
        TestIdp { state, addr }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// What the introspection endpoint answers for `token` (`{"active": false}` for tokens
    /// it was not told about).
    pub fn set_introspection(&self, token: &str, answer: Value) {
        let mut i = self.state.introspection.lock().unwrap();
        i.answers.insert(token.to_owned(), answer);
    }

    /// Makes the introspection endpoint answer `status` with `body` (None: normal again).
    pub fn set_introspection_failure(&self, failure: Option<(u16, &str)>) {
        let mut i = self.state.introspection.lock().unwrap();
        i.failure = failure.map(|(s, b)| (s, b.to_owned()));
    }

    /// Client-authenticated calls the introspection endpoint answered.
    pub fn introspections(&self) -> usize {
        self.state.introspection.lock().unwrap().calls
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// While unavailable every endpoint answers 503.
    pub fn set_available(&self, up: bool) {
        self.state.available.store(up, Ordering::SeqCst);
    }

    /// The strongest level of [`LEVELS`] `user` can authenticate at (default `gold`).
    pub fn set_acr_ceiling(&self, user: &str, level: &str) {
        self.state
            .assurance
            .lock()
            .unwrap()
            .ceiling
            .insert(user.to_owned(), level.to_owned());
    }

    /// Moves the start of `user`'s provider session (its `auth_time`) `secs` into the past.
    pub fn age_sso_session(&self, user: &str, secs: u64) {
        if let Some((t, _)) = self.state.assurance.lock().unwrap().sso.get_mut(user) {
            *t = t.saturating_sub(secs);
        }
    }

    /// The `acr_values` and `max_age` of every authorization request, in order.
    pub fn step_up_requests(&self) -> Vec<(Option<String>, Option<String>)> {
        self.state.assurance.lock().unwrap().asked.clone()
    }

    /// The user the authorize endpoint logs in next (`alice`, `bob`, or one added).
    pub fn login_as(&self, user: &str) {
        *self.state.login_as.lock().unwrap() = user.to_owned();
    }

    /// Adds or replaces a user's extra claims.
    pub fn set_user(&self, user: &str, claims: Value) {
        self.state
            .users
            .lock()
            .unwrap()
            .insert(user.to_owned(), claims);
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_ttl(&self, secs: u64) {
        self.state.access_ttl.store(secs, Ordering::SeqCst);
    }

    /// Claims merged into ID tokens issued from now on (e.g. a wrong `aud`).
    pub fn set_id_token_overrides(&self, v: Value) {
        *self.state.id_token_overrides.lock().unwrap() = v;
    }

    /// ID tokens name this `kid` in their header (a key the JWKS does not publish).
    pub fn set_id_token_kid(&self, kid: Option<&str>) {
        *self.state.id_token_kid.lock().unwrap() = kid.map(str::to_owned);
    }

    /// Makes the authorize endpoint answer with `error=...`.
    pub fn set_authorize_error(&self, e: Option<&str>) {
        *self.state.authorize_error.lock().unwrap() = e.map(str::to_owned);
    }

    pub fn set_refresh_fails(&self, fail: bool) {
        self.state.refresh_fails.store(fail, Ordering::SeqCst);
    }

    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }

    /// Query strings of the end-session requests received.
    pub fn logouts(&self) -> Vec<String> {
        self.state.logouts.lock().unwrap().clone()
    }

    /// The provider session id (`sid` of the ID tokens) of the last completed login.
    pub fn last_sid(&self) -> Option<String> {
        self.state.last_sid.lock().unwrap().clone()
    }

    /// Claims of a back-channel logout token for this provider and the client `gateway`:
    /// `iss`, `aud`, `iat`, a fresh `jti`, the logout event, and `sub` and `sid` as given.
    pub fn logout_token(&self, sub: Option<&str>, sid: Option<&str>) -> Value {
        let mut v = json!({
            "iss": self.issuer(),
            "aud": "gateway",
            "iat": super::now(),
            "jti": crate::auth::session::random_token(12),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        if let Some(o) = v.as_object_mut() {
            if let Some(sub) = sub {
                o.insert("sub".into(), json!(sub));
            }
            if let Some(sid) = sid {
                o.insert("sid".into(), json!(sid));
            }
        }
        v
    }

    /// Signs logout-token claims with the current key (RS256, `typ` `logout+jwt`, its
    /// `kid`).
    pub fn mint_logout(&self, claims: &Value) -> String {
        let key = self.current_key();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("logout+jwt".into());
        self.mint_with(&header, claims, &key.encoding)
    }

    /// The current signing key.
    pub fn current_key(&self) -> Arc<SigningKey> {
        self.state
            .keys
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a key")
    }

    /// Publishes a new key that signs from now on; `keep_old` keeps the previous ones in the JWKS.
    pub async fn rotate(&self, kid: &str, keep_old: bool) -> Arc<SigningKey> {
        let kid = kid.to_owned();
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(&kid))
            .await
            .expect("keygen");
        self.publish(key, keep_old)
    }

    /// Publishes `key`, which signs from now on; `keep_old` keeps the previous ones.
    pub fn publish(&self, key: SigningKey, keep_old: bool) -> Arc<SigningKey> {
        let key = Arc::new(key);
        let mut keys = self.state.keys.lock().unwrap();
        if !keep_old {
            keys.clear();
        }
        keys.push(key.clone());
        key
    }

    /// Typical access-token claims: this issuer, `aud`, one hour of validity.
    pub fn claims(&self, sub: &str, aud: &str, scope: &str) -> Value {
        let now = super::now();
        json!({
            "iss": self.issuer(),
            "sub": sub,
            "aud": aud,
            "azp": aud,
            "iat": now,
            "exp": now + 3600,
            "scope": scope,
            "typ": "Bearer",
        })
    }

    /// Signs claims with the current key (RS256, `typ` JWT, its `kid`).
    pub fn mint(&self, claims: &Value) -> String {
        let key = self.current_key();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        self.mint_with(&header, claims, &key.encoding)
    }

    /// Signs with any header and key.
    pub fn mint_with(&self, header: &Header, claims: &Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, claims, key).expect("signing")
    }
}

/// An unsigned token (`alg: none`).
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn default_users() -> std::collections::HashMap<String, Value> {
    let mut m = std::collections::HashMap::new();
    m.insert(
        "alice".to_owned(),
        json!({
            "preferred_username": "alice",
            "email": "alice@example.com",
            "realm_access": {"roles": ["employee"]},
            "resource_access": {"gateway": {"roles": ["admin", "user"]}},
        }),
    );
    m.insert(
        "bob".to_owned(),
        json!({
            "preferred_username": "bob",
            "email": "bob@example.com",
            "resource_access": {"gateway": {"roles": ["user"]}},
        }),
    );
    m
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut().insert(
        http::header::LOCATION,
        http::HeaderValue::from_str(location).expect("location"),
    );
    r
}

fn form(s: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(base).expect("absolute redirect_uri");
    for (k, v) in pairs {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// Authenticates `user` for an authorization request, as a provider with levels of
/// assurance does: the level is the first of `acr_values` the user can reach (else the
/// strongest the user has; with none asked, the provider session's level or `silver`),
/// and the user signs in again (a new `auth_time`) when the provider session is weaker
/// than that level or older than `max_age`.
fn authenticate(
    s: &State,
    user: &str,
    acr_values: Option<&String>,
    max_age: Option<&String>,
) -> (String, u64) {
    let rank = |l: &str| LEVELS.iter().position(|x| *x == l);
    let mut a = s.assurance.lock().unwrap();
    a.asked.push((acr_values.cloned(), max_age.cloned()));
    let ceiling = a
        .ceiling
        .get(user)
        .cloned()
        .unwrap_or_else(|| "gold".to_owned());
    let top = rank(&ceiling).unwrap_or(0);
    let now = super::now();
    let sso = a.sso.get(user).cloned();
    let level = match acr_values {
        Some(v) => v
            .split(' ')
            .find(|l| rank(l).is_some_and(|r| r <= top))
            .unwrap_or(&ceiling)
            .to_owned(),
        None => sso
            .as_ref()
            .map_or_else(|| LEVELS[0].to_owned(), |(_, l)| l.clone()),
    };
    let too_old = |t: u64| {
        max_age
            .and_then(|m| m.parse::<u64>().ok())
            .is_some_and(|m| now.saturating_sub(t) > m)
    };
    let auth_time = match sso {
        Some((t, l)) if rank(&l) >= rank(&level) && !too_old(t) => t,
        _ => now,
    };
    let kept = a.sso.get(user).map(|(_, l)| l.clone());
    let strongest = match kept {
        Some(l) if rank(&l) > rank(&level) && auth_time != now => l,
        _ => level.clone(),
    };
    a.sso.insert(user.to_owned(), (auth_time, strongest));
    (level, auth_time)
}

fn issue_tokens(
    s: &State,
    key: &SigningKey,
    user: &str,
    nonce: &str,
    sid: &str,
    (acr, auth_time): (&str, u64),
) -> Value {
    let now = super::now();
    let extra = s
        .users
        .lock()
        .unwrap()
        .get(user)
        .cloned()
        .unwrap_or_else(|| json!({}));
    let ttl = s.access_ttl.load(Ordering::SeqCst);
    let mut at = json!({
        "iss": s.issuer, "sub": format!("{user}-id"), "aud": ["gateway", "account"], "azp": "gateway",
        "iat": now, "exp": now + ttl, "scope": "openid profile email", "typ": "Bearer",
        "jti": crate::auth::session::random_token(12),
    });
    let mut id = json!({
        "iss": s.issuer, "sub": format!("{user}-id"), "aud": "gateway", "azp": "gateway",
        "iat": now, "exp": now + 300, "nonce": nonce, "typ": "ID",
        "jti": crate::auth::session::random_token(12), "sid": sid,
        "acr": acr, "auth_time": auth_time,
    });
    if let Some(a) = at.as_object_mut() {
        a.insert("acr".into(), json!(acr));
    }
    if let (Some(e), Some(a), Some(i)) = (extra.as_object(), at.as_object_mut(), id.as_object_mut())
    {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
            // Like Keycloak: roles only in the access token.
            if k != "realm_access" && k != "resource_access" {
                i.insert(k.clone(), v.clone());
            }
        }
        if let Some(o) = s.id_token_overrides.lock().unwrap().as_object() {
            for (k, v) in o {
                i.insert(k.clone(), v.clone());
            }
        }
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    let mut id_header = header.clone();
    if let Some(kid) = s.id_token_kid.lock().unwrap().clone() {
        id_header.kid = Some(kid);
    }
    let id_token = jsonwebtoken::encode(&id_header, &id, &key.encoding).expect("sign");
    let refresh = crate::auth::session::random_token(24);
    s.refresh_tokens.lock().unwrap().insert(
        refresh.clone(),
        format!("{user}\n{nonce}\n{sid}\n{acr}\n{auth_time}"),
    );
    json!({
        "access_token": jsonwebtoken::encode(&header, &at, &key.encoding).expect("sign"),
        "id_token": id_token,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": ttl,
    })
}

fn client_authenticated(
    req_headers: &http::HeaderMap,
    f: &std::collections::HashMap<String, String>,
) -> bool {
    if let Some(basic) = req_headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        use base64::engine::general_purpose::STANDARD;
        let decoded = STANDARD
            .decode(basic)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        return decoded == "gateway:gateway-secret";
    }
    f.get("client_id").map(String::as_str) == Some("gateway")
        && f.get("client_secret").map(String::as_str) == Some("gateway-secret")
}

async fn answer(s: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !s.available.load(Ordering::SeqCst) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "down"}));
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = req.headers().clone();
    let body = http_body_util::BodyExt::collect(req.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let base = format!("{}/protocol/openid-connect", s.issuer);
    match path.strip_prefix("/realms/test").unwrap_or("") {
        "/protocol/openid-connect/auth" => {
            let q = form(&query);
            let get = |k: &str| q.get(k).cloned().unwrap_or_default();
            if get("client_id") != "gateway"
                || get("response_type") != "code"
                || get("code_challenge_method") != "S256"
                || get("code_challenge").is_empty()
                || get("nonce").is_empty()
                || get("state").is_empty()
                || !get("scope").split(' ').any(|x| x == "openid")
            {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "invalid_request", "query": query}),
                );
            }
            let redirect_uri = get("redirect_uri");
            if let Some(e) = s.authorize_error.lock().unwrap().clone() {
                return redirect(&with_query(
                    &redirect_uri,
                    &[("error", &e), ("state", &get("state"))],
                ));
            }
            let code = crate::auth::session::random_token(16);
            let user = s.login_as.lock().unwrap().clone();
            let (acr, auth_time) = authenticate(s, &user, q.get("acr_values"), q.get("max_age"));
            s.codes.lock().unwrap().insert(
                code.clone(),
                Grant {
                    user,
                    redirect_uri: redirect_uri.clone(),
                    nonce: get("nonce"),
                    challenge: get("code_challenge"),
                    acr,
                    auth_time,
                },
            );
            redirect(&with_query(
                &redirect_uri,
                &[("code", &code), ("state", &get("state"))],
            ))
        }
        "/protocol/openid-connect/token" => {
            let f = form(&body);
            if !client_authenticated(&headers, &f) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_client"}),
                );
            }
            let key = s.keys.lock().unwrap().last().cloned().expect("a key");
            match f.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let grant = f
                        .get("code")
                        .and_then(|c| s.codes.lock().unwrap().remove(c));
                    let Some(g) = grant else {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({"error": "invalid_grant"}),
                        );
                    };
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    use sha2::Digest;
                    let computed =
                        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
                    if computed != g.challenge || f.get("redirect_uri") != Some(&g.redirect_uri) {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({"error": "invalid_grant", "error_description": "PKCE or redirect_uri mismatch"}),
                        );
                    }
                    // A new provider session per login.
                    let sid = crate::auth::session::random_token(12);
                    *s.last_sid.lock().unwrap() = Some(sid.clone());
                    json_response(
                        StatusCode::OK,
                        &issue_tokens(s, &key, &g.user, &g.nonce, &sid, (&g.acr, g.auth_time)),
                    )
                }
                Some("refresh_token") => {
                    s.refreshes.fetch_add(1, Ordering::SeqCst);
                    let known = f
                        .get("refresh_token")
                        .and_then(|r| s.refresh_tokens.lock().unwrap().get(r).cloned());
                    match known {
                        Some(entry) if !s.refresh_fails.load(Ordering::SeqCst) => {
                            let mut parts = entry.splitn(5, '\n');
                            let user = parts.next().unwrap_or("");
                            let nonce = parts.next().unwrap_or("");
                            let sid = parts.next().unwrap_or("");
                            let acr = parts.next().unwrap_or("");
                            let auth_time = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                            json_response(
                                StatusCode::OK,
                                &issue_tokens(s, &key, user, nonce, sid, (acr, auth_time)),
                            )
                        }
                        _ => json_response(
                            StatusCode::BAD_REQUEST,
                            &json!({"error": "invalid_grant"}),
                        ),
                    }
                }
                _ => json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "unsupported_grant_type"}),
                ),
            }
        }
        "/protocol/openid-connect/logout" => {
            s.logouts.lock().unwrap().push(query.clone());
            match form(&query).get("post_logout_redirect_uri") {
                Some(uri) => redirect(uri),
                None => json_response(StatusCode::OK, &json!({"logged_out": true})),
            }
        }
        "/protocol/openid-connect/token/introspect" => {
            let f: std::collections::HashMap<String, String> =
                form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
            if !client_authenticated(&headers, &f) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_client"}),
                );
            }
            let mut i = s.introspection.lock().unwrap();
            i.calls += 1;
            if let Some((status, body)) = &i.failure {
                let mut r = Response::new(Full::new(Bytes::from(body.clone())));
                *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return r;
            }
            let token = f.get("token").cloned().unwrap_or_default();
            let answer = i
                .answers
                .get(&token)
                .cloned()
                .unwrap_or_else(|| json!({"active": false}));
            json_response(StatusCode::OK, &answer)
        }
        "/.well-known/openid-configuration" => {
            s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            json_response(
                StatusCode::OK,
                &json!({
                    "issuer": s.issuer,
                    "authorization_endpoint": format!("{base}/auth"),
                    "token_endpoint": format!("{base}/token"),
                    "userinfo_endpoint": format!("{base}/userinfo"),
                    "end_session_endpoint": format!("{base}/logout"),
                    "jwks_uri": format!("{base}/certs"),
                    "introspection_endpoint": format!("{base}/token/introspect"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }),
            )
        }
        "/protocol/openid-connect/certs" => {
            s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<Value> = s
                .keys
                .lock()
                .unwrap()
                .iter()
                .map(|k| k.jwk.clone())
                .collect();
            json_response(StatusCode::OK, &json!({ "keys": keys }))
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}
