//! Logins start on `public_url`'s host.
//!
//! The login-attempt cookie is set on the host the browser asked for, and the provider
//! sends the browser back to `<public_url><auth_prefix>/callback`. Cookies belong to a
//! host name, so when the two differ (the first run's classic: the gateway opened at
//! `http://127.0.0.1:8080` while `public_url` says `http://localhost:8080`) the callback
//! never sees the cookie and the login fails after the password. So a browser request that
//! would start a login while it asks for another host:port than `public_url`'s is first
//! sent, with a 302, to the same path and query on `public_url`'s origin, and the login
//! starts there.
//!
//! The host the browser asked for is a trusted proxy's `X-Forwarded-Host`, else the
//! request's authority ([`crate::authority`]). It decides only *whether* to redirect: the
//! target is always `public_url`'s origin followed by a path and query that pass `rd`
//! validation ([`super::redirect::validate`]), never a host taken from the request.
//!
//! A proxy in front that rewrites `Host` without sending `X-Forwarded-Host` (from an address
//! in `trusted_proxies`) makes every request look as if it were for another host, and the
//! redirect would loop. A short-lived marker cookie, bound to the target, breaks that loop
//! after one round trip: the login then starts where it is, as it did before, and a warning
//! in the log says what to fix.

use http::header::HeaderMap;
use http::Response;
use sha2::{Digest, Sha256};
use url::Url;

use super::redirect::validate;
use crate::auth::session::request_cookies;
use crate::context::RequestContext;
use crate::forward::{forwarded, headers::X_FORWARDED_HOST};
use crate::gateway::Runtime;
use crate::response::{redirect, Body};

/// How long the loop-breaking marker lives: long enough for one redirect to be followed,
/// short enough that a person who opens the wrong host again a little later is moved again.
const MARKER_MAX_AGE: u64 = 10;

/// The host (`host[:port]`) the browser asked for: a trusted proxy's `X-Forwarded-Host`
/// (its first value), else the request's own authority.
pub fn asked<'a>(
    rt: &Runtime,
    ctx: &RequestContext,
    authority: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Option<&'a str> {
    if forwarded::is_trusted(&rt.config.server.trusted_proxies, ctx.conn.peer.ip()) {
        if let Some(h) = forwarded_host(headers) {
            return Some(h);
        }
    }
    authority
}

/// The first value of `X-Forwarded-Host`, when it is a well-formed authority.
pub fn forwarded_host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&X_FORWARDED_HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| crate::authority::is_valid(v))
}

/// Is `asked` (`host[:port]`) `public_url`'s host and port? Letter case and a trailing dot
/// do not matter; a missing port is the default port of `public_url`'s scheme (so
/// `localhost` is not `http://localhost:8080`'s host and port).
pub fn is_public(asked: &str, public_url: &Url) -> bool {
    let (Some(public_host), Some(public_port)) =
        (public_url.host_str(), public_url.port_or_known_default())
    else {
        return false;
    };
    let (host, port) = match asked.rfind(':') {
        // `[::1]` has colons of its own; a port follows the closing bracket.
        Some(i) if !asked[i..].contains(']') => (&asked[..i], Some(&asked[i + 1..])),
        _ => (asked, None),
    };
    let port = match port {
        // The browser left out the default port of the scheme it used; behind a proxy the
        // gateway cannot see that scheme, so public_url's stands in for it.
        None if public_url.scheme() == "https" => 443,
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    port == public_port && host.eq_ignore_ascii_case(public_host)
}

/// The 302 that sends a browser which is about to log in on another host than
/// `public_url`'s to `target` (a path and query) on `public_url`'s origin; `None` when it
/// is on that host already (or its host is unknown), when it is no browser, when a rule
/// with a `host` decided the request, or when it was just sent here once already (the loop
/// a `Host`-rewriting proxy would make).
pub fn move_to_public(
    rt: &Runtime,
    ctx: &mut RequestContext,
    asked: Option<&str>,
    headers: &HeaderMap,
    target: &str,
) -> Option<Response<Body>> {
    let public_url = &rt.config.server.public_url;
    let asked = asked?;
    if !ctx.browser || is_public(asked, public_url) || rule_has_host(rt, ctx) {
        return None;
    }
    let settings = rt.session.as_ref()?.settings();
    let target = validate(Some(target), public_url);
    let marker_name = format!("{}_host", settings.cookie_name);
    let marker = marker_value(&target);
    if request_cookies(headers).get(marker_name.as_str()) == Some(marker.as_str()) {
        tracing::warn!(
            asked = %asked.escape_debug(),
            public_url = %public_url,
            "a browser asks for another host than server.public_url even after being sent to public_url: \
             a proxy in front probably rewrites Host; have it pass the browser's Host \
             (nginx: proxy_set_header Host $host) or send X-Forwarded-Host from an address in \
             server.trusted_proxies. The login starts here, and its cookie may not reach the callback"
        );
        return None;
    }
    let mut cookie =
        format!("{marker_name}={marker}; Path=/; Max-Age={MARKER_MAX_AGE}; HttpOnly; SameSite=Lax");
    if settings.secure {
        cookie.push_str("; Secure");
    }
    ctx.set_cookies.push(cookie);
    ctx.reason = "login_on_public_url";
    let origin = public_url.origin().ascii_serialization();
    Some(redirect(&format!("{origin}{target}")))
}

/// Did a rule with a `host` decide the request? Then the host the browser asked for is
/// meant, and moving it to `public_url`'s host would change which rules apply.
fn rule_has_host(rt: &Runtime, ctx: &RequestContext) -> bool {
    ctx.rule.is_some_and(|i| {
        rt.config
            .rules
            .rules()
            .iter()
            .any(|r| r.index == i && r.host.is_some())
    })
}

/// The marker's value: a short hash of the target, so that it stops only a loop to the
/// same place, never a later login on another path.
fn marker_value(target: &str) -> String {
    let digest = Sha256::digest(target.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_compared_with_public_url() {
        let public = Url::parse("http://localhost:8080").expect("valid");
        for same in ["localhost:8080", "LOCALHOST:8080", "localhost.:8080"] {
            assert!(is_public(same, &public), "{same}");
        }
        for other in [
            "127.0.0.1:8080",
            "localhost",
            "localhost:80",
            "localhost:08080x",
            "[::1]:8080",
            "evil.example:8080",
            "localhost.evil.example:8080",
        ] {
            assert!(!is_public(other, &public), "{other}");
        }
        let https = Url::parse("https://gw.example.com").expect("valid");
        assert!(is_public("gw.example.com", &https));
        assert!(is_public("gw.example.com:443", &https));
        assert!(!is_public("gw.example.com:80", &https));
        let v6 = Url::parse("http://[::1]:8080").expect("valid");
        assert!(is_public("[::1]:8080", &v6));
        assert!(!is_public("[::1]", &v6));
        assert!(!is_public("[::2]:8080", &v6));
    }

    #[test]
    fn the_marker_is_bound_to_the_target() {
        assert_eq!(marker_value("/a?b"), marker_value("/a?b"));
        assert_ne!(marker_value("/a?b"), marker_value("/a?c"));
        assert_eq!(marker_value("/").len(), 16);
    }
}
