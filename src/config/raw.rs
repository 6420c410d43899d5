//! The configuration file as written: serde structs that mirror `gateway.toml` one to one.
//!
//! Nothing here is validated beyond its TOML type; `compile.rs` turns this tree into a
//! [`Config`](super::Config) and reports every problem with its key path.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub use crate::claims::ClaimValue;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    /// Named upstreams besides the default one: `[upstreams.NAME]`.
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub oidc: RawOidc,
    pub tokens: RawTokens,
    pub session: RawSession,
    pub headers: RawHeaders,
    pub log: RawLog,
    pub telemetry: RawTelemetry,
    #[serde(rename = "rule")]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub admin_listen: Option<String>,
    pub auth_prefix: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub shutdown_grace: Option<String>,
    pub case_insensitive_paths: bool,
    pub allow_path_params: bool,
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_header_bytes: Option<usize>,
    /// How long a client may take to send the request head; slower gets 408. Also how
    /// long a keep-alive connection (HTTP/1.1 or HTTP/2) may sit without a request.
    pub header_read_timeout: Option<String>,
    /// Most client connections open at once; further ones wait in the listen backlog.
    pub max_connections: Option<usize>,
    /// `"shared"` (one work-stealing runtime) or `"per-core"` (a runtime per worker
    /// thread, each accepting from the listening socket).
    pub runtime: Option<String>,
    /// Worker threads (default: the number of CPUs the process may use).
    pub workers: Option<usize>,
    pub tls: Option<RawTls>,
    /// Bearer token of the admin listener's session administration.
    #[serde(deserialize_with = "scalar_string")]
    pub admin_token: Option<String>,
    pub admin_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    /// Speak HTTP/2 to the upstream: h2c (prior knowledge) for http://, h2 for https://.
    pub http2: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOidc {
    pub issuer: Option<String>,
    #[serde(deserialize_with = "scalar_string")]
    pub client_id: Option<String>,
    #[serde(deserialize_with = "scalar_string")]
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub roles_claims: Option<Vec<String>>,
    pub jwks_refresh: Option<String>,
    pub cache_size: Option<usize>,
    pub introspection: Option<bool>,
    pub introspection_ttl: Option<String>,
    pub introspection_cache_size: Option<usize>,
    pub dpop: Option<String>,
    pub issuers: Option<Vec<RawIssuer>>,
}

/// `[[tokens.issuers]]`: a further issuer whose bearer tokens are accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIssuer {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub roles_claims: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    #[serde(deserialize_with = "scalar_string")]
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub cookie_name: Option<String>,
    pub lifetime: Option<String>,
    pub secure: Option<bool>,
    pub same_site: Option<String>,
    pub refresh: Option<bool>,
    pub store: Option<String>,
    #[serde(deserialize_with = "scalar_string")]
    pub redis_url: Option<String>,
    pub redis_url_file: Option<String>,
    pub redis_urls: Option<Vec<String>>,
    pub redis_key_prefix: Option<String>,
    /// Older secrets: cookies sealed with them are still opened, then re-sealed.
    pub previous_secrets: Vec<String>,
    /// A directory where the cookie store keeps its revocations (logouts) across restarts.
    pub state_dir: Option<String>,
    /// With `refresh = false`: a session may outlive its access token's `exp`.
    pub outlive_access_token: Option<bool>,
    /// How often a WebSocket opened on a session checks that the session still stands.
    pub websocket_check: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    pub user: Option<String>,
    pub email: Option<String>,
    pub subject: Option<String>,
    pub roles: Option<String>,
    pub scopes: Option<String>,
    pub access_token: Option<String>,
    pub claims: BTreeMap<String, String>,
    /// A header for the signed identity assertion (ES256 JWT); unset = none is sent.
    pub assertion: Option<String>,
    /// A PKCS#8 PEM P-256 private key to sign assertions with; unset = a key generated
    /// at start and kept in memory only.
    pub assertion_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `"text"` (default) or `"json"`.
    pub format: Option<String>,
    /// A tracing filter such as `"info"` or `"portcullis=debug"`; `RUST_LOG` wins when set.
    pub level: Option<String>,
}

/// `[telemetry]`: traces over OTLP/HTTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP base URL; spans go to `<otlp_endpoint>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `"http/protobuf"` (default) or `"http/json"`.
    pub otlp_protocol: Option<String>,
    /// How long one export may take.
    pub otlp_timeout: Option<String>,
    /// The `service.name` resource attribute (default `"portcullis"`).
    pub service_name: Option<String>,
    /// Peers whose `traceparent` is continued; default `server.trusted_proxies`.
    pub trust_traceparent_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    pub access: Option<String>,
    pub roles: Vec<String>,
    pub any_roles: Vec<String>,
    pub scopes: Vec<String>,
    pub claims: BTreeMap<String, ClaimValue>,
    pub login: Option<String>,
    /// Step-up: the `acr` values (any one) the user's authentication must have.
    pub acr: Vec<String>,
    /// Step-up: the longest time since the user authenticated (`"5m"`).
    pub max_age: Option<String>,
    /// Only requests for this host (`app.example.com` or `*.example.com`).
    pub host: Option<String>,
    /// The `[upstreams.NAME]` that receives the requests this rule allows.
    pub upstream: Option<String>,
    /// `"allow"`: CORS preflights (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) pass without a credential; `"off"` (default).
    pub cors_preflight: Option<String>,
}

/// Accepts any scalar as a string. Environment overrides are parsed as TOML-like values,
/// so `PORTCULLIS_OIDC__CLIENT_SECRET=12345` arrives as an integer; a secret is still a string.
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Str(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| match s {
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }))
}
