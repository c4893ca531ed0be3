//! Failure detection: probes, relayed probes, suspicion and local health.
//!
//! Every probe period this node pings the next member of its round
//! (`Probe` timer). No ack by the probe timeout (`Indirect` timer): it asks
//! `indirect_probes` other members to ping the target for it, and they relay
//! the ack. A relay pings only a live member whose address has answered,
//! at the address it holds (the requester's `target_addr` is ignored), with
//! a bare ping: a request cannot point a node at an address of its choice. No ack by the end of the period: the target is suspect, and a
//! `Suspect(id)` timer gives it the suspicion timeout to refute before it is
//! declared dead. The suspect is told at once, and the grid a probe period
//! later, only if it has not refuted to this node by then: a member that was
//! only slow for a moment (its process starved in a join storm) is then
//! suspected by one node, not by every node the gossip reaches (Lifeguard's
//! aim: fewer false suspicions, not only fewer false deaths). Detection does
//! not wait for it: the dead verdict is this node's, at its own timeout. Every period, one suspect is pinged again (earlier notices
//! may have been lost), and every `reconnect_interval` one member believed
//! dead (or that left less than `left_expiry` ago) is pinged, so a member
//! wrongly declared dead (a healed partition) hears it and refutes, and one
//! that came back is found. Ping sequence numbers are random: an ack that
//! carries one proves its sender received the ping, which validates the
//! member's address (see `address`). A number is not a secret, though (a
//! relay knows the one it was asked to relay, and this crate's RNG is not
//! a cryptographic one), so an ack counts only from where its ping went: a
//! probe is concluded by an ack naming its target from the target's
//! address or from a member asked to relay, and a relay passes on only an
//! ack naming the member it pinged, from the address it pinged; others are
//! dropped and counted (`acks_refused`). So a forger cannot keep a dead
//! member from being suspected.
//!
//! Local health (Lifeguard): a score from 0 to `max_local_health` multiplies
//! this node's probe period, probe timeout and suspicion timeout by
//! `1 + score`. It rises when a probe fails, when this node is accused and
//! when a timer is handled late (the node is starved of CPU); it falls with
//! each ack and each probe period handled on time. A probe whose period
//! ended while this node was starved is inconclusive, not a failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_crypto::NodeId;

use super::members::MemberState;
use super::{Probe, Relay, Swim, TimerKey};
use crate::broadcast::Key;
use crate::wire::{Message, Update, HEADER_BUDGET};

/// Indirect probes this node relays at once, at most.
pub(super) const MAX_RELAYS: usize = 1024;

impl Probe {
    /// Whether an ack with sequence number `seq` naming `id`, from `from`,
    /// is this probe's: `None` if it names another probe; `Some(true)` if
    /// it counts, having come directly from the target's address or
    /// relayed by a member asked to; `Some(false)` if it came from anywhere
    /// else (refused: the number is no secret).
    fn ack(&self, seq: u32, id: NodeId, from: SocketAddr) -> Option<bool> {
        (self.seq == seq && self.target == id)
            .then(|| from == self.addr || self.helpers.contains(&from))
    }
}

impl Swim {
    pub(super) fn health_scale(&self) -> u32 {
        1 + self.local_health
    }

    pub(super) fn raise_health(&mut self) {
        self.local_health = (self.local_health + 1).min(self.cfg.max_local_health);
    }

    fn lower_health(&mut self) {
        self.local_health = self.local_health.saturating_sub(1);
    }

    /// The largest stretch of a configured timeout.
    fn max_scale(&self) -> u32 {
        1 + self.cfg.max_local_health
    }

    /// The direct probe's timeout: the configured one stretched by local
    /// health, at least the measured round-trip timeout (see `rtt`), at
    /// most `1 + max_local_health` times the configured one.
    pub(super) fn probe_timeout(&self) -> Duration {
        (self.cfg.probe_timeout * self.health_scale())
            .max(self.rtt.timeout())
            .min(self.cfg.probe_timeout * self.max_scale())
    }

    /// The probe period: the configured one stretched by local health, at
    /// least twice the round-trip timeout, at most `1 + max_local_health`
    /// times the configured one.
    pub(super) fn probe_period(&self) -> Duration {
        (self.cfg.probe_interval * self.health_scale())
            .max(self.rtt.timeout().saturating_mul(2))
            .min(self.cfg.probe_interval * self.max_scale())
    }

    /// Suspicion timeout, stretched by local health (Lifeguard): a node
    /// that is itself struggling waits longer before declaring others dead;
    /// and as much as measured round trips stretch the probe timeout (see
    /// `rtt`): where acks are slow, so are refutations.
    pub(super) fn suspicion_timeout(&self) -> Duration {
        let n = (self.live_n() as f64).max(10.0);
        let by_rtt = self.rtt.timeout().as_secs_f64() / self.cfg.probe_timeout.as_secs_f64();
        let stretch = by_rtt
            .max(f64::from(self.health_scale()))
            .min(f64::from(self.max_scale()));
        self.cfg
            .probe_interval
            .mul_f64(self.cfg.suspicion_mult * n.log10() * stretch)
    }

    /// Ping member `to` at `addr` with sequence number `seq`, piggybacking
    /// the updates it most needs (including any accusation of it); only
    /// the accusation if its address has not answered yet, or if the ping
    /// is sent in answer to something (`bare`).
    pub(super) fn ping_with(&mut self, to: NodeId, addr: SocketAddr, seq: u32, bare: bool) {
        let validated = self.members.get(&to).is_some_and(|m| m.validated);
        let updates = if validated && !bare {
            self.piggyback(Some(&to), usize::MAX)
        } else {
            self.accusation(&to).into_iter().collect()
        };
        self.members.pinged(&to, seq);
        self.send(
            addr,
            &Message::Ping {
                seq,
                from: self.me,
                updates,
            },
        );
    }

    /// Ping member `to` (see [`Swim::ping_with`]).
    pub(super) fn ping(&mut self, to: NodeId, addr: SocketAddr, seq: u32) {
        self.ping_with(to, addr, seq, false);
    }

    /// End of a probe period: conclude the probe, start the next one.
    pub(super) fn on_probe_period(&mut self, now: Instant, starved: bool) {
        self.timers.cancel(&TimerKey::Indirect);
        self.check_own_clock(now);
        if let Some(p) = self.probe.take() {
            // Starved past the period's end: the ack may be unread or our
            // timing wrong. Inconclusive, not a failure.
            let late = now > p.period_end + self.cfg.probe_timeout;
            if late {
                self.stats.inconclusive_probes += 1;
            }
            if !late && !starved {
                self.probe_failed(p.target, now);
            }
            // Its ack may still come: a round trip to measure.
            self.late_probe = Some(p);
        }
        // Recover local health one step per probe period handled on time,
        // so a node starved once (a join storm) does not stay slow to detect
        // failures long after.
        if !starved {
            self.lower_health();
        }
        let period_end = now + self.probe_period();
        self.timers.set(TimerKey::Probe, period_end);
        // Give one suspect per period a fresh chance to hear its accusation
        // and refute (earlier notices may have been lost).
        if let Some(id) = self.members.random_suspect(&mut self.rng) {
            if let Some(addr) = self.members.get(&id).map(|m| m.addr) {
                let seq = self.take_seq();
                self.ping(id, addr, seq);
            }
        }
        if let Some(target) = self.members.next_probe_target(&mut self.rng) {
            let Some(addr) = self.members.get(&target).map(|m| m.addr) else {
                return;
            };
            let seq = self.take_seq();
            self.probe = Some(Probe {
                target,
                seq,
                period_end,
                addr,
                helpers: Vec::new(),
                sent: now,
            });
            self.timers
                .set(TimerKey::Indirect, now + self.probe_timeout());
            self.stats.probes += 1;
            self.ping(target, addr, seq);
        }
    }

    /// No ack, direct or relayed, by the end of the period: suspect it,
    /// tell it at once, and tell the grid one probe period later unless it
    /// has refuted by then (see the module docs).
    fn probe_failed(&mut self, target: NodeId, now: Instant) {
        self.raise_health();
        let Some(m) = self.members.get(&target) else {
            return;
        };
        if m.state == MemberState::Alive {
            let inc = m.incarnation;
            self.set_state(target, MemberState::Suspect, inc, now);
            self.notify_accused(&target);
            self.timers
                .set(TimerKey::SpreadSuspicion(target), now + self.probe_period());
        }
    }

    /// The suspect has not refuted to this node within a probe period:
    /// gossip the suspicion.
    pub(super) fn spread_suspicion(&mut self, id: NodeId, now: Instant) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        if m.state != MemberState::Suspect {
            return;
        }
        let incarnation = m.incarnation;
        self.broadcasts
            .push(Key::State(id), Update::Suspect { id, incarnation });
        self.schedule_gossip(now);
    }

    /// No direct ack within the probe timeout: ask others to ping.
    pub(super) fn on_direct_timeout(&mut self) {
        let Some((target, seq)) = self.probe.as_ref().map(|p| (p.target, p.seq)) else {
            return;
        };
        let Some(addr) = self.members.get(&target).map(|m| m.addr) else {
            return;
        };
        let helpers =
            self.members
                .random_live(self.cfg.indirect_probes, Some(&target), &mut self.rng);
        if let Some(p) = self.probe.as_mut() {
            p.helpers = helpers.iter().map(|(_, h)| *h).collect();
        }
        for (_, h) in helpers {
            self.send(
                h,
                &Message::PingReq {
                    seq,
                    from: self.me,
                    target,
                    target_addr: addr,
                },
            );
        }
    }

    /// A suspect did not refute in time: declare it dead.
    pub(super) fn on_suspicion_timeout(&mut self, id: NodeId, now: Instant) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        if m.state != MemberState::Suspect {
            return;
        }
        // The timeout as measured now (round trips may have grown since
        // the suspicion began): not yet, if it has not passed.
        let until = m.since + self.suspicion_timeout();
        if now < until {
            self.timers.set(TimerKey::Suspect(id), until);
            return;
        }
        let inc = m.incarnation;
        self.accuse(id, true, inc, now);
        self.notify_accused(&id);
    }

    /// Ping one member believed dead, or that left a short while ago, bare;
    /// if it is in fact alive (a healed partition), the accusation in the
    /// ping makes it refute; if it came back, its answer makes this node
    /// sync with it (see `address`).
    pub(super) fn on_reconnect(&mut self, now: Instant) {
        self.timers
            .set(TimerKey::Reconnect, now + self.cfg.reconnect_interval);
        let window = self.cfg.left_expiry;
        if let Some(id) = self.members.random_reconnect(now, window, &mut self.rng) {
            if let Some(addr) = self.members.get(&id).map(|m| m.addr) {
                let seq = self.take_seq();
                self.ping_with(id, addr, seq, true);
            }
        }
    }

    pub(super) fn on_ping(
        &mut self,
        now: Instant,
        from: SocketAddr,
        seq: u32,
        id: NodeId,
        updates: Vec<Update>,
    ) {
        self.apply_updates_from(from, updates, now);
        // The ack is an answer: it piggybacks what the budget leaves.
        let room = self.room(&from).saturating_sub(HEADER_BUDGET);
        let updates = self.piggyback(Some(&id), room);
        self.send(
            from,
            &Message::Ack {
                seq,
                from: self.me,
                updates,
            },
        );
    }

    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        seq: u32,
        id: NodeId,
        updates: Vec<Update>,
    ) {
        // The ack of a ping sent to the member's address: it answered, and
        // its header's clock is a sample of the grid's time (the random
        // number proves the address, as a cookie would).
        if seq != 0
            && self
                .members
                .get(&id)
                .is_some_and(|m| m.ping_seq == seq && m.addr == from)
        {
            self.members.validate(&id);
            if let Some(t) = self.answer.as_ref().and_then(|a| a.time) {
                let ours = self.unix_secs(now);
                self.clock.sample(id, t, ours);
            }
        }
        self.apply_updates_from(from, updates, now);
        // A sequence number proves little by itself (it is random, but a
        // relay, or whoever sees the ping, knows it): an ack counts only
        // from where the ping went. A relay passes on only the ack of the
        // member it pinged, from the address it pinged.
        if let Some(relay) = self.relays.get(&seq) {
            if relay.target != id || relay.addr != from {
                self.stats.acks_refused += 1;
                return;
            }
            let relay = self.relays.remove(&seq).expect("just seen");
            self.timers.cancel(&TimerKey::Relay(seq));
            self.send(
                relay.requester,
                &Message::Ack {
                    seq: relay.requester_seq,
                    from: id,
                    updates: Vec::new(),
                },
            );
        } else if let Some(counts) = self.probe.as_ref().and_then(|p| p.ack(seq, id, from)) {
            if !counts {
                self.stats.acks_refused += 1;
                return;
            }
            let sent = self.probe.take().expect("just seen").sent;
            self.timers.cancel(&TimerKey::Indirect);
            self.lower_health();
            self.rtt.sample(now.saturating_duration_since(sent));
            self.answered_while_suspect(id, now);
        } else if let Some(counts) = self.late_probe.as_ref().and_then(|p| p.ack(seq, id, from)) {
            // The ack of the period before, late: measured, nothing more.
            if !counts {
                self.stats.acks_refused += 1;
                return;
            }
            let sent = self.late_probe.take().expect("just seen").sent;
            self.rtt.sample(now.saturating_duration_since(sent));
            self.answered_while_suspect(id, now);
        }
    }

    /// A suspect acked a probe of this node's (from its address, with the
    /// probe's random number): it is running, only slow. Its refutation
    /// gets a full suspicion timeout from now, as this node now measures
    /// it, before this node declares it dead.
    fn answered_while_suspect(&mut self, id: NodeId, now: Instant) {
        if self
            .members
            .get(&id)
            .is_some_and(|m| m.state == MemberState::Suspect)
        {
            let until = now + self.suspicion_timeout();
            if self
                .timers
                .deadline(&TimerKey::Suspect(id))
                .is_some_and(|d| d < until)
            {
                self.timers.set(TimerKey::Suspect(id), until);
            }
        }
    }

    pub(super) fn on_ping_req(&mut self, now: Instant, from: SocketAddr, seq: u32, target: NodeId) {
        // Only a live member whose address answered, at that address.
        let Some(addr) = self
            .members
            .get(&target)
            .filter(|m| m.state.is_live() && m.validated)
            .map(|m| m.addr)
        else {
            self.stats.relays_refused += 1;
            return;
        };
        // Relays expire after a probe period; the cap bounds what a flood of
        // requests can make this node remember meanwhile.
        if self.relays.len() >= MAX_RELAYS {
            self.stats.relays_refused += 1;
            return;
        }
        let my_seq = self.take_seq();
        let deadline = now + self.probe_period();
        self.relays.insert(
            my_seq,
            Relay {
                requester: from,
                requester_seq: seq,
                target,
                addr,
            },
        );
        self.timers.set(TimerKey::Relay(my_seq), deadline);
        self.ping_with(target, addr, my_seq, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::testing::{converged, node_alone, Net};
    use crate::wire::{Message, Update};
    use grapevine_crypto::NodeId;
    use std::time::Duration;

    #[test]
    fn a_flood_of_relay_requests_is_capped_and_relays_expire() {
        let mut net = Net::new(2);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        let target = net.id(1);
        // Each from its own address, so the per-source rate limit stays out
        // of the way: this is about the relay table.
        let from = |i: u32| SocketAddr::from(([10, 0, 1, (i % 250) as u8], 1000 + i as u16));
        let req = |seq| Message::PingReq {
            seq,
            from: NodeId([9; 32]),
            target,
            target_addr: "10.0.0.8:8".parse().unwrap(),
        };
        let sent = net.sent_by(0).count();
        let refused = net.node(0).stats().relays_refused;
        let now = net.now();
        for i in 0..3000u32 {
            let bytes = req(i).encode().unwrap();
            net.node_mut(0).handle_datagram(now, from(i), &bytes);
        }
        net.run_for(Duration::from_millis(0));
        let pings: Vec<_> = net
            .sent_by(0)
            .skip(sent)
            .filter(|(_, m)| matches!(m, Message::Ping { .. }))
            .collect();
        assert_eq!(
            pings.len(),
            MAX_RELAYS,
            "one relayed ping per accepted request"
        );
        assert!(
            pings.iter().all(|(to, _)| *to == net.addr(1)),
            "at the address held"
        );
        assert_eq!(
            net.node(0).stats().relays_refused - refused,
            3000 - MAX_RELAYS as u64
        );
        // Relays expire by their own timers, and the node relays again.
        net.run_for(Duration::from_secs(30));
        let sent = net.sent_by(0).count();
        net.inject(0, from(0), &req(1));
        assert!(net
            .sent_by(0)
            .skip(sent)
            .any(|(to, m)| *to == net.addr(1) && matches!(m, Message::Ping { .. })));
    }

    #[test]
    fn a_relay_request_cannot_point_a_node_at_an_address() {
        let mut net = Net::new(3);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        let victim: SocketAddr = "10.66.6.6:53".parse().unwrap();
        let sent = net.sent_by(0).count();
        // A stranger asks node 0 to probe a victim's address: for a member
        // (relayed to the member's own address, bare) and for no member.
        for target in [net.id(2), NodeId([4; 32])] {
            net.inject(
                0,
                "10.9.9.9:9".parse().unwrap(),
                &Message::PingReq {
                    seq: 7,
                    from: NodeId([9; 32]),
                    target,
                    target_addr: victim,
                },
            );
        }
        let out: Vec<_> = net.sent_by(0).skip(sent).cloned().collect();
        assert!(out.iter().all(|(to, _)| *to != victim), "{out:?}");
        let relayed: Vec<_> = out
            .iter()
            .filter(|(to, m)| *to == net.addr(2) && matches!(m, Message::Ping { .. }))
            .collect();
        assert_eq!(relayed.len(), 1, "{out:?}");
        assert!(
            matches!(&relayed[0].1, Message::Ping { updates, .. } if updates.is_empty()),
            "a relayed ping is bare"
        );
        assert_eq!(net.node(0).stats().relays_refused, 1);
    }

    /// The last ping node `i` sent to `to`, after the first `mark`
    /// datagrams: its sequence number.
    fn last_ping_seq(net: &Net, i: usize, to: SocketAddr, mark: usize) -> Option<u32> {
        net.sent_by(i)
            .skip(mark)
            .filter(|(a, _)| *a == to)
            .filter_map(|(_, m)| match m {
                Message::Ping { seq, .. } => Some(*seq),
                _ => None,
            })
            .last()
    }

    #[test]
    fn a_relay_passes_on_only_the_ack_of_the_member_it_pinged_from_its_address() {
        let mut net = Net::new(3);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        // Node 2 is dead; a requester asks node 1 to probe it.
        net.down(2);
        let requester: SocketAddr = "10.9.0.1:7946".parse().unwrap();
        let forger: SocketAddr = "10.9.0.2:7946".parse().unwrap();
        let (dead, a2) = (net.id(2), net.addr(2));
        let mark = net.sent_by(1).count();
        let req = |seq| Message::PingReq {
            seq,
            from: NodeId([9; 32]),
            target: dead,
            target_addr: a2,
        };
        net.inject(1, requester, &req(41));
        let relay_seq = last_ping_seq(&net, 1, a2, mark).expect("relayed");
        // The relay's sequence number is known (guessed, or seen on the
        // way): an ack naming the dead node, from elsewhere, is not passed
        // on, nor one from its address naming another member.
        let acks_to_requester = |net: &Net, mark: usize| {
            net.sent_by(1)
                .skip(mark)
                .filter(|(to, m)| *to == requester && matches!(m, Message::Ack { .. }))
                .count()
        };
        let refused = net.node(1).stats().acks_refused;
        let mark = net.sent_by(1).count();
        for (from, id) in [(forger, dead), (a2, net.id(0))] {
            net.inject(
                1,
                from,
                &Message::Ack {
                    seq: relay_seq,
                    from: id,
                    updates: vec![],
                },
            );
        }
        assert_eq!(acks_to_requester(&net, mark), 0, "a forged ack relayed");
        assert_eq!(net.node(1).stats().acks_refused, refused + 2);
        // The genuine ack, from the address pinged, still is.
        net.inject(
            1,
            a2,
            &Message::Ack {
                seq: relay_seq,
                from: dead,
                updates: vec![],
            },
        );
        let passed: Vec<_> = net
            .sent_by(1)
            .skip(mark)
            .filter(|(to, _)| *to == requester)
            .map(|(_, m)| m.clone())
            .collect();
        assert!(
            matches!(passed.as_slice(), [Message::Ack { seq: 41, from, .. }] if *from == dead),
            "{passed:?}"
        );
    }

    #[test]
    fn a_forged_ack_does_not_conclude_a_probe_of_a_dead_member() {
        let mut net = Net::new(3);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        let dead = net.id(2);
        net.down(2);
        // Node 0 must conclude by itself: node 1's accusations of node 2
        // do not reach it.
        net.drop_if(|from, to, m| {
            let accuses = |u: &[Update]| {
                u.iter()
                    .any(|u| matches!(u, Update::Suspect { .. } | Update::Dead { .. }))
            };
            from == 1
                && to == 0
                && match m {
                    Message::Ping { updates, .. }
                    | Message::Ack { updates, .. }
                    | Message::Gossip { updates, .. } => accuses(updates),
                    _ => false,
                }
        });
        // Node 0 probes node 2 and, no ack coming, asks node 1 to relay:
        // the probe's sequence number is now known to others.
        let mark = net.sent_by(0).count();
        assert!(net.run_until(Duration::from_secs(10), |n| {
            n.sent_by(0)
                .skip(mark)
                .any(|(_, m)| matches!(m, Message::PingReq { target, .. } if *target == dead))
        }));
        let seq = net
            .sent_by(0)
            .skip(mark)
            .filter_map(|(_, m)| match m {
                Message::PingReq { seq, target, .. } if *target == dead => Some(*seq),
                _ => None,
            })
            .last()
            .expect("asked");
        // An ack naming the dead node with that number, from an address
        // that is neither the node's nor a relay's.
        net.inject(
            0,
            "10.9.0.2:7946".parse().unwrap(),
            &Message::Ack {
                seq,
                from: dead,
                updates: vec![],
            },
        );
        // The probe fails at the end of its period all the same.
        let probes = net.node(0).stats().probes;
        assert!(net.run_until(Duration::from_secs(10), |n| {
            n.node(0).stats().probes > probes
        }));
        assert_eq!(net.node(0).state_of(&dead), Some(MemberState::Suspect));
        assert_eq!(net.node(0).stats().acks_refused, 1);
    }

    #[test]
    fn a_silent_member_is_suspected_then_declared_dead_and_a_live_one_never() {
        let mut net = Net::new(4);
        converged(&mut net);
        let silent = net.id(3);
        net.down(3);
        // Suspected within a few probe rounds, not yet dead.
        assert!(net.run_until(Duration::from_secs(20), |n| {
            n.node(0).state_of(&silent) == Some(MemberState::Suspect)
        }));
        let suspected_at = net.now();
        assert!(net.run_until(Duration::from_secs(60), |n| {
            n.node(0).state_of(&silent) == Some(MemberState::Dead)
        }));
        // The suspicion timeout at N = 4 is 2.5 s (times local health).
        let waited = net.now() - suspected_at;
        assert!(waited >= Duration::from_millis(2400), "{waited:?}");
        assert_eq!(net.node(0).stats().declared_dead, 1);
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    assert_eq!(net.node(i).state_of(&net.id(j)), Some(MemberState::Alive));
                }
            }
        }
    }

    #[test]
    fn an_unreachable_target_is_reached_through_relays() {
        let mut net = Net::new(4);
        converged(&mut net);
        // Node 0 cannot reach node 1 directly, but the others can.
        net.cut(0, 1);
        net.run_for(Duration::from_secs(20));
        assert_eq!(net.node(0).state_of(&net.id(1)), Some(MemberState::Alive));
        let relayed = net
            .sent_by(0)
            .filter(|(_, m)| matches!(m, Message::PingReq { .. }))
            .count();
        assert!(relayed >= 2, "indirect probes asked: {relayed}");
    }

    #[test]
    fn timers_handled_late_make_probes_inconclusive_not_failures() {
        let mut net = Net::new(3);
        converged(&mut net);
        let before = net.node(0).stats();
        // Node 0 is starved: its timers run 3 s late, while the others
        // answer at once. It must not accuse them.
        let late = net.now() + Duration::from_secs(3);
        net.node_mut(0).handle_timeout(late);
        let after = net.node(0).stats();
        assert!(after.late_timers > before.late_timers);
        assert!(after.local_health > before.local_health);
        net.run_for(Duration::from_secs(10));
        assert_eq!(net.node(0).state_counts(), (2, 0, 0, 0));
    }

    #[test]
    fn poll_timeout_is_the_earliest_of_every_timer() {
        let (mut node, now) = node_alone(2);
        // Fresh: its own record is queued, so push gossip comes first (at
        // 200 ms), before the first sync round (500 ms) and probe (1 s).
        let ms = |m| now + Duration::from_millis(m);
        assert_eq!(node.poll_timeout(), ms(200));
        node.handle_timeout(ms(200));
        assert_eq!(node.poll_timeout(), ms(400), "gossip again, still queued");
        node.handle_timeout(ms(400));
        assert_eq!(node.poll_timeout(), ms(500), "then the sync round");
        node.handle_timeout(ms(500));
        assert_eq!(node.poll_timeout(), ms(600));
        // Leaving disarms every timer.
        node.leave(now + Duration::from_secs(1));
        assert!(node.poll_timeout() >= now + Duration::from_secs(86_400));
    }
}
