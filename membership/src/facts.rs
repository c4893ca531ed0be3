//! Signed facts about members' liveness, and the digests that let
//! anti-entropy find any fact a node missed.
//!
//! A node says two things about itself with its key: "I am alive at
//! incarnation *i*" (a refutation) and "I left at incarnation *i*". Its
//! record is a third: a record with sequence number *s* says "alive at
//! *s*". Facts are ranked by `(incarnation, left)`: a leave outranks an
//! alive at the same incarnation, and any statement at a higher incarnation
//! outranks both. For each member a node keeps the highest fact it has
//! verified, unless the member's record says as much (an alive at or below
//! the record's sequence number, a leave below it: the record is newer).
//!
//! The set is summarised exactly as the record store is: each fact
//! contributes 64 bits of `BLAKE3("fact" || id || incarnation || left)` to
//! the XOR of its bucket (the id's first byte) and of the root, so two nodes
//! with the same facts have the same root and differing buckets say where to
//! look. Unsigned opinions (`Suspect`, `Dead`) are never facts: they stay
//! local to the node that holds them and never enter a digest, so no peer
//! can make another node's digest differ without a signature.

use std::collections::BTreeMap;

use grapevine_crypto::NodeId;

use crate::wire::{liveness_message, prefix, Update, BUCKETS};

/// A statement a node signed about its own liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact {
    /// The incarnation it speaks for.
    pub incarnation: u64,
    /// A leave (`true`) or an alive (`false`).
    pub left: bool,
    /// The node's signature over `liveness_message`.
    pub sig: [u8; 64],
}

impl Fact {
    /// The fact an `Alive` or `Left` update states, with the node it is
    /// about; `None` for other updates.
    pub fn of_update(u: &Update) -> Option<(NodeId, Fact)> {
        match *u {
            Update::Alive {
                id,
                incarnation,
                sig,
            } => Some((
                id,
                Fact {
                    incarnation,
                    left: false,
                    sig,
                },
            )),
            Update::Left {
                id,
                incarnation,
                sig,
            } => Some((
                id,
                Fact {
                    incarnation,
                    left: true,
                    sig,
                },
            )),
            _ => None,
        }
    }

    /// The update that carries this fact about `id`.
    pub fn update(&self, id: NodeId) -> Update {
        let (incarnation, sig) = (self.incarnation, self.sig);
        if self.left {
            Update::Left {
                id,
                incarnation,
                sig,
            }
        } else {
            Update::Alive {
                id,
                incarnation,
                sig,
            }
        }
    }

    /// Order of precedence: higher incarnations first, then a leave over an
    /// alive.
    pub fn rank(&self) -> (u64, bool) {
        (self.incarnation, self.left)
    }

    /// Whether a record with sequence number `seq` says as much (it is an
    /// alive signed at `seq`).
    pub fn implied_by_record(&self, seq: u64) -> bool {
        self.rank() <= (seq, false)
    }

    /// Whether `id` signed it.
    pub fn verify(&self, id: &NodeId) -> bool {
        let kind = if self.left { "left" } else { "alive" };
        id.verify(&liveness_message(kind, id, self.incarnation), &self.sig)
            .is_ok()
    }
}

fn fact_hash(id: &NodeId, f: &Fact) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"fact");
    h.update(&id.0);
    h.update(&f.incarnation.to_le_bytes());
    h.update(&[f.left as u8]);
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The highest verified fact per node, with digests.
#[derive(Debug)]
pub struct FactSet {
    /// Ordered by id, so a bucket (first byte) is a range.
    facts: BTreeMap<NodeId, Fact>,
    buckets: Vec<u64>,
    root: u64,
}

impl Default for FactSet {
    fn default() -> Self {
        FactSet {
            facts: BTreeMap::new(),
            buckets: vec![0; BUCKETS],
            root: 0,
        }
    }
}

impl FactSet {
    /// The fact held about `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Fact> {
        self.facts.get(id)
    }

    /// The fact held about the node whose id starts with `p`.
    pub fn get_by_prefix(&self, p: &[u8; 8]) -> Option<(NodeId, &Fact)> {
        let mut lo = [0u8; 32];
        lo[..8].copy_from_slice(p);
        self.facts
            .range(NodeId(lo)..)
            .next()
            .filter(|(id, _)| prefix(id) == *p)
            .map(|(id, f)| (*id, f))
    }

    /// Facts held.
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    fn toggle(&mut self, id: &NodeId, f: &Fact) {
        let h = fact_hash(id, f);
        self.buckets[id.0[0] as usize] ^= h;
        self.root ^= h;
    }

    /// Hold `fact` about `id` if it outranks the one held; whether it did.
    /// The caller has verified it.
    pub fn insert(&mut self, id: NodeId, fact: Fact) -> bool {
        if let Some(old) = self.facts.get(&id).copied() {
            if old.rank() >= fact.rank() {
                return false;
            }
            self.toggle(&id, &old);
        }
        self.toggle(&id, &fact);
        self.facts.insert(id, fact);
        true
    }

    /// Forget the fact about `id` (the member is forgotten); the fact.
    pub fn remove(&mut self, id: &NodeId) -> Option<Fact> {
        let f = self.facts.remove(id)?;
        self.toggle(id, &f);
        Some(f)
    }

    /// Forget the fact about `id` if a record with sequence number `seq`
    /// says as much.
    pub fn record_seen(&mut self, id: &NodeId, seq: u64) {
        if let Some(f) = self.facts.get(id).copied() {
            if f.implied_by_record(seq) {
                self.toggle(id, &f);
                self.facts.remove(id);
            }
        }
    }

    /// XOR of all fact hashes.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Per-bucket hashes truncated to 32 bits, for the wire.
    pub fn bucket_hashes(&self) -> Vec<u32> {
        self.buckets.iter().map(|h| *h as u32).collect()
    }

    /// (prefix, incarnation, left) of every fact in `bucket`.
    pub fn bucket_entries(&self, bucket: u8) -> Vec<([u8; 8], u64, bool)> {
        let mut lo = [0u8; 32];
        lo[0] = bucket;
        self.facts
            .range(NodeId(lo)..)
            .take_while(|(id, _)| id.0[0] == bucket)
            .map(|(id, f)| (prefix(id), f.incarnation, f.left))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(incarnation: u64, left: bool) -> Fact {
        Fact {
            incarnation,
            left,
            sig: [0; 64],
        }
    }

    fn id(a: u8, b: u8) -> NodeId {
        let mut x = [b; 32];
        x[0] = a;
        NodeId(x)
    }

    #[test]
    fn only_higher_ranked_facts_replace_held_ones() {
        let mut s = FactSet::default();
        assert!(s.insert(id(1, 1), fact(5, false)));
        assert!(!s.insert(id(1, 1), fact(5, false)));
        assert!(!s.insert(id(1, 1), fact(4, true)));
        // A leave outranks an alive at the same incarnation, and is itself
        // outranked by any later statement (a restart).
        assert!(s.insert(id(1, 1), fact(5, true)));
        assert!(s.insert(id(1, 1), fact(6, false)));
        assert_eq!(s.get(&id(1, 1)).map(|f| f.rank()), Some((6, false)));
        // A record at or above an alive says as much; a leave outranks a
        // record of the same sequence number.
        s.record_seen(&id(1, 1), 5);
        assert_eq!(s.len(), 1);
        s.record_seen(&id(1, 1), 6);
        assert!(s.is_empty());
        s.insert(id(2, 2), fact(7, true));
        s.record_seen(&id(2, 2), 7);
        assert_eq!(s.len(), 1);
        s.record_seen(&id(2, 2), 8);
        assert!(s.is_empty());
    }

    #[test]
    fn digests_match_iff_same_facts_and_point_at_the_bucket() {
        let mut a = FactSet::default();
        let mut b = FactSet::default();
        for i in 0..50u8 {
            a.insert(id(i, i), fact(i as u64, i % 3 == 0));
        }
        for i in (0..50u8).rev() {
            b.insert(id(i, i), fact(i as u64, i % 3 == 0));
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.bucket_hashes(), b.bucket_hashes());
        b.insert(id(9, 9), fact(10, false));
        assert_ne!(a.root(), b.root());
        let differing: Vec<usize> = (0..BUCKETS)
            .filter(|&i| a.bucket_hashes()[i] != b.bucket_hashes()[i])
            .collect();
        assert_eq!(differing, vec![9]);
        assert_eq!(b.bucket_entries(9), vec![(prefix(&id(9, 9)), 10, false)]);
        let (found, f) = b.get_by_prefix(&prefix(&id(9, 9))).unwrap();
        assert_eq!((found, f.incarnation), (id(9, 9), 10));
        assert!(b.get_by_prefix(&[9, 1, 1, 1, 1, 1, 1, 1]).is_none());
        // Removing brings the roots back together.
        a.insert(id(9, 9), fact(10, false));
        assert_eq!(a.root(), b.root());
        a.record_seen(&id(9, 9), 10);
        b.record_seen(&id(9, 9), 10);
        assert_eq!(a.root(), b.root());
        assert!(a.bucket_entries(9).is_empty());
    }

    #[test]
    fn signatures_are_checked_against_the_kind() {
        let key = grapevine_crypto::Identity::generate_with(&mut grapevine_crypto::testing::rng(3));
        let me = key.node_id();
        let sig = key.sign(&liveness_message("left", &me, 4));
        let f = fact(4, true);
        assert!(Fact { sig, ..f }.verify(&me));
        // The same signature does not make an alive, or another incarnation.
        assert!(!Fact {
            sig,
            left: false,
            ..f
        }
        .verify(&me));
        assert!(!Fact {
            sig,
            incarnation: 5,
            ..f
        }
        .verify(&me));
        let u = Fact { sig, ..f }.update(me);
        assert_eq!(Fact::of_update(&u), Some((me, Fact { sig, ..f })));
    }
}
