//! A small OpenID provider: discovery, JWKS, token minting, key rotation, outages.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
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
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
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

struct State {
    issuer: String,
    /// Keys published in the JWKS; the last one signs.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    available: AtomicBool,
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
            keys: Mutex::new(vec![Arc::new(key)]),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            available: AtomicBool::new(true),
        });
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(answer(&s, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestIdp { state, addr }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
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
        let key = Arc::new(
            tokio::task::spawn_blocking(move || SigningKey::generate(&kid))
                .await
                .expect("keygen"),
        );
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

fn answer(s: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !s.available.load(Ordering::SeqCst) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "down"}));
    }
    let path = req.uri().path().to_owned();
    let base = format!("{}/protocol/openid-connect", s.issuer);
    match path.strip_prefix("/realms/test").unwrap_or("") {
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
