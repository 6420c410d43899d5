//! Token signatures verified with ring: the `jsonwebtoken` crypto provider of the gateway.
//!
//! Every signature the gateway checks itself (bearer and logout tokens in
//! [`super::jwks::verify_with`], ID tokens there too before `openidconnect` checks them
//! again with their claims, DPoP proofs in [`super::dpop::verify_proof`]) goes through
//! [`verify`], which calls ring directly: no process-wide state decides which library
//! verifies, so no start-up order can make a process fall back to another one.
//! [`PROVIDER`] wraps the same code as a [`jsonwebtoken::crypto::CryptoProvider`], and
//! [`install`] makes it the process default, so `jsonwebtoken`'s own `decode` verifies
//! with ring too. Signing (the identity assertion, the test provider) and the JWK helpers
//! stay with RustCrypto's provider: they are not on the request path.
//!
//! | `alg` | ring |
//! | --- | --- |
//! | RS256 / RS384 / RS512 | `RSA_PKCS1_2048_8192_SHA256` / `_SHA384` / `_SHA512` |
//! | PS256 / PS384 / PS512 | `RSA_PSS_2048_8192_SHA256` / `_SHA384` / `_SHA512` |
//! | ES256 / ES384 | `ECDSA_P256_SHA256_FIXED` / `ECDSA_P384_SHA384_FIXED` |
//! | EdDSA | `ED25519` |
//! | HS256 / HS384 / HS512 | `hmac::verify` (constant time) |
//!
//! RSA keys must have 2048 to 8192 bits (RFC 7518 §3.3 requires at least 2048): a token
//! signed by a smaller key does not verify, so it is refused like any bad signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{RsaParameters, UnparsedPublicKey, VerificationAlgorithm};

/// The smallest RSA modulus ring verifies with, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The gateway's provider: ring verifies, RustCrypto signs and serves the JWK helpers.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Makes [`PROVIDER`] `jsonwebtoken`'s process default, once. When another provider is
/// already the default (something used `jsonwebtoken` before), that one stays: the
/// gateway's own checks call [`verify`] and do not depend on it.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("jsonwebtoken already has a crypto provider; the gateway's checks use ring directly");
        }
    });
}

/// Checks a compact JWS signature (`signature`: the base64url text after the second
/// `.`; `message`: the first two parts with their `.`) with `key` for `alg`. False for a
/// signature that does not verify, is not base64url, or a key that does not fit `alg`.
pub fn verify(signature: &str, message: &[u8], key: &DecodingKey, alg: Algorithm) -> bool {
    if key.family() != alg.family() {
        return false;
    }
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    verify_raw(alg, key, message, &sig).is_ok()
}

/// Why ring refused (deliberately without detail: every refusal is a bad signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unverified;

/// The one place the gateway calls ring for a signature: `key` must be of `alg`'s family
/// (checked by the callers).
fn verify_raw(alg: Algorithm, key: &DecodingKey, msg: &[u8], sig: &[u8]) -> Result<(), Unverified> {
    use ring::signature as s;
    let rsa = |params: &'static RsaParameters| match key.kind() {
        // PKCS#1 `RSAPublicKey` DER (from a PEM or DER key).
        DecodingKeyKind::SecretOrDer(der) => UnparsedPublicKey::new(params, der)
            .verify(msg, sig)
            .map_err(|_| Unverified),
        // From a JWK. ring wants minimal big-endian integers; RFC 7518 §6.3.1 forbids
        // leading zero octets, but some providers write one, and they are the same key.
        DecodingKeyKind::RsaModulusExponent { n, e } => s::RsaPublicKeyComponents {
            n: strip_zeros(n),
            e: strip_zeros(e),
        }
        .verify(params, msg, sig)
        .map_err(|_| Unverified),
    };
    // EC keys are the uncompressed SEC1 point (`from_ec_components` writes 0x04 || x || y),
    // Ed25519 keys the 32-byte public key, HMAC keys the secret.
    let raw = |algorithm: &'static dyn VerificationAlgorithm| match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => UnparsedPublicKey::new(algorithm, bytes)
            .verify(msg, sig)
            .map_err(|_| Unverified),
        DecodingKeyKind::RsaModulusExponent { .. } => Err(Unverified),
    };
    let hmac = |algorithm: ring::hmac::Algorithm| match key.kind() {
        DecodingKeyKind::SecretOrDer(secret) => {
            ring::hmac::verify(&ring::hmac::Key::new(algorithm, secret), msg, sig)
                .map_err(|_| Unverified)
        }
        DecodingKeyKind::RsaModulusExponent { .. } => Err(Unverified),
    };
    match alg {
        Algorithm::RS256 => rsa(&s::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&s::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&s::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&s::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&s::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&s::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => raw(&s::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => raw(&s::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => raw(&s::ED25519),
        Algorithm::HS256 => hmac(ring::hmac::HMAC_SHA256),
        Algorithm::HS384 => hmac(ring::hmac::HMAC_SHA384),
        Algorithm::HS512 => hmac(ring::hmac::HMAC_SHA512),
        // An algorithm a later jsonwebtoken adds: not verified until it is added here.
        _ => Err(Unverified),
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// The bit length of an RSA key's modulus, for keys from a JWK (`None` for other keys).
pub fn rsa_modulus_bits(key: &DecodingKey) -> Option<usize> {
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => {
            let n = strip_zeros(n);
            let top = n.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
            Some(n.len().saturating_sub(1) * 8 + top)
        }
        DecodingKeyKind::SecretOrDer(_) => None,
    }
}

// === impl the jsonwebtoken provider ===

/// A [`JwtVerifier`] for one algorithm and key.
struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        verify_raw(self.alg, &self.key, msg, sig).map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    // The same refusal as the built-in providers: a key of another family never verifies
    // (an RSA public key used as an HMAC secret is the classic confusion).
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: key.clone(),
    }))
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

fn rsa_pub_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_private_key)(der)
}

fn rsa_pub_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(der)
}

fn ec_pub_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .ec_pub_components_from_private_key)(der, alg)
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, Error> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .ed_pub_components_from_private_key)(der, curve)
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    (rust_crypto::DEFAULT_PROVIDER.key_utils.compute_digest)(data, hash)
}

#[cfg(test)]
mod tests;
