//! The strict reading of a compact JWS: its JOSE header and its claims set.
//!
//! Every token the gateway verifies (bearer access tokens, ID tokens, logout tokens) has
//! its header read here before any key is chosen, and bearer claims are read here before
//! any claim is trusted. The rules, each decided on purpose (RFC 7515, RFC 7519, RFC 8725,
//! RFC 9068):
//!
//! - exactly three base64url parts, unpadded and canonical;
//! - header and claims are JSON objects with no key twice at any depth (RFC 7515 §5.2
//!   allows "reject or take the last"; two readers taking different copies is how claim
//!   confusion starts, so the gateway rejects);
//! - `crit` is refused whatever it names, since the gateway implements no JWS extension
//!   (RFC 7515 §4.1.11; an empty list is itself invalid), and so is `b64` (RFC 7797, which
//!   needs `crit`) and `zip` (JWE only; compressed JWS is a known decompression bomb);
//! - `alg`, `typ`, `kid` are strings when present; `alg` is required;
//! - keys are never taken from the token (`jwk`, `jku`, `x5u`, `x5c` are ignored), only from
//!   the issuer's JWKS.
//!
//! Claims: `iss` a string equal to the issuer byte for byte; `aud` a string or a non-empty
//! array of strings; `exp`, `nbf`, `iat` JSON numbers (integers or fractions, never
//! strings); `sub` a string; `scope` a string or an array of strings, `scp` likewise.

use std::fmt;

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// Why a token's structure was refused. The text is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("not three base64url parts")]
    Shape,
    #[error("the header is not a JSON object without duplicate keys")]
    HeaderJson,
    #[error("the claims are not a JSON object without duplicate keys")]
    ClaimsJson,
    #[error("the header has no usable alg")]
    Alg,
    #[error("the header marks an extension critical (crit), which is not supported")]
    Crit,
    #[error("the header asks for an unencoded or compressed payload (b64, zip)")]
    Encoding,
    #[error("a header parameter has the wrong type")]
    HeaderType,
}

/// The JOSE header parameters the gateway reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `None` when `alg` names an algorithm jsonwebtoken does not know (such as `none`).
    pub alg: Option<Algorithm>,
    pub typ: Option<String>,
    pub kid: Option<String>,
}

impl Header {
    /// Reads and checks the header of a compact JWS.
    pub fn parse(token: &str) -> Result<Header, JoseError> {
        Header::from_map(&header_map(token)?)
    }

    /// The parameters the gateway reads, from a header already read by [`header_map`].
    pub fn from_map(map: &Map<String, Value>) -> Result<Header, JoseError> {
        let string = |k: &str| match map.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JoseError::HeaderType),
        };
        let alg = string("alg")?.ok_or(JoseError::Alg)?;
        Ok(Header {
            alg: alg.parse().ok(),
            typ: string("typ")?,
            kid: string("kid")?,
        })
    }
}

/// The whole JOSE header of a compact JWS, read strictly: a JSON object without duplicate
/// keys, without `crit`, `b64` or `zip`.
pub fn header_map(token: &str) -> Result<Map<String, Value>, JoseError> {
    let (h, _, _) = split(token)?;
    let map = decode_object(h).ok_or(JoseError::HeaderJson)?;
    if map.contains_key("crit") {
        return Err(JoseError::Crit);
    }
    if map.contains_key("b64") || map.contains_key("zip") {
        return Err(JoseError::Encoding);
    }
    Ok(map)
}

/// Does `token` look like a compact JWS (three parts, the first a JSON object)? Tokens
/// that do not are opaque: only introspection can judge them.
pub fn looks_like_jwt(token: &str) -> bool {
    split(token).is_ok_and(|(h, _, _)| decode_object(h).is_some())
}

/// The three parts of a compact JWS. More or fewer than three (a JWE has five) is refused.
pub fn split(token: &str) -> Result<(&str, &str, &str), JoseError> {
    let mut parts = token.splitn(4, '.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(JoseError::Shape),
    }
}

/// The claims set of a compact JWS, read strictly (no signature check here).
pub fn claims(token: &str) -> Result<Map<String, Value>, JoseError> {
    let (_, p, _) = split(token)?;
    decode_object(p).ok_or(JoseError::ClaimsJson)
}

/// A JSON object without duplicate keys at any depth (an introspection answer).
pub fn strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(bytes).ok()?.0 {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice::<Strict>(&bytes).ok()?.0 {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Why a claims set was refused, before any time or audience judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimShape {
    /// A registered claim has the wrong JSON type (e.g. `exp` as a string).
    Type(&'static str),
}

/// A NumericDate claim (RFC 7519 §2): a JSON number, never a string. `Ok(None)` = absent.
pub fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, ClaimShape> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(ClaimShape::Type(name)),
        Some(_) => Err(ClaimShape::Type(name)),
    }
}

/// The audiences of a token: `aud` as one string or a non-empty array of strings.
/// `Ok(None)` = absent.
pub fn audiences(claims: &Map<String, Value>) -> Result<Option<Vec<&str>>, ClaimShape> {
    match claims.get("aud") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().ok_or(ClaimShape::Type("aud")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ClaimShape::Type("aud")),
    }
}

/// The type checks of the registered and scope claims that every bearer token passes.
pub fn check_shapes(claims: &Map<String, Value>) -> Result<(), ClaimShape> {
    for name in ["exp", "nbf", "iat"] {
        numeric_date(claims, name)?;
    }
    audiences(claims)?;
    for name in ["iss", "sub", "jti", "typ", "azp"] {
        if claims.get(name).is_some_and(|v| !v.is_string()) {
            return Err(ClaimShape::Type(name));
        }
    }
    for name in ["scope", "scp"] {
        match claims.get(name) {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
            Some(_) => return Err(ClaimShape::Type(name)),
        }
    }
    Ok(())
}

// === impl Strict ===

/// A JSON value whose objects, at every depth, have no key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value without duplicate object keys")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Strict(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests;
