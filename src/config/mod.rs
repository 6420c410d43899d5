//! Configuration: `gateway.toml` plus `PORTCULLIS_<SECTION>__<KEY>` overrides, loaded with
//! figment into the raw tree ([`raw`]), then compiled into a [`Config`] ([`compile`]) that has
//! every value typed and every rule compiled. All errors are reported at once, each with
//! its key path; a configuration with errors never runs.

pub mod compile;
pub mod diagnostics;
mod env;
pub mod raw;
pub mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use url::Url;

pub use diagnostics::{ConfigError, ConfigErrors, Warning};
pub use env::EnvOverrides;
pub use secret::Secret;

use crate::auth::claims::ClaimPath;
use crate::rules::RuleTable;

/// The validated configuration. Nothing in it is checked again at request time.
#[derive(Debug)]
pub struct Config {
    pub server: ServerSettings,
    /// `[upstream]`: where requests go unless their rule names another upstream.
    pub upstream: UpstreamSettings,
    /// `[upstreams.NAME]`, sorted by name; a rule's `upstream` is an index into this.
    pub upstreams: Vec<NamedUpstream>,
    pub oidc: OidcSettings,
    pub tokens: TokenSettings,
    /// `None` when no `[session]` secret is configured (then no rule may log a browser in).
    pub session: Option<SessionSettings>,
    pub headers: HeaderSettings,
    pub log: LogSettings,
    pub rules: RuleTable,
    /// Things `check` reports that do not stop the gateway.
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub admin_listen: SocketAddr,
    pub auth_prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_grace: Duration,
    pub case_insensitive_paths: bool,
    pub allow_path_params: bool,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    /// Most client connections open at once on the main listener.
    pub max_connections: usize,
    pub tls: Option<TlsSettings>,
}

/// `[server.tls]`, loaded.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// For the listener; its certificate comes from `resolver`.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate and key read from the files.
    pub certified: Arc<rustls::sign::CertifiedKey>,
    /// Serves `certified`; a reload puts a renewed certificate into the running one.
    pub resolver: Arc<ReloadableCert>,
    /// `cert_file` and `key_file`, watched for changes like the configuration file.
    pub files: Vec<PathBuf>,
}

/// A certificate that can be replaced while the listener runs (renewals without restart).
pub struct ReloadableCert(arc_swap::ArcSwap<rustls::sign::CertifiedKey>);

impl ReloadableCert {
    pub fn new(ck: Arc<rustls::sign::CertifiedKey>) -> ReloadableCert {
        ReloadableCert(arc_swap::ArcSwap::new(ck))
    }

    /// New handshakes use `ck`; connections already open keep theirs.
    pub fn replace(&self, ck: Arc<rustls::sign::CertifiedKey>) {
        self.0.store(ck);
    }
}

impl std::fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadableCert")
    }
}

impl rustls::server::ResolvesServerCert for ReloadableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.load_full())
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub url: Url,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// HTTP/2 to the upstream (h2c prior knowledge over plain TCP); WebSocket upgrades
    /// still need HTTP/1.1 and are refused with 502 then.
    pub http2: bool,
}

/// One `[upstreams.NAME]` table.
#[derive(Debug, Clone)]
pub struct NamedUpstream {
    pub name: String,
    pub settings: UpstreamSettings,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Exactly as configured; compared with `iss` exactly.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub roles_claims: Vec<ClaimPath>,
    pub jwks_refresh: Duration,
    /// Verified tokens kept to skip signature checks for repeated tokens; 0 disables.
    pub cache_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreKind {
    Cookie,
    Redis,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub secret: Secret,
    pub cookie_name: String,
    pub lifetime: Duration,
    pub secure: bool,
    pub same_site: SameSite,
    pub refresh: bool,
    pub store: SessionStoreKind,
    pub redis_url: Option<Url>,
}

/// Identity headers sent to the upstream. `None` = that header is not sent.
#[derive(Debug, Clone)]
pub struct HeaderSettings {
    pub user: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub subject: Option<HeaderName>,
    pub roles: Option<HeaderName>,
    pub scopes: Option<HeaderName>,
    pub access_token: Option<HeaderName>,
    pub claims: Vec<(HeaderName, ClaimPath)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

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
