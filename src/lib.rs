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
//! - [`authority`]: which host a request is for; ambiguous or malformed ones are a 400.
//! - [`path`]: normalization; its output is both matched and forwarded.
//! - [`method_override`]: `_method` read as Rails, Laravel, Symfony and PHP read it.
//! - [`rules`]: the compiled rule table and its precedence.
//! - [`auth`]: credentials, bearer tokens (read strictly by [`auth::jose`]), the
//!   provider's keys, claims.
//! - [`authz`]: the pure decision function for one rule.
//! - [`decision`]: the rules that judge a request (with its method overrides) and their
//!   verdict; shared by `serve`, forward-auth and `explain`.
//! - [`endpoints`]: the gateway's own endpoints under `auth_prefix`.
//! - [`forward`]: header rewriting, `X-Forwarded-*`, the upstream client.
//! - [`response`]: the one mapping from refusals to HTTP responses.
//! - [`config`]: raw configuration, compiled configuration, diagnostics.
//! - [`cli`]: `serve`, `check`, `explain`.
//!
//! ```text
//! accept -> authority -> normalize path -> auth_prefix? -> (POST body _method?)
//!        -> match rule(s) -> authenticate -> authorize -> rewrite headers
//!        -> forward (stream) -> log + metrics
//! ```

pub mod admission;
pub mod auth;
pub mod authority;
pub mod authz;
pub mod claims;
pub mod cli;
pub mod config;
pub mod context;
pub mod decision;
pub mod endpoints;
pub mod explain;
pub mod forward;
pub mod gateway;
pub mod header_names;
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
