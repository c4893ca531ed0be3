//! The member table: every other node this node holds a record of, its
//! state as seen here, and the indexes the protocol samples from.
//!
//! Counts per state are kept as states change, so status queries are O(1).
//! The probe list holds live members (alive or suspect) in a shuffled
//! round-robin order (SWIM's randomised round-robin: every member is probed
//! once per round, in an order peers cannot predict); stale entries are
//! skipped and dropped at the end of each round. In a closed grid the table
//! also keeps the set of admitted members' addresses, the only sources the
//! admission filter reads.

use std::net::SocketAddr;
use std::time::Instant;

use foldhash::fast::FixedState;
use grapevine_crypto::NodeId;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

type HashMap<K, V> = hashbrown::HashMap<K, V, FixedState>;
type HashSet<K> = hashbrown::HashSet<K, FixedState>;

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

impl MemberState {
    /// Alive or suspect: probed, and counted in the grid's size.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
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

/// One member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub state: MemberState,
    /// The incarnation its state refers to.
    pub incarnation: u64,
    pub addr: SocketAddr,
    pub last_heard: Instant,
}

/// Every other member, with counts and sampling indexes.
#[derive(Debug)]
pub(crate) struct Members {
    map: HashMap<NodeId, Member>,
    /// Members per state: alive, suspect, dead, left.
    counts: [usize; 4],
    live: usize,
    probe_list: Vec<NodeId>,
    probe_pos: usize,
    suspects: HashSet<NodeId>,
    /// Closed grids only: addresses of admitted members.
    addrs: Option<HashSet<SocketAddr>>,
    hasher: FixedState,
}

impl Members {
    /// An empty table; `closed` keeps the address set a closed grid needs.
    pub fn new(hasher: FixedState, closed: bool) -> Self {
        Members {
            map: HashMap::with_hasher(hasher),
            counts: [0; 4],
            live: 0,
            probe_list: Vec::new(),
            probe_pos: 0,
            suspects: HashSet::with_hasher(hasher),
            addrs: closed.then(|| HashSet::with_hasher(hasher)),
            hasher,
        }
    }

    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.map.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.map.iter()
    }

    /// Members per state: alive, suspect, dead, left.
    pub fn counts(&self) -> [usize; 4] {
        self.counts
    }

    /// Live members (alive or suspect), this node not included.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Add a member first heard of now, alive at `incarnation`, at a random
    /// place in the probe round.
    pub fn insert(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        incarnation: u64,
        now: Instant,
        rng: &mut SmallRng,
    ) {
        debug_assert!(!self.map.contains_key(&id));
        self.map.insert(
            id,
            Member {
                state: MemberState::Alive,
                incarnation,
                addr,
                last_heard: now,
            },
        );
        if let Some(a) = &mut self.addrs {
            a.insert(addr);
        }
        self.live += 1;
        self.counts[MemberState::Alive as usize] += 1;
        let pos = if self.probe_list.is_empty() {
            0
        } else {
            rng.gen_range(0..=self.probe_list.len())
        };
        self.probe_list.insert(pos, id);
    }

    /// A member's new address (from a newer record).
    pub fn set_addr(&mut self, id: &NodeId, addr: SocketAddr) {
        let Some(m) = self.map.get_mut(id) else {
            return;
        };
        if let Some(a) = &mut self.addrs {
            a.remove(&m.addr);
            a.insert(addr);
        }
        m.addr = addr;
    }

    /// Whether `addr` is an admitted member's (closed grids).
    pub fn is_member_addr(&self, addr: &SocketAddr) -> bool {
        self.addrs.as_ref().is_some_and(|a| a.contains(addr))
    }

    pub fn heard(&mut self, id: &NodeId, now: Instant) {
        if let Some(m) = self.map.get_mut(id) {
            m.last_heard = now;
        }
    }

    /// Set a member's state and incarnation; the previous state, if it is
    /// a member.
    pub fn set_state(
        &mut self,
        id: NodeId,
        to: MemberState,
        incarnation: u64,
    ) -> Option<MemberState> {
        let m = self.map.get_mut(&id)?;
        let from = m.state;
        m.incarnation = incarnation;
        m.state = to;
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
        if from.is_live() && !to.is_live() {
            self.live -= 1;
        } else if !from.is_live() && to.is_live() {
            self.live += 1;
            self.probe_list.push(id);
        }
        if to == MemberState::Suspect {
            self.suspects.insert(id);
        } else {
            self.suspects.remove(&id);
        }
        Some(from)
    }

    /// Up to `k` distinct alive members other than `exclude`, sampled from
    /// the probe list (a few tries per member, so a list with many stale
    /// entries may give fewer).
    pub fn random_live(
        &self,
        k: usize,
        exclude: Option<&NodeId>,
        rng: &mut SmallRng,
    ) -> Vec<(NodeId, SocketAddr)> {
        let mut out = Vec::with_capacity(k);
        if self.probe_list.is_empty() {
            return out;
        }
        let mut tries = 0;
        while out.len() < k && tries < k * 4 + 8 {
            tries += 1;
            let id = self.probe_list[rng.gen_range(0..self.probe_list.len())];
            if Some(&id) == exclude || out.iter().any(|(o, _)| *o == id) {
                continue;
            }
            if let Some(m) = self.map.get(&id) {
                if m.state == MemberState::Alive {
                    out.push((id, m.addr));
                }
            }
        }
        out
    }

    /// The next member to probe in the round, reshuffling at the end of
    /// each round.
    pub fn next_probe_target(&mut self, rng: &mut SmallRng) -> Option<NodeId> {
        for _ in 0..self.probe_list.len().max(1) * 2 {
            if self.probe_pos >= self.probe_list.len() {
                // Drop entries that are no longer live, then reshuffle.
                let map = &self.map;
                let mut seen = HashSet::with_hasher(self.hasher);
                self.probe_list.retain(|id| {
                    map.get(id).is_some_and(|m| m.state.is_live()) && seen.insert(*id)
                });
                self.probe_list.shuffle(rng);
                self.probe_pos = 0;
                if self.probe_list.is_empty() {
                    return None;
                }
            }
            let id = self.probe_list[self.probe_pos];
            self.probe_pos += 1;
            if self.map.get(&id).is_some_and(|m| m.state.is_live()) {
                return Some(id);
            }
        }
        None
    }

    /// A random suspect.
    pub fn random_suspect(&self, rng: &mut SmallRng) -> Option<NodeId> {
        if self.suspects.is_empty() {
            return None;
        }
        let idx = rng.gen_range(0..self.suspects.len());
        self.suspects.iter().nth(idx).copied()
    }

    /// A random member believed dead.
    pub fn random_dead(&self, rng: &mut SmallRng) -> Option<NodeId> {
        let dead: Vec<NodeId> = self
            .map
            .iter()
            .filter(|(_, m)| m.state == MemberState::Dead)
            .map(|(id, _)| *id)
            .collect();
        (!dead.is_empty()).then(|| dead[rng.gen_range(0..dead.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::MemberState::*;
    use crate::swim::testing::{converged, Net};
    use std::time::Duration;

    #[test]
    fn a_record_makes_a_member_and_counts_follow_every_state_change() {
        let mut net = Net::new(3);
        converged(&mut net);
        let (a, b, c) = (net.id(0), net.id(1), net.id(2));
        assert_eq!(net.node(0).state_counts(), (2, 0, 0, 0));
        assert_eq!(net.node(0).state_of(&b), Some(Alive));
        let views = net.node(0).members();
        assert_eq!(views.len(), 2);
        assert!(views.iter().all(|v| v.record.is_some() && v.id != a));
        // Node 2 stops answering: node 0 suspects it, then declares it dead.
        net.down(2);
        assert!(net.run_until(Duration::from_secs(30), |n| {
            n.node(0).state_of(&c) == Some(Dead)
        }));
        assert_eq!(net.node(0).state_counts(), (1, 0, 1, 0));
        assert_eq!(net.node(0).state_of(&b), Some(Alive));
    }

    #[test]
    fn every_live_member_is_probed_once_a_round() {
        let mut net = Net::new(6);
        converged(&mut net);
        let before = net.node(0).stats().probes;
        let pings_before = net.pings_from(0).len();
        // Five probe periods: one round over the five other members.
        net.run_for(Duration::from_secs(5));
        let probes = net.node(0).stats().probes - before;
        assert!((4..=6).contains(&probes), "{probes}");
        let targets: std::collections::HashSet<_> =
            net.pings_from(0)[pings_before..].iter().copied().collect();
        assert!(targets.len() >= 4, "round-robin reaches each: {targets:?}");
    }
}
