//! Round trips of probes, and the probe timeouts they stretch (issue 21).
//!
//! Lifeguard's local health stretches this node's timeouts when *it* is
//! starved (its timers run late). The other half of a join storm on one
//! machine is a node whose timers run on time probing a peer whose process
//! is starved: the peer's ack comes, but after the probe period has ended,
//! and the peer is suspected; every node that hears the suspicion counts a
//! suspect verdict until the peer refutes, and a peer starved for longer
//! than the suspicion timeout is declared dead. So, as TCP's retransmission
//! timeout follows measured round trips (Jacobson and Karels, RFC 6298),
//! this node keeps a smoothed round trip of its probes' acks and its mean
//! deviation (from every ack of a probe, a late one that arrives in the
//! next period too; an ack quicker than the estimate shrinks the
//! deviation instead of widening it, so timeouts come back down within a
//! dozen acks once acks are quick again), and the direct probe's timeout is at least
//! `srtt + 4 * rttvar`, the probe period at least twice that, and the
//! suspicion timeout is stretched by as much as the probe timeout is
//! (where acks are slow, so are refutations). A suspicion's timeout is
//! measured again when it ends (round trips may have grown since it
//! began: a suspect is declared dead only once the timeout as measured
//! now has passed), and a suspect that acks a probe of this node's, late
//! or not, gets a full timeout from then. All are capped at
//! `1 + max_local_health` times their configured values, so a member that
//! acks slowly on purpose can slow this node's detection by a bounded
//! factor only. Acks count only from where the ping went (see `probe`),
//! so no forger can feed the estimate. On a quiet network round trips are
//! far below the configured probe timeout and nothing changes.
//!
//! Test: `sim::tests::a_starved_half_of_the_grid_is_seldom_suspected_and_never_declared_dead`.

use std::time::Duration;

/// Smoothed round trip and mean deviation of probe acks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RoundTrips {
    srtt: Option<Duration>,
    var: Duration,
}

impl RoundTrips {
    /// An ack came `rtt` after its ping.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.var = rtt / 2;
            }
            Some(s) if rtt < s => {
                // Quicker than the estimate: the deviation shrinks as if
                // the ack had come as estimated, rather than growing by
                // the drop as RFC 6298 says. By that rule the timeout
                // stayed high for dozens of acks after a storm, while the
                // stretched probe period it set spaced them out: after a
                // join storm the swarm (N = 2000) kept its timeouts
                // stretched for a minute and took 34 to 81 s to see deaths.
                self.var = self.var * 3 / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
            Some(s) => {
                let diff = rtt - s;
                self.var = (self.var * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }

    /// `srtt + 4 * rttvar` (zero before any sample).
    pub fn timeout(&self) -> Duration {
        self.srtt.map_or(Duration::ZERO, |s| {
            s.saturating_add(self.var.saturating_mul(4))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn the_timeout_follows_round_trips_up_and_back_down() {
        let mut r = RoundTrips::default();
        assert_eq!(r.timeout(), Duration::ZERO);
        r.sample(ms(2));
        assert_eq!(r.timeout(), ms(6));
        for _ in 0..20 {
            r.sample(ms(2));
        }
        assert!(r.timeout() < ms(4), "{:?}", r.timeout());
        // Acks from a starved peer: at once well past the sample.
        r.sample(ms(1500));
        assert!(r.timeout() > ms(1500), "{:?}", r.timeout());
        // Quick acks again: back below the configured 400 ms within a dozen
        // probes (RFC 6298's update took 21).
        for _ in 0..12 {
            r.sample(ms(2));
        }
        assert!(r.timeout() < ms(400), "{:?}", r.timeout());
    }
}
