//! Every header the gateway strips or sets, and the rules for doing so.
//!
//! The gateway owns families of headers: the identity headers it sets, the forwarding
//! headers it sets or judges (`X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the other
//! client-address and original-URL headers frameworks read), and the method overrides.
//! CGI, PHP, WSGI and Rack fold `-`, `_` and `.` into one name and ignore case, so a family
//! is owned in every such spelling: `OWNED` is the one table, and
//! [`HeaderPlan::strip_owned`] the one pass that removes client copies before the gateway
//! sets its own. Hop-by-hop headers and anything named in `Connection` are removed before
//! that, so `Connection: X-Auth-User` can never remove a header the gateway sets.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::assertion::{Signer, Subject};
use crate::auth::Identity;
use crate::claims;
use crate::config::HeaderSettings;
pub use crate::header_names::*;

/// What [`HeaderPlan::strip_owned`] removed, for the debug log.
#[derive(Debug, Default)]
pub struct Stripped {
    pub identity: Vec<HeaderName>,
    pub forwarding: Vec<HeaderName>,
    pub method_overrides: Vec<HeaderName>,
}

impl Stripped {
    pub fn is_empty(&self) -> bool {
        self.identity.is_empty() && self.forwarding.is_empty() && self.method_overrides.is_empty()
    }
}

/// The request-side header plan, computed once per configuration.
#[derive(Debug, Clone)]
pub struct HeaderPlan {
    pub settings: HeaderSettings,
    /// Spelling keys of every identity header, for stripping.
    strip: Vec<String>,
    /// `<cookie_name>`: that cookie and every `<cookie_name>_*` belongs to the gateway.
    cookie_name: String,
    /// Unique per plan: the identity headers an identity keeps are this plan's.
    id: u64,
}

impl HeaderPlan {
    pub fn new(settings: HeaderSettings, cookie_name: String) -> Self {
        let strip = settings
            .identity_names()
            .map(|n| spelling_key(n.as_str()))
            .collect();
        static PLANS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        HeaderPlan {
            settings,
            strip,
            cookie_name,
            id: PLANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Is this cookie one of the gateway's own (never forwarded)? PHP reads `.` and ` `
    /// in cookie names as `_`, so `portcullis.1` counts as `portcullis_1`.
    pub fn is_gateway_cookie(&self, name: &str) -> bool {
        let own = self.cookie_name.as_bytes();
        let n = name.as_bytes();
        let fold = |b: u8| if b == b'.' || b == b' ' { b'_' } else { b };
        n.len() >= own.len()
            && n.iter().zip(own).all(|(a, b)| fold(*a) == fold(*b))
            && (n.len() == own.len() || fold(n[own.len()]) == b'_')
    }

    /// The one stripping pass: removes every client-supplied copy of a header the gateway
    /// owns, in any spelling. Identity headers and method overrides always go; forwarding
    /// headers stay only when `trusted_peer` and in their canonical spelling (a proxy
    /// writes `X-Forwarded-For`, never `X_Forwarded_For`, which only a client behind it
    /// could have sent).
    pub fn strip_owned(&self, headers: &mut HeaderMap, trusted_peer: bool) -> Stripped {
        let mut out = Stripped::default();
        for k in headers.keys() {
            let name = k.as_str();
            if self.strip.iter().any(|s| same_spelling(name, s)) {
                out.identity.push(k.clone());
                continue;
            }
            match owned_family(name) {
                Some(Family::MethodOverride) => out.method_overrides.push(k.clone()),
                Some(Family::Forwarding) if !trusted_peer || !is_canonical(name) => {
                    out.forwarding.push(k.clone())
                }
                _ => {}
            }
        }
        for name in out
            .identity
            .iter()
            .chain(&out.forwarding)
            .chain(&out.method_overrides)
        {
            headers.remove(name);
        }
        out
    }

    /// Removes the gateway's cookies from `Cookie`, keeping the others in order.
    pub fn strip_gateway_cookies(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::COOKIE) {
            return;
        }
        let mut kept = String::new();
        // Pairs without `=` or with an empty name, and headers that are not UTF-8, are
        // dropped too.
        for (name, _, pair) in crate::auth::session::request_cookie_pairs(headers) {
            if !self.is_gateway_cookie(name) {
                if !kept.is_empty() {
                    kept.push_str("; ");
                }
                kept.push_str(pair);
            }
        }
        headers.remove(header::COOKIE);
        if !kept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&kept) {
                headers.insert(header::COOKIE, v);
            }
        }
    }

    /// Sets the identity headers from a credential. `bearer` is true when the request
    /// carried the token in `Authorization` (then that header passes unchanged).
    ///
    /// A value is never split into two: a role containing `,`, a scope containing white
    /// space, an element of a claim list containing `,`, or any value with a control
    /// character is left out of its header, with a warning (once per cached identity).
    ///
    /// The headers are built once per identity and kept with it: a cached token or
    /// session costs one insert per header.
    pub fn set_identity(&self, headers: &mut HeaderMap, id: &Identity) {
        let build = || self.identity_headers(id);
        match id.headers.get_or_build(self.id, build) {
            Some(built) => {
                for (name, value) in built {
                    headers.insert(name.clone(), value.clone());
                }
            }
            None => {
                for (name, value) in self.identity_headers(id) {
                    headers.insert(name, value);
                }
            }
        }
    }

    /// The identity headers of `id`, in the order they are set.
    fn identity_headers(&self, id: &Identity) -> Vec<(HeaderName, HeaderValue)> {
        let s = &self.settings;
        let mut out = Vec::new();
        let mut set = |name: &Option<HeaderName>, value: Option<&str>| {
            if let (Some(n), Some(v)) = (name, value) {
                if has_control(v) {
                    left_out(n, &id.subject);
                } else if let Ok(hv) = HeaderValue::from_bytes(v.as_bytes()) {
                    out.push((n.clone(), hv));
                }
            }
        };
        set(&s.user, Some(id.user()));
        set(&s.email, id.email.as_deref());
        set(&s.subject, Some(&id.subject));
        if let Some(n) = &s.roles {
            set(&s.roles, Some(&join_list(n, &id.subject, &id.roles, ',')));
        }
        if let Some(n) = &s.scopes {
            set(&s.scopes, Some(&join_list(n, &id.subject, &id.scopes, ' ')));
        }
        if let (Some(name), Some(token)) = (&s.access_token, id.access_token.as_deref()) {
            if *name == header::AUTHORIZATION {
                if !id.from_bearer {
                    if let Ok(hv) = HeaderValue::from_str(&format!("Bearer {token}")) {
                        out.push((header::AUTHORIZATION, hv));
                    }
                }
            } else if let Ok(hv) = HeaderValue::from_str(token) {
                out.push((name.clone(), hv));
            }
        }
        for (name, path) in &s.claims {
            let text = match path.lookup(&id.claims) {
                Some(serde_json::Value::Array(items)) => {
                    let parts: Vec<String> = items.iter().filter_map(claims::header_text).collect();
                    Some(join_list(name, &id.subject, &parts, ','))
                }
                Some(v) => claims::header_text(v),
                None => None,
            };
            if let Some(text) = text {
                if has_control(&text) {
                    left_out(name, &id.subject);
                } else if let Ok(hv) = HeaderValue::from_bytes(text.as_bytes()) {
                    out.push((name.clone(), hv));
                }
            }
        }
        out
    }
}

// === impl HeaderPlan: assertion ===

impl HeaderPlan {
    /// Sets `headers.assertion` to the signed assertion about `id` for the upstream whose
    /// origin is `audience` (a client's copy was removed with the identity headers).
    pub fn set_assertion(
        &self,
        headers: &mut HeaderMap,
        id: &Identity,
        signer: &Signer,
        audience: &str,
    ) {
        let Some(name) = &self.settings.assertion else {
            return;
        };
        let who = Subject {
            sub: &id.subject,
            email: id.email.as_deref(),
            user: id.user(),
            roles: &id.roles,
        };
        if let Some(v) = signer.assertion(&who, audience) {
            headers.insert(name.clone(), v);
        }
    }
}

/// A control character (C0, DEL), which no identity header value may carry.
fn has_control(v: &str) -> bool {
    v.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The list's items joined by `sep`, leaving out any item that contains `sep`, white
/// space where `sep` is a space, or a control character.
fn join_list<S: AsRef<str>>(name: &HeaderName, subject: &str, items: &[S], sep: char) -> String {
    let mut out = String::new();
    for item in items {
        let item = item.as_ref();
        let splits = item.contains(sep)
            || (sep == ' ' && item.chars().any(char::is_whitespace))
            || item.is_empty();
        if splits || has_control(item) {
            left_out(name, subject);
            continue;
        }
        if !out.is_empty() {
            out.push(sep);
        }
        out.push_str(item);
    }
    out
}

fn left_out(name: &HeaderName, subject: &str) {
    tracing::warn!(
        header = %name,
        subject = %subject.escape_debug(),
        "an identity value would split or corrupt its header; left out"
    );
}

/// Removes the credential a request carries in headers (`Authorization`, a `DPoP` proof),
/// for a request forwarded without its credential being judged (a CORS preflight). The
/// gateway's cookies are removed from every request anyway.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(DPOP);
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

/// Where a name (as `HeaderName` spells it: lower case) stands in [`HOP_BY_HOP`].
fn hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    })
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One array for every call (a `const` array of names would be built and dropped at
    // each use).
    static HOP: [HeaderName; 9] = HOP_BY_HOP;
    // Usually there are none, or only `Connection: keep-alive`: one pass over the few
    // headers present finds which hop-by-hop names are there, and only those are removed.
    let mut present = [false; 9];
    let mut any = false;
    for k in headers.keys() {
        if let Some(i) = hop_index(k.as_str()) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    // The other headers `Connection` names (a hop-by-hop name is removed below anyway),
    // read from the bytes: a value that is not text still names the tokens it can.
    let mut named: SmallVec<[HeaderName; 2]> = SmallVec::new();
    if present[0] {
        for v in headers.get_all(header::CONNECTION) {
            for t in v.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                let hop = HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str().as_bytes()));
                if t.is_empty() || hop {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t) {
                    named.push(n);
                }
            }
        }
    }
    for n in named {
        headers.remove(n);
    }
    for (n, here) in HOP.iter().zip(present) {
        if here {
            headers.remove(n);
        }
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
    fn hop_index_knows_every_hop_by_hop_name_and_no_other() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(n.as_str()), Some(i), "{n}");
        }
        for n in [
            "host",
            "connections",
            "x-connection",
            "t",
            "upgrade-insecure-requests",
        ] {
            assert_eq!(hop_index(n), None, "{n}");
        }
    }

    #[test]
    fn connection_tokens_are_read_in_any_case_and_spacing() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive ,\tX-A"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static(",, x-b,TE"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-c, \xff").unwrap(),
        );
        for n in ["x-a", "x-b", "x-c", "keep-alive", "te", "x-d"] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-d"]);
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
