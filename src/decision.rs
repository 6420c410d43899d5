//! The one decision shared by `serve`, forward-auth and `explain`: [`decide`] takes what
//! is asked (method, normalized path, query, host, headers) and gives a [`Verdict`].
//!
//! Three steps, always in this order:
//!
//! 1. [`select`]: the rule for the request's own method, plus the rule of every method a
//!    `_method` override asks for ([`crate::method_override`]); whether they are all public.
//!    A CORS preflight ([`is_cors_preflight`]) whose selected rules all say
//!    `cors_preflight = "allow"` is allowed here, without a credential: its `Authorization`
//!    and cookies are never judged, and it has no identity.
//! 2. authenticate ([`Authenticate`]): the identity, or a typed failure. On rules that are
//!    all public a failure only means no identity.
//! 3. [`judge`]: every selected rule's [`authz::decide`] for the identity; the first denial
//!    wins.
//!
//! The callers differ only in where the identity comes from (the request's own
//! credential, or `explain --claims` / `--offline`), never in these steps. The status a
//! verdict gives is read from the one table in [`crate::response`].

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::Method;

use crate::auth::{AuthError, Authenticate, Identity, Presented};
use crate::authz::{self, AllowReason, Decision, DenyReason};
use crate::method_override::{self, OverrideError};
use crate::path::NormalizedPath;
use crate::rules::{Access, Login, Rule, RuleTable, StepUp};

/// What is asked about one request.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a Method,
    pub path: &'a NormalizedPath,
    pub query: Option<&'a str>,
    /// Lower case, no port; `None` when no rule has a `host` (then it is never read).
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The methods a `_method` in the body asks for (read by the pipeline before).
    pub body_methods: &'a [Method],
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No rule, or an unreadable `_method`.
    Select(SelectError),
    /// A credential was presented and refused, on a rule that needs one.
    Credential(AuthError),
    /// A selected rule denies the identity (or the lack of one).
    Rule(Denied),
}

/// Everything the gateway concludes about one request before it is forwarded.
#[derive(Debug, Clone)]
pub struct Verdict<'r> {
    /// The rules that judged it; `None` when none could be selected.
    pub selection: Option<Selection<'r>>,
    /// The identity to forward (also on public rules, when the credential is valid).
    pub identity: Option<Arc<Identity>>,
    /// A credential that was refused, kept even where a public rule ignores it.
    pub refused: Option<AuthError>,
    pub outcome: Result<AllowReason, Refusal>,
}

impl Verdict<'_> {
    /// The rule the log names: the one that denied, else the request's own.
    pub fn rule(&self) -> Option<usize> {
        match &self.outcome {
            Err(Refusal::Rule(d)) => Some(d.rule),
            _ => self.selection.as_ref().map(|s| s.rule.index),
        }
    }

    /// The upstream of the request's own rule (`None` = `[upstream]`).
    pub fn upstream(&self) -> Option<usize> {
        self.selection.as_ref().and_then(|s| s.rule.upstream)
    }

    /// Denied for a session's authentication being too weak or too old, on rules that let
    /// a browser log in: the step-up the login must ask the provider for. A bearer token
    /// is never stepped up (its client must get another one).
    pub fn step_up(&self) -> Option<&StepUp> {
        let Err(Refusal::Rule(d)) = &self.outcome else {
            return None;
        };
        let DenyReason::InsufficientAuthentication(s) = &d.reason else {
            return None;
        };
        let session = self.identity.as_ref().is_some_and(|id| !id.from_bearer);
        (session && self.selection.as_ref().is_some_and(Selection::may_login)).then_some(s)
    }

    /// The authentication level a login for this request asks for: the step-up it was
    /// denied for, or, when it had no credential, the first selected rule's `acr` /
    /// `max_age` (so that a first login for a page that needs more asks for it at once).
    pub fn login_level(&self) -> Option<&StepUp> {
        self.step_up().or_else(|| {
            self.may_log_in()
                .then(|| {
                    self.selection
                        .as_ref()?
                        .all()
                        .find_map(|r| r.step_up.as_ref())
                })
                .flatten()
        })
    }

    /// Denied only for want of a credential, on rules that let a browser log in.
    pub fn may_log_in(&self) -> bool {
        matches!(&self.outcome, Err(Refusal::Rule(d)) if d.reason == DenyReason::Unauthenticated)
            && self.selection.as_ref().is_some_and(Selection::may_login)
    }
}

/// The decision for one request. `auth` is asked for the identity only once a rule is
/// selected.
pub async fn decide<'r, A: Authenticate>(
    rules: &'r RuleTable,
    asked: &Asked<'_>,
    auth: &mut A,
) -> Verdict<'r> {
    let selection = match select(
        rules,
        asked.method,
        asked.host,
        asked.path,
        asked.query,
        asked.body_methods,
    ) {
        Ok(s) => s,
        Err(e) => {
            return Verdict {
                selection: None,
                identity: None,
                refused: None,
                outcome: Err(Refusal::Select(e)),
            }
        }
    };
    if selection.allows_preflight() && is_cors_preflight(asked.method, asked.headers) {
        return Verdict {
            selection: Some(selection),
            identity: None,
            refused: None,
            outcome: Ok(AllowReason::CorsPreflight),
        };
    }
    let all_public = selection.all_public();
    let presented = Presented {
        method: asked.method,
        path: asked.path.as_str(),
        headers: asked.headers,
    };
    let (identity, refused) = match auth.authenticate(&presented).await {
        Ok(id) => (id, None),
        Err(e) if all_public => (None, Some(e)),
        Err(e) => {
            return Verdict {
                selection: Some(selection),
                identity: None,
                refused: Some(e.clone()),
                outcome: Err(Refusal::Credential(e)),
            }
        }
    };
    let outcome = match judge(&selection, identity.as_deref()) {
        Err(denied) => Err(Refusal::Rule(denied)),
        Ok(()) if all_public => Ok(AllowReason::Public),
        Ok(()) => Ok(AllowReason::Authorized),
    };
    Verdict {
        selection: Some(selection),
        identity,
        refused,
        outcome,
    }
}

/// A CORS preflight request: `OPTIONS` with a non-empty `Origin` and a non-empty
/// `Access-Control-Request-Method` (Fetch standard, "CORS-preflight request"). A plain
/// `OPTIONS`, or one with only one of the two, is not.
pub fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    let present = |name| {
        headers
            .get(name)
            .is_some_and(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
    };
    method == Method::OPTIONS
        && present(header::ORIGIN)
        && present(header::ACCESS_CONTROL_REQUEST_METHOD)
}

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

    /// Do all selected rules let CORS preflights through (`cors_preflight = "allow"`)?
    pub fn allows_preflight(&self) -> bool {
        self.all().all(|r| r.cors_preflight)
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
