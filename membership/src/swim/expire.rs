//! Forgetting: dead and departed members are removed after a while, an
//! open grid's member table has a cap, and tombstones keep stale copies of
//! forgotten members' records out.
//!
//! Every `EXPIRE_SWEEP` (30 s), members dead for `dead_expiry` or departed for
//! `left_expiry` are forgotten: their record, signed fact and state go, and
//! a tombstone ([`crate::tombstone`]) keeps the highest sequence number and
//! incarnation seen (and the signed leave) for as long again, so a stale
//! copy of the old record (another node that has not forgotten yet, or was
//! away) cannot bring the member back, while a newer record (it came back)
//! lifts the tombstone. Until then a departed member is pinged now and
//! then (see `probe`), so one that restarts without our hearing is found.
//!
//! The member cap (`max_members`, far above any grid this project runs):
//! a record of a new node that finds the table full takes the place of a
//! member that is dead or departed (longest gone first), else of one whose
//! address never answered (longest known first); members that answered are
//! never displaced, and if there is no such place the record is refused
//! and counted (`records.over_cap`). So in an open grid, where anyone can
//! sign records, a flood of them costs bounded memory and cannot push out
//! the members that work.

use std::time::{Duration, Instant};

use grapevine_crypto::NodeId;

use super::members::MemberState;
use super::{Swim, TimerKey, EXPIRE_SWEEP};
use crate::tombstone::Tombstone;

/// `now + d`, or a year from now if that does not fit an `Instant`.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

impl Swim {
    /// An expiry sweep.
    pub(super) fn on_expire(&mut self, now: Instant) {
        self.timers.set(TimerKey::Expire, now + EXPIRE_SWEEP);
        let gone = self
            .members
            .expired(now, self.cfg.dead_expiry, self.cfg.left_expiry);
        for id in gone {
            self.forget(&id, now);
            self.stats.expired += 1;
        }
        self.tombstones.expire(now);
    }

    /// Make room for `k` new members; how many were forgotten.
    pub(super) fn make_room(&mut self, k: usize, now: Instant) -> usize {
        let ids = self.members.evictable(k);
        for id in &ids {
            self.forget(id, now);
            self.stats.evicted += 1;
        }
        ids.len()
    }

    /// Forget member `id`, keeping a tombstone.
    fn forget(&mut self, id: &NodeId, now: Instant) {
        let Some(m) = self.members.get(id).cloned() else {
            return;
        };
        let seq = self.store.remove(id).map_or(0, |r| r.seq());
        let fact = self.facts.remove(id);
        let keep = match m.state {
            MemberState::Left => self.cfg.left_expiry,
            _ => self.cfg.dead_expiry,
        };
        self.tombstones.insert(
            *id,
            Tombstone {
                seq,
                incarnation: m.incarnation.max(fact.map_or(0, |f| f.incarnation)),
                left: fact.filter(|f| f.left),
                until: later(now, keep),
            },
        );
        if let Some(addr) = self.members.remove(id) {
            self.held.remove(&addr);
        }
        self.clock.forget(id);
        self.timers.cancel(&TimerKey::Suspect(*id));
    }

    /// Tombstones held (members forgotten recently).
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }
}
