//! Compiles the `[[rule]]` tables into a [`RuleTable`]: checks every field, then refuses
//! ties.

use std::time::Duration;

use http::Method;

use super::diagnostics::Diagnostics;
use super::raw::RawRule;
use crate::claims::ClaimPath;
use crate::rules::host::HostPattern;
use crate::rules::pattern::PathPattern;
use crate::rules::{Access, Login, Rule, RuleTable, StepUp};

/// Compiles the rules, pushing every problem into `diag`. `upstreams` are the names of
/// the `[upstreams.NAME]` tables, in the order their index refers to.
pub fn build(
    raw: &[RawRule],
    fold_case: bool,
    upstreams: &[&str],
    diag: &mut Diagnostics,
) -> RuleTable {
    let mut rules = Vec::with_capacity(raw.len());
    for (index, r) in raw.iter().enumerate() {
        if let Some(rule) = compile_rule(index, r, fold_case, upstreams, diag) {
            rules.push(rule);
        }
    }
    if raw.is_empty() {
        diag.warn(
            "rule",
            "there are no [[rule]] tables, so every request is denied with 403",
        );
    }
    let table = RuleTable::from_rules(rules, fold_case);
    check_ties(&table, diag);
    table
}

/// The shortest `max_age`: a login must outlast the redirects back to the page.
const MIN_MAX_AGE: Duration = Duration::from_secs(10);

fn compile_rule(
    index: usize,
    r: &RawRule,
    fold_case: bool,
    upstreams: &[&str],
    diag: &mut Diagnostics,
) -> Option<Rule> {
    let key = |field: &str| format!("rule[{index}].{field}");
    let errors_before = diag.errors.len();

    let pattern = match &r.path {
        None => {
            diag.error(
                key("path"),
                "missing; every rule needs a path such as \"/api/**\"",
            );
            None
        }
        Some(p) => match PathPattern::parse(p, fold_case) {
            Ok(pat) => Some(pat),
            Err(msg) => {
                diag.error(key("path"), msg);
                None
            }
        },
    };

    let methods = match &r.methods {
        None => None,
        Some(list) if list.is_empty() => {
            diag.error(
                key("methods"),
                "is empty; leave it out to match every method",
            );
            None
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, m) in list.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method) if !upper.is_empty() => out.push(method),
                    _ => diag.error(
                        format!("rule[{index}].methods[{i}]"),
                        format!("{m:?} is not an HTTP method"),
                    ),
                }
            }
            Some(out)
        }
    };

    let access = match r.access.as_deref() {
        None | Some("authenticated") => Access::Authenticated,
        Some("public") => Access::Public,
        Some(other) => {
            diag.error(
                key("access"),
                format!("{other:?} is not one of \"public\", \"authenticated\""),
            );
            Access::Authenticated
        }
    };

    let login = match r.login.as_deref() {
        None | Some("auto") => Login::Auto,
        Some("redirect") => Login::Redirect,
        Some("deny") => Login::Deny,
        Some(other) => {
            diag.error(
                key("login"),
                format!("{other:?} is not one of \"auto\", \"redirect\", \"deny\""),
            );
            Login::Auto
        }
    };

    if access == Access::Public {
        for (field, set) in [
            ("roles", !r.roles.is_empty()),
            ("any_roles", !r.any_roles.is_empty()),
            ("scopes", !r.scopes.is_empty()),
            ("claims", !r.claims.is_empty()),
            ("acr", !r.acr.is_empty()),
            ("max_age", r.max_age.is_some()),
        ] {
            if set {
                diag.error(
                    key(field),
                    "a public rule cannot require anything; remove it or drop access = \"public\"",
                );
            }
        }
    }

    for (field, list) in [
        ("roles", &r.roles),
        ("any_roles", &r.any_roles),
        ("scopes", &r.scopes),
        ("acr", &r.acr),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v.trim().is_empty() || v.chars().any(char::is_whitespace) {
                diag.error(
                    format!("rule[{index}].{field}[{i}]"),
                    format!("{v:?} must be a non-empty name without spaces"),
                );
            }
        }
    }

    let mut claims = Vec::with_capacity(r.claims.len());
    for (path, value) in &r.claims {
        match ClaimPath::parse(path) {
            Ok(cp) => claims.push((cp, value.clone())),
            Err(msg) => diag.error(format!("rule[{index}].claims.{path:?}"), msg),
        }
    }

    for (i, v) in r.acr.iter().enumerate() {
        if v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            diag.error(
                format!("rule[{index}].acr[{i}]"),
                format!("{v:?} must not contain quotes, backslashes or control characters"),
            );
        }
    }
    let max_age = r.max_age.as_deref().map(|v| {
        let d = super::compile::duration(diag, &key("max_age"), Some(v), MIN_MAX_AGE);
        if d < MIN_MAX_AGE {
            diag.error(
                key("max_age"),
                format!(
                    "{v:?} is shorter than 10s: every page would need a new login before it loads"
                ),
            );
        }
        d.as_secs()
    });
    let step_up = (!r.acr.is_empty() || max_age.is_some()).then(|| StepUp {
        acr: r.acr.clone(),
        max_age,
    });

    let host = match r.host.as_deref() {
        None => None,
        Some(h) => match HostPattern::parse(h) {
            Ok(p) => Some(p),
            Err(msg) => {
                diag.error(key("host"), msg);
                None
            }
        },
    };

    let upstream = match r.upstream.as_deref() {
        None => None,
        Some(name) => match upstreams.iter().position(|u| *u == name) {
            Some(i) => Some(i),
            None => {
                let known = if upstreams.is_empty() {
                    "there are no [upstreams.NAME] tables".to_owned()
                } else {
                    format!("defined: {}", upstreams.join(", "))
                };
                diag.error(
                    key("upstream"),
                    format!("{name:?} is not defined; add [upstreams.{name}] with a url ({known})"),
                );
                None
            }
        },
    };

    let cors_preflight = match r.cors_preflight.as_deref() {
        None | Some("off") => false,
        Some("allow") => true,
        Some(other) => {
            diag.error(
                key("cors_preflight"),
                format!("{other:?} is not one of \"allow\", \"off\""),
            );
            false
        }
    };

    if cors_preflight
        && methods
            .as_ref()
            .is_some_and(|ms| !ms.contains(&Method::OPTIONS))
    {
        diag.warn(
            key("cors_preflight"),
            "the rule's methods do not include OPTIONS, so no preflight ever selects it",
        );
    }

    if diag.errors.len() != errors_before {
        return None;
    }
    let pattern = pattern?;
    let mut specificity = pattern.specificity(methods.is_some());
    specificity.host = host.as_ref().map(HostPattern::rank).unwrap_or_default();
    Some(Rule {
        index,
        path: r.path.clone().unwrap_or_default(),
        pattern,
        methods,
        access,
        roles: r.roles.clone(),
        any_roles: r.any_roles.clone(),
        scopes: r.scopes.clone(),
        claims,
        login,
        step_up,
        host,
        upstream,
        cors_preflight,
        specificity,
    })
}

fn hosts_overlap(a: &Rule, b: &Rule) -> bool {
    match (&a.host, &b.host) {
        (Some(x), Some(y)) => x.overlaps(y),
        _ => true,
    }
}

fn methods_overlap(a: &Rule, b: &Rule) -> bool {
    match (&a.methods, &b.methods) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => {
            x.iter().any(|m| b.allows_method(m)) || y.iter().any(|m| a.allows_method(m))
        }
    }
}

fn check_ties(table: &RuleTable, diag: &mut Diagnostics) {
    let rules = table.rules();
    let mut found = Vec::new();
    for group in table.competing_groups() {
        for (n, &i) in group.iter().enumerate() {
            for &j in &group[n + 1..] {
                let (a, b) = (&rules[i], &rules[j]);
                if a.specificity == b.specificity
                    && a.pattern.overlaps(&b.pattern)
                    && methods_overlap(a, b)
                    && hosts_overlap(a, b)
                {
                    let (first, second) = if a.index < b.index { (a, b) } else { (b, a) };
                    found.push((
                        first.index,
                        second.index,
                        second.path.clone(),
                        first.path.clone(),
                    ));
                }
            }
        }
    }
    found.sort();
    for (first, second, second_path, first_path) in found {
        diag.error(
            format!("rule[{second}].path"),
            format!("{second_path:?} ties with rule[{first}] ({first_path:?}): both can match the same request with the same precedence; make one more specific or give them distinct methods or hosts"),
        );
    }
}
