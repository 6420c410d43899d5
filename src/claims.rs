//! Claims: look-up by dot path, roles, scopes, and the values rules require. At the
//! bottom of the dependency graph: configuration, rules, authentication and header
//! rewriting all use these types.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A required claim value in a rule: compared with the token's claim as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ClaimValue {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// A dot path into a token's claims, such as `resource_access.gateway.roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    source: String,
    parts: Vec<String>,
}

impl ClaimPath {
    pub fn parse(src: &str) -> Result<ClaimPath, String> {
        let parts: Vec<String> = src.split('.').map(str::to_owned).collect();
        if src.is_empty() || parts.iter().any(String::is_empty) {
            return Err(format!(
                "{src:?} is not a claim path (names separated by single dots)"
            ));
        }
        Ok(ClaimPath {
            source: src.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The value at this path, if every step exists and is an object.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.parts.split_first()?;
        let mut v = claims.get(first)?;
        for p in rest {
            v = v.as_object()?.get(p)?;
        }
        Some(v)
    }
}

/// Strings at a claim path: an array of strings, or one string.
pub fn strings_at<'a>(
    claims: &'a Map<String, Value>,
    path: &ClaimPath,
) -> impl Iterator<Item = &'a str> {
    let v = path.lookup(claims);
    let (one, many) = match v {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(a)) => (None, Some(a.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

/// The union of the roles at every configured path, sorted and de-duplicated.
pub fn roles(claims: &Map<String, Value>, paths: &[ClaimPath]) -> Vec<String> {
    let mut out: Vec<String> = paths
        .iter()
        .flat_map(|p| strings_at(claims, p))
        .map(str::to_owned)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Scopes from `scope` (space separated) or `scp` (array or space-separated string).
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match claims.get("scope") {
        Some(Value::String(s)) => out.extend(s.split_ascii_whitespace().map(str::to_owned)),
        Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    match claims.get("scp") {
        Some(Value::String(s)) => out.extend(s.split_ascii_whitespace().map(str::to_owned)),
        Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Does the claim at `path` satisfy a rule's required value? An array claim must contain it.
pub fn claim_matches(claims: &Map<String, Value>, path: &ClaimPath, want: &ClaimValue) -> bool {
    fn eq(v: &Value, want: &ClaimValue) -> bool {
        match (v, want) {
            (Value::String(s), ClaimValue::Str(w)) => s == w,
            (Value::Bool(b), ClaimValue::Bool(w)) => b == w,
            (Value::Number(n), ClaimValue::Int(w)) => n.as_i64() == Some(*w),
            _ => false,
        }
    }
    match path.lookup(claims) {
        Some(Value::Array(items)) => items.iter().any(|v| eq(v, want)),
        Some(v) => eq(v, want),
        None => false,
    }
}

/// A claim rendered for a header: strings as they are, arrays joined with commas,
/// numbers and booleans as JSON. Objects and nulls give nothing.
pub fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => {
            let parts: Vec<String> = a
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect();
            Some(parts.join(","))
        }
        Value::Object(_) | Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn keycloak_roles_are_merged_sorted_and_unique() {
        let c = obj(json!({
            "realm_access": {"roles": ["user", "offline_access"]},
            "resource_access": {"gateway": {"roles": ["admin", "user"]}, "other": {"roles": ["x"]}}
        }));
        let paths = [
            ClaimPath::parse("realm_access.roles").expect("valid"),
            ClaimPath::parse("resource_access.gateway.roles").expect("valid"),
        ];
        assert_eq!(roles(&c, &paths), ["admin", "offline_access", "user"]);
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        assert_eq!(
            scopes(&obj(json!({"scope": "openid  a b"}))),
            ["a", "b", "openid"]
        );
        assert_eq!(scopes(&obj(json!({"scp": ["x", "y"]}))), ["x", "y"]);
        assert_eq!(scopes(&obj(json!({"scp": "x y"}))), ["x", "y"]);
        assert!(scopes(&obj(json!({"scope": 3}))).is_empty());
    }

    #[test]
    fn claims_match_values_and_array_members() {
        let c = obj(
            json!({"tenant": "acme", "groups": ["a", "b"], "level": 3, "ok": true, "o": {"k": "v"}}),
        );
        let p = |s: &str| ClaimPath::parse(s).expect("valid");
        assert!(claim_matches(
            &c,
            &p("tenant"),
            &ClaimValue::Str("acme".into())
        ));
        assert!(!claim_matches(
            &c,
            &p("tenant"),
            &ClaimValue::Str("other".into())
        ));
        assert!(claim_matches(
            &c,
            &p("groups"),
            &ClaimValue::Str("b".into())
        ));
        assert!(claim_matches(&c, &p("level"), &ClaimValue::Int(3)));
        assert!(!claim_matches(
            &c,
            &p("level"),
            &ClaimValue::Str("3".into())
        ));
        assert!(claim_matches(&c, &p("ok"), &ClaimValue::Bool(true)));
        assert!(claim_matches(&c, &p("o.k"), &ClaimValue::Str("v".into())));
        assert!(!claim_matches(
            &c,
            &p("missing.k"),
            &ClaimValue::Str("v".into())
        ));
    }

    #[test]
    fn bad_claim_paths_are_refused() {
        for bad in ["", ".a", "a.", "a..b"] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
