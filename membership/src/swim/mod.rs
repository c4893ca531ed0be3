//! The sans-IO membership core: SWIM failure detection, dissemination of
//! signed records and facts, and anti-entropy. It never touches a socket, a
//! clock or the OS's randomness: callers feed it datagrams
//! ([`Swim::handle_datagram`]) and the time ([`Swim::handle_timeout`] when
//! [`Swim::poll_timeout`] is due), give it a seeded RNG and the wall-clock
//! time ([`Swim::set_wall_clock`]), and drain datagrams to send
//! ([`Swim::poll_transmit`]) and events ([`Swim::poll_event`]) after every
//! call. Given the same seed, inputs and times, it does the same thing.
//!
//! One job per module, as foca separates member, probe, broadcast and
//! config:
//!
//! * `members`: the member table, counts and sampling.
//! * `probe`: failure detection (SWIM): every probe period a node pings
//!   one member (randomised round-robin); no ack within the probe timeout,
//!   it asks `indirect_probes` others to ping for it (relays); no ack by the
//!   end of the period, the member is *suspect*; a suspect that does not
//!   refute within the suspicion timeout (which grows with log N) is
//!   declared *dead*. Local health (Lifeguard) stretches this node's
//!   timeouts while it is starved or failing, so a struggling node slows its
//!   accusations instead of declaring healthy peers dead.
//! * `gossip`: dissemination. Updates piggyback on pings and acks and are
//!   pushed to `gossip_fanout` random members every `gossip_interval` while
//!   any are queued; each is sent `retransmit_mult * ceil(log10(N+1))`
//!   times. Refutation: only a node can sign its own `Alive`, and every
//!   accusation reaches the accused directly.
//! * `sync`: anti-entropy over XOR digests of records and of signed facts
//!   (signed `Alive` above a record, signed `Left`), so anything gossip
//!   missed is found in the next round. Unsigned opinions (`Suspect`,
//!   `Dead`) stay local and never enter a digest.
//! * `records`: record intake (batch verification) and learning.
//! * `join`: joining through seeds (retried with backoff) and leaving.
//! * `admit`: what is read at all (per-source rate limit, closed grids).
//! * `address`: what may be sent where. Answers to a datagram that echoes
//!   no cookie this node issued to its source are at most three times its
//!   bytes; cookies are issued to members; a new address is sent nothing but
//!   bare pings until it has answered; headers carry cookies and the wall
//!   clock, from which the grid's time is measured.
//! * `expire`: dead and departed members are forgotten after a while
//!   (tombstones keep stale copies of their records out), and an open
//!   grid's member table has a cap.
//! * `stats`: the counters.
//! * `event`: [`Event`], what changed in the view, for the driver to hand on.
//!
//! Incarnations only come from signatures: a member's incarnation is its
//! record's sequence number or one it signed in an `Alive` or `Left`, and an
//! unsigned accusation (`Suspect`, `Dead`) is applied only at the
//! incarnation held, never above it, so no forged accusation can move one.
//!
//! Every wait is a keyed timer in one [`Timers`] heap: the probe period, the
//! indirect-probe timeout, one per suspect, one per relayed probe, gossip,
//! sync, reconnect, join retry, record verification, address validation and
//! expiry. `poll_timeout` is the heap's top, O(1).

mod address;
mod admit;
mod event;
mod expire;
mod gossip;
mod join;
mod members;
mod probe;
mod records;
mod rtt;
mod stats;
mod sync;
#[cfg(test)]
pub(crate) mod testing;
mod wall;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wall::WallClock;

use foldhash::fast::FixedState;
use grapevine_crypto::{Identity, NodeId, SignedRecord};
use rand::rngs::SmallRng;
use rand::Rng;

pub use crate::config::Config;
pub use event::Event;
pub use members::MemberState;

use crate::broadcast::{Broadcasts, Key};
use crate::clock::GridClock;
use crate::cookie::{CookieJar, HeldCookies};
use crate::facts::FactSet;
use crate::ratelimit::SourceLimiter;
use crate::store::RecordStore;
use crate::timers::Timers;
use crate::tombstone::Tombstones;
use crate::wire::{Cookie, Message, Update};
use members::Members;
pub use stats::Stats;

type HashMap<K, V> = hashbrown::HashMap<K, V, FixedState>;

/// A member as seen from outside the core.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// Node id.
    pub id: NodeId,
    /// State.
    pub state: MemberState,
    /// Incarnation.
    pub incarnation: u64,
    /// Gossip address.
    pub addr: SocketAddr,
    /// When this node last heard from it directly.
    pub last_heard: Instant,
    /// Its signed record.
    pub record: Option<SignedRecord>,
}

/// What the core waits for: one key per timer in [`Timers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TimerKey {
    /// End of the probe period (and start of the next probe).
    Probe,
    /// The direct probe's timeout: ask others to ping.
    Indirect,
    /// A suspect's time to refute is up.
    Suspect(NodeId),
    /// Tell the grid of a suspicion this node raised, if the suspect has
    /// not refuted to this node first (see `probe`).
    SpreadSuspicion(NodeId),
    /// A relayed probe is forgotten.
    Relay(u32),
    /// Push gossip while updates are queued.
    Gossip,
    /// Anti-entropy round.
    Sync,
    /// Ping a member believed dead.
    Reconnect,
    /// Retry joining.
    Join,
    /// Verify the records waiting for their batch.
    Verify,
    /// Send bare pings to new addresses.
    Validate,
    /// Forget members gone long enough, and old tombstones.
    Expire,
}

/// The probe of the current period (see `probe`).
#[derive(Debug)]
struct Probe {
    target: NodeId,
    seq: u32,
    period_end: Instant,
    /// The target's address: a direct ack comes from there.
    addr: SocketAddr,
    /// The members asked to relay: a relayed ack comes from one of them.
    helpers: Vec<SocketAddr>,
    /// When its ping was sent (round trips, see `rtt`).
    sent: Instant,
}

/// A probe this node makes for another member (see `probe`).
#[derive(Debug)]
struct Relay {
    requester: SocketAddr,
    requester_seq: u32,
    /// The member pinged, at the address pinged: only an ack naming it,
    /// from there, is passed on.
    target: NodeId,
    addr: SocketAddr,
}

/// The datagram being handled: its source, and the bytes that may still be
/// sent there (see `address`).
#[derive(Debug)]
struct Answer {
    to: SocketAddr,
    left: usize,
    /// Bytes kept back for a cookie, if the source may be issued one
    /// should an answer not fit (see `address`).
    cookie: Option<usize>,
    /// Whether an answer did not fit.
    capped: bool,
    /// The wall clock in its header, if any.
    time: Option<u64>,
}

/// Time between expiry sweeps (see `expire`).
const EXPIRE_SWEEP: Duration = Duration::from_secs(30);
/// Two newer records of this node's id from elsewhere within this long are
/// a twin, not a previous life (a previous life's record comes once).
pub const TWIN_WINDOW: Duration = Duration::from_secs(600);

/// The membership state machine of one node.
#[derive(Debug)]
pub struct Swim {
    identity: Arc<Identity>,
    me: NodeId,
    incarnation: u64,
    cfg: Config,
    rng: SmallRng,
    /// Seeded hasher for the core's tables: deterministic in a seeded
    /// simulation, unpredictable to peers in production (so node ids cannot
    /// be ground to collide).
    hasher: FixedState,
    members: Members,
    timers: Timers<TimerKey, FixedState>,
    probe: Option<Probe>,
    /// The probe of the period before, whose ack may still come (late:
    /// a round trip to measure, nothing more).
    late_probe: Option<Probe>,
    /// Round trips of probes (see `rtt`).
    rtt: rtt::RoundTrips,
    relays: HashMap<u32, Relay>,
    local_health: u32,
    broadcasts: Broadcasts,
    store: RecordStore,
    facts: FactSet,
    seeds: Vec<SocketAddr>,
    joined: bool,
    join_delay: Duration,
    left: bool,
    limiter: SourceLimiter,
    wall: WallClock,
    /// The latest time seen, for an idle `poll_timeout`.
    last_now: Instant,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: Stats,
    /// When a newer record of this node's id signed since its own last
    /// came (`records`: a twin answering it).
    last_elsewhere: Option<Instant>,
    /// When an identity clash was last logged.
    last_clash_logged: Option<Instant>,
    /// Set when an update just handled accused this node.
    accused: bool,
    /// Departed members accused by the sender of the update being handled.
    accused_departed: Vec<NodeId>,
    /// Records waiting for batch verification: (bytes, spread, from sync).
    pending: Vec<(Vec<u8>, bool, bool)>,
    /// This node's cookies.
    cookies: CookieJar,
    /// Cookies peers issued to this node.
    held: HeldCookies,
    /// The datagram being handled, and what may still be sent back.
    answer: Option<Answer>,
    /// The grid's time, as measured from peers.
    clock: GridClock,
    /// The highest sequence number or incarnation signed and not yet
    /// reported by [`Swim::poll_signed`].
    signed: Option<u64>,
    /// What is kept of forgotten members.
    tombstones: Tombstones,
    /// Members whose new address waits for a bare ping.
    to_validate: VecDeque<NodeId>,
    /// The last digests sent: to whom, when, with which cookie (the cookie
    /// round trip sends them again when a fresh cookie answers).
    last_digests: Option<(SocketAddr, Instant, Option<Cookie>)>,
    /// When a member held dead or departed was last synced with because
    /// it spoke (rate limit).
    last_discovery: Option<Instant>,
    /// Addresses to join through besides the seeds (the peer cache).
    join_targets: Vec<SocketAddr>,
}

impl Swim {
    /// A node with its identity and signed record, joining through `seeds`
    /// (none for the first node of a grid). Its incarnation starts at its
    /// record's sequence number, so a restarted node (which signs a newer
    /// record) outranks what the grid remembers of its previous run. `rng`
    /// is all the randomness the core uses (the driver seeds it from the
    /// OS); the wall clock is taken to be the record's `issued_at` at `now`
    /// until [`Swim::set_wall_clock`] says otherwise.
    pub fn new(
        identity: Arc<Identity>,
        record: SignedRecord,
        seeds: Vec<SocketAddr>,
        cfg: Config,
        rng: SmallRng,
        now: Instant,
    ) -> Self {
        let me = identity.node_id();
        let mut rng = rng;
        let hs = FixedState::with_seed(rng.gen());
        let mut store = match cfg.grid {
            Some(g) => RecordStore::closed(g),
            None => RecordStore::default(),
        };
        let incarnation = record.seq();
        let cookies = CookieJar::new(rng.gen(), now);
        let wall = WallClock {
            at: now,
            unix_ms: record.record().issued_at.saturating_mul(1000),
        };
        store.insert_own(record.clone());
        let limiter = SourceLimiter::new(
            cfg.max_datagrams_per_source,
            cfg.datagram_burst,
            rng.gen(),
            now,
        );
        let mut s = Swim {
            identity,
            me,
            incarnation,
            members: Members::new(hs),
            join_delay: cfg.join_retry_initial,
            tombstones: Tombstones::new(cfg.max_members),
            cfg,
            rng,
            hasher: hs,
            timers: Timers::with_hasher(hs),
            probe: None,
            late_probe: None,
            rtt: rtt::RoundTrips::default(),
            relays: HashMap::with_hasher(hs),
            local_health: 0,
            broadcasts: Broadcasts::default(),
            store,
            facts: FactSet::default(),
            joined: seeds.is_empty(),
            seeds,
            left: false,
            limiter,
            wall,
            last_now: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            last_elsewhere: None,
            last_clash_logged: None,
            accused: false,
            accused_departed: Vec::new(),
            pending: Vec::new(),
            cookies,
            held: HeldCookies::default(),
            answer: None,
            clock: GridClock::default(),
            signed: None,
            to_validate: VecDeque::new(),
            last_digests: None,
            last_discovery: None,
            join_targets: Vec::new(),
        };
        s.broadcasts
            .push(Key::Record(me), Update::Record(record.bytes().to_vec()));
        if !s.joined {
            s.send_joins(now);
        }
        s.timers.set(TimerKey::Probe, now + s.cfg.probe_interval);
        s.timers.set(TimerKey::Sync, now + s.cfg.sync_fast_interval);
        s.timers
            .set(TimerKey::Reconnect, now + s.cfg.reconnect_interval);
        s.timers.set(TimerKey::Expire, now + EXPIRE_SWEEP);
        s.schedule_gossip(now);
        s
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Whether a seed has answered (or this node is the first of its grid).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.records = self.store.stats();
        s.local_health = self.local_health;
        s.probe_timeout_ms = u64::try_from(self.probe_timeout().as_millis()).unwrap_or(u64::MAX);
        s.clock_offset_s = self.clock.offset();
        s.clock_peers = self.clock.peers();
        s
    }

    /// This node's incarnation (its record's sequence number, or higher
    /// after a refutation).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The highest sequence number or incarnation this node has signed
    /// since the last call, if any. A node that keeps the last number it
    /// signed on disk (so that its next run signs above it, whatever its
    /// clock says) writes this down before sending what
    /// [`Swim::poll_transmit`] gives.
    #[must_use]
    pub fn poll_signed(&mut self) -> Option<u64> {
        self.signed.take()
    }

    fn note_signed(&mut self, n: u64) {
        self.signed = Some(self.signed.map_or(n, |s| s.max(n)));
    }

    /// The verified records held.
    pub fn records(&self) -> &RecordStore {
        &self.store
    }

    /// The signed facts held (signed alive above a record, signed leaves).
    pub fn facts(&self) -> &FactSet {
        &self.facts
    }

    /// Number of other members in each state: (alive, suspect, dead, left).
    pub fn state_counts(&self) -> (usize, usize, usize, usize) {
        let c = self.members.counts();
        (c[0], c[1], c[2], c[3])
    }

    /// The state of `id` as seen here.
    pub fn state_of(&self, id: &NodeId) -> Option<MemberState> {
        self.members.get(id).map(|m| m.state)
    }

    /// Every other member.
    pub fn members(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                id: *id,
                state: m.state,
                incarnation: m.incarnation,
                addr: m.addr,
                last_heard: m.last_heard,
                record: self.store.get(id).cloned(),
            })
            .collect()
    }

    /// Next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Swim::handle_timeout`] should next be called. O(1). A node
    /// that has left has nothing more to do: a day after the latest time
    /// it was given.
    pub fn poll_timeout(&self) -> Instant {
        self.timers
            .next()
            .unwrap_or(self.last_now + Duration::from_secs(86_400))
    }

    /// The wall clock reads `unix_ms` (milliseconds since the Unix epoch)
    /// at `now`; used for admission certificates' expiry. The driver calls
    /// this as it runs, so the core itself never reads a clock.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = WallClock { at: now, unix_ms };
    }

    fn unix_secs(&self, now: Instant) -> u64 {
        self.wall.unix_secs(now)
    }

    /// Advance timers to `now`: handle every timer due, earliest first.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let Some(due) = self.timers.next() else {
            return;
        };
        // Handled late: this node (or its whole process) is starved of CPU.
        // Its own view of timeouts cannot be trusted right now.
        let starved = now > due + self.cfg.probe_timeout / 2;
        if starved {
            self.stats.late_timers += 1;
            self.raise_health();
        }
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Probe => self.on_probe_period(now, starved),
                TimerKey::Indirect => self.on_direct_timeout(),
                TimerKey::Suspect(id) => self.on_suspicion_timeout(id, now),
                TimerKey::SpreadSuspicion(id) => self.spread_suspicion(id, now),
                TimerKey::Relay(seq) => {
                    self.relays.remove(&seq);
                }
                TimerKey::Gossip => self.on_gossip(now),
                TimerKey::Sync => self.on_sync(now),
                TimerKey::Reconnect => self.on_reconnect(now),
                TimerKey::Join => self.on_join_retry(now),
                TimerKey::Verify => self.verify_pending(now),
                TimerKey::Validate => self.on_validate(now),
                TimerKey::Expire => self.on_expire(now),
            }
        }
    }

    /// Handle one received datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.last_now = self.last_now.max(now);
        let Some(dg) = self.admit(now, from, bytes) else {
            return;
        };
        let sender = dg.msg.sender();
        self.begin_answer(now, from, bytes.len(), &dg);
        self.dispatch(now, from, dg.msg);
        self.end_answer(now, from, sender);
    }

    fn dispatch(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        // Heard from directly: the claimed sender, only from its recorded
        // address (anyone can name any id).
        if let Some(id) = msg.sender() {
            self.members.heard(&id, from, now);
        }
        match msg {
            Message::Ping {
                seq,
                from: id,
                updates,
            } => self.on_ping(now, from, seq, id, updates),
            Message::Ack {
                seq,
                from: id,
                updates,
            } => self.on_ack(now, from, seq, id, updates),
            Message::PingReq { seq, target, .. } => self.on_ping_req(now, from, seq, target),
            Message::Join { record } => self.on_join(now, from, &record),
            Message::JoinAck { record } => self.on_join_ack(now, from, record),
            Message::Gossip { updates, .. } => self.apply_updates_from(from, updates, now),
            Message::SyncDigest { root, .. } => self.on_sync_digest(from, root),
            Message::SyncBuckets { hashes, .. } => self.on_sync_buckets(from, &hashes, now),
            Message::SyncHave { buckets, .. } => self.on_sync_have(from, buckets),
            Message::SyncWant { prefixes, .. } => self.on_sync_want(from, &prefixes),
            // Learned by pull: no need to spread further, everyone syncs.
            Message::SyncRecords { records, .. } => self.queue_records(records, false, true, now),
            Message::SyncDigests {
                root, fact_root, ..
            } => {
                self.on_sync_digest(from, root);
                self.on_fact_digest(from, fact_root);
            }
            Message::FactBuckets { hashes, .. } => self.on_fact_buckets(from, &hashes, now),
            Message::FactHave { buckets, .. } => self.on_fact_have(from, buckets),
            Message::FactWant { prefixes, .. } => self.on_fact_want(from, &prefixes),
            Message::SyncFacts { updates, .. } => self.on_sync_facts(updates, now),
            Message::Cookie { cookie } => self.on_cookie(now, from, cookie),
            // `Datagram::decode` never gives a header as the message.
            Message::Header { .. } => {}
        }
    }

    /// A fresh probe sequence number: random (an ack that carries it
    /// proves its sender received the ping), never 0, not a relay's.
    fn take_seq(&mut self) -> u32 {
        loop {
            let s: u32 = self.rng.gen();
            if s != 0 && !self.relays.contains_key(&s) {
                return s;
            }
        }
    }

    /// Live nodes including this one.
    fn live_n(&self) -> usize {
        self.members.live() + 1
    }

    /// Change a member's state (and the suspicion timer that goes with
    /// it), counting and reporting the change.
    fn set_state(&mut self, id: NodeId, to: MemberState, incarnation: u64, now: Instant) {
        let timeout = self.suspicion_timeout();
        let Some(from) = self.members.set_state(id, to, incarnation, now) else {
            return;
        };
        if to == MemberState::Suspect {
            self.timers.set(TimerKey::Suspect(id), now + timeout);
        } else if from == MemberState::Suspect {
            self.timers.cancel(&TimerKey::Suspect(id));
            self.timers.cancel(&TimerKey::SpreadSuspicion(id));
        }
        if from != to {
            if to == MemberState::Dead {
                self.stats.declared_dead += 1;
            }
            tracing::debug!(member = %id.short(), %from, %to, "member state");
            self.events.push_back(Event::StateChanged {
                id,
                from,
                to,
                incarnation,
            });
        }
    }
}
