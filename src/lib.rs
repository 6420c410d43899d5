//! portcullis: an authenticating reverse proxy.
//!
//! It sits in front of unmodified upstream services and decides every request before it
//! reaches them: OpenID Connect bearer tokens (and browser sessions) are checked, per-path
//! rules from `gateway.toml` are applied, and identity headers are set for the upstream
//! after every client-supplied copy has been removed.
//!
//! # Layout
//!
//! The modules follow a request through the gateway; imports only point down this list.
//!
//! - [`cli`]: `serve`, `check`, `explain`, `init`.
//! - [`init`]: `portcullis init`, a starter `gateway.toml` from the provider's discovery
//!   document.
//! - [`explain`]: what the running gateway would decide, by its own decision function.
//! - [`server`]: listeners, TLS, connection limits, graceful shutdown, reload;
//!   [`server::admin`] serves `/healthz`, `/readyz` and `/metrics`.
//! - [`pipeline`]: the phases in order (the only place they are sequenced), one call each.
//! - [`endpoints`]: the gateway's own endpoints under `auth_prefix` (login, callback,
//!   logout, back-channel logout, userinfo, forward-auth); a login starts on
//!   `public_url`'s host.
//! - [`admission`]: a live request's verdict, recorded in its context; a browser that may
//!   log in becomes a login.
//! - [`session_watch`]: WebSockets opened on a session, closed when the session ends.
//! - [`gateway`]: the long-lived state (runtime per configuration, keys, metrics).
//! - [`response`]: the one mapping from domain errors (by `From`) to HTTP responses.
//! - [`decision`]: [`decision::decide`], the decision shared by `serve`, forward-auth and
//!   `explain`: rules, then authentication, then authorization, as a [`decision::Verdict`].
//! - [`method_override`]: `_method` read as Rails, Laravel, Symfony and PHP read it.
//! - [`forward`]: header rewriting, `X-Forwarded-*`, the upstream client, the WebSocket
//!   tunnel.
//! - [`telemetry`]: traces over OTLP/HTTP (a span per request, a child per upstream call,
//!   `traceparent` to the upstream); absent without `[telemetry] otlp_endpoint`.
//! - [`logging`]: the subscriber `serve` installs; every line through a buffered,
//!   non-blocking writer; the access log's line formatted without `core::fmt`
//!   or `tracing`'s dispatch.
//! - [`authority`]: which host a request is for; ambiguous or malformed ones are a 400.
//! - [`authz`]: the pure decision of one rule for one identity.
//! - [`auth`]: authentication (bearer tokens read strictly by [`auth::jose`], session
//!   cookies with single-flight refresh), logout tokens, the provider's keys, signatures
//!   verified with ring ([`auth::ring_crypto`]).
//! - [`context`]: what one request carries through the phases.
//! - [`config`]: compiled configuration types; loading, raw tree, compilation, diagnostics.
//! - [`rules`]: the compiled rule table and its precedence.
//! - [`path`]: normalization; its output is both matched and forwarded.
//! - [`assertion`]: the signed identity assertion for the upstream: the gateway's ES256
//!   keys, the JWKS they are published in, the cache of signed assertions.
//! - [`claims`], [`header_names`], [`metrics`]: the bottom of the graph.
//!
//! ```text
//! accept -> context -> normalize path -> authority -> auth_prefix? endpoints
//!        -> (POST body _method?) -> decide: rule(s) -> authenticate -> authorize
//!        -> login (302) | forward: rewrite headers -> upstream (stream, tunnel)
//!        -> response (refusals by From) -> log + metrics (+ span, with telemetry)
//! ```

pub mod admission;
pub mod assertion;
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
pub mod init;
pub mod logging;
pub mod method_override;
pub mod metrics;
pub mod path;
pub mod pipeline;
pub mod response;
pub mod rules;
pub mod server;
pub mod session_watch;
pub mod telemetry;

#[cfg(feature = "test-util")]
pub mod testing;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
