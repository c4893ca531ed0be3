//! Signed listings: "which shares of this storage index do you hold?"
//! asked and answered without a session (sans-IO: the bytes, the signature
//! and their checks; `client::listing` and `server::listing` drive them).
//!
//! A check (`check` without `--verify`) only asks servers for their lists.
//! Over sessions, a client holding none opens one per server asked (ten
//! for a 3-of-10 file), and each is a Noise IK handshake: four X25519
//! multiplications a side, about 0.6 ms of CPU for both sides together,
//! which is most of a check. A listing costs the server one ed25519
//! signature and the client one verification, over a plain TCP connection
//! closed after the answer:
//!
//! * The client opens a connection to the server's storage address and
//!   sends [`QUERY_MARK`] (a zero length, which never starts a Noise
//!   handshake: every handshake message has bytes), then a frame (2-byte
//!   big-endian length, then that many bytes) holding the query:
//!   [`VERSION`], a fresh random 16-byte nonce and the storage index.
//! * The server answers with one frame: [`VERSION`], the number of entries
//!   (2 bytes), each entry (share number, 2 bytes; size, 8 bytes; all
//!   big-endian), and its ed25519 signature over [`DOMAIN`], its own node
//!   id, the nonce, the storage index and everything of the answer before
//!   the signature. Then it closes the connection.
//!
//! The client checks the signature with the node id it dialled, so an
//! answer is the server's own and made for this query: nobody on the path
//! can forge or replay one, just as over a session. What the answer says
//! is a claim, as a listing over a session is (`client::locate`).
//!
//! A server of a closed grid answers no listing (it does not know who
//! asks); its clients ask over sessions, which prove who they are.

use grapevine_crypto::identity::{Identity, NodeId};

use crate::types::{StorageIndex, MAX_SHARES, SI_LEN};

/// What a client sends instead of a handshake's length to ask for a
/// listing.
pub const QUERY_MARK: [u8; 2] = [0, 0];
/// The listing format's version (first byte of the query and the answer).
pub const VERSION: u8 = 1;
/// What a listing's signature covers first.
pub const DOMAIN: &[u8] = b"grapevine/listing v1\0";
/// Length of a query's nonce.
pub const NONCE_LEN: usize = 16;
/// Length of a query frame's payload.
pub const QUERY_LEN: usize = 1 + NONCE_LEN + SI_LEN;
/// Length of one entry of an answer.
const ENTRY_LEN: usize = 2 + 8;
/// Length of the signature ending an answer.
const SIG_LEN: usize = 64;
/// Largest answer payload: every share number a file can have.
pub const MAX_ANSWER_LEN: usize = 1 + 2 + ENTRY_LEN * MAX_SHARES as usize + SIG_LEN;

/// Why a listing's query or answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// Wrong length, version or entry count.
    #[error("malformed listing {0}")]
    Malformed(&'static str),
    /// The signature is not the server's over this query and answer.
    #[error("listing signature does not verify")]
    BadSignature,
}

/// A query: which shares of `si` the server holds, under a fresh nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Random bytes making the answer this query's own.
    pub nonce: [u8; NONCE_LEN],
    /// The storage index asked about.
    pub si: StorageIndex,
}

impl Query {
    /// A query about `si` with a fresh random nonce.
    ///
    /// # Panics
    /// If the operating system's random source fails (as key generation
    /// would).
    pub fn new(si: StorageIndex) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source");
        Query { nonce, si }
    }

    /// What the client sends: [`QUERY_MARK`], then the query's frame.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 2 + QUERY_LEN);
        out.extend_from_slice(&QUERY_MARK);
        out.extend_from_slice(&(QUERY_LEN as u16).to_be_bytes());
        out.push(VERSION);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.si.0);
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
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&p[1..1 + NONCE_LEN]);
        let mut si = [0u8; SI_LEN];
        si.copy_from_slice(&p[1 + NONCE_LEN..]);
        Ok(Query {
            nonce,
            si: StorageIndex(si),
        })
    }
}

/// What the signature covers: the domain, the server's id, the query and
/// the answer's bytes before the signature.
fn signed_bytes(server: &NodeId, q: &Query, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 32 + QUERY_LEN + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(server.as_bytes());
    m.extend_from_slice(&q.nonce);
    m.extend_from_slice(&q.si.0);
    m.extend_from_slice(body);
    m
}

/// The server's answer to `q` listing `shares` (share number, size), as the
/// frame it sends (length first). Entries past [`MAX_SHARES`] are dropped
/// (a store holds no share numbers that high).
pub fn answer(me: &Identity, q: &Query, shares: &[(u16, u64)]) -> Vec<u8> {
    let shares = &shares[..shares.len().min(usize::from(MAX_SHARES))];
    let mut body = Vec::with_capacity(3 + ENTRY_LEN * shares.len());
    body.push(VERSION);
    body.extend_from_slice(&(shares.len() as u16).to_be_bytes());
    for &(shnum, size) in shares {
        body.extend_from_slice(&shnum.to_be_bytes());
        body.extend_from_slice(&size.to_be_bytes());
    }
    let sig = me.sign(&signed_bytes(&me.node_id(), q, &body));
    let len = body.len() + SIG_LEN;
    let mut out = Vec::with_capacity(2 + len);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&sig);
    out
}

/// An answer of the right shape whose signature is not verified yet
/// ([`Unverified::verify`], or [`verify_all`] for many at once).
#[derive(Debug, Clone)]
pub struct Unverified {
    server: NodeId,
    signed: Vec<u8>,
    sig: [u8; SIG_LEN],
    entries: Vec<(u16, u64)>,
}

impl Unverified {
    /// The entries, if the signature is `server`'s over this query.
    ///
    /// # Errors
    /// [`ListingError::BadSignature`].
    pub fn verify(self) -> Result<Vec<(u16, u64)>, ListingError> {
        self.server
            .verify(&self.signed, &self.sig)
            .map_err(|_| ListingError::BadSignature)?;
        Ok(self.entries)
    }
}

/// Verify many answers (a check's, one per server) with one batch
/// verification; if the batch fails, each is verified alone, so one bad
/// answer costs only its own.
pub fn verify_all(answers: Vec<Unverified>) -> Vec<Result<Vec<(u16, u64)>, ListingError>> {
    if answers.len() > 1 {
        let items: Vec<(NodeId, &[u8], [u8; SIG_LEN])> = answers
            .iter()
            .map(|a| (a.server, a.signed.as_slice(), a.sig))
            .collect();
        if grapevine_crypto::identity::verify_batch(&items).is_ok() {
            return answers.into_iter().map(|a| Ok(a.entries)).collect();
        }
    }
    answers.into_iter().map(Unverified::verify).collect()
}

/// An answer frame's payload, checked for shape, as `server`'s answer to
/// `q`: its signature is checked by [`Unverified::verify`].
///
/// # Errors
/// [`ListingError::Malformed`] for a payload of the wrong shape.
pub fn parse_answer(
    server: &NodeId,
    q: &Query,
    payload: &[u8],
) -> Result<Unverified, ListingError> {
    if payload.len() < 3 + SIG_LEN || payload.len() > MAX_ANSWER_LEN {
        return Err(ListingError::Malformed("answer length"));
    }
    if payload[0] != VERSION {
        return Err(ListingError::Malformed("answer version"));
    }
    let count = usize::from(u16::from_be_bytes([payload[1], payload[2]]));
    if payload.len() != 3 + ENTRY_LEN * count + SIG_LEN {
        return Err(ListingError::Malformed("answer entry count"));
    }
    let (body, sig) = payload.split_at(payload.len() - SIG_LEN);
    let sig: [u8; SIG_LEN] = sig.try_into().expect("split at SIG_LEN");
    let entries = body[3..]
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let shnum = u16::from_be_bytes([e[0], e[1]]);
            let size = u64::from_be_bytes(e[2..].try_into().expect("8 bytes"));
            (shnum, size)
        })
        .collect();
    Ok(Unverified {
        server: *server,
        signed: signed_bytes(server, q, body),
        sig,
        entries,
    })
}

/// The entries of an answer frame's payload, if `server` signed it for `q`.
///
/// # Errors
/// [`ListingError::Malformed`] for a payload of the wrong shape,
/// [`ListingError::BadSignature`] for one not signed by `server` for `q`.
pub fn open_answer(
    server: &NodeId,
    q: &Query,
    payload: &[u8],
) -> Result<Vec<(u16, u64)>, ListingError> {
    parse_answer(server, q, payload)?.verify()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Query {
        Query::new(StorageIndex([7; SI_LEN]))
    }

    #[test]
    fn a_query_goes_over_the_wire_and_back() {
        let q = q();
        let wire = q.to_wire();
        assert_eq!(wire[..2], QUERY_MARK);
        assert_eq!(
            usize::from(u16::from_be_bytes([wire[2], wire[3]])),
            QUERY_LEN
        );
        assert_eq!(Query::from_payload(&wire[4..]), Ok(q));
        assert_ne!(Query::new(q.si).nonce, q.nonce, "a fresh nonce each time");
        assert!(Query::from_payload(&wire[4..wire.len() - 1]).is_err());
        let mut v2 = wire[4..].to_vec();
        v2[0] = 2;
        assert_eq!(
            Query::from_payload(&v2),
            Err(ListingError::Malformed("query version"))
        );
    }

    /// An answer opens only with the server's key, for the query it
    /// answered, unchanged.
    #[test]
    fn an_answer_verifies_only_as_signed_for_its_query() {
        let server = Identity::generate();
        let id = server.node_id();
        let q = q();
        let shares = vec![(0, 1000), (3, 1000), (9, 1000)];
        let frame = answer(&server, &q, &shares);
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[0], frame[1]])),
            frame.len() - 2
        );
        let payload = &frame[2..];
        assert_eq!(open_answer(&id, &q, payload), Ok(shares.clone()));
        // Another server's signature, another query's, a changed entry.
        let other = Identity::generate();
        assert_eq!(
            open_answer(&id, &q, &answer(&other, &q, &shares)[2..]),
            Err(ListingError::BadSignature)
        );
        let replayed = Query::new(q.si);
        assert_eq!(
            open_answer(&id, &replayed, payload),
            Err(ListingError::BadSignature),
            "an answer to one query is no answer to another"
        );
        let elsewhere = Query {
            si: StorageIndex([8; SI_LEN]),
            ..q
        };
        assert_eq!(
            open_answer(&id, &elsewhere, payload),
            Err(ListingError::BadSignature)
        );
        let mut changed = payload.to_vec();
        changed[4] ^= 1;
        assert_eq!(
            open_answer(&id, &q, &changed),
            Err(ListingError::BadSignature)
        );
        assert_eq!(
            open_answer(&id, &q, &answer(&server, &q, &[])[2..]),
            Ok(vec![])
        );
    }

    /// Answers verified together come out as verified alone: a batch with
    /// one bad answer among good ones refuses that one only.
    #[test]
    fn answers_verified_in_a_batch_get_each_its_own_verdict() {
        let servers: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
        let q = q();
        let parsed = |i: usize, signer: &Identity| {
            let frame = answer(signer, &q, &[(i as u16, 9)]);
            parse_answer(&servers[i].node_id(), &q, &frame[2..]).unwrap()
        };
        let good: Vec<Unverified> = (0..4).map(|i| parsed(i, &servers[i])).collect();
        let out = verify_all(good);
        assert_eq!(
            out,
            (0..4).map(|i| Ok(vec![(i as u16, 9)])).collect::<Vec<_>>()
        );
        let stranger = Identity::generate();
        let mixed = vec![
            parsed(0, &servers[0]),
            parsed(1, &stranger),
            parsed(2, &servers[2]),
        ];
        assert_eq!(
            verify_all(mixed),
            vec![
                Ok(vec![(0, 9)]),
                Err(ListingError::BadSignature),
                Ok(vec![(2, 9)])
            ]
        );
        assert_eq!(
            verify_all(vec![parsed(3, &stranger)]),
            vec![Err(ListingError::BadSignature)]
        );
        assert!(verify_all(Vec::new()).is_empty());
    }

    /// Whatever bytes arrive, opening an answer returns an error or the
    /// entries, never panics, and never believes a count the bytes do not
    /// hold.
    #[test]
    fn malformed_answers_are_refused() {
        let server = Identity::generate();
        let id = server.node_id();
        let q = q();
        let good = answer(&server, &q, &[(1, 5), (2, 5)])[2..].to_vec();
        for cut in 0..good.len() {
            assert!(open_answer(&id, &q, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut count = good.clone();
        count[2] = 3;
        assert_eq!(
            open_answer(&id, &q, &count),
            Err(ListingError::Malformed("answer entry count"))
        );
        let mut version = good.clone();
        version[0] = 0;
        assert_eq!(
            open_answer(&id, &q, &version),
            Err(ListingError::Malformed("answer version"))
        );
        assert!(open_answer(&id, &q, &vec![0u8; MAX_ANSWER_LEN + 1]).is_err());
        // The largest answer a server sends fits the client's limit.
        let all: Vec<(u16, u64)> = (0..MAX_SHARES + 10).map(|s| (s, 1)).collect();
        let big = answer(&server, &q, &all);
        assert_eq!(big.len() - 2, MAX_ANSWER_LEN);
        assert_eq!(
            open_answer(&id, &q, &big[2..]).unwrap().len(),
            usize::from(MAX_SHARES)
        );
    }
}
