//! The decision: may this identity do this request under this rule? Pure, so serving,
//! `explain` and tests all use the same function.

use crate::auth::Identity;
use crate::claims;
use crate::rules::{Access, Rule, StepUp};

/// Why a request was allowed or denied, as a machine-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(AllowReason),
    Deny(DenyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    /// `access = "public"`.
    Public,
    /// A valid credential with everything the rule asks for.
    Authorized,
    /// A CORS preflight on rules with `cors_preflight = "allow"`: no credential judged.
    CorsPreflight,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No credential for a rule that needs one.
    Unauthenticated,
    /// These required scopes are missing (all of the rule's scopes are listed).
    InsufficientScope { required: Vec<String> },
    /// A role in `roles` is missing.
    MissingRole(String),
    /// None of `any_roles` is held.
    MissingAnyRole,
    /// A required claim is missing or has another value.
    ClaimMismatch(String),
    /// The user's authentication is weaker (`acr`) or older (`auth_time`) than the rule's
    /// step-up asks (RFC 9470).
    InsufficientAuthentication(StepUp),
}

impl Decision {
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow(AllowReason::Public) => "public",
            Decision::Allow(AllowReason::Authorized) => "authorized",
            Decision::Allow(AllowReason::CorsPreflight) => "cors_preflight",
            Decision::Deny(d) => d.code(),
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl DenyReason {
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::Unauthenticated => "unauthenticated",
            DenyReason::InsufficientScope { .. } => "insufficient_scope",
            DenyReason::MissingRole(_) => "missing_role",
            DenyReason::MissingAnyRole => "missing_any_role",
            DenyReason::ClaimMismatch(_) => "claim_mismatch",
            DenyReason::InsufficientAuthentication(_) => "insufficient_user_authentication",
        }
    }

    /// A sentence for `explain` and logs (never sent to clients).
    pub fn explain(&self) -> String {
        match self {
            DenyReason::Unauthenticated => "no valid credential".into(),
            DenyReason::InsufficientScope { required } => {
                format!("missing scope(s); the rule requires {}", required.join(" "))
            }
            DenyReason::MissingRole(r) => format!("missing role {r:?}"),
            DenyReason::MissingAnyRole => "holds none of the rule's any_roles".into(),
            DenyReason::ClaimMismatch(c) => format!("claim {c:?} is missing or has another value"),
            DenyReason::InsufficientAuthentication(s) => {
                let mut why = Vec::new();
                if !s.acr.is_empty() {
                    why.push(format!("an acr of {}", s.acr.join(", ")));
                }
                if let Some(max) = s.max_age {
                    why.push(format!("an authentication at most {max} s old"));
                }
                format!("the rule requires {}", why.join(" and "))
            }
        }
    }
}

/// Decides one request.
pub fn decide(rule: &Rule, identity: Option<&Identity>) -> Decision {
    if rule.access == Access::Public {
        return Decision::Allow(AllowReason::Public);
    }
    let Some(id) = identity else {
        return Decision::Deny(DenyReason::Unauthenticated);
    };
    if !rule
        .scopes
        .iter()
        .all(|s| id.scopes.binary_search(s).is_ok())
    {
        return Decision::Deny(DenyReason::InsufficientScope {
            required: rule.scopes.clone(),
        });
    }
    if let Some(missing) = rule
        .roles
        .iter()
        .find(|r| id.roles.binary_search(r).is_err())
    {
        return Decision::Deny(DenyReason::MissingRole(missing.clone()));
    }
    if !rule.any_roles.is_empty()
        && !rule
            .any_roles
            .iter()
            .any(|r| id.roles.binary_search(r).is_ok())
    {
        return Decision::Deny(DenyReason::MissingAnyRole);
    }
    for (path, want) in &rule.claims {
        if !claims::claim_matches(&id.claims, path, want) {
            return Decision::Deny(DenyReason::ClaimMismatch(path.as_str().to_owned()));
        }
    }
    // Last: only a user who holds everything else is worth sending to a stronger login.
    if let Some(step_up) = &rule.step_up {
        if !step_up.satisfied(id.acr(), id.auth_time(), crate::unix_now()) {
            return Decision::Deny(DenyReason::InsufficientAuthentication(step_up.clone()));
        }
    }
    Decision::Allow(AllowReason::Authorized)
}
