//! The command line: `serve`, `check`, `explain`, and `init` (a starter configuration).
//! Exit codes follow the contract: 0 success / allowed, 1 error or invalid configuration,
//! 3 denied (`explain`); clap's own usage errors are 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use http::Method;
use serde_json::{Map, Value};

use crate::authz::AllowReason;
use crate::config::{self, Config, EnvOverrides, RuntimeKind};
use crate::decision::{Refusal, SelectError, Verdict};
use crate::explain::{Explanation, Source};

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
        /// A request header, such as "Origin: https://app.example" (repeatable; with
        /// Access-Control-Request-Method it makes an OPTIONS a CORS preflight). The
        /// credential comes from --token or --claims only
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Write a starter gateway.toml from the provider's discovery document
    Init(InitArgs),
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The provider's issuer URL; its discovery document must name exactly this issuer
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// The client id registered at the provider for the gateway
    #[arg(long, value_name = "ID")]
    client_id: String,
    /// The service to protect
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:3000")]
    upstream: String,
    /// How browsers reach the gateway (the login's redirect URI is built from it)
    #[arg(long, value_name = "URL", default_value = "http://localhost:8080")]
    public_url: String,
    /// Where to write the configuration; the secret files go beside it
    #[arg(short = 'o', long, value_name = "FILE", default_value = "gateway.toml")]
    output: PathBuf,
    /// Overwrite the output file if it exists
    #[arg(long)]
    force: bool,
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let env = EnvOverrides::from_process();
    match cli.command {
        Command::Check(c) => check(&config::resolve_path(c.config.as_deref(), &env), &env),
        Command::Serve(c) => serve(&config::resolve_path(c.config.as_deref(), &env), &env),
        Command::Init(args) => init(args),
        Command::Explain {
            config: c,
            method,
            path,
            host,
            token,
            offline,
            claims,
            headers,
        } => explain(
            &config::resolve_path(c.config.as_deref(), &env),
            &env,
            &Request {
                method,
                target: path,
                host,
                headers,
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

fn serve(path: &std::path::Path, env: &EnvOverrides) -> ExitCode {
    let Some(cfg) = load_or_print(path, env) else {
        return ExitCode::from(1);
    };
    let logs = crate::logging::init(&cfg);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    // With `server.runtime = "per-core"` the workers have runtimes of their own; this
    // one runs the admin listener and the background tasks.
    let threads = match cfg.server.runtime {
        RuntimeKind::Shared => cfg.server.workers,
        RuntimeKind::PerCore => 1,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logs.flush();
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let signals = Signals::install();
        let running = match crate::server::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                logs.flush();
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

/// `portcullis init`: discovery, then the starter file and what to do next.
fn init(args: InitArgs) -> ExitCode {
    match try_init(args) {
        Ok(steps) => {
            print!("{steps}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn try_init(args: InitArgs) -> Result<String, crate::init::InitError> {
    use crate::init::{self, InitError, Starter};
    let starter = Starter::new(
        &args.issuer,
        &args.client_id,
        &args.upstream,
        &args.public_url,
        args.output,
    )?;
    // Before any network work; the write itself checks again (create_new).
    if !args.force && starter.output.exists() {
        return Err(InitError::Exists(starter.output));
    }
    let rt = current_thread().map_err(InitError::Runtime)?;
    let client = crate::auth::provider::ProviderClient::new();
    let discovery = rt.block_on(init::discover(&client, &starter.issuer))?;
    init::write(
        &starter.output,
        &init::render(&starter, &discovery),
        args.force,
    )?;
    Ok(init::next_steps(&starter))
}

/// The request `explain` judges.
struct Request {
    method: String,
    target: String,
    host: Option<String>,
    /// `--header` values, `NAME: VALUE`.
    headers: Vec<String>,
}

/// The `--header` values as a header map; a credential header is refused (the credential
/// comes from `--token` or `--claims`, so that it is judged as given).
fn request_headers(given: &[String]) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for h in given {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("--header {h:?} is not \"NAME: VALUE\""));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header {h:?}: not a valid header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header {h:?}: not a valid header value"))?;
        if [AUTHORIZATION, COOKIE, crate::header_names::DPOP].contains(&name) {
            return Err(format!(
                "--header {name}: give the credential with --token or --claims"
            ));
        }
        out.append(name, value);
    }
    Ok(out)
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
    let headers = match request_headers(&req.headers) {
        Ok(h) => h,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(1);
        }
    };
    let rt = match current_thread() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    println!("request:  {method} {target}");
    if let Some(h) = &host {
        println!("host:     {h}");
    }
    let source = source_for(&rt, &cfg, credential).unwrap_or_else(|msg| {
        println!("claims:   {msg}");
        Source::Unreadable
    });
    let explained = rt.block_on(crate::explain::explain_with_headers(
        &cfg,
        &method,
        target,
        host.as_deref(),
        &headers,
        source,
    ));
    let (path, verdict) = match explained {
        Explanation::BadPath(e) => {
            println!("path:     refused ({e})");
            println!("decision: deny (bad_path, 400)");
            return ExitCode::from(3);
        }
        Explanation::Endpoint(path) => {
            println!("path:     {path}");
            println!(
                "rule:     none (reserved for the gateway's endpoints under {})",
                cfg.server.auth_prefix
            );
            println!("decision: handled by the gateway itself");
            return ExitCode::SUCCESS;
        }
        Explanation::Decided { path, verdict } => (path, verdict),
    };
    println!("path:     {path}");
    print_verdict(&cfg, &verdict)
}

/// Prints the identity, the rules and the decision; the exit code says allowed or not.
fn print_verdict(cfg: &Config, verdict: &Verdict<'_>) -> ExitCode {
    let status = verdict.status().as_u16();
    let reason = verdict.reason();
    match (&verdict.identity, &verdict.refused) {
        _ if matches!(verdict.outcome, Ok(AllowReason::CorsPreflight)) => println!(
            "identity: not judged (a CORS preflight, on a rule with cors_preflight = \"allow\")"
        ),
        (_, Some(e)) if verdict.outcome.is_ok() => {
            println!("identity: none (refused: {e}; a public rule ignores a refused credential)")
        }
        (_, Some(e)) => println!("identity: refused: {e}"),
        (None, None) if verdict.selection.is_none() => {
            println!("identity: not checked (no rule was selected)")
        }
        (None, None) => println!("identity: none"),
        (Some(id), None) => println!(
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
    let Some(selection) = &verdict.selection else {
        match &verdict.outcome {
            Err(Refusal::Select(SelectError::Override(e))) => {
                println!("decision: deny ({reason}, {status}): {e}")
            }
            _ => {
                println!("rule:     none matches (the method, or a method its _method asks for)");
                println!("decision: deny ({reason}, {status})");
            }
        }
        return ExitCode::from(3);
    };
    for rule in selection.all() {
        println!("rule:     {}", rule.label());
    }
    match &verdict.outcome {
        Err(Refusal::Rule(denied)) => {
            println!(
                "decision: deny ({reason}, {status}): {}",
                denied.reason.explain()
            );
            return ExitCode::from(3);
        }
        Err(_) => {
            println!("decision: deny ({reason}, {status})");
            return ExitCode::from(3);
        }
        Ok(_) => {}
    }
    // The upstream of the request's own method's rule.
    if !cfg.upstreams.is_empty() {
        let (name, url) = match verdict.upstream().and_then(|i| cfg.upstreams.get(i)) {
            Some(u) => (u.name.as_str(), &u.settings.url),
            None => ("[upstream]", &cfg.upstream.url),
        };
        println!("upstream: {name} ({url})");
    }
    println!("decision: allow ({reason})");
    ExitCode::SUCCESS
}

/// Where the identity comes from; prints how a token's signature is checked.
fn source_for(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    source: TokenSource,
) -> Result<Source, String> {
    if let Some(file) = source.claims {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let map: Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a JSON object of claims: {e}", file.display()))?;
        return Ok(Source::Claims(map));
    }
    let Some(token) = source.token else {
        return Ok(Source::None);
    };
    if source.offline {
        println!("token:    signature not verified (--offline); iss, aud, exp and nbf checked");
        return Ok(Source::Unverified(token));
    }
    // The keys of the issuer the token names (`oidc.issuer` unless it names one of
    // `[[tokens.issuers]]`); the other issuers' keys are not fetched.
    let bearers = crate::auth::bearer::Bearers::new(&cfg.oidc, &cfg.tokens);
    let chosen = bearers.issuer_of(&token).unwrap_or(0);
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let client = crate::auth::provider::ProviderClient::new();
    let keys: Vec<_> = bearers
        .all()
        .iter()
        .map(|v| {
            crate::auth::jwks::JwksCache::new(
                v.issuer().to_owned(),
                client.clone(),
                metrics.clone(),
            )
        })
        .collect();
    match live_keys(rt, &keys[chosen]) {
        Ok(()) => {
            let from = keys[chosen]
                .metadata()
                .map(|m| m.jwks_uri.clone())
                .unwrap_or_default();
            println!("token:    signature verified with the provider's keys ({from}); iss, aud, exp and nbf checked");
            Ok(Source::Token { token, keys })
        }
        Err(why) => {
            println!("token:    signature not verified (the provider's keys cannot be fetched: {why}); iss, aud, exp and nbf checked");
            Ok(Source::Unverified(token))
        }
    }
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The issuer's keys, fetched once (discovery, then JWKS), within a few seconds.
fn live_keys(
    rt: &tokio::runtime::Runtime,
    jwks: &crate::auth::jwks::JwksCache,
) -> Result<(), String> {
    let fetch = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), jwks.refresh()).await
    });
    match fetch {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    }
}
