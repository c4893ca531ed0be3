//! Joining and leaving.
//!
//! A new node sends `Join{its record}` to its seeds, retrying with
//! exponential backoff (`join_retry_initial` doubling to `join_retry_max`,
//! with jitter) until a record arrives from anyone. A seed verifies and
//! stores the joiner's record, spreads it, and answers `JoinAck{its own
//! record}`; the joiner then syncs with that seed at once and pulls every
//! record by anti-entropy.
//!
//! A leaving node signs `Left` at its incarnation and sends it directly to
//! up to 64 members; it spreads like any update, and, being a signed fact,
//! anti-entropy delivers it to whoever gossip missed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_crypto::UnverifiedRecord;
use rand::Rng;

use super::{Swim, TimerKey};
use crate::broadcast::Key;
use crate::facts::Fact;
use crate::store::Offer;
use crate::wire::{liveness_message, Message, Update};

impl Swim {
    pub(super) fn send_joins(&mut self, now: Instant) {
        if self.join_delay > self.cfg.join_retry_initial {
            tracing::warn!(seeds = ?self.seeds, retry_in = ?self.join_delay, "no seed has answered yet; retrying");
        }
        let record = self
            .store
            .get(&self.me)
            .expect("own record")
            .bytes()
            .to_vec();
        for seed in self.seeds.clone() {
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

    pub(super) fn on_join_retry(&mut self, now: Instant) {
        if !self.joined {
            self.send_joins(now);
        }
    }

    /// A node asks to join through this one.
    pub(super) fn on_join(&mut self, now: Instant, from: SocketAddr, record: &[u8]) {
        match self.store.offer(record, self.unix_secs(now)) {
            Offer::Accepted(rec) => {
                self.learn_record(&rec, now);
                self.broadcasts.push(
                    Key::Record(rec.node_id()),
                    Update::Record(rec.bytes().to_vec()),
                );
                self.schedule_gossip(now);
            }
            Offer::Duplicate | Offer::Stale => {}
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
        let mine = self
            .store
            .get(&self.me)
            .expect("own record")
            .bytes()
            .to_vec();
        self.send(from, &Message::JoinAck { record: mine });
    }

    /// A seed answered: sync with it at once.
    pub(super) fn on_join_ack(&mut self, now: Instant, from: SocketAddr, record: Vec<u8>) {
        let seed = UnverifiedRecord::parse(&record)
            .ok()
            .map(|r| r.record().node_id);
        self.queue_records(vec![record], true, false, now);
        self.verify_pending(now);
        if !self.joined && self.store.len() > 1 {
            self.joined = true;
            self.timers.cancel(&TimerKey::Join);
            tracing::debug!(%from, "joined");
            // Full sync with the seed that answered, right away.
            self.send_digests(from, seed);
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
