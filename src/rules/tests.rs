use http::Method;
use proptest::prelude::*;

use super::*;
use crate::config::diagnostics::Diagnostics;
use crate::config::raw::RawRule;
use crate::config::rules::build;
use crate::path::normalize;

fn rule(path: &str, methods: Option<&[&str]>) -> RawRule {
    RawRule {
        path: Some(path.to_owned()),
        methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
        ..RawRule::default()
    }
}

fn table(rules: &[RawRule]) -> RuleTable {
    let mut d = Diagnostics::default();
    let t = build(rules, false, &[], &mut d);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    t
}

fn find(t: &RuleTable, method: Method, path: &str) -> Option<String> {
    t.find(&method, &normalize(path, false).expect("valid"))
        .map(|r| r.path.clone())
}

#[test]
fn precedence_is_by_specificity_not_order() {
    let t = table(&[
        rule("/**", None),
        rule("/admin/**", None),
        rule("/admin/users", None),
        rule("/admin/*", None),
        rule("/admin/**", Some(&["POST"])),
        rule("/api/*/items/**", None),
        rule("/api/v1/**", None),
    ]);
    assert_eq!(
        find(&t, Method::GET, "/admin/users").as_deref(),
        Some("/admin/users")
    );
    assert_eq!(
        find(&t, Method::GET, "/admin/x").as_deref(),
        Some("/admin/*")
    );
    assert_eq!(
        find(&t, Method::GET, "/admin/x/y").as_deref(),
        Some("/admin/**")
    );
    assert_eq!(
        find(&t, Method::GET, "/admin").as_deref(),
        Some("/admin/**")
    );
    // The POST rule has methods, so it beats the plain /admin/** for POST, not for GET.
    let post = t
        .find(
            &Method::POST,
            &normalize("/admin/x/y", false).expect("valid"),
        )
        .expect("match");
    assert!(post.methods.is_some());
    // /api/v1/** has two literal segments, /api/*/items/** only one.
    assert_eq!(
        find(&t, Method::GET, "/api/v1/items/3").as_deref(),
        Some("/api/v1/**")
    );
    assert_eq!(
        find(&t, Method::GET, "/api/v2/items/3").as_deref(),
        Some("/api/*/items/**")
    );
    assert_eq!(find(&t, Method::GET, "/elsewhere").as_deref(), Some("/**"));
}

#[test]
fn get_covers_head_and_unmatched_methods_fall_through() {
    let t = table(&[rule("/r", Some(&["GET"]))]);
    assert!(find(&t, Method::HEAD, "/r").is_some());
    assert!(find(&t, Method::POST, "/r").is_none());
    assert!(find(&t, Method::GET, "/other").is_none());
}

#[test]
fn ties_are_configuration_errors() {
    let mut d = Diagnostics::default();
    build(
        &[rule("/a/*", None), rule("/b/**", None), rule("/a/*", None)],
        false,
        &[],
        &mut d,
    );
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    assert_eq!(d.errors[0].key, "rule[2].path");
    assert!(
        d.errors[0].message.contains("ties with rule[0]"),
        "{}",
        d.errors[0].message
    );

    let mut d = Diagnostics::default();
    build(
        &[rule("/a/*/b", None), rule("/a/*/**", None)],
        false,
        &[],
        &mut d,
    );
    assert_eq!(
        d.errors.len(),
        1,
        "overlapping at the same precedence: {:?}",
        d.errors
    );

    // Disjoint methods or disjoint paths do not tie.
    let mut d = Diagnostics::default();
    build(
        &[
            rule("/a/*", Some(&["GET"])),
            rule("/a/*", Some(&["POST"])),
            rule("/a/*/b", None),
            rule("/a/*/c", None),
            rule("/x", None),
            rule("/x", Some(&["PUT"])),
        ],
        false,
        &[],
        &mut d,
    );
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    // GET covers HEAD, so GET and HEAD overlap.
    let mut d = Diagnostics::default();
    build(
        &[rule("/a", Some(&["GET"])), rule("/a", Some(&["HEAD"]))],
        false,
        &[],
        &mut d,
    );
    assert_eq!(d.errors.len(), 1);
}

#[test]
fn rule_fields_are_checked_with_key_paths() {
    let mut d = Diagnostics::default();
    let bad = RawRule {
        path: Some("/x".into()),
        methods: Some(vec!["GE T".into()]),
        access: Some("open".into()),
        login: Some("sometimes".into()),
        roles: vec!["".into()],
        ..RawRule::default()
    };
    let public_with_roles = RawRule {
        path: Some("/y".into()),
        access: Some("public".into()),
        roles: vec!["admin".into()],
        ..RawRule::default()
    };
    build(
        &[bad, public_with_roles, RawRule::default()],
        false,
        &[],
        &mut d,
    );
    let keys: Vec<&str> = d.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "rule[0].methods[0]",
            "rule[0].access",
            "rule[0].login",
            "rule[0].roles[0]",
            "rule[1].roles",
            "rule[2].path"
        ]
    );
}

#[test]
fn case_insensitive_tables_fold_both_sides() {
    let mut d = Diagnostics::default();
    let t = build(&[rule("/Admin/**", None)], true, &[], &mut d);
    assert!(d.errors.is_empty());
    assert!(t
        .find(&Method::GET, &normalize("/ADMIN/X", false).expect("valid"))
        .is_some());
    assert!(t
        .find(&Method::GET, &normalize("/admin", false).expect("valid"))
        .is_some());
}

/// A linear scan that applies the contract's precedence literally: the reference the
/// compiled table must agree with.
fn reference<'a>(rules: &'a [Rule], method: &Method, path: &str) -> Option<&'a Rule> {
    let segs: Vec<&str> = path[1..].split('/').collect();
    rules
        .iter()
        .filter(|r| r.allows_method(method) && r.pattern.matches(path, &segs))
        .max_by_key(|r| r.specificity)
}

fn arb_pattern() -> impl Strategy<Value = String> {
    let seg = prop_oneof![Just("a"), Just("b"), Just("c"), Just("*")];
    (prop::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(segs, glob)| {
        let mut p: String = segs.iter().map(|s| format!("/{s}")).collect();
        if glob || p.is_empty() {
            p.push_str("/**");
        }
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn compiled_lookup_agrees_with_a_linear_scan(
        patterns in prop::collection::vec((arb_pattern(), any::<bool>()), 1..8),
        paths in prop::collection::vec("(/(a|b|c|d)){0,5}/?", 1..10),
    ) {
        let raw: Vec<RawRule> = patterns
            .iter()
            .map(|(p, m)| rule(p, if *m { Some(&["GET"][..]) } else { None }))
            .collect();
        let mut d = Diagnostics::default();
        let t = build(&raw, false, &[], &mut d);
        prop_assume!(d.errors.is_empty());
        for p in paths {
            let p = if p.is_empty() { "/".to_owned() } else { p };
            let n = normalize(&p, false).expect("valid");
            for m in [Method::GET, Method::POST] {
                let got = t.find(&m, &n).map(|r| r.index);
                let want = reference(t.rules(), &m, n.as_str()).map(|r| r.index);
                prop_assert_eq!(got, want, "{} {}", m, n.as_str());
            }
        }
    }

    /// Whatever `..` tricks a path plays, the rule that judged it is the rule for the
    /// path that is forwarded (normalization runs once, and its output is a fixed point).
    #[test]
    fn dot_segments_cannot_change_the_judging_rule(tail in "((\\.\\.|%2e%2e|\\.|a|admin)/){0,6}(a|admin)?") {
        let t = table(&[rule("/public/**", None), rule("/admin/**", None), rule("/**", None)]);
        let raw = format!("/public/{tail}");
        if let Ok(n) = normalize(&raw, false) {
            let judged = t.find(&Method::GET, &n).map(|r| r.index);
            let forwarded = normalize(n.as_str(), false).expect("fixed point");
            prop_assert_eq!(judged, t.find(&Method::GET, &forwarded).map(|r| r.index));
            if n.as_str().starts_with("/admin") {
                prop_assert_eq!(judged, Some(1));
            }
        }
    }
}

fn host_rule(path: &str, host: Option<&str>, upstream: Option<&str>) -> RawRule {
    RawRule {
        path: Some(path.to_owned()),
        host: host.map(str::to_owned),
        upstream: upstream.map(str::to_owned),
        ..RawRule::default()
    }
}

fn find_host(t: &RuleTable, host: Option<&str>, path: &str) -> Option<usize> {
    t.find_for(&Method::GET, host, &normalize(path, false).expect("valid"))
        .map(|r| r.index)
}

#[test]
fn a_host_beats_no_host_at_the_same_path_specificity_only() {
    let t = table(&[
        host_rule("/**", None, None),
        host_rule("/**", Some("app.example.com"), None),
        host_rule("/**", Some("*.example.com"), None),
        host_rule("/api/**", None, None),
        host_rule("/api/**", Some("App.Example.com"), None),
        host_rule("/api/v1/**", None, None),
    ]);
    assert!(t.has_hosts());
    assert_eq!(find_host(&t, Some("app.example.com"), "/x"), Some(1));
    assert_eq!(find_host(&t, Some("other.example.com"), "/x"), Some(2));
    assert_eq!(find_host(&t, Some("a.b.example.com"), "/x"), Some(0));
    assert_eq!(find_host(&t, Some("example.org"), "/x"), Some(0));
    assert_eq!(find_host(&t, None, "/x"), Some(0));
    assert_eq!(find_host(&t, Some("app.example.com"), "/api/x"), Some(4));
    assert_eq!(find_host(&t, Some("evil.test"), "/api/x"), Some(3));
    // A deeper path without a host still beats a shallower one with a host.
    assert_eq!(find_host(&t, Some("app.example.com"), "/api/v1/x"), Some(5));
}

#[test]
fn host_rules_tie_only_when_their_hosts_overlap() {
    let mut d = Diagnostics::default();
    build(
        &[
            host_rule("/a/**", Some("a.example.com"), None),
            host_rule("/a/**", Some("b.example.com"), None),
            host_rule("/a/**", Some("*.example.com"), None),
            host_rule("/a/**", Some("*.example.org"), None),
        ],
        false,
        &[],
        &mut d,
    );
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let mut d = Diagnostics::default();
    build(
        &[
            host_rule("/a/**", Some("a.example.com"), None),
            host_rule("/a/**", Some("A.example.com."), None),
        ],
        false,
        &[],
        &mut d,
    );
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    assert_eq!(d.errors[0].key, "rule[1].path");
}

#[test]
fn rule_host_and_upstream_are_checked() {
    let mut d = Diagnostics::default();
    let t = build(
        &[
            host_rule("/a/**", Some("a.example.com:8080"), None),
            host_rule("/b/**", None, Some("billing")),
            host_rule("/c/**", None, Some("nope")),
        ],
        false,
        &["billing", "reports"],
        &mut d,
    );
    let keys: Vec<&str> = d.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["rule[0].host", "rule[2].upstream"], "{:?}", d.errors);
    assert!(
        d.errors[1].message.contains("\"nope\" is not defined")
            && d.errors[1].message.contains("billing, reports"),
        "{}",
        d.errors[1].message
    );
    assert_eq!(t.rules()[0].upstream, Some(0));
}
