//! `PORTCULLIS_<SECTION>__<KEY>` environment overrides as a figment provider.
//!
//! The variables are handed in rather than read from the process, so tests can give
//! their own without touching the process environment.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

const PREFIX: &str = "PORTCULLIS_";

/// The environment variables that configure the gateway.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    vars: Vec<(String, String)>,
}

impl EnvOverrides {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Any list of variables (tests).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        EnvOverrides {
            vars: vars
                .into_iter()
                .filter(|(k, _)| k.starts_with(PREFIX))
                .collect(),
        }
    }

    /// `$PORTCULLIS_CONFIG`, the default configuration path.
    pub fn config_path(&self) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == "PORTCULLIS_CONFIG")
            .map(|(_, v)| v.as_str())
    }

    /// Feeds the configuration variables (not `PORTCULLIS_CONFIG`) into a hasher.
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let mut vars: Vec<&(String, String)> =
            self.vars.iter().filter(|(k, _)| k.contains("__")).collect();
        vars.sort();
        vars.hash(h);
    }

    pub fn provider(&self) -> EnvProvider {
        EnvProvider(self.clone())
    }
}

/// Only variables with a `__` section separator are configuration keys; others
/// (`PORTCULLIS_CONFIG`, variables of helper scripts) are not looked at.
pub struct EnvProvider(EnvOverrides);

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for (k, v) in &self.0.vars {
            let Some(rest) = k.strip_prefix(PREFIX) else {
                continue;
            };
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            let value: Value = v.parse().unwrap_or_else(|_| Value::from(v.clone()));
            insert(&mut root, &path, value);
        }
        let mut out = Map::new();
        out.insert(Profile::Default, root);
        Ok(out)
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            } else {
                let mut inner = Dict::new();
                insert(&mut inner, rest, value);
                *entry = Value::from(inner);
            }
        }
    }
}
