//! Tests of the store's guarantees (issues 18.5, 19.1 to 19.6, and the
//! store's side of 14.4 and 15.2). Races are made deterministic with the
//! store's hook: the test acts at a named point of one writer's work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::fs;
use std::path::PathBuf;

use super::base::TRAILER;
use super::*;
use crate::chk::{Encoder, Params, ShareCheck, SEGMENT_SIZE};
use crate::error::StoreError;
use crate::types::{StorageIndex, SI_LEN};

fn si(b: u8) -> StorageIndex {
    StorageIndex([b; SI_LEN])
}

fn put(s: &ShareStore, si: &StorageIndex, shnum: u16, data: &[u8]) -> Result<(), StoreError> {
    let mut w = s.allocate(si, shnum, data.len() as u64)?;
    w.write_at(0, data)?;
    w.close()
}

/// A hook that runs `f` the first time the store reaches `at` (and not
/// when `f` itself reaches it again).
fn once_at(at: Point, f: impl Fn() + Send + Sync + 'static) -> Hook {
    let fired = AtomicBool::new(false);
    Arc::new(move |p| {
        if p == at && !fired.swap(true, Ordering::SeqCst) {
            f();
        }
    })
}

/// The n shares of a CHK file of `len` bytes (2-of-4).
fn chk_shares(len: usize) -> Vec<Vec<u8>> {
    let p = Params {
        k: 2,
        n: 4,
        happy: 3,
    };
    let mut enc = Encoder::new([8; 32], p, len as u64).unwrap();
    let mut out = vec![Vec::new(); 4];
    let data: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
    for chunk in data.chunks(SEGMENT_SIZE as usize) {
        let c = chunk.to_vec();
        for (s, b) in out.iter_mut().zip(enc.encode_segment(&c).unwrap()) {
            s.extend_from_slice(&b);
        }
    }
    let (trailers, _) = enc.finish().unwrap();
    for (s, t) in out.iter_mut().zip(trailers) {
        s.extend_from_slice(&t);
    }
    out
}

/// 19.4: a second open of a store in use is refused, and touches nothing
/// (the first one's upload in progress stays in `incoming/`). Before the
/// lock, the second open deleted it.
#[test]
fn second_open_is_refused_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    let mut w = s.allocate(&si(1), 0, 8).unwrap();
    w.write_at(0, b"1234").unwrap();
    assert!(matches!(
        ShareStore::open(dir.path(), 0),
        Err(StoreError::Locked(_))
    ));
    assert_eq!(
        fs::read_dir(dir.path().join("incoming")).unwrap().count(),
        1
    );
    w.write_at(4, b"5678").unwrap();
    w.close().unwrap();
    drop(s);
    // Closed (every clone and writer dropped): it opens again.
    let s = ShareStore::open(dir.path(), 0).unwrap();
    assert_eq!(s.list(&si(1)).unwrap(), vec![0]);
}

/// 19.1: the first share of a storage index makes two directories; each
/// new directory's parent is fsynced before anything goes into it, and the
/// share's own directory after the rename. Before, only the last was.
#[test]
fn close_fsyncs_every_new_directory_up_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    s.take_synced_dirs();
    put(&s, &si(2), 0, b"abc").unwrap();
    let si_dir = s.si_dir("shares", &si(2));
    let prefix = si_dir.parent().unwrap().to_path_buf();
    let shares = dir.path().join("shares");
    let synced = s.take_synced_dirs();
    for d in [&shares, &prefix, &si_dir] {
        assert!(
            synced.contains(d),
            "{} not fsynced: {synced:?}",
            d.display()
        );
    }
    // In that order: a directory's entry is durable before it is used.
    let at = |d: &PathBuf| synced.iter().position(|x| x == d).unwrap();
    assert!(at(&shares) < at(&prefix) && at(&prefix) < at(&si_dir));
    // And a new store's own directories are made durably at open: the
    // root in its parent, `shares/` and the others in the root.
    let fresh = dir.path().join("new");
    let s = ShareStore::open(&fresh, 0).unwrap();
    let synced = s.take_synced_dirs();
    assert!(
        synced.contains(&dir.path().to_path_buf()) && synced.contains(&fresh),
        "{synced:?}"
    );
}

/// 19.2: two writers of one share race; the one that closes second never
/// replaces the first one's share. The race is made certain: writer B
/// closes at the moment A has fsynced its file and is about to move it
/// into place. Before (`exists()` then `rename`), A replaced B's share and
/// both were acknowledged.
#[test]
fn concurrent_closes_of_one_share_never_replace() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    let b = Mutex::new(Some({
        let mut b = s.allocate(&si(3), 1, 4).unwrap();
        b.write_at(0, b"BBBB").unwrap();
        b
    }));
    let b_closed = Arc::new(Mutex::new(None));
    let out = b_closed.clone();
    let mut a = s.allocate(&si(3), 1, 4).unwrap();
    a.write_at(0, b"AAAA").unwrap();
    s.set_hook(once_at(Point::Synced, move || {
        let w = b.lock().unwrap().take().unwrap();
        *out.lock().unwrap() = Some(w.close());
    }));
    let a_closed = a.close();
    assert!(matches!(*b_closed.lock().unwrap(), Some(Ok(()))));
    assert!(
        matches!(a_closed, Err(StoreError::AlreadyExists)),
        "{a_closed:?}"
    );
    assert_eq!(s.read(&si(3), 1, 0, 4).unwrap(), b"BBBB");
    assert_eq!(
        fs::read_dir(dir.path().join("incoming")).unwrap().count(),
        0
    );
    assert_eq!(s.stored_bytes(), 4 + TRAILER, "the loser is not counted");
}

/// 19.3: checking free space and reserving it are one step. Another
/// allocation that takes the last of the space at the moment this one has
/// read the free space makes this one fail, instead of both succeeding.
#[test]
fn concurrent_allocations_never_overcommit() {
    let dir = tempfile::tempdir().unwrap();
    let free = Arc::new(AtomicU64::new(1000));
    let s = ShareStore::open(dir.path(), 0)
        .unwrap()
        .with_free_space_override(free);
    let other = s.clone();
    let got = Arc::new(Mutex::new(None));
    let out = got.clone();
    s.set_hook(once_at(Point::SpaceRead, move || {
        *out.lock().unwrap() = Some(other.allocate(&si(4), 1, 600));
    }));
    let first = s.allocate(&si(4), 0, 600);
    assert!(matches!(*got.lock().unwrap(), Some(Ok(_))));
    assert!(
        matches!(
            first,
            Err(StoreError::NoSpace {
                need: 616,
                available: 384
            })
        ),
        "{first:?}"
    );
}

/// 14.4 (store side): the offered capacity is enforced at allocation, with
/// reservations and stored shares counted, and the figures report it.
#[test]
fn capacity_is_enforced_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open_with(
        dir.path(),
        StoreConfig {
            reserve: 0,
            capacity: Some(1000),
            writeback: None,
        },
    )
    .unwrap();
    put(&s, &si(5), 0, &[1; 500]).unwrap();
    let w = s.allocate(&si(5), 1, 300).unwrap();
    let f = s.space().unwrap();
    assert_eq!(f.capacity, Some(1000));
    assert_eq!((f.used, f.reserved), (516, 316));
    assert_eq!(f.available, 1000 - 516 - 316);
    assert!(f.disk_free > 0);
    assert!(matches!(
        s.allocate(&si(5), 2, 200),
        Err(StoreError::NoSpace {
            need: 216,
            available: 168
        })
    ));
    drop(w);
    s.allocate(&si(5), 2, 200).unwrap();
}

/// 18.5: the bytes stored are a counter kept by close, quarantine and
/// delete, not a walk of the store: a file slipped into `shares/` behind
/// the store's back is not counted until the store is opened again.
#[test]
fn stored_bytes_is_a_running_counter() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    put(&s, &si(6), 0, &[1; 100]).unwrap();
    put(&s, &si(6), 1, &[2; 50]).unwrap();
    assert_eq!(s.stored_bytes(), 150 + 2 * TRAILER);
    fs::write(dir.path().join("shares").join("stray"), [0u8; 1000]).unwrap();
    assert_eq!(s.stored_bytes(), 150 + 2 * TRAILER, "no walk");
    s.delete(&si(6), 1, Deletion::Collected).unwrap();
    assert_eq!(s.stored_bytes(), 100 + TRAILER);
    let p = s.share_path(&si(6), 0);
    let mut bytes = fs::read(&p).unwrap();
    bytes[0] ^= 1;
    fs::write(&p, bytes).unwrap();
    assert!(matches!(s.verify(&si(6), 0), Err(StoreError::Corrupt)));
    assert_eq!(s.stored_bytes(), 0);
    drop(s);
    assert_eq!(
        ShareStore::open(dir.path(), 0).unwrap().stored_bytes(),
        1000
    );
}

/// 15.2 (server side): a reader's report that a share is corrupt is
/// checked by the store itself; a good share stays, whoever reports it and
/// however often; a share whose bytes rotted (checksum) or that does not
/// match its own extension block (rewritten with a valid checksum) is
/// quarantined.
#[test]
fn reported_shares_are_quarantined_only_when_really_bad() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    let shares = chk_shares(SEGMENT_SIZE as usize + 1000);
    for (i, sh) in shares.iter().enumerate() {
        put(&s, &si(7), i as u16, sh).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(s.report_corrupt(&si(7), 0).unwrap(), ReportVerdict::Kept);
    }
    assert_eq!(s.check(&si(7), 0).unwrap(), ShareHealth::Good);
    assert_eq!(s.list(&si(7)).unwrap(), vec![0, 1, 2, 3]);
    // Rot on disk: the checksum fails.
    let p1 = s.share_path(&si(7), 1);
    let mut bytes = fs::read(&p1).unwrap();
    bytes[10] ^= 1;
    fs::write(&p1, &bytes).unwrap();
    assert_eq!(s.check(&si(7), 1).unwrap(), ShareHealth::ChecksumMismatch);
    assert_eq!(
        s.report_corrupt(&si(7), 1).unwrap(),
        ReportVerdict::Quarantined
    );
    // A block changed and the checksum made to match: the share's own
    // hash tree catches it.
    let p2 = s.share_path(&si(7), 2);
    let mut bytes = shares[2].clone();
    bytes[20] ^= 1;
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&bytes).to_le_bytes());
    fs::write(&p2, &bytes).unwrap();
    assert!(matches!(
        s.check(&si(7), 2).unwrap(),
        ShareHealth::Inconsistent(_)
    ));
    assert_eq!(
        s.report_corrupt(&si(7), 2).unwrap(),
        ReportVerdict::Quarantined
    );
    assert_eq!(s.list(&si(7)).unwrap(), vec![0, 3]);
    assert!(matches!(
        s.report_corrupt(&si(7), 1),
        Err(StoreError::NotFound)
    ));
    // A share of a newer layout (footer version 2) cannot be judged: kept.
    let mut newer = shares[3].clone();
    *newer.last_mut().unwrap() = b'2';
    put(&s, &si(8), 0, &newer).unwrap();
    assert_eq!(s.check(&si(8), 0).unwrap(), ShareHealth::NewerFormat);
    assert_eq!(s.report_corrupt(&si(8), 0).unwrap(), ReportVerdict::Kept);
    // Bytes that are no share layout at all are garbage: quarantined.
    put(&s, &si(8), 1, b"not a share of any layout").unwrap();
    assert_eq!(
        s.report_corrupt(&si(8), 1).unwrap(),
        ReportVerdict::Quarantined
    );
}

/// 19.6: a share is deleted for a reason the server holds: its own
/// collection, or a copy elsewhere that it checked itself. A copy that is
/// not byte for byte a good copy of this share is no evidence.
#[test]
fn deletion_needs_the_servers_own_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    let shares = chk_shares(3000);
    for (i, sh) in shares.iter().enumerate() {
        put(&s, &si(9), i as u16, sh).unwrap();
    }
    let holder = grapevine_crypto::identity::NodeId([7; 32]);
    let copy_check = |shnum: u16, copy: &[u8]| -> Result<VerifiedCopy, StoreError> {
        let tail = &copy[copy.len().saturating_sub(ShareCheck::TAIL_LEN as usize)..];
        let mut c = s.check_copy(&si(9), shnum, holder, copy.len() as u64, tail)?;
        c.feed(copy);
        c.finish()
    };
    // Another share's bytes, a damaged copy, a truncated one: refused.
    assert!(copy_check(0, &shares[1]).is_err());
    let mut damaged = shares[0].clone();
    damaged[5] ^= 1;
    assert!(copy_check(0, &damaged).is_err());
    assert!(copy_check(0, &shares[0][..shares[0].len() - 1]).is_err());
    // A good copy is evidence, for that share only.
    let proof = copy_check(0, &shares[0]).unwrap();
    assert_eq!(proof.holder(), holder);
    assert!(matches!(
        s.delete(&si(9), 1, Deletion::Moved(proof.clone())),
        Err(StoreError::BadEvidence(_))
    ));
    assert_eq!(s.list(&si(9)).unwrap(), vec![0, 1, 2, 3]);
    s.delete(&si(9), 0, Deletion::Moved(proof)).unwrap();
    s.delete(&si(9), 1, Deletion::Collected).unwrap();
    assert_eq!(s.list(&si(9)).unwrap(), vec![2, 3]);
}

/// 19.6: a slot is replaced only by a higher sequence number, and two
/// versions written at once end with the higher one whatever the order
/// they finish in: here version 3 is written while version 2 is between
/// its fsync and its rename.
#[test]
fn slots_take_only_higher_sequence_numbers_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    assert!(matches!(s.slot_read(&si(10), 0), Err(StoreError::NotFound)));
    s.slot_write(&si(10), 0, 1, b"one").unwrap();
    for stale in [0, 1] {
        assert!(matches!(
            s.slot_write(&si(10), 0, stale, b"old"),
            Err(StoreError::StaleSequence { held: 1, .. })
        ));
    }
    assert_eq!(s.slot_read(&si(10), 0).unwrap(), (1, b"one".to_vec()));
    let other = s.clone();
    let inner = Arc::new(Mutex::new(None));
    let out = inner.clone();
    s.set_hook(once_at(Point::SlotSynced, move || {
        *out.lock().unwrap() = Some(other.slot_write(&si(10), 0, 3, b"three"));
    }));
    let two = s.slot_write(&si(10), 0, 2, b"two");
    assert!(matches!(*inner.lock().unwrap(), Some(Ok(()))));
    assert!(matches!(
        two,
        Err(StoreError::StaleSequence {
            held: 3,
            offered: 2
        })
    ));
    assert_eq!(s.slot_read(&si(10), 0).unwrap(), (3, b"three".to_vec()));
    assert_eq!(s.stored_bytes(), 15 + 5 + TRAILER);
    assert_eq!(
        fs::read_dir(dir.path().join("incoming")).unwrap().count(),
        0
    );
}

/// 19.5: reading a share block by block never checks its checksum, so a
/// rotten share stays served; a scrub pass finds and quarantines it, and
/// counts what it did.
#[test]
fn scrub_finds_what_block_reads_miss() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    for i in 0..5u8 {
        put(&s, &si(20 + i), 0, &vec![i; 300_000]).unwrap();
    }
    let p = s.share_path(&si(22), 0);
    let mut bytes = fs::read(&p).unwrap();
    bytes[123_456] ^= 1;
    fs::write(&p, bytes).unwrap();
    for off in (0..300_000u64).step_by(100_000) {
        s.read(&si(22), 0, off, 100_000).unwrap();
    }
    assert_eq!(s.list(&si(22)).unwrap(), vec![0], "block reads miss it");
    let stats = Arc::new(ScrubStats::default());
    let mut scrub = Scrubber::new(s.clone(), stats.clone());
    let mut steps = 0;
    while !scrub.step(64 << 10).unwrap().pass_done {
        steps += 1;
        assert!(steps < 1000, "the pass never ends");
    }
    assert!(steps >= 5 * 300_000 / (64 << 10), "{steps} steps");
    assert!(s.list(&si(22)).unwrap().is_empty(), "quarantined");
    assert_eq!(stats.corrupt_found(), 1);
    assert_eq!(stats.shares_checked(), 5);
    assert_eq!(stats.bytes_checked(), 5 * 300_000);
    assert_eq!(stats.passes(), 1);
    assert!(stats.last_pass_unix() > 0);
    // The next pass checks the four that are left.
    while !scrub.step(1 << 20).unwrap().pass_done {}
    assert_eq!((stats.passes(), stats.shares_checked()), (2, 9));
}

/// Without a writeback interval, a share's write-out is started every
/// `START_WRITEOUT_EVERY` bytes while it is written (not left whole to the
/// fsync at close); with one, the interval's syncs do it instead.
#[test]
fn a_long_share_starts_its_write_out_as_it_goes() {
    use crate::store::writer::START_WRITEOUT_EVERY;
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open(dir.path(), 0).unwrap();
    let mib = 1u64 << 20;
    let every = START_WRITEOUT_EVERY / mib;
    let total = 2 * every + 3;
    let data: Vec<u8> = (0..total * mib).map(|i| (i * 13 % 251) as u8).collect();
    let mut w = s.allocate(&si(4), 1, data.len() as u64).unwrap();
    let mut started = Vec::new();
    for (i, c) in data.chunks(mib as usize).enumerate() {
        w.write_at(i as u64 * mib, c).unwrap();
        started.push(w.started / mib);
    }
    let want: Vec<u64> = (1..=total).map(|written| written / every * every).collect();
    assert_eq!(
        started, want,
        "MiB whose write-out was started, after each MiB"
    );
    w.close().unwrap();
    assert!(s.read(&si(4), 1, 0, data.len() as u64).unwrap() == data);
    let synced = ShareStore::open_with(
        &dir.path().join("synced"),
        StoreConfig {
            reserve: 0,
            capacity: None,
            writeback: Some(4 * mib),
        },
    )
    .unwrap();
    let mut w = synced.allocate(&si(4), 1, data.len() as u64).unwrap();
    w.write_at(0, &data).unwrap();
    assert_eq!(
        (w.started, w.clean),
        (0, data.len() as u64),
        "the interval's sync instead"
    );
}

/// Issue 25: with a writeback interval, a share being written is synced
/// and dropped from the page cache every interval, so its dirty pages
/// never pile up past it; without one, only at close. The share is whole
/// either way.
#[test]
fn shares_are_written_back_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let s = ShareStore::open_with(
        dir.path(),
        StoreConfig {
            reserve: 0,
            capacity: None,
            writeback: Some(1 << 20),
        },
    )
    .unwrap();
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7) as u8).collect();
    let mut w = s.allocate(&si(9), 0, data.len() as u64).unwrap();
    let mut cleans = Vec::new();
    for (i, c) in data.chunks(384 << 10).enumerate() {
        w.write_at((i * (384 << 10)) as u64, c).unwrap();
        cleans.push(w.clean);
    }
    // Written back whenever a MiB or more was not: at 1.125 and 2.25 MiB.
    let kib = |k: u64| k << 10;
    assert_eq!(
        cleans,
        [
            0,
            0,
            kib(1152),
            kib(1152),
            kib(1152),
            kib(2304),
            kib(2304),
            kib(2304)
        ]
    );
    w.close().unwrap();
    assert_eq!(s.read(&si(9), 0, 0, data.len() as u64).unwrap(), data);
    let plain = ShareStore::open(&dir.path().join("plain"), 0).unwrap();
    let mut w = plain.allocate(&si(9), 0, data.len() as u64).unwrap();
    w.write_at(0, &data).unwrap();
    assert_eq!(w.clean, 0, "no interval: nothing written back before close");
}
