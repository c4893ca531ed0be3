//! The fuzz targets' bodies, one function per decoder fed from the network
//! or a disk, built on stable Rust.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is one line that hands libFuzzer's
//! input to the function of the same name here, and
//! `tests/corpus_replay.rs` feeds every file committed under
//! `fuzz/corpus/<name>` to the same function. So the targets and the
//! corpora keep building with the code they test, and an input that once
//! found a bug (or any input the corpus holds) fails CI if it panics
//! again. The functions panic exactly when the code under test breaks an
//! invariant the target asserts (a round trip that differs, a server answer
//! that does not decode); errors for bad input are expected and ignored.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod gossip;

use std::sync::{Arc, OnceLock};

use grapevine_crypto::{Identity, LocationRecord, SessionConfig, SignedRecord};

/// The names of the fuzz targets, which are also the corpus directories.
pub const TARGETS: [&str; 8] = [
    "record",
    "gossip",
    "frames",
    "handshake",
    "storage_request",
    "share_file",
    "capability",
    "listing",
];

/// Run the target called `name` on `data`.
///
/// # Panics
/// If `name` is not one of [`TARGETS`], or the target's invariant breaks.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "record" => record(data),
        "gossip" => gossip(data),
        "frames" => frames(data),
        "handshake" => handshake(data),
        "storage_request" => storage_request(data),
        "share_file" => share_file(data),
        "capability" => capability(data),
        "listing" => listing(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// One identity and its signed record, made once per process.
fn me() -> &'static (Arc<Identity>, SignedRecord) {
    static ME: OnceLock<(Arc<Identity>, SignedRecord)> = OnceLock::new();
    ME.get_or_init(|| {
        let id = Arc::new(Identity::generate());
        let rec = LocationRecord::new(&id, vec!["10.0.0.1:1".parse().expect("address")])
            .sign(&id)
            .expect("sign");
        (id, rec)
    })
}

/// Location records as they arrive from gossip or a handshake: a verified
/// record re-encodes to exactly the bytes it came from.
pub fn record(data: &[u8]) {
    if let Ok(u) = grapevine_crypto::UnverifiedRecord::parse(data) {
        if let Ok(rec) = u.verify() {
            assert_eq!(
                rec.bytes(),
                data,
                "a verified record re-encodes differently"
            );
        }
    }
}

/// Gossip datagrams: the decoders (a decoded message re-encodes), then a
/// live SWIM core with members in every state fed the input, whole and as
/// chunks from members and strangers (see [`gossip`](mod@gossip)).
pub fn gossip(data: &[u8]) {
    use grapevine_membership::wire::{Datagram, Message};
    if let Ok(m) = Message::decode(data) {
        let _ = m.encode();
    }
    if let Ok(d) = Datagram::decode(data) {
        let again = Datagram::encode(d.header, &d.msg).expect("a decoded datagram encodes");
        assert_eq!(
            Datagram::decode(&again),
            Ok(d),
            "a datagram changed in a round trip"
        );
    }
    let _ = gossip::gossip_core(data);
}

/// Session framing: a byte stream split into length-prefixed frames, fed
/// in uneven pieces as a socket would; no frame is empty.
pub fn frames(data: &[u8]) {
    let mut d = grapevine_crypto::noise::FrameDecoder::default();
    for chunk in data.chunks(7) {
        d.extend(chunk);
        while let Ok(Some(f)) = d.next_frame() {
            assert!(!f.is_empty(), "an empty frame was decoded");
        }
    }
}

/// The first handshake message, as a responder receives it from anyone.
pub fn handshake(data: &[u8]) {
    let (id, rec) = me();
    let _ = grapevine_crypto::noise::ResponderHandshake::respond(
        id,
        rec,
        data,
        &SessionConfig::default(),
    );
}

/// Storage requests and responses, and a share server answering them:
/// every answer the server gives decodes, and a request whose header
/// (version and id) decodes is answered under its own id, whatever follows
/// (an unknown kind, a newer version, fields that do not decode).
pub fn storage_request(data: &[u8]) {
    use grapevine_storage::protocol::{decode, peek_header, RequestMsg, ResponseMsg};
    use grapevine_storage::server::ShareServer;
    use grapevine_storage::ShareStore;
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("gv-fuzz-store-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temporary store directory");
        d
    });
    let _ = decode::<ResponseMsg>(data);
    // Valid requests, and anything in versions 0 to 2 (the refusals).
    if decode::<RequestMsg>(data).is_ok() || data.first().is_some_and(|&v| v <= 2) {
        let store = ShareStore::open(dir, 0).expect("store");
        let mut srv = ShareServer::new(store);
        let out = srv.handle_bytes(data).joined();
        let answer: ResponseMsg = decode(&out).expect("the server's answers decode");
        if let Some((_, id)) = peek_header(data) {
            assert_eq!(answer.id, id, "answered under another id");
        }
    }
}

/// Share contents as read back from a server or a disk: the footer and the
/// URI extension block checked against a capability.
pub fn share_file(data: &[u8]) {
    use grapevine_storage::cap::ReadCap;
    use grapevine_storage::chk::{Encoder, Footer, Params, Ueb};
    static CAP: OnceLock<ReadCap> = OnceLock::new();
    let cap = CAP.get_or_init(|| {
        let mut enc = Encoder::new([3; 32], Params::default(), 1000).expect("encoder");
        let buf = vec![5u8; 1000];
        enc.encode_segment(&buf).expect("segment");
        enc.finish().expect("finish").1
    });
    let _ = Footer::parse(data, data.len() as u64 + 1000);
    let _ = Ueb::decode_checked(data, cap);
}

/// Capability strings and admission certificates, as users paste them: a
/// parsed capability prints to a string that parses to the same one.
pub fn capability(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = s.parse::<grapevine_storage::Cap>() {
            let again: grapevine_storage::Cap = c.to_string().parse().expect("round trip");
            assert_eq!(again, c, "a capability changed in a round trip");
        }
        let _ = s.parse::<grapevine_crypto::Admission>();
    }
}

/// The server whose listings [`listing`] opens, the client that asked
/// and its query (fixed, so that seeds made by the server reach the tag
/// check).
pub fn listing_fixture() -> (Identity, Identity, grapevine_storage::listing::Query) {
    let client = Identity::from_seed([8; 32]);
    let q = grapevine_storage::listing::Query {
        nonce: [1; 16],
        si: grapevine_storage::StorageIndex([2; 16]),
        client: client.node_id(),
    };
    (Identity::from_seed([7; 32]), client, q)
}

/// Listings: the bytes as a server reads a query and as a client reads an
/// answer, over TCP and in datagrams. An answer that opens lists at most
/// 256 shares, and an answer the server makes for the query read back
/// opens to what it listed; a datagram answer is never longer than the
/// query datagram it answers.
pub fn listing(data: &[u8]) {
    use grapevine_storage::listing::{answer, open_answer, Query};
    use grapevine_storage::listing_datagram::{answer_datagram, open_answer_datagram};
    type Fixture = (Identity, Identity, Query);
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let (server, client, q) = FIXTURE.get_or_init(listing_fixture);
    if let Ok(asked) = Query::from_payload(data) {
        assert_eq!(Query::from_payload(&asked.to_wire()[4..]), Ok(asked));
    }
    if let Ok(entries) = open_answer(client, &server.node_id(), q, data) {
        assert!(
            entries.len() <= 256,
            "a listing of {} shares",
            entries.len()
        );
        let again = answer(server, q, &entries).expect("the fixture's ids are keys");
        assert_eq!(
            open_answer(client, &server.node_id(), q, &again[2..]),
            Ok(entries),
            "an answer made again opens to the same entries"
        );
    }
    if let Ok(asked) = Query::from_datagram(data) {
        assert_eq!(Query::from_datagram(&asked.to_datagram()), Ok(asked));
        if let Ok(Some(d)) = answer_datagram(server, &asked, data.len(), &[(0, 1), (9, 2)]) {
            assert!(d.len() <= data.len(), "an answer longer than its query");
        }
    }
    if let Ok(entries) = open_answer_datagram(client, &server.node_id(), q, data) {
        assert!(entries.len() <= 256);
        let again = answer_datagram(server, q, data.len(), &entries)
            .expect("the fixture's ids are keys")
            .expect("no longer than what it was made from");
        assert_eq!(again, data, "a datagram answer is made one way only");
    }
}
