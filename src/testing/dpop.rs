//! A DPoP client (RFC 9449) for the tests: a key pair, its thumbprint, and proofs.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::idp::SigningKey;

/// A client's proof key (RSA, RS256).
pub struct DpopKey {
    pub key: SigningKey,
}

impl DpopKey {
    pub fn generate() -> DpopKey {
        DpopKey {
            key: SigningKey::generate("dpop"),
        }
    }

    /// The public JWK as a proof carries it (no `kid`, `use` or `alg`).
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "n": self.key.jwk["n"],
            "e": self.key.jwk["e"],
        })
    }

    /// The RFC 7638 thumbprint: what a bound token's `cnf.jkt` holds.
    pub fn jkt(&self) -> String {
        let map: Map<String, Value> = self.public_jwk().as_object().cloned().unwrap_or_default();
        crate::auth::dpop::thumbprint(&map).expect("thumbprint")
    }

    /// A proof for `method url`, bound to `token` (`ath`), issued now, with a fresh `jti`.
    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        let mut claims = json!({
            "jti": crate::auth::session::random_token(16),
            "htm": method,
            "htu": url,
            "iat": super::now(),
        });
        if let Some(t) = token {
            claims["ath"] = json!(ath(t));
        }
        self.sign(&self.header(), &claims)
    }

    /// The header of a valid proof: `typ` dpop+jwt, RS256, the public key.
    pub fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(serde_json::from_value::<Jwk>(self.public_jwk()).expect("jwk"));
        h
    }

    /// Signs any header and claims with this key (to build invalid proofs).
    pub fn sign(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.key.encoding).expect("sign")
    }
}

/// `ath`: base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}
