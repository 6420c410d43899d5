//! Configuration types: the compiled [`Config`] that the request path reads, every value
//! typed and every rule compiled.
//!
//! How it is made: [`load`] reads `gateway.toml` plus `PORTCULLIS_<SECTION>__<KEY>`
//! overrides into the raw tree ([`raw`]), and [`compile`] (with [`rules`] for the rule
//! table) turns it into a `Config`. All errors are reported at once, each with its key
//! path; a configuration with errors never runs.

pub mod compile;
pub mod diagnostics;
mod env;
mod load;
pub mod raw;
pub mod rules;
pub mod secret;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use url::Url;

pub use diagnostics::{ConfigError, ConfigErrors, Warning};
pub use env::EnvOverrides;
pub use load::{load, load_figment, resolve_path};
pub use secret::Secret;

use crate::assertion::SigningKey;
use crate::claims::ClaimPath;
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
    /// `None` without `telemetry.otlp_endpoint`: no spans, no exporter.
    pub telemetry: Option<TelemetrySettings>,
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
    /// How requests are spread over the worker threads.
    pub runtime: RuntimeKind,
    /// Worker threads serving the main listener.
    pub workers: usize,
    pub tls: Option<TlsSettings>,
    /// `admin_token` (or `admin_token_file`): enables `/sessions` on the admin listener.
    pub admin_token: Option<Secret>,
}

/// `server.runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// `"shared"`: one multi-threaded, work-stealing runtime for everything.
    Shared,
    /// `"per-core"`: each worker thread has its own single-threaded runtime, accepts from
    /// the listening socket itself and has its own upstream connection pools; a
    /// connection stays on the thread that accepted it.
    PerCore,
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
    /// `introspection`: tokens that are not JWTs are asked about at the provider's
    /// introspection endpoint (RFC 7662).
    pub introspection: bool,
    /// `introspection_ttl`: how long an answer is kept (never past the token's `exp`).
    pub introspection_ttl: Duration,
    /// `introspection_cache_size`: answers kept; 0 asks the provider every time.
    pub introspection_cache_size: usize,
    /// `dpop`: sender-constrained tokens (RFC 9449).
    pub dpop: DpopMode,
    /// `[[tokens.issuers]]`, in file order: further issuers of bearer tokens.
    pub issuers: Vec<IssuerSettings>,
}

/// `tokens.dpop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// The `DPoP` scheme is not a gateway credential; a DPoP-bound token is still never
    /// accepted as a Bearer token.
    Off,
    /// Bearer and DPoP tokens are both accepted (a bound token only with its proof).
    Allow,
    /// Only DPoP-bound tokens with a valid proof are accepted.
    Require,
}

/// One `[[tokens.issuers]]` entry: judged with its own keys, audiences and role paths.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// Compared with a token's `iss` byte for byte.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub roles_claims: Vec<ClaimPath>,
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
    /// `redis_url` (or `redis_url_file`): a `redis://` or `rediss://` URL, which may hold a
    /// password, so it is kept as a secret.
    pub redis_url: Option<Secret>,
    /// `redis_urls`: the seed nodes of a Redis Cluster (instead of `redis_url`).
    pub redis_urls: Vec<Secret>,
    /// `redis_key_prefix`: every key the gateway writes starts with it.
    pub redis_key_prefix: String,
    /// `previous_secrets`: cookies sealed with one of these are opened and re-sealed with
    /// `secret`.
    pub previous_secrets: Vec<Secret>,
    /// `state_dir`: where revocations (logouts, back-channel logouts) are written so that
    /// they survive a restart. `None`: they are held in memory only.
    pub state_dir: Option<PathBuf>,
    /// `outlive_access_token`: a session that cannot refresh its access token (refresh off,
    /// or no refresh token) stays valid after the token's `exp`, until `lifetime`. Default
    /// false: such a session ends with its access token.
    pub outlive_access_token: bool,
    /// `websocket_check`: how often a WebSocket opened on a session checks that the
    /// session still stands (not logged out, revoked by the provider or expired); it is
    /// closed with a close frame when it does not.
    pub websocket_check: Duration,
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
    /// `assertion`: the header that carries the signed identity assertion.
    pub assertion: Option<HeaderName>,
    /// `assertion_key_file`, read and checked; `None`: the process's generated key.
    pub assertion_key: Option<Arc<SigningKey>>,
    /// The file `assertion_key` was read from, watched for changes like the configuration.
    pub assertion_key_file: Option<PathBuf>,
}

impl HeaderSettings {
    /// Every identity header name that is configured (the access-token header only when
    /// it is not `Authorization`, which is handled on its own).
    pub fn identity_names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user,
            &self.email,
            &self.subject,
            &self.roles,
            &self.scopes,
            &self.access_token,
        ]
        .into_iter()
        .flatten()
        .filter(|n| **n != http::header::AUTHORIZATION)
        .chain(self.claims.iter().map(|(n, _)| n))
        .chain(&self.assertion)
    }
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

/// `telemetry.otlp_protocol`: how spans are encoded for the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `"http/protobuf"`.
    Protobuf,
    /// `"http/json"`.
    Json,
}

/// `[telemetry]` with an `otlp_endpoint`: traces are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Where spans are sent: `otlp_endpoint` + `/v1/traces`.
    pub traces_url: Url,
    pub protocol: OtlpProtocol,
    pub timeout: Duration,
    pub service_name: String,
    /// Peers whose incoming `traceparent` (and `tracestate`) is continued; from anyone
    /// else it is replaced by a new trace.
    pub trust_traceparent_from: Vec<IpNet>,
}

/// Is `peer` in one of `nets`? An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn peer_in(nets: &[IpNet], peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    };
    nets.iter().any(|net| net.contains(&peer))
}
