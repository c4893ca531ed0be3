//! Per-source datagram rate limiting, before any parsing or signature
//! checking: a token bucket per source address, in a table of bounded size.
//!
//! An honest member sends a few datagrams a second on average and short
//! bursts when it syncs; the defaults allow far more than that. A flood
//! from one address is cut to the bucket rate, and the table never holds
//! more than [`SourceLimiter::MAX_SOURCES`] addresses: when it is full, idle
//! sources (whose buckets have refilled) are forgotten first, then half of
//! the rest, so a flood from many addresses costs bounded memory and
//! amortised constant time per datagram.
//!
//! Compact, because every node keeps one entry per member it hears from:
//! an entry is a 64-bit keyed hash of the address and an 8-byte bucket
//! (tokens, and the last time in milliseconds since the limiter started),
//! about 20 bytes in the table. Two addresses colliding on 64 bits would
//! share a bucket; with a per-node random key that cannot be aimed at.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Instant;

use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// Token buckets per source address.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f32,
    burst: f32,
    origin: Instant,
    keys: FixedState,
    buckets: HashMap<u64, Bucket, FixedState>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f32,
    /// Milliseconds since `origin` (wrapping).
    last: u32,
}

impl SourceLimiter {
    /// Most source addresses tracked at once.
    pub const MAX_SOURCES: usize = 4096;

    /// Allow `per_sec` datagrams a second from each source, in bursts of up
    /// to `burst`. A rate of 0 turns limiting off. `key` keys the address
    /// hash (take it from the node's RNG, so peers cannot aim collisions);
    /// `origin` is the time the limiter starts counting from.
    pub fn new(per_sec: u32, burst: u32, key: u64, origin: Instant) -> Self {
        SourceLimiter {
            rate: per_sec as f32,
            burst: burst.max(1) as f32,
            origin,
            keys: FixedState::with_seed(key),
            buckets: HashMap::with_hasher(FixedState::with_seed(key ^ 0x5bd1_e995)),
        }
    }

    fn millis(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.origin).as_millis() as u32
    }

    /// Whether a datagram from `from` at `now` is within its source's rate
    /// (and if so, count it).
    pub fn allow(&mut self, now: Instant, from: SocketAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let key = self.keys.hash_one(from);
        let t = self.millis(now);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= Self::MAX_SOURCES {
            self.make_room(t);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: t,
        });
        let elapsed = t.wrapping_sub(b.last) as f32 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = t;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget sources whose buckets are full again; if none are, the least
    /// recently seen one.
    fn make_room(&mut self, t: u32) {
        let refill_ms = (1000.0 * self.burst / self.rate) as u32;
        self.buckets
            .retain(|_, b| t.wrapping_sub(b.last) < refill_ms);
        if self.buckets.len() >= Self::MAX_SOURCES {
            // Every source is active: forget half of them (in table order,
            // which the keyed hash makes unpredictable), so that a flood of
            // new addresses costs amortised constant work per datagram.
            let mut drop = self.buckets.len() - Self::MAX_SOURCES / 2;
            self.buckets.retain(|_, _| {
                if drop > 0 {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_sec: u32, burst: u32, t0: Instant) -> SourceLimiter {
        SourceLimiter::new(per_sec, burst, 7, t0)
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000))
    }

    #[test]
    fn a_flood_from_one_source_is_cut_to_the_rate() {
        let t0 = crate::testing::epoch();
        let mut l = limiter(100, 200, t0);
        // 10,000 datagrams within one second: the burst plus one second's
        // refill get through.
        let passed = (0..10_000)
            .filter(|i| l.allow(t0 + Duration::from_micros(*i * 100), addr(1)))
            .count();
        assert!((200..=310).contains(&passed), "{passed}");
        // Another source is not affected.
        assert!(l.allow(t0 + Duration::from_secs(1), addr(2)));
        // After a quiet second the flooder gets its rate back.
        assert!(l.allow(t0 + Duration::from_secs(3), addr(1)));
    }

    #[test]
    fn honest_rates_are_never_limited() {
        let t0 = crate::testing::epoch();
        let mut l = limiter(100, 200, t0);
        // A sync burst of 150 datagrams, then 20 a second for a minute.
        for _ in 0..150 {
            assert!(l.allow(t0, addr(1)));
        }
        for i in 0..1200u64 {
            assert!(l.allow(t0 + Duration::from_millis(1000 + i * 50), addr(1)));
        }
    }

    #[test]
    fn many_sources_use_bounded_memory() {
        let t0 = crate::testing::epoch();
        let mut l = limiter(100, 200, t0);
        for i in 0..50_000u32 {
            l.allow(t0 + Duration::from_micros(i as u64), addr(i));
            assert!(l.sources() <= SourceLimiter::MAX_SOURCES);
        }
        assert!(l.sources() > SourceLimiter::MAX_SOURCES / 2);
    }

    #[test]
    fn rate_zero_turns_limiting_off() {
        let t0 = crate::testing::epoch();
        let mut l = limiter(0, 0, t0);
        assert!((0..10_000).all(|_| l.allow(t0, addr(1))));
        assert_eq!(l.sources(), 0);
    }
}
