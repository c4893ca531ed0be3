//! Listings: "which shares of this storage index do you hold?" asked and
//! answered without a session (sans-IO: the bytes and their
//! authentication; `client::listing` and `server::listing` drive them).
//!
//! A check (`check` without `--verify`) only asks servers for their lists.
//! Over sessions, a client holding none opens one per server asked (ten
//! for a 3-of-10 file), and each is a Noise IK handshake: four X25519
//! multiplications a side, about 0.6 ms of CPU for both sides together,
//! which is most of a check. A listing costs a plain TCP connection,
//! closed after the answer, and a keyed hash on each side:
//!
//! * The client opens a connection to the server's storage address and
//!   sends [`QUERY_MARK`] (a zero length, which never starts a Noise
//!   handshake: every handshake message has bytes), then a frame (2-byte
//!   big-endian length, then that many bytes) holding the query:
//!   [`VERSION`], a fresh random 16-byte nonce, the storage index and the
//!   client's node id.
//! * The server answers with one frame: [`VERSION`], the number of entries
//!   (2 bytes), each entry (share number, 2 bytes; size, 8 bytes; all
//!   big-endian), and a 32-byte tag: the BLAKE3 keyed hash, under the
//!   pair key of the server and the client
//!   ([`grapevine_crypto::pair_key`]), of [`DOMAIN`], the server's node id,
//!   the client's, the nonce, the storage index and everything of the
//!   answer before the tag. Then it closes the connection.
//!
//! The pair key is an X25519 product of one side's secret and the other's
//! node id, so only the server and the client can make the tag: the client
//! checks it with the pair key of the node id it dialled, so an answer is
//! the server's own and made for this query; nobody on the path can forge
//! or replay one, just as over a session. Each side remembers the pair keys
//! it derived, so after the first contact a listing costs no public-key
//! operation at all (the first costs one X25519 product a side, about what
//! an ed25519 signature and its verification cost; format version 1 signed
//! every answer). A client naming another node's id gets an answer it
//! cannot read. What the answer says is a claim, as a listing over a
//! session is (`client::locate`).
//!
//! A server of a closed grid answers no listing (a query does not prove
//! who asks); its clients ask over sessions, which prove who they are.

use grapevine_crypto::identity::{Identity, NodeId};

use crate::types::{StorageIndex, MAX_SHARES, SI_LEN};

/// What a client sends instead of a handshake's length to ask for a
/// listing.
pub const QUERY_MARK: [u8; 2] = [0, 0];
/// The listing format's version (first byte of the query and the answer).
/// Version 1 (signed answers, no client id) is answered by no server
/// since: a client of it asks over sessions.
pub const VERSION: u8 = 2;
/// What a listing's tag covers first.
pub const DOMAIN: &[u8] = b"grapevine/listing v2\0";
/// Length of a query's nonce.
pub const NONCE_LEN: usize = 16;
/// Length of a node id.
const ID_LEN: usize = 32;
/// Length of a query frame's payload.
pub const QUERY_LEN: usize = 1 + NONCE_LEN + SI_LEN + ID_LEN;
/// Length of one entry of an answer.
const ENTRY_LEN: usize = 2 + 8;
/// Length of the tag ending an answer.
const TAG_LEN: usize = 32;
/// Largest answer payload: every share number a file can have.
pub const MAX_ANSWER_LEN: usize = 1 + 2 + ENTRY_LEN * MAX_SHARES as usize + TAG_LEN;

/// Why a listing's query or answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// Wrong length, version or entry count.
    #[error("malformed listing {0}")]
    Malformed(&'static str),
    /// The other side's node id is no key a pair key can be made with.
    #[error("no pair key with {0}")]
    NoPairKey(String),
    /// The tag is not the server's for this query and answer.
    #[error("listing answer not authenticated by the server")]
    BadTag,
}

/// A query: which shares of `si` the server holds, asked by `client`
/// under a fresh nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Random bytes making the answer this query's own.
    pub nonce: [u8; NONCE_LEN],
    /// The storage index asked about.
    pub si: StorageIndex,
    /// Who asks (the answer is authenticated for this node).
    pub client: NodeId,
}

impl Query {
    /// A query by `client` about `si` with a fresh random nonce.
    ///
    /// # Panics
    /// If the operating system's random source fails (as key generation
    /// would).
    pub fn new(si: StorageIndex, client: NodeId) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source");
        Query { nonce, si, client }
    }

    /// What the client sends: [`QUERY_MARK`], then the query's frame.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 2 + QUERY_LEN);
        out.extend_from_slice(&QUERY_MARK);
        out.extend_from_slice(&(QUERY_LEN as u16).to_be_bytes());
        out.push(VERSION);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.si.0);
        out.extend_from_slice(self.client.as_bytes());
        out
    }

    /// A query frame's payload, as the server reads it.
    ///
    /// # Errors
    /// [`ListingError::Malformed`] unless it is exactly a query of this
    /// version.
    pub fn from_payload(p: &[u8]) -> Result<Self, ListingError> {
        if p.len() != QUERY_LEN {
            return Err(ListingError::Malformed("query length"));
        }
        if p[0] != VERSION {
            return Err(ListingError::Malformed("query version"));
        }
        let (nonce, rest) = p[1..].split_at(NONCE_LEN);
        let (si, client) = rest.split_at(SI_LEN);
        Ok(Query {
            nonce: nonce.try_into().expect("NONCE_LEN bytes"),
            si: StorageIndex(si.try_into().expect("SI_LEN bytes")),
            client: NodeId(client.try_into().expect("ID_LEN bytes")),
        })
    }
}

/// The tag of an answer: under the pair key, the domain, both ids, the
/// query and the answer's bytes before the tag.
fn tag(key: &[u8; 32], server: &NodeId, q: &Query, body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(DOMAIN);
    h.update(server.as_bytes());
    h.update(q.client.as_bytes());
    h.update(&q.nonce);
    h.update(&q.si.0);
    h.update(body);
    h.finalize()
}

fn pair_key(me: &Identity, peer: &NodeId) -> Result<[u8; 32], ListingError> {
    me.pair_key(peer)
        .map_err(|_| ListingError::NoPairKey(peer.short()))
}

/// The server's answer to `q` listing `shares` (share number, size), as the
/// frame it sends (length first). Entries past [`MAX_SHARES`] are dropped
/// (a store holds no share numbers that high).
///
/// # Errors
/// [`ListingError::NoPairKey`] if the query's client id is no usable key.
pub fn answer(me: &Identity, q: &Query, shares: &[(u16, u64)]) -> Result<Vec<u8>, ListingError> {
    let key = pair_key(me, &q.client)?;
    let shares = &shares[..shares.len().min(usize::from(MAX_SHARES))];
    let len = 3 + ENTRY_LEN * shares.len() + TAG_LEN;
    let mut out = Vec::with_capacity(2 + len);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(VERSION);
    out.extend_from_slice(&(shares.len() as u16).to_be_bytes());
    for &(shnum, size) in shares {
        out.extend_from_slice(&shnum.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
    }
    let t = tag(&key, &me.node_id(), q, &out[2..]);
    out.extend_from_slice(t.as_bytes());
    Ok(out)
}

/// The entries of an answer frame's payload, if `server` made it for
/// `me`'s query `q`.
///
/// # Errors
/// [`ListingError::Malformed`] for a payload of the wrong shape,
/// [`ListingError::NoPairKey`] if `server` is no usable key,
/// [`ListingError::BadTag`] for an answer not made by `server` for `q`.
pub fn open_answer(
    me: &Identity,
    server: &NodeId,
    q: &Query,
    payload: &[u8],
) -> Result<Vec<(u16, u64)>, ListingError> {
    if payload.len() < 3 + TAG_LEN || payload.len() > MAX_ANSWER_LEN {
        return Err(ListingError::Malformed("answer length"));
    }
    if payload[0] != VERSION {
        return Err(ListingError::Malformed("answer version"));
    }
    let count = usize::from(u16::from_be_bytes([payload[1], payload[2]]));
    if payload.len() != 3 + ENTRY_LEN * count + TAG_LEN {
        return Err(ListingError::Malformed("answer entry count"));
    }
    let (body, t) = payload.split_at(payload.len() - TAG_LEN);
    let t: [u8; TAG_LEN] = t.try_into().expect("split at TAG_LEN");
    // blake3::Hash compares in constant time.
    if tag(&pair_key(me, server)?, server, q, body) != blake3::Hash::from_bytes(t) {
        return Err(ListingError::BadTag);
    }
    Ok(body[3..]
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let shnum = u16::from_be_bytes([e[0], e[1]]);
            let size = u64::from_be_bytes(e[2..].try_into().expect("8 bytes"));
            (shnum, size)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(client: &Identity) -> Query {
        Query::new(StorageIndex([7; SI_LEN]), client.node_id())
    }

    #[test]
    fn a_query_goes_over_the_wire_and_back() {
        let q = q(&Identity::generate());
        let wire = q.to_wire();
        assert_eq!(wire[..2], QUERY_MARK);
        assert_eq!(
            usize::from(u16::from_be_bytes([wire[2], wire[3]])),
            QUERY_LEN
        );
        assert_eq!(wire.len(), 4 + QUERY_LEN);
        assert_eq!(Query::from_payload(&wire[4..]), Ok(q));
        assert_ne!(
            Query::new(q.si, q.client).nonce,
            q.nonce,
            "a fresh nonce each time"
        );
        assert!(Query::from_payload(&wire[4..wire.len() - 1]).is_err());
        let mut v1 = wire[4..].to_vec();
        v1[0] = 1;
        assert_eq!(
            Query::from_payload(&v1),
            Err(ListingError::Malformed("query version"))
        );
    }

    /// An answer opens only with the pair key of the server dialled and
    /// the client that asked, for the query it answered, unchanged.
    #[test]
    fn an_answer_opens_only_as_made_by_the_server_for_its_query() {
        let (server, client) = (Identity::generate(), Identity::generate());
        let id = server.node_id();
        let q = q(&client);
        let shares = vec![(0, 1000), (3, 1000), (9, 1000)];
        let frame = answer(&server, &q, &shares).unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[0], frame[1]])),
            frame.len() - 2
        );
        let payload = &frame[2..];
        assert_eq!(open_answer(&client, &id, &q, payload), Ok(shares.clone()));
        // Another server's answer, another query's, a changed entry.
        let other = Identity::generate();
        assert_eq!(
            open_answer(&client, &id, &q, &answer(&other, &q, &shares).unwrap()[2..]),
            Err(ListingError::BadTag)
        );
        let replayed = Query::new(q.si, q.client);
        assert_eq!(
            open_answer(&client, &id, &replayed, payload),
            Err(ListingError::BadTag),
            "an answer to one query is no answer to another"
        );
        let elsewhere = Query {
            si: StorageIndex([8; SI_LEN]),
            ..q
        };
        assert_eq!(
            open_answer(&client, &id, &elsewhere, payload),
            Err(ListingError::BadTag)
        );
        let mut changed = payload.to_vec();
        changed[4] ^= 1;
        assert_eq!(
            open_answer(&client, &id, &q, &changed),
            Err(ListingError::BadTag)
        );
        // An answer made for another client opens for nobody else.
        let third = Identity::generate();
        assert_eq!(
            open_answer(
                &third,
                &id,
                &Query {
                    client: third.node_id(),
                    ..q
                },
                payload
            ),
            Err(ListingError::BadTag)
        );
        assert_eq!(
            open_answer(&client, &id, &q, &answer(&server, &q, &[]).unwrap()[2..]),
            Ok(vec![])
        );
    }

    /// A query naming a node id that is no key gets no answer, and an
    /// answer attributed to one is not opened.
    #[test]
    fn no_pair_key_no_listing() {
        let (server, client) = (Identity::generate(), Identity::generate());
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let q = Query::new(StorageIndex([7; SI_LEN]), NodeId(weak));
        assert!(matches!(
            answer(&server, &q, &[(1, 1)]),
            Err(ListingError::NoPairKey(_))
        ));
        let q = Query::new(StorageIndex([7; SI_LEN]), client.node_id());
        let frame = answer(&server, &q, &[(1, 1)]).unwrap();
        assert!(matches!(
            open_answer(&client, &NodeId(weak), &q, &frame[2..]),
            Err(ListingError::NoPairKey(_))
        ));
    }

    /// Whatever bytes arrive, opening an answer returns an error or the
    /// entries, never panics, and never believes a count the bytes do not
    /// hold.
    #[test]
    fn malformed_answers_are_refused() {
        let (server, client) = (Identity::generate(), Identity::generate());
        let id = server.node_id();
        let q = q(&client);
        let open = |p: &[u8]| open_answer(&client, &id, &q, p);
        let good = answer(&server, &q, &[(1, 5), (2, 5)]).unwrap()[2..].to_vec();
        assert!(open(&good).is_ok());
        for cut in 0..good.len() {
            assert!(open(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut count = good.clone();
        count[2] = 3;
        assert_eq!(
            open(&count),
            Err(ListingError::Malformed("answer entry count"))
        );
        let mut version = good.clone();
        version[0] = 1;
        assert_eq!(
            open(&version),
            Err(ListingError::Malformed("answer version"))
        );
        assert!(open(&vec![0u8; MAX_ANSWER_LEN + 1]).is_err());
        // The largest answer a server sends fits the client's limit.
        let all: Vec<(u16, u64)> = (0..MAX_SHARES + 10).map(|s| (s, 1)).collect();
        let big = answer(&server, &q, &all).unwrap();
        assert_eq!(big.len() - 2, MAX_ANSWER_LEN);
        assert_eq!(open(&big[2..]).unwrap().len(), usize::from(MAX_SHARES));
    }
}
