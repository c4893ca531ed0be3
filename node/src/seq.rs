//! Sequence numbers that only go up, whatever the clock says.
//!
//! A record's sequence number orders a node's records: the grid keeps the
//! highest it has seen and drops anything at or below it. It used to be the
//! wall clock at signing (Unix milliseconds), so a node whose clock was
//! behind (a board with no real-time clock, before NTP answers) signed
//! records older than the one the grid held and could not come back, and a
//! node that once ran with its clock far ahead signed numbers no later run
//! could pass.
//!
//! So the last number the node signed (a record's sequence number, or an
//! incarnation its membership core signed in a refutation) is kept in its
//! directory, `DIR/last_seq` (decimal, one line), and the next record's is
//! `max(last + 1, now in Unix milliseconds)`: the clock is used while it
//! is ahead of what was signed, never to go back. [`SeqFile::next`] writes
//! the number (temporary file, fsync, rename, fsync of the directory)
//! before it is returned, so nothing signed with it is sent before it is on
//! disk; numbers the core signs reach [`SeqFile::note`] through the
//! membership driver's hook before the datagrams carrying them are sent.
//! A directory restored from a backup (or a clock once ahead and a lost
//! file) may still sign below what the grid holds: the grid then hands the
//! node its previous record, and it signs again above it (see
//! `grapevine_membership::swim`'s `records`).
//!
//! [`WallClock`] is the wall clock with a skew, so a test can run a node
//! whose clock is a day behind or a year ahead through the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The wall clock, `skew_ms` off the system's (0 in production).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallClock {
    /// Added to the system clock, milliseconds.
    pub skew_ms: i64,
}

impl WallClock {
    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> u64 {
        grapevine_membership::driver::unix_ms(self.skew_ms)
    }
}

/// The last sequence number signed, kept in a file.
#[derive(Debug)]
pub struct SeqFile {
    path: PathBuf,
    /// The number in the file.
    last: Mutex<u64>,
}

fn invalid(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{}: {what} (it holds the last sequence number this node signed; remove it only if this node's id has never been used on a grid)",
            path.display()
        ),
    )
}

impl SeqFile {
    /// The file at `path`; none there means nothing signed yet (0).
    ///
    /// # Errors
    /// The file cannot be read or does not hold a number.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<SeqFile> {
        let path = path.into();
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(&path, "not a number"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(SeqFile {
            path,
            last: Mutex::new(last),
        })
    }

    /// The last number signed (0: none).
    pub fn last(&self) -> u64 {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number to sign the next record with, `max(last + 1, now_ms)`,
    /// kept on disk before it is returned.
    ///
    /// # Errors
    /// The file cannot be written (nothing was signed with the number), or
    /// the last number is `u64::MAX`.
    pub fn next(&self, now_ms: u64) -> std::io::Result<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let n = last
            .checked_add(1)
            .ok_or_else(|| invalid(&self.path, "no number is higher"))?
            .max(now_ms);
        write_durably(&self.path, format!("{n}\n").as_bytes())?;
        *last = n;
        Ok(n)
    }

    /// `n` was signed (by the membership core): kept if above the last.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn note(&self, n: u64) -> std::io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if n > *last {
            write_durably(&self.path, format!("{n}\n").as_bytes())?;
            *last = n;
        }
        Ok(())
    }
}

/// Replace the file at `path` with `bytes` so that a crash leaves the old
/// contents or the new, never a mix: a temporary file beside it, fsync,
/// rename, fsync of the directory.
///
/// # Errors
/// Any step's.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_only_go_up_whatever_the_clock_and_survive_a_reopen() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("last_seq");
        let s = SeqFile::open(&path).unwrap();
        assert_eq!(s.last(), 0);
        // The clock leads while it is ahead of what was signed.
        assert_eq!(s.next(1_000).unwrap(), 1_000);
        assert_eq!(s.next(5_000).unwrap(), 5_000);
        // A clock that went back: one above the last, not the clock.
        assert_eq!(s.next(1).unwrap(), 5_001);
        // The core signed a refutation above it.
        s.note(7_000).unwrap();
        s.note(6_000).unwrap();
        assert_eq!(s.last(), 7_000);
        drop(s);
        let s = SeqFile::open(&path).unwrap();
        assert_eq!(s.last(), 7_000, "kept on disk");
        assert_eq!(s.next(0).unwrap(), 7_001);
        assert!(!t.path().join("last_seq.tmp").exists());
        // A file that holds no number is an error naming it, not a zero.
        std::fs::write(&path, "garbage\n").unwrap();
        let e = SeqFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("last_seq") && e.contains("not a number"), "{e}");
        // At the top there is nothing higher: an error, nothing written.
        std::fs::write(&path, format!("{}\n", u64::MAX)).unwrap();
        let s = SeqFile::open(&path).unwrap();
        assert!(s.next(1).is_err());
        assert_eq!(SeqFile::open(&path).unwrap().last(), u64::MAX);
    }

    #[test]
    fn a_skewed_clock_is_the_system_clock_moved() {
        let now = WallClock::default().unix_ms();
        let behind = WallClock {
            skew_ms: -86_400_000,
        }
        .unix_ms();
        let diff = now.abs_diff(behind + 86_400_000);
        assert!(diff < 60_000, "{diff}");
        assert_eq!(WallClock { skew_ms: i64::MIN }.unix_ms(), 0);
    }
}
