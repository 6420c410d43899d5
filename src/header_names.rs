//! The names of the headers the gateway owns or reads, and which of them a configuration
//! may never use for an identity header. At the bottom of the crate's dependency graph:
//! configuration checks, header rewriting, forward-auth and responses all read it.
//!
//! The gateway owns families of headers: the forwarding headers it sets or judges
//! (`X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the other client-address and
//! original-URL headers frameworks read), and the method overrides. CGI, PHP, WSGI and Rack
//! fold `-`, `_` and `.` into one name and ignore case, so a family is owned in every such
//! spelling: `OWNED` is the one table.

use http::header::{self, HeaderName};

pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// RFC 9449 proof of possession, beside `Authorization: DPoP <token>`.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
pub const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
/// On forward-auth's 401 for a browser that may log in: where to send it to log in.
pub const X_PORTCULLIS_LOGIN: HeaderName = HeaderName::from_static("x-portcullis-login");

/// RFC 9110 §7.6.1 connection-specific headers (plus the de-facto `Proxy-Connection`).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A family of headers the gateway owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Client address, scheme, host, port, prefix, original URL: honoured only from
    /// `trusted_proxies`, and only in their canonical spelling.
    Forwarding,
    /// `X-HTTP-Method-Override` and its relatives: never forwarded.
    MethodOverride,
}

/// How a table entry matches a folded header name.
#[derive(Debug, Clone, Copy)]
enum Match {
    Exact(&'static str),
    Prefix(&'static str),
}

/// The headers the gateway owns besides the configured identity headers, as spelling
/// keys (lower case, `_` and `.` folded to `-`).
const OWNED: &[(Match, Family)] = &[
    (Match::Prefix("x-forwarded-"), Family::Forwarding),
    (Match::Exact("forwarded"), Family::Forwarding),
    (Match::Exact("x-real-ip"), Family::Forwarding),
    (Match::Exact("x-client-ip"), Family::Forwarding),
    (Match::Exact("client-ip"), Family::Forwarding),
    (Match::Exact("true-client-ip"), Family::Forwarding),
    (Match::Exact("x-cluster-client-ip"), Family::Forwarding),
    (Match::Exact("cf-connecting-ip"), Family::Forwarding),
    (Match::Exact("fastly-client-ip"), Family::Forwarding),
    (Match::Exact("x-url-scheme"), Family::Forwarding),
    (Match::Exact("front-end-https"), Family::Forwarding),
    // Read by Symfony, Zend/Laminas and IIS as the path actually requested: a way around
    // a path rule if a client could set them.
    (Match::Exact("x-original-url"), Family::Forwarding),
    (Match::Exact("x-rewrite-url"), Family::Forwarding),
    (Match::Exact("x-original-uri"), Family::Forwarding),
    (Match::Exact("x-original-method"), Family::Forwarding),
    (Match::Exact("x-original-host"), Family::Forwarding),
    (
        Match::Exact("x-http-method-override"),
        Family::MethodOverride,
    ),
    (Match::Exact("x-http-method"), Family::MethodOverride),
    (Match::Exact("x-method-override"), Family::MethodOverride),
];

/// The family a header name belongs to, in any spelling.
pub fn owned_family(name: &str) -> Option<Family> {
    // Every name in `OWNED` starts with one of these: most headers are passed over here.
    let first = name.as_bytes().first().map(u8::to_ascii_lowercase);
    if !matches!(first, Some(b'x' | b'f' | b'c' | b't')) {
        return None;
    }
    OWNED.iter().find_map(|(m, f)| {
        let hit = match m {
            Match::Exact(k) => same_spelling(name, k),
            Match::Prefix(p) => name.len() > p.len() && same_spelling(&name[..p.len()], p),
        };
        hit.then_some(*f)
    })
}

/// A spelling with `_` or `.`: never how a proxy writes the headers it owns.
pub fn is_canonical(name: &str) -> bool {
    !name.bytes().any(|b| b == b'_' || b == b'.')
}

/// Headers an identity header must never be configured as (in any spelling).
pub fn is_reserved(h: &HeaderName) -> bool {
    let folded = spelling_key(h.as_str());
    HOP_BY_HOP.iter().any(|n| n.as_str() == folded)
        || owned_family(&folded).is_some()
        || [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::COOKIE,
            header::SET_COOKIE,
            header::AUTHORIZATION,
            header::ORIGIN,
            header::UPGRADE,
        ]
        .iter()
        .any(|n| n.as_str() == folded)
}

/// Folds a header name to the form that servers which map `_` and `.` to `-` would see.
pub fn spelling_key(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// `a` (any spelling) names the same header as `folded` (already a spelling key).
pub fn same_spelling(a: &str, folded: &str) -> bool {
    a.len() == folded.len()
        && a.bytes().zip(folded.bytes()).all(|(x, y)| {
            let x = match x {
                b'_' | b'.' => b'-',
                x => x.to_ascii_lowercase(),
            };
            x == y
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_owned_name_is_found_in_every_spelling() {
        for (m, family) in OWNED {
            let name = match m {
                Match::Exact(k) => k.to_string(),
                Match::Prefix(p) => format!("{p}for"),
            };
            let spellings = [
                name.clone(),
                name.to_ascii_uppercase(),
                name.replace('-', "_"),
                name.replace('-', "."),
            ];
            for s in spellings {
                assert_eq!(owned_family(&s), Some(*family), "{s}");
            }
        }
        for s in [
            "host",
            "accept",
            "content-type",
            "x-forwarded-",
            "forwarded-x",
            "",
        ] {
            assert_eq!(owned_family(s), None, "{s}");
        }
    }
}
