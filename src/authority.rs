//! Which host a request is for, and refusing every ambiguous way of saying it.
//!
//! RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or with more than one, is a 400. An
//! absolute-form target carries its own authority, and RFC 9113 §8.3.1 lets HTTP/2 carry
//! both `:authority` and `Host`; a proxy that picked one while the upstream read the other
//! would route by one host and be judged by another, so where both are present they must
//! agree (case-insensitively, a default port counting as absent). The authority itself
//! must be `host[:port]` (RFC 9110 §4.2.3, §7.2): no userinfo (`a@b`), no white space,
//! no path or other delimiters, a numeric port. Anything else is a 400, never forwarded,
//! never echoed in `X-Forwarded-Host`.

use http::header::{HeaderMap, HOST};
use http::{Uri, Version};

/// Why a request's authority was refused. The text is the client's error description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("more than one Host header")]
    TwoHosts,
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    #[error("invalid Host header")]
    Invalid,
    #[error("the Host header disagrees with the request target's authority")]
    Disagree,
}

impl AuthorityError {
    /// The fixed text told to the client.
    pub fn describe(&self) -> &'static str {
        match self {
            AuthorityError::TwoHosts => "more than one Host header",
            AuthorityError::MissingHost => "an HTTP/1.1 request needs a Host header",
            AuthorityError::Invalid => "invalid Host header",
            AuthorityError::Disagree => {
                "the Host header disagrees with the request target's authority"
            }
        }
    }
}

/// The authority the request is for: the URI's (HTTP/2 `:authority` or an absolute-form
/// target), else `Host`. `Ok(None)` only for HTTP/1.0 without `Host`.
pub fn request_authority<'a>(
    version: Version,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Result<Option<&'a str>, AuthorityError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::TwoHosts);
    }
    let host = match host {
        None => None,
        Some(v) => {
            let s = std::str::from_utf8(v.as_bytes()).map_err(|_| AuthorityError::Invalid)?;
            if !is_valid(s) {
                return Err(AuthorityError::Invalid);
            }
            Some(s)
        }
    };
    let default_port = match uri.scheme_str() {
        Some("https") => "443",
        _ => "80",
    };
    if let Some(a) = uri.authority() {
        let a = a.as_str();
        if !is_valid(a) {
            return Err(AuthorityError::Invalid);
        }
        if let Some(h) = host {
            if !same(a, h, default_port) {
                return Err(AuthorityError::Disagree);
            }
        }
        return Ok(Some(a));
    }
    match host {
        None if version == Version::HTTP_11 || version == Version::HTTP_2 => {
            Err(AuthorityError::MissingHost)
        }
        other => Ok(other),
    }
}

/// `host[:port]` with a reg-name, IPv4 or bracketed IPv6 host and a numeric port.
pub fn is_valid(a: &str) -> bool {
    let (host, port) = match a.strip_prefix('[') {
        Some(rest) => {
            let Some((ip, after)) = rest.split_once(']') else {
                return false;
            };
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after {
                "" => return true,
                p => match p.strip_prefix(':') {
                    Some(port) => ("[v6]", port),
                    None => return false,
                },
            }
        }
        None => match a.split_once(':') {
            Some((h, p)) => (h, p),
            None => (a, ""),
        },
    };
    let port_ok = (a.len() == host.len() && !a.contains(':'))
        || (!port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok());
    let host_ok = host == "[v6]"
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
    host_ok && port_ok
}

/// The same authority, ignoring case and a default port.
fn same(a: &str, b: &str, default_port: &str) -> bool {
    let norm = |x: &str| -> String {
        let x = x.to_ascii_lowercase();
        match x.rsplit_once(':') {
            Some((h, p)) if p == default_port && !h.ends_with(':') => h.to_owned(),
            _ => x,
        }
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn valid_and_invalid_authorities() {
        for a in [
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "a-b.c_d~e",
            "localhost:0",
        ] {
            assert!(is_valid(a), "{a}");
        }
        for a in [
            "",
            "user@example.com",
            "user:pw@example.com",
            "a@b",
            "@example.com",
            "example.com:",
            "example.com:80:80",
            "example.com:http",
            "example.com:123456",
            "example.com:65536",
            "example.com/path",
            "example.com?x",
            "example.com#x",
            " example.com",
            "example.com ",
            "exa mple.com",
            "example.com\t",
            "[::1",
            "[::1]x",
            "[example.com]",
            "[::1]:",
            "ex%61mple.com",
            "example.com,evil.example",
            "example.com\\evil",
        ] {
            assert!(!is_valid(a), "{a:?}");
        }
    }

    fn check(
        version: Version,
        uri: &str,
        hosts: &[&str],
    ) -> Result<Option<String>, AuthorityError> {
        let uri: Uri = uri.parse().unwrap();
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, HeaderValue::from_str(v).unwrap());
        }
        request_authority(version, &uri, &h).map(|o| o.map(str::to_owned))
    }

    #[test]
    fn host_and_target_must_agree() {
        use AuthorityError::*;
        let v11 = Version::HTTP_11;
        assert_eq!(
            check(v11, "/x", &["a.example"]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(check(v11, "/x", &[]), Err(MissingHost));
        assert_eq!(check(Version::HTTP_10, "/x", &[]), Ok(None));
        assert_eq!(check(v11, "/x", &["a", "b"]), Err(TwoHosts));
        assert_eq!(check(v11, "/x", &["a", "a"]), Err(TwoHosts));
        assert_eq!(check(v11, "/x", &["u@a.example"]), Err(Invalid));
        assert_eq!(
            check(v11, "http://a.example/x", &["a.example"]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            check(v11, "http://a.example/x", &["A.EXAMPLE:80"]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            check(v11, "https://a.example/x", &["a.example:443"]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            check(v11, "http://a.example/x", &["b.example"]),
            Err(Disagree)
        );
        assert_eq!(
            check(v11, "http://a.example:81/x", &["a.example"]),
            Err(Disagree)
        );
        assert_eq!(
            check(v11, "https://a.example/x", &["a.example:80"]),
            Err(Disagree)
        );
        assert_eq!(
            check(v11, "http://u@a.example/x", &["a.example"]),
            Err(Invalid)
        );
        assert_eq!(
            check(v11, "http://a.example/x", &[]),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            check(Version::HTTP_2, "http://a.example/x", &["b.example"]),
            Err(Disagree)
        );
        assert_eq!(check(Version::HTTP_2, "/x", &[]), Err(MissingHost));
    }
}
