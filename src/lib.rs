//! portcullis: an authenticating reverse proxy.
//!
//! It sits in front of unmodified upstream services and decides every request before it
//! reaches them: OpenID Connect bearer tokens (and browser sessions) are checked, per-path
//! rules from `gateway.toml` are applied, and identity headers are set for the upstream
//! after every client-supplied copy has been removed.
//!
//! # Layout
//!
//! The modules follow a request through the gateway:
//!
//! - [`server`]: listeners, TLS, connection limits, graceful shutdown; [`server::admin`]
//!   serves `/healthz`, `/readyz` and `/metrics`.
//! - [`pipeline`]: the phases in order (the only place they are sequenced).
//! - [`path`]: normalization; its output is both matched and forwarded.
//! - [`rules`]: the compiled rule table and its precedence.
//! - [`auth`]: credentials, bearer tokens, the provider's keys, claims.
//! - [`authz`]: the pure decision function.
//! - [`endpoints`]: the gateway's own endpoints under `auth_prefix`.
//! - [`forward`]: header rewriting, `X-Forwarded-*`, the upstream client.
//! - [`response`]: the one mapping from refusals to HTTP responses.
//! - [`config`]: raw configuration, compiled configuration, diagnostics.
//! - [`cli`]: `serve`, `check`, `explain`.
//!
//! ```text
//! accept -> normalize path -> auth_prefix? -> match rule -> authenticate -> authorize
//!        -> rewrite headers -> forward (stream) -> log + metrics
//! ```

pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
pub mod endpoints;
pub mod forward;
pub mod gateway;
pub mod method_override;
pub mod metrics;
pub mod path;
pub mod pipeline;
pub mod response;
pub mod rules;
pub mod server;

#[cfg(feature = "test-util")]
pub mod testing;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
