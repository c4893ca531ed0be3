//! Record intake: records from gossip and anti-entropy wait up to
//! [`VERIFY_DELAY`] (or until [`VERIFY_BATCH`] are waiting) and are verified
//! as a batch by the [`crate::store::RecordStore`]; each record accepted
//! makes or updates a member. A record with sequence number *s* says
//! "alive at *s*": above the incarnation held, it refutes a suspicion and is
//! proof that a member believed dead or departed is back (a restart).
//!
//! What is offered is checked against the grid's time (a record issued
//! more than `clock_allowance` ahead of it is held back), tombstones (stale
//! copies of forgotten members' records) and the member cap (a new node's
//! record takes the place of a member gone or never heard from, or is
//! refused). A record of this node's own id newer than its own (a previous
//! life's: a clock once ahead, a directory restored from a backup) makes it
//! sign again above it, and so does its own record issued too far ahead of
//! the grid's time once the grid's time is known.

use std::time::{Duration, Instant};

use grapevine_crypto::SignedRecord;

use super::members::MemberState;
use super::{Event, Swim, TimerKey};
use crate::broadcast::Key;
use crate::store::{Limits, Offer};
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
        self.tombstones.remove(&id);
        // A record is an alive signed at its sequence number: facts it says
        // as much as are dropped, as every node holding it drops them.
        self.facts.record_seen(&id, rec.seq());
        let addr = rec.record().addrs[0];
        let seed = self.seeds.contains(&addr);
        match self.members.get(&id).map(|m| (m.incarnation, m.addr)) {
            None => {
                self.members
                    .insert(id, addr, rec.seq(), seed, now, &mut self.rng);
                if !seed {
                    self.queue_validation(id, now);
                }
                self.events.push_back(Event::Joined(id));
            }
            Some((incarnation, old_addr)) => {
                if old_addr != addr {
                    if let Some(freed) = self.members.set_addr(&id, addr, seed) {
                        self.held.remove(&freed);
                    }
                    if !seed {
                        self.queue_validation(id, now);
                    }
                }
                self.events.push_back(Event::RecordUpdated(id));
                if rec.seq() > incarnation {
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

    /// Unix seconds at which admission certificates are checked: the
    /// allowance later than now (a certificate counts as expired only
    /// `clock_allowance` after its expiry, at both ends).
    pub(super) fn admission_time(&self, now: Instant) -> u64 {
        self.unix_secs(now)
            .saturating_sub(self.cfg.clock_allowance.as_secs())
    }

    /// Records issued after this (Unix seconds) are held back: the
    /// allowance past the grid's time. Before any member's clock is
    /// sampled the grid's time is unknown and nothing is held back: this
    /// node cannot tell whose clock is wrong, and its own may be (a board
    /// with no real-time clock before NTP answers would otherwise take its
    /// seeds' records for records from the future, learn no member, and so
    /// never measure the grid's time).
    fn max_issued_at(&self, now: Instant) -> u64 {
        if self.clock.peers() == 0 {
            return u64::MAX;
        }
        self.clock
            .grid_time(self.unix_secs(now))
            .saturating_add(self.cfg.clock_allowance.as_secs())
    }

    /// Records of new nodes that may still be stored.
    fn store_room(&self) -> usize {
        self.cfg
            .max_members
            .saturating_add(1)
            .saturating_sub(self.store.len())
    }

    /// Offer one record (a join's) with every check; its verdict.
    pub(super) fn offer_one(&mut self, bytes: &[u8], now: Instant) -> Offer {
        let lim = Limits {
            unix_now: self.admission_time(now),
            max_issued_at: self.max_issued_at(now),
            room: self.store_room(),
            tombstones: Some(&self.tombstones),
        };
        match self.store.offer(bytes, &lim) {
            Offer::Full(rec) => self.offer_again(vec![rec], now).pop().expect("one"),
            v => self.after_offer(v, now),
        }
    }

    /// What follows a verdict: a previous life's record is signed above.
    fn after_offer(&mut self, v: Offer, now: Instant) -> Offer {
        if let Offer::Own(rec) = &v {
            self.note_own_elsewhere(rec, now);
            self.resign(rec.seq(), now);
        }
        v
    }

    /// A newer record of this node's own id. One issued before this
    /// node's own latest is a previous life's (a clock once ahead, a
    /// directory restored from a backup): signed above, and that is the
    /// end of it. One issued since is a live process answering this node's
    /// record with its own: another process running with this identity (a
    /// copied directory, a cloned machine, at any address), which signs
    /// above this node in turn, again and again. The second such within
    /// [`TWIN_WINDOW`](super::TWIN_WINDOW) is the twin, and an error the
    /// operator must hear of (once per window: the counter carries the
    /// rest), since nothing else can end it.
    fn note_own_elsewhere(&mut self, rec: &SignedRecord, now: Instant) {
        if self.left {
            return;
        }
        let answering = self
            .store
            .get(&self.me)
            .is_some_and(|own| rec.record().issued_at >= own.record().issued_at);
        if !answering {
            return;
        }
        self.stats.own_signed_since += 1;
        let again = self
            .last_elsewhere
            .is_some_and(|t| now.saturating_duration_since(t) < super::TWIN_WINDOW);
        let told = self
            .last_clash_logged
            .is_some_and(|t| now.saturating_duration_since(t) < super::TWIN_WINDOW);
        self.last_elsewhere = Some(now);
        let addrs = &rec.record().addrs;
        if again {
            self.stats.identity_clashes += 1;
            if !told {
                self.last_clash_logged = Some(now);
                tracing::error!(
                    ?addrs,
                    seq = rec.seq(),
                    "another process is running with this node's identity (a copy of its directory?) at {addrs:?}: the two sign above each other and take turns in every member table; stop one, and give a copy its own directory (`grapevine init`)"
                );
            }
        } else {
            tracing::warn!(
                ?addrs,
                seq = rec.seq(),
                "a record of this node's id signed since its own, at {addrs:?}: signed above it (if this comes again, another process has this identity)"
            );
        }
    }

    /// Records of new nodes refused for want of room: make room (members
    /// gone or never heard from) and offer them again. The verdicts.
    fn offer_again(&mut self, full: Vec<SignedRecord>, now: Instant) -> Vec<Offer> {
        let freed = self.make_room(full.len(), now);
        let lim = Limits {
            unix_now: self.admission_time(now),
            max_issued_at: u64::MAX,
            room: freed,
            tombstones: Some(&self.tombstones),
        };
        full.into_iter()
            .map(|rec| self.store.offer_verified(rec, &lim))
            .collect()
    }

    /// Verify every waiting record now.
    pub(super) fn verify_pending(&mut self, now: Instant) {
        self.timers.cancel(&TimerKey::Verify);
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        let refs: Vec<&[u8]> = pending.iter().map(|(r, _, _)| r.as_slice()).collect();
        let lim = Limits {
            unix_now: self.admission_time(now),
            max_issued_at: self.max_issued_at(now),
            room: self.store_room(),
            tombstones: Some(&self.tombstones),
        };
        let mut verdicts = self.store.offer_many(&refs, &lim);
        let full: Vec<(usize, SignedRecord)> = verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Offer::Full(rec) => Some((i, rec.clone())),
                _ => None,
            })
            .collect();
        if !full.is_empty() {
            let (at, recs): (Vec<usize>, Vec<SignedRecord>) = full.into_iter().unzip();
            for (i, v) in at.into_iter().zip(self.offer_again(recs, now)) {
                verdicts[i] = v;
            }
        }
        let mut spread_any = false;
        let mut synced = false;
        for (v, (_, spread, from_sync)) in verdicts.into_iter().zip(pending.iter()) {
            if let Offer::Accepted(rec) = self.after_offer(v, now) {
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

    pub(super) fn accepted(&mut self, rec: &SignedRecord, spread: bool, now: Instant) {
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
    /// checked as received records are, but its signature is not checked
    /// again (a [`SignedRecord`] is only made by verifying or signing).
    /// Not spread: anti-entropy carries it where it is missing. Whether it
    /// was accepted.
    pub fn add_verified_record(&mut self, rec: SignedRecord, now: Instant) -> bool {
        if self.left {
            return false;
        }
        let lim = Limits {
            unix_now: self.admission_time(now),
            max_issued_at: self.max_issued_at(now),
            room: self.store_room(),
            tombstones: Some(&self.tombstones),
        };
        let v = match self.store.offer_verified(rec, &lim) {
            Offer::Full(rec) => self.offer_again(vec![rec], now).pop().expect("one"),
            v => self.after_offer(v, now),
        };
        match v {
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
        self.install_own(record, now);
    }

    fn install_own(&mut self, record: SignedRecord, now: Instant) {
        let seq = record.seq();
        self.facts.record_seen(&self.me, seq);
        self.incarnation = self.incarnation.max(seq);
        self.note_signed(seq);
        self.store.insert_own(record.clone());
        self.broadcasts.push(
            Key::Record(self.me),
            Update::Record(record.bytes().to_vec()),
        );
        self.schedule_gossip(now);
    }

    /// Sign this node's record again, above `above` (and its own), issued
    /// at the grid's time.
    pub(super) fn resign(&mut self, above: u64, now: Instant) {
        if self.left {
            return;
        }
        let Some(own) = self.store.get(&self.me) else {
            return;
        };
        let Some(seq) = above.max(own.seq()).checked_add(1) else {
            tracing::error!("own record at {above}: no higher sequence number to sign");
            return;
        };
        let mut body = own.record().clone();
        body.seq = seq;
        body.issued_at = self.clock.grid_time(self.unix_secs(now));
        match body.sign(&self.identity) {
            Ok(rec) => {
                tracing::info!(seq, "signed this node's record again, above a previous one");
                self.stats.resigned += 1;
                self.install_own(rec, now);
            }
            Err(e) => tracing::warn!("signing own record: {e}"),
        }
    }

    /// Once the grid's time is known: this node's record, if issued further
    /// ahead of it than half the allowance (its clock is ahead), is signed
    /// again at the grid's time, so others do not hold it back.
    pub(super) fn check_own_clock(&mut self, now: Instant) {
        if self.clock.peers() == 0 {
            return;
        }
        let grid = self.clock.grid_time(self.unix_secs(now));
        let limit = grid.saturating_add(self.cfg.clock_allowance.as_secs() / 2);
        let ahead = self
            .store
            .get(&self.me)
            .is_some_and(|r| r.record().issued_at > limit);
        if ahead {
            let seq = self.store.get(&self.me).map_or(0, |r| r.seq());
            self.resign(seq, now);
        }
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

    #[test]
    fn a_newer_record_of_its_own_id_makes_a_node_sign_above_it() {
        let mut net = Net::new(3);
        converged(&mut net);
        let id1 = net.id(1);
        // A previous life's record (a clock once ahead, a directory
        // restored from a backup), at another address, far above.
        let mut old = grapevine_crypto::LocationRecord::new(
            &grapevine_crypto::Identity::generate_with(&mut grapevine_crypto::testing::rng(1001)),
            vec!["10.7.7.7:7946".parse().unwrap()],
        );
        old.seq = 5_000_000;
        assert_eq!(old.node_id, id1, "the same identity as Net's node 1");
        let old = old
            .sign(&grapevine_crypto::Identity::generate_with(
                &mut grapevine_crypto::testing::rng(1001),
            ))
            .unwrap();
        let gossip = Message::Gossip {
            from: NodeId([1; 32]),
            updates: vec![Update::Record(old.bytes().to_vec())],
        };
        net.inject(1, "10.9.9.9:9".parse().unwrap(), &gossip);
        // Every node ends up with node 1 at its own address, above the old
        // record.
        assert!(net.run_until(Duration::from_secs(30), |n| {
            (0..3).all(|i| {
                n.node(i)
                    .records()
                    .get(&id1)
                    .is_some_and(|r| r.seq() > 5_000_000 && r.record().addrs[0] == n.addr(1))
            })
        }));
        assert_eq!(net.node(1).stats().resigned, 1);
        assert_eq!(net.node(0).state_of(&id1), Some(MemberState::Alive));
        // A previous life: no clash.
        assert_eq!(net.node(1).stats().identity_clashes, 0);
    }

    /// Two processes with one identity (a copied node directory run
    /// elsewhere) sign above each other: the second record of its id
    /// signed since its own within the window is a clash, counted (and
    /// logged as an error); it used to go unremarked. A previous life's
    /// records, issued before this node's, are no clash (the test above).
    #[test]
    fn a_twin_signing_above_this_node_again_and_again_is_a_clash() {
        let mut net = Net::new(3);
        converged(&mut net);
        let id1 = net.id(1);
        let twin =
            || grapevine_crypto::Identity::generate_with(&mut grapevine_crypto::testing::rng(1001));
        let mut seq = 5_000_000;
        for round in 0..2u64 {
            let mut r = grapevine_crypto::LocationRecord::new(
                &twin(),
                vec!["10.7.7.7:7946".parse().unwrap()],
            );
            r.seq = seq;
            // Signed as the twin answers: no earlier than this node's own.
            r.issued_at = net.node(1).records().get(&id1).unwrap().record().issued_at;
            assert_eq!(r.node_id, id1);
            let r = r.sign(&twin()).unwrap();
            let gossip = Message::Gossip {
                from: NodeId([1; 32]),
                updates: vec![Update::Record(r.bytes().to_vec())],
            };
            net.inject(1, "10.9.9.9:9".parse().unwrap(), &gossip);
            assert!(net.run_until(Duration::from_secs(5), |n| {
                n.node(1).stats().resigned == round + 1
            }));
            seq = net.node(1).records().get(&id1).unwrap().seq() + 1_000;
        }
        assert_eq!(net.node(1).stats().own_signed_since, 2);
        assert_eq!(net.node(1).stats().identity_clashes, 1);
    }

    #[test]
    fn a_node_that_has_not_measured_the_grids_time_holds_nothing_back() {
        // Its wall clock reads its record's issue time (0): a day behind a
        // grid whose records it is offered (a board before NTP answers).
        let (mut node, now) = node_alone(6);
        let id = grapevine_crypto::Identity::generate_with(&mut grapevine_crypto::testing::rng(62));
        let mut r = grapevine_crypto::LocationRecord::new(&id, vec!["10.8.8.9:1".parse().unwrap()]);
        r.issued_at = 86_400;
        let r = r.sign(&id).unwrap();
        let gossip = Message::Gossip {
            from: NodeId([1; 32]),
            updates: vec![Update::Record(r.bytes().to_vec())],
        };
        node.handle_datagram(
            now,
            "10.9.9.9:9".parse().unwrap(),
            &gossip.encode().unwrap(),
        );
        node.handle_timeout(now + VERIFY_DELAY);
        assert_eq!(node.stats().clock_peers, 0);
        assert_eq!(node.state_of(&r.node_id()), Some(MemberState::Alive));
        assert_eq!(node.stats().records.ahead, 0);
    }

    #[test]
    fn records_ahead_of_the_grids_time_are_held_back_and_a_node_ahead_signs_again() {
        const DAY_MS: u64 = 86_400_000;
        let mut net = Net::new(5);
        converged(&mut net);
        net.run_for(Duration::from_secs(10));
        assert!(net.node(0).stats().clock_peers >= 3);
        // Every wall clock started at 0 (the records' issue time). A
        // stranger's record issued two days ahead is held back; one issued
        // a minute ahead is not.
        let stranger = |seed: u64, issued_at: u64| {
            let id = grapevine_crypto::Identity::generate_with(
                &mut grapevine_crypto::testing::rng(seed),
            );
            let mut r =
                grapevine_crypto::LocationRecord::new(&id, vec!["10.8.8.8:1".parse().unwrap()]);
            r.issued_at = issued_at;
            r.sign(&id).unwrap()
        };
        let (ahead, fine) = (stranger(60, 2 * 86_400), stranger(61, 60));
        let gossip = |r: &SignedRecord| Message::Gossip {
            from: NodeId([1; 32]),
            updates: vec![Update::Record(r.bytes().to_vec())],
        };
        net.inject(0, "10.9.9.9:9".parse().unwrap(), &gossip(&ahead));
        net.inject(0, "10.9.9.9:9".parse().unwrap(), &gossip(&fine));
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.node(0).state_of(&ahead.node_id()), None);
        assert_eq!(
            net.node(0).state_of(&fine.node_id()),
            Some(MemberState::Alive)
        );
        assert!(net.node(0).stats().records.ahead >= 1);
        // Node 4's clock jumps two days ahead and it signs a new record by
        // it: the others hold it back; node 4 learns the grid's time from
        // their headers and signs again at it, which all take.
        let id4 = net.id(4);
        let now = net.now();
        net.node_mut(4).set_wall_clock(now, 2 * DAY_MS);
        let mut r = grapevine_crypto::LocationRecord::new(
            &grapevine_crypto::Identity::generate_with(&mut grapevine_crypto::testing::rng(1004)),
            vec![net.addr(4)],
        );
        assert_eq!(r.node_id, id4);
        r.seq = 2;
        r.issued_at = 2 * 86_400;
        let r = r
            .sign(&grapevine_crypto::Identity::generate_with(
                &mut grapevine_crypto::testing::rng(1004),
            ))
            .unwrap();
        net.node_mut(4).update_record(r, now);
        assert!(net.run_until(Duration::from_secs(60), |n| {
            (0..4).all(|i| {
                n.node(i)
                    .records()
                    .get(&id4)
                    .is_some_and(|r| r.seq() > 2 && r.record().issued_at < 86_400)
            })
        }));
        assert!(net.node(4).stats().resigned >= 1);
        assert!((0..4).any(|i| net.node(i).stats().records.ahead >= 1));
        let off = net.node(4).stats().clock_offset_s.expect("measured");
        assert!(
            (-2 * 86_400 - 60..=-2 * 86_400 + 60).contains(&off),
            "{off}"
        );
    }
}
