//! The round trip a connection's pipeline depth follows
//! ([`Conn::depth`](super::Conn::depth)).
//!
//! The depth should follow the link as it is now. The shortest round trip
//! seen since the connection opened would not: on a link that slowed (a
//! laptop gone from the LAN to a mobile network, a route changed) a pooled
//! session would stay as shallow as the link's best moment, and its
//! transfers would run at a fraction of what the link carries. So
//! [`RoundTrip`] keeps the shortest sample of the current window and of
//! the one before ([`ROUND_TRIP_WINDOW`] each, the older dropped when a
//! new one begins), as BBR keeps its minimum round trip: a link that slows
//! is followed within two windows, and a sample that was slow for a
//! moment (a busy server, a lost packet) is outweighed by the others.
//!
//! Only a request sent while nothing else was outstanding is a sample (the
//! connection decides; this type takes what it is given). An answer to a
//! pipelined request also took the time it waited behind the ones before
//! it; counting that would deepen the pipeline, which lengthens the wait,
//! which deepens it further (on loopback a long put would go from two
//! outstanding writes to the budget's eight, measured to cost kernel
//! time). Each transfer's first request is such a sample, as are the
//! single calls between transfers. A window that passes without a sample
//! keeps the estimate: it is replaced, never forgotten for want of
//! anything newer.
//!
//! Plain state, no clock of its own: the caller passes the time, so a test
//! drives it through any number of windows at once.

use std::time::Duration;

use tokio::time::Instant;

/// How long a window of round-trip samples lasts: the estimate is the
/// shortest sample of the last one to two windows.
pub const ROUND_TRIP_WINDOW: Duration = Duration::from_secs(30);

/// The shortest round trip of the last one to two windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundTrip {
    window: Duration,
    /// The shortest sample of the window before the current one.
    older: Option<Duration>,
    /// The shortest sample of the current window.
    newer: Duration,
    /// When the current window began.
    began: Instant,
}

impl RoundTrip {
    /// Starting from one sample (a session's opening), taken at `now`.
    pub(crate) fn new(first: Duration, now: Instant) -> Self {
        RoundTrip {
            window: ROUND_TRIP_WINDOW,
            older: None,
            newer: first,
            began: now,
        }
    }

    /// Windows of `window` instead of [`ROUND_TRIP_WINDOW`] (tests).
    #[cfg(test)]
    pub(crate) fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// A round trip of `took`, answered at `now`.
    pub(crate) fn observe(&mut self, took: Duration, now: Instant) {
        let age = now.saturating_duration_since(self.began);
        if age < self.window {
            self.newer = self.newer.min(took);
            return;
        }
        // A new window begins with this sample; the one that ended stays
        // beside it unless it ended long ago.
        self.older = (age < self.window.saturating_mul(2)).then_some(self.newer);
        self.newer = took;
        self.began = now;
    }

    /// The estimate: the shortest sample of the current window and of the
    /// one before.
    pub(crate) fn estimate(&self) -> Duration {
        self.older.map_or(self.newer, |o| o.min(self.newer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A link that slows from 1 ms to 20 ms is followed within two
    /// windows; until then the shorter samples stand.
    #[test]
    fn the_estimate_follows_a_link_that_slows() {
        let t0 = Instant::now();
        let mut rt = RoundTrip::new(ms(1), t0);
        rt.observe(ms(20), t0 + Duration::from_secs(10));
        assert_eq!(rt.estimate(), ms(1), "the window's shortest");
        // The second window: the first's shortest is still beside it.
        rt.observe(ms(20), t0 + Duration::from_secs(31));
        assert_eq!(rt.estimate(), ms(1));
        // The third: only slow samples are left.
        rt.observe(ms(21), t0 + Duration::from_secs(62));
        assert_eq!(rt.estimate(), ms(20));
        rt.observe(ms(22), t0 + Duration::from_secs(70));
        assert_eq!(rt.estimate(), ms(20));
    }

    /// A link that speeds up is followed at once; a slow moment is
    /// outweighed by the window's other samples.
    #[test]
    fn a_shorter_sample_counts_at_once_and_a_slow_one_does_not() {
        let t0 = Instant::now();
        let mut rt = RoundTrip::new(ms(30), t0);
        rt.observe(ms(5), t0 + Duration::from_secs(1));
        assert_eq!(rt.estimate(), ms(5));
        rt.observe(ms(900), t0 + Duration::from_secs(2));
        assert_eq!(rt.estimate(), ms(5));
        rt.observe(ms(900), t0 + Duration::from_secs(35));
        assert_eq!(rt.estimate(), ms(5), "the window before still counts");
    }

    /// A session idle for longer than two windows takes its next sample
    /// as the estimate; one idle for less keeps the older window beside it.
    #[test]
    fn after_a_long_pause_the_next_sample_is_the_estimate() {
        let t0 = Instant::now();
        let mut rt = RoundTrip::new(ms(1), t0);
        rt.observe(ms(40), t0 + Duration::from_secs(600));
        assert_eq!(rt.estimate(), ms(40));
        let mut rt = RoundTrip::new(ms(1), t0);
        rt.observe(ms(40), t0 + Duration::from_secs(45));
        assert_eq!(rt.estimate(), ms(1));
    }

    /// Windows of any length; a clock that seems to go back (an `Instant`
    /// before the window began) counts as within the window.
    #[test]
    fn windows_are_configurable_and_time_never_underflows() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut rt = RoundTrip::new(ms(3), t0).with_window(ms(50));
        rt.observe(ms(9), t0 - Duration::from_secs(1));
        assert_eq!(rt.estimate(), ms(3));
        rt.observe(ms(9), t0 + ms(60));
        rt.observe(ms(9), t0 + ms(120));
        assert_eq!(rt.estimate(), ms(9));
    }
}
