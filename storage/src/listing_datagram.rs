//! Listings in datagrams: the query and answer of [`crate::listing`],
//! each in one UDP datagram, sent to the server's node address (its
//! gossip socket, which hands them over by their first byte) instead of
//! over a TCP connection of their own (sans-IO: the bytes;
//! `client::datagram` and `server::datagram` drive them).
//!
//! Why: a TCP listing costs a connection, and under tokio a new
//! connection costs a turn of the I/O driver on each side (the client's
//! connect, the server's accept) that a request on an open session does
//! not. A datagram goes out on a socket already registered and its answer
//! comes back the same way, so a check by a client holding no session
//! costs about what one holding sessions does.
//!
//! * A query datagram is [`QUERY_BYTE`], then the query's payload exactly
//!   as over TCP ([`Query`]: version, nonce, storage index, client id),
//!   then zeros up to [`QUERY_DATAGRAM_LEN`] (1,200 bytes, as QUIC pads
//!   its first packets).
//! * An answer datagram is [`ANSWER_BYTE`], the query's nonce (so a client
//!   with many queries out on one socket knows which one it answers), then
//!   the answer's payload exactly as over TCP (entries and the pair-key
//!   tag, which covers the nonce).
//!
//! **No amplification**: a datagram's source address is not proved, so a
//! server answers only a query at least [`QUERY_DATAGRAM_LEN`] long, and
//! only with an answer no longer than the query ([`answer_datagram`]): a
//! forged query reflects at most its own size to its victim. An answer
//! that would be longer (more than 114 shares of one storage index on one
//! server: none in a grid's normal life) is not sent, and the client asks
//! over TCP. Datagrams can be lost as well: the client asks over TCP when
//! no answer comes in time (`client::listing`).

use grapevine_crypto::identity::Identity;

use crate::listing::{self, ListingError, Query, NONCE_LEN, QUERY_LEN};

/// First byte of a query datagram. The gossip socket hands datagrams
/// starting with it to the share server (membership datagrams start with
/// their wire version, 1).
pub const QUERY_BYTE: u8 = 0xc1;
/// First byte of an answer datagram.
pub const ANSWER_BYTE: u8 = 0xc2;
/// A query datagram's length, padding included; the most an answer may
/// be.
pub const QUERY_DATAGRAM_LEN: usize = 1200;
/// The longest query datagram a server takes (longer ones are not
/// queries, whatever their first byte).
pub const MAX_QUERY_DATAGRAM_LEN: usize = 1500;
/// Bytes of an answer datagram before the answer's payload.
const ANSWER_HEADER: usize = 1 + NONCE_LEN;

impl Query {
    /// The query as a datagram, padded to [`QUERY_DATAGRAM_LEN`].
    pub fn to_datagram(&self) -> Vec<u8> {
        let wire = self.to_wire();
        // `to_wire` is the TCP form: the mark and the frame's length,
        // then the payload.
        let payload = &wire[wire.len() - QUERY_LEN..];
        let mut out = Vec::with_capacity(QUERY_DATAGRAM_LEN);
        out.push(QUERY_BYTE);
        out.extend_from_slice(payload);
        out.resize(QUERY_DATAGRAM_LEN, 0);
        out
    }

    /// A query datagram, as the server reads it.
    ///
    /// # Errors
    /// [`ListingError::Malformed`] unless it is a query of this version,
    /// padded to at least [`QUERY_DATAGRAM_LEN`] and at most
    /// [`MAX_QUERY_DATAGRAM_LEN`] long.
    pub fn from_datagram(d: &[u8]) -> Result<Self, ListingError> {
        if d.len() < QUERY_DATAGRAM_LEN || d.len() > MAX_QUERY_DATAGRAM_LEN {
            return Err(ListingError::Malformed("query datagram length"));
        }
        if d[0] != QUERY_BYTE {
            return Err(ListingError::Malformed("query datagram mark"));
        }
        Query::from_payload(&d[1..=QUERY_LEN])
    }
}

/// The answer datagram to the query datagram `query` (of `query_len`
/// bytes, read as `q`) listing `shares`; `None` if it would be longer than
/// the query (see the module docs: the client then asks over TCP).
///
/// # Errors
/// [`ListingError::NoPairKey`] if the query's client id is no usable key.
pub fn answer_datagram(
    me: &Identity,
    q: &Query,
    query_len: usize,
    shares: &[(u16, u64)],
) -> Result<Option<Vec<u8>>, ListingError> {
    let frame = listing::answer(me, q, shares)?;
    // The TCP frame: 2 bytes of length, then the payload.
    let payload = &frame[2..];
    if ANSWER_HEADER + payload.len() > query_len {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(ANSWER_HEADER + payload.len());
    out.push(ANSWER_BYTE);
    out.extend_from_slice(&q.nonce);
    out.extend_from_slice(payload);
    Ok(Some(out))
}

/// The nonce an answer datagram names (which query it says it answers),
/// if it is shaped like one.
pub fn answer_nonce(d: &[u8]) -> Option<[u8; NONCE_LEN]> {
    if d.len() <= ANSWER_HEADER || d[0] != ANSWER_BYTE {
        return None;
    }
    d[1..ANSWER_HEADER].try_into().ok()
}

/// The entries of answer datagram `d`, if `server` made it for `me`'s
/// query `q`.
///
/// # Errors
/// As [`listing::open_answer`]; [`ListingError::Malformed`] for a datagram
/// that is no answer to `q`.
pub fn open_answer_datagram(
    me: &Identity,
    server: &grapevine_crypto::identity::NodeId,
    q: &Query,
    d: &[u8],
) -> Result<Vec<(u16, u64)>, ListingError> {
    if answer_nonce(d) != Some(q.nonce) {
        return Err(ListingError::Malformed("answer datagram for another query"));
    }
    listing::open_answer(me, server, q, &d[ANSWER_HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{StorageIndex, SI_LEN};

    fn q(client: &Identity) -> Query {
        Query::new(StorageIndex([7; SI_LEN]), client.node_id())
    }

    #[test]
    fn a_query_datagram_is_padded_and_read_back() {
        let q = q(&Identity::generate());
        let d = q.to_datagram();
        assert_eq!(d.len(), QUERY_DATAGRAM_LEN);
        assert_eq!(d[0], QUERY_BYTE);
        assert_eq!(Query::from_datagram(&d), Ok(q));
        // Longer padding is taken; shorter, or another first byte, is not.
        let mut longer = d.clone();
        longer.resize(MAX_QUERY_DATAGRAM_LEN, 0);
        assert_eq!(Query::from_datagram(&longer), Ok(q));
        longer.push(0);
        assert!(Query::from_datagram(&longer).is_err());
        assert_eq!(
            Query::from_datagram(&d[..QUERY_DATAGRAM_LEN - 1]),
            Err(ListingError::Malformed("query datagram length"))
        );
        assert_eq!(
            Query::from_datagram(&d[..1 + QUERY_LEN]),
            Err(ListingError::Malformed("query datagram length")),
            "an unpadded query is refused: its answer could be longer"
        );
        let mut other = d;
        other[0] = 1;
        assert!(Query::from_datagram(&other).is_err());
    }

    /// The answer is never longer than the query that asked for it.
    #[test]
    fn an_answer_datagram_is_no_longer_than_its_query() {
        let (server, client) = (Identity::generate(), Identity::generate());
        let q = q(&client);
        let few: Vec<(u16, u64)> = vec![(0, 10), (4, 10)];
        let d = answer_datagram(&server, &q, QUERY_DATAGRAM_LEN, &few)
            .unwrap()
            .unwrap();
        assert!(d.len() <= QUERY_DATAGRAM_LEN);
        assert_eq!(answer_nonce(&d), Some(q.nonce));
        assert_eq!(
            open_answer_datagram(&client, &server.node_id(), &q, &d),
            Ok(few)
        );
        // 114 entries fit in 1,200 bytes, 115 do not.
        let fits: Vec<(u16, u64)> = (0..114).map(|n| (n, 10)).collect();
        let d = answer_datagram(&server, &q, QUERY_DATAGRAM_LEN, &fits)
            .unwrap()
            .unwrap();
        assert!(d.len() <= QUERY_DATAGRAM_LEN, "{}", d.len());
        let many: Vec<(u16, u64)> = (0..115).map(|n| (n, 10)).collect();
        assert_eq!(
            answer_datagram(&server, &q, QUERY_DATAGRAM_LEN, &many),
            Ok(None)
        );
        // A longer query may have a longer answer, never past its length.
        let d = answer_datagram(&server, &q, MAX_QUERY_DATAGRAM_LEN, &many)
            .unwrap()
            .unwrap();
        assert!(d.len() <= MAX_QUERY_DATAGRAM_LEN);
    }

    #[test]
    fn an_answer_datagram_opens_only_for_its_query_and_server() {
        let (server, client) = (Identity::generate(), Identity::generate());
        let q1 = q(&client);
        let q2 = q(&client);
        let shares = vec![(1, 5)];
        let d = answer_datagram(&server, &q1, QUERY_DATAGRAM_LEN, &shares)
            .unwrap()
            .unwrap();
        assert_eq!(
            open_answer_datagram(&client, &server.node_id(), &q2, &d),
            Err(ListingError::Malformed("answer datagram for another query"))
        );
        // The nonce renamed to another query's: the tag says no.
        let mut renamed = d.clone();
        renamed[1..ANSWER_HEADER].copy_from_slice(&q2.nonce);
        assert_eq!(
            open_answer_datagram(&client, &server.node_id(), &q2, &renamed),
            Err(ListingError::BadTag)
        );
        let other = Identity::generate();
        assert_eq!(
            open_answer_datagram(&client, &other.node_id(), &q1, &d),
            Err(ListingError::BadTag)
        );
        assert_eq!(answer_nonce(&d[..ANSWER_HEADER]), None);
        assert_eq!(answer_nonce(&[QUERY_BYTE; 40]), None);
    }
}
