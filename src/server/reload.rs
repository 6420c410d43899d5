//! Hot reload: on SIGHUP, and when the configuration file's contents change (polled, so
//! editors that replace the file by rename are seen too), the configuration is read and
//! validated again and swapped in atomically. Requests in flight finish with the
//! configuration they started with; connections are not touched. An invalid configuration
//! is logged with every error and the old one keeps serving.
//!
//! A renewed TLS certificate (the files' contents are watched too) is served from the next
//! handshake on. A new `headers.assertion_key_file` (or new contents in it) signs from the
//! swap on; the key it replaced stays in the JWKS for one assertion lifetime. Settings
//! bound to sockets or read once at start (listen addresses, turning TLS on or off, header
//! limits, shutdown grace, `session.state_dir`, `[telemetry]`) are reported as needing a
//! restart and keep their old values;
//! a changed `oidc.issuer` or `tokens.jwks_refresh` refuses the whole reload, because the
//! provider's keys belong to the issuer the process started with.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{self, ConfigError, ConfigErrors, EnvOverrides};
use crate::gateway::{Gateway, Runtime};

/// A hash of the configuration file's bytes and the overrides; `None` if unreadable.
pub fn fingerprint(path: &Path, env: &EnvOverrides) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    env.hash_into(&mut h);
    Some(h.finish())
}

/// The same, plus the contents of other files the configuration reads (TLS certificate
/// and key, the assertion key), so a renewed certificate or a new assertion key is picked
/// up like an edited configuration.
fn watched(path: &Path, env: &EnvOverrides, files: &[PathBuf]) -> Option<u64> {
    let mut h = DefaultHasher::new();
    fingerprint(path, env)?.hash(&mut h);
    for f in files {
        std::fs::read(f).ok().hash(&mut h);
    }
    Some(h.finish())
}

fn watched_files(gw: &Gateway) -> Vec<PathBuf> {
    let rt = gw.runtime();
    let mut files = rt
        .config
        .server
        .tls
        .as_ref()
        .map(|t| t.files.clone())
        .unwrap_or_default();
    files.extend(rt.config.headers.assertion_key_file.clone());
    files
}

/// Loads and applies the configuration. Returns the keys whose new values need a restart.
pub fn reload(
    gw: &Gateway,
    path: &Path,
    env: &EnvOverrides,
) -> Result<Vec<&'static str>, ConfigErrors> {
    let result = apply(gw, path, env);
    match &result {
        Ok(restart) => {
            gw.metrics.reload(Some(fingerprint(path, env).unwrap_or(0)));
            tracing::info!(path = %path.display(), "configuration reloaded");
            for key in restart {
                tracing::warn!(
                    key,
                    "this setting changed but only takes effect after a restart"
                );
            }
        }
        Err(errors) => {
            gw.metrics.reload(None);
            for e in &errors.0 {
                tracing::error!(error = %e, "reload refused; the previous configuration keeps serving");
            }
        }
    }
    result
}

fn apply(gw: &Gateway, path: &Path, env: &EnvOverrides) -> Result<Vec<&'static str>, ConfigErrors> {
    let new = config::load(path, env)?;
    let old = gw.runtime();
    let (o, n) = (&old.config, &new);
    let refuse = |key: &str, what: &str| {
        ConfigErrors(vec![ConfigError {
            key: key.to_owned(),
            message: format!("{what} cannot change while running; restart the gateway"),
        }])
    };
    if o.oidc.issuer != n.oidc.issuer {
        return Err(refuse("oidc.issuer", "the issuer"));
    }
    let issuers = |c: &config::Config| {
        c.tokens
            .issuers
            .iter()
            .map(|i| i.issuer.clone())
            .collect::<Vec<_>>()
    };
    if issuers(o) != issuers(n) {
        return Err(refuse("tokens.issuers", "the list of further issuers"));
    }
    if o.tokens.jwks_refresh != n.tokens.jwks_refresh {
        return Err(refuse("tokens.jwks_refresh", "the key refresh interval"));
    }
    let store = |c: &config::Config| {
        c.session.as_ref().map(|s| {
            (
                s.store,
                s.redis_url.as_ref().map(|u| u.expose().to_owned()),
                s.redis_urls
                    .iter()
                    .map(|u| u.expose().to_owned())
                    .collect::<Vec<_>>(),
                s.redis_key_prefix.clone(),
            )
        })
    };
    let redis = |c: &config::Config| {
        c.session
            .as_ref()
            .is_some_and(|s| s.store == config::SessionStoreKind::Redis)
    };
    if (redis(o) || redis(n)) && store(o) != store(n) {
        return Err(refuse("session.store", "the Redis session store"));
    }
    let mut restart = Vec::new();
    let s = (&o.server, &n.server);
    if s.0.listen != s.1.listen {
        restart.push("server.listen");
    }
    if s.0.admin_listen != s.1.admin_listen {
        restart.push("server.admin_listen");
    }
    match (&s.0.tls, &s.1.tls) {
        (None, None) => {}
        // The certificate changes in place: the running listener's resolver serves the new
        // one on the next handshake. It is the one the listener started with, so it is
        // carried over into the new configuration.
        (Some(running), Some(new)) => running.resolver.replace(new.certified.clone()),
        _ => restart.push("server.tls"),
    }
    if s.0.max_header_bytes != s.1.max_header_bytes {
        restart.push("server.max_header_bytes");
    }
    if s.0.header_read_timeout != s.1.header_read_timeout {
        restart.push("server.header_read_timeout");
    }
    if s.0.shutdown_grace != s.1.shutdown_grace {
        restart.push("server.shutdown_grace");
    }
    if s.0.runtime != s.1.runtime {
        restart.push("server.runtime");
    }
    if s.0.workers != s.1.workers {
        restart.push("server.workers");
    }
    if o.log.format != n.log.format || o.log.level != n.log.level {
        restart.push("log");
    }
    if o.telemetry != n.telemetry {
        // The exporter is built once, at start.
        restart.push("telemetry");
    }
    let state_dir = |c: &config::Config| c.session.as_ref().and_then(|s| s.state_dir.clone());
    if state_dir(o) != state_dir(n) {
        // The revocations are opened once, at start.
        restart.push("session.state_dir");
    }
    let mut new = new;
    if let (Some(running), Some(tls)) = (&o.server.tls, new.server.tls.as_mut()) {
        tls.resolver = running.resolver.clone();
        tls.config = running.config.clone();
    }
    let rt = Runtime::new(new, gw.revocations.clone(), &gw.assertion_keys).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            key: String::new(),
            message: e,
        }])
    })?;
    gw.swap_runtime(rt);
    Ok(restart)
}

/// Reloads on SIGHUP and when the file's contents change (checked every `poll`), until
/// `shutdown` turns true.
pub async fn watch(
    gw: Arc<Gateway>,
    path: PathBuf,
    env: EnvOverrides,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut files = watched_files(&gw);
    let mut last = watched(&path, &env, &files);
    loop {
        let hangup = async {
            #[cfg(unix)]
            if let Some(h) = hup.as_mut() {
                h.recv().await;
                return;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = hangup => tracing::info!("SIGHUP: reloading the configuration"),
            _ = tokio::time::sleep(poll) => {
                let now = watched(&path, &env, &files);
                if now == last || now.is_none() {
                    continue;
                }
                tracing::info!(path = %path.display(), "the configuration file changed: reloading");
            }
            _ = shutdown.changed() => return,
        }
        last = watched(&path, &env, &files);
        let _ = reload(&gw, &path, &env);
        let now_watched = watched_files(&gw);
        if now_watched != files {
            files = now_watched;
            last = watched(&path, &env, &files);
        }
    }
}
