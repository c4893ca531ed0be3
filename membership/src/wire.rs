//! The gossip wire format: one [`Message`] per UDP datagram, a version byte
//! then a `bincode` 2 body, never more than [`MAX_DATAGRAM`] bytes.
//!
//! **Versions** (the compatibility policy of `docs/protocol.md`). The
//! version byte changes only when an existing message changes meaning or
//! layout; a datagram of another version is dropped and counted
//! ([`WireError::UnknownVersion`]). New message kinds are added at the end
//! of [`Message`] without a version change, and are written only to a peer
//! whose record names a release that reads them ("write the old, read the
//! new"): the signed-fact kinds (`SyncDigests` to `SyncFacts`, 11 to 15) go
//! only to peers whose record's `software` is [`FACTS_SINCE`] or later
//! ([`reads_facts`]); others get `SyncDigest` and sync records as before. A
//! kind a node does not know all the same (a peer that rolled back) is
//! dropped and counted ([`WireError::UnknownKind`]; releases before that
//! error count it as malformed).
//!
//! **Cookies and the header** (release [`COOKIES_SINCE`], kinds 16 and 17).
//! A node answers a datagram with at most three times its bytes unless the
//! datagram echoes a cookie the node issued to its source address (as QUIC
//! limits what it sends to an address that has not proven it receives, RFC
//! 9000 section 8). [`Message::Cookie`] issues one; a datagram to a peer of
//! that release starts with a [`Message::Header`] carrying the cookie that
//! peer issued (if any) and the sender's wall clock, then the message
//! itself ([`Datagram`]). Both are written only to peers whose record names
//! such a release ([`reads_cookies`]).

use std::net::SocketAddr;

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use grapevine_crypto::NodeId;

use crate::error::WireError;

/// Largest datagram sent or accepted.
pub const MAX_DATAGRAM: usize = 1400;
/// Wire format version.
pub const WIRE_VERSION: u8 = 1;
/// Number of anti-entropy buckets (node ids grouped by first byte).
pub const BUCKETS: usize = 256;
/// The first release (major, minor, patch) that reads the signed-fact kinds
/// (`SyncDigests`, `FactBuckets`, `FactHave`, `FactWant`, `SyncFacts`).
pub const FACTS_SINCE: (u64, u64, u64) = (0, 2, 0);
/// The first release that reads cookies and the header (`Cookie`,
/// `Header`).
pub const COOKIES_SINCE: (u64, u64, u64) = (0, 3, 0);

/// The release a record's `software` string names ("0.2.0", "0.2.0-rc1"),
/// if it names one.
fn release(software: &str) -> Option<(u64, u64, u64)> {
    let core = software.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let r = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(r)
}

/// Whether a node whose record names `software` reads the signed-fact
/// kinds; an unreadable version string is taken as an older release.
pub fn reads_facts(software: &str) -> bool {
    release(software).is_some_and(|r| r >= FACTS_SINCE)
}

/// Whether a node whose record names `software` reads cookies and the
/// header ([`Message::Cookie`], [`Message::Header`]).
pub fn reads_cookies(software: &str) -> bool {
    release(software).is_some_and(|r| r >= COOKIES_SINCE)
}

/// A cookie: 64 bits of a keyed hash of an address (see `crate::cookie`).
pub type Cookie = [u8; 8];

/// The 8-byte prefix of a node id used in anti-entropy entries.
pub fn prefix(id: &NodeId) -> [u8; 8] {
    let mut p = [0u8; 8];
    p.copy_from_slice(&id.0[..8]);
    p
}

/// Most memory one datagram may make the decoder allocate. `bincode`'s
/// limit counts claimed in-memory sizes (element count times element size),
/// not wire bytes; the wire size is capped separately at [`MAX_DATAGRAM`].
const DECODE_MEMORY_LIMIT: usize = 256 * 1024;

type Cfg = Configuration<LittleEndian, Varint, Limit<DECODE_MEMORY_LIMIT>>;
fn cfg() -> Cfg {
    config::standard().with_limit::<DECODE_MEMORY_LIMIT>()
}

/// A membership fact that spreads by piggybacking on other messages.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Update {
    /// A signed location record (canonical bytes). Also announces the node.
    Record(Vec<u8>),
    /// The node is alive at this incarnation; signed by the node itself, so
    /// only it can refute a suspicion.
    Alive {
        /// The node.
        id: NodeId,
        /// Its incarnation.
        incarnation: u64,
        /// Signature by `id` over ("alive", id, incarnation).
        sig: [u8; 64],
    },
    /// Someone suspects the node at this incarnation.
    Suspect {
        /// The node suspected.
        id: NodeId,
        /// Incarnation suspected.
        incarnation: u64,
    },
    /// The node was declared dead at this incarnation.
    Dead {
        /// The node.
        id: NodeId,
        /// Incarnation.
        incarnation: u64,
    },
    /// The node left gracefully; signed by the node.
    Left {
        /// The node.
        id: NodeId,
        /// Incarnation.
        incarnation: u64,
        /// Signature by `id` over ("left", id, incarnation).
        sig: [u8; 64],
    },
}

impl Update {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        bincode::encode_to_vec(self, config::standard())
            .map(|v| v.len())
            .unwrap_or(MAX_DATAGRAM)
    }
}

/// The bytes a node signs for an [`Update::Alive`] or [`Update::Left`].
pub fn liveness_message(kind: &str, id: &NodeId, incarnation: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(b"grapevine/liveness\0");
    m.extend_from_slice(kind.as_bytes());
    m.push(0);
    m.extend_from_slice(id.as_bytes());
    m.extend_from_slice(&incarnation.to_le_bytes());
    m
}

/// One bucket's signed facts in an anti-entropy exchange: for each fact
/// held, the first 8 bytes of the node id, the incarnation and whether it
/// is a leave (`true`) or an alive (`false`).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct FactEntries {
    /// Bucket index (first byte of the node ids in it).
    pub bucket: u8,
    /// (id prefix, incarnation, left) per fact held in this bucket.
    pub entries: Vec<([u8; 8], u64, bool)>,
}

/// One bucket's entries in an anti-entropy exchange: for each record held,
/// the first 8 bytes of the node id and the sequence number.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct BucketEntries {
    /// Bucket index (first byte of the node ids in it).
    pub bucket: u8,
    /// (id prefix, seq) per record held in this bucket.
    pub entries: Vec<([u8; 8], u64)>,
}

/// A datagram.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Message {
    /// SWIM probe; the receiver answers with [`Message::Ack`].
    Ping {
        /// Probe sequence number.
        seq: u32,
        /// Sender.
        from: NodeId,
        /// Piggybacked updates.
        updates: Vec<Update>,
    },
    /// Answer to a ping (direct or relayed).
    Ack {
        /// The probe's sequence number (the requester's, when relayed).
        seq: u32,
        /// The node that was probed.
        from: NodeId,
        /// Piggybacked updates.
        updates: Vec<Update>,
    },
    /// Ask the receiver to probe `target` for us.
    PingReq {
        /// Requester's probe sequence number.
        seq: u32,
        /// Requester.
        from: NodeId,
        /// Node to probe.
        target: NodeId,
        /// Where to reach it.
        target_addr: SocketAddr,
    },
    /// A new node asks a seed to let it in, with its signed record.
    Join {
        /// Signed record of the joining node.
        record: Vec<u8>,
    },
    /// The seed's answer to a join, with its own record.
    JoinAck {
        /// Signed record of the seed.
        record: Vec<u8>,
    },
    /// Updates pushed to random members.
    Gossip {
        /// Sender.
        from: NodeId,
        /// Updates.
        updates: Vec<Update>,
    },
    /// Anti-entropy, step 1: the sender's digest of all records it holds.
    SyncDigest {
        /// Sender.
        from: NodeId,
        /// XOR of per-record hashes.
        root: u64,
        /// Number of records.
        count: u32,
    },
    /// Step 2: the receiver's per-bucket hashes (when the roots differ).
    SyncBuckets {
        /// Sender.
        from: NodeId,
        /// [`BUCKETS`] truncated bucket hashes.
        hashes: Vec<u32>,
    },
    /// Step 3: the entries of buckets that differ.
    SyncHave {
        /// Sender.
        from: NodeId,
        /// Differing buckets and their entries.
        buckets: Vec<BucketEntries>,
    },
    /// Step 4: ids (prefixes) whose records the sender needs.
    SyncWant {
        /// Sender.
        from: NodeId,
        /// Node id prefixes wanted.
        prefixes: Vec<[u8; 8]>,
    },
    /// Records sent in answer to anti-entropy (stored, not re-gossiped).
    SyncRecords {
        /// Sender.
        from: NodeId,
        /// Signed records.
        records: Vec<Vec<u8>>,
    },
    /// Anti-entropy, step 1, from nodes that also sync facts: the
    /// sender's digest of all records it holds (answered as
    /// [`Message::SyncDigest`]) and of the signed facts it holds (signed
    /// `Alive` above a record's sequence number, signed `Left`; never
    /// unsigned opinions), answered with [`Message::FactBuckets`] where
    /// they differ.
    SyncDigests {
        /// Sender.
        from: NodeId,
        /// XOR of per-record hashes.
        root: u64,
        /// Number of records.
        count: u32,
        /// XOR of per-fact hashes.
        fact_root: u64,
    },
    /// Step 2: the receiver's per-bucket fact hashes (when the roots
    /// differ).
    FactBuckets {
        /// Sender.
        from: NodeId,
        /// [`BUCKETS`] truncated bucket hashes.
        hashes: Vec<u32>,
    },
    /// Step 3: the facts held in buckets that differ.
    FactHave {
        /// Sender.
        from: NodeId,
        /// Differing buckets and their entries.
        buckets: Vec<FactEntries>,
    },
    /// Step 4: ids (prefixes) whose facts the sender needs.
    FactWant {
        /// Sender.
        from: NodeId,
        /// Node id prefixes wanted.
        prefixes: Vec<[u8; 8]>,
    },
    /// Signed facts (`Update::Alive`, `Update::Left`) sent in answer to
    /// fact anti-entropy (applied, not re-gossiped; other updates are
    /// ignored).
    SyncFacts {
        /// Sender.
        from: NodeId,
        /// Signed updates.
        updates: Vec<Update>,
    },
    /// A cookie for the address this datagram is sent to: echo it in the
    /// header of what is sent to its sender, and that sender answers in
    /// full (otherwise with at most three times the bytes received).
    Cookie {
        /// The cookie.
        cookie: Cookie,
    },
    /// Not a message by itself: the header a datagram to a peer of
    /// release [`COOKIES_SINCE`] or later starts with, followed by the
    /// message ([`Datagram`]).
    Header {
        /// The cookie the receiver issued to the sender's address, if the
        /// sender holds one.
        cookie: Option<Cookie>,
        /// The sender's wall clock, Unix seconds (the grid's time is
        /// measured from these).
        time: u64,
    },
}

impl Message {
    /// The node a message names as its sender, for kinds that name one (an
    /// `Ack` names the node probed, which a relay forwards).
    pub fn sender(&self) -> Option<NodeId> {
        match self {
            Message::Ping { from, .. }
            | Message::Ack { from, .. }
            | Message::PingReq { from, .. }
            | Message::Gossip { from, .. }
            | Message::SyncDigest { from, .. }
            | Message::SyncBuckets { from, .. }
            | Message::SyncHave { from, .. }
            | Message::SyncWant { from, .. }
            | Message::SyncRecords { from, .. }
            | Message::SyncDigests { from, .. }
            | Message::FactBuckets { from, .. }
            | Message::FactHave { from, .. }
            | Message::FactWant { from, .. }
            | Message::SyncFacts { from, .. } => Some(*from),
            Message::Join { .. }
            | Message::JoinAck { .. }
            | Message::Cookie { .. }
            | Message::Header { .. } => None,
        }
    }

    /// Encode into a datagram.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] if the result exceeds [`MAX_DATAGRAM`].
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(256);
        out.push(WIRE_VERSION);
        bincode::encode_into_std_write(self, &mut out, config::standard())
            .map_err(|e| WireError::Malformed(e.to_string()))?;
        if out.len() > MAX_DATAGRAM {
            return Err(WireError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decode a datagram.
    ///
    /// # Errors
    /// [`WireError::TooLarge`], [`WireError::UnknownVersion`],
    /// [`WireError::UnknownKind`], [`WireError::Malformed`] or
    /// [`WireError::TrailingBytes`].
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let body = check_outer(bytes)?;
        let (m, used) = decode_one(body)?;
        if used != body.len() {
            return Err(WireError::TrailingBytes(body.len() - used));
        }
        Ok(m)
    }
}

/// A datagram as received: an optional [`Message::Header`], then one
/// message (never a header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The header's cookie and time, if the datagram had one.
    pub header: Option<(Option<Cookie>, u64)>,
    /// The message.
    pub msg: Message,
}

impl Datagram {
    /// Encode `msg` after a header, if `header` is given.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] if the result exceeds [`MAX_DATAGRAM`].
    pub fn encode(
        header: Option<(Option<Cookie>, u64)>,
        msg: &Message,
    ) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(256);
        out.push(WIRE_VERSION);
        let mal = |e: bincode::error::EncodeError| WireError::Malformed(e.to_string());
        if let Some((cookie, time)) = header {
            let h = Message::Header { cookie, time };
            bincode::encode_into_std_write(&h, &mut out, config::standard()).map_err(mal)?;
        }
        bincode::encode_into_std_write(msg, &mut out, config::standard()).map_err(mal)?;
        if out.len() > MAX_DATAGRAM {
            return Err(WireError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decode a datagram: a header (optional) and one message that is not
    /// a header.
    ///
    /// # Errors
    /// As [`Message::decode`]; a header alone, or two, is
    /// [`WireError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let body = check_outer(bytes)?;
        let (first, used) = decode_one(body)?;
        let (header, msg, used) = match first {
            Message::Header { cookie, time } => {
                let (msg, more) = decode_one(&body[used..])?;
                (Some((cookie, time)), msg, used + more)
            }
            msg => (None, msg, used),
        };
        if matches!(msg, Message::Header { .. }) {
            return Err(WireError::Malformed("a header without a message".into()));
        }
        if used != body.len() {
            return Err(WireError::TrailingBytes(body.len() - used));
        }
        Ok(Datagram { header, msg })
    }
}

/// Length and version; the body after the version byte.
fn check_outer(bytes: &[u8]) -> Result<&[u8], WireError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let (&v, body) = bytes
        .split_first()
        .ok_or(WireError::Malformed("empty".into()))?;
    if v != WIRE_VERSION {
        return Err(WireError::UnknownVersion(v));
    }
    Ok(body)
}

/// One message from the front of `body`, and the bytes it used.
fn decode_one(body: &[u8]) -> Result<(Message, usize), WireError> {
    bincode::decode_from_slice(body, cfg()).map_err(|e| match e {
        // A kind added by a newer node.
        bincode::error::DecodeError::UnexpectedVariant { found, .. } => {
            WireError::UnknownKind(found)
        }
        e => WireError::Malformed(e.to_string()),
    })
}

/// Overhead of a message carrying an empty update list, with a header,
/// generously rounded.
pub const HEADER_BUDGET: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn round_trip_every_kind() {
        let msgs = vec![
            Message::Ping {
                seq: 7,
                from: id(1),
                updates: vec![
                    Update::Record(vec![1; 172]),
                    Update::Suspect {
                        id: id(2),
                        incarnation: 3,
                    },
                    Update::Dead {
                        id: id(3),
                        incarnation: 4,
                    },
                    Update::Alive {
                        id: id(4),
                        incarnation: 5,
                        sig: [9; 64],
                    },
                    Update::Left {
                        id: id(5),
                        incarnation: 6,
                        sig: [8; 64],
                    },
                ],
            },
            Message::Ack {
                seq: 7,
                from: id(1),
                updates: vec![],
            },
            Message::PingReq {
                seq: 1,
                from: id(1),
                target: id(2),
                target_addr: "127.0.0.1:9".parse().unwrap(),
            },
            Message::Join {
                record: vec![3; 100],
            },
            Message::JoinAck {
                record: vec![3; 100],
            },
            Message::Gossip {
                from: id(1),
                updates: vec![],
            },
            Message::SyncDigest {
                from: id(1),
                root: u64::MAX,
                count: 1000,
            },
            Message::SyncBuckets {
                from: id(1),
                hashes: vec![u32::MAX; BUCKETS],
            },
            Message::SyncHave {
                from: id(1),
                buckets: vec![BucketEntries {
                    bucket: 3,
                    entries: vec![([1; 8], 5)],
                }],
            },
            Message::SyncWant {
                from: id(1),
                prefixes: vec![[2; 8]],
            },
            Message::SyncRecords {
                from: id(1),
                records: vec![vec![1; 172]; 7],
            },
            Message::SyncDigests {
                from: id(1),
                root: u64::MAX,
                count: 1000,
                fact_root: 9,
            },
            Message::FactBuckets {
                from: id(1),
                hashes: vec![u32::MAX; BUCKETS],
            },
            Message::FactHave {
                from: id(1),
                buckets: vec![FactEntries {
                    bucket: 3,
                    entries: vec![([1; 8], u64::MAX, true)],
                }],
            },
            Message::FactWant {
                from: id(1),
                prefixes: vec![[2; 8]],
            },
            Message::SyncFacts {
                from: id(1),
                updates: vec![
                    Update::Left {
                        id: id(5),
                        incarnation: 6,
                        sig: [8; 64],
                    };
                    12
                ],
            },
            Message::Cookie { cookie: [3; 8] },
        ];
        for m in msgs {
            let b = m.encode().unwrap();
            assert!(b.len() <= MAX_DATAGRAM);
            assert_eq!(Message::decode(&b).unwrap(), m);
        }
    }

    #[test]
    fn bucket_hashes_fit_one_datagram() {
        let m = Message::SyncBuckets {
            from: id(1),
            hashes: vec![u32::MAX; BUCKETS],
        };
        assert!(m.encode().unwrap().len() <= MAX_DATAGRAM);
    }

    #[test]
    fn full_bucket_listing_decodes() {
        let m = Message::SyncHave {
            from: id(1),
            buckets: (0..=255u8)
                .map(|b| BucketEntries {
                    bucket: b,
                    entries: vec![],
                })
                .collect(),
        };
        let b = m.encode().unwrap();
        assert_eq!(Message::decode(&b).unwrap(), m);
        let m = Message::SyncRecords {
            from: id(1),
            records: vec![vec![7; 180]; 7],
        };
        assert_eq!(Message::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn ping_is_small() {
        let m = Message::Ping {
            seq: 1_000_000,
            from: id(1),
            updates: vec![],
        };
        assert!(m.encode().unwrap().len() <= 40);
    }

    #[test]
    fn rejects_bad_datagrams() {
        let b = Message::Ack {
            seq: 7,
            from: id(1),
            updates: vec![],
        }
        .encode()
        .unwrap();
        let mut v = b.clone();
        v[0] = 2;
        assert_eq!(Message::decode(&v), Err(WireError::UnknownVersion(2)));
        let mut t = b.clone();
        t.push(0);
        assert_eq!(Message::decode(&t), Err(WireError::TrailingBytes(1)));
        assert!(Message::decode(&b[..b.len() - 1]).is_err());
        assert!(Message::decode(&[]).is_err());
        assert!(matches!(
            Message::decode(&vec![1u8; 1401]),
            Err(WireError::TooLarge(1401))
        ));
        let big = Message::Gossip {
            from: id(1),
            updates: vec![Update::Record(vec![0; 1500])],
        };
        assert!(matches!(big.encode(), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn fact_kinds_go_to_releases_from_0_2_0_on() {
        for (s, reads) in [
            ("0.2.0", true),
            ("0.10.1", true),
            ("1.0.0-rc1", true),
            ("0.2.0+build", true),
            ("0.1.0", false),
            ("0.1.9", false),
            ("0.2", false),
            ("0.2.0.1", false),
            ("x.y.z", false),
            ("", false),
        ] {
            assert_eq!(reads_facts(s), reads, "{s:?}");
        }
        // This build is such a release.
        assert!(reads_facts(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn a_kind_from_a_newer_node_is_reported_as_unknown() {
        // A datagram whose kind index is past the last one this node knows
        // (as a newer node's added kinds are), then the sender id.
        let mut b = vec![WIRE_VERSION, 18];
        b.extend_from_slice(&[7; 32]);
        assert_eq!(Message::decode(&b), Err(WireError::UnknownKind(18)));
        assert_eq!(Datagram::decode(&b), Err(WireError::UnknownKind(18)));
        // The last kinds known decode.
        let m = Message::Cookie { cookie: [1; 8] };
        assert_eq!(m.encode().unwrap()[1], 16);
        let h = Message::Header {
            cookie: None,
            time: 1,
        };
        assert_eq!(h.encode().unwrap()[1], 17);
    }

    #[test]
    fn a_header_goes_before_one_message_and_costs_at_most_twenty_bytes() {
        let ping = Message::Ping {
            seq: u32::MAX,
            from: id(1),
            updates: vec![],
        };
        let plain = Datagram::encode(None, &ping).unwrap();
        assert_eq!(plain, ping.encode().unwrap());
        assert_eq!(
            Datagram::decode(&plain).unwrap(),
            Datagram {
                header: None,
                msg: ping.clone()
            }
        );
        let header = Some((Some([9u8; 8]), u64::MAX));
        let with = Datagram::encode(header, &ping).unwrap();
        assert!(
            with.len() - plain.len() <= 20,
            "{}",
            with.len() - plain.len()
        );
        // Every kind with an empty update list fits the budget, header
        // included.
        assert!(with.len() <= HEADER_BUDGET, "{}", with.len());
        assert_eq!(
            Datagram::decode(&with).unwrap(),
            Datagram { header, msg: ping }
        );
        // A header alone, two headers, or a header then garbage: malformed.
        let h = Message::Header {
            cookie: None,
            time: 5,
        };
        let alone = h.encode().unwrap();
        assert!(matches!(
            Datagram::decode(&alone),
            Err(WireError::Malformed(_))
        ));
        let twice = Datagram::encode(Some((None, 5)), &h).unwrap();
        assert!(matches!(
            Datagram::decode(&twice),
            Err(WireError::Malformed(_))
        ));
        let mut trailing = with.clone();
        trailing.push(0);
        assert_eq!(
            Datagram::decode(&trailing),
            Err(WireError::TrailingBytes(1))
        );
        // The header is kind 17, which releases before 0.3.0 do not know
        // (they drop the datagram and count it): it goes only to peers
        // that read it.
        assert_eq!(with[1], 17);
    }

    #[test]
    fn cookies_and_the_header_go_to_releases_from_0_3_0_on() {
        for (s, reads) in [
            ("0.3.0", true),
            ("0.3.0-rc1", true),
            ("1.0.0", true),
            ("0.2.0", false),
            ("0.2.9", false),
            ("", false),
        ] {
            assert_eq!(reads_cookies(s), reads, "{s:?}");
        }
        assert!(reads_cookies(env!("CARGO_PKG_VERSION")));
    }

    proptest! {
        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = Message::decode(&bytes);
            let _ = Datagram::decode(&bytes);
        }

        #[test]
        fn prop_ping_round_trip(seq in any::<u32>(), from in any::<[u8; 32]>(), recs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..5)) {
            let m = Message::Ping { seq, from: NodeId(from), updates: recs.into_iter().map(Update::Record).collect() };
            let b = m.encode().unwrap();
            prop_assert_eq!(Message::decode(&b).unwrap(), m);
        }
    }
}
