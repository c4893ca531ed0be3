//! Joining and leaving.
//!
//! A new node sends `Join{its record}` to its seeds, retrying with
//! exponential backoff (`join_retry_initial` doubling to `join_retry_max`,
//! with jitter) until a record arrives from anyone. A seed verifies and
//! stores the joiner's record, spreads it, and answers `JoinAck{its own
//! record}`; the joiner then syncs with that seed at once and pulls every
//! record by anti-entropy.
//!
//! A restarting node also joins through the members it knew (its peer
//! cache, [`Swim::rejoin_via`]): up to `REJOIN_TARGETS` of their
//! addresses get its `Join` beside the seeds, so a node with no seeds (the
//! first of a grid) or whose seeds are down finds the grid again.
//!
//! And the grid finds a restarted node that knows no one (no seeds, no
//! cache; or seeds that restarted with it, the two an island): members
//! ping those held dead or departed now and then (see `probe`), and one
//! that answers from its recorded address is offered the pinging node's
//! record in a `Join` (`rediscover`), which it takes and answers with its
//! newer record, so it comes back and learns the grid. A node that knows
//! no one and is spoken to by a member (one that still holds it alive, as
//! after a quick crash and restart) asks that member to let it in
//! (`join_stranger`).
//!
//! A leaving node signs `Left` at its incarnation and sends it directly to
//! up to 64 members; it spreads like any update, and, being a signed fact,
//! anti-entropy delivers it to whoever gossip missed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_crypto::{NodeId, SignedRecord, UnverifiedRecord};
use rand::seq::SliceRandom;
use rand::Rng;

use super::{Swim, TimerKey};
use crate::broadcast::Key;
use crate::facts::Fact;
use crate::store::Offer;
use crate::wire::{liveness_message, reads_cookies, Message, Update};

/// Cached members a restarting node sends its `Join` to, besides seeds.
pub const REJOIN_TARGETS: usize = 8;

impl Swim {
    /// Rejoin through members known from a previous run (records verified
    /// by the caller, as [`Swim::add_verified_record`] takes them): they
    /// become members (their addresses to be validated), and up to
    /// `REJOIN_TARGETS` (8) of them are asked to let this node in, with the
    /// seeds, until one answers. For a node restarting with a peer cache.
    pub fn rejoin_via(&mut self, records: Vec<SignedRecord>, now: Instant) {
        let mut addrs = Vec::new();
        for r in records {
            if r.node_id() == self.me {
                // A previous life's own record is no member to join through.
                continue;
            }
            let addr = r.record().addrs[0];
            if self.add_verified_record(r, now) && !self.seeds.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs.shuffle(&mut self.rng);
        addrs.truncate(REJOIN_TARGETS);
        if addrs.is_empty() || self.left {
            return;
        }
        self.join_targets = addrs;
        self.joined = false;
        self.join_delay = self.cfg.join_retry_initial;
        self.send_joins(now);
    }

    /// A member held dead or departed (`id`) spoke from its recorded
    /// address `to`: it runs again. If it restarted with no memory of the
    /// grid (no seeds, no peer cache, or all of them gone) it knows no one,
    /// so it could answer no sync from here (answers to strangers are kept
    /// small) and would stay an island. So it is offered this node's record
    /// in a `Join`, as a joiner offers its own: it learns this node and
    /// answers with its current record (`JoinAck`), which, being newer,
    /// brings it back here and spreads. A sync follows for a member that
    /// never forgot this node (a healed partition). Not counted against the
    /// answer budget of the datagram that set it off: it goes to a member's
    /// recorded address only, at most once per `sync_fast_interval` (the
    /// caller's rate limit), so it amplifies nothing worth having.
    pub(super) fn rediscover(&mut self, to: SocketAddr, id: NodeId, now: Instant) {
        self.offer_join(to);
        self.send_digests(to, Some(id), now);
    }

    /// This node knows no other member (restarted with no seeds and no
    /// peer cache, while the grid still holds it alive) and a node spoke to
    /// it from `to`: ask to join through it, as through a seed. At most once
    /// per `sync_fast_interval` (the caller's rate limit), and only while
    /// this node knows no one.
    pub(super) fn join_stranger(&mut self, to: SocketAddr) {
        self.offer_join(to);
    }

    /// Send this node's record in a `Join` to `to`, a node that runs but
    /// does not hold this one among its members, for it to take and answer
    /// with its own ([`Swim::rediscover`], [`Swim::join_stranger`]).
    fn offer_join(&mut self, to: SocketAddr) {
        let record = self.own_record();
        self.stats.rediscoveries += 1;
        self.send(to, &Message::Join { record });
    }

    /// This node's signed record, as a `Join` or `JoinAck` carries it.
    fn own_record(&self) -> Vec<u8> {
        self.store
            .get(&self.me)
            .expect("own record")
            .bytes()
            .to_vec()
    }

    pub(super) fn send_joins(&mut self, now: Instant) {
        if self.join_delay > self.cfg.join_retry_initial {
            tracing::warn!(seeds = ?self.seeds, retry_in = ?self.join_delay, "no seed has answered yet; retrying");
        }
        let record = self.own_record();
        let targets: Vec<SocketAddr> = self
            .seeds
            .iter()
            .chain(self.join_targets.iter())
            .copied()
            .collect();
        for seed in targets {
            self.send(
                seed,
                &Message::Join {
                    record: record.clone(),
                },
            );
        }
        let jitter = self
            .rng
            .gen_range(0..=self.join_delay.as_millis() as u64 / 4);
        self.timers.set(
            TimerKey::Join,
            now + self.join_delay + Duration::from_millis(jitter),
        );
        self.join_delay = (self.join_delay * 2).min(self.cfg.join_retry_max);
    }

    /// Replace the seeds (the node's driver layer resolves host names and
    /// hands the addresses in, at start and again on each join retry). A
    /// node that knows no other record yet joins through the new seeds at
    /// once, with its retry delay reset; a node already in a grid only
    /// keeps them (closed grids read datagrams from seeds).
    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>, now: Instant) {
        if seeds == self.seeds {
            return;
        }
        self.seeds = seeds;
        if self.store.len() <= 1 && !self.seeds.is_empty() && !self.left {
            self.joined = false;
            self.join_delay = self.cfg.join_retry_initial;
            self.send_joins(now);
        }
    }

    pub(super) fn on_join_retry(&mut self, now: Instant) {
        if !self.joined {
            self.send_joins(now);
        }
    }

    /// A node asks to join through this one.
    pub(super) fn on_join(&mut self, now: Instant, from: SocketAddr, record: &[u8]) {
        match self.offer_one(record, now) {
            Offer::Accepted(rec) => {
                self.learn_record(&rec, now);
                self.broadcasts.push(
                    Key::Record(rec.node_id()),
                    Update::Record(rec.bytes().to_vec()),
                );
                self.schedule_gossip(now);
            }
            // Held back (its clock is ahead): answered all the same, so it
            // learns the grid's time from our header and signs again.
            Offer::Duplicate | Offer::Stale | Offer::Ahead => {}
            // Our own id (a previous life's record, signed above already).
            Offer::Own(_) => return,
            Offer::Full(_) => {
                tracing::debug!(%from, "join refused: the member table is full");
                return;
            }
            Offer::Rejected(e) => {
                tracing::debug!(%from, "join with invalid record: {e}");
                return;
            }
            Offer::NotAdmitted => {
                // A closed grid answers no one it has not admitted.
                tracing::debug!(%from, "join from a node not admitted to this grid");
                return;
            }
        }
        let mine = self.own_record();
        // With a header (this node's clock) for a joiner that reads one,
        // member or not yet (its record may be held back: its clock ahead).
        let headed = self.reads_cookies_at(&from)
            || UnverifiedRecord::parse(record).is_ok_and(|r| reads_cookies(&r.record().software));
        self.send_as(from, &Message::JoinAck { record: mine }, headed);
    }

    /// A seed answered: sync with it at once. A node that has measured no
    /// member's clock yet takes the clock in the answer's header as its
    /// first sample of the grid's time, if it comes from a seed or a member
    /// it asked (no cookie can prove the address yet: the seed may hold
    /// this node's record back, its clock being far ahead, and so hold no
    /// cookie from it); so a node whose clock is ahead learns it and signs
    /// again at the grid's time, which the seed then takes.
    pub(super) fn on_join_ack(&mut self, now: Instant, from: SocketAddr, record: Vec<u8>) {
        let seed = UnverifiedRecord::parse(&record)
            .ok()
            .map(|r| r.record().node_id);
        let asked = self.seeds.contains(&from) || self.join_targets.contains(&from);
        let clock = self
            .answer
            .as_ref()
            .filter(|a| a.to == from)
            .and_then(|a| a.time);
        if let (Some(id), Some(t), true, 0) = (seed, clock, asked, self.clock.peers()) {
            let ours = self.unix_secs(now);
            self.clock.sample(id, t, ours);
            self.check_own_clock(now);
        }
        self.queue_records(vec![record], true, false, now);
        self.verify_pending(now);
        if !self.joined && self.store.len() > 1 {
            self.joined = true;
            self.timers.cancel(&TimerKey::Join);
            tracing::debug!(%from, "joined");
            // Full sync with the seed that answered, right away.
            self.send_digests(from, seed, now);
            self.timers
                .set(TimerKey::Sync, now + self.cfg.sync_fast_interval);
        }
    }

    /// Leave the grid: send a signed `Left` directly to up to 64 members
    /// (it then spreads like any update) and stop: every timer is disarmed
    /// and datagrams are no longer read. Drain [`Swim::poll_transmit`]
    /// afterwards.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.last_now = self.last_now.max(now);
        let sig = self
            .identity
            .sign(&liveness_message("left", &self.me, self.incarnation));
        let fact = Fact {
            incarnation: self.incarnation,
            left: true,
            sig,
        };
        self.hold_own_fact(self.me, fact);
        let update = fact.update(self.me);
        let targets = self.members.random_live(64, None, &mut self.rng);
        for (_, addr) in targets {
            self.send(
                addr,
                &Message::Gossip {
                    from: self.me,
                    updates: vec![update.clone()],
                },
            );
        }
        self.left = true;
        self.timers.clear();
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::testing::{converged, Net};
    use crate::swim::MemberState;

    #[test]
    fn join_is_retried_with_backoff_until_a_seed_answers() {
        let mut net = Net::new(2);
        // The seed is unreachable for a while: the joiner retries, less
        // and less often.
        net.cut(0, 1);
        net.run_for(Duration::from_secs(8));
        let joins = net
            .sent_by(1)
            .filter(|(_, m)| matches!(m, Message::Join { .. }))
            .count();
        // 0, 0.5, 1.5, 3.5, 7.5 s (plus jitter): four or five.
        assert!((3..=5).contains(&joins), "{joins}");
        assert!(!net.node(1).is_joined());
        net.uncut(0, 1);
        assert!(net.run_until(Duration::from_secs(20), |n| {
            n.node(1).is_joined()
                && n.node(0).records().len() == 2
                && n.node(1).records().len() == 2
        }));
        let after = net
            .sent_by(1)
            .filter(|(_, m)| matches!(m, Message::Join { .. }))
            .count();
        net.run_for(Duration::from_secs(60));
        let later = net
            .sent_by(1)
            .filter(|(_, m)| matches!(m, Message::Join { .. }))
            .count();
        assert_eq!(after, later, "no more joins once joined");
    }

    #[test]
    fn a_leave_is_signed_held_as_a_fact_and_stops_the_node() {
        let mut net = Net::new(4);
        converged(&mut net);
        let id1 = net.id(1);
        net.leave(1);
        assert!(net.node(1).poll_timeout() > net.now() + Duration::from_secs(3600));
        assert!(net.run_until(Duration::from_secs(2), |n| {
            [0, 2, 3]
                .iter()
                .all(|&i| n.node(i).state_of(&id1) == Some(MemberState::Left))
        }));
        for i in [0, 2, 3] {
            let f = net.node(i).facts().get(&id1).copied().expect("leave held");
            assert!(f.left && f.verify(&id1));
        }
        // It reads nothing any more.
        let sent = net.sent_by(1).count();
        net.run_for(Duration::from_secs(10));
        assert_eq!(net.sent_by(1).count(), sent);
    }
}
