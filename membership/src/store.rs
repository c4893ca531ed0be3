//! The set of verified location records a node holds, with the digests
//! anti-entropy compares.
//!
//! Each held record contributes `h(id, seq)` (64 bits of BLAKE3) to the XOR
//! of its bucket (the id's first byte) and to the root. XOR makes every
//! update O(1): replacing a record XORs the old hash out and the new one in.
//! Two nodes holding the same records at the same sequence numbers have the
//! same root; where roots differ, bucket hashes say where to look.
//!
//! Records are checked cheaply first ([`UnverifiedRecord::parse`]); a record
//! whose sequence number is not newer than the one held is counted and
//! dropped without a signature check, so relayed duplicates cost almost
//! nothing. New records are verified, in batches where several arrive
//! together.
//!
//! The store is pure like the rest of the core: a closed grid's admission
//! certificates are checked against the Unix time the caller passes in.

use grapevine_crypto::{GridId, NodeId, RecordError, SignedRecord, UnverifiedRecord};
use std::collections::BTreeMap;

use hashbrown::HashMap;

use crate::tombstone::Tombstones;
use crate::wire::{prefix, BUCKETS};

/// What happened to an offered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Verified and stored; it is new or newer than what was held.
    Accepted(SignedRecord),
    /// A record with the same sequence number is already held.
    Duplicate,
    /// An older sequence number than the one held (or than a forgotten
    /// member's tombstone).
    Stale,
    /// Invalid: forged, malformed or oversized.
    Rejected(RecordError),
    /// Validly signed, but a closed grid's record without a valid admission.
    NotAdmitted,
    /// Issued further ahead of the grid's time than the allowance: held
    /// back (not stored; offered again later, it may be accepted then).
    Ahead,
    /// A verified record of a new node while the store is full (the
    /// caller may make room and offer it again).
    Full(SignedRecord),
    /// A verified record of this node's own id, newer than (or different
    /// from, at the same sequence number) the one it signed last: a
    /// previous life's (a clock once ahead, a directory restored from a
    /// backup). Not stored; this node must sign again above it.
    Own(SignedRecord),
}

/// Counters of offered records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Records accepted.
    pub accepted: u64,
    /// Duplicates dropped before verification.
    pub duplicate: u64,
    /// Stale records dropped before verification.
    pub stale: u64,
    /// Records rejected as forged or malformed.
    pub rejected: u64,
    /// Records of a closed grid ignored for want of a valid admission.
    pub unadmitted: u64,
    /// Records held back: issued too far ahead of the grid's time.
    pub ahead: u64,
    /// Records of new nodes refused because the store was full.
    pub over_cap: u64,
    /// Stale copies of forgotten members' records (counted in `stale` too).
    pub tombstoned: u64,
}

/// What an offer is checked against besides the records held.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Unix seconds: admission certificates are checked at this time.
    pub unix_now: u64,
    /// Records issued after this (Unix seconds) are held back.
    pub max_issued_at: u64,
    /// Records of new nodes that may still be stored.
    pub room: usize,
    /// Forgotten members: stale copies of their records are refused.
    pub tombstones: Option<&'a Tombstones>,
}

impl Limits<'_> {
    /// No limit but the admission time.
    pub fn at(unix_now: u64) -> Self {
        Limits {
            unix_now,
            max_issued_at: u64::MAX,
            room: usize::MAX,
            tombstones: None,
        }
    }
}

/// Verified records by node id.
#[derive(Debug)]
pub struct RecordStore {
    /// Ordered by id, so a bucket (first byte) is a range.
    /// (A record is found by its id's first 8 bytes with a range of this
    /// map: no index beside it, which cost 80 bytes a member at 1,000.)
    records: BTreeMap<NodeId, SignedRecord>,
    buckets: Vec<u64>,
    root: u64,
    stats: StoreStats,
    grid: Option<GridId>,
    /// This node's own id, once its record is stored.
    own: Option<NodeId>,
}

impl Default for RecordStore {
    fn default() -> Self {
        RecordStore {
            records: BTreeMap::new(),
            buckets: vec![0; BUCKETS],
            root: 0,
            stats: StoreStats::default(),
            grid: None,
            own: None,
        }
    }
}

impl RecordStore {
    /// A store for a closed grid: records without a valid admission
    /// certificate for `grid` are ignored.
    pub fn closed(grid: GridId) -> Self {
        RecordStore {
            grid: Some(grid),
            ..RecordStore::default()
        }
    }
}

fn entry_hash(id: &NodeId, seq: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&id.0);
    h.update(&seq.to_le_bytes());
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A record that passed the cheap checks and waits for its signature's.
struct Candidate<'b> {
    index: usize,
    record: UnverifiedRecord<'b>,
    own: bool,
}

impl RecordStore {
    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record of `id`, if held.
    pub fn get(&self, id: &NodeId) -> Option<&SignedRecord> {
        self.records.get(id)
    }

    /// The record whose id starts with `p`, if held (of several, the
    /// lowest id: only ids ground to share 64 bits can collide).
    pub fn get_by_prefix(&self, p: &[u8; 8]) -> Option<&SignedRecord> {
        let mut lo = [0u8; 32];
        lo[..8].copy_from_slice(p);
        self.records
            .range(NodeId(lo)..)
            .next()
            .filter(|(id, _)| prefix(id) == *p)
            .map(|(_, r)| r)
    }

    /// All records.
    pub fn iter(&self) -> impl Iterator<Item = &SignedRecord> {
        self.records.values()
    }

    /// Counters so far.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// XOR of all entry hashes.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Per-bucket hashes truncated to 32 bits, for the wire.
    pub fn bucket_hashes(&self) -> Vec<u32> {
        self.buckets.iter().map(|h| *h as u32).collect()
    }

    /// (prefix, seq) of every record in `bucket`.
    pub fn bucket_entries(&self, bucket: u8) -> Vec<([u8; 8], u64)> {
        let mut lo = [0u8; 32];
        lo[0] = bucket;
        let lo = NodeId(lo);
        self.records
            .range(lo..)
            .take_while(|(id, _)| id.0[0] == bucket)
            .map(|(id, r)| (prefix(id), r.seq()))
            .collect()
    }

    fn toggle(&mut self, id: &NodeId, seq: u64) {
        let h = entry_hash(id, seq);
        self.buckets[id.0[0] as usize] ^= h;
        self.root ^= h;
    }

    fn put(&mut self, rec: SignedRecord) {
        let id = rec.node_id();
        if let Some(old) = self.records.get(&id).map(|r| r.seq()) {
            self.toggle(&id, old);
        }
        self.toggle(&id, rec.seq());
        self.records.insert(id, rec);
    }

    /// Store a record this node signed itself (already trusted).
    pub fn insert_own(&mut self, rec: SignedRecord) {
        self.own = Some(rec.node_id());
        self.put(rec);
    }

    /// Forget the record of `id` (the member expired); the record it was.
    pub fn remove(&mut self, id: &NodeId) -> Option<SignedRecord> {
        let rec = self.records.remove(id)?;
        self.toggle(id, rec.seq());
        Some(rec)
    }

    /// The verdict for a record that needs no signature check, if any:
    /// compared with what is held, a tombstone, the grid's time.
    fn cheap_verdict(
        &mut self,
        id: &NodeId,
        seq: u64,
        issued_at: u64,
        bytes: &[u8],
        lim: &Limits,
    ) -> Option<Offer> {
        let held = self.records.get(id);
        if Some(*id) == self.own {
            let held = held.expect("own record held");
            return if held.seq() > seq {
                self.stats.stale += 1;
                Some(Offer::Stale)
            } else if held.seq() == seq && held.bytes() == bytes {
                self.stats.duplicate += 1;
                Some(Offer::Duplicate)
            } else {
                None
            };
        }
        match held {
            Some(h) if h.seq() == seq => {
                self.stats.duplicate += 1;
                return Some(Offer::Duplicate);
            }
            Some(h) if h.seq() > seq => {
                self.stats.stale += 1;
                return Some(Offer::Stale);
            }
            _ => {}
        }
        if lim.tombstones.is_some_and(|t| t.blocks(id, seq)) {
            self.stats.stale += 1;
            self.stats.tombstoned += 1;
            return Some(Offer::Stale);
        }
        if issued_at > lim.max_issued_at {
            self.stats.ahead += 1;
            return Some(Offer::Ahead);
        }
        None
    }

    /// Offer one record received from anyone, checked against `lim`.
    pub fn offer(&mut self, bytes: &[u8], lim: &Limits) -> Offer {
        self.offer_many(&[bytes], lim)
            .pop()
            .expect("one verdict per record")
    }

    /// Offer a record whose signature was verified already (a
    /// [`SignedRecord`] can only be made by verifying or by signing): it
    /// is checked as [`RecordStore::offer`] checks, but its signature is
    /// not checked again.
    pub fn offer_verified(&mut self, rec: SignedRecord, lim: &Limits) -> Offer {
        let (id, r) = (rec.node_id(), rec.record());
        if let Some(v) = self.cheap_verdict(&id, r.seq, r.issued_at, rec.bytes(), lim) {
            return v;
        }
        if Some(id) == self.own {
            return Offer::Own(rec);
        }
        let mut room = lim.room;
        self.admit(rec, lim.unix_now, &mut room)
    }

    /// Store a verified record that is newer than what is held, if a
    /// closed grid admits it and, for a new node, there is room.
    fn admit(&mut self, rec: SignedRecord, unix_now: u64, room: &mut usize) -> Offer {
        if let Some(g) = &self.grid {
            let admitted = rec
                .record()
                .admission
                .as_deref()
                .ok_or(grapevine_crypto::AdmissionError::Missing)
                .and_then(|a| a.verify(g, &rec.node_id(), unix_now));
            if admitted.is_err() {
                self.stats.unadmitted += 1;
                return Offer::NotAdmitted;
            }
        }
        if !self.records.contains_key(&rec.node_id()) {
            if *room == 0 {
                self.stats.over_cap += 1;
                return Offer::Full(rec);
            }
            *room -= 1;
        }
        self.stats.accepted += 1;
        self.put(rec.clone());
        Offer::Accepted(rec)
    }

    /// Offer several records; new ones are verified as a batch. Returns one
    /// verdict per input, in order. Checked against `lim` as
    /// [`RecordStore::offer`].
    ///
    /// Records are told apart by their signatures, not by what they claim:
    /// every record that passes the cheap checks is verified (copies of the
    /// same bytes once), and only then is the newest verified one of each
    /// node kept, so a forged record claiming a higher sequence number
    /// cannot hide a genuine one that arrived with it.
    pub fn offer_many(&mut self, batch: &[&[u8]], lim: &Limits) -> Vec<Offer> {
        let mut verdicts: Vec<Option<Offer>> = vec![None; batch.len()];
        let mut candidates: Vec<Candidate> = Vec::new();
        // Identical bytes are verified once: (id, seq, signature) -> index.
        let mut copies: HashMap<(NodeId, u64, [u8; 64]), usize> = HashMap::new();
        for (i, b) in batch.iter().enumerate() {
            let parsed = match UnverifiedRecord::parse(b) {
                Ok(p) => p,
                Err(e) => {
                    self.stats.rejected += 1;
                    verdicts[i] = Some(Offer::Rejected(e));
                    continue;
                }
            };
            let (id, seq, issued_at) = {
                let r = parsed.record();
                (r.node_id, r.seq, r.issued_at)
            };
            if let Some(v) = self.cheap_verdict(&id, seq, issued_at, b, lim) {
                verdicts[i] = Some(v);
                continue;
            }
            let sig = signature_of(b);
            if copies.insert((id, seq, sig), i).is_some() {
                self.stats.duplicate += 1;
                verdicts[i] = Some(Offer::Duplicate);
                continue;
            }
            candidates.push(Candidate {
                index: i,
                record: parsed,
                own: Some(id) == self.own,
            });
        }
        let meta: Vec<(usize, bool)> = candidates.iter().map(|c| (c.index, c.own)).collect();
        let results =
            UnverifiedRecord::verify_batch(candidates.into_iter().map(|c| c.record).collect());
        // The newest verified sequence number of each node in the batch.
        let mut newest: HashMap<NodeId, u64> = HashMap::new();
        for rec in results.iter().flatten() {
            let e = newest.entry(rec.node_id()).or_insert(0);
            *e = (*e).max(rec.seq());
        }
        let mut room = lim.room;
        for ((i, own), r) in meta.into_iter().zip(results) {
            verdicts[i] = Some(match r {
                Err(e) => {
                    self.stats.rejected += 1;
                    Offer::Rejected(e)
                }
                Ok(rec) if newest.get(&rec.node_id()).is_some_and(|n| *n > rec.seq()) => {
                    self.stats.stale += 1;
                    Offer::Stale
                }
                Ok(rec) if own => Offer::Own(rec),
                // The same node and number signed twice: the first wins.
                Ok(rec)
                    if self
                        .records
                        .get(&rec.node_id())
                        .is_some_and(|h| h.seq() >= rec.seq()) =>
                {
                    self.stats.duplicate += 1;
                    Offer::Duplicate
                }
                Ok(rec) => self.admit(rec, lim.unix_now, &mut room),
            });
        }
        verdicts
            .into_iter()
            .map(|v| v.expect("every input has a verdict"))
            .collect()
    }
}

/// The last 64 bytes of a record: its signature (a record that parsed is
/// longer than that).
fn signature_of(bytes: &[u8]) -> [u8; 64] {
    let mut sig = [0u8; 64];
    if let Some(tail) = bytes.len().checked_sub(64).map(|at| &bytes[at..]) {
        sig.copy_from_slice(tail);
    }
    sig
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::prefix;
    use grapevine_crypto::testing::{record_for, rng};
    use grapevine_crypto::Identity;

    fn signed(id: &Identity, seq: u64) -> SignedRecord {
        let mut r = record_for(id, "127.0.0.1:1");
        r.seq = seq;
        r.sign(id).unwrap()
    }

    #[test]
    fn newer_replaces_older_and_stale_or_forged_are_dropped() {
        let id = Identity::generate_with(&mut rng(1));
        let mut s = RecordStore::default();
        assert!(matches!(
            s.offer(signed(&id, 2).bytes(), &Limits::at(0)),
            Offer::Accepted(_)
        ));
        assert_eq!(
            s.offer(signed(&id, 2).bytes(), &Limits::at(0)),
            Offer::Duplicate
        );
        assert_eq!(
            s.offer(signed(&id, 1).bytes(), &Limits::at(0)),
            Offer::Stale
        );
        assert!(matches!(
            s.offer(signed(&id, 5).bytes(), &Limits::at(0)),
            Offer::Accepted(_)
        ));
        assert_eq!(s.get(&id.node_id()).unwrap().seq(), 5);
        let mut forged = signed(&id, 9).bytes().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert!(matches!(
            s.offer(&forged, &Limits::at(0)),
            Offer::Rejected(RecordError::BadSignature)
        ));
        assert_eq!(s.get(&id.node_id()).unwrap().seq(), 5);
        assert!(matches!(
            s.offer(b"junk", &Limits::at(0)),
            Offer::Rejected(_)
        ));
        let st = s.stats();
        assert_eq!(
            (st.accepted, st.duplicate, st.stale, st.rejected),
            (2, 1, 1, 2)
        );
    }

    #[test]
    fn digests_match_iff_same_records_and_are_order_independent() {
        let ids: Vec<_> = (0..20)
            .map(|i| Identity::generate_with(&mut rng(i)))
            .collect();
        let mut a = RecordStore::default();
        let mut b = RecordStore::default();
        for id in &ids {
            a.offer(signed(id, 1).bytes(), &Limits::at(0));
        }
        for id in ids.iter().rev() {
            b.offer(signed(id, 1).bytes(), &Limits::at(0));
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.bucket_hashes(), b.bucket_hashes());
        b.offer(signed(&ids[3], 2).bytes(), &Limits::at(0));
        assert_ne!(a.root(), b.root());
        let differing: Vec<usize> = (0..BUCKETS)
            .filter(|i| a.bucket_hashes()[*i] != b.bucket_hashes()[*i])
            .collect();
        assert_eq!(differing, vec![ids[3].node_id().0[0] as usize]);
        a.offer(signed(&ids[3], 2).bytes(), &Limits::at(0));
        assert_eq!(a.root(), b.root());
        let e = a.bucket_entries(ids[3].node_id().0[0]);
        assert!(e.contains(&(prefix(&ids[3].node_id()), 2)));
        assert_eq!(
            a.get_by_prefix(&prefix(&ids[3].node_id())).unwrap().seq(),
            2
        );
    }

    /// Sync names records by their ids' first 8 bytes: each held record is
    /// found by its prefix, a prefix between two held ids or past the last
    /// finds nothing, and a removed record is no longer found.
    #[test]
    fn records_are_found_by_prefix_and_nothing_else_is() {
        let ids: Vec<_> = (0..40)
            .map(|i| Identity::generate_with(&mut rng(300 + i)))
            .collect();
        let mut s = RecordStore::default();
        for id in &ids {
            s.offer(signed(id, 7).bytes(), &Limits::at(0));
        }
        for id in &ids {
            let got = s.get_by_prefix(&prefix(&id.node_id())).unwrap();
            assert_eq!(got.node_id(), id.node_id());
        }
        let mut held: Vec<[u8; 8]> = ids.iter().map(|i| prefix(&i.node_id())).collect();
        held.sort();
        for p in &held {
            // The prefix just above a held one (not held itself).
            let next = (u64::from_be_bytes(*p) + 1).to_be_bytes();
            if !held.contains(&next) {
                assert!(s.get_by_prefix(&next).is_none());
            }
        }
        assert!(s.get_by_prefix(&[0xff; 8]).is_none());
        assert!(s.get_by_prefix(&[0; 8]).is_none());
        s.remove(&ids[5].node_id());
        assert!(s.get_by_prefix(&prefix(&ids[5].node_id())).is_none());
        assert!(s.get_by_prefix(&prefix(&ids[6].node_id())).is_some());
    }

    #[test]
    fn batch_gives_per_record_verdicts() {
        let ids: Vec<_> = (0..6)
            .map(|i| Identity::generate_with(&mut rng(100 + i)))
            .collect();
        let mut s = RecordStore::default();
        s.offer(signed(&ids[0], 3).bytes(), &Limits::at(0));
        let r0 = signed(&ids[0], 3);
        let r1 = signed(&ids[1], 1);
        let r2a = signed(&ids[2], 1);
        let r2b = signed(&ids[2], 2);
        let mut bad = signed(&ids[3], 1).bytes().to_vec();
        bad[5] ^= 1;
        let batch: Vec<&[u8]> = vec![r0.bytes(), r1.bytes(), &bad, r2b.bytes(), r2a.bytes()];
        let v = s.offer_many(&batch, &Limits::at(0));
        assert_eq!(v[0], Offer::Duplicate);
        assert!(matches!(v[1], Offer::Accepted(_)));
        assert!(matches!(v[2], Offer::Rejected(_)));
        assert!(matches!(v[3], Offer::Accepted(_)));
        assert_eq!(v[4], Offer::Stale, "older than another in the batch");
        assert_eq!(s.get(&ids[2].node_id()).unwrap().seq(), 2);
        // The same bytes twice in a batch are verified once.
        let r4 = signed(&ids[4], 1);
        let v = s.offer_many(&[r4.bytes(), r4.bytes()], &Limits::at(0));
        assert!(matches!(v[0], Offer::Accepted(_)));
        assert_eq!(v[1], Offer::Duplicate);
    }

    #[test]
    fn a_forged_record_cannot_hide_a_genuine_one_in_the_same_batch() {
        let id = Identity::generate_with(&mut rng(300));
        let genuine = signed(&id, 5);
        // A forgery claiming a higher number (or the same one) arrives
        // first; the genuine record must still be verified and stored.
        for forged_seq in [9, 5] {
            let mut forged = signed(&id, forged_seq).bytes().to_vec();
            let n = forged.len();
            forged[n - 1] ^= 1;
            let mut s = RecordStore::default();
            let v = s.offer_many(&[&forged, genuine.bytes()], &Limits::at(0));
            assert!(matches!(v[0], Offer::Rejected(_)), "{v:?}");
            assert!(matches!(v[1], Offer::Accepted(_)), "{v:?}");
            assert_eq!(s.get(&id.node_id()).unwrap().seq(), 5);
        }
    }

    #[test]
    fn tombstones_the_grid_clock_and_the_cap_hold_records_back() {
        let ids: Vec<_> = (0..4)
            .map(|i| Identity::generate_with(&mut rng(400 + i)))
            .collect();
        let t0 = crate::testing::epoch();
        let mut graves = Tombstones::new(10);
        graves.insert(
            ids[0].node_id(),
            crate::tombstone::Tombstone {
                seq: 7,
                incarnation: 7,
                left: None,
                until: t0,
            },
        );
        let lim = Limits {
            unix_now: 0,
            max_issued_at: 1000,
            room: 1,
            tombstones: Some(&graves),
        };
        let mut s = RecordStore::default();
        assert_eq!(s.offer(signed(&ids[0], 7).bytes(), &lim), Offer::Stale);
        assert!(matches!(
            s.offer(signed(&ids[0], 8).bytes(), &lim),
            Offer::Accepted(_)
        ));
        let mut ahead = record_for(&ids[1], "127.0.0.1:1");
        ahead.issued_at = 1001;
        assert_eq!(
            s.offer(ahead.sign(&ids[1]).unwrap().bytes(), &lim),
            Offer::Ahead
        );
        // Room for one new node was taken by ids[0]; updates still fit.
        let lim = Limits { room: 0, ..lim };
        let r2 = signed(&ids[2], 1);
        assert_eq!(s.offer(r2.bytes(), &lim), Offer::Full(r2.clone()));
        assert!(matches!(
            s.offer(signed(&ids[0], 9).bytes(), &lim),
            Offer::Accepted(_)
        ));
        let st = s.stats();
        assert_eq!((st.tombstoned, st.ahead, st.over_cap), (1, 1, 1));
    }

    #[test]
    fn a_newer_record_of_our_own_id_is_reported_not_stored() {
        let me = Identity::generate_with(&mut rng(500));
        let mut s = RecordStore::default();
        s.insert_own(signed(&me, 10));
        let lim = Limits::at(0);
        assert_eq!(s.offer(signed(&me, 9).bytes(), &lim), Offer::Stale);
        assert_eq!(s.offer(signed(&me, 10).bytes(), &lim), Offer::Duplicate);
        let mut other = record_for(&me, "127.0.0.1:2");
        other.seq = 10;
        let other = other.sign(&me).unwrap();
        assert_eq!(s.offer(other.bytes(), &lim), Offer::Own(other.clone()));
        let newer = signed(&me, 11);
        assert_eq!(s.offer(newer.bytes(), &lim), Offer::Own(newer.clone()));
        assert_eq!(s.offer_verified(newer.clone(), &lim), Offer::Own(newer));
        let mut forged = signed(&me, 12).bytes().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert!(matches!(s.offer(&forged, &lim), Offer::Rejected(_)));
        assert_eq!(s.get(&me.node_id()).unwrap().seq(), 10);
    }

    #[test]
    fn admission_expiry_is_checked_at_the_time_given() {
        let grid_key = Identity::generate_with(&mut rng(200));
        let grid = GridId::of(&grid_key);
        let id = Identity::generate_with(&mut rng(201));
        let admitted = |seq: u64| {
            let mut r = record_for(&id, "127.0.0.1:1");
            r.seq = seq;
            r.admission = Some(Box::new(grapevine_crypto::Admission::issue(
                &grid_key,
                &id.node_id(),
                1000,
            )));
            r.sign(&id).unwrap()
        };
        let mut s = RecordStore::closed(grid);
        assert!(matches!(
            s.offer(admitted(1).bytes(), &Limits::at(999)),
            Offer::Accepted(_)
        ));
        assert_eq!(
            s.offer(admitted(2).bytes(), &Limits::at(1000)),
            Offer::NotAdmitted
        );
        assert_eq!(
            s.offer_verified(admitted(3), &Limits::at(5000)),
            Offer::NotAdmitted
        );
        assert!(matches!(
            s.offer_verified(admitted(3), &Limits::at(10)),
            Offer::Accepted(_)
        ));
        // Without a certificate, never.
        assert_eq!(
            s.offer(signed(&id, 9).bytes(), &Limits::at(10)),
            Offer::NotAdmitted
        );
        assert_eq!(s.stats().unadmitted, 3);
    }
}
