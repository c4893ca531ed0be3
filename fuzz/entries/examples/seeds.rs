//! Write well-formed seed inputs into `fuzz/corpus/<target>/seed-*`: valid
//! signed records, capabilities, admission certificates, gossip messages
//! and storage requests. Random bytes almost never reach past a decoder's
//! first checks; these seeds let the fuzzer (and CI's corpus replay) start
//! from inputs that go all the way through. Deterministic: rerunning after
//! a format change rewrites the same files with the new bytes.
//!
//! `cargo run -p grapevine-fuzz-entries --example seeds`

use std::path::PathBuf;
use std::sync::Arc;

use grapevine_crypto::testing::{record_for, rng};
use grapevine_crypto::{Admission, Identity};
use grapevine_membership::wire::{liveness_message, BucketEntries, FactEntries, Message, Update};
use grapevine_storage::chk::{Encoder, Params};
use grapevine_storage::protocol::{encode, Request, RequestMsg};
use grapevine_storage::{Cap, StorageIndex};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn main() {
    let me = Arc::new(Identity::generate_with(&mut rng(1)));
    let other = Identity::generate_with(&mut rng(2));
    let grid = Identity::generate_with(&mut rng(3));

    // Records: plain, with nickname and several addresses, with admission.
    let plain = record_for(&other, "10.0.0.2:7946")
        .sign(&other)
        .expect("sign");
    write("record", "plain", plain.bytes());
    let mut r = record_for(&other, "10.0.0.2:7946");
    r.nickname = Some("seed-node".into());
    r.addrs.push("[2001:db8::2]:7946".parse().expect("address"));
    r.seq = 42;
    write("record", "full", r.sign(&other).expect("sign").bytes());
    let adm = Admission::issue(&grid, &other.node_id(), 4_000_000_000);
    let mut r = record_for(&other, "10.0.0.2:7946");
    r.admission = Some(Box::new(adm));
    write("record", "admitted", r.sign(&other).expect("sign").bytes());

    // Capabilities and admission certificates as text.
    let mut enc = Encoder::new([7; 32], Params::default(), 5000).expect("encoder");
    let seg = vec![9u8; 5000];
    enc.encode_segment(&seg).expect("segment");
    let cap = enc.finish().expect("finish").1;
    write("capability", "chk", Cap::Chk(cap).to_string().as_bytes());
    write(
        "capability",
        "lit",
        Cap::Lit(b"hello".to_vec()).to_string().as_bytes(),
    );
    write("capability", "admission", adm.to_string().as_bytes());

    // Gossip: each message kind once, with real records and signatures.
    let rec = plain.bytes().to_vec();
    let alive_sig = other.sign(&grapevine_membership::wire::liveness_message(
        "alive",
        &other.node_id(),
        7,
    ));
    let msgs = [
        (
            "ping",
            Message::Ping {
                seq: 1,
                from: other.node_id(),
                updates: vec![
                    Update::Record(rec.clone()),
                    Update::Alive {
                        id: other.node_id(),
                        incarnation: 7,
                        sig: alive_sig,
                    },
                ],
            },
        ),
        (
            "ack",
            Message::Ack {
                seq: 1,
                from: other.node_id(),
                updates: vec![Update::Suspect {
                    id: other.node_id(),
                    incarnation: 1,
                }],
            },
        ),
        (
            "pingreq",
            Message::PingReq {
                seq: 2,
                from: other.node_id(),
                target: me.node_id(),
                target_addr: "10.0.0.1:1".parse().expect("address"),
            },
        ),
        (
            "join",
            Message::Join {
                record: rec.clone(),
            },
        ),
        (
            "joinack",
            Message::JoinAck {
                record: rec.clone(),
            },
        ),
        (
            "gossip",
            Message::Gossip {
                from: other.node_id(),
                updates: vec![Update::Dead {
                    id: other.node_id(),
                    incarnation: 3,
                }],
            },
        ),
        (
            "digest",
            Message::SyncDigest {
                from: other.node_id(),
                root: 12345,
                count: 2,
            },
        ),
        (
            "buckets",
            Message::SyncBuckets {
                from: other.node_id(),
                hashes: vec![1; grapevine_membership::wire::BUCKETS],
            },
        ),
        (
            "have",
            Message::SyncHave {
                from: other.node_id(),
                buckets: vec![BucketEntries {
                    bucket: other.node_id().0[0],
                    entries: vec![(other.node_id().0[..8].try_into().expect("8"), 9)],
                }],
            },
        ),
        (
            "want",
            Message::SyncWant {
                from: other.node_id(),
                prefixes: vec![me.node_id().0[..8].try_into().expect("8")],
            },
        ),
        (
            "records",
            Message::SyncRecords {
                from: other.node_id(),
                records: vec![rec],
            },
        ),
        (
            "digests",
            Message::SyncDigests {
                from: other.node_id(),
                root: 12345,
                count: 2,
                fact_root: 54321,
            },
        ),
        (
            "fact-buckets",
            Message::FactBuckets {
                from: other.node_id(),
                hashes: vec![1; grapevine_membership::wire::BUCKETS],
            },
        ),
        (
            "fact-have",
            Message::FactHave {
                from: other.node_id(),
                buckets: vec![FactEntries {
                    bucket: other.node_id().0[0],
                    entries: vec![(other.node_id().0[..8].try_into().expect("8"), 9, true)],
                }],
            },
        ),
        (
            "fact-want",
            Message::FactWant {
                from: other.node_id(),
                prefixes: vec![me.node_id().0[..8].try_into().expect("8")],
            },
        ),
        (
            "sync-facts",
            Message::SyncFacts {
                from: other.node_id(),
                updates: vec![
                    Update::Alive {
                        id: other.node_id(),
                        incarnation: 8,
                        sig: other.sign(&liveness_message("alive", &other.node_id(), 8)),
                    },
                    Update::Left {
                        id: other.node_id(),
                        incarnation: 9,
                        sig: other.sign(&liveness_message("left", &other.node_id(), 9)),
                    },
                ],
            },
        ),
    ];
    for (name, m) in msgs {
        write("gossip", name, &m.encode().expect("fits a datagram"));
    }
    write(
        "gossip",
        "cookie",
        &Message::Cookie { cookie: [7; 8] }.encode().expect("fits"),
    );
    write(
        "gossip",
        "header",
        &grapevine_membership::wire::Datagram::encode(
            Some((Some([7; 8]), 1_700_000_000)),
            &Message::Ping {
                seq: 3,
                from: other.node_id(),
                updates: vec![],
            },
        )
        .expect("fits"),
    );

    // Chunked inputs for the core with members (fuzz/entries/src/gossip.rs):
    // accusations of the node and of members, a leave, a sync round echoing
    // the cookie the node gave.
    use grapevine_fuzz_entries::gossip::{chunk, me as node, member, SEQ};
    let m2 = member(2);
    let accuse = |id, dead| Message::Gossip {
        from: m2,
        updates: vec![if dead {
            Update::Dead {
                id,
                incarnation: SEQ,
            }
        } else {
            Update::Suspect {
                id,
                incarnation: SEQ,
            }
        }],
    };
    let digests = Message::SyncDigests {
        from: m2,
        root: 1,
        count: 9,
        fact_root: 1,
    };
    let mut sync = chunk(0, &digests);
    sync.extend(chunk(4, &digests));
    let chunked = [
        ("members-accuse-node", chunk(0, &accuse(node(), false))),
        ("members-dead-member", chunk(3, &accuse(member(2), true))),
        ("members-suspect-refuted", {
            let mut v = chunk(1, &accuse(member(3), true));
            v.extend(chunk(0, &accuse(node(), true)));
            v
        }),
        ("members-sync-with-cookie", sync),
    ];
    for (name, bytes) in chunked {
        write("gossip", name, &bytes);
    }

    // Storage requests: an allocate, write, close, list, read, verify.
    let si = StorageIndex([5; 16]);
    let reqs = [
        ("version", Request::Version),
        (
            "allocate",
            Request::Allocate {
                si,
                shnum: 1,
                size: 10,
            },
        ),
        (
            "write",
            Request::Write {
                si,
                shnum: 1,
                offset: 0,
                data: b"0123456789".to_vec(),
            },
        ),
        ("close", Request::Close { si, shnum: 1 }),
        ("list", Request::List { si }),
        (
            "read",
            Request::Read {
                si,
                shnum: 1,
                offset: 2,
                len: 4,
            },
        ),
        ("verify", Request::Verify { si, shnum: 1 }),
        ("abort", Request::Abort { si, shnum: 2 }),
    ];
    for (name, req) in reqs {
        write("storage_request", name, &encode(&RequestMsg::new(1, req)));
    }
    // What the compatibility rules refuse: a newer version, an unknown
    // kind, a known kind with a field appended.
    let mut newer = encode(&RequestMsg::new(2, Request::<Vec<u8>>::List { si }));
    newer[0] = 2;
    write("storage_request", "newer-version", &newer);
    write("storage_request", "unknown-kind", &[1, 3, 8, 7, 7, 7]);
    let mut extra = encode(&RequestMsg::new(4, Request::<Vec<u8>>::List { si }));
    extra.push(0);
    write("storage_request", "extra-field", &extra);
    // Listings: a query's payload, and answers by the fixture's server to
    // the fixture's query (none, some, all shares; another server's).
    let (server, _client, q) = grapevine_fuzz_entries::listing_fixture();
    write("listing", "query", &q.to_wire()[4..]);
    let answers: [(&str, Vec<(u16, u64)>); 3] = [
        ("answer-empty", vec![]),
        ("answer-three", vec![(0, 1000), (4, 1000), (9, 1000)]),
        ("answer-all", (0..256).map(|s| (s, 1)).collect()),
    ];
    for (name, shares) in answers {
        let frame = grapevine_storage::listing::answer(&server, &q, &shares).unwrap();
        write("listing", name, &frame[2..]);
    }
    let frame = grapevine_storage::listing::answer(&other, &q, &[(1, 5)]).unwrap();
    write("listing", "answer-other-server", &frame[2..]);
    // The same in datagrams: a padded query, answers to it.
    write("listing", "query-datagram", &q.to_datagram());
    for (name, shares) in [
        ("datagram-answer-empty", vec![]),
        (
            "datagram-answer-three",
            vec![(0, 1000), (4, 1000), (9, 1000)],
        ),
    ] {
        let d = grapevine_storage::listing_datagram::answer_datagram(
            &server,
            &q,
            grapevine_storage::listing_datagram::QUERY_DATAGRAM_LEN,
            &shares,
        )
        .unwrap()
        .unwrap();
        write("listing", name, &d);
    }
    println!("seeds written under fuzz/corpus/");
}
