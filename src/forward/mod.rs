//! Everything about the request the upstream receives: headers, `X-Forwarded-*`, and the
//! pooled connection that carries it.

pub mod forwarded;
pub mod headers;
pub mod upstream;
