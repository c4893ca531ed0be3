//! A deterministic many-node simulation of the membership core on a virtual
//! clock: latency, loss and partitions, no sockets. Used by tests; also a
//! cheap way to explore tunables.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grapevine_crypto::{Identity, LocationRecord, NodeId};
use hashbrown::{HashMap, HashSet};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::swim::{Config, Event, MemberState, Swim};

struct InFlight {
    at: Instant,
    order: u64,
    to: usize,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

/// A simulated network of membership nodes.
#[derive(Debug)]
pub struct SimNet {
    nodes: Vec<Option<Swim>>,
    identities: Vec<Arc<Identity>>,
    addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    start: Instant,
    now: Instant,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    /// One-way latency.
    pub latency: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// When set, datagrams between the two sides are dropped.
    pub partition: Option<HashSet<usize>>,
    rng: SmallRng,
    cfg: Config,
    /// (observer, event) for every state change seen.
    pub events: Vec<(usize, Event)>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight(to {})", self.to)
    }
}

impl SimNet {
    /// An empty network.
    pub fn new(seed: u64, cfg: Config) -> Self {
        let now = Instant::now();
        SimNet {
            nodes: Vec::new(),
            identities: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            start: now,
            now,
            queue: BinaryHeap::new(),
            order: 0,
            latency: Duration::from_millis(1),
            loss: 0.0,
            partition: None,
            rng: SmallRng::seed_from_u64(seed),
            cfg,
            events: Vec::new(),
        }
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.identities[i].node_id()
    }

    /// The core of node `i`, if running.
    pub fn node(&self, i: usize) -> Option<&Swim> {
        self.nodes[i].as_ref()
    }

    fn record(&self, i: usize, seq: u64) -> grapevine_crypto::SignedRecord {
        let mut r = LocationRecord::new(&self.identities[i], vec![self.addrs[i]]);
        r.seq = seq;
        r.nickname = Some(format!("sim-{i}"));
        r.sign(&self.identities[i]).expect("sim record")
    }

    /// Add a node joining through node `seed` (or none for the first).
    pub fn add(&mut self, seed: Option<usize>) -> usize {
        let i = self.nodes.len();
        let mut seed_bytes = [0u8; 32];
        self.rng.fill(&mut seed_bytes);
        self.identities
            .push(Arc::new(Identity::from_seed(seed_bytes)));
        let addr: SocketAddr =
            SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946));
        self.addrs.push(addr);
        self.by_addr.insert(addr, i);
        let rec = self.record(i, 1 + self.elapsed().as_millis() as u64);
        let seeds = seed.map(|s| vec![self.addrs[s]]).unwrap_or_default();
        let rng = SmallRng::seed_from_u64(self.rng.gen());
        self.nodes.push(Some(Swim::new(
            self.identities[i].clone(),
            rec,
            seeds,
            self.cfg.clone(),
            rng,
            self.now,
        )));
        self.drain(i);
        i
    }

    /// Stop node `i` abruptly (no leave).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Restart node `i` with the same identity and a newer record.
    pub fn restart(&mut self, i: usize, seed: usize) {
        let rec = self.record(i, 1_000_000 + self.elapsed().as_millis() as u64);
        let rng = SmallRng::seed_from_u64(self.rng.gen());
        self.nodes[i] = Some(Swim::new(
            self.identities[i].clone(),
            rec,
            vec![self.addrs[seed]],
            self.cfg.clone(),
            rng,
            self.now,
        ));
        self.drain(i);
    }

    /// Give node `i` new seeds (as the node's driver does when host names
    /// resolve).
    pub fn set_seeds(&mut self, i: usize, seeds: &[usize]) {
        let addrs = seeds.iter().map(|&s| self.addrs[s]).collect();
        if let Some(n) = self.nodes[i].as_mut() {
            n.set_seeds(addrs, self.now);
        }
        self.drain(i);
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].as_mut() {
            n.leave(self.now);
        }
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(t) = node.poll_transmit() {
            sends.push(t);
        }
        while let Some(e) = node.poll_event() {
            if matches!(e, Event::StateChanged { .. }) {
                self.events.push((i, e));
            }
        }
        for (to, bytes) in sends {
            let Some(&j) = self.by_addr.get(&to) else {
                continue;
            };
            if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
                continue;
            }
            if let Some(side) = &self.partition {
                if side.contains(&i) != side.contains(&j) {
                    continue;
                }
            }
            let jitter =
                Duration::from_micros(self.rng.gen_range(0..=self.latency.as_micros() as u64 / 2));
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + self.latency + jitter,
                order: self.order,
                to: j,
                from: self.addrs[i],
                bytes,
            }));
        }
    }

    /// Run until `until` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until_or(end, |_| false);
    }

    /// Run until `cond` holds (checked after every step) or `deadline`
    /// passes; returns whether it held.
    pub fn run_until_or(
        &mut self,
        deadline: Instant,
        mut cond: impl FnMut(&SimNet) -> bool,
    ) -> bool {
        loop {
            if cond(self) {
                return true;
            }
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| (n.poll_timeout(), i)))
                .min();
            let next_msg = self.queue.peek().map(|r| r.0.at);
            let t = match (next_timer, next_msg) {
                (Some((a, _)), Some(b)) => a.min(b),
                (Some((a, _)), None) => a,
                (None, Some(b)) => b,
                (None, None) => return cond(self),
            };
            if t > deadline {
                self.now = deadline;
                return cond(self);
            }
            self.now = self.now.max(t);
            if next_msg.is_some_and(|m| m <= t) {
                let Reverse(m) = self.queue.pop().expect("peeked");
                if let Some(n) = self.nodes[m.to].as_mut() {
                    n.handle_datagram(self.now, m.from, &m.bytes);
                    self.drain(m.to);
                }
            } else if let Some((_, i)) = next_timer {
                if let Some(n) = self.nodes[i].as_mut() {
                    n.handle_timeout(self.now);
                    self.drain(i);
                }
            }
        }
    }

    /// Whether every running node holds the records of all `n` nodes.
    pub fn all_hold_records(&self, n: usize) -> bool {
        self.nodes.iter().flatten().all(|x| x.records().len() >= n)
    }

    /// Whether every running node sees node `dead` as `state`.
    pub fn all_see(&self, id: NodeId, state: MemberState) -> bool {
        self.nodes
            .iter()
            .flatten()
            .filter(|x| x.id() != id)
            .all(|x| x.state_of(&id) == Some(state))
    }

    /// Number of times any node declared one of `alive` dead.
    pub fn false_deaths(&self, killed: &HashSet<NodeId>) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::StateChanged { id, to: MemberState::Dead, .. } if !killed.contains(id)))
            .count()
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, seed: u64) -> SimNet {
        let mut net = SimNet::new(seed, Config::new_lan());
        net.add(None);
        for _ in 1..n {
            net.run_for(Duration::from_millis(20));
            net.add(Some(0));
        }
        net
    }

    #[test]
    fn fifty_nodes_converge_and_detect_a_failure() {
        let mut net = grid(50, 1);
        let deadline = net.now() + Duration::from_secs(30);
        assert!(
            net.run_until_or(deadline, |n| n.all_hold_records(50)),
            "records converge"
        );
        net.run_for(Duration::from_secs(20));
        let victim = 17;
        let vid = net.id(victim);
        net.kill(victim);
        let killed_at = net.now();
        let deadline = net.now() + Duration::from_secs(20);
        assert!(
            net.run_until_or(deadline, |n| n.all_see(vid, MemberState::Dead)),
            "death detected"
        );
        assert!(
            net.now() - killed_at < Duration::from_secs(15),
            "{:?}",
            net.now() - killed_at
        );
        let killed: HashSet<NodeId> = [vid].into_iter().collect();
        net.run_for(Duration::from_secs(60));
        assert_eq!(net.false_deaths(&killed), 0);
    }

    #[test]
    fn converges_under_five_percent_loss_without_false_deaths() {
        let mut net = grid(40, 2);
        net.loss = 0.05;
        let deadline = net.now() + Duration::from_secs(60);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(40)));
        net.run_for(Duration::from_secs(180));
        assert_eq!(net.false_deaths(&HashSet::new()), 0);
    }

    #[test]
    fn under_ten_percent_loss_every_view_ends_all_alive() {
        let mut net = grid(40, 7);
        net.loss = 0.10;
        let deadline = net.now() + Duration::from_secs(60);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(40)));
        net.run_for(Duration::from_secs(120));
        // Rare transient verdicts at single observers are refuted; stop the
        // loss and every view must be all-alive within a few periods.
        net.loss = 0.0;
        let ids: Vec<NodeId> = (0..40).map(|i| net.id(i)).collect();
        let deadline = net.now() + Duration::from_secs(30);
        assert!(net.run_until_or(deadline, |n| ids
            .iter()
            .all(|id| n.all_see(*id, MemberState::Alive))));
        // Transient verdicts stay rare: fewer than one per node.
        assert!(
            net.false_deaths(&HashSet::new()) < 40,
            "{}",
            net.false_deaths(&HashSet::new())
        );
    }

    #[test]
    fn partition_heals_and_views_reconverge() {
        let mut net = grid(30, 3);
        let deadline = net.now() + Duration::from_secs(30);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(30)));
        net.partition = Some((0..15).collect());
        net.run_for(Duration::from_secs(60));
        // Each side has declared the other dead.
        assert_eq!(
            net.node(0).unwrap().state_of(&net.id(20)),
            Some(MemberState::Dead)
        );
        net.partition = None;
        // Heal: nodes hear they were declared dead and refute; anti-entropy
        // and probes of refuted members bring everyone back.
        let ids: Vec<NodeId> = (0..30).map(|i| net.id(i)).collect();
        let deadline = net.now() + Duration::from_secs(120);
        let healed = net.run_until_or(deadline, |n| {
            ids.iter().all(|id| n.all_see(*id, MemberState::Alive))
        });
        assert!(healed, "views reconverge after the partition heals");
        assert!(net.all_hold_records(30));
    }

    #[test]
    fn restart_replaces_record_and_revives() {
        let mut net = grid(20, 4);
        let deadline = net.now() + Duration::from_secs(30);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(20)));
        let id5 = net.id(5);
        net.kill(5);
        let deadline = net.now() + Duration::from_secs(30);
        assert!(net.run_until_or(deadline, |n| n.all_see(id5, MemberState::Dead)));
        net.restart(5, 0);
        let deadline = net.now() + Duration::from_secs(30);
        let ok = net.run_until_or(deadline, |n| {
            n.all_see(id5, MemberState::Alive)
                && n.nodes
                    .iter()
                    .flatten()
                    .all(|x| x.records().get(&id5).is_some_and(|r| r.seq() > 1_000_000))
        });
        assert!(
            ok,
            "restarted node's new record replaces the old everywhere"
        );
    }

    #[test]
    fn graceful_leave_is_seen_as_left() {
        let mut net = grid(20, 5);
        let deadline = net.now() + Duration::from_secs(30);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(20)));
        let id3 = net.id(3);
        net.leave(3);
        let deadline = net.now() + Duration::from_secs(10);
        assert!(net.run_until_or(deadline, |n| n
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .all(|(_, x)| x
                .as_ref()
                .is_none_or(|x| x.state_of(&id3) == Some(MemberState::Left)))));
    }

    #[test]
    fn a_node_that_missed_a_leave_learns_it_rather_than_declaring_death() {
        let mut net = grid(20, 8);
        let deadline = net.now() + Duration::from_secs(30);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(20)));
        let id3 = net.id(3);
        // Node 7 is cut off while node 3 leaves, then reconnected.
        net.partition = Some([7].into_iter().collect());
        net.leave(3);
        net.run_for(Duration::from_secs(2));
        net.partition = None;
        for _ in 0..8 {
            net.run_for(Duration::from_secs(1));
            eprintln!(
                "t+ node7 view of 3: {:?} stats {:?}",
                net.node(7).unwrap().state_of(&id3),
                net.node(7).unwrap().stats().forged_liveness
            );
        }
        let deadline = net.now() + Duration::from_secs(30);
        let ok = net.run_until_or(deadline, |n| {
            n.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 3)
                .all(|(_, x)| {
                    x.as_ref()
                        .is_none_or(|x| x.state_of(&id3) == Some(MemberState::Left))
                })
        });
        let views: Vec<Option<MemberState>> = (0..20)
            .map(|i| net.node(i).and_then(|x| x.state_of(&id3)))
            .collect();
        assert!(ok, "node 7 sees the leave: {views:?}");
        // Node 3 is gone; nobody alive was declared dead.
        let gone: HashSet<NodeId> = [id3].into_iter().collect();
        assert_eq!(net.false_deaths(&gone), 0);
    }

    /// Seeds given by host name may resolve only after the node started
    /// (with none): handed in later, the node joins through them at once;
    /// a node already in a grid only keeps them.
    #[test]
    fn seeds_handed_in_later_are_joined_through() {
        let mut net = SimNet::new(7, Config::new_lan());
        net.add(None);
        net.add(None);
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.node(1).unwrap().records().len(), 1, "alone");
        net.set_seeds(1, &[0]);
        let deadline = net.now() + Duration::from_secs(5);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(2)));
        assert!(net.node(1).unwrap().is_joined());
        let sent = net.node(0).unwrap().stats().datagrams_sent;
        net.set_seeds(0, &[1]);
        assert!(net.node(0).unwrap().is_joined(), "already in a grid");
        assert_eq!(
            net.node(0).unwrap().stats().datagrams_sent,
            sent,
            "no join sent"
        );
    }

    #[test]
    fn join_is_retried_until_the_seed_answers() {
        let mut net = SimNet::new(6, Config::new_lan());
        net.add(None);
        net.partition = Some([1].into_iter().collect());
        net.add(Some(0));
        net.run_for(Duration::from_secs(5));
        assert!(!net.node(1).unwrap().is_joined());
        net.partition = None;
        let deadline = net.now() + Duration::from_secs(10);
        assert!(net.run_until_or(deadline, |n| n.all_hold_records(2)));
    }
}
