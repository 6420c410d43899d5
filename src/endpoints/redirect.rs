//! Validation of `rd`, the place to return to after login or logout.
//!
//! Accepted: a path that starts with a single `/` (not `//`, not `/\`), with no backslash
//! or control character anywhere, also after percent-decoding (repeatedly); or an absolute
//! URL with exactly the origin of `server.public_url`. Anything else becomes `/`.

use percent_encoding::percent_decode_str;
use url::Url;

/// One layer of percent-decoding; None when a `%` is not followed by two hex digits, which
/// makes the path unsafe (`percent_decode_str` would pass such a `%` through unchanged).
fn percent_decode_once(s: &str) -> Option<String> {
    let well_formed = s.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_decode_str(s).decode_utf8_lossy().into_owned())
}

fn safe_path(p: &str) -> bool {
    let mut cur = p.to_owned();
    // Decode until nothing changes (bounded), checking every layer.
    for _ in 0..4 {
        if !cur.starts_with('/')
            || cur.starts_with("//")
            || cur.contains('\\')
            || cur.chars().any(|c| c.is_control())
        {
            return false;
        }
        match percent_decode_once(&cur) {
            Some(next) if next == cur => return true,
            Some(next) => cur = next,
            None => return false,
        }
    }
    false
}

/// The validated `rd`, or `/`.
pub fn validate(rd: Option<&str>, public_url: &Url) -> String {
    let Some(rd) = rd.map(str::trim).filter(|s| !s.is_empty()) else {
        return "/".to_owned();
    };
    if rd.starts_with('/') {
        return if safe_path(rd) {
            rd.to_owned()
        } else {
            "/".to_owned()
        };
    }
    if rd.contains('\\') || rd.chars().any(|c| c.is_control()) {
        return "/".to_owned();
    }
    match Url::parse(rd) {
        Ok(u)
            if u.origin() == public_url.origin()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            let mut path = u.path().to_owned();
            if let Some(q) = u.query() {
                path.push('?');
                path.push_str(q);
            }
            if safe_path(&path) {
                path
            } else {
                "/".to_owned()
            }
        }
        _ => "/".to_owned(),
    }
}

/// The value of a query parameter, percent-decoded (`+` is a space).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_and_same_origin_urls_pass() {
        let public = Url::parse("https://gw.example.com").expect("valid");
        let ok = [
            ("/", "/"),
            ("/app/page?x=1", "/app/page?x=1"),
            ("https://gw.example.com/a?b=c", "/a?b=c"),
            ("/a%20b", "/a%20b"),
        ];
        for (rd, want) in ok {
            assert_eq!(validate(Some(rd), &public), want, "{rd}");
        }
        let bad = [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "http://gw.example.com/",
            "https://gw.example.com:444/",
            "https://user@gw.example.com/",
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,x",
            "/a\r\nSet-Cookie: x",
            "/a%0d%0aSet-Cookie:x",
            "evil.example",
            "/%zz",
        ];
        for rd in bad {
            assert_eq!(validate(Some(rd), &public), "/", "{rd:?}");
        }
        assert_eq!(validate(None, &public), "/");
    }
}
