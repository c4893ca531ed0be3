//! One timer structure for everything the core waits for: a deadline heap of
//! keyed, cancellable timers.
//!
//! Each timer has a key (the probe period, one per suspect, one per relayed
//! probe, ...) and at most one deadline per key. Setting a key again
//! replaces its deadline; cancelling removes it. Both leave the old heap
//! entry in place and mark it stale through its token (a counter value
//! unique to each setting), so setting and cancelling cost O(log n) and
//! nothing is searched. Stale entries are dropped when they reach the top,
//! and the heap is rebuilt when they outnumber live ones, so it never holds
//! more than about twice the live timers.
//!
//! The top of the heap is always live, so [`Timers::next`] (the core's
//! `poll_timeout`) is O(1). Deadlines that tie fire in the order they were
//! set, so a seeded run is deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use hashbrown::HashMap;

#[derive(Debug, Clone, Copy)]
struct Entry<K> {
    at: Instant,
    token: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.token) == (o.at, o.token)
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<K> Ord for Entry<K> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.token).cmp(&(o.at, o.token))
    }
}

/// Keyed deadlines, earliest first.
#[derive(Debug)]
pub struct Timers<K, S> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    /// The live deadline and token of each armed key.
    armed: HashMap<K, (Instant, u64), S>,
    next_token: u64,
}

impl<K: Copy + Eq + Hash, S: BuildHasher> Timers<K, S> {
    /// No timers; `hasher` keys the table of armed timers.
    pub fn with_hasher(hasher: S) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            armed: HashMap::with_hasher(hasher),
            next_token: 0,
        }
    }

    /// Arm `key` to fire at `at`, replacing any deadline it had.
    pub fn set(&mut self, key: K, at: Instant) {
        self.next_token += 1;
        let token = self.next_token;
        self.armed.insert(key, (at, token));
        self.heap.push(Reverse(Entry { at, token, key }));
        self.settle();
    }

    /// Arm `key` to fire at `at` unless it is already armed to fire
    /// earlier.
    pub fn set_earlier(&mut self, key: K, at: Instant) {
        if self.deadline(&key).is_none_or(|d| d > at) {
            self.set(key, at);
        }
    }

    /// Disarm `key`; whether it was armed.
    pub fn cancel(&mut self, key: &K) -> bool {
        let was = self.armed.remove(key).is_some();
        if was {
            self.settle();
        }
        was
    }

    /// Disarm every timer.
    pub fn clear(&mut self) {
        self.heap.clear();
        self.armed.clear();
    }

    /// When `key` fires, if armed.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.armed.get(key).map(|(at, _)| *at)
    }

    /// The earliest deadline. O(1).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Disarm and return the earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let Reverse(top) = *self.heap.peek()?;
        if top.at > now {
            return None;
        }
        self.heap.pop();
        self.armed.remove(&top.key);
        self.settle();
        Some(top.key)
    }

    /// Timers armed.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Heap entries, live and stale (for tests of the bound).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    fn is_live(&self, e: &Entry<K>) -> bool {
        self.armed.get(&e.key).is_some_and(|(_, t)| *t == e.token)
    }

    /// Restore the invariants: the top is live, and stale entries are at
    /// most about half the heap.
    fn settle(&mut self) {
        if self.heap.len() > 2 * self.armed.len() + 64 {
            let live: Vec<Reverse<Entry<K>>> = self
                .armed
                .iter()
                .map(|(key, (at, token))| {
                    Reverse(Entry {
                        at: *at,
                        token: *token,
                        key: *key,
                    })
                })
                .collect();
            // Entries are totally ordered by (deadline, token): the heap
            // behaves the same whatever order they are collected in.
            self.heap = BinaryHeap::from(live);
            return;
        }
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::fast::FixedState;
    use std::time::Duration;

    type T = Timers<u32, FixedState>;

    fn timers() -> T {
        Timers::with_hasher(FixedState::with_seed(1))
    }

    #[test]
    fn fire_in_deadline_order_ties_in_setting_order() {
        let t0 = crate::testing::epoch();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut t = timers();
        t.set(1, ms(30));
        t.set(2, ms(10));
        t.set(3, ms(20));
        t.set(4, ms(10));
        assert_eq!(t.next(), Some(ms(10)));
        assert_eq!(t.pop_due(ms(5)), None, "nothing is due before its time");
        let fired: Vec<u32> = std::iter::from_fn(|| t.pop_due(ms(25))).collect();
        assert_eq!(fired, vec![2, 4, 3]);
        assert_eq!(t.next(), Some(ms(30)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn setting_again_replaces_and_cancelled_timers_never_fire() {
        let t0 = crate::testing::epoch();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut t = timers();
        t.set(1, ms(10));
        t.set(1, ms(50));
        t.set(2, ms(20));
        assert!(t.cancel(&2));
        assert!(!t.cancel(&2));
        assert_eq!(t.next(), Some(ms(50)), "stale entries never show as next");
        assert_eq!(t.pop_due(ms(40)), None);
        assert_eq!(t.pop_due(ms(50)), Some(1));
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
        // Earlier only moves a deadline forward in time, never back.
        t.set(3, ms(100));
        t.set_earlier(3, ms(200));
        assert_eq!(t.deadline(&3), Some(ms(100)));
        t.set_earlier(3, ms(60));
        assert_eq!(t.deadline(&3), Some(ms(60)));
    }

    #[test]
    fn stale_entries_stay_bounded() {
        let t0 = crate::testing::epoch();
        let mut t = timers();
        // One key rescheduled 200,000 times, later each time (as a probe
        // period is), and many keys set then cancelled (as suspects are).
        for i in 0..200_000u64 {
            t.set(0, t0 + Duration::from_micros(i + 1_000_000));
            let k = 1 + (i % 1000) as u32;
            t.set(k, t0 + Duration::from_micros(i));
            t.cancel(&k);
            assert!(t.heap_len() <= 2 * t.len() + 65, "{}", t.heap_len());
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), None);
    }
}
