//! `X-Forwarded-*` and `trusted_proxies`.
//!
//! From a client outside `trusted_proxies`, every forwarding header (`X-Forwarded-*`,
//! `Forwarded`, `X-Real-IP` and the rest of [`super::headers`]' owned table, in every
//! spelling) is dropped before this runs, and the gateway writes its own. From a trusted
//! proxy the incoming canonical values are kept and the peer address is appended to
//! `X-Forwarded-For`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderValue};
use ipnet::IpNet;

use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};

/// Is `peer` one of the configured trusted proxies?
pub fn is_trusted(trusted: &[IpNet], peer: IpAddr) -> bool {
    crate::config::peer_in(trusted, peer)
}

/// Rewrites the forwarding headers for the upstream request; `peer` is the client's
/// address as text.
pub fn apply(
    headers: &mut HeaderMap,
    peer: &str,
    trusted: bool,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    // Client copies (and, from a trusted proxy, non-canonical spellings) are already gone:
    // `HeaderPlan::strip_owned` ran first. What is left came from a trusted proxy.
    let mut chain = String::new();
    for prior in headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        chain.push_str(prior);
        chain.push_str(", ");
    }
    let value = if chain.is_empty() {
        HeaderValue::from_str(peer)
    } else {
        chain.push_str(peer);
        HeaderValue::from_str(&chain)
    };
    if let Ok(v) = value {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(h) = host.or_else(|| headers.get(header::HOST).cloned()) {
            headers.insert(X_FORWARDED_HOST, h);
        }
    }
}
