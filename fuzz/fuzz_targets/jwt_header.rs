//! Bearer tokens never panic the JWT code (`BearerValidator::inspect`, `check_offline`,
//! `oidc::jwt_payload`), and what they accept is consistent.
//!
//! The first byte picks a mode, the rest is its input:
//! - 0: the bytes as the token, as they are;
//! - 1: `base64url(header).base64url(payload).base64url(signature)` with the three parts
//!   split on `0xff`, so the fuzzer mutates the JSON itself;
//! - 2: header and claims assembled from choices the bytes make (`alg`, `typ`, `kid`,
//!   `crit`, duplicate members, `iss`, `aud`, `exp`, `nbf`, `typ` claim), so the checks
//!   behind the JSON parsers are reached on every run.
//!
//! What must hold: no panic; an accepted header's `alg` is one the validator allows; a
//! header it built without duplicate members or `crit` is refused for a disallowed `alg`
//! or `typ` and otherwise returns that `alg` and `kid`; `check_offline` accepts only what `inspect`
//! accepts, from the configured issuer, with an `exp`, and with the claims
//! `jwt_payload` reads from the same token.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::bearer::BearerValidator;
use portcullis::auth::oidc::jwt_payload;
use portcullis::config::{OidcSettings, TokenSettings};

const ISSUER: &str = "http://idp/realms/x";

/// Two configurations: RS256 only with an audience check, every asymmetric algorithm
/// without one. Each with the algorithms it allows.
static VALIDATORS: LazyLock<Vec<(BearerValidator, Vec<Algorithm>)>> = LazyLock::new(|| {
    let oidc = OidcSettings {
        issuer: ISSUER.into(),
        client_id: "gateway".into(),
        client_secret: None,
        scopes: vec!["openid".into()],
    };
    let configs = [
        (vec![Algorithm::RS256], vec!["gateway".to_owned()]),
        (
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
            ],
            Vec::new(),
        ),
    ];
    configs
        .into_iter()
        .map(|(algorithms, audiences)| {
            let tokens = TokenSettings {
                audiences,
                algorithms: algorithms.clone(),
                leeway: Duration::from_secs(30),
                roles_claims: Vec::new(),
                jwks_refresh: Duration::from_secs(300),
                cache_size: 0,
                introspection: false,
                introspection_ttl: std::time::Duration::from_secs(60),
                introspection_cache_size: 0,
                dpop: portcullis::config::DpopMode::Allow,
                issuers: Vec::new(),
            };
            (BearerValidator::new(&oidc, &tokens), algorithms)
        })
        .collect()
});

/// What the template mode put into the header, when it can be told.
#[derive(Default)]
struct Expect {
    /// `alg` as written, if a string (and no duplicate member muddles it).
    alg: Option<String>,
    /// `typ` as written, if a string.
    typ: Option<String>,
    kid: Option<String>,
    /// The header was written with a string `alg`, no duplicate members, no `crit` and
    /// no `null` parameter (each refused on purpose: a parameter of the wrong type is
    /// malformed).
    plain: bool,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn check(token: &str, expect: Option<&Expect>) {
    let _ = jwt_payload(token);
    for (v, allowed) in VALIDATORS.iter() {
        let inspected = v.inspect(token);
        if let Ok((alg, _)) = &inspected {
            assert!(allowed.contains(alg), "{alg:?} accepted");
        }
        if let Some(e) = expect.filter(|e| e.plain) {
            let alg_ok = e
                .alg
                .as_deref()
                .and_then(|a| a.parse::<Algorithm>().ok())
                .is_some_and(|a| allowed.contains(&a));
            let typ_ok = e.typ.as_deref().is_none_or(|t| {
                matches!(
                    t.to_ascii_lowercase().as_str(),
                    "jwt" | "at+jwt" | "application/at+jwt"
                )
            });
            match &inspected {
                Ok((alg, kid)) => {
                    assert!(alg_ok && typ_ok, "{:?}/{:?} accepted", e.alg, e.typ);
                    assert_eq!(Some(format!("{alg:?}")), e.alg);
                    assert_eq!(kid, &e.kid);
                }
                Err(err) => assert!(
                    !(alg_ok && typ_ok),
                    "{:?}/{:?} refused ({err}): {token}",
                    e.alg,
                    e.typ
                ),
            }
        }
        if let Ok(claims) = v.check_offline(token) {
            assert!(
                inspected.is_ok(),
                "check_offline accepts what inspect refuses"
            );
            assert_eq!(
                claims.get("iss").and_then(|i| i.as_str()),
                Some(ISSUER),
                "{claims:?}"
            );
            // A NumericDate is a JSON number: an integer or not (RFC 7519 §2).
            assert!(claims.get("exp").is_some_and(|e| e.is_number()));
            assert_eq!(jwt_payload(token).as_ref(), Some(&claims));
        }
    }
}

fn split_parts(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let header = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    let sig = parts.next().unwrap_or_default();
    check(
        &format!("{}.{}.{}", b64(header), b64(payload), b64(sig)),
        None,
    );
}

/// Reads choices and strings off the fuzz input.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    /// A string of up to 15 bytes, its length from the next byte.
    fn string(&mut self) -> String {
        let n = usize::from(self.byte() & 0x0f).min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

const ALGS: [&str; 14] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS512", "none", "rs256", "RS1",
];
const TYPS: [&str; 6] = ["JWT", "at+jwt", "application/at+jwt", "jwt", "JOSE", "ID"];
const NUMBERS: [&str; 10] = [
    "0",
    "-1",
    "1.5",
    "1e400",
    "4102444800",
    "18446744073709551615",
    "18446744073709551616",
    "9007199254740993",
    "\"4102444800\"",
    "null",
];

fn template(data: &[u8]) {
    let mut b = Bytes(data);
    let mut e = Expect::default();
    let mut header: Vec<String> = Vec::new();
    let mut dup = false;
    let mut null_typ = false;

    let a = b.byte();
    match a % 4 {
        0 | 1 => {
            let alg = match a % 2 {
                0 => ALGS[usize::from(a / 4) % ALGS.len()].to_owned(),
                _ => b.string(),
            };
            header.push(format!("\"alg\":{}", quote(&alg)));
            e.alg = Some(alg);
        }
        2 => header.push(format!(
            "\"alg\":{}",
            ["null", "256", "[\"RS256\"]"][usize::from(a / 4) % 3]
        )),
        _ => {}
    }
    let t = b.byte();
    match t % 4 {
        0 => {}
        1 => {
            let typ = TYPS[usize::from(t / 4) % TYPS.len()].to_owned();
            header.push(format!("\"typ\":{}", quote(&typ)));
            e.typ = Some(typ);
        }
        2 => {
            let typ = b.string();
            header.push(format!("\"typ\":{}", quote(&typ)));
            e.typ = Some(typ);
        }
        _ => {
            header.push("\"typ\":null".into());
            null_typ = true;
        }
    }
    let k = b.byte();
    if k & 1 != 0 {
        let kid = b.string();
        header.push(format!("\"kid\":{}", quote(&kid)));
        e.kid = Some(kid);
    }
    let c = b.byte();
    let crit = c % 5 != 0;
    match c % 5 {
        0 => {}
        1 => header.push("\"crit\":[\"b64\"]".into()),
        2 => header.push("\"crit\":[]".into()),
        3 => header.push(format!("\"crit\":[{}]", quote(&b.string()))),
        _ => header.push("\"crit\":\"exp\"".into()),
    }
    let d = b.byte();
    if d & 3 != 0 {
        // A second member of a name already there, with another value.
        let member = match d & 3 {
            1 => format!("\"alg\":{}", quote(ALGS[usize::from(d >> 2) % ALGS.len()])),
            2 => format!("\"typ\":{}", quote(TYPS[usize::from(d >> 2) % TYPS.len()])),
            _ => format!("\"kid\":{}", quote(&b.string())),
        };
        let at = usize::from(d >> 4) % (header.len() + 1);
        header.insert(at, member);
        dup = true;
    }
    // Shuffle by rotation, so member order varies too.
    let r = usize::from(b.byte());
    if !header.is_empty() {
        let n = r % header.len();
        header.rotate_left(n);
    }
    e.plain = !dup && !crit && !null_typ && e.alg.is_some();

    let mut claims: Vec<String> = Vec::new();
    let f = b.byte();
    match f % 3 {
        0 => claims.push(format!("\"iss\":{}", quote(ISSUER))),
        1 => claims.push(format!("\"iss\":{}", quote(&b.string()))),
        _ => {}
    }
    match (f / 3) % 4 {
        0 => claims.push("\"aud\":\"gateway\"".into()),
        1 => claims.push("\"aud\":[\"other\",\"gateway\"]".into()),
        2 => claims.push(format!("\"aud\":{}", quote(&b.string()))),
        _ => {}
    }
    let x = b.byte();
    if x & 0x80 == 0 {
        claims.push(format!(
            "\"exp\":{}",
            NUMBERS[usize::from(x) % NUMBERS.len()]
        ));
    }
    let n = b.byte();
    if n & 0x80 == 0 {
        claims.push(format!(
            "\"nbf\":{}",
            NUMBERS[usize::from(n) % NUMBERS.len()]
        ));
    }
    let y = b.byte();
    match y % 4 {
        0 => {}
        1 => claims.push("\"typ\":\"Bearer\"".into()),
        2 => claims.push(format!(
            "\"typ\":{}",
            quote(["ID", "Refresh", "Offline", "Logout", "id"][usize::from(y / 4) % 5])
        )),
        _ => claims.push(format!("\"typ\":{}", quote(&b.string()))),
    }
    // Whatever is left: the signature.
    let header = format!("{{{}}}", header.join(","));
    let claims = format!("{{{}}}", claims.join(","));
    let token = format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(claims.as_bytes()),
        b64(b.0)
    );
    check(&token, Some(&e));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check(&String::from_utf8_lossy(rest), None),
        1 => split_parts(rest),
        _ => template(rest),
    }
});
