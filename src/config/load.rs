//! Loading: `gateway.toml` plus `PORTCULLIS_<SECTION>__<KEY>` overrides, read by figment
//! into the raw tree, then compiled. Figment's errors become [`ConfigError`]s with key paths.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;

use super::{compile, raw, Config, ConfigError, ConfigErrors, EnvOverrides};

/// Where the configuration file is: `-c`, else `$PORTCULLIS_CONFIG`, else `./gateway.toml`.
pub fn resolve_path(flag: Option<&Path>, env: &EnvOverrides) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match env.config_path() {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("gateway.toml"),
    }
}

/// Reads, merges and compiles the configuration. Performs no network I/O.
pub fn load(path: &Path, env: &EnvOverrides) -> Result<Config, ConfigErrors> {
    if !path.exists() {
        return Err(ConfigErrors(vec![ConfigError {
            key: String::new(),
            message: format!("configuration file {} does not exist", path.display()),
        }]));
    }
    let figment = Figment::new().merge(Toml::file(path)).merge(env.provider());
    load_figment(figment)
}

/// Compiles the configuration held by `figment` (used directly by tests).
pub fn load_figment(figment: Figment) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = figment.extract().map_err(figment_errors)?;
    compile::compile(raw)
}

fn figment_errors(err: figment::Error) -> ConfigErrors {
    ConfigErrors(
        err.into_iter()
            .map(|e| {
                let mut path: Vec<String> = e.path.clone();
                let message = match &e.kind {
                    figment::error::Kind::UnknownField(field, _) => {
                        if path.last() != Some(field) {
                            path.push(field.clone());
                        }
                        "unknown key".to_owned()
                    }
                    kind => kind.to_string(),
                };
                let mut key = String::new();
                for part in path {
                    if part.bytes().all(|b| b.is_ascii_digit()) && !key.is_empty() {
                        key.push_str(&format!("[{part}]"));
                    } else {
                        if !key.is_empty() {
                            key.push('.');
                        }
                        key.push_str(&part);
                    }
                }
                let source = e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(src) => format!(" (from {src})"),
                        None => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default();
                ConfigError {
                    key,
                    message: format!("{message}{source}"),
                }
            })
            .collect(),
    )
}
