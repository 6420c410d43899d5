//! Logout tokens of OpenID Connect Back-Channel Logout 1.0: the provider tells the gateway,
//! server to server, that a session at the provider ended.
//!
//! Order of checks: length, JOSE header (read strictly by [`super::jose`]; `alg` on
//! `tokens.algorithms` and never `none` or HS*; `typ` absent, `JWT` or `logout+jwt`),
//! claims readable, signature (keys by `kid`, with the same rate-limited refetch for an
//! unknown `kid` as every other token), then the claims:
//!
//! - `iss` a string equal to the configured issuer byte for byte;
//! - `aud` a string or an array of strings containing the client id;
//! - `iat` a number, at most `tokens.leeway` in the future and at most
//!   [`MAX_AGE`] (ten minutes) plus the leeway in the past. The specification asks only for
//!   `iat`; the bound on its age is the gateway's, so that the set of `jti`s it remembers
//!   (see below) needs to hold each one for ten minutes only: an older token is refused
//!   whether its `jti` is remembered or not. Providers send logout tokens the moment a
//!   session ends, so ten minutes leaves room for retries;
//! - `exp`, when present, a number not passed (with the leeway);
//! - `events` an object with the member `http://schemas.openid.net/event/backchannel-logout`,
//!   whose value is an object;
//! - `sid` or `sub` (or both), strings;
//! - no `nonce` (an ID token is never a logout token);
//! - `jti` a string. That it was not used before is for the caller to check, after
//!   everything else passed, with [`LogoutClaims::remember_until`].
//!
//! Every refusal has its own [`LogoutTokenError`] variant with a fixed text; the token
//! itself is never repeated in a response or a log.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::jose::{self, JoseError};
use super::jwks::{JwksCache, KeyFamily, SignatureError};
use crate::config::{OidcSettings, TokenSettings};

/// Largest logout token accepted.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// How old (by `iat`) a logout token may be, besides the leeway.
pub const MAX_AGE: u64 = 600;
/// The `events` member that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a back-channel logout request was refused. Each variant has a fixed public text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    /// The body is not `application/x-www-form-urlencoded`.
    #[error("the request body must be application/x-www-form-urlencoded")]
    NotAForm,
    /// The body is larger than the gateway reads, or could not be read.
    #[error("the request body is too large or could not be read")]
    Body,
    /// No `logout_token` field, an empty one, or more than one.
    #[error("the request must carry exactly one logout_token")]
    Missing,
    /// Not three base64url parts, unreadable header or claims, or too long.
    #[error("the logout token is malformed")]
    Malformed,
    /// `crit`, `b64` or `zip` in the JOSE header.
    #[error("the logout token uses a JOSE extension that is not supported")]
    UnsupportedHeader,
    /// `alg` is `none`, HS*, or not in `tokens.algorithms`.
    #[error("the logout token's signing algorithm is not accepted")]
    Algorithm,
    /// The JOSE `typ` is not absent, `JWT` or `logout+jwt`.
    #[error("the logout token's type is not accepted")]
    HeaderType,
    /// The provider's keys were never fetched (503: the provider may retry).
    #[error("the identity provider's keys are not available yet")]
    KeysUnavailable,
    /// No key of the provider fits the `kid` and `alg` (after at most one refetch).
    #[error("the logout token was signed by an unknown key")]
    UnknownKey,
    #[error("the logout token's signature is invalid")]
    Signature,
    /// `iss` missing, not a string, or another issuer.
    #[error("the logout token was issued by another issuer")]
    Issuer,
    /// `aud` missing, malformed, or without the client id.
    #[error("the logout token is not meant for this client")]
    Audience,
    /// `iat` missing or not a number.
    #[error("the logout token has no valid iat")]
    IssuedAt,
    /// `iat` further in the future than the leeway.
    #[error("the logout token was issued in the future")]
    IssuedInFuture,
    /// `iat` older than [`MAX_AGE`] plus the leeway.
    #[error("the logout token is too old")]
    TooOld,
    /// `exp` not a number, or passed.
    #[error("the logout token has expired")]
    Expired,
    /// No `events` claim, or one that is not an object.
    #[error("the logout token has no events claim")]
    NoEvents,
    /// `events` lacks the back-channel logout event.
    #[error("the logout token's events claim has no back-channel logout event")]
    NotLogoutEvent,
    /// The back-channel logout event's value is not an object.
    #[error("the logout token's back-channel logout event is not a JSON object")]
    EventValue,
    /// Neither `sid` nor `sub`.
    #[error("the logout token has neither sid nor sub")]
    NoSubject,
    /// `sid` or `sub` is not a string.
    #[error("the logout token's sid or sub is not a string")]
    SubjectType,
    /// A `nonce` claim: an ID token, not a logout token.
    #[error("a logout token must not contain a nonce")]
    Nonce,
    /// No `jti`, or not a string.
    #[error("the logout token has no jti")]
    Jti,
    /// This `jti` was used before.
    #[error("the logout token was already used")]
    Replayed,
}

impl LogoutTokenError {
    /// A short name for logs.
    pub fn code(self) -> &'static str {
        use LogoutTokenError as E;
        match self {
            E::NotAForm => "not_a_form",
            E::Body => "body",
            E::Missing => "missing",
            E::Malformed => "malformed",
            E::UnsupportedHeader => "unsupported_header",
            E::Algorithm => "algorithm",
            E::HeaderType => "header_type",
            E::KeysUnavailable => "keys_unavailable",
            E::UnknownKey => "unknown_key",
            E::Signature => "signature",
            E::Issuer => "issuer",
            E::Audience => "audience",
            E::IssuedAt => "iat",
            E::IssuedInFuture => "iat_future",
            E::TooOld => "too_old",
            E::Expired => "expired",
            E::NoEvents => "no_events",
            E::NotLogoutEvent => "not_logout_event",
            E::EventValue => "event_value",
            E::NoSubject => "no_subject",
            E::SubjectType => "subject_type",
            E::Nonce => "nonce",
            E::Jti => "jti",
            E::Replayed => "replayed",
        }
    }
}

/// Which sessions a logout token ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutTarget {
    /// `sid`: every session made with this provider session.
    ProviderSession(String),
    /// Only `sub`: every session of this subject created up to the logout.
    Subject(String),
}

/// What a verified logout token says.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutClaims {
    pub target: LogoutTarget,
    /// `sub`, when present (also next to a `sid`).
    pub sub: Option<String>,
    pub jti: String,
    /// `iat`, seconds since the epoch.
    pub iat: f64,
}

impl LogoutClaims {
    /// Until when this token's `jti` must be remembered: after it, the token is refused
    /// as too old anyway.
    pub fn remember_until(&self, leeway: u64) -> u64 {
        // `iat` was checked to be a finite number near now.
        let iat = self.iat.max(0.0).ceil() as u64;
        iat.saturating_add(MAX_AGE)
            .saturating_add(leeway)
            .saturating_add(1)
    }
}

/// Verifies logout tokens for one configuration.
#[derive(Debug, Clone)]
pub struct LogoutTokenVerifier {
    issuer: String,
    client_id: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
}

impl LogoutTokenVerifier {
    pub fn new(oidc: &OidcSettings, tokens: &TokenSettings) -> LogoutTokenVerifier {
        LogoutTokenVerifier::from_parts(
            &oidc.issuer,
            &oidc.client_id,
            tokens.algorithms.clone(),
            tokens.leeway.as_secs(),
        )
    }

    pub fn from_parts(
        issuer: &str,
        client_id: &str,
        algorithms: Vec<Algorithm>,
        leeway: u64,
    ) -> LogoutTokenVerifier {
        LogoutTokenVerifier {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            algorithms,
            leeway,
        }
    }

    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// The JOSE header: returns the algorithm and `kid`.
    pub fn inspect(&self, token: &str) -> Result<(Algorithm, Option<String>), LogoutTokenError> {
        use LogoutTokenError as E;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(E::Malformed);
        }
        let header = jose::Header::parse(token).map_err(|e| match e {
            JoseError::Alg => E::Algorithm,
            JoseError::Crit | JoseError::Encoding => E::UnsupportedHeader,
            JoseError::Shape
            | JoseError::HeaderJson
            | JoseError::ClaimsJson
            | JoseError::HeaderType => E::Malformed,
        })?;
        // An `alg` jsonwebtoken does not know (such as "none") is `None` here; HS* has no
        // key family, so it is refused even if it were configured.
        let alg = header
            .alg
            .filter(|a| self.algorithms.contains(a) && KeyFamily::of(*a).is_some())
            .ok_or(E::Algorithm)?;
        if let Some(typ) = &header.typ {
            let t = typ.to_ascii_lowercase();
            if !matches!(t.as_str(), "jwt" | "logout+jwt" | "application/logout+jwt") {
                return Err(E::HeaderType);
            }
        }
        Ok((alg, header.kid))
    }

    /// Fully verifies a logout token (all but the `jti` replay check).
    pub async fn verify(
        &self,
        token: &str,
        jwks: &JwksCache,
    ) -> Result<LogoutClaims, LogoutTokenError> {
        use LogoutTokenError as E;
        let (alg, kid) = self.inspect(token)?;
        let claims = jose::claims(token).map_err(|_| E::Malformed)?;
        jwks.verify_signature(token, alg, kid.as_deref())
            .await
            .map_err(|e| match e {
                SignatureError::KeysUnavailable => E::KeysUnavailable,
                SignatureError::UnknownKey => E::UnknownKey,
                SignatureError::Malformed => E::Malformed,
                SignatureError::Invalid => E::Signature,
            })?;
        self.check_claims(&claims, now_secs())
    }

    /// The claim checks, at time `now` (seconds since the epoch), on a token whose
    /// signature was verified.
    pub fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: f64,
    ) -> Result<LogoutClaims, LogoutTokenError> {
        use LogoutTokenError as E;
        let leeway = self.leeway as f64;
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            _ => return Err(E::Issuer),
        }
        match jose::audiences(claims) {
            Ok(Some(auds)) if auds.contains(&self.client_id.as_str()) => {}
            _ => return Err(E::Audience),
        }
        let iat = match jose::numeric_date(claims, "iat") {
            Ok(Some(iat)) if iat.is_finite() => iat,
            _ => return Err(E::IssuedAt),
        };
        if iat > now + leeway {
            return Err(E::IssuedInFuture);
        }
        if iat + (MAX_AGE as f64) + leeway < now {
            return Err(E::TooOld);
        }
        match jose::numeric_date(claims, "exp") {
            Ok(None) => {}
            Ok(Some(exp)) if exp + leeway >= now => {}
            _ => return Err(E::Expired),
        }
        let Some(Value::Object(events)) = claims.get("events") else {
            return Err(E::NoEvents);
        };
        match events.get(BACKCHANNEL_LOGOUT_EVENT) {
            None => return Err(E::NotLogoutEvent),
            Some(Value::Object(_)) => {}
            Some(_) => return Err(E::EventValue),
        }
        let string = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(E::SubjectType),
        };
        let sub = string("sub")?;
        let target = match (string("sid")?, &sub) {
            (Some(sid), _) => LogoutTarget::ProviderSession(sid),
            (None, Some(sub)) => LogoutTarget::Subject(sub.clone()),
            (None, None) => return Err(E::NoSubject),
        };
        if claims.contains_key("nonce") {
            return Err(E::Nonce);
        }
        let jti = match claims.get("jti") {
            Some(Value::String(j)) if !j.is_empty() => j.clone(),
            _ => return Err(E::Jti),
        };
        Ok(LogoutClaims {
            target,
            sub,
            jti,
            iat,
        })
    }
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
