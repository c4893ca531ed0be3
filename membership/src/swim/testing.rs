//! Fixtures for the core's unit tests: a few nodes on a virtual clock,
//! talking through the sans-IO interface only, with a log of every datagram
//! sent, links that can be cut and messages that can be dropped by kind.
//! (The many-node simulation with latency, loss and partitions is
//! [`crate::sim`].)

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grapevine_crypto::{GridId, Identity, LocationRecord, NodeId, SignedRecord};
use hashbrown::HashSet;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::{Config, Swim};
use crate::wire::Message;

type Filter = Box<dyn FnMut(usize, usize, &Message) -> bool>;

/// A record of test node `i` (seed `i`), sequence number 1.
pub(crate) fn signed_record(i: u64) -> SignedRecord {
    let id = Identity::generate_with(&mut grapevine_crypto::testing::rng(i));
    LocationRecord::new(&id, vec![SocketAddr::from(([10, 0, 0, i as u8], 7000))])
        .sign(&id)
        .expect("test record")
}

/// A first node with no seeds and no members, its queued output drained.
pub(crate) fn node_alone(seed: u64) -> (Swim, Instant) {
    node_with(seed, Config::new_lan())
}

/// As [`node_alone`], in a closed grid of some other key.
pub(crate) fn closed_node_alone(seed: u64) -> (Swim, Instant) {
    let grid = GridId::of(&Identity::generate_with(
        &mut grapevine_crypto::testing::rng(999),
    ));
    node_with(
        seed,
        Config {
            grid: Some(grid),
            ..Config::new_lan()
        },
    )
}

pub(crate) fn node_with(seed: u64, cfg: Config) -> (Swim, Instant) {
    let id = Arc::new(Identity::generate_with(
        &mut grapevine_crypto::testing::rng(seed),
    ));
    let rec = LocationRecord::new(&id, vec!["10.0.0.1:1".parse().expect("addr")])
        .sign(&id)
        .expect("record");
    let now = crate::testing::epoch();
    let mut node = Swim::new(id, rec, vec![], cfg, SmallRng::seed_from_u64(seed), now);
    while node.poll_transmit().is_some() {}
    (node, now)
}

/// Nodes 0..n: node 0 first, the others seeded on it. Delivery after 1 ms,
/// in order; nothing is lost unless a link is cut, a node is down or a
/// filter drops it.
pub(crate) struct Net {
    nodes: Vec<Swim>,
    ids: Vec<Arc<Identity>>,
    addrs: Vec<SocketAddr>,
    now: Instant,
    queue: VecDeque<(Instant, usize, usize, Vec<u8>)>,
    log: Vec<Vec<(SocketAddr, Message)>>,
    /// The size in bytes of each datagram in `log`.
    sizes: Vec<Vec<usize>>,
    /// Each datagram's header in `log`: whether it held a cookie, and its
    /// clock.
    heads: Vec<Vec<Option<(bool, u64)>>>,
    down: HashSet<usize>,
    cut: HashSet<(usize, usize)>,
    filter: Option<Filter>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Net({} nodes)", self.nodes.len())
    }
}

impl Net {
    pub fn new(n: usize) -> Self {
        Self::with_config(n, Config::new_lan())
    }

    /// As [`Net::new`], every node with `cfg`.
    pub fn with_config(n: usize, cfg: Config) -> Self {
        let now = crate::testing::epoch();
        let mut net = Net {
            nodes: Vec::new(),
            ids: Vec::new(),
            addrs: Vec::new(),
            now,
            queue: VecDeque::new(),
            log: Vec::new(),
            sizes: Vec::new(),
            heads: Vec::new(),
            down: HashSet::new(),
            cut: HashSet::new(),
            filter: None,
        };
        for i in 0..n {
            let id = Arc::new(Identity::generate_with(
                &mut grapevine_crypto::testing::rng(1000 + i as u64),
            ));
            net.ids.push(id);
            net.addrs
                .push(SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7946)));
        }
        for i in 0..n {
            let seeds = if i == 0 { vec![] } else { vec![net.addrs[0]] };
            let rec = net.record(i, 1);
            let node = Swim::new(
                net.ids[i].clone(),
                rec,
                seeds,
                cfg.clone(),
                SmallRng::seed_from_u64(i as u64),
                now,
            );
            net.nodes.push(node);
            net.log.push(Vec::new());
            net.sizes.push(Vec::new());
            net.heads.push(Vec::new());
            net.drain(i);
        }
        net
    }

    /// A record of node `i` at sequence number `seq`.
    pub fn record(&self, i: usize, seq: u64) -> SignedRecord {
        self.record_of_release(i, seq, env!("CARGO_PKG_VERSION"))
    }

    /// A record of node `i` at `seq` naming `software` as its release.
    pub fn record_of_release(&self, i: usize, seq: u64, software: &str) -> SignedRecord {
        let mut r = LocationRecord::new(&self.ids[i], vec![self.addrs[i]]);
        r.seq = seq;
        r.software = software.into();
        r.sign(&self.ids[i]).expect("record")
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.ids[i].node_id()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn node(&self, i: usize) -> &Swim {
        &self.nodes[i]
    }

    /// Node `i`, to call it directly; its output is delivered on the next
    /// step.
    pub fn node_mut(&mut self, i: usize) -> &mut Swim {
        &mut self.nodes[i]
    }

    /// Node `i` neither sends nor receives (a crash, without losing state).
    pub fn down(&mut self, i: usize) {
        self.down.insert(i);
    }

    pub fn up(&mut self, i: usize) {
        self.down.remove(&i);
    }

    /// Datagrams between `a` and `b` are lost, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    pub fn uncut(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a.min(b), a.max(b)));
    }

    /// Drop every datagram `f(from, to, message)` is true for.
    pub fn drop_if(&mut self, f: impl FnMut(usize, usize, &Message) -> bool + 'static) {
        self.filter = Some(Box::new(f));
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].leave(now);
        self.drain(i);
    }

    /// Hand node `i` a datagram from `from`, now.
    pub fn inject(&mut self, i: usize, from: SocketAddr, msg: &Message) {
        self.inject_bytes(i, from, &msg.encode().expect("encodes"));
    }

    /// Hand node `i` the datagram `bytes` from `from`, now.
    pub fn inject_bytes(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[i].handle_datagram(now, from, bytes);
        self.drain(i);
    }

    /// Bytes node `i` sent to `to` in its datagrams after the first
    /// `skip`, and how many datagrams.
    pub fn bytes_to(&self, i: usize, to: SocketAddr, skip: usize) -> (usize, usize) {
        self.log[i]
            .iter()
            .zip(&self.sizes[i])
            .skip(skip)
            .filter(|((a, _), _)| *a == to)
            .fold((0, 0), |(b, n), (_, len)| (b + len, n + 1))
    }

    /// Every datagram node `i` sent, in order.
    pub fn sent_by(&self, i: usize) -> impl Iterator<Item = &(SocketAddr, Message)> + '_ {
        self.log[i].iter()
    }

    /// Every datagram node `i` sent, in order, with its header (whether
    /// it held a cookie, and its clock).
    pub fn sent_with_headers(
        &self,
        i: usize,
    ) -> impl Iterator<Item = (&(SocketAddr, Message), Option<(bool, u64)>)> + '_ {
        self.log[i].iter().zip(self.heads[i].iter().copied())
    }

    /// The nodes node `i` pinged, in order.
    pub fn pings_from(&self, i: usize) -> Vec<SocketAddr> {
        self.sent_by(i)
            .filter(|(_, m)| matches!(m, Message::Ping { .. }))
            .map(|(to, _)| *to)
            .collect()
    }

    fn drain(&mut self, i: usize) {
        while self.nodes[i].poll_event().is_some() {}
        while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
            let dg = crate::wire::Datagram::decode(&bytes).expect("the core sends valid datagrams");
            let msg = dg.msg;
            self.heads[i].push(dg.header.map(|(c, t)| (c.is_some(), t)));
            self.log[i].push((to, msg.clone()));
            self.sizes[i].push(bytes.len());
            let Some(j) = self.addrs.iter().position(|a| *a == to) else {
                continue;
            };
            let lost = self.down.contains(&i)
                || self.down.contains(&j)
                || self.cut.contains(&(i.min(j), i.max(j)))
                || self.filter.as_mut().is_some_and(|f| f(i, j, &msg));
            if !lost {
                self.queue
                    .push_back((self.now + Duration::from_millis(1), i, j, bytes));
            }
        }
    }

    fn step(&mut self, until: Instant) -> bool {
        let timer = (0..self.nodes.len())
            .filter(|i| !self.down.contains(i))
            .map(|i| (self.nodes[i].poll_timeout(), i))
            .min();
        let msg = self.queue.front().map(|m| m.0);
        match (timer, msg) {
            (_, Some(at)) if at <= until && timer.is_none_or(|(t, _)| at <= t) => {
                let (at, from, to, bytes) = self.queue.pop_front().expect("peeked");
                self.now = self.now.max(at);
                if !self.down.contains(&to) {
                    let addr = self.addrs[from];
                    self.nodes[to].handle_datagram(self.now, addr, &bytes);
                    self.drain(to);
                }
                true
            }
            (Some((t, i)), _) if t <= until => {
                self.now = self.now.max(t);
                let now = self.now;
                self.nodes[i].handle_timeout(now);
                self.drain(i);
                true
            }
            _ => false,
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        // Output of direct calls (node_mut) goes out first.
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        while self.step(until) {}
        self.now = until;
    }

    /// Run until `cond` holds (checked after every step) or `limit` has
    /// passed; whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Net) -> bool) -> bool {
        let until = self.now + limit;
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(until) {
                self.now = until;
                return cond(self);
            }
        }
    }
}

/// Run until every node holds every record; panics after a minute.
pub(crate) fn converged(net: &mut Net) {
    let n = net.nodes.len();
    assert!(
        net.run_until(Duration::from_secs(60), |net| {
            net.nodes.iter().all(|x| x.records().len() == n)
        }),
        "records converge"
    );
}
