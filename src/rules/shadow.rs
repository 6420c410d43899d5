//! Rules that never decide a request, because for every request they match a more
//! specific rule wins.
//!
//! For each rule, a few witness requests are built: its path with every wildcard segment
//! replaced by a segment no rule names (and, for a final `/**`, the path before it, with a
//! trailing `/`, and with one to N extra such segments), each of its methods (or a method
//! no rule names), and its host (or a host no rule names). Another rule that matches such
//! a witness matches every request of the same shape, so the witness is the request the
//! rule is most likely to win; if it wins none of them, it wins nothing.

use http::Method;

use super::pattern::{PathPattern, Segment};
use super::{HostPattern, Rule, RuleTable};

/// A path segment that no rule's literal can equal: `%` not followed by two hex digits
/// never survives normalization.
const FRESH: &str = "%w";

/// `(rule index, indices of the rules that win its requests)` for every rule that never
/// decides a request.
pub fn shadowed(table: &RuleTable) -> Vec<(usize, Vec<usize>)> {
    let longest = table
        .rules()
        .iter()
        .map(|r| match &r.pattern {
            PathPattern::Exact(p) => p.split('/').count(),
            PathPattern::Wild { segments, .. } => segments.len(),
        })
        .max()
        .unwrap_or(0);
    let fresh_method = Method::from_bytes(b"PORTCULLIS-WITNESS").ok();
    let mut out = Vec::new();
    for (pos, rule) in table.rules().iter().enumerate() {
        let paths = witness_paths(rule, longest);
        let methods: Vec<Method> = match &rule.methods {
            Some(ms) => ms.clone(),
            None => fresh_method.iter().cloned().collect(),
        };
        let host = match &rule.host {
            None => "%w.%w".to_owned(),
            Some(HostPattern::Exact(h)) => h.clone(),
            Some(HostPattern::Wildcard(suffix)) => format!("{FRESH}{suffix}"),
        };
        let mut winners = Vec::new();
        let mut reachable = false;
        'witnesses: for p in &paths {
            for m in &methods {
                match table.find_raw(m, Some(&host), p) {
                    Some(w) if std::ptr::eq(w, &table.rules()[pos]) => {
                        reachable = true;
                        break 'witnesses;
                    }
                    Some(w) => winners.push(w.index),
                    None => {}
                }
            }
        }
        if !reachable && !paths.is_empty() {
            winners.sort_unstable();
            winners.dedup();
            out.push((rule.index, winners));
        }
    }
    out
}

fn witness_paths(rule: &Rule, longest: usize) -> Vec<String> {
    match &rule.pattern {
        PathPattern::Exact(p) => vec![p.clone()],
        PathPattern::Wild { segments, globstar } => {
            let base: Vec<&str> = segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => l.as_str(),
                    Segment::Star => FRESH,
                })
                .collect();
            let join = |segs: &[&str]| format!("/{}", segs.join("/"));
            let mut out = vec![join(&base)];
            if *globstar {
                if !base.is_empty() {
                    out.push(format!("{}/", join(&base)));
                }
                let mut longer = base.clone();
                for _ in base.len()..=longest {
                    longer.push(FRESH);
                    out.push(join(&longer));
                    out.push(format!("{}/", join(&longer)));
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostics::Diagnostics;
    use crate::config::raw::RawRule;

    /// `(path, methods, host)`
    type Spec<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a str>);

    fn table(rules: &[Spec<'_>]) -> RuleTable {
        let raw: Vec<RawRule> = rules
            .iter()
            .map(|(path, methods, host)| RawRule {
                path: Some((*path).to_owned()),
                methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
                host: host.map(str::to_owned),
                ..RawRule::default()
            })
            .collect();
        let mut d = Diagnostics::default();
        let t = crate::config::rules::build(&raw, false, &[], &mut d);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        t
    }

    #[test]
    fn ordinary_rule_sets_have_no_shadowed_rule() {
        let t = table(&[
            ("/**", None, None),
            ("/admin/**", None, None),
            ("/admin/*", Some(&["GET"]), None),
            ("/api/public", None, None),
            ("/api/*/items", None, None),
            ("/**", None, Some("app.example.com")),
            ("/**", None, Some("*.example.com")),
        ]);
        assert_eq!(shadowed(&t), vec![]);
    }

    #[test]
    fn a_globstar_covered_by_more_specific_rules_is_shadowed() {
        // `/a/**` matches `/a`, `/a/` and everything below; each of those goes elsewhere.
        let t = table(&[
            ("/a/**", None, None),
            ("/a", None, None),
            ("/a/", None, None),
            ("/a/*/**", None, None),
        ]);
        assert_eq!(shadowed(&t), vec![(0, vec![1, 2, 3])]);
        // Without the exact `/a/`, the globstar still decides `/a/`.
        let t = table(&[
            ("/a/**", None, None),
            ("/a", None, None),
            ("/a/*/**", None, None),
        ]);
        assert_eq!(shadowed(&t), vec![]);
    }

    #[test]
    fn exact_paths_are_never_shadowed_by_patterns() {
        let t = table(&[("/x", None, None), ("/**", None, None), ("/*", None, None)]);
        assert_eq!(shadowed(&t), vec![]);
    }
}
