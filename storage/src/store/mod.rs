//! The on-disk share store of a storage server.
//!
//! Layout under the store's root:
//!
//! ```text
//! shares/<first 2 chars of SI>/<SI in base32>/<share number>   finished shares
//! slots/<first 2 chars of SI>/<SI in base32>/<share number>    mutable slots
//! incoming/<SI in base32>.<share number>.<random>              shares being written
//! corrupt/<SI in base32>.<share number>.<random>               quarantined shares
//! format                                                       "grapevine share store <version>"
//! lock                                                         held while a process uses the store
//! ```
//!
//! The store's guarantees, each with its test:
//!
//! * **One process per store.** [`ShareStore::open`] takes an exclusive
//!   lock on `lock` (`fs4`, `flock(2)`) and refuses a store another
//!   process (or another open in this one) holds, before touching anything
//!   (`second_open_is_refused_and_touches_nothing`). The lock dies with
//!   the process, so a crash never leaves it held.
//! * **Versioned.** The `format` file names the layout's version
//!   ([`STORE_FORMAT`]); a store of a newer format is refused before
//!   anything in it is read, removed or written.
//! * **A share is wholly there or not at all, and once acknowledged it
//!   stays.** [`ShareStore::allocate`] reserves the announced size,
//!   [`ShareWriter::write_at`] fills a temporary file under `incoming/`
//!   (emptied at open), [`ShareWriter::close`] fsyncs it, creates its
//!   directories durably up to the root, moves it into place without
//!   replacing anything and fsyncs its directory (module `writer`;
//!   `durable` has the filesystem steps; `tests/tests/store_crash.rs` kills
//!   a process at each named point, [`Point`]).
//! * **Written once.** A share is never replaced: of two writers of the
//!   same share, the second to close gets [`StoreError::AlreadyExists`](crate::error::StoreError::AlreadyExists).
//! * **Space is never promised twice.** Free space above the reserve and
//!   the node's offered capacity are checked, and the share's size
//!   reserved, in one step (module `space`); used bytes are a running
//!   counter.
//! * **Corruption is found and set aside.** Each finished share ends with
//!   a 16-byte XXH3-128 checksum of its contents, checked on whole-share
//!   reads, by [`ShareStore::verify`] and by the background scrub (module
//!   `scrub`); a share that fails it is moved to `corrupt/`, never served
//!   again. The checksum guards against the disk, not against people (a
//!   server can rewrite its own files): readers check every block against
//!   the BLAKE3 hashes under the capability. A non-cryptographic checksum
//!   does that job at several times BLAKE3's speed, on the upload's hot
//!   path.
//! * **A reader cannot have good shares removed.** A reader's report that
//!   a share is corrupt ([`ShareStore::report_corrupt`]) is checked by the
//!   store itself, checksum and the share's own hash tree
//!   ([`crate::chk::ShareCheck`]); only a share that fails is quarantined.
//! * **Shares are deleted only on the server's own decision** (module
//!   `delete`): no request of the protocol removes a share; deleting takes
//!   a [`Deletion`], which for a moved share is made only by the server's
//!   own check of the copy. **Mutable slots** (module `slot`) are replaced
//!   atomically and only by a higher sequence number.

mod base;
mod check;
mod delete;
mod durable;
mod hooks;
mod index;
mod scrub;
mod slot;
mod space;
mod writer;

pub use crate::types::{ReportVerdict, MAX_SHARES, MAX_SHARE_SIZE};
pub use base::{ShareStore, StoreConfig, STORE_FORMAT};
pub use check::ShareHealth;
pub use delete::{CopyCheck, Deletion, VerifiedCopy};
#[cfg(any(test, feature = "test-util"))]
pub use hooks::Hook;
pub use hooks::Point;
pub use scrub::{RateLimit, ScrubStats, Scrubber, Step};
pub use slot::MAX_SLOT;
pub use space::SpaceFigures;
pub use writer::ShareWriter;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod basic_tests {
    use super::base::TRAILER;
    use super::*;
    use crate::error::StoreError;
    use crate::types::StorageIndex;
    use std::fs;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use crate::types::SI_LEN;

    fn si(b: u8) -> StorageIndex {
        StorageIndex([b; SI_LEN])
    }

    /// The compatibility rule for the store: a new store is marked with
    /// this release's format; a store marked with a newer one is refused
    /// and left exactly as it was (even its unfinished uploads).
    #[test]
    fn store_format_is_written_and_a_newer_one_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        ShareStore::open(dir.path(), 0).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("format")).unwrap(),
            "grapevine share store 1\n"
        );
        // Reopening a store of this format is fine.
        ShareStore::open(dir.path(), 0).unwrap();
        // A newer release's store, with an upload in progress.
        fs::write(dir.path().join("format"), "grapevine share store 2\n").unwrap();
        fs::write(dir.path().join("incoming").join("x.0.1"), b"partial").unwrap();
        assert!(matches!(
            ShareStore::open(dir.path(), 0),
            Err(StoreError::UnsupportedFormat { supported: 1, .. })
        ));
        assert!(dir.path().join("incoming").join("x.0.1").exists());
        // Garbage is refused too, not taken for a format.
        fs::write(dir.path().join("format"), "something else").unwrap();
        assert!(matches!(
            ShareStore::open(dir.path(), 0),
            Err(StoreError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn write_once_then_read_by_range_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(1), 3, 10).unwrap();
        w.write_at(0, b"hello").unwrap();
        w.write_at(5, b"world").unwrap();
        assert!(
            s.list(&si(1)).unwrap().is_empty(),
            "not visible before close"
        );
        w.close().unwrap();
        assert_eq!(s.list(&si(1)).unwrap(), vec![3]);
        assert_eq!(s.stored_bytes(), 10 + TRAILER);
        assert_eq!(s.read(&si(1), 3, 0, 10).unwrap(), b"helloworld");
        assert_eq!(s.read(&si(1), 3, 2, 4).unwrap(), b"llow");
        assert!(matches!(
            s.read(&si(1), 3, 8, 4),
            Err(StoreError::OutOfRange)
        ));
        assert!(matches!(
            s.allocate(&si(1), 3, 10),
            Err(StoreError::AlreadyExists)
        ));
        assert!(matches!(s.read(&si(2), 0, 0, 1), Err(StoreError::NotFound)));
    }

    #[test]
    fn refuses_writes_past_allocation_gaps_and_short_closes() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(1), 0, 4).unwrap();
        assert!(matches!(
            w.write_at(0, b"12345"),
            Err(StoreError::BeyondAllocation)
        ));
        assert!(matches!(
            w.write_at(1, b"2"),
            Err(StoreError::NotSequential { .. })
        ));
        w.write_at(0, b"12").unwrap();
        assert!(matches!(
            w.close(),
            Err(StoreError::Incomplete {
                written: 2,
                size: 4
            })
        ));
        assert!(s.list(&si(1)).unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            0
        );
        assert!(matches!(
            s.allocate(&si(1), 300, 4),
            Err(StoreError::BadShareNumber(300))
        ));
        assert!(matches!(
            s.allocate(&si(1), 1, 0),
            Err(StoreError::TooLarge(0))
        ));
    }

    #[test]
    fn full_disk_is_a_clear_error_and_reservations_count() {
        let dir = tempfile::tempdir().unwrap();
        let free = Arc::new(AtomicU64::new(1000));
        let s = ShareStore::open(dir.path(), 100)
            .unwrap()
            .with_free_space_override(free.clone());
        let w = s.allocate(&si(1), 0, 500).unwrap();
        // 1000 - 100 reserve - 532 promised = 368 left.
        assert!(matches!(
            s.allocate(&si(1), 1, 400),
            Err(StoreError::NoSpace { .. })
        ));
        drop(w);
        s.allocate(&si(1), 1, 400).unwrap();
    }

    #[test]
    fn corrupt_share_is_detected_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(7), 0, 8).unwrap();
        w.write_at(0, b"12345678").unwrap();
        w.close().unwrap();
        let p = s.share_path(&si(7), 0);
        let mut bytes = fs::read(&p).unwrap();
        bytes[3] ^= 0xff;
        fs::write(&p, bytes).unwrap();
        assert!(matches!(s.verify(&si(7), 0), Err(StoreError::Corrupt)));
        assert!(
            s.list(&si(7)).unwrap().is_empty(),
            "quarantined, never served again"
        );
        assert_eq!(fs::read_dir(dir.path().join("corrupt")).unwrap().count(), 1);
    }

    #[test]
    fn partial_shares_from_a_crash_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = s.allocate(&si(9), 0, 8).unwrap();
        w.write_at(0, b"1234").unwrap();
        // The process dies mid-write: its temporary file stays behind (a
        // copy of it, since dropping the writer would remove it).
        let left = dir.path().join("incoming").join("left-by-a-crash");
        fs::copy(&w.tmp, &left).unwrap();
        drop((w, s));
        let s = ShareStore::open(dir.path(), 0).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            0
        );
        assert!(s.list(&si(9)).unwrap().is_empty());
    }
}
