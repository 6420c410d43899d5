//! Bearer access-token validation.
//!
//! Order of checks: shape, JOSE header (`alg` on the allow-list, `typ` absent, `JWT` or
//! `at+jwt`), key by `kid`, signature, then `iss`, `aud`, `exp`/`nbf` with leeway, and last
//! the `typ` claim (Keycloak marks ID tokens `"ID"`; they are not access tokens).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
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

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        if self.audiences.is_empty() {
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp", "iss"]);
        } else {
            v.set_audience(&self.audiences);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
        }
        v
    }

    /// Checks everything that does not need a key: shape, `alg`, `typ`. Returns the
    /// algorithm and `kid`.
    pub fn inspect(&self, token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        // An `alg` jsonwebtoken does not know (such as "none") fails here too.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Algorithm)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        if let Some(typ) = &header.typ {
            let t = typ.to_ascii_lowercase();
            if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return Err(TokenError::HeaderType);
            }
        }
        Ok((header.alg, header.kid))
    }

    /// Fully validates a token and returns its claims.
    pub async fn validate(
        &self,
        token: &str,
        jwks: &JwksCache,
    ) -> Result<Map<String, Value>, TokenError> {
        let (alg, kid) = self.inspect(token)?;
        if !jwks.is_ready() {
            return Err(TokenError::KeysUnavailable);
        }
        let mut keys = jwks.keys().candidates(kid.as_deref(), alg);
        if keys.is_empty() {
            if let Some(k) = kid.as_deref() {
                keys = jwks
                    .refetch_for_unknown_kid(k)
                    .await
                    .candidates(Some(k), alg);
            }
        }
        if keys.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let validation = self.validation(alg);
        let mut last = TokenError::Signature;
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return check_claims(data.claims),
                Err(e) => {
                    last = map_error(e.kind());
                    if last != TokenError::Signature {
                        // The signature was good; the claims are what is wrong.
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

fn check_claims(claims: Map<String, Value>) -> Result<Map<String, Value>, TokenError> {
    if let Some(Value::String(t)) = claims.get("typ") {
        if ["id", "refresh", "offline", "logout"].contains(&t.to_ascii_lowercase().as_str()) {
            return Err(TokenError::NotAccessToken);
        }
    }
    Ok(claims)
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::Algorithm,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            TokenError::Signature
        }
        _ => TokenError::Malformed,
    }
}

impl BearerValidator {
    /// Everything but the signature: for `explain`, which runs offline.
    pub fn check_offline(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        self.inspect(token)?;
        let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(token)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Malformed)?;
        let now = jsonwebtoken::get_current_timestamp();
        let num = |k: &str| claims.get(k).and_then(Value::as_u64);
        match num("exp") {
            None => return Err(TokenError::MissingClaim),
            Some(exp) if exp.saturating_add(self.leeway) < now => return Err(TokenError::Expired),
            _ => {}
        }
        if num("nbf").is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(TokenError::Audience);
            }
        }
        check_claims(claims)
    }
}

#[cfg(test)]
mod tests;
