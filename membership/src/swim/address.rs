//! What may be sent where: answer budgets, cookies, headers and address
//! validation.
//!
//! A source address proves nothing by itself, so, as QUIC limits what it
//! sends to an address that has not proven it receives (RFC 9000 section
//! 8), everything this node sends in answer to a datagram, to the
//! datagram's source, is at most [`ANSWER_FACTOR`] times the datagram's
//! bytes, unless the datagram echoes a cookie this node issued to that
//! address ([`crate::cookie`]). An answer that does not fit is not sent
//! (or cut short: an ack piggybacks less) and counted (`answers_capped`).
//! Cookies are issued where they are needed, each a datagram of its own
//! ([`Message::Cookie`], within the same budget: bytes for it are kept
//! back): when an answer did not fit, to a peer that reads cookies (a
//! member's recorded address whose record names such a release, or any
//! datagram with a header, which only such releases write: a peer whose
//! record has not arrived here yet is still answered); at once to a join
//! (the joiner's first sync round with this node follows), to a peer that
//! answers this node's digests with bucket hashes (the round goes on, and
//! what the peer then asks for is sent only if it echoes a cookie), and to
//! a peer echoing last period's cookie (a fresh one before it expires). The
//! peer
//! echoes it from then on in the header of everything it sends here;
//! digests that drew only a cookie are sent again with it at once, once
//! (the cookie round trip, paid once per ordered pair that syncs while
//! their roots differ). A ping's ack, gossip and digests whose roots agree fit
//! the budget, so a converged grid issues no cookies at all; an earlier
//! version issued one to every member at first contact, whatever it sent
//! (every ordered pair of nodes: 4.1 against 1.2 datagrams per node per
//! second in the 1000-node swarm's first half-minute of steady state).
//!
//! A member's address is sent nothing but bare pings (and accusations of
//! it) until it has answered from there: an ack carrying the random
//! sequence number of a ping sent there, or any datagram echoing a cookie
//! issued to that address. A newly learned address gets a bare ping at
//! once, [`VALIDATIONS_PER_ROUND`] every [`VALIDATE_EVERY`], while fewer than
//! [`EAGER_READY`] alive members have answered (so a joining node soon has
//! members to gossip and sync with), each member once and at most
//! [`MAX_TO_VALIDATE`] waiting; past that, the probe round reaches the
//! rest. So a record naming someone else's address (anyone can sign one in
//! an open grid) draws bare pings to it, never gossip, anti-entropy or
//! relayed probes.
//!
//! Datagrams to a peer of release 0.3.0 or later start with a header: the
//! cookie that peer issued (if held) and this node's wall clock. The clock
//! of a header whose cookie proves the address of the member sending it is
//! a sample of the grid's time ([`crate::clock`]), and so is the clock of
//! an ack to a ping of this node's from the member's address (its random
//! sequence number proves the address as well as a cookie would): every
//! probe takes a sample, and no cookie is issued for the clock's sake.
//! Other datagrams carry [`NO_TIME`] (0) instead, a byte rather than five
//! (a 7-byte header was 19% of a converged grid's gossip bytes), and a
//! header's 0 is never taken as a sample.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_crypto::{NodeId, UnverifiedRecord};

use super::{Answer, Swim, TimerKey};
use crate::cookie::Echo;
use crate::wire::{reads_cookies, Cookie, Datagram, Message};

/// A header's clock where the sender does not send it (the receiver
/// would not take it as a sample): one byte on the wire.
pub const NO_TIME: u64 = 0;

/// Answers to a datagram that echoes no cookie are at most this many times
/// its bytes.
pub const ANSWER_FACTOR: usize = 3;
/// Bytes of a datagram issuing a cookie, at most (with a header: a held
/// cookie and the largest time).
const COOKIE_LEN: usize = 29;
/// Bare pings to new addresses per validation round.
pub(super) const VALIDATIONS_PER_ROUND: usize = 4;
/// Time between validation rounds.
pub(super) const VALIDATE_EVERY: Duration = Duration::from_millis(200);
/// New addresses are pinged eagerly while fewer alive members than this
/// have answered.
pub(super) const EAGER_READY: usize = 32;
/// New addresses waiting for their eager bare ping, at most (each member
/// once): enough to find [`EAGER_READY`] that answer; the probe round
/// reaches the rest.
pub(super) const MAX_TO_VALIDATE: usize = 4 * EAGER_READY;

impl Swim {
    /// Whether the peer at `addr` reads headers and cookies: the member
    /// recorded there names such a release or, where no member's record is
    /// held, it issued a cookie to this node. The record decides where
    /// there is one: a node rolled back to an older release still has
    /// cookies it issued before held here.
    pub(super) fn reads_cookies_at(&self, addr: &SocketAddr) -> bool {
        match self
            .members
            .at_addr(addr)
            .and_then(|id| self.store.get(&id))
        {
            Some(r) => reads_cookies(&r.record().software),
            None => self.held.get(addr).is_some(),
        }
    }

    /// Start handling a datagram of `len` bytes from `from`: what its
    /// cookie proves (the address of the member that sent it, and a sample
    /// of its clock), the budget for answers, and a cookie if one is due
    /// now (see the module docs).
    pub(super) fn begin_answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        len: usize,
        dg: &Datagram,
    ) {
        let (cookie, time) = match dg.header {
            Some((c, t)) => (c, (t != NO_TIME).then_some(t)),
            None => (None, None),
        };
        let echo = self.cookies.check(&from, cookie.as_ref(), now);
        if echo.is_valid() {
            let proven = dg
                .msg
                .sender()
                .filter(|id| self.members.get(id).is_some_and(|m| m.addr == from));
            if let Some(id) = proven {
                self.members.validate(&id);
                if let Some(t) = time {
                    let ours = self.unix_secs(now);
                    self.clock.sample(id, t, ours);
                }
            }
        }
        let issue = echo != Echo::Current && self.issues_cookie_to(&from, dg);
        // A cookie at once to a join (its first sync with this node
        // follows at once), to a peer answering this node's digests with
        // bucket hashes (the round goes on, and the peer's list of what it
        // wants is answered with records only if it echoes one), and to
        // renew one about to expire; otherwise only where it is needed:
        // when an answer does not fit (see `end_answer`), with bytes kept
        // back for it.
        let eager = issue
            && (echo == Echo::Previous
                || matches!(
                    dg.msg,
                    Message::Join { .. }
                        | Message::SyncBuckets { .. }
                        | Message::FactBuckets { .. }
                ));
        let budget = len.saturating_mul(ANSWER_FACTOR);
        let reserve = (issue && !eager && COOKIE_LEN <= budget).then_some(COOKIE_LEN);
        let left = if echo.is_valid() {
            usize::MAX
        } else {
            budget - reserve.unwrap_or(0)
        };
        self.answer = Some(Answer {
            to: from,
            left,
            cookie: reserve,
            capped: false,
            time,
        });
        if eager {
            self.issue_cookie(from, now);
        }
    }

    fn issue_cookie(&mut self, to: SocketAddr, now: Instant) {
        let cookie = self.cookies.issue(&to, now);
        self.stats.cookies_issued += 1;
        self.send(to, &Message::Cookie { cookie });
    }

    /// Whether a datagram from `from` (and no current cookie) may be
    /// issued a cookie: it is a join, or comes from a member's recorded
    /// address, of a release that reads cookies, or it carries a header
    /// (so its sender reads them, though its record has not arrived here
    /// yet); never a cookie in answer to a cookie.
    fn issues_cookie_to(&self, from: &SocketAddr, dg: &Datagram) -> bool {
        match &dg.msg {
            Message::Cookie { .. } | Message::Header { .. } => false,
            Message::Join { record } => {
                UnverifiedRecord::parse(record).is_ok_and(|r| reads_cookies(&r.record().software))
            }
            _ => {
                dg.header.is_some()
                    || self
                        .members
                        .at_addr(from)
                        .and_then(|id| self.store.get(&id))
                        .is_some_and(|r| reads_cookies(&r.record().software))
            }
        }
    }

    /// Done handling a datagram from `from`. A member held dead or
    /// departed that speaks from its address is running again (a restart,
    /// a healed partition): it is offered this node's record and synced
    /// with (`rediscover`, at most once per `sync_fast_interval`).
    pub(super) fn end_answer(&mut self, now: Instant, from: SocketAddr, sender: Option<NodeId>) {
        // An answer did not fit: a cookie, in the bytes kept back for it,
        // so the next request can echo it and have its answer in full.
        if let Some(a) = self.answer.as_mut().filter(|a| a.capped) {
            if let Some(reserve) = a.cookie.take() {
                a.left = a.left.saturating_add(reserve);
                self.issue_cookie(from, now);
            }
        }
        self.answer = None;
        let gone = sender.filter(|id| {
            self.members
                .get(id)
                .is_some_and(|m| !m.state.is_live() && m.addr == from)
        });
        let due = self
            .last_discovery
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.sync_fast_interval);
        if let (Some(id), true, false) = (gone, due, self.left) {
            self.last_discovery = Some(now);
            self.rediscover(from, id, now);
        } else if due
            && !self.left
            && self.store.len() <= 1
            && sender.is_some_and(|id| id != self.me)
        {
            // This node knows no one (restarted with no seeds and no peer
            // cache) and a member of some grid speaks to it.
            self.last_discovery = Some(now);
            self.join_stranger(from);
        }
    }

    /// Bytes that may still be sent to `to` in answer to the datagram
    /// being handled (no limit if it is not its source, or between
    /// datagrams).
    pub(super) fn room(&self, to: &SocketAddr) -> usize {
        self.answer
            .as_ref()
            .filter(|a| a.to == *to)
            .map_or(usize::MAX, |a| a.left)
    }

    /// Queue `msg` for `to`, after a header if `to` reads one; an answer
    /// over the budget is dropped and counted.
    pub(super) fn send(&mut self, to: SocketAddr, msg: &Message) {
        let headed = self.reads_cookies_at(&to);
        self.send_as(to, msg, headed);
    }

    /// [`Swim::send`], with a header or without as `headed` says (a
    /// joiner's record tells whether it reads one before it is a member).
    pub(super) fn send_as(&mut self, to: SocketAddr, msg: &Message, headed: bool) {
        let header = headed.then(|| {
            let cookie = self.held.get(&to);
            // The clock only where the receiver takes it as a sample (see
            // the module docs); 0 elsewhere: a byte instead of five.
            let sampled =
                cookie.is_some() || matches!(msg, Message::Ack { .. } | Message::JoinAck { .. });
            let time = if sampled {
                self.unix_secs(self.last_now)
            } else {
                NO_TIME
            };
            (cookie, time)
        });
        let bytes = match Datagram::encode(header, msg) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("not sending oversized message: {e}");
                return;
            }
        };
        if let Some(a) = self.answer.as_mut().filter(|a| a.to == to) {
            if bytes.len() > a.left {
                self.stats.answers_capped += 1;
                a.capped = true;
                return;
            }
            a.left -= bytes.len();
        }
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.stats.max_datagram = self.stats.max_datagram.max(bytes.len());
        self.out.push_back((to, bytes));
    }

    /// A peer issued this node a cookie: hold it (for members' and seeds'
    /// addresses only), and if the digests just sent there drew only this
    /// cookie, send them again with it.
    pub(super) fn on_cookie(&mut self, now: Instant, from: SocketAddr, cookie: Cookie) {
        let known = self.members.is_member_addr(&from)
            || self.seeds.contains(&from)
            || self.join_targets.contains(&from);
        if !known {
            return;
        }
        self.held.insert(from, cookie);
        if let Some((to, at, used)) = self.last_digests {
            let recent = now.saturating_duration_since(at) <= self.cfg.probe_interval;
            if to == from && recent && used != Some(cookie) {
                // This node's own round, sent again once: not an answer to
                // the cookie (which is too small to carry digests back
                // within three times), so outside its budget; a forged
                // cookie can make it happen once per round at most.
                let answer = self.answer.take();
                let peer = self.members.at_addr(&from);
                self.send_digests(from, peer, now);
                self.last_digests = None;
                self.answer = answer;
            }
        }
    }

    /// A new address for member `id`: ping it bare soon, while few members
    /// have answered. A member already waiting keeps its place (its latest
    /// address is the one pinged); past [`MAX_TO_VALIDATE`] waiting, new
    /// ones are left to the probe round.
    pub(super) fn queue_validation(&mut self, id: NodeId, now: Instant) {
        if self.members.ready() >= EAGER_READY
            || self.left
            || self.to_validate.len() >= MAX_TO_VALIDATE
            || self.to_validate.contains(&id)
        {
            return;
        }
        self.to_validate.push_back(id);
        if self.timers.deadline(&TimerKey::Validate).is_none() {
            self.timers.set(TimerKey::Validate, now);
        }
    }

    /// A validation round: bare pings to the next new addresses.
    pub(super) fn on_validate(&mut self, now: Instant) {
        let mut sent = 0;
        while sent < VALIDATIONS_PER_ROUND && self.members.ready() < EAGER_READY {
            let Some(id) = self.to_validate.pop_front() else {
                break;
            };
            let Some(addr) = self
                .members
                .get(&id)
                .filter(|m| !m.validated && m.state.is_live())
                .map(|m| m.addr)
            else {
                continue;
            };
            let seq = self.take_seq();
            self.ping(id, addr, seq);
            self.stats.validations += 1;
            sent += 1;
        }
        if self.members.ready() >= EAGER_READY {
            self.to_validate.clear();
        }
        if !self.to_validate.is_empty() {
            self.timers.set(TimerKey::Validate, now + VALIDATE_EVERY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::testing::{converged, Net};
    use crate::wire::{BucketEntries, Update};
    use grapevine_crypto::{Identity, LocationRecord};

    fn stranger_record(addr: &str, seed: u64) -> Vec<u8> {
        let id = Identity::generate_with(&mut grapevine_crypto::testing::rng(seed));
        LocationRecord::new(&id, vec![addr.parse().unwrap()])
            .sign(&id)
            .unwrap()
            .bytes()
            .to_vec()
    }

    #[test]
    fn answers_to_an_address_that_echoed_no_cookie_are_at_most_three_times_the_request() {
        let mut net = Net::new(4);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        // Something to piggyback, a fact to sync: node 0's record is new.
        let rec = net.record(0, 7_000_000);
        let now = net.now();
        net.node_mut(0).update_record(rec, now);
        let s: SocketAddr = "10.77.0.1:7946".parse().unwrap();
        let who = NodeId([0x42; 32]);
        let p0 = crate::wire::prefix(&net.id(1));
        let requests = [
            Message::SyncDigest {
                from: who,
                root: 0,
                count: 0,
            },
            Message::SyncDigests {
                from: who,
                root: 0,
                count: 0,
                fact_root: 1,
            },
            Message::SyncHave {
                from: who,
                buckets: (0..=255u8)
                    .map(|bucket| BucketEntries {
                        bucket,
                        entries: vec![],
                    })
                    .collect(),
            },
            Message::SyncWant {
                from: who,
                prefixes: vec![p0],
            },
            Message::Ping {
                seq: 1,
                from: who,
                updates: vec![],
            },
            Message::Join {
                record: stranger_record("10.77.0.1:7946", 77),
            },
            Message::Gossip {
                from: who,
                updates: vec![Update::Suspect {
                    id: net.id(0),
                    incarnation: net.node(0).incarnation(),
                }],
            },
        ];
        let capped = net.node(0).stats().answers_capped;
        for (k, req) in requests.iter().enumerate() {
            // Each from its own port: a fresh address, no cookie.
            let from = SocketAddr::new(s.ip(), 8000 + k as u16);
            let bytes = req.encode().unwrap();
            let mark = net.sent_by(0).count();
            net.inject_bytes(0, from, &bytes);
            let (sent, _) = net.bytes_to(0, from, mark);
            assert!(
                sent <= ANSWER_FACTOR * bytes.len(),
                "{req:?}: {sent} bytes in answer to {}",
                bytes.len()
            );
        }
        // Several would have been far larger: bucket hashes (1.3 KB),
        // records, an ack with a record on it.
        assert!(net.node(0).stats().answers_capped >= capped + 4);
    }

    #[test]
    fn a_member_gets_a_cookie_and_echoing_it_gets_full_answers() {
        let mut net = Net::new(3);
        converged(&mut net);
        net.run_for(Duration::from_secs(5));
        // Members hold each other's cookies by now, and echo them.
        let (a0, a1) = (net.addr(0), net.addr(1));
        let cookie = net
            .node(1)
            .held
            .get(&a0)
            .expect("node 1 holds node 0's cookie");
        assert!(net.node(0).stats().cookies_issued >= 2);
        let digest = Message::SyncDigest {
            from: net.id(1),
            root: 0,
            count: 0,
        };
        // Without the cookie: a fresh cookie (within three times), no
        // bucket hashes.
        let mark = net.sent_by(0).count();
        net.inject(0, a1, &digest);
        let out: Vec<_> = net.sent_by(0).skip(mark).map(|(_, m)| m.clone()).collect();
        assert!(
            matches!(out.as_slice(), [Message::Cookie { .. }]),
            "{out:?}"
        );
        // Echoing it: the full answer.
        let mark = net.sent_by(0).count();
        let bytes = Datagram::encode(Some((Some(cookie), 0)), &digest).unwrap();
        net.inject_bytes(0, a1, &bytes);
        let out: Vec<_> = net.sent_by(0).skip(mark).map(|(_, m)| m.clone()).collect();
        assert!(
            matches!(out.as_slice(), [Message::SyncBuckets { .. }]),
            "{out:?}"
        );
        // A cookie proves only the address it was issued to: from another,
        // the answer does not fit, and the header earns that address a
        // cookie of its own (within three times), nothing more.
        let other: SocketAddr = "10.1.0.99:7946".parse().unwrap();
        let mark = net.sent_by(0).count();
        net.inject_bytes(0, other, &bytes);
        let out: Vec<_> = net.sent_by(0).skip(mark).map(|(_, m)| m.clone()).collect();
        assert!(
            matches!(out.as_slice(), [Message::Cookie { .. }]),
            "{out:?}"
        );
        assert!(net.bytes_to(0, other, mark).0 <= ANSWER_FACTOR * bytes.len());
    }

    /// A header carries the clock only where the receiver takes it as a
    /// sample (acks, join acks, datagrams echoing a cookie), [`NO_TIME`]
    /// elsewhere (a byte rather than five), and a header's `NO_TIME` is
    /// never taken as a sample, cookie or not.
    #[test]
    fn the_clock_rides_only_where_it_is_a_sample_and_zero_is_none() {
        let mut net = Net::new(4);
        for i in 0..4 {
            let now = net.now();
            net.node_mut(i).set_wall_clock(now, 1_800_000_000_000);
        }
        converged(&mut net);
        net.run_for(Duration::from_secs(20));
        let (mut bare, mut timed) = (0, 0);
        for ((_, m), head) in net.sent_with_headers(0) {
            let Some((cookie, time)) = head else {
                continue;
            };
            let sampled = cookie || matches!(m, Message::Ack { .. } | Message::JoinAck { .. });
            assert_eq!(
                time != NO_TIME,
                sampled,
                "{m:?} with cookie {cookie}: {time}"
            );
            if sampled {
                timed += 1;
            } else {
                bare += 1;
            }
        }
        assert!(
            bare > 10 && timed > 10,
            "{bare} without the clock, {timed} with"
        );
        // Members echoing node 0's cookie with no clock: no sample (two of
        // node 0's three peers, so a sample of 0 would move the median).
        let before = (net.node(0).clock.peers(), net.node(0).clock.offset());
        assert!(before.0 == 3, "{before:?}");
        let send = |net: &mut Net, time: u64| {
            for k in [1, 2] {
                let cookie = net.node(k).held.get(&net.addr(0)).expect("a held cookie");
                let gossip = Message::Gossip {
                    from: net.id(k),
                    updates: vec![],
                };
                let bytes = Datagram::encode(Some((Some(cookie), time)), &gossip).unwrap();
                let a = net.addr(k);
                net.inject_bytes(0, a, &bytes);
            }
        };
        send(&mut net, NO_TIME);
        assert_eq!(
            (net.node(0).clock.peers(), net.node(0).clock.offset()),
            before
        );
        // The same with their clocks an hour ahead: samples (the test can
        // fail).
        let ahead = net.node(0).unix_secs(net.now()) + 3600;
        send(&mut net, ahead);
        assert_ne!(
            (net.node(0).clock.peers(), net.node(0).clock.offset()),
            before
        );
    }

    #[test]
    fn a_member_is_heard_from_only_at_its_own_address() {
        let mut net = Net::new(3);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        net.down(2);
        let silent = net.id(2);
        let heard = |net: &Net| {
            net.node(0)
                .members()
                .into_iter()
                .find(|m| m.id == silent)
                .expect("member")
                .last_heard
        };
        net.run_for(Duration::from_secs(5));
        let before = heard(&net);
        assert!(net.now() - before >= Duration::from_secs(5));
        // Datagrams naming it as their sender, from anywhere else: not
        // heard from.
        let ping = Message::Ping {
            seq: 3,
            from: silent,
            updates: vec![],
        };
        let digest = Message::SyncDigest {
            from: silent,
            root: 0,
            count: 0,
        };
        for (k, m) in [&ping, &digest].into_iter().enumerate() {
            net.inject(0, SocketAddr::from(([10, 9, 0, 1], 9000 + k as u16)), m);
            net.inject(0, net.addr(1), m);
        }
        assert_eq!(heard(&net), before);
        // From its own address, it is.
        net.inject(0, net.addr(2), &ping);
        assert_eq!(heard(&net), net.now());
    }

    #[test]
    fn the_validation_queue_holds_each_member_once_and_is_bounded() {
        let (mut node, now) = crate::swim::testing::node_alone(3);
        let at = |i: u32| SocketAddr::from(([10, 70, (i >> 8) as u8, i as u8], 7946));
        // One member whose record moves again and again (each a newer
        // record at a new address): waiting once, at its latest address.
        let moving = Identity::generate_with(&mut grapevine_crypto::testing::rng(500));
        for k in 1..=50u32 {
            let mut r = LocationRecord::new(&moving, vec![at(k)]);
            r.seq = u64::from(k);
            assert!(node.add_verified_record(r.sign(&moving).unwrap(), now));
        }
        assert_eq!(node.to_validate.len(), 1, "{:?}", node.to_validate);
        // A thousand new members at once: the queue stays bounded (the
        // probe round reaches the others).
        for i in 0..1000u32 {
            let id =
                Identity::generate_with(&mut grapevine_crypto::testing::rng(1000 + u64::from(i)));
            let r = LocationRecord::new(&id, vec![at(100 + i)])
                .sign(&id)
                .unwrap();
            assert!(node.add_verified_record(r, now));
        }
        assert_eq!(node.state_counts().0, 1001);
        assert_eq!(node.to_validate.len(), MAX_TO_VALIDATE);
        // The first waiting is pinged first, at its latest address.
        node.handle_timeout(now);
        let first = node.poll_transmit().expect("a bare ping");
        assert_eq!(first.0, at(50));
    }

    #[test]
    fn a_record_naming_someone_elses_address_draws_only_bare_pings() {
        let mut net = Net::new(4);
        converged(&mut net);
        net.run_for(Duration::from_secs(2));
        // Anyone can sign a record naming a victim's address; the grid
        // stores it (it is validly signed) but must not flood the victim.
        let victim: SocketAddr = "10.66.6.6:53".parse().unwrap();
        let rec = stranger_record("10.66.6.6:53", 66);
        let marks: Vec<usize> = (0..4).map(|i| net.sent_by(i).count()).collect();
        net.inject(
            0,
            "10.9.9.9:9".parse().unwrap(),
            &Message::Gossip {
                from: NodeId([9; 32]),
                updates: vec![Update::Record(rec)],
            },
        );
        // A minute: it spreads, is probed (bare), suspected, declared dead,
        // pinged again as dead.
        net.run_for(Duration::from_secs(60));
        let mut to_victim = Vec::new();
        for (i, &mark) in marks.iter().enumerate() {
            to_victim.extend(
                net.sent_by(i)
                    .skip(mark)
                    .filter(|(to, _)| *to == victim)
                    .map(|(_, m)| m.clone()),
            );
        }
        assert!(!to_victim.is_empty(), "the address is tried");
        for m in &to_victim {
            let bare = matches!(m, Message::Ping { updates, .. }
                if updates.iter().all(|u| matches!(u, Update::Suspect { .. } | Update::Dead { .. })));
            let accusation = matches!(m, Message::Gossip { updates, .. }
                if updates.len() == 1 && matches!(updates[0], Update::Suspect { .. } | Update::Dead { .. }));
            assert!(bare || accusation, "{m:?}");
        }
        let bytes: usize = (0..4).map(|i| net.bytes_to(i, victim, marks[i]).0).sum();
        // A few small datagrams a node: nothing like gossip or sync.
        assert!(bytes <= 4 * 12 * 130, "{bytes} bytes to the victim");
    }
}
