use super::*;
use proptest::prelude::*;

fn ok(raw: &str) -> String {
    match normalize(raw, false) {
        Ok(p) => p.as_str().to_owned(),
        Err(e) => panic!("{raw:?} was refused: {e}"),
    }
}

fn err(raw: &str) -> PathRejection {
    match normalize(raw, false) {
        Ok(p) => panic!("{raw:?} was accepted as {p}"),
        Err(e) => e,
    }
}

#[test]
fn normalizes_the_contract_cases() {
    let cases = [
        ("/", "/"),
        ("/admin", "/admin"),
        ("/admin/", "/admin/"),
        ("//admin", "/admin"),
        ("///admin//users", "/admin/users"),
        ("/a/../admin", "/admin"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/%61dmin", "/admin"),
        ("/a/%2e%2e/", "/"),
        ("/x/%2E%2E/admin", "/admin"),
        ("/a%20b", "/a%20b"),
        ("/a%c3%a9", "/a%C3%A9"),
        ("/%7euser", "/~user"),
        ("/a%25b", "/a%25b"),
    ];
    for (raw, want) in cases {
        assert_eq!(ok(raw), want, "normalize({raw:?})");
    }
}

#[test]
fn refuses_the_contract_cases() {
    use PathRejection::*;
    let cases = [
        ("admin", NotAbsolute),
        ("*", NotAbsolute),
        ("", NotAbsolute),
        ("/admin%2F..", EncodedSlash),
        ("/..%2f", EncodedSlash),
        ("/a%2fb", EncodedSlash),
        ("/a\\b", Backslash),
        ("/a%5cb", Backslash),
        ("/admin;x/", PathParameter),
        ("/..;/admin", PathParameter),
        ("/a%3bb", PathParameter),
        ("/a%00b", ControlCharacter),
        ("/a\u{0}b", ControlCharacter),
        ("/a%0ab", ControlCharacter),
        ("/a%7fb", ControlCharacter),
        ("/a%zz", InvalidPercentEncoding),
        ("/a%2", InvalidPercentEncoding),
        ("/a%", InvalidPercentEncoding),
        ("/..", AboveRoot),
        ("/a/../..", AboveRoot),
        ("/%2e%2e/admin", AboveRoot),
    ];
    for (raw, want) in cases {
        assert_eq!(err(raw), want, "normalize({raw:?})");
    }
}

#[test]
fn path_parameters_when_allowed_are_matched_without_them() {
    let p = normalize("/admin;jsessionid=1/x", true).expect("allowed");
    assert_eq!(p.as_str(), "/admin;jsessionid=1/x");
    assert_eq!(p.for_matching(), "/admin/x");
    assert_eq!(
        normalize("/..;/admin", true),
        Err(PathRejection::PathParameter)
    );
    assert_eq!(
        normalize("/a/.;x/b", true),
        Err(PathRejection::PathParameter)
    );
    let plain = normalize("/a/b", true).expect("allowed");
    assert_eq!(plain.for_matching(), "/a/b");
}

/// What the two passes give, without the plain-path shortcut.
fn by_the_passes(raw: &str, allow_params: bool) -> Result<String, PathRejection> {
    if !raw.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    resolve_dots(&decode(raw, allow_params)?, allow_params)
}

#[test]
fn the_plain_path_shortcut_takes_only_paths_the_passes_leave_alone() {
    for raw in [
        "/",
        "/a",
        "/a/",
        "/api/x",
        "/a-b_c~d/e.f/..g/.h/",
        "/a:b@c!$&'()*+,=",
        "/A/B",
    ] {
        assert!(is_plain(raw), "{raw:?}");
        assert_eq!(by_the_passes(raw, false).as_deref(), Ok(raw));
    }
    for raw in [
        "//", "/a//b", "/.", "/..", "/a/.", "/a/..", "/./a", "/../a", "/a/./b", "/%61", "/a;b",
        "/a\\b", "/a b", "/a\u{7f}", "/\u{e9}", "/a\tb",
    ] {
        assert!(!is_plain(raw), "{raw:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The shortcut never changes an answer: normalize gives what the two passes give.
    #[test]
    fn the_shortcut_agrees_with_the_passes(
        raw in "/[a-zA-Z0-9./%;_~:@!$&'()*+,=\\\\ \u{0}-\u{1f}\u{7f}\u{e9}-]{0,24}",
        allow_params: bool,
    ) {
        let fast = normalize(&raw, allow_params).map(|p| p.as_str().to_owned());
        prop_assert_eq!(fast, by_the_passes(&raw, allow_params));
    }

    #[test]
    fn normalized_paths_are_fixed_points(raw in "/[a-zA-Z0-9./%;_~-]{0,40}") {
        if let Ok(p) = normalize(&raw, false) {
            let again = normalize(p.as_str(), false);
            prop_assert_eq!(again.as_ref().map(|q| q.as_str()), Ok(p.as_str()));
        }
    }

    #[test]
    fn normalized_paths_have_no_dot_segments_or_empty_segments(
        raw in "/((\\.|\\.\\.|%2[eE]|%2[eE]%2[eE]|[a-c]{1,3}|%6[1-3])/?){0,12}"
    ) {
        if let Ok(p) = normalize(&raw, false) {
            let s = p.as_str();
            prop_assert!(s.starts_with('/'));
            let body = s.strip_suffix('/').unwrap_or(s);
            for seg in body.split('/').skip(1) {
                prop_assert!(seg != "." && seg != ".." && !seg.is_empty(), "{} -> {}", raw, s);
            }
            prop_assert!(!s.contains("%2E") && !s.contains("%2e"));
        }
    }

    /// A `..` can never take a path out of the prefix the rules judged: if the normalized
    /// path is under `/public/`, so is every path the upstream could resolve it to, because
    /// what is forwarded is exactly what was judged and has no dot segments left.
    #[test]
    fn dot_dot_never_escapes_the_judged_prefix(
        tail in "((\\.\\.|%2[eE]%2[eE]|\\.|x|admin)/){0,8}(x|admin)?"
    ) {
        let raw = format!("/public/{tail}");
        if let Ok(p) = normalize(&raw, false) {
            let depth_ok = p.as_str() == "/" || p.as_str().starts_with('/');
            prop_assert!(depth_ok);
            // Re-resolving what is forwarded changes nothing.
            prop_assert_eq!(normalize(p.as_str(), false).map(|q| q.as_str().to_owned()), Ok(p.as_str().to_owned()));
            prop_assert!(!p.as_str().split('/').any(|s| s == ".." || s == "."));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input(raw in "\\PC{0,64}") {
        let _ = normalize(&raw, false);
        let _ = normalize(&raw, true);
    }
}
