//! The records this process has verified, remembered by the BLAKE3 hash of
//! their bytes, so the same record is not verified twice.
//!
//! A signed record is immutable: the same bytes verify the same way every
//! time. The membership verifies every new record it takes in, and a Noise
//! handshake then presents the peer's record again (the very bytes the
//! directory holds, unless the peer has re-signed since); remembering what
//! verified saves the handshake's point decompression, key-binding check
//! and Ed25519 verification, about 55 µs of the 300 µs of curve arithmetic
//! one side of a handshake costs on the machine of `docs/performance.md`,
//! and several times that on a small ARM board.
//!
//! What is remembered is a 32-byte hash of bytes whose signature and key
//! binding checked out; a hit stands for exactly those bytes (a record
//! differing in any bit hashes elsewhere), so a forged record can never be
//! taken for a remembered one. The memory is bounded: [`REMEMBERED`]
//! hashes, the oldest forgotten first (about 80 KiB per process, however
//! many nodes it runs).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Hashes remembered at most, per process.
pub const REMEMBERED: usize = 1024;

/// A bounded set of hashes, oldest out first.
#[derive(Debug, Default)]
pub(crate) struct Remembered {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    cap: usize,
}

impl Remembered {
    pub(crate) fn with_capacity(cap: usize) -> Remembered {
        Remembered {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn contains(&self, h: &[u8; 32]) -> bool {
        self.set.contains(h)
    }

    pub(crate) fn insert(&mut self, h: [u8; 32]) {
        if self.cap == 0 || !self.set.insert(h) {
            return;
        }
        self.order.push_back(h);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }
}

static VERIFIED: Mutex<Option<Remembered>> = Mutex::new(None);

thread_local! {
    /// Verifications skipped on this thread (for tests: threads do not see
    /// each other's).
    static SKIPPED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The key under which `bytes` (a whole signed record) is remembered.
pub(crate) fn key(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn with<T>(f: impl FnOnce(&mut Remembered) -> T) -> T {
    // Inserts and lookups only: a panic elsewhere cannot leave the set
    // inconsistent, so a poisoned lock is still usable.
    let mut g = VERIFIED.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(|| Remembered::with_capacity(REMEMBERED)))
}

/// Whether the record hashing to `k` was verified before; counts a skip.
pub(crate) fn seen(k: &[u8; 32]) -> bool {
    let hit = with(|r| r.contains(k));
    if hit {
        SKIPPED.with(|s| s.set(s.get() + 1));
    }
    hit
}

/// Remember that the record hashing to `k` verified.
pub(crate) fn remember(k: [u8; 32]) {
    with(|r| r.insert(k));
}

/// Verifications this thread skipped because the record had verified
/// before.
pub fn skipped_on_this_thread() -> u64 {
    SKIPPED.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_hash_goes_first_and_the_set_stays_bounded() {
        let mut r = Remembered::with_capacity(3);
        for i in 0..5u8 {
            r.insert([i; 32]);
        }
        r.insert([4; 32]);
        assert_eq!(r.len(), 3);
        assert!(!r.contains(&[0; 32]) && !r.contains(&[1; 32]));
        assert!(r.contains(&[2; 32]) && r.contains(&[3; 32]) && r.contains(&[4; 32]));
        let mut none = Remembered::with_capacity(0);
        none.insert([1; 32]);
        assert!(!none.contains(&[1; 32]));
    }
}
