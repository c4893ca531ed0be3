//! The sans-IO membership core: SWIM failure detection, dissemination of
//! signed records, and anti-entropy. It never touches a socket or a clock:
//! callers feed it datagrams ([`Swim::handle_datagram`]) and the time
//! ([`Swim::handle_timeout`] when [`Swim::poll_timeout`] is due), and drain
//! datagrams to send ([`Swim::poll_transmit`]) and events
//! ([`Swim::poll_event`]) after every call.
//!
//! * **Failure detection** (SWIM): every probe period a node pings one member
//!   (randomised round-robin). No ack within the probe timeout: it asks
//!   `indirect_probes` other members to ping for it. No ack by the end of the
//!   period: the member is *suspect*. A suspect that does not refute within
//!   the suspicion timeout (which grows with log N) is declared *dead*.
//! * **Refutation**: a node that hears it is suspected or dead raises its
//!   incarnation and spreads a signed `Alive`; only the node itself can sign
//!   one. Pings to a suspect carry the suspicion, so it hears at once.
//! * **Local health** (Lifeguard): failed probes raise a local health score
//!   that stretches this node's probe period and timeouts; successful ones
//!   lower it. A node starved of CPU thus slows its accusations instead of
//!   declaring healthy peers dead.
//! * **Dissemination**: updates (records, state changes) piggyback on pings
//!   and acks and are also pushed to `gossip_fanout` random members every
//!   `gossip_interval` while any are queued; each is sent
//!   `retransmit_mult * ceil(log10(N+1))` times.
//! * **Anti-entropy**: every `sync_interval` a node sends a random member the
//!   XOR digest of its records; if it differs, bucket hashes and then bucket
//!   entries are exchanged and each side sends what the other lacks. While
//!   differences remain, the next round follows after `sync_fast_interval`.
//!   Join is the same exchange with an empty store.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use grapevine_crypto::{Identity, NodeId, SignedRecord};

/// Hash maps seeded from the core's RNG: deterministic in a seeded
/// simulation, unpredictable to peers in production (so node ids cannot be
/// ground to collide).
type HashMap<K, V> = hashbrown::HashMap<K, V, FixedState>;
type HashSet<K> = hashbrown::HashSet<K, FixedState>;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::broadcast::{Broadcasts, Key};
use crate::store::{Offer, RecordStore, StoreStats};
use crate::wire::{
    liveness_message, BucketEntries, Message, Update, BUCKETS, HEADER_BUDGET, MAX_DATAGRAM,
};

/// Tunables of the membership core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between probes.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: usize,
    /// Suspicion timeout = `suspicion_mult * max(1, log10(N)) * probe_interval`
    /// (times the local health factor).
    pub suspicion_mult: f64,
    /// Time between push-gossip rounds while updates are queued.
    pub gossip_interval: Duration,
    /// Members pushed to per gossip round.
    pub gossip_fanout: usize,
    /// Each state update is sent `retransmit_mult * ceil(log10(N+1))` times.
    pub retransmit_mult: u32,
    /// Each record is pushed this many times by each node that accepts it;
    /// anti-entropy delivers it to whoever the push missed. Records are
    /// large and every node must verify each once, so they are pushed less
    /// than the small state updates.
    pub record_retransmits: u32,
    /// Time between anti-entropy rounds when in sync.
    pub sync_interval: Duration,
    /// Time between anti-entropy rounds while differences remain.
    pub sync_fast_interval: Duration,
    /// Records pushed in answer to one anti-entropy request, at most.
    pub sync_max_records: usize,
    /// Differing buckets listed in one anti-entropy round, at most.
    pub sync_max_buckets: usize,
    /// First join retry delay; doubles up to `join_retry_max`.
    pub join_retry_initial: Duration,
    /// Longest join retry delay.
    pub join_retry_max: Duration,
    /// Highest local health score (timeouts stretch up to `1 + max` times).
    pub max_local_health: u32,
    /// Time between pings to a random member believed dead, so that a
    /// member wrongly declared dead (a healed partition) hears it and
    /// refutes.
    pub reconnect_interval: Duration,
    /// Datagrams a second accepted from one source address (0: no limit);
    /// more are dropped before they are parsed.
    pub max_datagrams_per_source: u32,
    /// Burst of datagrams allowed from one source address.
    pub datagram_burst: u32,
    /// A closed grid: records without a valid admission certificate for
    /// this grid key are ignored, so their nodes never become members.
    pub grid: Option<grapevine_crypto::GridId>,
}

impl Config {
    /// Defaults for a LAN or a single host.
    pub fn new_lan() -> Self {
        Config {
            probe_interval: Duration::from_millis(1000),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 3,
            suspicion_mult: 2.5,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            retransmit_mult: 3,
            record_retransmits: 2,
            sync_interval: Duration::from_secs(3),
            sync_fast_interval: Duration::from_millis(500),
            sync_max_records: 96,
            sync_max_buckets: 32,
            join_retry_initial: Duration::from_millis(500),
            join_retry_max: Duration::from_secs(30),
            max_local_health: 8,
            reconnect_interval: Duration::from_secs(10),
            max_datagrams_per_source: 200,
            datagram_burst: 400,
            grid: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new_lan()
    }
}

/// A member's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Failed a probe; will be declared dead unless it refutes.
    Suspect,
    /// Declared dead.
    Dead,
    /// Left gracefully.
    Left,
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        })
    }
}

/// Something that changed in this node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node became known (its record arrived).
    Joined(NodeId),
    /// A member's state changed.
    StateChanged {
        /// The member.
        id: NodeId,
        /// Previous state.
        from: MemberState,
        /// New state.
        to: MemberState,
    },
    /// A member published a newer record.
    RecordUpdated(NodeId),
}

#[derive(Debug, Clone)]
struct Member {
    state: MemberState,
    incarnation: u64,
    addr: SocketAddr,
    last_heard: Instant,
    suspect_deadline: Option<Instant>,
}

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

#[derive(Debug)]
struct Probe {
    target: NodeId,
    seq: u32,
    direct_deadline: Instant,
    period_end: Instant,
    indirect_sent: bool,
}

#[derive(Debug)]
struct Relay {
    requester: SocketAddr,
    requester_seq: u32,
    deadline: Instant,
}

/// Counters of this node's traffic and decisions.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Largest datagram sent.
    pub max_datagram: usize,
    /// Datagrams that failed to decode.
    pub malformed: u64,
    /// Datagrams dropped unread because their source exceeded its rate.
    pub rate_limited: u64,
    /// Closed grids: datagrams dropped because their source is not a member.
    pub from_outsiders: u64,
    /// Liveness updates with bad signatures.
    pub forged_liveness: u64,
    /// Members this node declared dead.
    pub declared_dead: u64,
    /// Times this node refuted a suspicion of itself.
    pub refutations: u64,
    /// Timers handled late enough to mean this node is starved of CPU.
    pub late_timers: u64,
    /// Probes left inconclusive because this node was starved.
    pub inconclusive_probes: u64,
    /// Record store counters.
    pub records: StoreStats,
    /// Current local health score.
    pub local_health: u32,
}

/// The membership state machine of one node.
#[derive(Debug)]
pub struct Swim {
    identity: Arc<Identity>,
    me: NodeId,
    incarnation: u64,
    cfg: Config,
    rng: SmallRng,
    members: HashMap<NodeId, Member>,
    suspects: HashSet<NodeId>,
    live_count: usize,
    /// Members per state: alive, suspect, dead, left.
    counts: [usize; 4],
    probe_list: Vec<NodeId>,
    probe_pos: usize,
    probe: Option<Probe>,
    next_probe: Instant,
    relays: HashMap<u32, Relay>,
    next_seq: u32,
    broadcasts: Broadcasts,
    next_gossip: Instant,
    next_sync: Instant,
    next_reconnect: Instant,
    seeds: Vec<SocketAddr>,
    /// Closed grids only: addresses of admitted members, the only sources
    /// (besides seeds and joins) whose datagrams are read.
    member_addrs: HashSet<SocketAddr>,
    joined: bool,
    join_delay: Duration,
    next_join: Option<Instant>,
    local_health: u32,
    store: RecordStore,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: Stats,
    limiter: crate::ratelimit::SourceLimiter,
    left: bool,
    /// Set when an update just handled accused this node.
    accused: bool,
    /// Signed `Left` of departed members, to answer whoever still accuses
    /// them (they missed the leave).
    left_proofs: HashMap<NodeId, (u64, [u8; 64])>,
    /// Seeded hasher for maps built on the fly.
    hasher: FixedState,
    /// Departed members accused by the sender of the update being handled.
    accused_departed: Vec<NodeId>,
    /// Records waiting for batch verification: (bytes, spread, from sync).
    pending: Vec<(Vec<u8>, bool, bool)>,
    pending_deadline: Option<Instant>,
}

/// Records are verified in batches of up to this many (ed25519 batch
/// verification costs about 60% of one-by-one per record).
const VERIFY_BATCH: usize = 64;
/// Indirect probes this node relays at once, at most.
const MAX_RELAYS: usize = 1024;
/// Longest a received record waits for its batch.
const VERIFY_DELAY: Duration = Duration::from_millis(20);

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400)
}

impl Swim {
    /// A node with its identity and signed record, joining through `seeds`
    /// (none for the first node of a grid). Its incarnation starts at its
    /// record's sequence number, so a restarted node (which signs a newer
    /// record) outranks what the grid remembers of its previous run.
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
        store.insert_own(record.clone());
        let limiter =
            crate::ratelimit::SourceLimiter::new(cfg.max_datagrams_per_source, cfg.datagram_burst);
        let mut s = Swim {
            identity,
            me,
            incarnation,
            cfg,
            rng,
            members: HashMap::with_hasher(hs),
            suspects: HashSet::with_hasher(hs),
            live_count: 0,
            counts: [0; 4],
            probe_list: Vec::new(),
            probe_pos: 0,
            probe: None,
            next_probe: now,
            relays: HashMap::with_hasher(hs),
            next_seq: 1,
            broadcasts: Broadcasts::default(),
            next_gossip: far_future(now),
            next_sync: now,
            next_reconnect: now,
            joined: seeds.is_empty(),
            seeds,
            member_addrs: HashSet::default(),
            join_delay: Duration::ZERO,
            next_join: None,
            local_health: 0,
            store,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            limiter,
            left: false,
            accused: false,
            pending: Vec::new(),
            pending_deadline: None,
            left_proofs: HashMap::with_hasher(hs),
            hasher: hs,
            accused_departed: Vec::new(),
        };
        s.join_delay = s.cfg.join_retry_initial;
        s.broadcasts
            .push(Key::Record(me), Update::Record(record.bytes().to_vec()));
        if !s.joined {
            s.send_joins(now);
        }
        s.next_probe = now + s.cfg.probe_interval;
        s.next_sync = now + s.cfg.sync_fast_interval;
        s.next_reconnect = now + s.cfg.reconnect_interval;
        s.schedule_gossip(now);
        s
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
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

    /// Whether a seed has answered (or this node is the first of its grid).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.records = self.store.stats();
        s.local_health = self.local_health;
        s
    }

    /// The verified records held.
    pub fn records(&self) -> &RecordStore {
        &self.store
    }

    /// Number of other members in each state: (alive, suspect, dead, left).
    pub fn state_counts(&self) -> (usize, usize, usize, usize) {
        let c = self.counts;
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

    /// When [`Swim::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        if self.left {
            // A node that has left has nothing more to do.
            return far_future(self.next_probe);
        }
        let mut t = self
            .next_probe
            .min(self.next_gossip)
            .min(self.next_sync)
            .min(self.next_reconnect);
        if let Some(p) = &self.probe {
            if !p.indirect_sent {
                t = t.min(p.direct_deadline);
            }
            t = t.min(p.period_end);
        }
        if let Some(j) = self.next_join {
            t = t.min(j);
        }
        if let Some(v) = self.pending_deadline {
            t = t.min(v);
        }
        for id in &self.suspects {
            if let Some(d) = self.members.get(id).and_then(|m| m.suspect_deadline) {
                t = t.min(d);
            }
        }
        t
    }

    fn live_n(&self) -> usize {
        self.live_count + 1
    }

    fn retransmit_limit(&self) -> u32 {
        let n = self.live_n() as f64 + 1.0;
        self.cfg.retransmit_mult * (n.log10().ceil().max(1.0) as u32)
    }

    /// Suspicion timeout, stretched by local health (Lifeguard): a node
    /// that is itself struggling waits longer before declaring others dead.
    fn suspicion_timeout(&self) -> Duration {
        let n = (self.live_n() as f64).max(10.0);
        self.cfg
            .probe_interval
            .mul_f64(self.cfg.suspicion_mult * n.log10())
            * self.health_scale()
    }

    fn health_scale(&self) -> u32 {
        1 + self.local_health
    }

    /// Ping member `to` at `addr` with sequence number `seq`, piggybacking
    /// the updates it most needs (including any accusation of it).
    fn ping(&mut self, to: NodeId, addr: SocketAddr, seq: u32) {
        let updates = self.piggyback(Some(&to));
        self.send(
            addr,
            &Message::Ping {
                seq,
                from: self.me,
                updates,
            },
        );
    }

    fn send(&mut self, to: SocketAddr, msg: &Message) {
        match msg.encode() {
            Ok(bytes) => {
                self.stats.datagrams_sent += 1;
                self.stats.bytes_sent += bytes.len() as u64;
                self.stats.max_datagram = self.stats.max_datagram.max(bytes.len());
                self.out.push_back((to, bytes));
            }
            Err(e) => tracing::warn!("not sending oversized message: {e}"),
        }
    }

    fn piggyback(&mut self, to: Option<&NodeId>) -> Vec<Update> {
        let mut budget = MAX_DATAGRAM - HEADER_BUDGET;
        let mut first = Vec::new();
        // A suspect (or a member believed dead) hears the accusation in
        // the very message we send it, so it can refute at once.
        if let Some(id) = to {
            if let Some(u) = self.accusation(id) {
                budget -= u.encoded_len() + 2;
                first.push(u);
            }
        }
        let limit = self.retransmit_limit();
        first.extend(
            self.broadcasts
                .take(budget, limit, self.cfg.record_retransmits),
        );
        first
    }

    fn accusation(&self, id: &NodeId) -> Option<Update> {
        let m = self.members.get(id)?;
        match m.state {
            MemberState::Suspect => Some(Update::Suspect {
                id: *id,
                incarnation: m.incarnation,
            }),
            MemberState::Dead => Some(Update::Dead {
                id: *id,
                incarnation: m.incarnation,
            }),
            _ => None,
        }
    }

    /// Tell `id` directly that it is accused, so it can refute.
    fn notify_accused(&mut self, id: &NodeId) {
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

    fn schedule_gossip(&mut self, now: Instant) {
        if !self.broadcasts.is_empty() && self.next_gossip > now + self.cfg.gossip_interval {
            self.next_gossip = now + self.cfg.gossip_interval;
        }
    }

    fn send_joins(&mut self, now: Instant) {
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
        self.next_join = Some(now + self.join_delay + Duration::from_millis(jitter));
        self.join_delay = (self.join_delay * 2).min(self.cfg.join_retry_max);
    }

    fn set_state(&mut self, id: NodeId, to: MemberState, incarnation: u64, now: Instant) {
        let timeout = self.suspicion_timeout();
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let from = m.state;
        m.incarnation = incarnation;
        m.state = to;
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
        m.suspect_deadline = (to == MemberState::Suspect).then(|| now + timeout);
        let was_live = matches!(from, MemberState::Alive | MemberState::Suspect);
        let is_live = matches!(to, MemberState::Alive | MemberState::Suspect);
        if was_live && !is_live {
            self.live_count -= 1;
        } else if !was_live && is_live {
            self.live_count += 1;
            self.probe_list.push(id);
        }
        if to == MemberState::Suspect {
            self.suspects.insert(id);
        } else {
            self.suspects.remove(&id);
        }
        if from != to {
            if to == MemberState::Dead {
                self.stats.declared_dead += 1;
            }
            tracing::debug!(member = %id.short(), %from, %to, "member state");
            self.events.push_back(Event::StateChanged { id, from, to });
        }
    }

    fn learn_record(&mut self, rec: &SignedRecord, now: Instant) {
        let id = rec.node_id();
        if id == self.me {
            return;
        }
        let addr = rec.record().addrs[0];
        if self.cfg.grid.is_some() {
            if let Some(old) = self.members.get(&id).map(|m| m.addr) {
                self.member_addrs.remove(&old);
            }
            self.member_addrs.insert(addr);
        }
        match self.members.get_mut(&id) {
            None => {
                self.members.insert(
                    id,
                    Member {
                        state: MemberState::Alive,
                        incarnation: rec.seq(),
                        addr,
                        last_heard: now,
                        suspect_deadline: None,
                    },
                );
                self.live_count += 1;
                self.counts[MemberState::Alive as usize] += 1;
                let pos = if self.probe_list.is_empty() {
                    0
                } else {
                    self.rng.gen_range(0..=self.probe_list.len())
                };
                self.probe_list.insert(pos, id);
                self.events.push_back(Event::Joined(id));
            }
            Some(m) => {
                m.addr = addr;
                self.events.push_back(Event::RecordUpdated(id));
                // A newer signed record from a dead or departed node is proof
                // that it is back (restart with a fresh incarnation).
                if matches!(m.state, MemberState::Dead | MemberState::Left)
                    && rec.seq() > m.incarnation
                {
                    self.set_state(id, MemberState::Alive, rec.seq(), now);
                }
            }
        }
    }

    /// Queue records for batch verification; they are verified when
    /// [`VERIFY_BATCH`] are waiting or after [`VERIFY_DELAY`]. Newly accepted
    /// ones are learned and, if `spread`, queued for dissemination.
    fn queue_records(
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
        } else if !self.pending.is_empty() && self.pending_deadline.is_none() {
            self.pending_deadline = Some(now + VERIFY_DELAY);
        }
    }

    fn verify_pending(&mut self, now: Instant) {
        self.pending_deadline = None;
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        let refs: Vec<&[u8]> = pending.iter().map(|(r, _, _)| r.as_slice()).collect();
        let verdicts = self.store.offer_many(&refs);
        let mut spread_any = false;
        let mut synced = false;
        for (v, (_, spread, from_sync)) in verdicts.into_iter().zip(pending.iter()) {
            if let Offer::Accepted(rec) = v {
                self.learn_record(&rec, now);
                if *spread {
                    spread_any = true;
                    self.broadcasts.push(
                        Key::Record(rec.node_id()),
                        Update::Record(rec.bytes().to_vec()),
                    );
                }
                synced |= *from_sync;
                if !self.joined {
                    self.joined = true;
                    self.next_join = None;
                }
            }
        }
        if spread_any {
            self.schedule_gossip(now);
        }
        if synced {
            // Pulling is productive: go on soon.
            self.next_sync = self.next_sync.min(now + self.cfg.sync_fast_interval);
        }
    }

    /// Someone holds us suspect or dead at `incarnation`: refute with a
    /// higher one, or, if we already did, spread the refutation again (the
    /// accuser missed it).
    fn answer_accusation(&mut self, incarnation: u64, now: Instant) {
        self.accused = true;
        if incarnation >= self.incarnation {
            self.refute(incarnation, now);
        } else if !self.left
            && !matches!(
                self.broadcasts.get(&Key::State(self.me)),
                Some(Update::Alive { .. })
            )
        {
            let sig = self
                .identity
                .sign(&liveness_message("alive", &self.me, self.incarnation));
            self.broadcasts.push(
                Key::State(self.me),
                Update::Alive {
                    id: self.me,
                    incarnation: self.incarnation,
                    sig,
                },
            );
            self.schedule_gossip(now);
        }
    }

    fn refute(&mut self, incarnation: u64, now: Instant) {
        if self.left {
            return;
        }
        self.incarnation = self.incarnation.max(incarnation) + 1;
        self.stats.refutations += 1;
        self.local_health = (self.local_health + 1).min(self.cfg.max_local_health);
        let sig = self
            .identity
            .sign(&liveness_message("alive", &self.me, self.incarnation));
        self.broadcasts.push(
            Key::State(self.me),
            Update::Alive {
                id: self.me,
                incarnation: self.incarnation,
                sig,
            },
        );
        self.schedule_gossip(now);
    }

    fn apply_update(&mut self, u: Update, now: Instant, records: &mut Vec<Vec<u8>>) {
        match u {
            Update::Record(bytes) => records.push(bytes),
            Update::Alive {
                id,
                incarnation,
                sig,
            } => {
                if id == self.me {
                    return;
                }
                let Some(m) = self.members.get(&id) else {
                    return;
                };
                if incarnation <= m.incarnation {
                    return;
                }
                if id
                    .verify(&liveness_message("alive", &id, incarnation), &sig)
                    .is_err()
                {
                    self.stats.forged_liveness += 1;
                    return;
                }
                self.set_state(id, MemberState::Alive, incarnation, now);
                self.broadcasts.push(
                    Key::State(id),
                    Update::Alive {
                        id,
                        incarnation,
                        sig,
                    },
                );
                self.schedule_gossip(now);
            }
            Update::Suspect { id, incarnation } => {
                if id == self.me {
                    self.answer_accusation(incarnation, now);
                    return;
                }
                let Some(m) = self.members.get(&id) else {
                    return;
                };
                if m.state == MemberState::Left {
                    // It left and the sender missed it: answer with the proof.
                    self.accused_departed.push(id);
                    return;
                }
                let apply = match m.state {
                    MemberState::Alive => incarnation >= m.incarnation,
                    MemberState::Suspect => incarnation > m.incarnation,
                    _ => false,
                };
                if apply {
                    self.set_state(id, MemberState::Suspect, incarnation, now);
                    self.broadcasts
                        .push(Key::State(id), Update::Suspect { id, incarnation });
                    self.schedule_gossip(now);
                }
            }
            Update::Dead { id, incarnation } => {
                if id == self.me {
                    self.answer_accusation(incarnation, now);
                    return;
                }
                let Some(m) = self.members.get(&id) else {
                    return;
                };
                if m.state == MemberState::Left {
                    // It left and the sender missed it: answer with the proof.
                    self.accused_departed.push(id);
                    return;
                }
                if matches!(m.state, MemberState::Alive | MemberState::Suspect)
                    && incarnation >= m.incarnation
                {
                    self.set_state(id, MemberState::Dead, incarnation, now);
                    self.broadcasts
                        .push(Key::State(id), Update::Dead { id, incarnation });
                    self.schedule_gossip(now);
                }
            }
            Update::Left {
                id,
                incarnation,
                sig,
            } => {
                if id == self.me {
                    return;
                }
                let Some(m) = self.members.get(&id) else {
                    return;
                };
                if m.state == MemberState::Left || incarnation < m.incarnation {
                    return;
                }
                if id
                    .verify(&liveness_message("left", &id, incarnation), &sig)
                    .is_err()
                {
                    self.stats.forged_liveness += 1;
                    return;
                }
                self.set_state(id, MemberState::Left, incarnation, now);
                self.left_proofs.insert(id, (incarnation, sig));
                self.broadcasts.push(
                    Key::State(id),
                    Update::Left {
                        id,
                        incarnation,
                        sig,
                    },
                );
                self.schedule_gossip(now);
            }
        }
    }

    /// Apply piggybacked updates from `sender`; if they accused this node,
    /// answer the sender directly with the current signed `Alive`.
    fn apply_updates_from(&mut self, sender: SocketAddr, updates: Vec<Update>, now: Instant) {
        self.accused = false;
        self.apply_updates(updates, now);
        // The sender still accuses members that left: it missed the leave.
        let departed = std::mem::take(&mut self.accused_departed);
        if !departed.is_empty() {
            let proofs: Vec<Update> = departed
                .iter()
                .filter_map(|id| {
                    self.left_proofs
                        .get(id)
                        .map(|(incarnation, sig)| Update::Left {
                            id: *id,
                            incarnation: *incarnation,
                            sig: *sig,
                        })
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
        }
        if std::mem::take(&mut self.accused) && !self.left {
            let sig = self
                .identity
                .sign(&liveness_message("alive", &self.me, self.incarnation));
            let alive = Update::Alive {
                id: self.me,
                incarnation: self.incarnation,
                sig,
            };
            self.send(
                sender,
                &Message::Gossip {
                    from: self.me,
                    updates: vec![alive],
                },
            );
        }
    }

    fn apply_updates(&mut self, updates: Vec<Update>, now: Instant) {
        let mut records = Vec::new();
        for u in updates {
            self.apply_update(u, now, &mut records);
        }
        if !records.is_empty() {
            self.queue_records(records, true, false, now);
        }
    }

    fn heard_from(&mut self, id: &NodeId, now: Instant) {
        if let Some(m) = self.members.get_mut(id) {
            m.last_heard = now;
        }
    }

    /// Handle one received datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if !self.limiter.allow(now, from) {
            self.stats.rate_limited += 1;
            return;
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(%from, "dropping datagram: {e}");
                return;
            }
        };
        if self.left {
            return;
        }
        // A closed grid talks only to its members: anything but a join (whose
        // record is checked) from an address that is not an admitted
        // member's or a seed's is dropped unanswered, so outsiders learn
        // nothing (answers go to members' addresses only).
        if self.cfg.grid.is_some()
            && !matches!(msg, Message::Join { .. } | Message::JoinAck { .. })
            && !self.member_addrs.contains(&from)
            && !self.seeds.contains(&from)
        {
            self.stats.from_outsiders += 1;
            return;
        }
        match msg {
            Message::Ping {
                seq,
                from: id,
                updates,
            } => {
                self.heard_from(&id, now);
                self.apply_updates_from(from, updates, now);
                let updates = self.piggyback(Some(&id));
                self.send(
                    from,
                    &Message::Ack {
                        seq,
                        from: self.me,
                        updates,
                    },
                );
            }
            Message::Ack {
                seq,
                from: id,
                updates,
            } => {
                self.heard_from(&id, now);
                self.apply_updates_from(from, updates, now);
                if let Some(relay) = self.relays.remove(&seq) {
                    self.send(
                        relay.requester,
                        &Message::Ack {
                            seq: relay.requester_seq,
                            from: id,
                            updates: Vec::new(),
                        },
                    );
                } else if self
                    .probe
                    .as_ref()
                    .is_some_and(|p| p.seq == seq && p.target == id)
                {
                    self.probe = None;
                    self.local_health = self.local_health.saturating_sub(1);
                }
            }
            Message::PingReq {
                seq,
                from: id,
                target,
                target_addr,
            } => {
                self.heard_from(&id, now);
                // Relays expire after a probe period; the cap bounds what a
                // flood of requests can make this node remember meanwhile.
                if self.relays.len() >= MAX_RELAYS {
                    self.stats.malformed += 1;
                    return;
                }
                let my_seq = self.take_seq();
                let deadline = now + self.cfg.probe_interval * self.health_scale();
                self.relays.insert(
                    my_seq,
                    Relay {
                        requester: from,
                        requester_seq: seq,
                        deadline,
                    },
                );
                self.ping(target, target_addr, my_seq);
            }
            Message::Join { record } => {
                match self.store.offer(&record) {
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
            Message::JoinAck { record } => {
                self.queue_records(vec![record], true, false, now);
                self.verify_pending(now);
                if !self.joined && self.store.len() > 1 {
                    self.joined = true;
                    self.next_join = None;
                    tracing::debug!(%from, "joined");
                    // Full sync with the seed that answered, right away.
                    self.send_digest(from);
                    self.next_sync = now + self.cfg.sync_fast_interval;
                }
            }
            Message::Gossip { from: id, updates } => {
                self.heard_from(&id, now);
                self.apply_updates_from(from, updates, now);
            }
            Message::SyncDigest {
                from: id,
                root,
                count: _,
            } => {
                self.heard_from(&id, now);
                if root != self.store.root() {
                    let hashes = self.store.bucket_hashes();
                    self.send(
                        from,
                        &Message::SyncBuckets {
                            from: self.me,
                            hashes,
                        },
                    );
                }
            }
            Message::SyncBuckets { from: id, hashes } => {
                self.heard_from(&id, now);
                self.answer_buckets(from, &hashes, now);
            }
            Message::SyncHave { from: id, buckets } => {
                self.heard_from(&id, now);
                self.answer_have(from, buckets);
            }
            Message::SyncWant { from: id, prefixes } => {
                self.heard_from(&id, now);
                let recs: Vec<Vec<u8>> = prefixes
                    .iter()
                    .take(self.cfg.sync_max_records)
                    .filter_map(|p| self.store.get_by_prefix(p).map(|r| r.bytes().to_vec()))
                    .collect();
                self.send_records(from, recs);
            }
            Message::SyncRecords { from: id, records } => {
                self.heard_from(&id, now);
                // Learned by pull: no need to spread further, everyone syncs.
                self.queue_records(records, false, true, now);
            }
        }
    }

    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        s
    }

    fn send_digest(&mut self, to: SocketAddr) {
        let msg = Message::SyncDigest {
            from: self.me,
            root: self.store.root(),
            count: self.store.len() as u32,
        };
        self.send(to, &msg);
    }

    fn answer_buckets(&mut self, to: SocketAddr, theirs: &[u32], now: Instant) {
        if theirs.len() != BUCKETS {
            self.stats.malformed += 1;
            return;
        }
        let mine = self.store.bucket_hashes();
        let start = self.rng.gen_range(0..BUCKETS);
        let differing: Vec<u8> = (0..BUCKETS)
            .map(|i| (start + i) % BUCKETS)
            .filter(|&b| mine[b] != theirs[b])
            .map(|b| b as u8)
            .collect();
        if differing.is_empty() {
            return;
        }
        // Rounds follow soon while we differ (each is capped, so this stays
        // cheap even while everyone differs during a join storm).
        self.next_sync = self.next_sync.min(now + self.cfg.sync_fast_interval);
        let differing: Vec<u8> = differing
            .into_iter()
            .take(self.cfg.sync_max_buckets)
            .collect();
        let mut batch: Vec<BucketEntries> = Vec::new();
        let mut size = HEADER_BUDGET;
        let mut datagrams = 0;
        for b in differing {
            let entries = self.store.bucket_entries(b);
            let cost = 4 + entries.len() * 17;
            if size + cost > MAX_DATAGRAM && !batch.is_empty() {
                self.send(
                    to,
                    &Message::SyncHave {
                        from: self.me,
                        buckets: std::mem::take(&mut batch),
                    },
                );
                size = HEADER_BUDGET;
                datagrams += 1;
                if datagrams >= 16 {
                    return;
                }
            }
            // A bucket too large for one datagram is split.
            for chunk in entries.chunks(((MAX_DATAGRAM - HEADER_BUDGET - 8) / 17).max(1)) {
                if size + 4 + chunk.len() * 17 > MAX_DATAGRAM && !batch.is_empty() {
                    self.send(
                        to,
                        &Message::SyncHave {
                            from: self.me,
                            buckets: std::mem::take(&mut batch),
                        },
                    );
                    size = HEADER_BUDGET;
                    datagrams += 1;
                }
                size += 4 + chunk.len() * 17;
                batch.push(BucketEntries {
                    bucket: b,
                    entries: chunk.to_vec(),
                });
            }
            if entries.is_empty() {
                size += 4;
                batch.push(BucketEntries {
                    bucket: b,
                    entries: Vec::new(),
                });
            }
        }
        if !batch.is_empty() {
            self.send(
                to,
                &Message::SyncHave {
                    from: self.me,
                    buckets: batch,
                },
            );
        }
    }

    fn answer_have(&mut self, to: SocketAddr, buckets: Vec<BucketEntries>) {
        let mut theirs: HashMap<[u8; 8], u64> = HashMap::with_hasher(self.hasher);
        let mut listed: Vec<u8> = Vec::new();
        for b in &buckets {
            if !listed.contains(&b.bucket) {
                listed.push(b.bucket);
            }
            for (p, seq) in &b.entries {
                theirs.insert(*p, *seq);
            }
        }
        let mut push = Vec::new();
        for b in listed {
            for (p, seq) in self.store.bucket_entries(b) {
                match theirs.get(&p) {
                    Some(their) if *their >= seq => {}
                    _ => {
                        if push.len() < self.cfg.sync_max_records {
                            if let Some(r) = self.store.get_by_prefix(&p) {
                                push.push(r.bytes().to_vec());
                            }
                        }
                    }
                }
            }
        }
        let mut want = Vec::new();
        for (p, seq) in theirs {
            let mine = self.store.get_by_prefix(&p).map(|r| r.seq());
            if mine.is_none_or(|m| m < seq) {
                want.push(p);
            }
        }
        self.send_records(to, push);
        for chunk in want.chunks(70) {
            self.send(
                to,
                &Message::SyncWant {
                    from: self.me,
                    prefixes: chunk.to_vec(),
                },
            );
        }
    }

    fn send_records(&mut self, to: SocketAddr, records: Vec<Vec<u8>>) {
        let mut batch = Vec::new();
        let mut size = HEADER_BUDGET;
        for r in records {
            if size + r.len() + 3 > MAX_DATAGRAM && !batch.is_empty() {
                self.send(
                    to,
                    &Message::SyncRecords {
                        from: self.me,
                        records: std::mem::take(&mut batch),
                    },
                );
                size = HEADER_BUDGET;
            }
            size += r.len() + 3;
            batch.push(r);
        }
        if !batch.is_empty() {
            self.send(
                to,
                &Message::SyncRecords {
                    from: self.me,
                    records: batch,
                },
            );
        }
    }

    fn random_live_members(
        &mut self,
        k: usize,
        exclude: Option<&NodeId>,
    ) -> Vec<(NodeId, SocketAddr)> {
        // Sample from the probe list (live members, possibly with stale
        // entries that are skipped).
        let mut out = Vec::with_capacity(k);
        if self.probe_list.is_empty() {
            return out;
        }
        let mut tries = 0;
        while out.len() < k && tries < k * 4 + 8 {
            tries += 1;
            let id = self.probe_list[self.rng.gen_range(0..self.probe_list.len())];
            if Some(&id) == exclude || out.iter().any(|(o, _)| *o == id) {
                continue;
            }
            if let Some(m) = self.members.get(&id) {
                if m.state == MemberState::Alive {
                    out.push((id, m.addr));
                }
            }
        }
        out
    }

    fn next_probe_target(&mut self) -> Option<NodeId> {
        for _ in 0..self.probe_list.len().max(1) * 2 {
            if self.probe_pos >= self.probe_list.len() {
                // Drop entries that are no longer live, then reshuffle.
                let members = &self.members;
                let mut seen = HashSet::with_hasher(self.hasher);
                self.probe_list.retain(|id| {
                    members.get(id).is_some_and(|m| {
                        matches!(m.state, MemberState::Alive | MemberState::Suspect)
                    }) && seen.insert(*id)
                });
                self.probe_list.shuffle(&mut self.rng);
                self.probe_pos = 0;
                if self.probe_list.is_empty() {
                    return None;
                }
            }
            let id = self.probe_list[self.probe_pos];
            self.probe_pos += 1;
            if self
                .members
                .get(&id)
                .is_some_and(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            {
                return Some(id);
            }
        }
        None
    }

    /// Advance timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Handled late: this node (or its whole process) is starved of CPU.
        // Its own view of timeouts cannot be trusted right now.
        let due = self.poll_timeout();
        let starved = now > due + self.cfg.probe_timeout / 2;
        if starved {
            self.stats.late_timers += 1;
            self.local_health = (self.local_health + 1).min(self.cfg.max_local_health);
        }
        if self.pending_deadline.is_some_and(|d| now >= d) {
            self.verify_pending(now);
        }
        if self.left {
            self.next_probe = far_future(now);
            self.next_sync = far_future(now);
            self.next_gossip = far_future(now);
            return;
        }
        // Join retries.
        if let Some(t) = self.next_join {
            if now >= t && !self.joined {
                self.send_joins(now);
            }
        }
        // Indirect probes after the direct timeout.
        let mut indirect = None;
        if let Some(p) = &mut self.probe {
            if !p.indirect_sent && now >= p.direct_deadline {
                p.indirect_sent = true;
                indirect = Some((p.target, p.seq));
            }
        }
        if let Some((target, seq)) = indirect {
            if let Some(addr) = self.members.get(&target).map(|m| m.addr) {
                let helpers = self.random_live_members(self.cfg.indirect_probes, Some(&target));
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
        }
        // End of the probe period.
        if now >= self.next_probe {
            if let Some(p) = self.probe.take().filter(|p| {
                // Starved past the period's end: the ack may be unread or
                // our timing wrong. Inconclusive, not a failure.
                let late = now > p.period_end + self.cfg.probe_timeout;
                if late {
                    self.stats.inconclusive_probes += 1;
                }
                !late && !starved
            }) {
                // No ack, direct or relayed: suspect it.
                self.local_health = (self.local_health + 1).min(self.cfg.max_local_health);
                if let Some(m) = self.members.get(&p.target) {
                    if m.state == MemberState::Alive {
                        let inc = m.incarnation;
                        self.set_state(p.target, MemberState::Suspect, inc, now);
                        self.broadcasts.push(
                            Key::State(p.target),
                            Update::Suspect {
                                id: p.target,
                                incarnation: inc,
                            },
                        );
                        self.notify_accused(&p.target);
                        self.schedule_gossip(now);
                    }
                }
            }
            // Recover local health one step per probe period handled on
            // time, so a node starved once (a join storm) does not stay
            // slow to detect failures long after.
            if !starved {
                self.local_health = self.local_health.saturating_sub(1);
            }
            let period = self.cfg.probe_interval * self.health_scale();
            self.next_probe = now + period;
            // Give one suspect per period a fresh chance to hear its
            // accusation and refute (earlier notices may have been lost).
            if !self.suspects.is_empty() {
                let idx = self.rng.gen_range(0..self.suspects.len());
                if let Some(id) = self.suspects.iter().nth(idx).copied() {
                    if let Some(addr) = self.members.get(&id).map(|m| m.addr) {
                        let seq = self.take_seq();
                        self.ping(id, addr, seq);
                    }
                }
            }
            if let Some(target) = self.next_probe_target() {
                let addr = self.members[&target].addr;
                let seq = self.take_seq();
                self.probe = Some(Probe {
                    target,
                    seq,
                    direct_deadline: now + self.cfg.probe_timeout * self.health_scale(),
                    period_end: self.next_probe,
                    indirect_sent: false,
                });
                self.ping(target, addr, seq);
            }
        }
        // Suspicion timeouts.
        let expired: Vec<NodeId> = self
            .suspects
            .iter()
            .filter(|id| {
                self.members
                    .get(*id)
                    .and_then(|m| m.suspect_deadline)
                    .is_some_and(|d| now >= d)
            })
            .copied()
            .collect();
        for id in expired {
            let inc = self.members[&id].incarnation;
            self.set_state(id, MemberState::Dead, inc, now);
            self.broadcasts.push(
                Key::State(id),
                Update::Dead {
                    id,
                    incarnation: inc,
                },
            );
            self.notify_accused(&id);
            self.schedule_gossip(now);
        }
        // Reconnect: ping one member believed dead; if it is in fact alive
        // (a healed partition), the accusation in the ping makes it refute.
        if now >= self.next_reconnect {
            self.next_reconnect = now + self.cfg.reconnect_interval;
            let dead: Vec<NodeId> = self
                .members
                .iter()
                .filter(|(_, m)| m.state == MemberState::Dead)
                .map(|(id, _)| *id)
                .collect();
            if !dead.is_empty() {
                let id = dead[self.rng.gen_range(0..dead.len())];
                let addr = self.members[&id].addr;
                let seq = self.take_seq();
                self.ping(id, addr, seq);
            }
        }
        // Stale relays.
        if !self.relays.is_empty() {
            self.relays.retain(|_, r| r.deadline > now);
        }
        // Push gossip.
        if now >= self.next_gossip {
            if self.broadcasts.is_empty() {
                self.next_gossip = far_future(now);
            } else {
                let targets = self.random_live_members(self.cfg.gossip_fanout, None);
                for (_, addr) in targets {
                    let updates = self.piggyback(None);
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
                self.next_gossip = if self.broadcasts.is_empty() {
                    far_future(now)
                } else {
                    now + self.cfg.gossip_interval
                };
            }
        }
        // Anti-entropy.
        if now >= self.next_sync {
            let jitter = self
                .rng
                .gen_range(0..=self.cfg.sync_interval.as_millis() as u64 / 4);
            self.next_sync = now + self.cfg.sync_interval + Duration::from_millis(jitter);
            if let Some((_, addr)) = self.random_live_members(1, None).pop() {
                self.send_digest(addr);
            } else if !self.joined {
                if let Some(seed) = self.seeds.first().copied() {
                    self.send_digest(seed);
                }
            }
        }
    }

    /// Publish a new version of this node's record (it must have a higher
    /// sequence number).
    pub fn update_record(&mut self, record: SignedRecord, now: Instant) {
        if record.node_id() != self.me {
            return;
        }
        if self
            .store
            .get(&self.me)
            .is_some_and(|r| r.seq() >= record.seq())
        {
            return;
        }
        self.store.insert_own(record.clone());
        self.broadcasts.push(
            Key::Record(self.me),
            Update::Record(record.bytes().to_vec()),
        );
        self.schedule_gossip(now);
    }

    /// Leave the grid: send a signed `Left` directly to up to 64 members
    /// (it then spreads like any update) and stop probing. Drain
    /// [`Swim::poll_transmit`] afterwards.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let sig = self
            .identity
            .sign(&liveness_message("left", &self.me, self.incarnation));
        let update = Update::Left {
            id: self.me,
            incarnation: self.incarnation,
            sig,
        };
        let targets = self.random_live_members(64, None);
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
        self.handle_timeout(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::testing::{record_for, rng};
    use rand::SeedableRng;

    #[test]
    fn a_flood_of_relay_requests_is_capped() {
        let id = Arc::new(Identity::generate_with(&mut rng(1)));
        let rec = record_for(&id, "10.0.0.1:1").sign(&id).unwrap();
        let now = Instant::now();
        let mut node = Swim::new(
            id,
            rec,
            vec![],
            Config::new_lan(),
            SmallRng::seed_from_u64(1),
            now,
        );
        while node.poll_transmit().is_some() {}
        // Each from its own address, so the per-source rate limit stays out
        // of the way: this is about the relay table.
        let from = |i: u32| SocketAddr::from(([10, 0, 1, (i % 250) as u8], 1000 + i as u16));
        for i in 0..3000u32 {
            let req = Message::PingReq {
                seq: i,
                from: NodeId([9; 32]),
                target: NodeId([8; 32]),
                target_addr: "10.0.0.8:8".parse().unwrap(),
            };
            node.handle_datagram(now, from(i), &req.encode().unwrap());
        }
        let mut pings = 0;
        while node.poll_transmit().is_some() {
            pings += 1;
        }
        assert_eq!(
            pings, MAX_RELAYS,
            "one relayed ping per accepted request, no more"
        );
        assert_eq!(node.stats().malformed, 3000 - MAX_RELAYS as u64);
        // Relays expire, and the node relays again afterwards.
        node.handle_timeout(now + Duration::from_secs(30));
        while node.poll_transmit().is_some() {}
        let req = Message::PingReq {
            seq: 1,
            from: NodeId([9; 32]),
            target: NodeId([8; 32]),
            target_addr: "10.0.0.8:8".parse().unwrap(),
        };
        node.handle_datagram(
            now + Duration::from_secs(30),
            from(0),
            &req.encode().unwrap(),
        );
        assert!(node.poll_transmit().is_some());
    }
}
