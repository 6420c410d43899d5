//! Bearer access-token validation.
//!
//! Order of checks: shape, JOSE header (read strictly by [`super::jose`]: no `crit`, no
//! duplicate keys; `alg` on the allow-list, `typ` absent, `JWT` or `at+jwt`), claim types,
//! key by `kid`, signature, then `iss` (a string, equal byte for byte), `aud`, `exp`, `nbf`
//! and `iat` with leeway, and last the `typ` claim (Keycloak marks ID tokens `"ID"`; they
//! are not access tokens).

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::jose::{self, ClaimShape, JoseError};
use super::jwks::{JwksCache, SignatureError};
use crate::config::{OidcSettings, TokenSettings};

/// Largest token accepted, to bound the work an attacker can ask for.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a bearer token was refused. Each variant maps to a fixed public description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, unparsable header or claims, or too long.
    #[error("the token is malformed")]
    Malformed,
    /// `alg` is `none`, HS*, or not in `tokens.algorithms`.
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// The JOSE `typ` is not absent, `JWT` or `at+jwt`.
    #[error("the token's type is not an access token")]
    HeaderType,
    /// The claims say it is an ID or refresh token (`typ` claim).
    #[error("an ID or refresh token is not an access token")]
    NotAccessToken,
    /// No key of the provider has this `kid` (after at most one refetch).
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` lies further in the future than the leeway allows.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// The JOSE header marks an extension critical (`crit`) or asks for an unencoded or
    /// compressed payload (`b64`, `zip`): nothing the gateway implements.
    #[error("the token uses a JOSE extension that is not supported")]
    UnsupportedHeader,
    /// A registered or scope claim has the wrong JSON type (such as `exp` as a string, or
    /// `iss` as an array).
    #[error("a claim of the token has the wrong type")]
    ClaimType,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is not meant for this audience")]
    Audience,
    /// `exp` (or `iss`, `aud` when checked) is missing.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// The provider's keys have never been fetched: the gateway cannot judge (503).
    #[error("the identity provider's keys are not available yet")]
    KeysUnavailable,
}

/// Validates bearer tokens against the configured issuer's keys.
#[derive(Debug, Clone)]
pub struct BearerValidator {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
}

impl BearerValidator {
    pub fn new(oidc: &OidcSettings, tokens: &TokenSettings) -> Self {
        BearerValidator {
            issuer: oidc.issuer.clone(),
            audiences: tokens.audiences.clone(),
            algorithms: tokens.algorithms.clone(),
            leeway: tokens.leeway.as_secs(),
        }
    }

    /// Checks everything that does not need a key: shape, `alg`, `typ`. Returns the
    /// algorithm and `kid`.
    pub fn inspect(&self, token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jose::Header::parse(token).map_err(|e| match e {
            JoseError::Alg => TokenError::Algorithm,
            JoseError::Crit | JoseError::Encoding => TokenError::UnsupportedHeader,
            JoseError::Shape | JoseError::HeaderJson | JoseError::ClaimsJson => {
                TokenError::Malformed
            }
            JoseError::HeaderType => TokenError::Malformed,
        })?;
        // An `alg` jsonwebtoken does not know (such as "none") is `None` here.
        let alg = header
            .alg
            .filter(|a| self.algorithms.contains(a))
            .ok_or(TokenError::Algorithm)?;
        if let Some(typ) = &header.typ {
            let t = typ.to_ascii_lowercase();
            if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return Err(TokenError::HeaderType);
            }
        }
        Ok((alg, header.kid))
    }

    /// Fully validates a token and returns its claims.
    pub async fn validate(
        &self,
        token: &str,
        jwks: &JwksCache,
    ) -> Result<Map<String, Value>, TokenError> {
        let (alg, kid) = self.inspect(token)?;
        let claims = jose::claims(token).map_err(|_| TokenError::Malformed)?;
        jose::check_shapes(&claims).map_err(shape_error)?;
        jwks.verify_signature(token, alg, kid.as_deref())
            .await
            .map_err(|e| match e {
                SignatureError::KeysUnavailable => TokenError::KeysUnavailable,
                SignatureError::UnknownKey => TokenError::UnknownKey,
                SignatureError::Malformed => TokenError::Malformed,
                SignatureError::Invalid => TokenError::Signature,
            })?;
        self.check_claims(claims)
    }

    /// Everything but the signature: for `explain` without the provider's keys.
    pub fn check_offline(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        self.inspect(token)?;
        let claims = jose::claims(token).map_err(|_| TokenError::Malformed)?;
        jose::check_shapes(&claims).map_err(shape_error)?;
        self.check_claims(claims)
    }

    /// `iss`, `aud`, `exp`, `nbf`, `iat` and the `typ` claim, on claims whose types were
    /// already checked.
    fn check_claims(&self, claims: Map<String, Value>) -> Result<Map<String, Value>, TokenError> {
        let now = now_secs();
        let leeway = self.leeway as f64;
        match claims.get("iss") {
            None => return Err(TokenError::MissingClaim),
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(_) => return Err(TokenError::Issuer),
        }
        if !self.audiences.is_empty() {
            let auds = jose::audiences(&claims)
                .map_err(shape_error)?
                .ok_or(TokenError::MissingClaim)?;
            if !auds.iter().any(|a| self.audiences.iter().any(|x| x == a)) {
                return Err(TokenError::Audience);
            }
        }
        let date = |name| jose::numeric_date(&claims, name).map_err(shape_error);
        match date("exp")? {
            None => return Err(TokenError::MissingClaim),
            Some(exp) if exp + leeway < now => return Err(TokenError::Expired),
            Some(_) => {}
        }
        if date("nbf")?.is_some_and(|nbf| nbf > now + leeway) {
            return Err(TokenError::NotYetValid);
        }
        if date("iat")?.is_some_and(|iat| iat > now + leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if let Some(Value::String(t)) = claims.get("typ") {
            if ["id", "refresh", "offline", "logout"].contains(&t.to_ascii_lowercase().as_str()) {
                return Err(TokenError::NotAccessToken);
            }
        }
        Ok(claims)
    }
}

fn shape_error(e: ClaimShape) -> TokenError {
    let ClaimShape::Type(name) = e;
    tracing::debug!(claim = name, "a claim of a bearer token has the wrong type");
    TokenError::ClaimType
}

/// Seconds since the epoch, with the fraction (NumericDate may carry one).
fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
