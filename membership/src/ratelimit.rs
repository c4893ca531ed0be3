//! Per-source datagram rate limiting, before any parsing or signature
//! checking: a token bucket per source address, in a table of bounded size.
//!
//! An honest member sends a few datagrams a second on average and short
//! bursts when it syncs; the defaults allow far more than that. A flood
//! from one address is cut to the bucket rate, and the table never holds
//! more than [`SourceLimiter::MAX_SOURCES`] addresses: when it is full, idle
//! sources (whose buckets have refilled) are forgotten first, then the
//! least recently seen, so a flood from many addresses costs bounded memory.

use std::net::SocketAddr;
use std::time::Instant;

use hashbrown::HashMap;

/// Token buckets per source address.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<SocketAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl SourceLimiter {
    /// Most source addresses tracked at once.
    pub const MAX_SOURCES: usize = 4096;

    /// Allow `per_sec` datagrams a second from each source, in bursts of up
    /// to `burst`. A rate of 0 turns limiting off.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        SourceLimiter {
            rate: per_sec as f64,
            burst: burst.max(1) as f64,
            buckets: HashMap::new(),
        }
    }

    /// Whether a datagram from `from` at `now` is within its source's rate
    /// (and if so, count it).
    pub fn allow(&mut self, now: Instant, from: SocketAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if !self.buckets.contains_key(&from) && self.buckets.len() >= Self::MAX_SOURCES {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(from).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget sources whose buckets are full again; if none are, the least
    /// recently seen one.
    fn make_room(&mut self, now: Instant) {
        let refill = std::time::Duration::from_secs_f64(self.burst / self.rate);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < refill);
        if self.buckets.len() >= Self::MAX_SOURCES {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(a, _)| *a)
            {
                self.buckets.remove(&oldest);
            }
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

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000))
    }

    #[test]
    fn a_flood_from_one_source_is_cut_to_the_rate() {
        let mut l = SourceLimiter::new(100, 200);
        let t0 = Instant::now();
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
        let mut l = SourceLimiter::new(100, 200);
        let t0 = Instant::now();
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
        let mut l = SourceLimiter::new(100, 200);
        let t0 = Instant::now();
        for i in 0..50_000u32 {
            l.allow(t0 + Duration::from_micros(i as u64), addr(i));
            assert!(l.sources() <= SourceLimiter::MAX_SOURCES);
        }
        assert_eq!(l.sources(), SourceLimiter::MAX_SOURCES);
    }

    #[test]
    fn rate_zero_turns_limiting_off() {
        let mut l = SourceLimiter::new(0, 0);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.allow(t0, addr(1))));
        assert_eq!(l.sources(), 0);
    }
}
