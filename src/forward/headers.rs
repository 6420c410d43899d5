//! Every header the gateway strips or sets, and the rules for doing so.
//!
//! Identity headers are stripped in every spelling a server might fold to the same name
//! (`X-Auth-User`, `x_auth_user`, `X.Auth.User`), hop-by-hop headers and anything named in
//! `Connection` are removed before the gateway sets its own, so `Connection: X-Auth-User`
//! can never remove a header the gateway sets.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::claims;
use crate::auth::Identity;
use crate::config::HeaderSettings;

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

/// Headers that ask a framework to treat the request as another method.
pub const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Headers an identity header must never be configured as.
pub fn is_reserved(h: &HeaderName) -> bool {
    HOP_BY_HOP.contains(h)
        || METHOD_OVERRIDES.contains(h)
        || [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::COOKIE,
            header::SET_COOKIE,
            header::AUTHORIZATION,
            header::ORIGIN,
            FORWARDED,
            X_REAL_IP,
        ]
        .contains(h)
        || h.as_str().starts_with("x-forwarded-")
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
fn same_spelling(a: &str, folded: &str) -> bool {
    a.len() == folded.len()
        && a.bytes().zip(folded.bytes()).all(|(x, y)| {
            let x = match x {
                b'_' | b'.' => b'-',
                x => x.to_ascii_lowercase(),
            };
            x == y
        })
}

/// Every identity header name that is configured (the access-token header only when it is
/// not `Authorization`, which is handled on its own).
pub fn identity_names(h: &HeaderSettings) -> impl Iterator<Item = &HeaderName> {
    [
        &h.user,
        &h.email,
        &h.subject,
        &h.roles,
        &h.scopes,
        &h.access_token,
    ]
    .into_iter()
    .flatten()
    .filter(|n| **n != header::AUTHORIZATION)
    .chain(h.claims.iter().map(|(n, _)| n))
}

/// The request-side header plan, computed once per configuration.
#[derive(Debug, Clone)]
pub struct HeaderPlan {
    pub settings: HeaderSettings,
    /// Spelling keys of every identity header, for stripping.
    strip: Vec<String>,
    /// `<cookie_name>`: that cookie and every `<cookie_name>_*` belongs to the gateway.
    cookie_name: String,
}

impl HeaderPlan {
    pub fn new(settings: HeaderSettings, cookie_name: String) -> Self {
        let strip = identity_names(&settings)
            .map(|n| spelling_key(n.as_str()))
            .collect();
        HeaderPlan {
            settings,
            strip,
            cookie_name,
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Is this cookie one of the gateway's own (never forwarded)?
    pub fn is_gateway_cookie(&self, name: &str) -> bool {
        name == self.cookie_name
            || (name.len() > self.cookie_name.len()
                && name.starts_with(&self.cookie_name)
                && name.as_bytes().get(self.cookie_name.len()) == Some(&b'_'))
    }

    /// Removes every client-supplied copy of an identity header; returns the names removed.
    pub fn strip_identity(&self, headers: &mut HeaderMap) -> Vec<HeaderName> {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.strip.iter().any(|s| same_spelling(k.as_str(), s)))
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
        doomed
    }

    /// Removes the gateway's cookies from `Cookie`, keeping the others in order.
    pub fn strip_gateway_cookies(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::COOKIE) {
            return;
        }
        let mut kept: Vec<&str> = Vec::new();
        let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
        for v in &values {
            let Ok(s) = std::str::from_utf8(v.as_bytes()) else {
                continue;
            };
            for pair in s.split(';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let name = pair.split('=').next().unwrap_or(pair).trim();
                if !self.is_gateway_cookie(name) {
                    kept.push(pair);
                }
            }
        }
        let joined = kept.join("; ");
        headers.remove(header::COOKIE);
        if !joined.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&joined) {
                headers.insert(header::COOKIE, v);
            }
        }
    }

    /// Sets the identity headers from a credential. `bearer` is true when the request
    /// carried the token in `Authorization` (then that header passes unchanged).
    pub fn set_identity(&self, headers: &mut HeaderMap, id: &Identity) {
        let s = &self.settings;
        let mut set = |name: &Option<HeaderName>, value: Option<&str>| {
            if let (Some(n), Some(v)) = (name, value) {
                if let Ok(hv) = HeaderValue::from_bytes(v.as_bytes()) {
                    headers.insert(n.clone(), hv);
                }
            }
        };
        set(&s.user, Some(id.user()));
        set(&s.email, id.email.as_deref());
        set(&s.subject, Some(&id.subject));
        set(&s.roles, Some(&id.roles.join(",")));
        set(&s.scopes, Some(&id.scopes.join(" ")));
        if let (Some(name), Some(token)) = (&s.access_token, id.access_token.as_deref()) {
            if *name == header::AUTHORIZATION {
                if !id.from_bearer {
                    if let Ok(hv) = HeaderValue::from_str(&format!("Bearer {token}")) {
                        headers.insert(header::AUTHORIZATION, hv);
                    }
                }
            } else if let Ok(hv) = HeaderValue::from_str(token) {
                headers.insert(name.clone(), hv);
            }
        }
        for (name, path) in &s.claims {
            if let Some(text) = path.lookup(&id.claims).and_then(claims::header_text) {
                if let Ok(hv) = HeaderValue::from_bytes(text.as_bytes()) {
                    headers.insert(name.clone(), hv);
                }
            }
        }
    }
}

/// Is this a WebSocket upgrade request (`Connection: upgrade` + `Upgrade: websocket`)?
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade_ws = headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .map(|s| s.trim().eq_ignore_ascii_case("websocket"))
            .unwrap_or(false)
    });
    upgrade_ws && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the few headers present is cheaper than a
    // look-up per hop-by-hop name. (`Connection` is one of them, so headers it names are
    // only ever looked for when it is there.)
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Removes `X-HTTP-Method-Override` and its relatives.
pub fn strip_method_overrides(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| METHOD_OVERRIDES.contains(k)) {
        return;
    }
    for n in &METHOD_OVERRIDES {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_fold_together() {
        assert!(same_spelling("x_auth_user", "x-auth-user"));
        assert!(same_spelling("x.auth.user", "x-auth-user"));
        assert!(same_spelling("X-AUTH_user", "x-auth-user"));
        assert!(!same_spelling("x-auth-users", "x-auth-user"));
        assert_eq!(spelling_key("X_Auth.User"), "x-auth-user");
    }

    #[test]
    fn connection_named_headers_and_hop_by_hop_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Foo"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-bar", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-bar"));
    }
}
