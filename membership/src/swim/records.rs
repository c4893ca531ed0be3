//! Record intake: records from gossip and anti-entropy wait up to
//! [`VERIFY_DELAY`] (or until [`VERIFY_BATCH`] are waiting) and are verified
//! as a batch by the [`crate::store::RecordStore`]; each record accepted
//! makes or updates a member. A newer record of a member believed dead or
//! departed is its own proof that it is back (a restart).

use std::time::{Duration, Instant};

use grapevine_crypto::SignedRecord;

use super::members::MemberState;
use super::{Event, Swim, TimerKey};
use crate::broadcast::Key;
use crate::store::Offer;
use crate::wire::Update;

/// Records are verified in batches of up to this many (ed25519 batch
/// verification costs about 60% of one-by-one per record).
pub(super) const VERIFY_BATCH: usize = 64;
/// Longest a received record waits for its batch.
pub(super) const VERIFY_DELAY: Duration = Duration::from_millis(20);

impl Swim {
    /// A record was accepted: make or update its member.
    pub(super) fn learn_record(&mut self, rec: &SignedRecord, now: Instant) {
        let id = rec.node_id();
        if id == self.me {
            return;
        }
        // A record is an alive signed at its sequence number: facts it says
        // as much as are dropped, as every node holding it drops them.
        self.facts.record_seen(&id, rec.seq());
        let addr = rec.record().addrs[0];
        match self.members.get(&id).map(|m| (m.state, m.incarnation)) {
            None => {
                self.members.insert(id, addr, rec.seq(), now, &mut self.rng);
                self.events.push_back(Event::Joined(id));
            }
            Some((state, incarnation)) => {
                self.members.set_addr(&id, addr);
                self.events.push_back(Event::RecordUpdated(id));
                if matches!(state, MemberState::Dead | MemberState::Left) && rec.seq() > incarnation
                {
                    self.set_state(id, MemberState::Alive, rec.seq(), now);
                }
            }
        }
    }

    /// Queue records for batch verification; they are verified when
    /// [`VERIFY_BATCH`] are waiting or after [`VERIFY_DELAY`]. Newly
    /// accepted ones are learned and, if `spread`, queued for gossip.
    pub(super) fn queue_records(
        &mut self,
        records: Vec<Vec<u8>>,
        spread: bool,
        from_sync: bool,
        now: Instant,
    ) {
        self.pending
            .extend(records.into_iter().map(|r| (r, spread, from_sync)));
        if self.pending.len() >= VERIFY_BATCH {
            self.verify_pending(now);
        } else if !self.pending.is_empty() && self.timers.deadline(&TimerKey::Verify).is_none() {
            self.timers.set(TimerKey::Verify, now + VERIFY_DELAY);
        }
    }

    /// Verify every waiting record now.
    pub(super) fn verify_pending(&mut self, now: Instant) {
        self.timers.cancel(&TimerKey::Verify);
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        let refs: Vec<&[u8]> = pending.iter().map(|(r, _, _)| r.as_slice()).collect();
        let verdicts = self.store.offer_many(&refs, self.unix_secs(now));
        let mut spread_any = false;
        let mut synced = false;
        for (v, (_, spread, from_sync)) in verdicts.into_iter().zip(pending.iter()) {
            if let Offer::Accepted(rec) = v {
                self.accepted(&rec, *spread, now);
                spread_any |= *spread;
                synced |= *from_sync;
            }
        }
        if spread_any {
            self.schedule_gossip(now);
        }
        if synced {
            // Pulling is productive: go on soon.
            self.timers
                .set_earlier(TimerKey::Sync, now + self.cfg.sync_fast_interval);
        }
    }

    fn accepted(&mut self, rec: &SignedRecord, spread: bool, now: Instant) {
        self.learn_record(rec, now);
        if spread {
            self.broadcasts.push(
                Key::Record(rec.node_id()),
                Update::Record(rec.bytes().to_vec()),
            );
        }
        if !self.joined {
            self.joined = true;
            self.timers.cancel(&TimerKey::Join);
        }
    }

    /// Learn a record verified elsewhere (a peer cache read at start, a
    /// harness sharing verified records between simulated nodes): it is
    /// compared with what is held and, in a closed grid, its admission is
    /// checked, but its signature is not checked again (a [`SignedRecord`]
    /// is only made by verifying or signing). Not spread: anti-entropy
    /// carries it where it is missing. Whether it was accepted.
    pub fn add_verified_record(&mut self, rec: SignedRecord, now: Instant) -> bool {
        if self.left || rec.node_id() == self.me {
            return false;
        }
        match self.store.offer_verified(rec, self.unix_secs(now)) {
            Offer::Accepted(rec) => {
                // Not proof that anyone answered: joining goes on.
                self.learn_record(&rec, now);
                true
            }
            _ => false,
        }
    }

    /// Publish a new version of this node's record (it must have a higher
    /// sequence number).
    pub fn update_record(&mut self, record: SignedRecord, now: Instant) {
        if record.node_id() != self.me || self.left {
            return;
        }
        if self
            .store
            .get(&self.me)
            .is_some_and(|r| r.seq() >= record.seq())
        {
            return;
        }
        self.facts.record_seen(&self.me, record.seq());
        self.store.insert_own(record.clone());
        self.broadcasts.push(
            Key::Record(self.me),
            Update::Record(record.bytes().to_vec()),
        );
        self.schedule_gossip(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::testing::{converged, node_alone, Net};
    use crate::wire::Message;
    use grapevine_crypto::NodeId;

    #[test]
    fn records_wait_for_a_batch_and_forged_ones_are_never_stored() {
        let (mut node, now) = node_alone(3);
        let others: Vec<_> = (10..18u64)
            .map(crate::swim::testing::signed_record)
            .collect();
        let mut forged = others[0].bytes().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        let mut records: Vec<Vec<u8>> = others[1..].iter().map(|r| r.bytes().to_vec()).collect();
        records.push(forged);
        let gossip = Message::Gossip {
            from: NodeId([1; 32]),
            updates: records.into_iter().map(Update::Record).collect(),
        };
        node.handle_datagram(
            now,
            "10.0.0.9:9".parse().unwrap(),
            &gossip.encode().unwrap(),
        );
        // Waiting for the batch: nothing learned yet, a verify timer armed.
        assert_eq!(node.records().len(), 1);
        assert_eq!(node.poll_timeout(), now + VERIFY_DELAY);
        node.handle_timeout(now + VERIFY_DELAY);
        assert_eq!(node.records().len(), 8);
        assert_eq!(node.stats().records.rejected, 1);
        assert_eq!(node.state_counts(), (7, 0, 0, 0));
        let joined = std::iter::from_fn(|| node.poll_event())
            .filter(|e| matches!(e, Event::Joined(_)))
            .count();
        assert_eq!(joined, 7);
    }

    #[test]
    fn a_newer_record_brings_a_dead_member_back() {
        let mut net = Net::new(4);
        converged(&mut net);
        let id3 = net.id(3);
        net.down(3);
        assert!(net.run_until(Duration::from_secs(60), |n| {
            (0..3).all(|i| n.node(i).state_of(&id3) == Some(MemberState::Dead))
        }));
        net.up(3);
        let rec = net.record(3, 2_000_000);
        let now = net.now();
        net.node_mut(3).update_record(rec, now);
        assert!(net.run_until(Duration::from_secs(20), |n| {
            (0..3).all(|i| n.node(i).state_of(&id3) == Some(MemberState::Alive))
        }));
    }

    #[test]
    fn verified_records_are_learned_without_a_signature_check_but_not_unadmitted() {
        let (mut node, now) = node_alone(4);
        let rec = crate::swim::testing::signed_record(40);
        assert!(node.add_verified_record(rec.clone(), now));
        assert!(!node.add_verified_record(rec, now), "a duplicate");
        assert_eq!(node.state_counts(), (1, 0, 0, 0));
        let st = node.stats().records;
        assert_eq!((st.accepted, st.duplicate, st.rejected), (1, 1, 0));
        // A closed grid still wants an admission from its key.
        let (mut closed, now) = crate::swim::testing::closed_node_alone(5);
        assert!(!closed.add_verified_record(crate::swim::testing::signed_record(41), now));
        assert_eq!(closed.stats().records.unadmitted, 1);
    }
}
