//! The grid's time as this node measures it, from the wall clocks peers
//! put in the header of their datagrams.
//!
//! A record's `issued_at` says when it was signed, by its signer's clock;
//! it says nothing about what time it is. What time it is, for the grid, is
//! measured: each datagram from a peer of release 0.3.0 or later carries
//! the peer's wall clock (Unix seconds) in its header, and a sample is
//! taken only when the address is proven and the sender is a member at
//! that address: the header also echoes a cookie this node issued to the
//! datagram's source, or the datagram is an ack carrying the random
//! sequence number of a ping this node sent there (every probe's ack, so no
//! cookie has to be issued for the clock's sake). The offset of the grid from this node's clock is the
//! median of the latest sample of up to [`GridClock::PEERS`] members, so a
//! few members with wrong clocks (or lying) cannot move it. One-way latency
//! is in every sample; on the scale this is used at (a clock hours off, an
//! allowance of an hour) it does not matter.

use std::collections::VecDeque;

use grapevine_crypto::NodeId;

/// Offsets of peers' clocks from this node's clock.
#[derive(Debug, Default)]
pub struct GridClock {
    /// (peer, its clock minus ours, seconds), latest last; one per peer.
    samples: VecDeque<(NodeId, i64)>,
    /// The median of `samples`, computed when they change: the driver
    /// reads it with the node's counters after every datagram, and a sort
    /// per datagram was a fifth of a quiet swarm's CPU increase.
    median: Option<i64>,
}

impl GridClock {
    /// Peers whose latest sample counts.
    pub const PEERS: usize = 63;

    /// `peer`'s clock read `theirs` (Unix seconds) when ours read `ours`.
    pub fn sample(&mut self, peer: NodeId, theirs: u64, ours: u64) {
        let offset = i128::from(theirs) - i128::from(ours);
        let offset = i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        if let Some(pos) = self.samples.iter().position(|(p, _)| *p == peer) {
            self.samples.remove(pos);
        } else if self.samples.len() >= Self::PEERS {
            self.samples.pop_front();
        }
        self.samples.push_back((peer, offset));
        self.median = self.median_now();
    }

    /// The grid's clock minus this node's, seconds: the median of the
    /// peers' offsets; `None` before any sample.
    pub fn offset(&self) -> Option<i64> {
        self.median
    }

    fn median_now(&self) -> Option<i64> {
        let mut v: Vec<i64> = self.samples.iter().map(|(_, o)| *o).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let mid = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[mid]
        } else {
            // The mean of the two middle ones, without overflow.
            v[mid - 1] / 2 + v[mid] / 2 + (v[mid - 1] % 2 + v[mid] % 2) / 2
        })
    }

    /// Peers sampled.
    pub fn peers(&self) -> usize {
        self.samples.len()
    }

    /// Forget `peer`'s sample (it is no longer a member).
    pub fn forget(&mut self, peer: &NodeId) {
        self.samples.retain(|(p, _)| p != peer);
        self.median = self.median_now();
    }

    /// The grid's time in Unix seconds, given this node's.
    pub fn grid_time(&self, ours: u64) -> u64 {
        match self.offset() {
            Some(o) if o < 0 => ours.saturating_sub(o.unsigned_abs()),
            Some(o) => ours.saturating_add(o.unsigned_abs()),
            None => ours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn the_median_of_the_latest_sample_per_peer_resists_a_few_liars() {
        let mut c = GridClock::default();
        assert_eq!(c.offset(), None);
        assert_eq!(c.grid_time(1000), 1000);
        // This node is a day behind everyone.
        for i in 0..9 {
            c.sample(id(i), 1_000_000 + 86_400 + u64::from(i % 3), 1_000_000);
        }
        // Two liars, one far ahead, one far behind.
        c.sample(id(100), u64::MAX, 1_000_000);
        c.sample(id(101), 0, 1_000_000);
        let o = c.offset().unwrap();
        assert!((86_400..=86_402).contains(&o), "{o}");
        assert_eq!(c.grid_time(1_000_000), 1_000_000 + o as u64);
        // A peer's newer sample replaces its older one.
        for _ in 0..100 {
            c.sample(id(100), u64::MAX, 1_000_000);
        }
        assert_eq!(c.peers(), 11);
        c.forget(&id(100));
        assert_eq!(c.peers(), 10);
        // Forgetting moves the median (kept, not computed per call).
        let mut d = GridClock::default();
        d.sample(id(1), 10, 0);
        d.sample(id(2), 20, 0);
        d.sample(id(3), 90, 0);
        assert_eq!(d.offset(), Some(20));
        d.forget(&id(2));
        assert_eq!(d.offset(), Some(50));
        d.forget(&id(1));
        d.forget(&id(3));
        assert_eq!(d.offset(), None);
        // Bounded: only the latest PEERS peers count.
        for i in 0..200u8 {
            c.sample(id(i), 5, 5);
        }
        assert_eq!(c.peers(), GridClock::PEERS);
        assert_eq!(c.offset(), Some(0));
        assert_eq!(c.grid_time(u64::MAX), u64::MAX);
    }

    #[test]
    fn extreme_offsets_saturate() {
        let mut c = GridClock::default();
        c.sample(id(1), 0, u64::MAX);
        assert_eq!(c.offset(), Some(i64::MIN));
        assert_eq!(c.grid_time(10), 0);
        c.sample(id(2), 0, u64::MAX);
        c.sample(id(1), u64::MAX, 0);
        c.sample(id(3), u64::MAX, 0);
        assert_eq!(c.offset(), Some(i64::MAX));
        assert_eq!(c.grid_time(10), 10 + i64::MAX as u64);
        assert_eq!(c.grid_time(u64::MAX), u64::MAX);
    }
}
