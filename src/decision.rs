//! The decision shared by `serve`, forward-auth and `explain`: which rules judge a
//! request, and what each says of its identity.
//!
//! Two pure steps, with authentication between them in the caller:
//!
//! 1. [`select`]: the rule for the request's own method, plus the rule of every method a
//!    `_method` override asks for ([`crate::method_override`]); whether they are all public
//!    (then an invalid credential only means no identity).
//! 2. [`judge`]: every selected rule's [`authz::decide`] for the identity; the first denial
//!    wins.
//!
//! The callers differ only in where the identity comes from (a live credential, or
//! `explain --token` / `--claims`), never in these steps.

use http::Method;

use crate::auth::Identity;
use crate::authz::{self, Decision, DenyReason};
use crate::method_override::{self, OverrideError};
use crate::path::NormalizedPath;
use crate::rules::{Access, Login, Rule, RuleTable};

/// Why no rule could be selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectError {
    /// No rule matches the method (or an override's method): 403.
    NoRule,
    /// A `_method` value the gateway cannot read: 400.
    Override(OverrideError),
}

/// The rules that judge one request.
#[derive(Debug, Clone)]
pub struct Selection<'r> {
    /// The rule of the request's own method.
    pub rule: &'r Rule,
    /// The rules of the other methods its overrides ask for (without `rule`, no repeats).
    pub extra: Vec<&'r Rule>,
}

impl<'r> Selection<'r> {
    /// Every selected rule, the request's own first.
    pub fn all(&self) -> impl Iterator<Item = &'r Rule> + '_ {
        std::iter::once(self.rule).chain(self.extra.iter().copied())
    }

    /// Are all selected rules public? Then a bad credential only means no identity.
    pub fn all_public(&self) -> bool {
        self.all().all(|r| r.access == Access::Public)
    }

    /// May a browser without a credential be sent to log in (no rule says `deny`)?
    pub fn may_login(&self) -> bool {
        self.all().all(|r| r.login != Login::Deny)
    }
}

/// Step 1: the rules for `method path` (on `host`), with the query's and the body's
/// method overrides.
pub fn select<'r>(
    rules: &'r RuleTable,
    method: &Method,
    host: Option<&str>,
    path: &NormalizedPath,
    query: Option<&str>,
    body_methods: &[Method],
) -> Result<Selection<'r>, SelectError> {
    let rule = rules
        .find_for(method, host, path)
        .ok_or(SelectError::NoRule)?;
    let query_methods = method_override::from_query(query).map_err(SelectError::Override)?;
    let mut extra: Vec<&Rule> = Vec::new();
    for m in query_methods.iter().chain(body_methods) {
        if m == method {
            continue;
        }
        let r = rules.find_for(m, host, path).ok_or(SelectError::NoRule)?;
        if r.index != rule.index && !extra.iter().any(|e| e.index == r.index) {
            extra.push(r);
        }
    }
    Ok(Selection { rule, extra })
}

/// A denial by one of the selected rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// `rule[index]` of the rule that denied.
    pub rule: usize,
    pub reason: DenyReason,
}

/// Step 2: every selected rule must allow the identity.
pub fn judge(selection: &Selection<'_>, identity: Option<&Identity>) -> Result<(), Denied> {
    for r in selection.all() {
        if let Decision::Deny(reason) = authz::decide(r, identity) {
            return Err(Denied {
                rule: r.index,
                reason,
            });
        }
    }
    Ok(())
}
