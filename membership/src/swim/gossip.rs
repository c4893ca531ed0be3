//! Dissemination: updates piggybacked on every ping and ack and pushed to
//! random members while any are queued, their application, and refutation.
//!
//! The queue ([`crate::broadcast`]) sends each update a bounded number of
//! times, fewest-sent first. A message to a suspect (or to a member believed
//! dead) leads with the accusation, and whoever accuses a node also tells it
//! directly, so it hears at once; an accusation that arrives directly is
//! answered directly with the node's signed `Alive`. Only a node can sign its
//! own `Alive` or `Left`: those are *facts*, kept (the highest per member)
//! so anti-entropy can pass them on to whoever missed them. `Suspect` and
//! `Dead` are opinions: they change the state a node holds and spread by
//! gossip, but are never kept as facts, and they never move an
//! incarnation: an accusation counts only at the incarnation held for the
//! member (which it signed), and is ignored (counted) above it. So an
//! accusation of this node is refuted only at its own incarnation (plus
//! one, checked), and one at a number it never signed is ignored: no
//! datagram can push an incarnation to where no signed `Alive` can follow.

use std::net::SocketAddr;
use std::time::Instant;

use grapevine_crypto::NodeId;

use super::members::MemberState;
use super::{Swim, TimerKey};
use crate::broadcast::Key;
use crate::facts::Fact;
use crate::wire::{liveness_message, Message, Update, HEADER_BUDGET, MAX_DATAGRAM};

impl Swim {
    fn retransmit_limit(&self) -> u32 {
        let n = self.live_n() as f64 + 1.0;
        self.cfg.retransmit_mult * (n.log10().ceil().max(1.0) as u32)
    }

    /// Updates for one datagram of at most `room` bytes of updates, the
    /// accusation of its addressee first.
    pub(super) fn piggyback(&mut self, to: Option<&NodeId>, room: usize) -> Vec<Update> {
        let mut budget = room.min(MAX_DATAGRAM - HEADER_BUDGET);
        let mut first = Vec::new();
        // A suspect (or a member believed dead) hears the accusation in the
        // very message we send it, so it can refute at once.
        if let Some(id) = to {
            if let Some(u) = self.accusation(id) {
                let len = u.encoded_len() + 2;
                if len <= budget {
                    budget -= len;
                    first.push(u);
                }
            }
        }
        let limit = self.retransmit_limit();
        first.extend(
            self.broadcasts
                .take(budget, limit, self.cfg.record_retransmits),
        );
        first
    }

    /// The accusation this node holds against `id`, if any.
    pub(super) fn accusation(&self, id: &NodeId) -> Option<Update> {
        let m = self.members.get(id)?;
        let incarnation = m.incarnation;
        match m.state {
            MemberState::Suspect => Some(Update::Suspect {
                id: *id,
                incarnation,
            }),
            MemberState::Dead => Some(Update::Dead {
                id: *id,
                incarnation,
            }),
            _ => None,
        }
    }

    /// Tell `id` directly that it is accused, so it can refute.
    pub(super) fn notify_accused(&mut self, id: &NodeId) {
        if let (Some(u), Some(addr)) = (self.accusation(id), self.members.get(id).map(|m| m.addr)) {
            self.send(
                addr,
                &Message::Gossip {
                    from: self.me,
                    updates: vec![u],
                },
            );
        }
    }

    /// Push gossip within `gossip_interval` if anything is queued.
    pub(super) fn schedule_gossip(&mut self, now: Instant) {
        if !self.broadcasts.is_empty() && !self.left {
            self.timers
                .set_earlier(TimerKey::Gossip, now + self.cfg.gossip_interval);
        }
    }

    /// Push queued updates to `gossip_fanout` random members.
    pub(super) fn on_gossip(&mut self, now: Instant) {
        if self.broadcasts.is_empty() {
            return;
        }
        let targets = self
            .members
            .random_live(self.cfg.gossip_fanout, None, &mut self.rng);
        for (_, addr) in targets {
            let updates = self.piggyback(None, usize::MAX);
            if updates.is_empty() {
                break;
            }
            self.send(
                addr,
                &Message::Gossip {
                    from: self.me,
                    updates,
                },
            );
        }
        if !self.broadcasts.is_empty() {
            self.timers
                .set(TimerKey::Gossip, now + self.cfg.gossip_interval);
        }
    }

    fn signed_alive(&self) -> Update {
        let sig = self
            .identity
            .sign(&liveness_message("alive", &self.me, self.incarnation));
        Update::Alive {
            id: self.me,
            incarnation: self.incarnation,
            sig,
        }
    }

    /// Someone holds us suspect or dead at `incarnation`: refute at our
    /// current one plus one, or, if we already did, spread the refutation
    /// again (the accuser missed it). An accusation at an incarnation we
    /// never signed is forged (or from a previous life whose signed alive
    /// will reach us, and be refuted, by anti-entropy): ignored.
    fn answer_accusation(&mut self, incarnation: u64, now: Instant) {
        if incarnation > self.incarnation {
            self.stats.accusations_ignored += 1;
            return;
        }
        self.accused = true;
        if incarnation == self.incarnation {
            self.refute(incarnation, now);
        } else if !self.left
            && !matches!(
                self.broadcasts.get(&Key::State(self.me)),
                Some(Update::Alive { .. })
            )
        {
            let alive = self.signed_alive();
            self.broadcasts.push(Key::State(self.me), alive);
            self.schedule_gossip(now);
        }
    }

    /// Raise this node's incarnation above `incarnation` (one it signed:
    /// its own, or a verified one of a previous life) and spread a signed
    /// `Alive` at the new one.
    pub(super) fn refute(&mut self, incarnation: u64, now: Instant) {
        if self.left {
            return;
        }
        let Some(next) = self.incarnation.max(incarnation).checked_add(1) else {
            tracing::error!("incarnation {incarnation} cannot be refuted: no number is higher");
            return;
        };
        self.incarnation = next;
        self.note_signed(next);
        self.stats.refutations += 1;
        self.raise_health();
        let alive = self.signed_alive();
        if let Some((id, fact)) = Fact::of_update(&alive) {
            self.hold_own_fact(id, fact);
        }
        self.broadcasts.push(Key::State(self.me), alive);
        self.schedule_gossip(now);
    }

    /// Keep a fact this node signed about itself, unless its record says as
    /// much: its own digest must match what the grid holds of it.
    pub(super) fn hold_own_fact(&mut self, id: NodeId, fact: Fact) {
        let seq = self.store.get(&id).map_or(0, |r| r.seq());
        if !fact.implied_by_record(seq) {
            self.facts.insert(id, fact);
        }
    }

    /// Apply a signed `Alive` or `Left` about `id`: keep it as a fact if it
    /// outranks what is held, and change the member's state if it applies
    /// (an alive above the incarnation held, a leave at or above it). When
    /// `spread`, an applied fact is queued for gossip. A verified fact about
    /// this node that outranks its own makes it refute above it.
    pub(super) fn apply_fact(&mut self, id: NodeId, fact: Fact, now: Instant, spread: bool) {
        if id == self.me {
            if fact.rank() > (self.incarnation, self.left) && fact.verify(&id) {
                self.refute(fact.incarnation, now);
            }
            return;
        }
        let Some(m) = self.members.get(&id) else {
            return;
        };
        let (state, incarnation) = (m.state, m.incarnation);
        let newer = !self
            .store
            .get(&id)
            .is_some_and(|r| fact.implied_by_record(r.seq()))
            && self
                .facts
                .get(&id)
                .is_none_or(|held| held.rank() < fact.rank());
        let applies = if fact.left {
            state != MemberState::Left && fact.incarnation >= incarnation
        } else {
            fact.incarnation > incarnation
        };
        if !newer && !applies {
            return;
        }
        if !fact.verify(&id) {
            self.stats.forged_liveness += 1;
            return;
        }
        if newer {
            self.facts.insert(id, fact);
        }
        if applies {
            let to = if fact.left {
                MemberState::Left
            } else {
                MemberState::Alive
            };
            self.set_state(id, to, fact.incarnation, now);
            if spread {
                self.broadcasts.push(Key::State(id), fact.update(id));
                self.schedule_gossip(now);
            }
        }
    }

    /// An unsigned accusation (`Suspect` or `Dead`) of `id` at
    /// `incarnation`.
    fn apply_accusation(&mut self, id: NodeId, incarnation: u64, dead: bool, now: Instant) {
        if id == self.me {
            self.answer_accusation(incarnation, now);
            return;
        }
        let Some(m) = self.members.get(&id) else {
            if self.tombstones.get(&id).is_some_and(|t| t.left.is_some()) {
                // Long gone, and the sender missed it: the proof.
                self.accused_departed.push(id);
            }
            return;
        };
        if m.state == MemberState::Left {
            // It left and the sender missed it: answer with the proof.
            self.accused_departed.push(id);
            return;
        }
        // Only at the incarnation held, which the member signed: above it
        // the number is unproven (the member's signed alive, if it exists,
        // arrives by gossip or anti-entropy), below it stale.
        if incarnation > m.incarnation {
            self.stats.accusations_ignored += 1;
            return;
        }
        let apply = incarnation == m.incarnation
            && matches!(
                (dead, m.state),
                (false, MemberState::Alive) | (true, MemberState::Alive | MemberState::Suspect)
            );
        if apply {
            self.accuse(id, dead, incarnation, now);
        }
    }

    /// Hold member `id` suspect (or `dead`) at `incarnation`, and queue the
    /// accusation for gossip: what an expired suspicion and an accusation
    /// heard from others both do.
    pub(super) fn accuse(&mut self, id: NodeId, dead: bool, incarnation: u64, now: Instant) {
        let (to, update) = if dead {
            (MemberState::Dead, Update::Dead { id, incarnation })
        } else {
            (MemberState::Suspect, Update::Suspect { id, incarnation })
        };
        self.set_state(id, to, incarnation, now);
        self.broadcasts.push(Key::State(id), update);
        self.schedule_gossip(now);
    }

    /// Apply piggybacked updates from `sender`; if they accused this node,
    /// answer the sender directly with the current signed `Alive`.
    pub(super) fn apply_updates_from(
        &mut self,
        sender: SocketAddr,
        updates: Vec<Update>,
        now: Instant,
    ) {
        self.accused = false;
        let mut records = Vec::new();
        for u in updates {
            match u {
                Update::Record(bytes) => records.push(bytes),
                Update::Suspect { id, incarnation } => {
                    self.apply_accusation(id, incarnation, false, now)
                }
                Update::Dead { id, incarnation } => {
                    self.apply_accusation(id, incarnation, true, now)
                }
                u @ (Update::Alive { .. } | Update::Left { .. }) => {
                    if let Some((id, fact)) = Fact::of_update(&u) {
                        self.apply_fact(id, fact, now, true);
                    }
                }
            }
        }
        if !records.is_empty() {
            self.queue_records(records, true, false, now);
        }
        // The sender still accuses members that left: it missed the leave.
        let departed = std::mem::take(&mut self.accused_departed);
        let proofs: Vec<Update> = departed
            .iter()
            .filter_map(|id| {
                let fact = self.facts.get(id).copied();
                let buried = self.tombstones.get(id).and_then(|t| t.left);
                fact.or(buried).filter(|f| f.left).map(|f| f.update(*id))
            })
            .take(8)
            .collect();
        if !proofs.is_empty() {
            self.send(
                sender,
                &Message::Gossip {
                    from: self.me,
                    updates: proofs,
                },
            );
        }
        if std::mem::take(&mut self.accused) && !self.left {
            let alive = self.signed_alive();
            self.send(
                sender,
                &Message::Gossip {
                    from: self.me,
                    updates: vec![alive],
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::testing::{converged, Net};
    use std::time::Duration;

    #[test]
    fn an_accused_node_refutes_with_a_signed_alive_that_everyone_applies() {
        let mut net = Net::new(5);
        converged(&mut net);
        let (accuser, accused) = (net.addr(0), net.id(2));
        let inc = net
            .node(1)
            .members()
            .iter()
            .find(|m| m.id == accused)
            .unwrap()
            .incarnation;
        // Node 1 hears (from node 0's address, unsigned) that node 2 is
        // suspect: it believes it, and node 2 refutes at once.
        net.inject(
            1,
            accuser,
            &Message::Gossip {
                from: net.id(0),
                updates: vec![Update::Suspect {
                    id: accused,
                    incarnation: inc,
                }],
            },
        );
        assert_eq!(net.node(1).state_of(&accused), Some(MemberState::Suspect));
        assert!(net.run_until(Duration::from_secs(5), |n| {
            (0..5).filter(|&i| i != 2).all(|i| {
                n.node(i).state_of(&accused) == Some(MemberState::Alive)
                    && n.node(i)
                        .members()
                        .iter()
                        .any(|m| m.id == accused && m.incarnation > inc)
            })
        }));
        assert_eq!(net.node(2).stats().refutations, 1);
        // The refutation is a fact everyone holds, the node itself too.
        let own = net.node(2).facts().get(&accused).copied().unwrap();
        assert!(!own.left && own.incarnation == inc + 1);
        for i in 0..5 {
            assert_eq!(net.node(i).facts().get(&accused), Some(&own), "node {i}");
        }
        net.run_for(Duration::from_secs(10));
        assert_eq!(net.node(1).stats().declared_dead, 0);
    }

    #[test]
    fn unsigned_accusations_at_forged_incarnations_change_nothing() {
        let mut net = Net::new(4);
        converged(&mut net);
        let victim = net.id(2);
        let inc = net.node(2).incarnation();
        let stranger: SocketAddr = "10.9.9.9:9".parse().unwrap();
        let forged = Message::Gossip {
            from: NodeId([1; 32]),
            updates: vec![
                Update::Dead {
                    id: victim,
                    incarnation: u64::MAX,
                },
                Update::Suspect {
                    id: victim,
                    incarnation: u64::MAX,
                },
                Update::Dead {
                    id: victim,
                    incarnation: inc + 1,
                },
            ],
        };
        // Several times in a row, to every node, the victim included.
        for _ in 0..3 {
            for i in 0..4 {
                net.inject(i, stranger, &forged);
            }
            net.run_for(Duration::from_millis(300));
        }
        for i in [0, 1, 3] {
            assert_eq!(net.node(i).state_of(&victim), Some(MemberState::Alive));
        }
        assert_eq!(net.node(2).incarnation(), inc, "nothing to refute");
        assert_eq!(net.node(2).stats().refutations, 0);
        net.run_for(Duration::from_secs(20));
        for i in [0, 1, 3] {
            assert_eq!(net.node(i).state_of(&victim), Some(MemberState::Alive));
            let held = net
                .node(i)
                .members()
                .into_iter()
                .find(|m| m.id == victim)
                .unwrap();
            assert_eq!(held.incarnation, inc, "node {i}");
            assert_eq!(net.node(i).stats().declared_dead, 0);
        }
        for i in 0..4 {
            let st = net.node(i).stats();
            assert!(st.accusations_ignored >= 9, "node {i}: {st:?}");
        }
        // An accusation at the incarnation it signed is still believed,
        // and refuted one above.
        net.inject(
            0,
            stranger,
            &Message::Gossip {
                from: NodeId([1; 32]),
                updates: vec![Update::Dead {
                    id: victim,
                    incarnation: inc,
                }],
            },
        );
        assert_eq!(net.node(0).state_of(&victim), Some(MemberState::Dead));
        assert!(net.run_until(Duration::from_secs(20), |n| {
            [0, 1, 3]
                .iter()
                .all(|&i| n.node(i).state_of(&victim) == Some(MemberState::Alive))
        }));
        assert_eq!(net.node(2).incarnation(), inc + 1);
    }

    #[test]
    fn forged_alive_or_left_is_counted_and_changes_nothing() {
        let mut net = Net::new(3);
        converged(&mut net);
        let victim = net.id(2);
        for u in [
            Update::Alive {
                id: victim,
                incarnation: u64::MAX,
                sig: [7; 64],
            },
            Update::Left {
                id: victim,
                incarnation: u64::MAX,
                sig: [7; 64],
            },
        ] {
            net.inject(
                0,
                "10.9.9.9:9".parse().unwrap(),
                &Message::Gossip {
                    from: NodeId([1; 32]),
                    updates: vec![u],
                },
            );
        }
        assert_eq!(net.node(0).stats().forged_liveness, 2);
        assert_eq!(net.node(0).state_of(&victim), Some(MemberState::Alive));
        assert!(net.node(0).facts().is_empty());
    }

    #[test]
    fn a_new_record_spreads_by_gossip_alone() {
        let mut net = Net::new(12);
        converged(&mut net);
        // Every address validated (bare pings, a few a round): gossip goes
        // to all.
        net.run_for(Duration::from_secs(2));
        // No anti-entropy at all from here on: only gossip can carry it.
        net.drop_if(|_, _, m| {
            matches!(m, Message::SyncDigest { .. } | Message::SyncDigests { .. })
        });
        let id5 = net.id(5);
        let rec = net.record(5, 1_000_000);
        let now = net.now();
        net.node_mut(5).update_record(rec, now);
        // Each node that accepts a record pushes it twice
        // (`record_retransmits`), so an epidemic reaches most nodes and
        // may miss one or two (anti-entropy is what delivers it to every
        // node, see `sync`): three quarters within five seconds.
        let holding = |n: &Net| {
            (0..12)
                .filter(|&i| n.node(i).records().get(&id5).unwrap().seq() == 1_000_000)
                .count()
        };
        assert!(
            net.run_until(Duration::from_secs(5), |n| holding(n) >= 9),
            "{}",
            holding(&net)
        );
        let pushed = net
            .sent_by(5)
            .filter(|(_, m)| matches!(m, Message::Gossip { .. }))
            .count();
        assert!(pushed > 0);
    }
}
