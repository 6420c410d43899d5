//! The compiled rule table: which rule decides a request.
//!
//! Rules are compiled once at load into a hash map of exact paths and a trie keyed by each
//! pattern's literal prefix, so finding a rule costs a few hash look-ups per path segment,
//! however many rules there are. Precedence is [`pattern::Specificity`]; two rules that tie
//! and could match the same request are refused when the configuration is loaded.

pub mod host;
pub mod pattern;
mod shadow;

use std::collections::HashMap;

use http::Method;
use smallvec::SmallVec;

use crate::claims::ClaimPath;
use crate::claims::ClaimValue;
use crate::path::NormalizedPath;
use host::HostPattern;
use pattern::{PathPattern, Specificity};
pub use shadow::shadowed;

/// `access` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Forwarded without a credential (identity headers still set when one is valid).
    Public,
    /// Needs a valid credential, plus whatever roles, scopes and claims the rule lists.
    Authenticated,
}

/// `login` of a rule: what a browser without a session gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// Browsers are sent to the provider's login page; other clients get 401.
    Auto,
    /// Same as `auto` for now; spelled out where a rule wants to say so explicitly.
    Redirect,
    /// Never start a login: 401 for everyone (APIs that browsers should not log in to).
    Deny,
}

/// `acr` and `max_age` of a rule (step-up, RFC 9470): how strong and how recent the
/// user's authentication must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// The `acr` values that satisfy the rule (any one of them); empty: any.
    pub acr: Vec<String>,
    /// The longest time since the user authenticated (`auth_time`), in seconds.
    pub max_age: Option<u64>,
}

impl StepUp {
    /// Does an authentication of level `acr` at `auth_time` satisfy this at `now`? A
    /// `max_age` needs an `auth_time`; an `auth_time` in the future counts as now.
    pub fn satisfied(&self, acr: Option<&str>, auth_time: Option<u64>, now: u64) -> bool {
        let level = self.acr.is_empty() || acr.is_some_and(|a| self.acr.iter().any(|x| x == a));
        let recent = match self.max_age {
            None => true,
            Some(max) => auth_time.is_some_and(|t| now.saturating_sub(t) <= max),
        };
        level && recent
    }

    /// `acr_values` of an authorization request or challenge: the values, space-separated.
    pub fn acr_values(&self) -> String {
        self.acr.join(" ")
    }
}

/// One compiled `[[rule]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in the file (`rule[index]`), for logs, metrics and `explain`.
    pub index: usize,
    /// The `path` as written.
    pub path: String,
    pub pattern: PathPattern,
    /// `None` = every method. `GET` also covers `HEAD`.
    pub methods: Option<Vec<Method>>,
    pub access: Access,
    pub roles: Vec<String>,
    pub any_roles: Vec<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<(ClaimPath, ClaimValue)>,
    pub login: Login,
    /// `acr` / `max_age`: the authentication the rule needs, if it names one.
    pub step_up: Option<StepUp>,
    /// `host`: the rule applies only to requests for this host.
    pub host: Option<HostPattern>,
    /// `upstream`: the named upstream (index into `Config::upstreams`); `None` = `[upstream]`.
    pub upstream: Option<usize>,
    /// `cors_preflight = "allow"`: a CORS preflight this rule selects is forwarded
    /// without a credential ([`crate::decision`] decides what counts as one).
    pub cors_preflight: bool,
    pub specificity: Specificity,
}

impl Rule {
    pub fn allows_method(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(ms) => ms
                .iter()
                .any(|m| m == method || (method == Method::HEAD && m == Method::GET)),
        }
    }

    /// Does the rule apply to a request for `host` (see [`host::request_host`])?
    pub fn allows_host(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(p), Some(h)) => p.matches(h),
            (Some(_), None) => false,
        }
    }

    /// `rule[3] "/admin/**"`, as used in logs and `explain`.
    pub fn label(&self) -> String {
        match &self.host {
            None => format!("rule[{}] {:?}", self.index, self.path),
            Some(h) => format!("rule[{}] {:?} (host {h})", self.index, self.path),
        }
    }
}

/// The look-up maps' hasher: keys come from the configuration only, so a fast seeded
/// hash is enough (the standard SipHash was a sixth of a look-up's instructions).
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct TrieNode {
    children: HashMap<String, TrieNode, Hasher>,
    /// Rules whose literal prefix ends exactly here.
    patterns: Vec<usize>,
}

/// All rules, ready for look-up.
#[derive(Debug, Default)]
pub struct RuleTable {
    rules: Vec<Rule>,
    exact: HashMap<String, Vec<usize>, Hasher>,
    root: TrieNode,
    fold_case: bool,
    /// Some rule has a `host`: only then does a request's host need to be looked at.
    has_hosts: bool,
    /// Every method some rule names (`GET` with `HEAD`), for [`RuleTable::method_sensitive`].
    named_methods: Vec<Method>,
}

// === impl RuleTable ===

impl RuleTable {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Does any rule have a `host`?
    pub fn has_hosts(&self) -> bool {
        self.has_hosts
    }

    /// The rule that decides `method path` for a request without a host, or `None` (403).
    pub fn find(&self, method: &Method, path: &NormalizedPath) -> Option<&Rule> {
        self.find_for(method, None, path)
    }

    /// The rule that decides `method path` for a request to `host` (lower-case, without
    /// port: [`host::request_host`]), or `None` (403).
    pub fn find_for(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &NormalizedPath,
    ) -> Option<&Rule> {
        self.find_raw(method, host, path.for_matching())
    }

    fn find_raw(&self, method: &Method, host: Option<&str>, raw: &str) -> Option<&Rule> {
        let folded;
        let p = if self.fold_case && raw.bytes().any(|b| b.is_ascii_uppercase()) {
            folded = raw.to_ascii_lowercase();
            folded.as_str()
        } else {
            raw
        };
        if let Some(ids) = self.exact.get(p) {
            if let Some(r) = self.best(ids, method, host, |_| true) {
                return Some(r);
            }
        }
        // On the stack for paths up to 16 segments deep.
        let segs: SmallVec<[&str; 16]> = p[1..].split('/').collect();
        let mut trail: SmallVec<[&TrieNode; 8]> = SmallVec::new();
        let mut node = &self.root;
        trail.push(node);
        for seg in &segs {
            match node.children.get(*seg) {
                Some(next) => {
                    node = next;
                    trail.push(node);
                }
                None => break,
            }
        }
        // Deeper nodes have longer literal prefixes, so the first node with a match wins.
        trail
            .iter()
            .rev()
            .find_map(|n| self.best(&n.patterns, method, host, |r| r.pattern.matches(p, &segs)))
    }

    fn best(
        &self,
        ids: &[usize],
        method: &Method,
        host: Option<&str>,
        matches: impl Fn(&Rule) -> bool,
    ) -> Option<&Rule> {
        ids.iter()
            .filter_map(|&i| self.rules.get(i))
            .filter(|r| r.allows_method(method) && r.allows_host(host) && matches(r))
            .max_by_key(|r| r.specificity)
    }

    pub fn from_rules(rules: Vec<Rule>, fold_case: bool) -> RuleTable {
        let mut table = RuleTable {
            rules: Vec::new(),
            exact: HashMap::default(),
            root: TrieNode::default(),
            fold_case,
            has_hosts: rules.iter().any(|r| r.host.is_some()),
            named_methods: Vec::new(),
        };
        for m in rules.iter().flat_map(|r| r.methods.iter().flatten()) {
            if !table.named_methods.contains(m) {
                table.named_methods.push(m.clone());
            }
        }
        for (i, rule) in rules.iter().enumerate() {
            match &rule.pattern {
                PathPattern::Exact(p) => table.exact.entry(p.clone()).or_default().push(i),
                PathPattern::Wild { .. } => {
                    let mut node = &mut table.root;
                    for seg in rule.pattern.literal_prefix() {
                        node = node.children.entry(seg.to_owned()).or_default();
                    }
                    node.patterns.push(i);
                }
            }
        }
        table.rules = rules;
        table
    }

    /// Could the method change which rule decides `path` for `host`? Only then can a
    /// method override (`_method` in a body) change the decision, and only then is a
    /// body worth reading before it is forwarded.
    pub fn method_sensitive(&self, host: Option<&str>, path: &NormalizedPath) -> bool {
        if self.named_methods.is_empty() {
            return false;
        }
        // A method no rule names finds the rule every unnamed method finds.
        let unnamed = Method::from_bytes(b"PORTCULLIS-ANY").ok();
        let base = unnamed
            .and_then(|m| self.find_for(&m, host, path))
            .map(|r| r.index);
        self.named_methods
            .iter()
            .chain([&Method::HEAD])
            .any(|m| self.find_for(m, host, path).map(|r| r.index) != base)
    }

    /// Groups of rules that could compete for the same request at the same depth: the
    /// rules of one exact path, or the patterns of one trie node.
    pub fn competing_groups(&self) -> Vec<&[usize]> {
        let mut groups: Vec<&[usize]> = self.exact.values().map(Vec::as_slice).collect();
        let mut stack = vec![&self.root];
        while let Some(n) = stack.pop() {
            groups.push(&n.patterns);
            stack.extend(n.children.values());
        }
        groups
    }
}

#[cfg(test)]
mod tests;
