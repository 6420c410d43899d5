//! Who is calling: credential extraction and authentication.
//!
//! A request carries at most one credential: `Authorization: Bearer` if present, else the
//! session cookie. Authenticators distinguish "not mine" (no such credential: try the next)
//! from "mine but bad" (an invalid bearer token is a 401 and never falls back to a cookie).

pub mod authenticate;
pub mod bearer;
pub mod dpop;
pub mod introspection;
pub mod jose;
pub mod jwks;
pub mod logout_token;
pub mod oidc;
pub mod provider;
pub mod refresh;
pub mod ring_crypto;
pub mod session;
pub mod sessions;
pub mod store;
pub mod token_cache;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::claims;
use crate::config::TokenSettings;

pub use authenticate::{AuthError, Authenticate, DpopRefusal, Given, Presented, RequestAuth};

/// The credential a request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` (RFC 9449): judged only with `tokens.dpop` on.
    Dpop(&'a str),
    /// `Authorization` with a scheme other than Bearer: not a gateway credential.
    OtherAuthorization,
}

/// Two `Authorization` headers: a 400, never a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousCredentials;

/// Finds the request's credential.
pub fn extract(headers: &HeaderMap) -> Result<Credential<'_>, AmbiguousCredentials> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(Credential::None);
    };
    if values.next().is_some() {
        return Err(AmbiguousCredentials);
    }
    let Ok(s) = first.to_str() else {
        return Ok(Credential::Bearer(""));
    };
    let s = s.trim();
    match s.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Credential::Bearer(rest.trim()))
        }
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("dpop") => {
            Ok(Credential::Dpop(rest.trim()))
        }
        None if s.eq_ignore_ascii_case("bearer") => Ok(Credential::Bearer("")),
        None if s.eq_ignore_ascii_case("dpop") => Ok(Credential::Dpop("")),
        _ => Ok(Credential::OtherAuthorization),
    }
}

/// An authenticated caller, whatever the credential.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `preferred_username`, if any.
    pub username: Option<String>,
    pub email: Option<String>,
    /// Sorted, de-duplicated union over `tokens.roles_claims`.
    pub roles: Vec<String>,
    /// Sorted, de-duplicated.
    pub scopes: Vec<String>,
    /// Every claim, for `claims` rules and claim headers.
    pub claims: Map<String, Value>,
    /// Seconds since the epoch.
    pub expires_at: Option<u64>,
    /// The access token, when the upstream may be given it.
    pub access_token: Option<String>,
    /// The credential came in `Authorization: Bearer`.
    pub from_bearer: bool,
    /// The browser session behind this identity (`None` for a bearer token).
    pub session: Option<SessionInfo>,
    /// The identity headers built from it, kept for the next request with the same
    /// (cached) identity.
    pub headers: HeaderCache,
}

/// Identity headers built once for an identity, by the header plan with the given id. A
/// clone starts empty: a changed copy never carries headers built from the original.
#[derive(Default)]
pub struct HeaderCache(std::sync::OnceLock<(u64, Vec<(HeaderName, HeaderValue)>)>);

impl HeaderCache {
    /// The headers the plan `plan` built, building them on first use.
    pub fn get_or_build(
        &self,
        plan: u64,
        build: impl FnOnce() -> Vec<(HeaderName, HeaderValue)>,
    ) -> Option<&[(HeaderName, HeaderValue)]> {
        let (built_by, headers) = self.0.get_or_init(|| (plan, build()));
        (*built_by == plan).then_some(headers.as_slice())
    }
}

impl Clone for HeaderCache {
    fn clone(&self) -> Self {
        HeaderCache::default()
    }
}

impl std::fmt::Debug for HeaderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderCache")
    }
}

/// Which gateway session an identity comes from, and when it ends by itself: what a
/// WebSocket opened on it checks while it stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The gateway's session id (what a logout revokes, the Redis key).
    pub sid: String,
    /// Created (seconds since the epoch).
    pub iat: u64,
    /// `session.lifetime` ends it here.
    pub exp: u64,
    /// The access token's expiry.
    pub at_exp: Option<u64>,
    /// It holds a refresh token.
    pub renewable: bool,
}

impl Identity {
    /// Builds an identity from verified (or, in `explain --claims`, given) claims.
    pub fn from_claims(claims: Map<String, Value>, tokens: &TokenSettings) -> Identity {
        Identity::from_claims_with_roles(claims, &tokens.roles_claims)
    }

    /// Like [`Identity::from_claims`], with roles read from `roles_claims` (an issuer's).
    /// An introspection answer's `username` stands in for a missing `preferred_username`.
    pub fn from_claims_with_roles(
        claims: Map<String, Value>,
        roles_claims: &[claims::ClaimPath],
    ) -> Identity {
        let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        Identity {
            subject: s("sub").unwrap_or_default(),
            username: s("preferred_username").or_else(|| s("username")),
            email: s("email"),
            roles: claims::roles(&claims, roles_claims),
            scopes: claims::scopes(&claims),
            expires_at: claims.get("exp").and_then(Value::as_u64),
            access_token: None,
            from_bearer: false,
            session: None,
            headers: HeaderCache::default(),
            claims,
        }
    }

    /// A browser session: claims of the ID token, completed by those of the access token
    /// when it is a JWT (Keycloak puts `realm_access`/`resource_access` and `scope` only
    /// there). Both were verified or received from the token endpoint at login or refresh.
    pub fn from_session(data: &session::SessionData, tokens: &TokenSettings) -> Option<Identity> {
        let mut claims = oidc::jwt_payload(&data.id_token)?;
        let at = data.access_token.as_deref().and_then(oidc::jwt_payload);
        let mut roles = claims::roles(&claims, &tokens.roles_claims);
        let mut scopes = Vec::new();
        if let Some(at) = at {
            roles.extend(claims::roles(&at, &tokens.roles_claims));
            roles.sort_unstable();
            roles.dedup();
            scopes = claims::scopes(&at);
            for (k, v) in at {
                claims.entry(k).or_insert(v);
            }
        }
        let mut id = Identity::from_claims(claims, tokens);
        id.roles = roles;
        id.scopes = scopes;
        id.expires_at = Some(data.exp);
        id.access_token = data.access_token.clone();
        id.from_bearer = false;
        id.session = Some(SessionInfo {
            sid: data.sid.clone(),
            iat: data.iat,
            exp: data.exp,
            at_exp: data.at_exp,
            renewable: data.refresh_token.is_some(),
        });
        Some(id)
    }

    /// `acr`: the level of the user's authentication (ID token first, for a session).
    pub fn acr(&self) -> Option<&str> {
        self.claims.get("acr").and_then(Value::as_str)
    }

    /// `auth_time`: when the user authenticated (seconds since the epoch).
    pub fn auth_time(&self) -> Option<u64> {
        self.claims.get("auth_time").and_then(Value::as_u64)
    }

    /// The user name for headers: `preferred_username`, else `sub`.
    pub fn user(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn extracts_bearer_and_refuses_two_authorization_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(extract(&h), Ok(Credential::None));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(extract(&h), Ok(Credential::Bearer("abc")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        assert_eq!(extract(&h), Ok(Credential::OtherAuthorization));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(extract(&h), Ok(Credential::Bearer("")));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(extract(&h), Err(AmbiguousCredentials));
    }
}
