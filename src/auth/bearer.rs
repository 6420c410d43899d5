//! Bearer access-token validation.
//!
//! Order of checks: shape, JOSE header (read strictly by [`super::jose`]: no `crit`, no
//! duplicate keys; `alg` on the allow-list, `typ` absent, `JWT` or `at+jwt`), claim types,
//! key by `kid`, signature, then `iss` (a string, equal byte for byte), `aud`, `exp`, `nbf`
//! and `iat` with leeway, and last the `typ` claim (Keycloak marks ID tokens `"ID"`; they
//! are not access tokens).

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::jose::{self, ClaimShape, JoseError};
use super::jwks::{JwksCache, SignatureError};
use super::Identity;
use crate::claims::ClaimPath;
use crate::config::{IssuerSettings, OidcSettings, TokenSettings};

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
    /// Introspection (RFC 7662) says the token is not active, or the provider does not
    /// know it.
    #[error("the token is not active")]
    Inactive,
    /// The introspection endpoint refused the gateway's request or answered something
    /// that is not an introspection response.
    #[error("the token could not be introspected")]
    Introspection,
    /// A DPoP-bound token (`cnf.jkt`) sent as `Authorization: Bearer`.
    #[error("a DPoP-bound token must be sent with the DPoP scheme and a proof")]
    BoundToKey,
    /// `Authorization: DPoP` with a token that is not DPoP-bound.
    #[error("the token is not DPoP-bound")]
    NotBound,
    /// `tokens.dpop = "require"` and a Bearer token.
    #[error("only DPoP-bound tokens are accepted")]
    DpopRequired,
}

/// A token read but not yet verified: its algorithm, `kid` and type-checked claims.
type Read = (Algorithm, Option<String>, Map<String, Value>);

/// Validates bearer tokens against one issuer's keys.
#[derive(Debug, Clone)]
pub struct BearerValidator {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    roles_claims: Vec<ClaimPath>,
}

impl BearerValidator {
    /// The validator of `oidc.issuer`.
    pub fn new(oidc: &OidcSettings, tokens: &TokenSettings) -> Self {
        BearerValidator {
            issuer: oidc.issuer.clone(),
            audiences: tokens.audiences.clone(),
            algorithms: tokens.algorithms.clone(),
            leeway: tokens.leeway.as_secs(),
            roles_claims: tokens.roles_claims.clone(),
        }
    }

    /// The validator of one `[[tokens.issuers]]` entry.
    pub fn for_issuer(issuer: &IssuerSettings, tokens: &TokenSettings) -> Self {
        BearerValidator {
            issuer: issuer.issuer.clone(),
            audiences: issuer.audiences.clone(),
            algorithms: issuer.algorithms.clone(),
            leeway: tokens.leeway.as_secs(),
            roles_claims: issuer.roles_claims.clone(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The identity of claims this validator accepted: roles by its own role paths.
    pub fn identity(&self, claims: Map<String, Value>) -> Identity {
        Identity::from_claims_with_roles(claims, &self.roles_claims)
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
        let (alg, kid, claims) = self.read(token)?;
        self.verify(token, alg, kid.as_deref(), jwks, claims).await
    }

    /// The header (as [`BearerValidator::inspect`] checks it), then the claims and their
    /// types.
    fn read(&self, token: &str) -> Result<Read, TokenError> {
        let (alg, kid) = self.inspect(token)?;
        let claims = jose::claims(token).map_err(|_| TokenError::Malformed)?;
        jose::check_shapes(&claims).map_err(shape_error)?;
        Ok((alg, kid, claims))
    }

    /// The signature with this issuer's keys, then the claims.
    async fn verify(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        jwks: &JwksCache,
        claims: Map<String, Value>,
    ) -> Result<Map<String, Value>, TokenError> {
        jwks.verify_signature(token, alg, kid)
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
        let (_, _, claims) = self.read(token)?;
        self.check_claims(claims)
    }

    /// `iss`, `aud`, `exp`, `nbf`, `iat` and the `typ` claim, on claims whose types were
    /// already checked. Also for the claims of an introspection answer, where `iss` may be
    /// absent (`iss_required` false) and `exp` too (RFC 7662 makes both optional).
    fn check_claims(&self, claims: Map<String, Value>) -> Result<Map<String, Value>, TokenError> {
        self.judge_claims(claims, true)
    }

    /// The claims of an introspection answer (RFC 7662 §2.2), judged as a JWT's would be
    /// except that `iss` and `exp` may be absent.
    pub fn check_introspected(
        &self,
        claims: Map<String, Value>,
    ) -> Result<Map<String, Value>, TokenError> {
        jose::check_shapes(&claims).map_err(shape_error)?;
        self.judge_claims(claims, false)
    }

    fn judge_claims(
        &self,
        claims: Map<String, Value>,
        jwt: bool,
    ) -> Result<Map<String, Value>, TokenError> {
        let now = now_secs();
        let leeway = self.leeway as f64;
        match claims.get("iss") {
            None if jwt => return Err(TokenError::MissingClaim),
            None => {}
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
            None if jwt => return Err(TokenError::MissingClaim),
            None => {}
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

/// The validators of every accepted issuer: `oidc.issuer` first, then
/// `[[tokens.issuers]]` in file order. A token's `iss` selects exactly one; there is no
/// fallback to another.
#[derive(Debug, Clone)]
pub struct Bearers {
    issuers: Vec<BearerValidator>,
    /// Reads headers against the union of the issuers' algorithm allow-lists.
    any: BearerValidator,
}

impl Bearers {
    pub fn new(oidc: &OidcSettings, tokens: &TokenSettings) -> Bearers {
        let mut issuers = vec![BearerValidator::new(oidc, tokens)];
        issuers.extend(
            tokens
                .issuers
                .iter()
                .map(|i| BearerValidator::for_issuer(i, tokens)),
        );
        let any = BearerValidator {
            algorithms: issuers
                .iter()
                .flat_map(|v| v.algorithms.iter().copied())
                .collect(),
            ..issuers[0].clone()
        };
        Bearers { issuers, any }
    }

    /// The validator of `oidc.issuer`.
    pub fn primary(&self) -> &BearerValidator {
        &self.issuers[0]
    }

    pub fn all(&self) -> &[BearerValidator] {
        &self.issuers
    }

    /// The index of the issuer a token's claims name. With only `oidc.issuer` configured,
    /// a token of another issuer is still judged by it (and refused for its `iss` after
    /// the signature check, as always); with several, an unknown `iss` is refused at once.
    pub fn select(&self, claims: &Map<String, Value>) -> Result<usize, TokenError> {
        let iss = claims.get("iss").and_then(Value::as_str);
        if let Some(i) = iss.and_then(|iss| self.issuers.iter().position(|v| v.issuer == iss)) {
            return Ok(i);
        }
        match (self.issuers.len(), iss) {
            (1, _) => Ok(0),
            (_, None) if claims.contains_key("iss") => Err(TokenError::Issuer),
            (_, None) => Err(TokenError::MissingClaim),
            (_, Some(_)) => Err(TokenError::Issuer),
        }
    }

    /// The issuer whose `iss` a token claims (unverified), for `explain` to know whose keys
    /// to fetch.
    pub fn issuer_of(&self, token: &str) -> Option<usize> {
        let claims = jose::claims(token).ok()?;
        let iss = claims.get("iss")?.as_str()?;
        self.issuers.iter().position(|v| v.issuer == iss)
    }

    /// Fully validates a token with the keys of the issuer it names (`keys[i]` belongs to
    /// `all()[i]`). Returns the claims and the validator that accepted them.
    pub async fn validate(
        &self,
        token: &str,
        keys: &[Arc<JwksCache>],
    ) -> Result<(Map<String, Value>, &BearerValidator), TokenError> {
        let (v, alg, kid, claims) = self.read(token)?;
        let jwks = keys
            .get(self.index_of(v))
            .ok_or(TokenError::KeysUnavailable)?;
        let claims = v.verify(token, alg, kid.as_deref(), jwks, claims).await?;
        Ok((claims, v))
    }

    /// Everything but the signature, for `explain` without the keys.
    pub fn check_offline(
        &self,
        token: &str,
    ) -> Result<(Map<String, Value>, &BearerValidator), TokenError> {
        let (v, _, _, claims) = self.read(token)?;
        Ok((v.check_claims(claims)?, v))
    }

    /// Header, claims and their types, then the issuer, then its algorithm allow-list.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        token: &str,
    ) -> Result<
        (
            &BearerValidator,
            Algorithm,
            Option<String>,
            Map<String, Value>,
        ),
        TokenError,
    > {
        if self.issuers.len() == 1 {
            let v = &self.issuers[0];
            let (alg, kid, claims) = v.read(token)?;
            return Ok((v, alg, kid, claims));
        }
        // The header first, against the union of the allow-lists, so a token refused for
        // its algorithm is refused for that whatever its claims say.
        let (alg, kid, claims) = self.any.read(token)?;
        let v = &self.issuers[self.select(&claims)?];
        if !v.algorithms.contains(&alg) {
            return Err(TokenError::Algorithm);
        }
        Ok((v, alg, kid, claims))
    }

    fn index_of(&self, v: &BearerValidator) -> usize {
        self.issuers
            .iter()
            .position(|x| std::ptr::eq(x, v))
            .unwrap_or(0)
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
