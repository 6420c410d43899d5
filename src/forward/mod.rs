//! Everything about the request the upstream receives: headers, `X-Forwarded-*`, the
//! pooled connection that carries it, and the WebSocket tunnel.

pub mod forwarded;
pub mod headers;
mod pool;
pub mod proxy;
pub mod upstream;
pub mod websocket;
