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
//! the members that work; a full table frees a batch of such places at once
//! (`EVICT_BATCH`), so the flood's CPU per record stays small too.

use std::time::{Duration, Instant};

use grapevine_crypto::NodeId;

use super::members::MemberState;
use super::{Swim, TimerKey, EXPIRE_SWEEP};
use crate::tombstone::Tombstone;

/// A full table frees at least this fraction of its cap at once (the
/// places that are free to take: gone or never answered), so the pass over
/// the table that picks them is paid once per `max_members / EVICT_BATCH`
/// new records rather than once per record: a flood of records at the cap
/// cost 11.9 s of CPU for 3,616 records past a cap of 16,384 when every
/// record paid a sort of the table.
const EVICT_BATCH: usize = 64;

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

    /// Make room for `k` new members, and for more at once when the cap is
    /// large (see [`EVICT_BATCH`]); how many were forgotten.
    pub(super) fn make_room(&mut self, k: usize, now: Instant) -> usize {
        let k = k.max(self.cfg.max_members / EVICT_BATCH);
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
        self.timers.cancel(&TimerKey::SpreadSuspicion(*id));
    }

    /// Tombstones held (members forgotten recently).
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use grapevine_crypto::NodeId;

    use super::EXPIRE_SWEEP;
    use crate::swim::members::MemberState;
    use crate::swim::testing::{converged, signed_record, Net};
    use crate::wire::{Message, Update};
    use crate::Config;

    fn stranger() -> SocketAddr {
        "10.9.9.9:9".parse().expect("addr")
    }

    fn gossip(rec: &grapevine_crypto::SignedRecord) -> Message {
        Message::Gossip {
            from: NodeId([7; 32]),
            updates: vec![Update::Record(rec.bytes().to_vec())],
        }
    }

    #[test]
    fn a_dead_member_is_forgotten_and_a_stale_copy_cannot_bring_it_back() {
        let dead_expiry = Duration::from_secs(120);
        let mut net = Net::with_config(
            4,
            Config {
                dead_expiry,
                ..Config::new_lan()
            },
        );
        converged(&mut net);
        let id3 = net.id(3);
        let old = net.record(3, 1);
        net.down(3);
        assert!(net.run_until(Duration::from_secs(60), |n| {
            (0..3).all(|i| n.node(i).state_of(&id3) == Some(MemberState::Dead))
        }));
        // Not before its time.
        net.run_for(dead_expiry / 2);
        assert!((0..3).all(|i| net.node(i).state_of(&id3) == Some(MemberState::Dead)));
        assert!(net.run_until(dead_expiry + 2 * EXPIRE_SWEEP, |n| {
            (0..3).all(|i| n.node(i).state_of(&id3).is_none())
        }));
        for i in 0..3 {
            let n = net.node(i);
            assert_eq!((n.stats().expired, n.tombstones()), (1, 1), "node {i}");
            assert!(n.records().get(&id3).is_none(), "node {i}");
        }
        // Its old record, offered again (a node that was away): refused.
        for i in 0..3 {
            net.inject(i, stranger(), &gossip(&old));
        }
        net.run_for(Duration::from_secs(5));
        for i in 0..3 {
            assert_eq!(net.node(i).state_of(&id3), None, "node {i}");
            assert!(net.node(i).stats().records.tombstoned >= 1, "node {i}");
        }
        // A newer record (it came back) lifts the tombstone everywhere.
        net.up(3);
        let rec = net.record(3, 2_000_000);
        let now = net.now();
        net.node_mut(3).update_record(rec, now);
        net.inject(0, stranger(), &gossip(&net.record(3, 2_000_000)));
        assert!(net.run_until(Duration::from_secs(30), |n| {
            (0..3).all(|i| n.node(i).state_of(&id3) == Some(MemberState::Alive))
        }));
        assert!((0..3).all(|i| net.node(i).tombstones() == 0));
    }

    #[test]
    fn at_the_cap_a_new_record_takes_a_dead_members_place_never_a_working_ones() {
        let mut net = Net::with_config(
            4,
            Config {
                max_members: 3,
                ..Config::new_lan()
            },
        );
        converged(&mut net);
        // Every member answered: a new node's record is refused.
        net.run_for(Duration::from_secs(5));
        let first = signed_record(50);
        net.inject(0, stranger(), &gossip(&first));
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.node(0).state_of(&first.node_id()), None);
        assert!(net.node(0).stats().records.over_cap >= 1);
        assert_eq!(net.node(0).state_counts().0, 3);
        // Member 3 dies: the next new record takes its place.
        let id3 = net.id(3);
        net.down(3);
        assert!(net.run_until(Duration::from_secs(60), |n| {
            n.node(0).state_of(&id3) == Some(MemberState::Dead)
        }));
        let second = signed_record(51);
        net.inject(0, stranger(), &gossip(&second));
        net.run_for(Duration::from_secs(1));
        let n = net.node(0);
        assert_eq!(n.state_of(&second.node_id()), Some(MemberState::Alive));
        assert_eq!(n.state_of(&id3), None);
        assert_eq!(n.stats().evicted, 1);
        assert_eq!(n.tombstones(), 1);
        for i in 1..3 {
            assert_eq!(n.state_of(&net.id(i)), Some(MemberState::Alive));
        }
    }

    #[test]
    fn a_flood_at_the_cap_pays_one_pass_over_the_table_per_batch_not_per_record() {
        let cap = 4 * super::EVICT_BATCH; // frees 4 places at a time
        let (mut node, now) = crate::swim::testing::node_with(
            1,
            Config {
                max_members: cap,
                ..Config::new_lan()
            },
        );
        let extra = 40;
        for i in 0..(cap + extra) as u64 {
            node.add_verified_record(signed_record(1000 + i), now);
        }
        let st = node.stats();
        // Every record past the cap took a never-answered member's place...
        assert_eq!(node.state_counts().0, cap);
        assert_eq!(st.evicted, extra as u64);
        // ...and the table was found full (and scanned for places to free)
        // once per four records, not once per record.
        assert!(
            st.records.over_cap <= (extra / 4 + 1) as u64,
            "{} passes for {extra} records",
            st.records.over_cap
        );
    }

    #[test]
    fn a_departed_member_is_pinged_for_a_while_then_forgotten() {
        let left_expiry = Duration::from_secs(120);
        let mut net = Net::with_config(
            3,
            Config {
                left_expiry,
                ..Config::new_lan()
            },
        );
        converged(&mut net);
        let (id2, addr2) = (net.id(2), net.addr(2));
        net.leave(2);
        assert!(net.run_until(Duration::from_secs(30), |n| {
            (0..2).all(|i| n.node(i).state_of(&id2) == Some(MemberState::Left))
        }));
        let pings = |n: &Net| n.pings_from(0).iter().filter(|a| **a == addr2).count();
        let before = pings(&net);
        net.run_for(left_expiry / 2);
        assert!(pings(&net) > before, "a departed member is tried again");
        assert!(net.run_until(left_expiry + 2 * EXPIRE_SWEEP, |n| {
            (0..2).all(|i| n.node(i).state_of(&id2).is_none())
        }));
        assert_eq!(net.node(0).tombstones(), 1);
        let after = pings(&net);
        net.run_for(left_expiry / 2);
        assert_eq!(pings(&net), after, "a forgotten member is not pinged");
    }
}
