//! Signed location records: who a node is, where it listens, what it offers.
//!
//! Wire form: one format-version byte, a canonical `bincode` 2 body (standard
//! config: little-endian varints), then a 64-byte ed25519 signature over
//! `DOMAIN || version || body`. Decoding is split in two so that a receiver
//! can drop a stale or duplicate record before paying for signature checks:
//! [`UnverifiedRecord::parse`] checks structure and limits,
//! [`UnverifiedRecord::verify`] checks the key binding and signature and is
//! the only way (besides [`LocationRecord::sign`]) to obtain a
//! [`SignedRecord`].

use std::net::SocketAddr;
use std::sync::Arc;

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};

use crate::error::RecordError;
use crate::identity::{Identity, NodeId};
use crate::verified;

pub use crate::limits::{
    MAX_ADDRS, MAX_NICKNAME_LEN, MAX_RECORD_LEN, MAX_SOFTWARE_LEN, RECORD_VERSION, SIGNATURE_LEN,
};

const DOMAIN: &[u8] = b"grapevine/location-record\0";

/// Role bit: the node stores shares for others.
pub const ROLE_STORAGE: u8 = 1;
/// Role bit: the node uploads and downloads (a client).
pub const ROLE_CLIENT: u8 = 2;
/// Feature bit, carried in the same byte as the roles: the node seals
/// session frames with AES-256-GCM when the peer's record offers it too
/// (set where the CPU runs AES-GCM in hardware; see [`local_features`]).
/// A record without it, from a node that predates it or lacks the
/// instructions, gets ChaCha20-Poly1305 sessions as before.
pub const FEATURE_AES_GCM: u8 = 0x80;

/// The environment variable that overrides the session cipher this
/// process offers: `chacha` never offers AES-256-GCM, `aes-gcm` always
/// does (even without the instructions: for tests), `auto` (the default)
/// offers it where the CPU runs it in hardware.
pub const SESSION_CIPHER_ENV: &str = "GRAPEVINE_SESSION_CIPHER";

/// The feature bits this process puts in its records: [`FEATURE_AES_GCM`]
/// where the CPU has AES and carry-less multiply instructions, unless
/// [`SESSION_CIPHER_ENV`] says otherwise. Decided once per process.
pub fn local_features() -> u8 {
    static FEATURES: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *FEATURES.get_or_init(|| {
        let choice = std::env::var(SESSION_CIPHER_ENV).ok();
        let aes = match choice.as_deref().map(str::trim) {
            Some("chacha") => false,
            Some("aes-gcm") => true,
            None | Some("" | "auto") => crate::cipher::aes_gcm_in_hardware(),
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "{SESSION_CIPHER_ENV} is not one of auto, chacha, aes-gcm: using auto"
                );
                crate::cipher::aes_gcm_in_hardware()
            }
        };
        if aes {
            FEATURE_AES_GCM
        } else {
            0
        }
    })
}

type Cfg = Configuration<LittleEndian, Varint, Limit<MAX_RECORD_LEN>>;
fn cfg() -> Cfg {
    config::standard().with_limit::<MAX_RECORD_LEN>()
}

/// The content of a location record, before signing.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct LocationRecord {
    /// The node's ed25519 public key.
    pub node_id: NodeId,
    /// The node's X25519 static key for Noise sessions; must equal
    /// `node_id.x25519_public()`.
    pub x25519: [u8; 32],
    /// Where the node can be reached (UDP gossip and TCP sessions share the
    /// port), 1 to [`MAX_ADDRS`].
    pub addrs: Vec<SocketAddr>,
    /// Advertised storage capacity in MiB.
    pub capacity_mib: u32,
    /// Free space in MiB.
    pub free_mib: u32,
    /// Software version string.
    pub software: String,
    /// Sequence number; a higher one replaces a lower one.
    pub seq: u64,
    /// When the record was issued, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Optional human-readable name.
    pub nickname: Option<String>,
    /// Role bits ([`ROLE_STORAGE`], [`ROLE_CLIENT`]) and feature bits
    /// ([`FEATURE_AES_GCM`]); bits a reader does not know are kept and
    /// ignored.
    pub roles: u8,
    /// Admission to a closed grid, signed by the grid key (see
    /// [`crate::admission`]); `None` in open grids. Boxed: every node holds
    /// every record, and open grids should not pay 80 bytes each for it.
    pub admission: Option<Box<crate::admission::Admission>>,
}

impl LocationRecord {
    /// A record for `identity` with the given addresses and defaults elsewhere
    /// (seq 1, storage and client roles, this process's
    /// [`local_features`], this crate's version).
    pub fn new(identity: &Identity, addrs: Vec<SocketAddr>) -> Self {
        LocationRecord {
            node_id: identity.node_id(),
            x25519: identity.x25519_public(),
            addrs,
            capacity_mib: 0,
            free_mib: 0,
            software: env!("CARGO_PKG_VERSION").to_string(),
            seq: 1,
            issued_at: 0,
            nickname: None,
            roles: ROLE_STORAGE | ROLE_CLIENT | local_features(),
            admission: None,
        }
    }

    fn check_limits(&self) -> Result<(), RecordError> {
        if self.addrs.is_empty() || self.addrs.len() > MAX_ADDRS {
            return Err(RecordError::AddressCount(self.addrs.len()));
        }
        if self.software.len() > MAX_SOFTWARE_LEN {
            return Err(RecordError::FieldTooLong {
                field: "software",
                len: self.software.len(),
                max: MAX_SOFTWARE_LEN,
            });
        }
        if let Some(n) = &self.nickname {
            if n.len() > MAX_NICKNAME_LEN {
                return Err(RecordError::FieldTooLong {
                    field: "nickname",
                    len: n.len(),
                    max: MAX_NICKNAME_LEN,
                });
            }
        }
        if self.free_mib > self.capacity_mib {
            return Err(RecordError::FreeExceedsCapacity {
                free: self.free_mib,
                capacity: self.capacity_mib,
            });
        }
        Ok(())
    }

    /// Encode and sign with `identity`.
    ///
    /// # Errors
    /// Any limit violation ([`RecordError::FieldTooLong`],
    /// [`RecordError::AddressCount`], ...) or
    /// [`RecordError::StaticKeyMismatch`] if the record is not `identity`'s.
    pub fn sign(self, identity: &Identity) -> Result<SignedRecord, RecordError> {
        self.check_limits()?;
        if self.node_id != identity.node_id() || self.x25519 != identity.x25519_public() {
            return Err(RecordError::StaticKeyMismatch);
        }
        let mut bytes = Vec::with_capacity(200);
        bytes.push(RECORD_VERSION);
        bincode::encode_into_std_write(&self, &mut bytes, cfg())
            .map_err(|e| RecordError::Malformed(e.to_string()))?;
        let sig = identity.sign(&signed_message(&bytes));
        bytes.extend_from_slice(&sig);
        Ok(SignedRecord {
            record: Arc::new(self),
            bytes: bytes.into(),
        })
    }
}

fn signed_message(version_and_body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + version_and_body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(version_and_body);
    m
}

/// A structurally valid record whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedRecord<'a> {
    record: LocationRecord,
    bytes: &'a [u8],
}

impl<'a> UnverifiedRecord<'a> {
    /// Parse and check structure and limits (no signature check).
    ///
    /// # Errors
    /// [`RecordError::Truncated`], [`RecordError::UnknownVersion`],
    /// [`RecordError::Malformed`], [`RecordError::TrailingBytes`] or a limit
    /// violation.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RecordError> {
        if bytes.len() < 1 + SIGNATURE_LEN {
            return Err(RecordError::Truncated);
        }
        if bytes[0] != RECORD_VERSION {
            return Err(RecordError::UnknownVersion(bytes[0]));
        }
        let body = &bytes[1..bytes.len() - SIGNATURE_LEN];
        let (record, used): (LocationRecord, usize) = bincode::decode_from_slice(body, cfg())
            .map_err(|e| match e {
                bincode::error::DecodeError::UnexpectedEnd { .. } => RecordError::Truncated,
                e => RecordError::Malformed(e.to_string()),
            })?;
        if used != body.len() {
            return Err(RecordError::TrailingBytes(body.len() - used));
        }
        record.check_limits()?;
        Ok(UnverifiedRecord { record, bytes })
    }

    /// The claimed content (not yet authenticated).
    pub fn record(&self) -> &LocationRecord {
        &self.record
    }

    fn signature(&self) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&self.bytes[self.bytes.len() - SIGNATURE_LEN..]);
        sig
    }

    /// Check that the X25519 key belongs to the node id and the signature.
    ///
    /// # Errors
    /// [`RecordError::InvalidNodeId`], [`RecordError::StaticKeyMismatch`] or
    /// [`RecordError::BadSignature`].
    pub fn verify(self) -> Result<SignedRecord, RecordError> {
        // The same bytes verified before verify now (`verified`).
        let remembered = verified::key(self.bytes);
        if verified::seen(&remembered) {
            return Ok(SignedRecord {
                record: Arc::new(self.record),
                bytes: self.bytes.into(),
            });
        }
        // One point decompression serves both the key-binding check and
        // the signature check.
        let key = self.checked_key()?;
        let msg = signed_message(&self.bytes[..self.bytes.len() - SIGNATURE_LEN]);
        ed25519_dalek::Verifier::verify(
            &key,
            &msg,
            &ed25519_dalek::Signature::from_bytes(&self.signature()),
        )
        .map_err(|_| RecordError::BadSignature)?;
        verified::remember(remembered);
        Ok(SignedRecord {
            record: Arc::new(self.record),
            bytes: self.bytes.into(),
        })
    }

    /// The node's verifying key, after checking that the record's X25519
    /// key is its Montgomery form.
    fn checked_key(&self) -> Result<ed25519_dalek::VerifyingKey, RecordError> {
        let key = self
            .record
            .node_id
            .verifying_key()
            .map_err(|_| RecordError::InvalidNodeId)?;
        if key.to_montgomery().to_bytes() != self.record.x25519 {
            return Err(RecordError::StaticKeyMismatch);
        }
        Ok(key)
    }

    /// Verify many records at once with ed25519 batch verification (about
    /// twice as fast per record); falls back to one-by-one checks when the
    /// batch fails so each record gets its own verdict.
    pub fn verify_batch(
        records: Vec<UnverifiedRecord<'a>>,
    ) -> Vec<Result<SignedRecord, RecordError>> {
        let mut keys = Vec::with_capacity(records.len());
        let mut sigs = Vec::with_capacity(records.len());
        let mut msgs = Vec::with_capacity(records.len());
        let mut all_ok = records.len() > 1;
        for r in &records {
            match r.checked_key() {
                Ok(k) => {
                    keys.push(k);
                    sigs.push(ed25519_dalek::Signature::from_bytes(&r.signature()));
                    msgs.push(signed_message(&r.bytes[..r.bytes.len() - SIGNATURE_LEN]));
                }
                Err(_) => {
                    all_ok = false;
                    break;
                }
            }
        }
        if all_ok {
            let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
            if ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok() {
                return records
                    .into_iter()
                    .map(|r| {
                        verified::remember(verified::key(r.bytes));
                        Ok(SignedRecord {
                            record: Arc::new(r.record),
                            bytes: r.bytes.into(),
                        })
                    })
                    .collect();
            }
        }
        records.into_iter().map(UnverifiedRecord::verify).collect()
    }
}

/// A location record whose signature and key binding have been verified (or
/// which this node signed itself). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    record: Arc<LocationRecord>,
    bytes: Arc<[u8]>,
}

impl SignedRecord {
    /// Parse and verify in one step.
    ///
    /// # Errors
    /// Any [`RecordError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        UnverifiedRecord::parse(bytes)?.verify()
    }

    /// The verified content.
    pub fn record(&self) -> &LocationRecord {
        &self.record
    }

    /// The canonical signed bytes, as sent on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Shorthand for `record().node_id`.
    pub fn node_id(&self) -> NodeId {
        self.record.node_id
    }

    /// Shorthand for `record().seq`.
    pub fn seq(&self) -> u64 {
        self.record.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{record_for, rng};
    use proptest::prelude::*;

    /// A record verified once is not verified again (the verification is
    /// remembered by its bytes' hash); the same record with one bit changed
    /// is verified, and refused, every time.
    #[test]
    fn a_record_verified_once_is_remembered_and_a_changed_one_is_not() {
        // A fresh identity: bytes no other test verified.
        let id = Identity::generate();
        let signed = record_for(&id, "127.0.0.1:7000").sign(&id).unwrap();
        let b = signed.bytes().to_vec();
        let skipped = verified::skipped_on_this_thread;
        let before = skipped();
        assert_eq!(SignedRecord::decode(&b).unwrap(), signed);
        assert_eq!(skipped(), before, "verified the first time");
        assert_eq!(SignedRecord::decode(&b).unwrap(), signed);
        assert_eq!(skipped(), before + 1, "remembered the second time");
        let mut badsig = b.clone();
        let n = badsig.len();
        badsig[n - 1] ^= 0x40;
        for _ in 0..2 {
            assert_eq!(
                SignedRecord::decode(&badsig),
                Err(RecordError::BadSignature)
            );
        }
        assert_eq!(
            skipped(),
            before + 1,
            "a changed record is never taken from memory"
        );
        // Records verified as a batch are remembered too.
        let others: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                let id = Identity::generate();
                record_for(&id, "127.0.0.1:7001")
                    .sign(&id)
                    .unwrap()
                    .bytes()
                    .to_vec()
            })
            .collect();
        let batch = UnverifiedRecord::verify_batch(
            others
                .iter()
                .map(|o| UnverifiedRecord::parse(o).unwrap())
                .collect(),
        );
        assert!(batch.iter().all(Result::is_ok));
        for o in &others {
            SignedRecord::decode(o).unwrap();
        }
        assert_eq!(skipped(), before + 4);
    }

    #[test]
    fn typical_record_with_one_ipv4_fits_200_bytes() {
        let id = Identity::generate_with(&mut rng(1));
        let mut r = record_for(&id, "127.0.0.1:7000");
        r.capacity_mib = 1 << 20; // 1 TiB
        r.free_mib = 1 << 19;
        r.issued_at = 1_800_000_000;
        r.nickname = Some("node-0001".into());
        let s = r.sign(&id).unwrap();
        assert_eq!(
            s.bytes().len(),
            173,
            "typical size documented in docs/protocol.md"
        );
        // In a closed grid the admission certificate adds 65 bytes (69 with
        // an expiry date).
        let grid = Identity::generate_with(&mut rng(9));
        let mut r = s.record().clone();
        r.admission = Some(Box::new(crate::admission::Admission::issue(
            &grid,
            &id.node_id(),
            0,
        )));
        assert_eq!(r.clone().sign(&id).unwrap().bytes().len(), 173 + 65);
        r.admission = Some(Box::new(crate::admission::Admission::issue(
            &grid,
            &id.node_id(),
            1_900_000_000,
        )));
        assert_eq!(r.sign(&id).unwrap().bytes().len(), 173 + 69);
    }

    #[test]
    fn a_held_record_stays_small_in_memory() {
        // Every node holds every record: the decoded form is budgeted too.
        let size = std::mem::size_of::<LocationRecord>();
        assert!(size <= 176, "LocationRecord is {size} bytes");
    }

    #[test]
    fn worst_case_record_with_one_ipv4_fits_200_bytes() {
        let id = Identity::generate_with(&mut rng(2));
        let mut r = record_for(&id, "255.255.255.255:65535");
        r.capacity_mib = u32::MAX;
        r.free_mib = u32::MAX;
        r.seq = u64::MAX;
        r.issued_at = u64::MAX;
        r.software = "x".repeat(MAX_SOFTWARE_LEN);
        r.nickname = Some("n".repeat(MAX_NICKNAME_LEN));
        r.roles = u8::MAX;
        let s = r.sign(&id).unwrap();
        assert_eq!(s.bytes().len(), 199);
        assert!(s.bytes().len() <= 200);
    }

    #[test]
    fn worst_case_record_fits_max_len() {
        let id = Identity::generate_with(&mut rng(2));
        let mut r = record_for(&id, "[ffff::1]:65535");
        r.addrs = vec![r.addrs[0]; MAX_ADDRS];
        r.capacity_mib = u32::MAX;
        r.free_mib = u32::MAX;
        r.seq = u64::MAX;
        r.issued_at = u64::MAX;
        r.software = "x".repeat(MAX_SOFTWARE_LEN);
        r.nickname = Some("n".repeat(MAX_NICKNAME_LEN));
        r.admission = Some(Box::new(crate::admission::Admission {
            expires: u64::MAX,
            signature: [0xff; 64],
        }));
        let s = r.sign(&id).unwrap();
        assert!(s.bytes().len() <= MAX_RECORD_LEN, "{}", s.bytes().len());
        SignedRecord::decode(s.bytes()).unwrap();
    }

    #[test]
    fn round_trip() {
        let id = Identity::generate_with(&mut rng(3));
        let s = record_for(&id, "10.0.0.1:1").sign(&id).unwrap();
        let d = SignedRecord::decode(s.bytes()).unwrap();
        assert_eq!(d, s);
    }

    #[test]
    fn rejects_each_kind_of_bad_record() {
        let id = Identity::generate_with(&mut rng(4));
        let good = record_for(&id, "10.0.0.1:1").sign(&id).unwrap();
        let b = good.bytes().to_vec();

        // Bad signature (flip a body byte: the seq varint near the end).
        let mut forged = b.clone();
        let n = forged.len();
        forged[n - SIGNATURE_LEN - 2] ^= 1; // roles byte (before the admission's None)
        assert_eq!(
            SignedRecord::decode(&forged),
            Err(RecordError::BadSignature)
        );
        // The feature bits share that byte: no one who relays a record can
        // offer or withdraw AES-256-GCM sessions for its node.
        assert_eq!(b[n - SIGNATURE_LEN - 2], good.record().roles);
        let mut feature = b.clone();
        feature[n - SIGNATURE_LEN - 2] ^= FEATURE_AES_GCM;
        assert_eq!(
            SignedRecord::decode(&feature),
            Err(RecordError::BadSignature)
        );
        let mut badsig = b.clone();
        badsig[n - 1] ^= 0x40;
        assert_eq!(
            SignedRecord::decode(&badsig),
            Err(RecordError::BadSignature)
        );

        // Trailing bytes (insert before the signature).
        let mut trailing = b[..n - SIGNATURE_LEN].to_vec();
        trailing.push(0);
        trailing.extend_from_slice(&b[n - SIGNATURE_LEN..]);
        assert_eq!(
            SignedRecord::decode(&trailing),
            Err(RecordError::TrailingBytes(1))
        );

        // Unknown version.
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(
            SignedRecord::decode(&v),
            Err(RecordError::UnknownVersion(9))
        );

        // Truncated.
        assert_eq!(SignedRecord::decode(&b[..10]), Err(RecordError::Truncated));
        assert!(SignedRecord::decode(&b[..n - 1]).is_err());

        // Another node's signature over our content.
        let other = Identity::generate_with(&mut rng(5));
        let mut theirs = b[..n - SIGNATURE_LEN].to_vec();
        let sig = other.sign(&signed_message(&theirs));
        theirs.extend_from_slice(&sig);
        assert_eq!(
            SignedRecord::decode(&theirs),
            Err(RecordError::BadSignature)
        );
    }

    #[test]
    fn rejects_x25519_key_not_bound_to_signer() {
        // Sign a record with a foreign X25519 key by encoding it by hand.
        let id = Identity::generate_with(&mut rng(6));
        let mut r = record_for(&id, "10.0.0.1:1");
        r.x25519 = [7; 32];
        let mut bytes = vec![RECORD_VERSION];
        bincode::encode_into_std_write(&r, &mut bytes, cfg()).unwrap();
        let sig = id.sign(&signed_message(&bytes));
        bytes.extend_from_slice(&sig);
        assert_eq!(
            SignedRecord::decode(&bytes),
            Err(RecordError::StaticKeyMismatch)
        );
        // And sign() refuses to produce one.
        assert_eq!(r.sign(&id), Err(RecordError::StaticKeyMismatch));
    }

    #[test]
    fn rejects_oversized_fields_and_address_counts() {
        let id = Identity::generate_with(&mut rng(7));
        let encode_unchecked = |r: &LocationRecord| {
            let mut bytes = vec![RECORD_VERSION];
            bincode::encode_into_std_write(r, &mut bytes, config::standard()).unwrap();
            let sig = id.sign(&signed_message(&bytes));
            bytes.extend_from_slice(&sig);
            bytes
        };
        let mut r = record_for(&id, "10.0.0.1:1");
        r.nickname = Some("n".repeat(MAX_NICKNAME_LEN + 1));
        assert!(matches!(
            SignedRecord::decode(&encode_unchecked(&r)),
            Err(RecordError::FieldTooLong {
                field: "nickname",
                ..
            })
        ));
        assert!(matches!(
            r.clone().sign(&id),
            Err(RecordError::FieldTooLong { .. })
        ));
        let mut r = record_for(&id, "10.0.0.1:1");
        r.addrs = vec![r.addrs[0]; MAX_ADDRS + 1];
        assert_eq!(
            SignedRecord::decode(&encode_unchecked(&r)),
            Err(RecordError::AddressCount(MAX_ADDRS + 1))
        );
        r.addrs.clear();
        assert_eq!(
            SignedRecord::decode(&encode_unchecked(&r)),
            Err(RecordError::AddressCount(0))
        );
        // A huge claimed length is refused by the decode limit, not allocated.
        let mut r = record_for(&id, "10.0.0.1:1");
        r.software = "s".repeat(1000);
        assert!(SignedRecord::decode(&encode_unchecked(&r)).is_err());
    }

    #[test]
    fn batch_verification_gives_each_record_its_verdict() {
        let ids: Vec<_> = (0..5)
            .map(|i| Identity::generate_with(&mut rng(10 + i)))
            .collect();
        let mut encoded: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| {
                record_for(id, "10.0.0.1:1")
                    .sign(id)
                    .unwrap()
                    .bytes()
                    .to_vec()
            })
            .collect();
        let all: Vec<_> = encoded
            .iter()
            .map(|b| UnverifiedRecord::parse(b).unwrap())
            .collect();
        assert!(UnverifiedRecord::verify_batch(all)
            .iter()
            .all(|r| r.is_ok()));
        let last = encoded[3].len() - 1;
        encoded[3][last] ^= 1;
        let all: Vec<_> = encoded
            .iter()
            .map(|b| UnverifiedRecord::parse(b).unwrap())
            .collect();
        let verdicts = UnverifiedRecord::verify_batch(all);
        for (i, v) in verdicts.iter().enumerate() {
            assert_eq!(v.is_ok(), i != 3);
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(seed in any::<u64>(), seq in any::<u64>(), cap in any::<u32>(),
                           port in any::<u16>(), ip in any::<[u8; 4]>(),
                           nick in proptest::option::of("[a-z0-9-]{0,16}")) {
            let id = Identity::generate_with(&mut rng(seed));
            let mut r = record_for(&id, "10.0.0.1:1");
            r.addrs = vec![SocketAddr::from((ip, port))];
            r.seq = seq;
            r.capacity_mib = cap;
            r.free_mib = cap / 2;
            r.nickname = nick;
            let s = r.clone().sign(&id).unwrap();
            prop_assert!(s.bytes().len() <= 200);
            let d = SignedRecord::decode(s.bytes()).unwrap();
            prop_assert_eq!(d.record(), &r);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedRecord::decode(&bytes);
        }

        #[test]
        fn prop_mutated_record_never_verifies(idx in any::<prop::sample::Index>(), bit in 0u8..8) {
            let id = Identity::generate_with(&mut rng(99));
            let s = record_for(&id, "10.0.0.1:1").sign(&id).unwrap();
            let mut b = s.bytes().to_vec();
            let i = idx.index(b.len());
            b[i] ^= 1 << bit;
            prop_assert!(SignedRecord::decode(&b).is_err());
        }
    }
}
