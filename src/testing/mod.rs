//! Test doubles for the integration tests and benchmarks (feature `test-util`): an
//! in-process OpenID provider that signs tokens with keys made at start, and an echo
//! upstream that reports exactly what it received. Both bind `127.0.0.1:0`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod idp;
pub mod upstream;

pub use idp::TestIdp;
pub use upstream::{EchoUpstream, Seen};

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
