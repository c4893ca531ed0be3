//! Times kept as counts in fixed buckets, for the listing paths a server
//! answers on and a client asks on (so an operator, and the grid
//! benchmark, can see where a listing's time goes: in a datagram or over
//! a session).
//!
//! [`Latencies`] is a fixed array of atomic counters, so recording from
//! many tasks takes no lock and what a node keeps does not grow:
//! [`BUCKETS`] counters and a sum (744 bytes) per histogram. Buckets are a quarter
//! of a power of two wide (each edge 12.5 % to 25 % above the one
//! before), from 1 microsecond to about 15 s; anything longer lands in
//! the last.
//! [`Snapshot`] adds histograms (over nodes) and estimates quantiles
//! within a bucket by linear interpolation, so a quantile is good to the
//! width of its bucket, no better.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two.
const SUB: u32 = 4;
/// Powers of two covered: 2^0 to 2^24 microseconds (16.8 s).
const OCTAVES: u32 = 24;
/// Buckets in a histogram.
pub const BUCKETS: usize = (SUB + (OCTAVES - 2) * SUB) as usize;

/// The bucket holding `micros`.
fn bucket(micros: u64) -> usize {
    if micros < u64::from(SUB) {
        return micros as usize;
    }
    // micros >= 4: its power of two o >= 2, and the two bits below the
    // top one name the quarter.
    let o = 63 - micros.leading_zeros();
    let quarter = ((micros >> (o - 2)) & 3) as u32;
    let i = (SUB + (o - 2) * SUB + quarter) as usize;
    i.min(BUCKETS - 1)
}

/// The lowest time (microseconds) bucket `i` holds (a bucket past the
/// last is taken as the last).
pub fn bucket_floor(i: usize) -> u64 {
    let i = i.min(BUCKETS - 1) as u32;
    if i < SUB {
        return u64::from(i);
    }
    let o = (i - SUB) / SUB + 2;
    let quarter = u64::from((i - SUB) % SUB);
    (1u64 << o) + quarter * (1u64 << (o - 2))
}

/// Times recorded from any task (see the module docs).
#[derive(Debug)]
pub struct Latencies {
    counts: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Latencies {
    /// Count one time.
    pub fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }
}

/// Counts per bucket, read from a [`Latencies`] or added over several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Count per bucket ([`BUCKETS`] of them, or none for an empty
    /// snapshot).
    pub counts: Vec<u64>,
    /// The times counted, added up (microseconds).
    #[serde(default)]
    pub sum_micros: u64,
}

impl Snapshot {
    /// Times counted (in the first [`BUCKETS`] counts: a snapshot read
    /// from elsewhere may carry more, which count for nothing).
    pub fn total(&self) -> u64 {
        self.buckets().fold(0u64, |a, c| a.saturating_add(*c))
    }

    fn buckets(&self) -> impl Iterator<Item = &u64> {
        self.counts.iter().take(BUCKETS)
    }

    /// Add `other`'s counts to these. Counts past [`BUCKETS`] (from a
    /// snapshot that is no snapshot) are ignored.
    pub fn add(&mut self, other: &Snapshot) {
        if self.counts.len() < BUCKETS {
            self.counts.resize(BUCKETS, 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// These counts less `earlier`'s (what was counted since).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Snapshot {
            counts,
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
        }
    }

    /// Times counted at or below `micros` (exact where `micros` is a
    /// bucket's upper edge, such as a power of two less one).
    pub fn at_most(&self, micros: u64) -> u64 {
        self.buckets()
            .enumerate()
            .take_while(|(i, _)| bucket_floor(*i) <= micros)
            .fold(0u64, |a, (_, c)| a.saturating_add(*c))
    }

    /// The time (microseconds) below which a share `q` (0 to 1) of the
    /// counted times fall, interpolated within its bucket; `None` if
    /// nothing was counted.
    pub fn quantile_micros(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.buckets().enumerate() {
            if c == 0 {
                continue;
            }
            if (below + c) as f64 >= rank {
                let lo = bucket_floor(i) as f64;
                let hi = if i + 1 < BUCKETS {
                    bucket_floor(i + 1) as f64
                } else {
                    lo * 1.19
                };
                let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lo + (hi - lo) * within);
            }
            below += c;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        assert_eq!(bucket_floor(0), 0);
        for i in 1..BUCKETS {
            assert!(bucket_floor(i) > bucket_floor(i - 1), "bucket {i}");
            // The floor of a bucket lands in that bucket, and the value
            // just below it in the bucket before.
            assert_eq!(bucket(bucket_floor(i)), i);
            assert_eq!(bucket(bucket_floor(i) - 1), i - 1);
        }
        // Each edge at most a third above the one before (past the first
        // few, a quarter of a power of two).
        for i in 8..BUCKETS {
            let (a, b) = (bucket_floor(i - 1) as f64, bucket_floor(i) as f64);
            assert!(b / a <= 1.26, "bucket {i}: {a} to {b}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert!(bucket_floor(BUCKETS - 1) >= 14_000_000);
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let l = Latencies::default();
        for _ in 0..90 {
            l.record(Duration::from_micros(1000));
        }
        for _ in 0..10 {
            l.record(Duration::from_millis(50));
        }
        let s = l.snapshot();
        assert_eq!(s.total(), 100);
        let p50 = s.quantile_micros(0.5).unwrap();
        // In the bucket of 1 ms (896 to 1,024 us), of 50 ms (49,152 to
        // 57,344 us).
        assert!((896.0..1024.0).contains(&p50), "p50 {p50}");
        let p99 = s.quantile_micros(0.99).unwrap();
        assert!((49_152.0..57_344.0).contains(&p99), "p99 {p99}");
        assert_eq!(s.at_most(1023), 90);
        assert!(Snapshot::default().quantile_micros(0.5).is_none());
    }

    #[test]
    fn snapshots_add_and_subtract() {
        let (a, b) = (Latencies::default(), Latencies::default());
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(10));
        b.record(Duration::from_secs(100));
        let mut sum = Snapshot::default();
        sum.add(&a.snapshot());
        sum.add(&b.snapshot());
        assert_eq!(sum.total(), 3);
        assert_eq!(sum.counts[bucket(10)], 2);
        assert_eq!(sum.counts[BUCKETS - 1], 1);
        assert_eq!(sum.sum_micros, 100_000_020);
        let later = sum.clone();
        assert_eq!(later.since(&a.snapshot()).total(), 2);
        // A snapshot from elsewhere that is too long adds no buckets.
        let mut odd = Snapshot {
            counts: vec![1; BUCKETS + 5],
            sum_micros: 0,
        };
        odd.add(&a.snapshot());
        assert_eq!(odd.counts.len(), BUCKETS + 5);
        // ... and its extra counts are not read: no bucket past the last
        // (whose edge would overflow), nothing counted twice.
        assert_eq!(odd.total(), BUCKETS as u64 + 1);
        assert_eq!(odd.at_most(u64::MAX), BUCKETS as u64 + 1);
        assert!(odd.quantile_micros(1.0).is_some());
        let long = Snapshot {
            counts: vec![1; 1000],
            sum_micros: 0,
        };
        assert_eq!(long.total(), BUCKETS as u64);
        assert_eq!(bucket_floor(999), bucket_floor(BUCKETS - 1));
    }
}
