#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use super::*;

/// One algorithm's keys: a signing key, its public key as the gateway holds it (from JWK
/// components), and the public key of another key pair of the same kind.
struct Keys {
    alg: Algorithm,
    signing: EncodingKey,
    public: DecodingKey,
    other: DecodingKey,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Signs with RustCrypto's provider (what the provider and the gateway's assertion use).
fn sign(k: &Keys, msg: &[u8]) -> Vec<u8> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&k.alg, &k.signing)
        .expect("signer")
        .try_sign(msg)
        .expect("sign")
}

/// The verdict of ring, by both ways in: [`verify`] and the provider's verifier.
fn ring_verdict(alg: Algorithm, key: &DecodingKey, msg: &[u8], sig: &[u8]) -> bool {
    let direct = verify(&b64(sig), msg, key, alg);
    let provider = (PROVIDER.verifier_factory)(&alg, key)
        .map(|v| v.verify(msg, &sig.to_vec()).is_ok())
        .unwrap_or(false);
    assert_eq!(direct, provider, "verify and the provider agree ({alg:?})");
    direct
}

/// The verdict of jsonwebtoken's RustCrypto provider.
fn rust_crypto_verdict(alg: Algorithm, key: &DecodingKey, msg: &[u8], sig: &[u8]) -> bool {
    (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&alg, key)
        .map(|v| v.verify(msg, &sig.to_vec()).is_ok())
        .unwrap_or(false)
}

fn ec(alg: Algorithm) -> (EncodingKey, DecodingKey) {
    let (signing, n) = match alg {
        Algorithm::ES256 => (&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, 32),
        _ => (&ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING, 48),
    };
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point[0], 4, "uncompressed");
    let public =
        DecodingKey::from_ec_components(&b64(&point[1..=n]), &b64(&point[n + 1..])).unwrap();
    // The JWK form is stored as the uncompressed point, which is what ring reads.
    match public.kind() {
        DecodingKeyKind::SecretOrDer(b) => assert_eq!(b.as_slice(), point),
        other => panic!("{other:?}"),
    }
    (EncodingKey::from_ec_der(pkcs8.as_ref()), public)
}

fn ed() -> (EncodingKey, DecodingKey) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public = DecodingKey::from_ed_components(&b64(pair.public_key().as_ref())).unwrap();
    (EncodingKey::from_ed_der(pkcs8.as_ref()), public)
}

#[cfg(feature = "test-util")]
mod rsa_keys {
    use super::*;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::traits::PublicKeyParts;

    /// A key pair: the signing key, the public key from JWK components and from PKCS#1 DER.
    pub fn rsa(bits: usize) -> (EncodingKey, DecodingKey, DecodingKey, rsa::RsaPublicKey) {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).unwrap();
        let public = private.to_public_key();
        let signing = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
        let components = DecodingKey::from_rsa_components(
            &b64(&public.n().to_bytes_be()),
            &b64(&public.e().to_bytes_be()),
        )
        .unwrap();
        let der = DecodingKey::from_rsa_der(public.to_pkcs1_der().unwrap().as_bytes());
        (signing, components, der, public)
    }
}

/// Keys for every algorithm, made once (RSA key generation is slow).
fn all_keys() -> &'static [Keys] {
    static KEYS: OnceLock<Vec<Keys>> = OnceLock::new();
    KEYS.get_or_init(|| {
        use Algorithm::*;
        let mut out = Vec::new();
        #[cfg(feature = "test-util")]
        {
            let (signing, public, _, _) = rsa_keys::rsa(2048);
            let (_, other, _, _) = rsa_keys::rsa(2048);
            for alg in [RS256, RS384, RS512, PS256, PS384, PS512] {
                out.push(Keys {
                    alg,
                    signing: signing.clone(),
                    public: public.clone(),
                    other: other.clone(),
                });
            }
        }
        for alg in [ES256, ES384] {
            let (signing, public) = ec(alg);
            let (_, other) = ec(alg);
            out.push(Keys {
                alg,
                signing,
                public,
                other,
            });
        }
        let (signing, public) = ed();
        let (_, other) = ed();
        out.push(Keys {
            alg: EdDSA,
            signing,
            public,
            other,
        });
        for alg in [HS256, HS384, HS512] {
            out.push(Keys {
                alg,
                signing: EncodingKey::from_secret(b"the shared secret of this test, 32+ bytes"),
                public: DecodingKey::from_secret(b"the shared secret of this test, 32+ bytes"),
                other: DecodingKey::from_secret(b"another secret of this test, 32+ bytes.."),
            });
        }
        out
    })
}

/// What is judged, with which key, message and signature, and the expected verdict.
type Case<'a> = (&'a str, &'a DecodingKey, &'a [u8], &'a [u8], bool);

#[test]
fn every_algorithm_verifies_a_good_signature_and_refuses_tampering_and_another_key() {
    let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    let keys = all_keys();
    #[cfg(feature = "test-util")]
    assert_eq!(keys.len(), 12);
    for k in keys {
        let sig = sign(k, msg);
        let mut bad_sig = sig.clone();
        bad_sig[sig.len() / 2] ^= 0x01;
        let mut bad_msg = msg.to_vec();
        bad_msg[10] ^= 0x20;
        let cases: [Case; 5] = [
            ("good", &k.public, msg, &sig, true),
            ("tampered signature", &k.public, msg, &bad_sig, false),
            ("tampered message", &k.public, &bad_msg, &sig, false),
            (
                "truncated signature",
                &k.public,
                msg,
                &sig[..sig.len() - 1],
                false,
            ),
            ("another key", &k.other, msg, &sig, false),
        ];
        for (what, key, m, s, expected) in cases {
            assert_eq!(
                ring_verdict(k.alg, key, m, s),
                expected,
                "{:?}: {what}",
                k.alg
            );
            assert_eq!(
                rust_crypto_verdict(k.alg, key, m, s),
                expected,
                "RustCrypto, {:?}: {what}",
                k.alg
            );
        }
        // As the gateway calls it: the base64url text of the signature.
        assert!(verify(&b64(&sig), msg, &k.public, k.alg));
        assert!(!verify("not base64url!", msg, &k.public, k.alg));
        assert!(!verify("", msg, &k.public, k.alg));
    }
}

#[test]
fn a_key_of_another_family_never_verifies() {
    let keys = all_keys();
    let msg = b"header.payload";
    for k in keys {
        let sig = sign(k, msg);
        for other in keys.iter().filter(|o| o.alg.family() != k.alg.family()) {
            // `k`'s signature, judged as if made by `other`'s algorithm with `k`'s key.
            assert!(!verify(&b64(&sig), msg, &k.public, other.alg));
            assert!((PROVIDER.verifier_factory)(&other.alg, &k.public).is_err());
        }
    }
    // An HMAC "secret" that is an EC public key (the HS256-with-the-public-key attack):
    // the key is of the HMAC family only if it was made as a secret.
    let ec_key = keys.iter().find(|k| k.alg == Algorithm::ES256).unwrap();
    assert!(!verify("AAAA", msg, &ec_key.public, Algorithm::HS256));
}

#[test]
fn the_provider_signs_like_rust_crypto_and_delegates_the_jwk_helpers() {
    let k = all_keys()
        .iter()
        .find(|k| k.alg == Algorithm::ES256)
        .unwrap();
    let signer = (PROVIDER.signer_factory)(&k.alg, &k.signing).unwrap();
    let sig = signer.try_sign(b"m").unwrap();
    assert!(ring_verdict(k.alg, &k.public, b"m", &sig));
    assert_eq!(
        (PROVIDER.key_utils.compute_digest)(b"abc", ThumbprintHash::SHA256).unwrap(),
        ring::digest::digest(&ring::digest::SHA256, b"abc").as_ref()
    );
}

#[cfg(feature = "test-util")]
#[test]
fn rsa_keys_under_2048_bits_are_refused_and_larger_ones_from_der_or_components_verify() {
    use rsa::traits::PublicKeyParts;
    let msg = b"header.payload";
    let (signing, components, der, public) = rsa_keys::rsa(1024);
    assert_eq!(rsa_modulus_bits(&components), Some(1024));
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let k = Keys {
            alg,
            signing: signing.clone(),
            public: components.clone(),
            other: der.clone(),
        };
        let sig = sign(&k, msg);
        // RustCrypto would accept it; ring (and so the gateway) does not.
        assert!(rust_crypto_verdict(alg, &components, msg, &sig));
        assert!(!ring_verdict(alg, &components, msg, &sig));
        assert!(!ring_verdict(alg, &der, msg, &sig));
    }

    let (signing, components, der, public2048) = rsa_keys::rsa(2048);
    assert_eq!(rsa_modulus_bits(&components), Some(2048));
    let k = Keys {
        alg: Algorithm::RS256,
        signing,
        public: components.clone(),
        other: der.clone(),
    };
    let sig = sign(&k, msg);
    assert!(ring_verdict(Algorithm::RS256, &der, msg, &sig));
    // A JWK whose `n` and `e` carry a leading zero octet (RFC 7518 forbids it; some
    // providers write it): the same key, so the same verdict.
    let mut n = vec![0u8];
    n.extend(public2048.n().to_bytes_be());
    let mut e = vec![0u8];
    e.extend(public2048.e().to_bytes_be());
    let padded = DecodingKey::from_rsa_raw_components(&n, &e);
    assert_eq!(rsa_modulus_bits(&padded), Some(2048));
    assert!(ring_verdict(Algorithm::RS256, &padded, msg, &sig));
    assert!(rust_crypto_verdict(Algorithm::RS256, &padded, msg, &sig));
    drop(public);
}

/// How a property case changes the signed input before it is judged.
#[derive(Debug, Clone)]
enum Tamper {
    None,
    SignatureBit(usize, u8),
    MessageBit(usize, u8),
    SignatureLength(usize),
    OtherKey,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        Just(Tamper::None),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Tamper::SignatureBit(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Tamper::MessageBit(i, b)),
        (0usize..4).prop_map(Tamper::SignatureLength),
        Just(Tamper::OtherKey),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// ring and RustCrypto give the same verdict on the same inputs, for every algorithm
    /// (2048-bit RSA keys: below that they differ by design).
    #[test]
    fn ring_judges_like_rust_crypto(
        which in any::<prop::sample::Index>(),
        msg in prop::collection::vec(any::<u8>(), 1..300),
        how in tamper(),
    ) {
        let keys = all_keys();
        let k = &keys[which.index(keys.len())];
        let mut sig = sign(k, &msg);
        let mut m = msg.clone();
        let mut key = &k.public;
        let expected = match how {
            Tamper::None => true,
            Tamper::SignatureBit(i, b) => {
                let n = sig.len();
                sig[i % n] ^= 1 << b;
                false
            }
            Tamper::MessageBit(i, b) => {
                let n = m.len();
                m[i % n] ^= 1 << b;
                false
            }
            Tamper::SignatureLength(cut) => {
                if cut == 0 {
                    sig.push(0);
                } else {
                    sig.truncate(sig.len() - cut);
                }
                false
            }
            Tamper::OtherKey => {
                key = &k.other;
                false
            }
        };
        let ring = ring_verdict(k.alg, key, &m, &sig);
        prop_assert_eq!(ring, rust_crypto_verdict(k.alg, key, &m, &sig), "{:?} {:?}", k.alg, how);
        prop_assert_eq!(ring, expected, "{:?} {:?}", k.alg, how);
    }
}
