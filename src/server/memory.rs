//! Giving the memory that parked and closed connections freed back to the system.
//!
//! A parked connection frees hyper's buffers (about 24 KiB), a closed one everything it
//! held, but glibc's allocator keeps freed memory in its heaps while live allocations sit
//! on either side of it, so the process would stay at the size of its busiest moment, and
//! the next burst of connections would be laid out on fresh pages beside the old holes.
//! After a batch of parks or closes this asks glibc to return its free pages
//! (`malloc_trim`): at most once a second, and only when at least [`TRIM_AFTER`]
//! connections parked or closed since the last time. Under steady load on kept-alive
//! connections nothing parks or closes, so nothing is trimmed. It runs on a blocking
//! thread: glibc locks each arena while it walks it.
//!
//! Other allocators (musl's, or a replaced global allocator) return memory their own way;
//! there this does nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Parks or closes (at least 24 KiB freed each) that make a trim worth its walk.
pub const TRIM_AFTER: usize = 64;

/// Parks and closes since the last trim, in every listener of the process.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// Counts a connection that gave its buffers back: parked or closed.
pub(super) fn released() {
    PARKED.fetch_add(1, Ordering::Relaxed);
}

/// Trims after each batch of parks, until the task is aborted.
pub(super) async fn run() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if PARKED.load(Ordering::Relaxed) >= TRIM_AFTER {
            PARKED.store(0, Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(release).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() {
    // SAFETY: `malloc_trim` takes no pointers and only rearranges glibc's own free
    // lists, under the same locks as every other allocator call.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}
