//! Tombstones: what is kept of a member after it is forgotten, so that a
//! stale copy of its record cannot bring it back.
//!
//! Dead and departed members are removed after a while (and, in a full
//! open grid, members that never answered); their records and facts go
//! with them. Other nodes may still hold the old record for a while (they
//! expire it at about the same time, or were away), and anti-entropy would
//! offer it again. A tombstone keeps the member's id, the highest sequence
//! number and incarnation seen and its signed leave, if it left: a record
//! at or below that sequence number is refused (counted as stale); a newer
//! one (the node came back) is accepted and lifts the tombstone. A
//! tombstone lasts as long as a node that expired the member could meet a
//! stale copy from one that has not yet (the expiry time again), and then
//! goes too. The table is bounded ([`Tombstones::new`]'s cap): past it, the
//! oldest goes first.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use grapevine_crypto::NodeId;

use crate::facts::Fact;

/// What is kept of a forgotten member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// Highest record sequence number seen.
    pub seq: u64,
    /// Highest incarnation seen.
    pub incarnation: u64,
    /// Its signed leave, if it left.
    pub left: Option<Fact>,
    /// When the tombstone goes.
    pub until: Instant,
}

/// Tombstones by node id, bounded.
#[derive(Debug)]
pub struct Tombstones {
    map: HashMap<NodeId, Tombstone>,
    /// (until, id), to drop the oldest and the expired.
    order: BTreeSet<(Instant, NodeId)>,
    cap: usize,
}

impl Tombstones {
    /// An empty table holding at most `cap` tombstones.
    pub fn new(cap: usize) -> Self {
        Tombstones {
            map: HashMap::new(),
            order: BTreeSet::new(),
            cap: cap.max(1),
        }
    }

    /// Bury `id`.
    pub fn insert(&mut self, id: NodeId, t: Tombstone) {
        if let Some(old) = self.map.remove(&id) {
            self.order.remove(&(old.until, id));
        }
        while self.map.len() >= self.cap {
            let Some(first) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&first.1);
        }
        self.order.insert((t.until, id));
        self.map.insert(id, t);
    }

    /// The tombstone of `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Tombstone> {
        self.map.get(id)
    }

    /// Whether a record of `id` at `seq` is a stale copy of a forgotten
    /// member's.
    pub fn blocks(&self, id: &NodeId, seq: u64) -> bool {
        self.map.get(id).is_some_and(|t| seq <= t.seq)
    }

    /// Lift `id`'s tombstone (it came back).
    pub fn remove(&mut self, id: &NodeId) {
        if let Some(t) = self.map.remove(id) {
            self.order.remove(&(t.until, *id));
        }
    }

    /// Drop tombstones whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(until, id)) = self.order.first() {
            if until > now {
                break;
            }
            self.order.pop_first();
            self.map.remove(&id);
        }
    }

    /// Tombstones held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(seq: u64, until: Instant) -> Tombstone {
        Tombstone {
            seq,
            incarnation: seq,
            left: None,
            until,
        }
    }

    #[test]
    fn a_tombstone_blocks_older_records_until_its_time_and_the_table_is_bounded() {
        let t0 = crate::testing::epoch();
        let mut ts = Tombstones::new(3);
        let id = |b: u8| NodeId([b; 32]);
        ts.insert(id(1), t(10, t0 + Duration::from_secs(10)));
        assert!(ts.blocks(&id(1), 10) && ts.blocks(&id(1), 3));
        assert!(!ts.blocks(&id(1), 11), "a newer record is a comeback");
        assert!(!ts.blocks(&id(2), 1));
        ts.expire(t0 + Duration::from_secs(9));
        assert_eq!(ts.len(), 1);
        ts.expire(t0 + Duration::from_secs(10));
        assert!(ts.is_empty());
        // Past the cap the one whose time is nearest goes first.
        for i in 0..5u8 {
            ts.insert(id(i), t(1, t0 + Duration::from_secs(100 - u64::from(i))));
        }
        assert_eq!(ts.len(), 3);
        assert!(ts.get(&id(0)).is_some() && ts.get(&id(4)).is_some());
        ts.remove(&id(0));
        assert_eq!(ts.len(), 2);
    }
}
