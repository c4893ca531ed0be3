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

use crate::wire::BUCKETS;

/// What happened to an offered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Verified and stored; it is new or newer than what was held.
    Accepted(SignedRecord),
    /// A record with the same sequence number is already held.
    Duplicate,
    /// An older sequence number than the one held.
    Stale,
    /// Invalid: forged, malformed or oversized.
    Rejected(RecordError),
    /// Validly signed, but a closed grid's record without a valid admission.
    NotAdmitted,
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
}

/// Verified records by node id.
#[derive(Debug)]
pub struct RecordStore {
    /// Ordered by id, so a bucket (first byte) is a range.
    records: BTreeMap<NodeId, SignedRecord>,
    by_prefix: HashMap<[u8; 8], NodeId>,
    buckets: Vec<u64>,
    root: u64,
    stats: StoreStats,
    grid: Option<GridId>,
}

impl Default for RecordStore {
    fn default() -> Self {
        RecordStore {
            records: BTreeMap::new(),
            by_prefix: HashMap::new(),
            buckets: vec![0; BUCKETS],
            root: 0,
            stats: StoreStats::default(),
            grid: None,
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

/// The 8-byte prefix of a node id used in anti-entropy entries.
pub fn prefix(id: &NodeId) -> [u8; 8] {
    let mut p = [0u8; 8];
    p.copy_from_slice(&id.0[..8]);
    p
}

fn entry_hash(id: &NodeId, seq: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&id.0);
    h.update(&seq.to_le_bytes());
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
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

    /// The record whose id starts with `p`, if held.
    pub fn get_by_prefix(&self, p: &[u8; 8]) -> Option<&SignedRecord> {
        self.by_prefix.get(p).and_then(|id| self.records.get(id))
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

    fn put(&mut self, rec: SignedRecord) {
        let id = rec.node_id();
        let b = id.0[0] as usize;
        if let Some(old) = self.records.get(&id) {
            let h = entry_hash(&id, old.seq());
            self.buckets[b] ^= h;
            self.root ^= h;
        }
        let h = entry_hash(&id, rec.seq());
        self.buckets[b] ^= h;
        self.root ^= h;
        self.by_prefix.insert(prefix(&id), id);
        self.records.insert(id, rec);
    }

    /// Store a record this node signed itself (already trusted).
    pub fn insert_own(&mut self, rec: SignedRecord) {
        self.put(rec);
    }

    /// Parse and compare with what is held; `Err` carries the verdict for
    /// records that need no signature check.
    fn precheck<'b>(&mut self, bytes: &'b [u8]) -> Result<UnverifiedRecord<'b>, Offer> {
        let parsed = UnverifiedRecord::parse(bytes).map_err(|e| {
            self.stats.rejected += 1;
            Offer::Rejected(e)
        })?;
        let (id, seq) = (parsed.record().node_id, parsed.record().seq);
        match self.records.get(&id) {
            Some(held) if held.seq() == seq => {
                self.stats.duplicate += 1;
                Err(Offer::Duplicate)
            }
            Some(held) if held.seq() > seq => {
                self.stats.stale += 1;
                Err(Offer::Stale)
            }
            _ => Ok(parsed),
        }
    }

    /// Offer one record received from anyone; `unix_now` (seconds) is the
    /// time admission certificates are checked at.
    pub fn offer(&mut self, bytes: &[u8], unix_now: u64) -> Offer {
        self.offer_many(&[bytes], unix_now)
            .pop()
            .expect("one verdict per record")
    }

    /// Offer a record whose signature was verified already (a
    /// [`SignedRecord`] can only be made by verifying or by signing): it
    /// is compared with what is held and, in a closed grid, its admission
    /// checked, but its signature is not checked again.
    pub fn offer_verified(&mut self, rec: SignedRecord, unix_now: u64) -> Offer {
        match self.records.get(&rec.node_id()) {
            Some(held) if held.seq() == rec.seq() => {
                self.stats.duplicate += 1;
                Offer::Duplicate
            }
            Some(held) if held.seq() > rec.seq() => {
                self.stats.stale += 1;
                Offer::Stale
            }
            _ => self.admit(rec, unix_now),
        }
    }

    /// Store a verified record that is newer than what is held, if a
    /// closed grid admits it.
    fn admit(&mut self, rec: SignedRecord, unix_now: u64) -> Offer {
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
        self.stats.accepted += 1;
        self.put(rec.clone());
        Offer::Accepted(rec)
    }

    /// Offer several records; new ones are verified as a batch. Returns one
    /// verdict per input, in order. `unix_now` as for [`RecordStore::offer`].
    pub fn offer_many(&mut self, batch: &[&[u8]], unix_now: u64) -> Vec<Offer> {
        let mut verdicts: Vec<Option<Offer>> = vec![None; batch.len()];
        let mut to_verify = Vec::new();
        let mut idx = Vec::new();
        let mut seen: HashMap<NodeId, u64> = HashMap::new();
        for (i, b) in batch.iter().enumerate() {
            match self.precheck(b) {
                Err(v) => verdicts[i] = Some(v),
                Ok(u) => {
                    let (id, seq) = (u.record().node_id, u.record().seq);
                    // The same node twice in one batch: keep the newest.
                    if seen.get(&id).is_some_and(|s| *s >= seq) {
                        self.stats.duplicate += 1;
                        verdicts[i] = Some(Offer::Duplicate);
                        continue;
                    }
                    seen.insert(id, seq);
                    to_verify.push(u);
                    idx.push(i);
                }
            }
        }
        for (i, r) in idx
            .into_iter()
            .zip(UnverifiedRecord::verify_batch(to_verify))
        {
            verdicts[i] = Some(match r {
                // A newer one may have been accepted earlier in this batch.
                Ok(rec)
                    if self
                        .records
                        .get(&rec.node_id())
                        .is_some_and(|h| h.seq() >= rec.seq()) =>
                {
                    self.stats.stale += 1;
                    Offer::Stale
                }
                Ok(rec) => self.admit(rec, unix_now),
                Err(e) => {
                    self.stats.rejected += 1;
                    Offer::Rejected(e)
                }
            });
        }
        verdicts
            .into_iter()
            .map(|v| v.expect("every input has a verdict"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            s.offer(signed(&id, 2).bytes(), 0),
            Offer::Accepted(_)
        ));
        assert_eq!(s.offer(signed(&id, 2).bytes(), 0), Offer::Duplicate);
        assert_eq!(s.offer(signed(&id, 1).bytes(), 0), Offer::Stale);
        assert!(matches!(
            s.offer(signed(&id, 5).bytes(), 0),
            Offer::Accepted(_)
        ));
        assert_eq!(s.get(&id.node_id()).unwrap().seq(), 5);
        let mut forged = signed(&id, 9).bytes().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert!(matches!(
            s.offer(&forged, 0),
            Offer::Rejected(RecordError::BadSignature)
        ));
        assert_eq!(s.get(&id.node_id()).unwrap().seq(), 5);
        assert!(matches!(s.offer(b"junk", 0), Offer::Rejected(_)));
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
            a.offer(signed(id, 1).bytes(), 0);
        }
        for id in ids.iter().rev() {
            b.offer(signed(id, 1).bytes(), 0);
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.bucket_hashes(), b.bucket_hashes());
        b.offer(signed(&ids[3], 2).bytes(), 0);
        assert_ne!(a.root(), b.root());
        let differing: Vec<usize> = (0..BUCKETS)
            .filter(|i| a.bucket_hashes()[*i] != b.bucket_hashes()[*i])
            .collect();
        assert_eq!(differing, vec![ids[3].node_id().0[0] as usize]);
        a.offer(signed(&ids[3], 2).bytes(), 0);
        assert_eq!(a.root(), b.root());
        let e = a.bucket_entries(ids[3].node_id().0[0]);
        assert!(e.contains(&(prefix(&ids[3].node_id()), 2)));
        assert_eq!(
            a.get_by_prefix(&prefix(&ids[3].node_id())).unwrap().seq(),
            2
        );
    }

    #[test]
    fn batch_gives_per_record_verdicts() {
        let ids: Vec<_> = (0..6)
            .map(|i| Identity::generate_with(&mut rng(100 + i)))
            .collect();
        let mut s = RecordStore::default();
        s.offer(signed(&ids[0], 3).bytes(), 0);
        let r0 = signed(&ids[0], 3);
        let r1 = signed(&ids[1], 1);
        let r2a = signed(&ids[2], 1);
        let r2b = signed(&ids[2], 2);
        let mut bad = signed(&ids[3], 1).bytes().to_vec();
        bad[5] ^= 1;
        let batch: Vec<&[u8]> = vec![r0.bytes(), r1.bytes(), &bad, r2b.bytes(), r2a.bytes()];
        let v = s.offer_many(&batch, 0);
        assert_eq!(v[0], Offer::Duplicate);
        assert!(matches!(v[1], Offer::Accepted(_)));
        assert!(matches!(v[2], Offer::Rejected(_)));
        assert!(matches!(v[3], Offer::Accepted(_)));
        assert_eq!(v[4], Offer::Duplicate);
        assert_eq!(s.get(&ids[2].node_id()).unwrap().seq(), 2);
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
            s.offer(admitted(1).bytes(), 999),
            Offer::Accepted(_)
        ));
        assert_eq!(s.offer(admitted(2).bytes(), 1000), Offer::NotAdmitted);
        assert_eq!(s.offer_verified(admitted(3), 5000), Offer::NotAdmitted);
        assert!(matches!(
            s.offer_verified(admitted(3), 10),
            Offer::Accepted(_)
        ));
        // Without a certificate, never.
        assert_eq!(s.offer(signed(&id, 9).bytes(), 10), Offer::NotAdmitted);
        assert_eq!(s.stats().unadmitted, 3);
    }
}
