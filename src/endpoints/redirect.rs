//! Validation of `rd`, the place to return to after login or logout.
//!
//! Accepted: a path that starts with a single `/` (not `//`, not `/\`), with no backslash
//! or control character anywhere, also after percent-decoding (repeatedly); or an absolute
//! URL with exactly the origin of `server.public_url`. Anything else becomes `/`.

use url::Url;

fn percent_decode_once(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
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
