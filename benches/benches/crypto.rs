//! Criterion benchmarks of the crypto crate: record signing and checking,
//! handshakes and the curve operations they are made of, listings' pair
//! keys, and transport seal/open throughput with 64 KiB messages.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use grapevine_crypto::noise::{InitiatorHandshake, ResponderHandshake, MAX_FRAME_LEN};
use grapevine_crypto::testing::{record_for, rng};
use grapevine_crypto::{Identity, SessionConfig, SignedRecord, Transport, UnverifiedRecord};

/// A handshake between two nodes whose records carry `issued_at`: a new
/// value each time gives records no one verified before (each side then
/// verifies the other's), the same value records remembered as verified
/// (`grapevine_crypto::verified`).
fn pair_issued(issued_at: u64) -> (Transport, Transport) {
    let cfg = SessionConfig::default();
    let a = Identity::generate_with(&mut rng(1));
    let b = Identity::generate_with(&mut rng(2));
    let record = |id: &Identity, addr: &str| {
        let mut r = record_for(id, addr);
        r.issued_at = issued_at;
        r.sign(id).unwrap()
    };
    let ra = record(&a, "127.0.0.1:1");
    let rb = record(&b, "127.0.0.1:2");
    let (hs, m1) = InitiatorHandshake::start(&a, &ra, b.node_id(), &cfg).unwrap();
    let (tb, _, m2) = ResponderHandshake::respond(&b, &rb, &m1[2..], &cfg).unwrap();
    let (ta, _) = hs.finish(&m2[2..]).unwrap();
    (ta, tb)
}

/// Split sealed wire bytes into frame bodies.
fn frames(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let len = u16::from_be_bytes([wire[i], wire[i + 1]]) as usize;
        out.push(&wire[i + 2..i + 2 + len]);
        i += 2 + len;
    }
    out
}

/// A handshake between two nodes with records no one verified before.
fn pair() -> (Transport, Transport) {
    static ISSUED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    pair_issued(ISSUED.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn transport(c: &mut Criterion) {
    let mut g = c.benchmark_group("transport");
    for size in [1024usize, 64 * 1024] {
        let msg = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("seal_{size}"), |bch| {
            let (mut a, _) = pair();
            let mut wire = Vec::with_capacity(size + MAX_FRAME_LEN);
            bch.iter(|| {
                wire.clear();
                a.seal_message(&msg, 1 << 24, &mut wire).unwrap();
            })
        });
        g.bench_function(format!("seal_open_{size}"), |bch| {
            let (mut a, mut b) = pair();
            let mut wire = Vec::with_capacity(size + MAX_FRAME_LEN);
            let mut out = Vec::with_capacity(size + MAX_FRAME_LEN);
            bch.iter(|| {
                wire.clear();
                out.clear();
                a.seal_message(&msg, 1 << 24, &mut wire).unwrap();
                for f in frames(&wire) {
                    b.open_frame(f, &mut out, 1 << 24).unwrap();
                }
            })
        });
    }
    g.finish();
}

fn records(c: &mut Criterion) {
    let id = Identity::generate_with(&mut rng(3));
    let signed = record_for(&id, "127.0.0.1:7000").sign(&id).unwrap();
    let mut g = c.benchmark_group("record");
    g.bench_function("sign", |b| {
        b.iter(|| record_for(&id, "127.0.0.1:7000").sign(&id).unwrap())
    });
    // A record never verified before each time (signed in the setup).
    let mut issued = 0u64;
    g.bench_function("decode_verify", |b| {
        b.iter_batched(
            || {
                issued += 1;
                let mut r = record_for(&id, "127.0.0.1:7000");
                r.issued_at = issued;
                r.sign(&id).unwrap().bytes().to_vec()
            },
            |bytes| SignedRecord::decode(&bytes).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // The same record again: its verification is remembered.
    g.bench_function("decode_remembered", |b| {
        b.iter(|| SignedRecord::decode(signed.bytes()).unwrap())
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| UnverifiedRecord::parse(signed.bytes()).unwrap())
    });
    let many: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let id = Identity::generate_with(&mut rng(100 + i));
            record_for(&id, "127.0.0.1:7000")
                .sign(&id)
                .unwrap()
                .bytes()
                .to_vec()
        })
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64", |b| {
        b.iter_batched(
            || {
                many.iter()
                    .map(|m| UnverifiedRecord::parse(m).unwrap())
                    .collect::<Vec<_>>()
            },
            UnverifiedRecord::verify_batch,
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    c.bench_function("handshake/ik_full", |b| b.iter(pair));
    // Both records verified before (as when each side's membership holds
    // the other's record): no Ed25519 verification in the handshake.
    c.bench_function("handshake/ik_known_records", |b| b.iter(|| pair_issued(0)));
    // The curve arithmetic a handshake is made of: each side does four
    // Diffie-Hellman operations (a Montgomery ladder each) and two
    // fixed-base multiplications (its static public key, its ephemeral
    // key), and verifies one record (`record/decode_verify`).
    let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    c.bench_function("handshake/x25519_dh", |b| {
        b.iter(|| secret.diffie_hellman(std::hint::black_box(&peer)))
    });
    c.bench_function("handshake/x25519_public_key", |b| {
        b.iter(|| x25519_dalek::PublicKey::from(std::hint::black_box(&secret)))
    });
}

/// Listings' pair keys (`grapevine_crypto::pair_key`): a first derivation
/// (one X25519 product, on the Edwards form) and one remembered.
fn pair_keys(c: &mut Criterion) {
    let peer = Identity::from_seed([9; 32]).node_id();
    c.bench_function("pair_key/derive", |b| {
        b.iter_batched(
            || Identity::from_seed([7; 32]),
            |me| me.pair_key(&peer).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let me = Identity::from_seed([7; 32]);
    c.bench_function("pair_key/remembered", |b| {
        b.iter(|| me.pair_key(std::hint::black_box(&peer)).unwrap())
    });
    c.bench_function("record/sign_64_bytes", |b| {
        b.iter(|| me.sign(std::hint::black_box(&[5u8; 64])))
    });
}

criterion_group!(benches, transport, records, handshake, pair_keys);
criterion_main!(benches);
