//! Raw tree -> [`Config`]: parses durations, addresses and URLs, reads `*_file` secrets,
//! loads TLS material, compiles the rules. Every problem is pushed with its key path;
//! nothing returns early, so one run reports everything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use url::Url;

use super::diagnostics::{ConfigErrors, Diagnostics};
use super::raw::{RawConfig, RawHeaders, RawSession, RawTls};
use super::*;
use crate::assertion::SigningKey;
use crate::claims::ClaimPath;
use crate::header_names as hdr;
use crate::rules::{Access, Login};

const MIN_SESSION_SECRET: usize = 32;

/// Compiles the raw configuration, or returns every error found.
pub fn compile(raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut d = Diagnostics::default();

    let server = server(&raw, &mut d);
    let upstream = upstream(&raw, &mut d);
    let upstreams = named_upstreams(&raw, &upstream, &mut d);
    let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let rules = super::rules::build(
        &raw.rules,
        raw.server.case_insensitive_paths,
        &names,
        &mut d,
    );
    for (i, name) in names.iter().enumerate() {
        if !rules.rules().iter().any(|r| r.upstream == Some(i)) {
            d.warn(
                format!("upstreams.{name}"),
                "no rule names this upstream, so it never receives a request",
            );
        }
    }
    let login_rule = rules
        .rules()
        .iter()
        .find(|r| r.access == Access::Authenticated && r.login != Login::Deny)
        .map(|r| r.index);
    let oidc = oidc(&raw, login_rule, &mut d);
    let tokens = tokens(&raw, &oidc.client_id, &oidc.issuer, &mut d);
    let session = session(&raw.session, &server.public_url, login_rule, &mut d);
    let headers = headers(&raw.headers, &mut d);
    let replicated = session
        .as_ref()
        .is_some_and(|s| s.store == SessionStoreKind::Redis);
    if headers.assertion.is_some() && headers.assertion_key.is_none() && replicated {
        d.warn(
            "headers.assertion_key_file",
            "is not set: every replica signs assertions with its own generated key, and a verifier that fetches the JWKS from another replica cannot verify them; give every replica the same key file",
        );
    }
    rule_warnings(&rules, &server.auth_prefix, &tokens, &mut d);
    let log = log(&raw, &mut d);
    let telemetry = telemetry(&raw, &server.trusted_proxies, &mut d);

    if !d.errors.is_empty() {
        return Err(ConfigErrors(d.errors));
    }
    Ok(Config {
        server,
        upstream,
        upstreams,
        oidc,
        tokens,
        session,
        headers,
        log,
        telemetry,
        rules,
        warnings: d.warnings,
    })
}

pub(crate) fn duration(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    match value {
        None => default,
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(v) => v,
            Err(_) => {
                d.error(
                    key,
                    format!("{s:?} is not a duration such as \"500ms\", \"30s\", \"5m\" or \"8h\""),
                );
                default
            }
        },
    }
}

fn socket_addr(d: &mut Diagnostics, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
    let s = value.unwrap_or(default);
    match s.parse() {
        Ok(a) => a,
        Err(_) => {
            d.error(
                key,
                format!("{s:?} is not an address such as \"0.0.0.0:8080\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    }
}

fn http_url(d: &mut Diagnostics, key: &str, value: Option<&str>, default: Option<&str>) -> Url {
    let fallback = || {
        Url::parse("http://invalid.invalid/")
            .unwrap_or_else(|_| unreachable!("constant URL parses"))
    };
    let Some(s) = value.or(default) else {
        d.error(key, "missing");
        return fallback();
    };
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                d.error(key, format!("{s:?} must not have a query or fragment"));
            }
            if !u.username().is_empty() || u.password().is_some() {
                d.error(key, format!("{s:?} must not contain credentials"));
            }
            u
        }
        _ => {
            d.error(key, format!("{s:?} is not an http:// or https:// URL"));
            fallback()
        }
    }
}

/// A list of CIDRs (or single addresses), as `server.trusted_proxies` takes them.
fn cidrs(d: &mut Diagnostics, key: &str, list: &[String]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match p
            .parse::<IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(net) => out.push(net),
            Err(_) => d.error(
                format!("{key}[{i}]"),
                format!("{p:?} is not a CIDR such as \"10.0.0.0/8\" or an IP address"),
            ),
        }
    }
    out
}

fn read_secret(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&String>,
    file: Option<&String>,
) -> Option<Secret> {
    match (value, file) {
        (Some(_), Some(_)) => {
            d.error(key, format!("set {key} or {key}_file, not both"));
            None
        }
        (Some(v), None) => Some(Secret::new(v.clone())),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']).to_owned())),
            Err(e) => {
                d.error(format!("{key}_file"), format!("cannot read {path:?}: {e}"));
                None
            }
        },
        (None, None) => None,
    }
}

fn server(raw: &RawConfig, d: &mut Diagnostics) -> ServerSettings {
    let s = &raw.server;
    let listen = socket_addr(d, "server.listen", s.listen.as_deref(), "0.0.0.0:8080");
    let admin_listen = socket_addr(
        d,
        "server.admin_listen",
        s.admin_listen.as_deref(),
        "127.0.0.1:9090",
    );
    if listen == admin_listen && listen.port() != 0 {
        d.error(
            "server.admin_listen",
            "must differ from server.listen (the admin endpoints are never on the main listener)",
        );
    }
    let public_url = http_url(
        d,
        "server.public_url",
        s.public_url.as_deref(),
        Some("http://localhost:8080"),
    );
    if public_url.path() != "/" {
        d.error(
            "server.public_url",
            format!(
                "{:?} must not have a path; the gateway is served at the root",
                public_url.as_str()
            ),
        );
    }

    let auth_prefix = s
        .auth_prefix
        .clone()
        .unwrap_or_else(|| "/oauth2".to_owned());
    let prefix_ok = auth_prefix.len() > 1
        && !auth_prefix.ends_with('/')
        && !auth_prefix.contains('*')
        && matches!(crate::path::normalize(&auth_prefix, false), Ok(ref n) if n.as_str() == auth_prefix);
    if !prefix_ok {
        d.error("server.auth_prefix", format!("{auth_prefix:?} must be a normalized path such as \"/oauth2\" (not \"/\", no trailing \"/\")"));
    }

    let trusted_proxies = cidrs(d, "server.trusted_proxies", &s.trusted_proxies);

    let max_header_bytes = s.max_header_bytes.unwrap_or(16 * 1024);
    if !(8192..=1024 * 1024).contains(&max_header_bytes) {
        d.error(
            "server.max_header_bytes",
            format!("{max_header_bytes} must be between 8192 and 1048576"),
        );
    }

    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        d.error("server.max_connections", "must be at least 1");
    }

    let runtime = match s.runtime.as_deref() {
        None | Some("per-core") => RuntimeKind::PerCore,
        Some("shared") => RuntimeKind::Shared,
        Some(other) => {
            d.error(
                "server.runtime",
                format!("{other:?} must be \"per-core\" or \"shared\""),
            );
            RuntimeKind::Shared
        }
    };
    let workers = s.workers.unwrap_or_else(default_workers);
    if !(1..=1024).contains(&workers) {
        d.error(
            "server.workers",
            format!("{workers} must be between 1 and 1024"),
        );
    }

    let admin_token = read_secret(
        d,
        "server.admin_token",
        s.admin_token.as_ref(),
        s.admin_token_file.as_ref(),
    );
    if admin_token
        .as_ref()
        .is_some_and(|t| t.expose().len() < MIN_ADMIN_TOKEN)
    {
        d.error(
            "server.admin_token",
            format!("must be at least {MIN_ADMIN_TOKEN} bytes long"),
        );
    }
    ServerSettings {
        admin_token,
        listen,
        public_url,
        admin_listen,
        auth_prefix,
        trusted_proxies,
        shutdown_grace: duration(
            d,
            "server.shutdown_grace",
            s.shutdown_grace.as_deref(),
            Duration::from_secs(10),
        ),
        case_insensitive_paths: s.case_insensitive_paths,
        allow_path_params: s.allow_path_params,
        max_header_bytes,
        header_read_timeout: duration(
            d,
            "server.header_read_timeout",
            s.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        max_connections: max_connections.max(1),
        runtime,
        workers: workers.clamp(1, 1024),
        tls: s.tls.as_ref().and_then(|t| tls(t, d)),
    }
}

/// `server.workers` when unset: the CPUs this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The shortest `server.admin_token` accepted.
const MIN_ADMIN_TOKEN: usize = 24;

/// `server.max_connections` when unset: above the 10 000 idle keep-alive connections
/// the gateway is measured with, below common file-descriptor limits of service managers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

fn tls(t: &RawTls, d: &mut Diagnostics) -> Option<TlsSettings> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        if t.cert_file.is_none() {
            d.error(
                "server.tls.cert_file",
                "missing (both cert_file and key_file are needed for TLS)",
            );
        }
        if t.key_file.is_none() {
            d.error(
                "server.tls.key_file",
                "missing (both cert_file and key_file are needed for TLS)",
            );
        }
        return None;
    };
    let certs: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_file_iter(cert_file).and_then(|it| it.collect());
    let certs = match certs {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            d.error(
                "server.tls.cert_file",
                format!("{cert_file:?} holds no PEM certificate"),
            );
            return None;
        }
        Err(e) => {
            d.error(
                "server.tls.cert_file",
                format!("cannot read certificates from {cert_file:?}: {e}"),
            );
            return None;
        }
    };
    let key = match PrivateKeyDer::from_pem_file(key_file) {
        Ok(k) => k,
        Err(e) => {
            d.error(
                "server.tls.key_file",
                format!("cannot read a private key from {key_file:?}: {e}"),
            );
            return None;
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = match rustls::sign::CertifiedKey::from_der(certs, key, &provider) {
        Ok(ck) => Arc::new(ck),
        Err(e) => {
            d.error(
                "server.tls.key_file",
                format!("the key does not fit the certificate: {e}"),
            );
            return None;
        }
    };
    let resolver = Arc::new(ReloadableCert::new(certified.clone()));
    let builder = match rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => {
            d.error("server.tls", format!("cannot set up TLS: {e}"));
            return None;
        }
    };
    let mut cfg = builder
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(TlsSettings {
        config: Arc::new(cfg),
        certified,
        resolver,
        files: vec![cert_file.into(), key_file.into()],
    })
}

fn upstream(raw: &RawConfig, d: &mut Diagnostics) -> UpstreamSettings {
    let u = &raw.upstream;
    UpstreamSettings {
        url: http_url(d, "upstream.url", u.url.as_deref(), None),
        timeout: duration(
            d,
            "upstream.timeout",
            u.timeout.as_deref(),
            Duration::from_secs(30),
        ),
        connect_timeout: duration(
            d,
            "upstream.connect_timeout",
            u.connect_timeout.as_deref(),
            Duration::from_secs(5),
        ),
        http2: u.http2,
    }
}

/// `[upstreams.NAME]`: like `[upstream]`; unset timeouts are `[upstream]`'s.
fn named_upstreams(
    raw: &RawConfig,
    default: &UpstreamSettings,
    d: &mut Diagnostics,
) -> Vec<NamedUpstream> {
    let mut out = Vec::with_capacity(raw.upstreams.len());
    for (name, u) in &raw.upstreams {
        let key = |field: &str| format!("upstreams.{name}.{field}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            d.error(
                format!("upstreams.{name}"),
                "an upstream name may only have letters, digits, '_' and '-' (at most 64)",
            );
            continue;
        }
        out.push(NamedUpstream {
            name: name.clone(),
            settings: UpstreamSettings {
                url: http_url(d, &key("url"), u.url.as_deref(), None),
                timeout: duration(d, &key("timeout"), u.timeout.as_deref(), default.timeout),
                connect_timeout: duration(
                    d,
                    &key("connect_timeout"),
                    u.connect_timeout.as_deref(),
                    default.connect_timeout,
                ),
                http2: u.http2,
            },
        });
    }
    out
}

fn oidc(raw: &RawConfig, login_rule: Option<usize>, d: &mut Diagnostics) -> OidcSettings {
    let o = &raw.oidc;
    let issuer = match &o.issuer {
        None => {
            d.error("oidc.issuer", "missing; the provider's issuer URL, such as \"http://localhost:8180/realms/myorg\"");
            String::new()
        }
        Some(s) => issuer_url(d, "oidc.issuer", s),
    };
    let client_id = match &o.client_id {
        Some(c) if !c.is_empty() => c.clone(),
        _ => {
            d.error(
                "oidc.client_id",
                "missing; the client id registered at the provider, such as \"gateway\"",
            );
            String::new()
        }
    };
    let client_secret = read_secret(
        d,
        "oidc.client_secret",
        o.client_secret.as_ref(),
        o.client_secret_file.as_ref(),
    );
    if let (None, Some(i)) = (&client_secret, login_rule) {
        d.error("oidc.client_secret", format!("missing, and rule[{i}] may log a browser in (set it, or set login = \"deny\" on such rules)"));
    }
    let scopes = o
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        d.error("oidc.scopes", "must include \"openid\"");
    }
    OidcSettings {
        issuer,
        client_id,
        client_secret,
        scopes,
    }
}

fn tokens(
    raw: &RawConfig,
    client_id: &str,
    oidc_issuer: &str,
    d: &mut Diagnostics,
) -> TokenSettings {
    let t = &raw.tokens;
    let audiences = t
        .audiences
        .clone()
        .unwrap_or_else(|| vec![client_id.to_owned()]);
    if audiences.is_empty() {
        d.warn("tokens.audiences", "is empty, so the \"aud\" claim of bearer tokens is not checked; any token of the issuer is accepted");
    }
    let names = t.algorithms.clone().unwrap_or_else(|| vec!["RS256".into()]);
    let algorithms = algorithms(d, "tokens.algorithms", &names);
    let default_roles = vec![
        "realm_access.roles".to_owned(),
        format!("resource_access.{client_id}.roles"),
    ];
    let roles_claims = t
        .roles_claims
        .clone()
        .unwrap_or_else(|| default_roles.clone());
    let paths = claim_paths(d, "tokens.roles_claims", &roles_claims);
    let jwks_refresh = duration(
        d,
        "tokens.jwks_refresh",
        t.jwks_refresh.as_deref(),
        Duration::from_secs(300),
    );
    if jwks_refresh < Duration::from_secs(10) {
        d.error("tokens.jwks_refresh", "must be at least \"10s\"");
    }
    let issuers = issuers(raw, oidc_issuer, &audiences, &names, &default_roles, d);
    TokenSettings {
        audiences,
        algorithms,
        leeway: duration(
            d,
            "tokens.leeway",
            t.leeway.as_deref(),
            Duration::from_secs(30),
        ),
        roles_claims: paths,
        jwks_refresh,
        cache_size: t.cache_size.unwrap_or(10_000),
        introspection: t.introspection.unwrap_or(false),
        introspection_ttl: {
            let ttl = duration(
                d,
                "tokens.introspection_ttl",
                t.introspection_ttl.as_deref(),
                Duration::from_secs(60),
            );
            if ttl.is_zero() && t.introspection_cache_size != Some(0) {
                d.error("tokens.introspection_ttl", "must be more than 0s (set introspection_cache_size = 0 to ask the provider for every request)");
            }
            ttl
        },
        introspection_cache_size: t.introspection_cache_size.unwrap_or(10_000),
        dpop: match t.dpop.as_deref() {
            None | Some("allow") => DpopMode::Allow,
            Some("off") => DpopMode::Off,
            Some("require") => DpopMode::Require,
            Some(other) => {
                d.error(
                    "tokens.dpop",
                    format!("{other:?} is not one of \"off\", \"allow\", \"require\""),
                );
                DpopMode::Allow
            }
        },
        issuers,
    }
}

/// `[[tokens.issuers]]`: each with a distinct issuer URL (also distinct from
/// `oidc.issuer`); audiences, algorithms and role paths default to those of `[tokens]`.
fn issuers(
    raw: &RawConfig,
    oidc_issuer: &str,
    audiences: &[String],
    algorithm_names: &[String],
    default_roles: &[String],
    d: &mut Diagnostics,
) -> Vec<IssuerSettings> {
    let mut out: Vec<IssuerSettings> = Vec::new();
    for (i, r) in raw.tokens.issuers.iter().flatten().enumerate() {
        let key = |k: &str| format!("tokens.issuers[{i}].{k}");
        let issuer = match &r.issuer {
            None => {
                d.error(
                    key("issuer"),
                    "missing; the issuer URL its tokens carry in \"iss\"",
                );
                continue;
            }
            Some(s) => issuer_url(d, &key("issuer"), s),
        };
        if issuer == oidc_issuer {
            d.error(
                key("issuer"),
                "is oidc.issuer, whose tokens are already accepted; list only further issuers",
            );
        } else if let Some(j) = out.iter().position(|o| o.issuer == issuer) {
            d.error(key("issuer"), format!("repeats tokens.issuers[{j}].issuer"));
        }
        let auds = r.audiences.clone().unwrap_or_else(|| audiences.to_vec());
        if auds.is_empty() {
            d.warn(
                key("audiences"),
                "is empty, so the \"aud\" claim of this issuer's tokens is not checked",
            );
        }
        let names = r
            .algorithms
            .clone()
            .unwrap_or_else(|| algorithm_names.to_vec());
        let roles = r
            .roles_claims
            .clone()
            .unwrap_or_else(|| default_roles.to_vec());
        out.push(IssuerSettings {
            issuer,
            audiences: auds,
            algorithms: algorithms(d, &key("algorithms"), &names),
            roles_claims: claim_paths(d, &key("roles_claims"), &roles),
        });
    }
    out
}

/// An issuer URL: http(s), a host, no query or fragment. Kept as written (`iss` is
/// compared with it byte for byte).
fn issuer_url(d: &mut Diagnostics, key: &str, s: &str) -> String {
    match Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none() => {}
        _ => d.error(
            key,
            format!("{s:?} is not an http:// or https:// URL without query"),
        ),
    }
    s.to_owned()
}

/// A non-empty allow-list of asymmetric signing algorithms.
fn algorithms(d: &mut Diagnostics, key: &str, names: &[String]) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    if names.is_empty() {
        d.error(
            key,
            "is empty; list the signing algorithms to accept, such as [\"RS256\"]",
        );
    }
    for (i, name) in names.iter().enumerate() {
        let key = format!("{key}[{i}]");
        match name.as_str() {
            "RS256" => algorithms.push(Algorithm::RS256),
            "RS384" => algorithms.push(Algorithm::RS384),
            "RS512" => algorithms.push(Algorithm::RS512),
            "PS256" => algorithms.push(Algorithm::PS256),
            "PS384" => algorithms.push(Algorithm::PS384),
            "PS512" => algorithms.push(Algorithm::PS512),
            "ES256" => algorithms.push(Algorithm::ES256),
            "ES384" => algorithms.push(Algorithm::ES384),
            "EdDSA" => algorithms.push(Algorithm::EdDSA),
            n if n.eq_ignore_ascii_case("none") || n.to_ascii_uppercase().starts_with("HS") => d.error(
                key,
                format!("{n:?} is never accepted: tokens are checked against the provider's public keys"),
            ),
            n => d.error(key, format!("{n:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA")),
        }
    }
    algorithms
}

/// Claim dot paths, each error naming its index.
fn claim_paths(d: &mut Diagnostics, key: &str, paths: &[String]) -> Vec<ClaimPath> {
    let mut out = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        match ClaimPath::parse(p) {
            Ok(cp) => out.push(cp),
            Err(msg) => d.error(format!("{key}[{i}]"), msg),
        }
    }
    out
}

/// A `redis://` or `rediss://` URL with a host; the message never repeats it (it may hold
/// a password).
fn redis_url_ok(d: &mut Diagnostics, key: &str, u: Secret) -> Option<Secret> {
    match Url::parse(u.expose()) {
        Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.host().is_some() => Some(u),
        _ => {
            d.error(key, "is not a redis://host[:port][/db] or rediss:// URL");
            None
        }
    }
}

/// `session.redis_url` / `redis_url_file` (one Redis) or `redis_urls` (a Redis Cluster),
/// checked offline.
fn redis_urls(
    s: &RawSession,
    store: SessionStoreKind,
    d: &mut Diagnostics,
) -> (Option<Secret>, Vec<Secret>) {
    let url = read_secret(
        d,
        "session.redis_url",
        s.redis_url.as_ref(),
        s.redis_url_file.as_ref(),
    );
    let cluster: Vec<Secret> = s
        .redis_urls
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, u)| {
            redis_url_ok(
                d,
                &format!("session.redis_urls[{i}]"),
                Secret::new(u.clone()),
            )
        })
        .collect();
    if url.is_some() && s.redis_urls.is_some() {
        d.error(
            "session.redis_urls",
            "set session.redis_url (one Redis) or session.redis_urls (a Redis Cluster), not both",
        );
    }
    if s.redis_urls.as_ref().is_some_and(Vec::is_empty) {
        d.error("session.redis_urls", "is empty");
    }
    let url = url.and_then(|u| redis_url_ok(d, "session.redis_url", u));
    if store == SessionStoreKind::Redis
        && url.is_none()
        && s.redis_urls.is_none()
        && !d.has_error("session.redis_url")
    {
        d.error(
            "session.redis_url",
            "missing; session.store = \"redis\" needs it (or session.redis_urls)",
        );
    }
    (url, cluster)
}

/// `session.previous_secrets`: each as long as a secret must be, none the current one.
fn previous_secrets(s: &RawSession, current: &Secret, d: &mut Diagnostics) -> Vec<Secret> {
    let mut out = Vec::new();
    for (i, old) in s.previous_secrets.iter().enumerate() {
        let key = format!("session.previous_secrets[{i}]");
        if old.len() < MIN_SESSION_SECRET {
            d.error(
                key,
                format!("must be at least {MIN_SESSION_SECRET} bytes long"),
            );
        } else if old == current.expose() {
            d.error(
                key,
                "is the current session.secret (list only older secrets)",
            );
        } else {
            out.push(Secret::new(old.clone()));
        }
    }
    out
}

fn session(
    s: &RawSession,
    public_url: &Url,
    login_rule: Option<usize>,
    d: &mut Diagnostics,
) -> Option<SessionSettings> {
    let secret = read_secret(
        d,
        "session.secret",
        s.secret.as_ref(),
        s.secret_file.as_ref(),
    );
    let cookie_name = s
        .cookie_name
        .clone()
        .unwrap_or_else(|| "portcullis".to_owned());
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        d.error(
            "session.cookie_name",
            format!("{cookie_name:?} must be letters, digits, '_' or '-'"),
        );
    }
    let lifetime = duration(
        d,
        "session.lifetime",
        s.lifetime.as_deref(),
        Duration::from_secs(8 * 3600),
    );
    let secure = s.secure.unwrap_or(public_url.scheme() == "https");
    let same_site = match s
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => {
            if !secure {
                d.error(
                    "session.same_site",
                    "\"none\" needs session.secure = true (browsers refuse it otherwise)",
                );
            }
            SameSite::None
        }
        Some(other) => {
            d.error(
                "session.same_site",
                format!("{other:?} is not one of \"lax\", \"strict\", \"none\""),
            );
            SameSite::Lax
        }
    };
    let store = match s.store.as_deref() {
        None | Some("cookie") => SessionStoreKind::Cookie,
        Some("redis") => SessionStoreKind::Redis,
        Some(other) => {
            d.error(
                "session.store",
                format!("{other:?} is not one of \"cookie\", \"redis\""),
            );
            SessionStoreKind::Cookie
        }
    };
    let (redis_url, redis_urls) = redis_urls(s, store, d);
    let state_dir = state_dir(s.state_dir.as_deref(), d);
    let websocket_check = duration(
        d,
        "session.websocket_check",
        s.websocket_check.as_deref(),
        Duration::from_secs(30),
    );
    if websocket_check < Duration::from_secs(1) {
        d.error(
            "session.websocket_check",
            "must be at least 1s (every open WebSocket checks its session this often)",
        );
    }
    match secret {
        Some(secret) => {
            if secret.expose().len() < MIN_SESSION_SECRET {
                d.error(
                    "session.secret",
                    format!("must be at least {MIN_SESSION_SECRET} bytes long"),
                );
            }
            let previous_secrets = previous_secrets(s, &secret, d);
            if store == SessionStoreKind::Cookie && s.state_dir.is_none() {
                d.warn(
                    "session.state_dir",
                    "not set, so with the cookie store a restart forgets every logout: a copy of a logged-out session cookie is accepted again until the session expires (set session.state_dir to a directory the gateway may write)",
                );
            }
            Some(SessionSettings {
                previous_secrets,
                secret,
                cookie_name,
                lifetime,
                secure,
                same_site,
                refresh: s.refresh.unwrap_or(true),
                store,
                redis_url,
                redis_urls,
                redis_key_prefix: s
                    .redis_key_prefix
                    .clone()
                    .unwrap_or_else(|| "portcullis:".to_owned()),
                state_dir,
                outlive_access_token: s.outlive_access_token.unwrap_or(false),
                websocket_check,
            })
        }
        None => {
            if let Some(i) = login_rule {
                d.error("session.secret", format!("missing, and rule[{i}] may log a browser in (set it, or set login = \"deny\" on such rules)"));
            }
            None
        }
    }
}

/// `session.state_dir`: a directory that exists or can be created, and is writable. The
/// check writes (and removes) a probe file in it, or in the closest existing parent when
/// it does not exist yet; nothing is created otherwise.
fn state_dir(value: Option<&str>, d: &mut Diagnostics) -> Option<PathBuf> {
    let key = "session.state_dir";
    let value = value?;
    if value.is_empty() {
        d.error(
            key,
            "is empty (leave it out to keep revocations in memory only)",
        );
        return None;
    }
    let path = PathBuf::from(value);
    let mut probe_dir = path.as_path();
    loop {
        match std::fs::metadata(probe_dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                let what = if probe_dir == path {
                    format!("{value:?} is not a directory")
                } else {
                    format!(
                        "{value:?} cannot be created: {} is not a directory",
                        probe_dir.display()
                    )
                };
                d.error(key, what);
                return None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match probe_dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => probe_dir = p,
                    // A relative path whose first component is missing: the working
                    // directory is where it would be created.
                    _ => {
                        probe_dir = std::path::Path::new(".");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                d.error(
                    key,
                    format!("{value:?} cannot be created: a parent is not a directory"),
                );
                return None;
            }
            Err(e) => {
                d.error(key, format!("{value:?} cannot be read: {e}"));
                return None;
            }
        }
    }
    let probe = probe_dir.join(format!(
        ".portcullis-check-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Some(path)
        }
        Err(e) => {
            d.error(
                key,
                format!("{value:?} is not writable ({}: {e})", probe_dir.display()),
            );
            None
        }
    }
}

fn header_name(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Option<HeaderName> {
    let s = value.unwrap_or(default);
    if s.is_empty() {
        return None;
    }
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) if hdr::is_reserved(&h) => {
            d.error(
                key,
                format!("{s:?} is a header the gateway or HTTP itself controls"),
            );
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            d.error(key, format!("{s:?} is not a valid header name"));
            None
        }
    }
}

fn headers(h: &RawHeaders, d: &mut Diagnostics) -> HeaderSettings {
    let access_token = match h.access_token.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("authorization") => Some(http::header::AUTHORIZATION),
        other => header_name(d, "headers.access_token", other, ""),
    };
    let mut out = HeaderSettings {
        user: header_name(d, "headers.user", h.user.as_deref(), "X-Auth-User"),
        email: header_name(d, "headers.email", h.email.as_deref(), "X-Auth-Email"),
        subject: header_name(d, "headers.subject", h.subject.as_deref(), "X-Auth-Subject"),
        roles: header_name(d, "headers.roles", h.roles.as_deref(), "X-Auth-Roles"),
        scopes: header_name(d, "headers.scopes", h.scopes.as_deref(), "X-Auth-Scopes"),
        access_token,
        claims: Vec::new(),
        assertion: header_name(d, "headers.assertion", h.assertion.as_deref(), ""),
        assertion_key: None,
        assertion_key_file: None,
    };
    if let Some(file) = &h.assertion_key_file {
        let key = "headers.assertion_key_file";
        match std::fs::read_to_string(file) {
            Ok(pem) => match SigningKey::from_pem(&pem) {
                Ok(k) => {
                    out.assertion_key = Some(Arc::new(k));
                    out.assertion_key_file = Some(PathBuf::from(file));
                }
                Err(e) => d.error(key, format!("{file:?} {e}")),
            },
            Err(e) => d.error(key, format!("cannot read {file:?}: {e}")),
        }
        if out.assertion.is_none() {
            d.warn(
                key,
                "is set but headers.assertion is not, so no assertion is sent",
            );
        }
    }
    for (name, path) in &h.claims {
        let key = format!("headers.claims.{name:?}");
        let header = header_name(d, &key, Some(name), "");
        match (header, ClaimPath::parse(path)) {
            (Some(hn), Ok(cp)) => out.claims.push((hn, cp)),
            (_, Err(msg)) => d.error(key, msg),
            (None, Ok(_)) => {}
        }
    }
    // The same header twice would let one value overwrite another.
    let mut seen: Vec<String> = Vec::new();
    for name in out.identity_names() {
        let spelled = hdr::spelling_key(name.as_str());
        if seen.contains(&spelled) {
            d.error(
                "headers",
                format!("{name} is configured twice (also counting _ and . spellings)"),
            );
        }
        seen.push(spelled);
    }
    out
}

fn log(raw: &RawConfig, d: &mut Diagnostics) -> LogSettings {
    let format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            d.error(
                "log.format",
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            LogFormat::Text
        }
    };
    let level = raw.log.level.clone().unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        d.error(
            "log.level",
            format!("{level:?} is not a log filter such as \"info\" or \"portcullis=debug\""),
        );
    }
    LogSettings { format, level }
}

/// `[telemetry]`: `None` (no traces) without `otlp_endpoint`.
fn telemetry(
    raw: &RawConfig,
    trusted_proxies: &[IpNet],
    d: &mut Diagnostics,
) -> Option<TelemetrySettings> {
    let t = &raw.telemetry;
    let Some(endpoint) = t.otlp_endpoint.as_deref() else {
        let set = [
            ("telemetry.otlp_protocol", t.otlp_protocol.is_some()),
            ("telemetry.otlp_timeout", t.otlp_timeout.is_some()),
            ("telemetry.service_name", t.service_name.is_some()),
            (
                "telemetry.trust_traceparent_from",
                t.trust_traceparent_from.is_some(),
            ),
        ];
        for (key, _) in set.iter().filter(|(_, is_set)| *is_set) {
            d.warn(
                *key,
                "has no effect without telemetry.otlp_endpoint (no traces are sent)",
            );
        }
        return None;
    };
    let base = http_url(d, "telemetry.otlp_endpoint", Some(endpoint), None);
    // As OTEL_EXPORTER_OTLP_ENDPOINT: the base URL, to which the signal's path is added.
    let traces_url = base
        .join(&format!("{}/v1/traces", base.path().trim_end_matches('/')))
        .unwrap_or(base);
    let protocol = match t.otlp_protocol.as_deref() {
        None | Some("http/protobuf") => OtlpProtocol::Protobuf,
        Some("http/json") => OtlpProtocol::Json,
        Some(other) => {
            d.error(
                "telemetry.otlp_protocol",
                format!("{other:?} is not one of \"http/protobuf\", \"http/json\" (gRPC is not supported)"),
            );
            OtlpProtocol::Protobuf
        }
    };
    let timeout = duration(
        d,
        "telemetry.otlp_timeout",
        t.otlp_timeout.as_deref(),
        Duration::from_secs(10),
    );
    if timeout.is_zero() {
        d.error("telemetry.otlp_timeout", "must be more than 0s");
    }
    let service_name = t
        .service_name
        .clone()
        .unwrap_or_else(|| "portcullis".to_owned());
    if service_name.trim().is_empty() {
        d.error("telemetry.service_name", "must not be empty");
    }
    let trust_traceparent_from = match &t.trust_traceparent_from {
        Some(list) => cidrs(d, "telemetry.trust_traceparent_from", list),
        None => trusted_proxies.to_vec(),
    };
    Some(TelemetrySettings {
        traces_url,
        protocol,
        timeout,
        service_name,
        trust_traceparent_from,
    })
}

/// Rules that are valid but cannot do what they seem to say.
fn rule_warnings(
    rules: &crate::rules::RuleTable,
    auth_prefix: &str,
    tokens: &TokenSettings,
    d: &mut Diagnostics,
) {
    let mut under_prefix_rules = Vec::new();
    for r in rules.rules() {
        let literal = match &r.pattern {
            crate::rules::pattern::PathPattern::Exact(p) => p.clone(),
            pat @ crate::rules::pattern::PathPattern::Wild { .. } => {
                format!("/{}", pat.literal_prefix().join("/"))
            }
        };
        let under_prefix =
            literal == auth_prefix || literal.starts_with(&format!("{auth_prefix}/"));
        if under_prefix {
            under_prefix_rules.push(r.index);
            d.warn(
                format!("rule[{}].path", r.index),
                format!("{:?} is under server.auth_prefix ({auth_prefix}); the gateway's own endpoints answer there, so this rule never applies", r.path),
            );
        }
        if (!r.roles.is_empty() || !r.any_roles.is_empty()) && tokens.roles_claims.is_empty() {
            d.warn(
                format!("rule[{}].roles", r.index),
                "tokens.roles_claims is empty, so no credential can have roles and this rule always denies",
            );
        }
    }
    for (index, winners) in crate::rules::shadowed(rules) {
        if under_prefix_rules.contains(&index) {
            continue;
        }
        let by: Vec<String> = winners
            .iter()
            .filter_map(|&i| rules.rules().iter().find(|r| r.index == i))
            .map(|r| r.label())
            .collect();
        let path = rules
            .rules()
            .iter()
            .find(|r| r.index == index)
            .map(|r| r.path.as_str())
            .unwrap_or_default();
        d.warn(
            format!("rule[{index}].path"),
            format!(
                "{path:?} is shadowed: every request it matches is decided by a more specific rule ({}), so it never applies",
                by.join(", ")
            ),
        );
    }
}
