//! The wall clock as the driver last told it: the core never reads a
//! clock, so time in Unix seconds (admission certificates) is an input like
//! the monotonic time.

use std::time::Instant;

/// The wall clock read `unix_ms` (milliseconds since the Unix epoch) at
/// `at`.
#[derive(Debug, Clone, Copy)]
pub(super) struct WallClock {
    pub(super) at: Instant,
    pub(super) unix_ms: u64,
}

impl WallClock {
    /// Unix seconds at `now`, counted on from the last reading.
    pub(super) fn unix_secs(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.at).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
            / 1000
    }
}
