use super::*;

fn parse(s: &str) -> PathPattern {
    PathPattern::parse(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn matches(p: &str, path: &str) -> bool {
    let segs: Vec<&str> = path[1..].split('/').collect();
    parse(p).matches(path, &segs)
}

#[test]
fn contract_matching_cases() {
    let yes = [
        ("/api/public", "/api/public"),
        ("/admin/**", "/admin"),
        ("/admin/**", "/admin/"),
        ("/admin/**", "/admin/a/b"),
        ("/**", "/"),
        ("/**", "/anything/at/all"),
        ("/api/*/items", "/api/v1/items"),
        ("/api/*", "/api/x"),
        ("/", "/"),
    ];
    let no = [
        ("/api/public", "/api/public/"),
        ("/api/public", "/api/publicx"),
        ("/admin/**", "/administrator"),
        ("/api/*/items", "/api/v1/v2/items"),
        ("/api/*", "/api/"),
        ("/api/*", "/api/x/y"),
        ("/*", "/"),
    ];
    for (p, path) in yes {
        assert!(matches(p, path), "{p} should match {path}");
    }
    for (p, path) in no {
        assert!(!matches(p, path), "{p} should not match {path}");
    }
}

#[test]
fn bad_patterns_are_refused_with_a_reason() {
    for (p, needle) in [
        ("**", "must start with \"/\""),
        ("api", "must start with \"/\""),
        ("/a/**/b", "only allowed as the last segment"),
        ("/a*/b", "must be a whole segment"),
        ("/a/../b", "not a normalized path"),
        ("/a//b", "not a normalized path"),
        ("/%61dmin", "not a normalized path"),
        ("/a/./**", "not a normalized path"),
        ("/a%2Fb", "can never match"),
    ] {
        let err = PathPattern::parse(p, false).expect_err(p);
        assert!(err.contains(needle), "{p}: {err}");
    }
}

#[test]
fn specificity_orders_as_the_contract_says() {
    let s = |p: &str, m: bool| parse(p).specificity(m);
    assert!(
        s("/admin", false) > s("/admin/**", true),
        "exact beats any pattern"
    );
    assert!(
        s("/a/b/**", false) > s("/a/*", false),
        "more literal segments first"
    );
    assert!(
        s("/a/*", false) > s("/a/**", false),
        "* beats ** at the same depth"
    );
    assert!(
        s("/a/**", true) > s("/a/**", false),
        "methods beat no methods"
    );
    assert_eq!(s("/a/*/b", false), s("/a/*/c", false));
}

#[test]
fn overlap_detection() {
    let o = |a: &str, b: &str| parse(a).overlaps(&parse(b));
    assert!(o("/a/*", "/a/**"));
    assert!(o("/a/*/b", "/a/*/**"));
    assert!(!o("/a/*/b", "/a/*/c"));
    assert!(!o("/a/*", "/b/*"));
    assert!(o("/a/*/c", "/a/b/**"));
    assert!(!o("/a/*", "/a/*/*"));
    assert!(o("/x", "/x"));
    assert!(!o("/x", "/y"));
}
