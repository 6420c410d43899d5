//! The `host` of a rule, and the host a request is for.
//!
//! A rule's `host` is an exact name (`app.example.com`) or a wildcard for one label
//! (`*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`).
//! Hosts compare without their port, case-insensitively, and without a trailing dot.

/// How a rule's host ranks in precedence: an exact host beats a wildcard, which beats none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum HostRank {
    #[default]
    Any,
    Wildcard,
    Exact,
}

/// A compiled `host` of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// The whole name, lower-case.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses a rule's `host`: a DNS name (punycode for international names), an IPv4
    /// address, or `*.` plus a name with at least two labels. No port, no scheme.
    pub fn parse(src: &str) -> Result<HostPattern, String> {
        let lower = src.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.contains(':') {
            return Err(format!(
                "{src:?} must be a host name without a port or scheme (hosts are compared without their port)"
            ));
        }
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!(
                "{src:?} is not a host name such as \"app.example.com\" or \"*.example.com\""
            ));
        }
        if wild {
            if !name.contains('.') {
                return Err(format!(
                    "{src:?}: a wildcard needs a domain of at least two labels, such as \"*.example.com\""
                ));
            }
            Ok(HostPattern::Wildcard(format!(".{name}")))
        } else {
            Ok(HostPattern::Exact(name.to_owned()))
        }
    }

    pub fn rank(&self) -> HostRank {
        match self {
            HostPattern::Exact(_) => HostRank::Exact,
            HostPattern::Wildcard(_) => HostRank::Wildcard,
        }
    }

    /// Does the request host (already lower-case, without port, see [`request_host`]) match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    /// Could one request host match both?
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b,
            (HostPattern::Exact(h), w @ HostPattern::Wildcard(_))
            | (w @ HostPattern::Wildcard(_), HostPattern::Exact(h)) => w.matches(h),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// The host part of a `Host` header or URI authority, for matching: lower-case, without
/// port or trailing dot; an IPv6 literal keeps its brackets. `None` when it is malformed
/// (then only rules without a host can match).
pub fn request_host(authority: &str) -> Option<String> {
    let a = authority.trim();
    let host = if a.starts_with('[') {
        let end = a.find(']')?;
        let (h, rest) = a.split_at(end + 1);
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        h
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => a,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'))
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_and_wildcard_hosts() {
        assert_eq!(
            HostPattern::parse("App.Example.com."),
            Ok(HostPattern::Exact("app.example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.example.com"),
            Ok(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("10.0.0.1"),
            Ok(HostPattern::Exact("10.0.0.1".into()))
        );
        for bad in [
            "",
            "*",
            "*.com",
            "app.example.com:8080",
            "http://app.example.com",
            "a..b",
            "-a.example.com",
            "a.*.example.com",
            "app_1.example.com",
            "app.example.com/x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("a.b.example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches(".example.com"));
    }

    #[test]
    fn request_host_drops_port_case_and_trailing_dot() {
        assert_eq!(
            request_host("App.Example.COM:8080").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            request_host("app.example.com.").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(request_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(request_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        for bad in [
            "",
            ":80",
            "a.example.com:x",
            "a.example.com:123456",
            "a b",
            "a/b",
            "[::1",
            "[::1]x",
            "a@b",
        ] {
            assert_eq!(request_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn overlap_is_symmetric() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("a.example.com").overlaps(&p("*.example.com")));
        assert!(p("*.example.com").overlaps(&p("a.example.com")));
        assert!(!p("a.example.com").overlaps(&p("b.example.com")));
        assert!(!p("*.example.com").overlaps(&p("*.example.org")));
        assert!(!p("a.b.example.com").overlaps(&p("*.example.com")));
    }
}
