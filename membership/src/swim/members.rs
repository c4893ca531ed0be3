//! The member table: every other node this node holds a record of, its
//! state as seen here, and the indexes the protocol samples from.
//!
//! Counts per state are kept as states change, so status queries are O(1).
//! The probe list holds live members (alive or suspect) in a shuffled
//! round-robin order (SWIM's randomised round-robin: every member is probed
//! once per round, in an order peers cannot predict); stale entries are
//! skipped and dropped at the end of each round.
//!
//! A member's address is *validated* once it has answered from there (an
//! ack to a ping of ours, whose random sequence number it could only know
//! by receiving the ping, or a datagram echoing a cookie this node issued
//! to that address), or if it is a configured seed's. Until then it is sent
//! nothing but bare pings; `ready` lists the alive, validated members, the
//! only ones gossip, anti-entropy, relayed probes and leave notices go to.
//! A new address (a newer record) must be validated again. The table also
//! maps addresses to the member recorded there (a closed grid reads only
//! those addresses; cookies are held only for them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use grapevine_crypto::NodeId;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

type HashSet<K> = hashbrown::HashSet<K, FixedState>;
use hashbrown::hash_table::{Entry, HashTable};
use std::hash::BuildHasher;

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
    /// The incarnation its state refers to: always one the member signed
    /// (its record's sequence number or a signed alive or leave).
    pub incarnation: u64,
    pub addr: SocketAddr,
    pub last_heard: Instant,
    /// When its state last changed (expiry counts from there).
    pub since: Instant,
    /// Whether `addr` has answered (see the module docs).
    pub validated: bool,
    /// The sequence number of the last ping sent to it, whose ack proves
    /// its address (0: none outstanding).
    pub ping_seq: u32,
    /// Its place in [`Members::ready`] ([`NOT_READY`]: not there). Kept
    /// here rather than in a map beside it: about 60 bytes less per member.
    ready_at: u32,
}

/// [`Member::ready_at`] of a member not in the ready list.
const NOT_READY: u32 = u32::MAX;

/// A member and its id, in [`Members::slots`].
#[derive(Debug, Clone)]
struct Slot {
    id: NodeId,
    m: Member,
}

/// Every other member, with counts and sampling indexes.
///
/// The members sit densely in `slots` (a removal moves the last one into
/// the gap) and the indexes hold places in it, four bytes each, found by
/// the hash of the id or of the address: at 1,000 members this is about
/// 200 bytes a member less than a map from id to member beside an address
/// index and a ready list of ids (issue 17's `swarm` figures).
#[derive(Debug)]
pub(crate) struct Members {
    slots: Vec<Slot>,
    /// Places in `slots`, by the hash of the member's id.
    by_id: HashTable<u32>,
    /// Members per state: alive, suspect, dead, left.
    counts: [usize; 4],
    live: usize,
    probe_list: Vec<NodeId>,
    probe_pos: usize,
    suspects: HashSet<NodeId>,
    /// Places of the alive members whose address is validated, for O(1)
    /// sampling; each member's place in this list is its `ready_at`.
    ready: Vec<u32>,
    /// The member last recorded at each address: places, found by the hash
    /// of their member's address. Every place here is found under its
    /// member's address, and no two members share one.
    by_addr: HashTable<u32>,
    hasher: FixedState,
}

/// A place in `slots` as a `usize`.
fn at(x: u32) -> usize {
    x as usize
}

impl Members {
    /// An empty table.
    pub fn new(hasher: FixedState) -> Self {
        Members {
            slots: Vec::new(),
            by_id: HashTable::new(),
            counts: [0; 4],
            live: 0,
            probe_list: Vec::new(),
            probe_pos: 0,
            suspects: HashSet::with_hasher(hasher),
            ready: Vec::new(),
            by_addr: HashTable::new(),
            hasher,
        }
    }

    /// `id`'s place in `slots`.
    fn place(&self, id: &NodeId) -> Option<u32> {
        let slots = &self.slots;
        self.by_id
            .find(self.hasher.hash_one(id), |&x| {
                slots.get(at(x)).is_some_and(|s| s.id == *id)
            })
            .copied()
    }

    fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        let x = self.place(id)?;
        Some(&mut self.slots[at(x)].m)
    }

    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.place(id).map(|x| &self.slots[at(x)].m)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.slots.iter().map(|s| (&s.id, &s.m))
    }

    /// Members per state: alive, suspect, dead, left.
    pub fn counts(&self) -> [usize; 4] {
        self.counts
    }

    /// Live members (alive or suspect), this node not included.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Alive members with a validated address.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Keep `ready` in step with the state and validation of the member
    /// at place `x`.
    fn sync_ready(&mut self, x: u32) {
        let Some(s) = self.slots.get_mut(at(x)) else {
            return;
        };
        let m = &mut s.m;
        let want = m.state == MemberState::Alive && m.validated;
        let have = m.ready_at != NOT_READY;
        if want && !have {
            // The table holds at most the member cap, far below u32::MAX.
            m.ready_at = u32::try_from(self.ready.len()).unwrap_or(NOT_READY - 1);
            self.ready.push(x);
        } else if !want && have {
            let pos = std::mem::replace(&mut m.ready_at, NOT_READY);
            self.unlist_ready(pos);
        }
    }

    /// Take the entry at `pos` out of `ready`, moving the last one there.
    fn unlist_ready(&mut self, pos: u32) {
        let pos = pos as usize;
        if pos >= self.ready.len() {
            return;
        }
        self.ready.swap_remove(pos);
        if let Some(moved) = self.ready.get(pos).copied() {
            if let Some(s) = self.slots.get_mut(at(moved)) {
                s.m.ready_at = pos as u32;
            }
        }
    }

    /// Add a member first heard of now, alive at `incarnation`, at a random
    /// place in the probe round; `validated` if its address is a seed's.
    pub fn insert(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        incarnation: u64,
        validated: bool,
        now: Instant,
        rng: &mut SmallRng,
    ) {
        debug_assert!(self.place(&id).is_none());
        // The table holds at most the member cap, far below u32::MAX.
        let Ok(x) = u32::try_from(self.slots.len()) else {
            return;
        };
        self.slots.push(Slot {
            id,
            m: Member {
                state: MemberState::Alive,
                incarnation,
                addr,
                last_heard: now,
                since: now,
                validated,
                ping_seq: 0,
                ready_at: NOT_READY,
            },
        });
        let (slots, hasher) = (&self.slots, self.hasher);
        self.by_id.insert_unique(hasher.hash_one(id), x, |&y| {
            slots.get(at(y)).map_or(0, |s| hasher.hash_one(s.id))
        });
        self.index_addr(x, addr);
        self.live += 1;
        self.counts[MemberState::Alive as usize] += 1;
        let pos = if self.probe_list.is_empty() {
            0
        } else {
            rng.gen_range(0..=self.probe_list.len())
        };
        self.probe_list.insert(pos, id);
        self.sync_ready(x);
    }

    /// Point the index entry of `table` that holds place `from` (found by
    /// `hash`) at `to`; take it out if `to` is `None`. Whether it was there.
    fn repoint(table: &mut HashTable<u32>, hash: u64, from: u32, to: Option<u32>) -> bool {
        match table.find_entry(hash, |&y| y == from) {
            Ok(mut o) => {
                match to {
                    Some(to) => *o.get_mut() = to,
                    None => {
                        o.remove();
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Forget a member (expired or evicted); its entries in the probe list
    /// are dropped at the end of the round. Its address, if no other member
    /// is recorded there now.
    pub fn remove(&mut self, id: &NodeId) -> Option<SocketAddr> {
        let x = self.place(id)?;
        let h = self.hasher;
        let m = self.slots.get(at(x))?.m.clone();
        Self::repoint(&mut self.by_id, h.hash_one(id), x, None);
        let freed = Self::repoint(&mut self.by_addr, h.hash_one(m.addr), x, None);
        if m.ready_at != NOT_READY {
            self.unlist_ready(m.ready_at);
        }
        self.counts[m.state as usize] -= 1;
        if m.state.is_live() {
            self.live -= 1;
        }
        self.suspects.remove(id);
        // The last member moves into the gap: its index entries follow.
        let last = u32::try_from(self.slots.len() - 1).unwrap_or(x);
        self.slots.swap_remove(at(x));
        if last != x {
            let moved = &self.slots[at(x)];
            let (mid, maddr, mready) = (moved.id, moved.m.addr, moved.m.ready_at);
            Self::repoint(&mut self.by_id, h.hash_one(mid), last, Some(x));
            Self::repoint(&mut self.by_addr, h.hash_one(maddr), last, Some(x));
            if let Some(r) = self.ready.get_mut(mready as usize) {
                *r = x;
            }
        }
        freed.then_some(m.addr)
    }

    /// A member's address from a newer record: if it moved, it must be
    /// validated again (unless it is a seed's). The old address, if it
    /// moved and no other member is recorded there now.
    pub fn set_addr(&mut self, id: &NodeId, addr: SocketAddr, seed: bool) -> Option<SocketAddr> {
        let x = self.place(id)?;
        let old = self.slots[at(x)].m.addr;
        if old == addr {
            return None;
        }
        // Out of the index under the old address before the address the
        // index hashes changes.
        let freed =
            Self::repoint(&mut self.by_addr, self.hasher.hash_one(old), x, None).then_some(old);
        let m = &mut self.slots[at(x)].m;
        m.addr = addr;
        m.validated = seed;
        m.ping_seq = 0;
        self.index_addr(x, addr);
        self.sync_ready(x);
        freed
    }

    /// The member recorded at `addr`, if any.
    pub fn at_addr(&self, addr: &SocketAddr) -> Option<NodeId> {
        let slots = &self.slots;
        self.by_addr
            .find(self.hasher.hash_one(addr), |&y| {
                slots.get(at(y)).is_some_and(|s| s.m.addr == *addr)
            })
            .and_then(|&y| slots.get(at(y)))
            .map(|s| s.id)
    }

    /// Whether `addr` is a member's recorded address.
    pub fn is_member_addr(&self, addr: &SocketAddr) -> bool {
        self.at_addr(addr).is_some()
    }

    /// Record the member at place `x` (now at `addr`) as the member at
    /// `addr`, in place of any other recorded there.
    fn index_addr(&mut self, x: u32, addr: SocketAddr) {
        let (slots, hasher) = (&self.slots, self.hasher);
        let entry = self.by_addr.entry(
            hasher.hash_one(addr),
            |&y| y == x || slots.get(at(y)).is_some_and(|s| s.m.addr == addr),
            |&y| slots.get(at(y)).map_or(0, |s| hasher.hash_one(s.m.addr)),
        );
        match entry {
            Entry::Occupied(mut o) => *o.get_mut() = x,
            Entry::Vacant(v) => {
                v.insert(x);
            }
        }
    }

    /// `id`'s address answered: it may be sent anything from now on.
    pub fn validate(&mut self, id: &NodeId) {
        if let Some(x) = self.place(id) {
            let m = &mut self.slots[at(x)].m;
            m.validated = true;
            m.ping_seq = 0;
            self.sync_ready(x);
        }
    }

    /// Remember the sequence number of a ping sent to `id`.
    pub fn pinged(&mut self, id: &NodeId, seq: u32) {
        if let Some(m) = self.get_mut(id) {
            m.ping_seq = seq;
        }
    }

    /// A datagram naming `id` as its sender came from `from`: it counts as
    /// heard from `id` only if `from` is its recorded address.
    pub fn heard(&mut self, id: &NodeId, from: SocketAddr, now: Instant) {
        if let Some(m) = self.get_mut(id).filter(|m| m.addr == from) {
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
        now: Instant,
    ) -> Option<MemberState> {
        let x = self.place(&id)?;
        let m = &mut self.slots[at(x)].m;
        let from = m.state;
        m.incarnation = incarnation;
        m.state = to;
        if from != to {
            m.since = now;
        }
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
        self.sync_ready(x);
        Some(from)
    }

    /// The id and address of the member at place `x`.
    fn id_addr(&self, x: u32) -> Option<(NodeId, SocketAddr)> {
        self.slots.get(at(x)).map(|s| (s.id, s.m.addr))
    }

    /// Up to `k` distinct alive members with validated addresses, other
    /// than `exclude`.
    pub fn random_live(
        &self,
        k: usize,
        exclude: Option<&NodeId>,
        rng: &mut SmallRng,
    ) -> Vec<(NodeId, SocketAddr)> {
        let mut out = Vec::with_capacity(k);
        let n = self.ready.len();
        if n == 0 {
            return out;
        }
        if k >= n {
            // All of them, in random order.
            let mut all: Vec<u32> = self.ready.clone();
            all.shuffle(rng);
            return all
                .into_iter()
                .filter_map(|x| self.id_addr(x))
                .filter(|(id, _)| Some(id) != exclude)
                .take(k)
                .collect();
        }
        let mut tries = 0;
        while out.len() < k && tries < k * 4 + 8 {
            tries += 1;
            let Some((id, addr)) = self.id_addr(self.ready[rng.gen_range(0..n)]) else {
                continue;
            };
            if Some(&id) == exclude || out.iter().any(|(o, _)| *o == id) {
                continue;
            }
            out.push((id, addr));
        }
        out
    }

    /// The next member to probe in the round, reshuffling at the end of
    /// each round.
    pub fn next_probe_target(&mut self, rng: &mut SmallRng) -> Option<NodeId> {
        for _ in 0..self.probe_list.len().max(1) * 2 {
            if self.probe_pos >= self.probe_list.len() {
                // Drop entries that are no longer live, then reshuffle.
                let mut list = std::mem::take(&mut self.probe_list);
                let mut seen = HashSet::with_hasher(self.hasher);
                list.retain(|id| {
                    self.get(id).is_some_and(|m| m.state.is_live()) && seen.insert(*id)
                });
                list.shuffle(rng);
                self.probe_list = list;
                self.probe_pos = 0;
                if self.probe_list.is_empty() {
                    return None;
                }
            }
            let id = self.probe_list[self.probe_pos];
            self.probe_pos += 1;
            if self.get(&id).is_some_and(|m| m.state.is_live()) {
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

    /// A random member believed dead, or one that left less than
    /// `left_window` ago (it may have restarted without our hearing).
    pub fn random_reconnect(
        &self,
        now: Instant,
        left_window: Duration,
        rng: &mut SmallRng,
    ) -> Option<NodeId> {
        let gone: Vec<NodeId> = self
            .iter()
            .filter(|(_, m)| match m.state {
                MemberState::Dead => true,
                MemberState::Left => now.saturating_duration_since(m.since) < left_window,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        (!gone.is_empty()).then(|| gone[rng.gen_range(0..gone.len())])
    }

    /// Dead members declared more than `dead_after` ago and departed ones
    /// that left more than `left_after` ago.
    pub fn expired(&self, now: Instant, dead_after: Duration, left_after: Duration) -> Vec<NodeId> {
        self.iter()
            .filter(|(_, m)| {
                let age = now.saturating_duration_since(m.since);
                match m.state {
                    MemberState::Dead => age >= dead_after,
                    MemberState::Left => age >= left_after,
                    _ => false,
                }
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Up to `k` members to make room with, in order: departed or dead
    /// (longest gone first), then members whose address never answered
    /// (longest known first). Members that answered are never chosen.
    /// One pass over the table and a partial sort: O(n) for any `k`.
    pub fn evictable(&self, k: usize) -> Vec<NodeId> {
        if k == 0 {
            return Vec::new();
        }
        let mut gone: Vec<(bool, Instant, NodeId)> = self
            .iter()
            .filter(|(_, m)| !m.state.is_live() || !m.validated)
            .map(|(id, m)| (m.state.is_live(), m.since, *id))
            .collect();
        if gone.len() > k {
            gone.select_nth_unstable(k - 1);
            gone.truncate(k);
        }
        gone.sort_unstable();
        gone.into_iter().map(|(_, _, id)| id).collect()
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

    /// The id index, the address index and the ready list against a plain
    /// model, through random inserts, moves, state changes and removals
    /// (each removal moves the last member into the gap): every member is
    /// found by its id, the member at an address is the last one recorded
    /// there that still is, and `ready` holds exactly the alive, validated
    /// members.
    #[test]
    fn the_address_index_and_ready_list_follow_a_model_through_random_changes() {
        use super::{Members, NOT_READY};
        use foldhash::fast::FixedState;
        use grapevine_crypto::NodeId;
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        use std::collections::HashMap;
        use std::net::SocketAddr;
        let mut rng = SmallRng::seed_from_u64(7);
        let mut t = Members::new(FixedState::with_seed(3));
        let mut model: HashMap<SocketAddr, NodeId> = HashMap::new();
        let mut present = std::collections::HashSet::new();
        let now = crate::testing::epoch();
        let addr = |i: u8| SocketAddr::from(([10, 0, 0, i % 6], 7000 + u16::from(i % 2)));
        for step in 0..4000u32 {
            let id = NodeId([rng.gen_range(0..24u8); 32]);
            let a = addr(rng.gen());
            match rng.gen_range(0..5) {
                0 | 1 if t.get(&id).is_none() => {
                    t.insert(id, a, 1, rng.gen(), now, &mut rng);
                    model.insert(a, id);
                    present.insert(id);
                }
                0 | 1 => {
                    let old = t.get(&id).map(|m| m.addr).expect("member");
                    let freed = t.set_addr(&id, a, false);
                    if old != a {
                        model.insert(a, id);
                        let was = model.get(&old) == Some(&id);
                        assert_eq!(freed.is_some(), was, "step {step}");
                        if was {
                            model.remove(&old);
                        }
                    }
                }
                2 => {
                    if let Some(old) = t.get(&id).map(|m| m.addr) {
                        let was = model.get(&old) == Some(&id);
                        assert_eq!(t.remove(&id), was.then_some(old), "step {step}");
                        present.remove(&id);
                        if was {
                            model.remove(&old);
                        }
                    }
                }
                3 => {
                    let to = [Alive, Suspect, Dead, Left][rng.gen_range(0..4)];
                    t.set_state(id, to, 2, now);
                }
                _ => t.validate(&id),
            }
            for i in 0..24u8 {
                let id = NodeId([i; 32]);
                assert_eq!(t.get(&id).is_some(), present.contains(&id), "step {step}");
                if let Some(x) = t.place(&id) {
                    assert_eq!(t.slots[x as usize].id, id, "step {step}");
                }
            }
            assert_eq!(t.iter().count(), present.len(), "step {step}");
            for i in 0..12 {
                let a = addr(i);
                assert_eq!(t.at_addr(&a), model.get(&a).copied(), "step {step}");
            }
            for (pos, x) in t.ready.iter().enumerate() {
                let m = &t.slots[*x as usize].m;
                assert_eq!(m.ready_at as usize, pos, "step {step}");
                assert!(m.state == Alive && m.validated, "step {step}");
            }
            let want = t
                .iter()
                .filter(|(_, m)| m.state == Alive && m.validated)
                .count();
            assert_eq!(t.ready(), want, "step {step}");
            assert!(t
                .iter()
                .all(|(_, m)| (m.ready_at == NOT_READY) != (m.state == Alive && m.validated)));
        }
    }
}
