//! The browser login with `openidconnect`: the authorization URL (code flow, PKCE S256,
//! state, nonce), the code exchange with the client secret and verifier, ID-token checks
//! (signature against the current JWKS, `iss`, `aud`, `azp`, `nonce`, `exp`, `iat`), and
//! refresh.

use std::time::Duration;

use base64::Engine;
use openidconnect::core::{CoreClient, CoreIdToken, CoreJwsSigningAlgorithm, CoreTokenResponse};
use openidconnect::{
    AuthUrl, AuthenticationContextClass, AuthenticationFlow, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse, TokenUrl,
};
use serde_json::{Map, Value};
use url::Url;

use super::jwks::{verify_with, JwksCache, KeyFamily, KeySet};
use super::provider::{ProviderClient, ProviderMetadata};
use super::session::{random_token, LoginState};
use crate::config::Config;
use crate::rules::StepUp;

/// Why a login step failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery has not succeeded yet, or lacks an endpoint the flow needs.
    #[error("the provider is not available: {0}")]
    Unavailable(String),
    /// The token endpoint refused or failed.
    #[error("the token request failed: {0}")]
    Token(String),
    /// The token response had no ID token.
    #[error("the provider returned no ID token")]
    NoIdToken,
    /// The ID token failed verification.
    #[error("the ID token is invalid: {0}")]
    IdToken(String),
}

/// Tokens from a code exchange or refresh.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub id_token: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

/// The relying-party settings of one configuration.
pub struct Oidc {
    client_id: String,
    client_secret: Option<String>,
    issuer: String,
    redirect_uri: String,
    scopes: Vec<String>,
    leeway: Duration,
    algs: Vec<CoreJwsSigningAlgorithm>,
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
>;

impl Oidc {
    pub fn new(cfg: &Config) -> Oidc {
        let public = cfg.server.public_url.as_str().trim_end_matches('/');
        use jsonwebtoken::Algorithm as A;
        use CoreJwsSigningAlgorithm as C;
        let algs = cfg
            .tokens
            .algorithms
            .iter()
            .filter_map(|a| match a {
                A::RS256 => Some(C::RsaSsaPkcs1V15Sha256),
                A::RS384 => Some(C::RsaSsaPkcs1V15Sha384),
                A::RS512 => Some(C::RsaSsaPkcs1V15Sha512),
                A::PS256 => Some(C::RsaSsaPssSha256),
                A::PS384 => Some(C::RsaSsaPssSha384),
                A::PS512 => Some(C::RsaSsaPssSha512),
                A::ES256 => Some(C::EcdsaP256Sha256),
                A::ES384 => Some(C::EcdsaP384Sha384),
                A::EdDSA => Some(C::EdDsa),
                _ => None,
            })
            .collect();
        Oidc {
            client_id: cfg.oidc.client_id.clone(),
            client_secret: cfg
                .oidc
                .client_secret
                .as_ref()
                .map(|s| s.expose().to_owned()),
            issuer: cfg.oidc.issuer.clone(),
            redirect_uri: format!("{public}{}/callback", cfg.server.auth_prefix),
            scopes: cfg.oidc.scopes.clone(),
            leeway: cfg.tokens.leeway,
            algs,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn client(&self, meta: &ProviderMetadata, keys: &KeySet) -> Result<Client, OidcError> {
        let bad = |what: &str, e: String| OidcError::Unavailable(format!("{what}: {e}"));
        let auth = meta.authorization_endpoint.as_deref().ok_or_else(|| {
            OidcError::Unavailable("discovery has no authorization_endpoint".into())
        })?;
        let token = meta
            .token_endpoint
            .as_deref()
            .ok_or_else(|| OidcError::Unavailable("discovery has no token_endpoint".into()))?;
        let mut c = CoreClient::new(
            ClientId::new(self.client_id.clone()),
            IssuerUrl::new(self.issuer.clone()).map_err(|e| bad("issuer", e.to_string()))?,
            keys.oidc.clone(),
        )
        .set_auth_uri(
            AuthUrl::new(auth.to_owned())
                .map_err(|e| bad("authorization_endpoint", e.to_string()))?,
        )
        .set_token_uri(
            TokenUrl::new(token.to_owned()).map_err(|e| bad("token_endpoint", e.to_string()))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|e| bad("redirect URI", e.to_string()))?,
        );
        if let Some(s) = &self.client_secret {
            c = c.set_client_secret(ClientSecret::new(s.clone()));
        }
        Ok(c)
    }

    /// The provider's login URL and the login attempt to keep in a cookie.
    pub fn start(
        &self,
        meta: &ProviderMetadata,
        keys: &KeySet,
        rd: String,
        step_up: Option<&StepUp>,
    ) -> Result<(Url, LoginState), OidcError> {
        let client = self.client(meta, keys)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_token(24);
        let nonce = random_token(24);
        let (s, n) = (state.clone(), nonce.clone());
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(s),
                move || Nonce::new(n),
            )
            .set_pkce_challenge(challenge);
        for scope in self.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        if let Some(s) = step_up {
            for acr in &s.acr {
                req = req.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
            }
            if let Some(max) = s.max_age {
                req = req.set_max_age(Duration::from_secs(max));
            }
        }
        let (url, _, _) = req.url();
        let login = LoginState {
            state,
            nonce,
            verifier: verifier.secret().clone(),
            rd,
            iat: crate::unix_now(),
            acr: step_up.map(|s| s.acr.clone()).unwrap_or_default(),
            max_age: step_up.and_then(|s| s.max_age),
        };
        Ok((url, login))
    }

    async fn token_request(
        &self,
        http: &ProviderClient,
        req: impl FnOnce() -> RequestKind,
    ) -> Result<CoreTokenResponse, OidcError> {
        let call = |r: openidconnect::HttpRequest| {
            let http = http.clone();
            async move { http.call(r).await }
        };
        let result = match req() {
            RequestKind::Code(client, code, verifier) => {
                client
                    .exchange_code(AuthorizationCode::new(code))
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier))
                    .request_async(&call)
                    .await
            }
            RequestKind::Refresh(client, token) => {
                let rt = RefreshToken::new(token);
                client
                    .exchange_refresh_token(&rt)
                    .request_async(&call)
                    .await
            }
        };
        result.map_err(|e| OidcError::Token(describe_token_error(&e)))
    }

    /// Exchanges the code and verifies the ID token against the login attempt's nonce.
    pub async fn exchange(
        &self,
        http: &ProviderClient,
        meta: &ProviderMetadata,
        jwks: &JwksCache,
        code: &str,
        login: &LoginState,
    ) -> Result<Tokens, OidcError> {
        let client = self.client(meta, &jwks.keys())?;
        let resp = self
            .token_request(http, || {
                RequestKind::Code(client.clone(), code.to_owned(), login.verifier.clone())
            })
            .await?;
        let id = resp.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(login.nonce.clone());
        let raw = self.verify_id_token(meta, jwks, id, &nonce).await?;
        Ok(tokens(&resp, Some(raw)))
    }

    /// Uses a refresh token. A new ID token, if any, is verified (its nonce is not checked).
    pub async fn refresh(
        &self,
        http: &ProviderClient,
        meta: &ProviderMetadata,
        jwks: &JwksCache,
        refresh_token: &str,
    ) -> Result<Tokens, OidcError> {
        let client = self.client(meta, &jwks.keys())?;
        let resp = self
            .token_request(http, || {
                RequestKind::Refresh(client.clone(), refresh_token.to_owned())
            })
            .await?;
        let id = match resp.id_token() {
            Some(id) => Some(
                self.verify_id_token(meta, jwks, id, |_: Option<&Nonce>| Ok(()))
                    .await?,
            ),
            None => None,
        };
        Ok(tokens(&resp, id))
    }

    /// Verifies an ID token (JOSE header, signature, `iss`, `aud`, `exp`, `iat`, nonce,
    /// `azp`) and returns it as text. A token signed by a key the gateway has not seen yet
    /// (the provider rotated its keys) makes the shared, rate-limited JWKS refetch run
    /// once, and the token is verified again with the keys it brought.
    async fn verify_id_token<N>(
        &self,
        meta: &ProviderMetadata,
        jwks: &JwksCache,
        id: &CoreIdToken,
        nonce: N,
    ) -> Result<String, OidcError>
    where
        N: openidconnect::NonceVerifier,
    {
        let raw = id.to_string();
        let header = super::jose::Header::parse(&raw)
            .map_err(|e| OidcError::IdToken(format!("JOSE header: {e}")))?;
        // The claims are read again later (roles, email): no key may appear twice.
        super::jose::claims(&raw).map_err(|e| OidcError::IdToken(e.to_string()))?;
        let mut keys = jwks.keys();
        if let Some(kid) = header.kid.as_deref() {
            if !keys.has_kid(kid) {
                keys = jwks.refetch_for_unknown_kid_patiently(kid).await;
            }
        }
        // ring checks the signature first, under the key rules of every other token (an
        // RSA key under 2048 bits never verifies); openidconnect then checks it again,
        // with the allowed algorithms, the claims and the nonce.
        if let Some(alg) = header.alg.filter(|a| KeyFamily::of(*a).is_some()) {
            let candidates = keys.candidates(header.kid.as_deref(), alg);
            if !candidates.is_empty() && verify_with(&raw, alg, &candidates).is_err() {
                return Err(OidcError::IdToken("the signature does not verify".into()));
            }
        }
        let client = self.client(meta, &keys)?;
        let verifier = self.verifier(&client);
        id.claims(&verifier, nonce)
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
        self.check_azp(&raw)?;
        Ok(raw)
    }

    fn verifier<'a>(&self, client: &'a Client) -> openidconnect::core::CoreIdTokenVerifier<'a> {
        let leeway = self.leeway;
        client
            .id_token_verifier()
            .set_allowed_algs(self.algs.clone())
            .set_issue_time_verifier_fn(move |iat| {
                let skew = chrono_like_now_diff(iat);
                if skew > leeway.as_secs() as i64 {
                    Err(format!("issued {skew} s in the future"))
                } else {
                    Ok(())
                }
            })
    }

    /// `azp`, when present, must be this client (also with a single audience).
    fn check_azp(&self, raw: &str) -> Result<(), OidcError> {
        let claims =
            jwt_payload(raw).ok_or_else(|| OidcError::IdToken("unreadable payload".into()))?;
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.client_id => Err(OidcError::IdToken(format!(
                "azp is {azp:?}, not this client"
            ))),
            _ => Ok(()),
        }
    }
}

enum RequestKind {
    Code(Client, String, String),
    Refresh(Client, String),
}

fn describe_token_error<E: std::error::Error>(
    e: &openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            format!("the provider said {}", r.error())
        }
        openidconnect::RequestTokenError::Request(e) => format!("request failed: {e}"),
        openidconnect::RequestTokenError::Parse(e, _) => format!("unreadable response: {e}"),
        openidconnect::RequestTokenError::Other(s) => s.clone(),
    }
}

fn tokens(resp: &CoreTokenResponse, id_token: Option<String>) -> Tokens {
    Tokens {
        id_token,
        access_token: resp.access_token().secret().clone(),
        refresh_token: resp.refresh_token().map(|r| r.secret().clone()),
        expires_in: resp.expires_in(),
    }
}

/// Seconds `iat` lies in the future (negative when in the past).
fn chrono_like_now_diff(iat: chrono::DateTime<chrono::Utc>) -> i64 {
    iat.timestamp() - crate::unix_now() as i64
}

/// The claims of a JWT, without verifying it (callers verify first or trust the source).
pub fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
