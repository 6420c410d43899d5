//! The command line: `serve`, `check`, `explain`. Exit codes follow the contract:
//! 0 success / allowed, 1 error or invalid configuration, 3 denied (`explain`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use http::Method;
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::authz::{self, Decision};
use crate::config::{self, Config, EnvOverrides, LogFormat};
use crate::decision;
use crate::path;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An authenticating reverse proxy for OpenID Connect",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file [default: $PORTCULLIS_CONFIG, then ./gateway.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway
    Serve(ConfigArg),
    /// Validate the configuration offline; print every error and warning
    Check(ConfigArg),
    /// Show offline which rule decides a request, and the decision
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// HTTP method, such as GET
        method: String,
        /// Request path, with or without a query
        path: String,
        /// The request's host, for rules with a `host` (port and letter case are ignored)
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// A bearer token to judge; its signature is verified against the issuer's JWKS
        /// when the provider can be reached (see --offline), else only its claims are checked
        #[arg(long, value_name = "JWT")]
        token: Option<String>,
        /// Never contact the provider: check a --token's claims but not its signature
        #[arg(long, requires = "token")]
        offline: bool,
        /// A JSON file of claims to judge instead of a token (no signature checks)
        #[arg(long, value_name = "FILE.json", conflicts_with = "token")]
        claims: Option<PathBuf>,
    },
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let env = EnvOverrides::from_process();
    match cli.command {
        Command::Check(c) => check(&config::resolve_path(c.config.as_deref(), &env), &env),
        Command::Serve(c) => serve(&config::resolve_path(c.config.as_deref(), &env), &env),
        Command::Explain {
            config: c,
            method,
            path,
            host,
            token,
            offline,
            claims,
        } => explain(
            &config::resolve_path(c.config.as_deref(), &env),
            &env,
            &Request {
                method,
                target: path,
                host,
            },
            TokenSource {
                token,
                offline,
                claims,
            },
        ),
    }
}

fn load_or_print(path: &std::path::Path, env: &EnvOverrides) -> Option<Config> {
    match config::load(path, env) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{}: {} error(s); the configuration is invalid",
                path.display(),
                errors.0.len()
            );
            None
        }
    }
}

fn check(path: &std::path::Path, env: &EnvOverrides) -> ExitCode {
    let Some(cfg) = load_or_print(path, env) else {
        return ExitCode::from(1);
    };
    for w in &cfg.warnings {
        println!("{w}");
    }
    println!(
        "{}: configuration is valid ({} rule(s), {} warning(s))",
        path.display(),
        cfg.rules.rules().len(),
        cfg.warnings.len()
    );
    ExitCode::SUCCESS
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn serve(path: &std::path::Path, env: &EnvOverrides) -> ExitCode {
    let Some(cfg) = load_or_print(path, env) else {
        return ExitCode::from(1);
    };
    init_tracing(&cfg);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let signals = Signals::install();
        let running = match crate::server::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        let gw = running.gateway.clone();
        gw.metrics
            .set_config_hash(crate::server::reload::fingerprint(path, env).unwrap_or(0));
        tokio::spawn(crate::server::reload::watch(
            gw,
            path.to_path_buf(),
            env.clone(),
            std::time::Duration::from_secs(2),
            running.shutdown_handle().subscribe(),
        ));
        signals.wait().await;
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT, installed before the listeners open so that a signal sent as soon
/// as the gateway says it listens is never lost.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        // Registering SIGHUP once replaces its default action (terminate) for the life of
        // the process, so a reload signal sent early never kills the gateway; the reload
        // watcher listens for it later.
        #[cfg(unix)]
        drop(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ));
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
            #[cfg(unix)]
            int: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        if let (Some(term), Some(int)) = (self.term.as_mut(), self.int.as_mut()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The request `explain` judges.
struct Request {
    method: String,
    target: String,
    host: Option<String>,
}

/// Where `explain` gets the credential from.
struct TokenSource {
    token: Option<String>,
    offline: bool,
    claims: Option<PathBuf>,
}

fn explain(
    cfg_path: &std::path::Path,
    env: &EnvOverrides,
    req: &Request,
    credential: TokenSource,
) -> ExitCode {
    let Some(cfg) = load_or_print(cfg_path, env) else {
        return ExitCode::from(1);
    };
    let (method, target) = (req.method.as_str(), req.target.as_str());
    let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
        eprintln!("error: {method:?} is not an HTTP method");
        return ExitCode::from(1);
    };
    let host = match req.host.as_deref() {
        None => None,
        Some(h) => match crate::rules::host::request_host(h) {
            Some(host) => Some(host),
            None => {
                eprintln!("error: --host {h:?} is not a host name");
                return ExitCode::from(1);
            }
        },
    };
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    println!("request:  {method} {target}");
    if let Some(h) = &host {
        println!("host:     {h}");
    }
    let path = match path::normalize(raw_path, cfg.server.allow_path_params) {
        Ok(p) => p,
        Err(e) => {
            println!("path:     refused ({e})");
            println!("decision: deny (bad_path, 400)");
            return ExitCode::from(3);
        }
    };
    println!("path:     {path}");
    if crate::endpoints::route(&cfg.server.auth_prefix, path.as_str()).is_some() {
        println!(
            "rule:     none (reserved for the gateway's endpoints under {})",
            cfg.server.auth_prefix
        );
        println!("decision: handled by the gateway itself");
        return ExitCode::SUCCESS;
    }

    // The same two steps as the running gateway (`decision`): the rules first, since on
    // public rules a refused credential only means no identity.
    let selection = decision::select(&cfg.rules, &method, host.as_deref(), &path, query, &[]);
    let all_public = selection.as_ref().is_ok_and(|s| s.all_public());
    let identity = match identity_for(&cfg, credential) {
        Ok(id) => id,
        Err(msg) if all_public => {
            println!("identity: none ({msg}; a public rule ignores a refused credential)");
            None
        }
        Err(msg) => {
            println!("identity: {msg}");
            println!("decision: deny (invalid_token, 401)");
            return ExitCode::from(3);
        }
    };
    match &identity {
        None => println!("identity: none"),
        Some(id) => println!(
            "identity: {} (roles: {}; scopes: {})",
            id.user(),
            if id.roles.is_empty() {
                "-".into()
            } else {
                id.roles.join(",")
            },
            if id.scopes.is_empty() {
                "-".into()
            } else {
                id.scopes.join(" ")
            }
        ),
    }

    let selection = match selection {
        Ok(s) => s,
        Err(decision::SelectError::NoRule) => {
            println!("rule:     none matches {method} (or a method its _method asks for)");
            println!("decision: deny (no_rule, 403)");
            return ExitCode::from(3);
        }
        Err(decision::SelectError::Override(e)) => {
            println!("decision: deny (bad_request, 400): {e}");
            return ExitCode::from(3);
        }
    };
    for rule in selection.all() {
        println!("rule:     {}", rule.label());
    }
    if let Err(denied) = decision::judge(&selection, identity.as_ref()) {
        let status = match denied.reason {
            authz::DenyReason::Unauthenticated => 401,
            _ => 403,
        };
        println!(
            "decision: deny ({}, {status}): {}",
            denied.reason.code(),
            denied.reason.explain()
        );
        return ExitCode::from(3);
    }
    // The upstream of the request's own method's rule.
    if !cfg.upstreams.is_empty() {
        let rule = selection.rule;
        let (name, url) = match rule.upstream.and_then(|i| cfg.upstreams.get(i)) {
            Some(u) => (u.name.as_str(), &u.settings.url),
            None => ("[upstream]", &cfg.upstream.url),
        };
        println!("upstream: {name} ({url})");
    }
    let allowed = Decision::Allow(if identity.is_some() {
        authz::AllowReason::Authorized
    } else {
        authz::AllowReason::Public
    });
    println!("decision: allow ({})", allowed.reason());
    ExitCode::SUCCESS
}

fn identity_for(cfg: &Config, source: TokenSource) -> Result<Option<Identity>, String> {
    if let Some(file) = source.claims {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let map: Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a JSON object of claims: {e}", file.display()))?;
        return Ok(Some(Identity::from_claims(map, &cfg.tokens)));
    }
    let Some(token) = source.token else {
        return Ok(None);
    };
    let validator = crate::auth::bearer::BearerValidator::new(&cfg.oidc, &cfg.tokens);
    let claims = if source.offline {
        let claims = validator
            .check_offline(&token)
            .map_err(|e| format!("refused: {e}"))?;
        println!("token:    signature not verified (--offline); iss, aud, exp and nbf checked");
        claims
    } else {
        let rt = current_thread().map_err(|e| format!("cannot verify: {e}"))?;
        match live_keys(&rt, &cfg.oidc.issuer) {
            Ok(jwks) => {
                let claims = rt
                    .block_on(validator.validate(&token, &jwks))
                    .map_err(|e| format!("refused: {e}"))?;
                let from = jwks
                    .metadata()
                    .map(|m| m.jwks_uri.clone())
                    .unwrap_or_default();
                println!("token:    signature verified with the provider's keys ({from}); iss, aud, exp and nbf checked");
                claims
            }
            Err(why) => {
                let claims = validator
                    .check_offline(&token)
                    .map_err(|e| format!("refused: {e}"))?;
                println!("token:    signature not verified (the provider's keys cannot be fetched: {why}); iss, aud, exp and nbf checked");
                claims
            }
        }
    };
    Ok(Some(Identity::from_claims(claims, &cfg.tokens)))
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The issuer's keys, fetched once (discovery, then JWKS), within a few seconds.
fn live_keys(
    rt: &tokio::runtime::Runtime,
    issuer: &str,
) -> Result<std::sync::Arc<crate::auth::jwks::JwksCache>, String> {
    let jwks = crate::auth::jwks::JwksCache::new(
        issuer.to_owned(),
        crate::auth::provider::ProviderClient::new(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
    );
    let fetch = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), jwks.refresh()).await
    });
    match fetch {
        Ok(Ok(_)) => Ok(jwks),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    }
}
