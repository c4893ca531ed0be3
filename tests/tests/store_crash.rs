//! The share store's crash test (issue 19.7): a child process (this test,
//! run again) runs a fixed workload on a store and is stopped dead
//! (`std::process::exit` from the store's test hook: no destructor runs,
//! nothing is cleaned up, exactly what a `kill -9` leaves on disk) at a
//! named [`Point`] of the store's work. This process then reopens the store
//! and checks that no acknowledged share is missing or corrupt, that no
//! partial share is visible, that a share is never replaced by a second
//! writer's, and that a slot holds a whole version no older than the last
//! one acknowledged.
//!
//! # The points covered, and why they are the ones that matter
//!
//! A first run counts how often the workload reaches each point; then the
//! child is stopped at *every* hit of *every* point in turn (47
//! runs today), so each step is cut at each place it can be:
//!
//! * `space-read`, `allocated`: before and after the temporary file exists
//!   (a reservation is only in memory; the file is in `incoming/`, which
//!   the next open empties);
//! * `written` (each of a share's three writes): a part-written share in
//!   `incoming/`, never under `shares/`;
//! * `synced`: whole and checksummed but not yet in place (including the
//!   losing writer of two racing on one share, just before its refused
//!   rename);
//! * `dir-created` (each new directory of a share's or a slot's path):
//!   a directory made whose parent is not yet fsynced;
//! * `renamed`: in place but its directory not yet fsynced: whole and
//!   readable, not yet acknowledged;
//! * `closed`: everything durable, acknowledgement not yet sent;
//! * `quarantined`: a corrupt share moved to `corrupt/` and not yet
//!   fsynced: it must never come back as a served share;
//! * `unlinked`: a share the server itself decided to delete, unlinked,
//!   its directory not yet fsynced: gone or whole, never partial;
//! * `slot-synced`, `slot-renamed`: a new slot version beside the old one,
//!   then over it: the slot holds one version or the other, whole.
//!
//! A process crash does not lose what the kernel already has; losing power
//! could also undo what was written but not fsynced. That is what the
//! fsync ordering guards, and `store::tests::close_fsyncs_every_new_directory_up_to_the_root`
//! checks that every directory on a new share's path is fsynced before the
//! share is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use grapevine_storage::store::{Deletion, Point};
use grapevine_storage::{ShareStore, StorageIndex, StoreError};

const CHILD_DIR: &str = "GV_CRASH_DIR";
const CHILD_AT: &str = "GV_CRASH_AT";
/// The exit code of a child stopped at its point.
const STOPPED: i32 = 86;

fn si(b: u8) -> StorageIndex {
    StorageIndex([b; 16])
}

/// The bytes of share (or slot version) `tag` of storage index `b`.
fn content(b: u8, tag: u64, len: usize) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(&[b]);
    h.update(&tag.to_le_bytes());
    let mut out = vec![0u8; len];
    h.finalize_xof().fill(&mut out);
    out
}

const LEN: usize = 100_000;

/// The shares the workload writes, and what each must hold if visible:
/// `(storage index, share number)` to its content. For `(3, 0)`, written by
/// two racing writers, only the first writer's content may ever be there.
fn expected() -> BTreeMap<(u8, u16), Vec<u8>> {
    [(1, 0), (2, 1), (3, 0), (4, 0)]
        .into_iter()
        .map(|(b, n)| ((b, n), content(b, u64::from(n), LEN)))
        .collect()
}

fn put(store: &ShareStore, b: u8, shnum: u16, data: &[u8], pieces: usize) {
    let mut w = store.allocate(&si(b), shnum, data.len() as u64).unwrap();
    let mut off = 0;
    for chunk in data.chunks(data.len().div_ceil(pieces)) {
        w.write_at(off, chunk).unwrap();
        off += chunk.len() as u64;
    }
    w.close().unwrap();
}

/// The file of share `shnum` of `b`, found by walking the store (the test
/// corrupts it as a failing disk would).
fn share_file(root: &Path, b: u8, shnum: u16) -> std::path::PathBuf {
    let name = si(b).to_string();
    root.join("shares")
        .join(&name[..2])
        .join(&name)
        .join(shnum.to_string())
}

/// The workload, saying (`say`) each step as it starts or is acknowledged.
fn workload(store: &ShareStore, root: &Path, say: &mut dyn FnMut(&str)) {
    let want = expected();
    // A share written whole, and one written in three pieces.
    put(store, 1, 0, &want[&(1, 0)], 1);
    say("stored 1 0");
    put(store, 2, 1, &want[&(2, 1)], 3);
    say("stored 2 1");
    // Two writers of one share: the first to close wins, the second is
    // refused, and the first's bytes stay.
    let first = &want[&(3, 0)];
    let second = content(3, 99, LEN);
    let mut w1 = store.allocate(&si(3), 0, LEN as u64).unwrap();
    let mut w2 = store.allocate(&si(3), 0, LEN as u64).unwrap();
    w1.write_at(0, first).unwrap();
    w2.write_at(0, &second).unwrap();
    w1.close().unwrap();
    say("stored 3 0");
    assert!(matches!(w2.close(), Err(StoreError::AlreadyExists)));
    // A share the disk damages: the store's own check quarantines it.
    put(store, 4, 0, &want[&(4, 0)], 1);
    say("stored 4 0");
    say("corrupting 4 0");
    let f = share_file(root, 4, 0);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    assert!(matches!(store.verify(&si(4), 0), Err(StoreError::Corrupt)));
    say("quarantined 4 0");
    // A share the server itself decides to delete.
    say("deleting 2 1");
    store.delete(&si(2), 1, Deletion::Collected).unwrap();
    say("deleted 2 1");
    // A slot, replaced by a higher version, and refusing a lower one.
    for seq in [1u64, 2] {
        store
            .slot_write(&si(5), 0, seq, &content(5, seq, LEN))
            .unwrap();
        say(&format!("slot 5 0 {seq}"));
    }
    assert!(matches!(
        store.slot_write(&si(5), 0, 1, &content(5, 1, LEN)),
        Err(StoreError::StaleSequence { .. })
    ));
    say("done");
}

/// The child: run the workload on the store in `GV_CRASH_DIR`, stopping at
/// the point `GV_CRASH_AT` names (`name:n`, its n-th hit), or (`count`)
/// counting every point's hits.
fn child(dir: &str, at: &str) {
    let root = Path::new(dir);
    let store = ShareStore::open(root, 0).unwrap();
    let hits: Arc<Mutex<HashMap<Point, u64>>> = Arc::default();
    let target = at.split_once(':').map(|(name, n)| {
        (
            Point::from_name(name).expect("a point's name"),
            n.parse::<u64>().expect("a hit number"),
        )
    });
    let seen = AtomicU64::new(0);
    let counts = hits.clone();
    store.set_hook(Arc::new(move |p| {
        *counts.lock().unwrap().entry(p).or_default() += 1;
        if let Some((t, n)) = target {
            if p == t && seen.fetch_add(1, Ordering::SeqCst) + 1 == n {
                // Stopped dead: no destructor runs, nothing is cleaned up.
                let _ = std::io::stdout().flush();
                std::process::exit(STOPPED);
            }
        }
    }));
    let mut out = std::io::stdout().lock();
    let mut say = |line: &str| {
        // Said only after the store returned: acknowledged.
        writeln!(out, "GV {line}").unwrap();
        out.flush().unwrap();
    };
    workload(&store, root, &mut say);
    for p in Point::ALL {
        let n = hits.lock().unwrap().get(&p).copied().unwrap_or(0);
        say(&format!("hits {} {n}", p.name()));
    }
}

/// Run the child on `dir` with `at`: its exit status and what it said.
fn run_child(dir: &Path, at: &str) -> (std::process::ExitStatus, Vec<String>) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_crash_at_any_point_loses_no_acknowledged_share",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_AT, at)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let said = out
        .stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("GV ").map(str::to_string))
        .collect();
    (out.status, said)
}

/// Reopen the store after a child stopped at `at` and check what it left.
fn check_after(dir: &Path, at: &str, said: &[String]) {
    let ctx = |what: &str| format!("after a crash at {at}: {what} (the child said {said:?})");
    let has = |l: &str| said.iter().any(|s| s == l);
    let store = ShareStore::open(dir, 0).unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.join("incoming")).unwrap().collect();
    assert!(
        left.is_empty(),
        "{}",
        ctx("partial files stayed in incoming/")
    );
    let mut listed = 0;
    for ((b, shnum), want) in expected() {
        let key = format!("{b} {shnum}");
        let acked = has(&format!("stored {key}"))
            && !has(&format!("deleting {key}"))
            && !has(&format!("corrupting {key}"));
        let present = store.list(&si(b)).unwrap().contains(&shnum);
        if acked {
            assert!(
                present,
                "{}",
                ctx(&format!("acknowledged share {key} is gone"))
            );
        }
        if has(&format!("deleted {key}")) || has(&format!("quarantined {key}")) {
            assert!(!present, "{}", ctx(&format!("share {key} came back")));
        }
        if !present {
            continue;
        }
        listed += 1;
        match store.read(&si(b), shnum, 0, LEN as u64) {
            Ok(got) => assert!(
                got == want,
                "{}",
                ctx(&format!(
                    "share {key} holds other bytes (partial or replaced)"
                ))
            ),
            // Only the share the test itself damaged may fail its check
            // (and then it is quarantined, never served).
            Err(StoreError::Corrupt) if has(&format!("corrupting {key}")) => listed -= 1,
            Err(e) => panic!("{}", ctx(&format!("share {key} unreadable: {e}"))),
        }
    }
    // Nothing else is under shares/: no stray or partial file.
    let mut files = 0;
    let mut stack = vec![dir.join("shares")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
            }
        }
    }
    assert_eq!(files, listed, "{}", ctx("files under shares/"));
    // The slot holds a whole version, no older than the last acknowledged.
    let acked_seq = [1u64, 2]
        .into_iter()
        .filter(|s| has(&format!("slot 5 0 {s}")))
        .max();
    match store.slot_read(&si(5), 0) {
        Ok((seq, data)) => {
            assert!(
                data == content(5, seq, LEN),
                "{}",
                ctx("the slot holds a partial version")
            );
            assert!(
                Some(seq) >= acked_seq,
                "{}",
                ctx(&format!("the slot went back to {seq}"))
            );
        }
        Err(StoreError::NotFound) => {
            assert_eq!(acked_seq, None, "{}", ctx("an acknowledged slot is gone"))
        }
        Err(e) => panic!("{}", ctx(&format!("the slot is unreadable: {e}"))),
    }
    // The store works on: a new share is written and read back.
    let data = content(6, 0, 1000);
    put(&store, 6, 0, &data, 1);
    assert_eq!(store.read(&si(6), 0, 0, 1000).unwrap(), data);
}

/// 19.7: a crash at every hit of every named point of writing, closing,
/// quarantining, deleting shares and replacing slots loses no acknowledged
/// share, leaves no partial one visible and never a replaced one (see the
/// module docs for the list of points and why).
#[test]
fn a_crash_at_any_point_loses_no_acknowledged_share() {
    if let (Some(dir), Some(at)) = (std::env::var_os(CHILD_DIR), std::env::var_os(CHILD_AT)) {
        return child(dir.to_str().unwrap(), at.to_str().unwrap());
    }
    // A run to the end: the workload passes, and says how often it
    // reaches each point.
    let dir = tempfile::tempdir().unwrap();
    let (status, said) = run_child(dir.path(), "count");
    assert!(status.success(), "the workload failed: {status} {said:?}");
    assert!(said.iter().any(|l| l == "done"));
    check_after(dir.path(), "no point", &said);
    let hits: Vec<(Point, u64)> = said
        .iter()
        .filter_map(|l| {
            let mut w = l.strip_prefix("hits ")?.split(' ');
            Some((Point::from_name(w.next()?)?, w.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(hits.len(), Point::ALL.len(), "{said:?}");
    let mut runs = 0;
    for (p, n) in hits {
        assert!(n > 0, "the workload never reaches {}", p.name());
        for i in 1..=n {
            let at = format!("{}:{i}", p.name());
            let dir = tempfile::tempdir().unwrap();
            let (status, said) = run_child(dir.path(), &at);
            assert_eq!(
                status.code(),
                Some(STOPPED),
                "the child was not stopped at {at}: {status} (signal {:?}) {said:?}",
                status.signal()
            );
            check_after(dir.path(), &at, &said);
            runs += 1;
        }
    }
    eprintln!("{runs} crash points checked");
}
