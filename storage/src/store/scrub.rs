//! The background scrub: every stored share re-read, a piece at a time, at
//! a bounded rate, its checksum checked, and a share that fails it
//! quarantined.
//!
//! Clients read shares block by block, which never checks the at-rest
//! checksum (only a whole-share read does), so without a scrub a share
//! rotting on disk is found only by a reader, one block at a time. The
//! [`Scrubber`] is synchronous and steps: [`Scrubber::step`] reads at most
//! the bytes it is given, carrying a half-read share over to the next
//! step; a pass walks the store one prefix directory at a time (never
//! listing the whole store at once). The pace is a [`RateLimit`], a sans-IO
//! pacer given the time, so the tokio driver (`server::scrub`) only sleeps
//! until it says. What a scrub has done is in [`ScrubStats`], which status
//! and metrics read.
//!
//! A share found corrupt is checked once more from the start
//! ([`ShareStore::verify`], which quarantines only if it fails again), so a
//! share replaced or deleted while the scrub read it is never quarantined
//! by mistake.

use std::fs::{self, File};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::store::base::{ShareStore, CHUNK, TRAILER};
use crate::types::StorageIndex;

/// What the scrub has done, for status and metrics.
#[derive(Debug, Default)]
pub struct ScrubStats {
    passes: AtomicU64,
    shares: AtomicU64,
    bytes: AtomicU64,
    corrupt: AtomicU64,
    pass_bytes: AtomicU64,
    last_pass_unix: AtomicU64,
}

impl ScrubStats {
    /// Full passes over the store completed.
    pub fn passes(&self) -> u64 {
        self.passes.load(Relaxed)
    }
    /// Shares checked, over all passes.
    pub fn shares_checked(&self) -> u64 {
        self.shares.load(Relaxed)
    }
    /// Bytes read, over all passes.
    pub fn bytes_checked(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
    /// Shares found corrupt and quarantined.
    pub fn corrupt_found(&self) -> u64 {
        self.corrupt.load(Relaxed)
    }
    /// Bytes read in the pass under way (compare with the bytes stored).
    pub fn pass_bytes(&self) -> u64 {
        self.pass_bytes.load(Relaxed)
    }
    /// When the last full pass ended, Unix seconds (0: none yet).
    pub fn last_pass_unix(&self) -> u64 {
        self.last_pass_unix.load(Relaxed)
    }
}

/// Paces reads to at most `rate` bytes a second on average: after reading
/// `n` bytes, the next read may start `n / rate` seconds after the later of
/// now and when this one was allowed to start.
#[derive(Debug, Clone)]
pub struct RateLimit {
    bytes_per_s: u64,
    next: Option<Instant>,
}

impl RateLimit {
    /// At most `bytes_per_s` (at least 1).
    pub fn new(bytes_per_s: u64) -> Self {
        RateLimit {
            bytes_per_s: bytes_per_s.max(1),
            next: None,
        }
    }

    /// `n` bytes were read at `now`: when the next read may start.
    pub fn after(&mut self, n: u64, now: Instant) -> Instant {
        let start = self.next.map_or(now, |t| t.max(now));
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_s as f64);
        let next = start + cost;
        self.next = Some(next);
        next
    }
}

/// A share being read.
struct Reading {
    si: StorageIndex,
    shnum: u16,
    file: File,
    left: u64,
    hasher: xxhash_rust::xxh3::Xxh3,
}

/// Walks a store, checking every share's checksum, a step at a time.
pub struct Scrubber {
    store: ShareStore,
    stats: Arc<ScrubStats>,
    /// Prefix directories of the pass not yet listed.
    prefixes: Option<Vec<String>>,
    /// Shares of the current prefix directory not yet read.
    queue: Vec<(StorageIndex, u16)>,
    current: Option<Reading>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("queue", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// What a [`Scrubber::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes read.
    pub bytes: u64,
    /// Whether the pass ended with this step (the next step starts a new one).
    pub pass_done: bool,
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

impl Scrubber {
    /// A scrubber of `store`, counting into `stats`.
    pub fn new(store: ShareStore, stats: Arc<ScrubStats>) -> Self {
        Scrubber {
            store,
            stats,
            prefixes: None,
            queue: Vec::new(),
            current: None,
            buf: Vec::new(),
        }
    }

    /// The next share to read, listing the next prefix directory when the
    /// current one is done; `None` at the end of a pass.
    fn next_share(&mut self) -> Option<(StorageIndex, u16)> {
        let shares = self.store.inner.root.join("shares");
        loop {
            if let Some(s) = self.queue.pop() {
                return Some(s);
            }
            let prefixes = self.prefixes.get_or_insert_with(|| {
                let mut v = names(&shares);
                v.reverse();
                v
            });
            let prefix = prefixes.pop()?;
            for si_name in names(&shares.join(&prefix)) {
                let Some(si) = StorageIndex::parse(&si_name) else {
                    continue;
                };
                for n in names(&shares.join(&prefix).join(&si_name)) {
                    if let Ok(shnum) = n.parse::<u16>() {
                        self.queue.push((si, shnum));
                    }
                }
            }
            self.queue.reverse();
        }
    }

    /// Read at most `budget` bytes (at least one chunk's worth of work is
    /// done per call unless the pass ends), checking and quarantining
    /// shares as they are finished.
    ///
    /// # Errors
    /// I/O errors other than a share vanishing (skipped).
    pub fn step(&mut self, budget: u64) -> Result<Step, StoreError> {
        let budget = budget.clamp(1, CHUNK as u64);
        let mut read = 0u64;
        while read < budget {
            let Some(cur) = self.current.as_mut() else {
                let Some((si, shnum)) = self.next_share() else {
                    self.prefixes = None;
                    self.stats.passes.fetch_add(1, Relaxed);
                    self.stats.pass_bytes.store(0, Relaxed);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.stats.last_pass_unix.store(now, Relaxed);
                    return Ok(Step {
                        bytes: read,
                        pass_done: true,
                    });
                };
                let path = self.store.share_path(&si, shnum);
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.current = Some(Reading {
                    si,
                    shnum,
                    file,
                    left: len.saturating_sub(TRAILER),
                    hasher: xxhash_rust::xxh3::Xxh3::new(),
                });
                continue;
            };
            let n = cur.left.min(budget - read) as usize;
            self.buf.resize(n.max(TRAILER as usize), 0);
            let ok = cur.file.read_exact(&mut self.buf[..n]).is_ok();
            cur.hasher.update(&self.buf[..n]);
            cur.left -= n as u64;
            read += n as u64;
            self.stats.bytes.fetch_add(n as u64, Relaxed);
            self.stats.pass_bytes.fetch_add(n as u64, Relaxed);
            if cur.left == 0 || !ok {
                let cur = self.current.take().expect("a share is being read");
                self.finish(cur, ok);
            }
        }
        Ok(Step {
            bytes: read,
            pass_done: false,
        })
    }

    fn finish(&mut self, mut cur: Reading, read_ok: bool) {
        let mut trailer = [0u8; TRAILER as usize];
        let good = read_ok
            && cur.file.read_exact(&mut trailer).is_ok()
            && cur.hasher.digest128().to_le_bytes() == trailer;
        self.stats.shares.fetch_add(1, Relaxed);
        if !good {
            drop(cur.file);
            // Read again from the start before quarantining: the share may
            // have been deleted, or replaced, while it was being read.
            if let Err(StoreError::Corrupt) = self.store.verify(&cur.si, cur.shnum) {
                tracing::warn!(si = %cur.si, shnum = cur.shnum, "scrub found a corrupt share");
                self.stats.corrupt.fetch_add(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_never_exceeds_the_rate() {
        let mut r = RateLimit::new(1000);
        let t0 = Instant::now();
        let mut t = t0;
        let mut total = 0u64;
        for i in 0..50u64 {
            // Reads of uneven sizes, each started as soon as allowed (or
            // later: the reader was slow).
            let n = 100 + (i * 37) % 400;
            total += n;
            t = r.after(n, t + Duration::from_millis(i % 3));
        }
        let secs = t.duration_since(t0).as_secs_f64();
        assert!(
            total as f64 / secs <= 1000.0 + 1e-6,
            "{total} bytes in {secs} s"
        );
        // Idle time is not saved up for a burst.
        let later = t + Duration::from_secs(100);
        assert_eq!(r.after(500, later), later + Duration::from_millis(500));
    }
}
