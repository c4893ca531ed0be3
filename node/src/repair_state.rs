//! The repair job's memory across restarts: `DIR/repair_state`.
//!
//! The planner ([`grapevine_storage::repair::Planner`]) knows, for each
//! file below its threshold, how long this node has seen it there and how
//! far a failed repair's backoff has gone. Lost at every restart, that
//! would let a responsible node that restarts more often than the grace
//! period never repair (the next holder takes over only a takeover period
//! later, every time). So the job writes the planner's state after every
//! pass ([`save`]: JSON, temporary file, fsync, rename, as `DIR/last_seq`),
//! and reads it back at start ([`load`]):
//!
//! * the time the node was down does not count: each file's clock resumes
//!   where it stopped ([`Planner::restore`](grapevine_storage::repair::Planner::restore));
//! * a state older than the grace period (the node was away longer than
//!   that) is dropped: the grid may have repaired and lost the file again
//!   meanwhile, so its clocks start over (later repairs, never sooner);
//! * the file is input like any other: one that is too large, not JSON or
//!   of another version is ignored with a warning, entries that do not
//!   parse are skipped, durations are clamped by the planner.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use grapevine_storage::repair::Saved;
use grapevine_storage::StorageIndex;
use serde::{Deserialize, Serialize};

/// The file's format version.
const VERSION: u32 = 1;
/// A state file longer than this is ignored (about 300,000 files below
/// their threshold).
const MAX_FILE_BYTES: u64 = 32 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// When it was written, Unix milliseconds.
    saved_unix_ms: u64,
    files: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    si: String,
    below_ms: u64,
    failures: u32,
    retry_in_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Write `saved` as the state at `path`, as of `now_unix_ms`.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, now_unix_ms: u64, saved: &[Saved]) -> std::io::Result<()> {
    let file = StateFile {
        version: VERSION,
        saved_unix_ms: now_unix_ms,
        files: saved
            .iter()
            .map(|s| Entry {
                si: s.si.to_string(),
                below_ms: ms(s.below_for),
                failures: s.failures,
                retry_in_ms: s.retry_in.map(ms),
            })
            .collect(),
    };
    let text = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    crate::seq::write_durably(path, &text)
}

/// The state at `path` to resume at `now_unix_ms`: none if there is no
/// file, if it cannot be read, or if it was written more than `max_age`
/// ago.
pub fn load(path: &Path, now_unix_ms: u64, max_age: Duration) -> Vec<Saved> {
    let mut text = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            if let Err(e) = f.take(MAX_FILE_BYTES + 1).read_to_end(&mut text) {
                tracing::warn!("repair state {}: {e}; starting over", path.display());
                return Vec::new();
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("repair state {}: {e}; starting over", path.display());
            return Vec::new();
        }
    }
    if text.len() as u64 > MAX_FILE_BYTES {
        tracing::warn!("repair state {}: too large; starting over", path.display());
        return Vec::new();
    }
    let file: StateFile = match serde_json::from_slice(&text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("repair state {}: {e}; starting over", path.display());
            return Vec::new();
        }
    };
    if file.version != VERSION {
        tracing::warn!(
            "repair state {}: version {} unknown; starting over",
            path.display(),
            file.version
        );
        return Vec::new();
    }
    // A clock that went back since: the time away is unknown, taken as none.
    let away = Duration::from_millis(now_unix_ms.saturating_sub(file.saved_unix_ms));
    if away > max_age {
        tracing::info!(
            "repair state {}: written {} s ago, more than the grace period; starting over",
            path.display(),
            away.as_secs()
        );
        return Vec::new();
    }
    let mut bad = 0usize;
    let out: Vec<Saved> = file
        .files
        .into_iter()
        .filter_map(|e| {
            let si = StorageIndex::parse(&e.si);
            if si.is_none() {
                bad += 1;
            }
            Some(Saved {
                si: si?,
                below_for: Duration::from_millis(e.below_ms),
                failures: e.failures,
                retry_in: e.retry_in_ms.map(Duration::from_millis),
            })
        })
        .collect();
    if bad > 0 {
        tracing::warn!(
            "repair state {}: {bad} entries skipped (not storage indexes)",
            path.display()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn saved() -> Vec<Saved> {
        vec![
            Saved {
                si: StorageIndex([1; 16]),
                below_for: Duration::from_millis(1_234_567),
                failures: 0,
                retry_in: None,
            },
            Saved {
                si: StorageIndex([2; 16]),
                below_for: HOUR * 5,
                failures: 3,
                retry_in: Some(Duration::from_secs(60)),
            },
        ]
    }

    /// What is saved comes back after an absence shorter than the grace
    /// period, and not after a longer one; a clock that went back is taken
    /// as no absence.
    #[test]
    fn the_state_survives_a_restart_shorter_than_the_grace_period() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("repair_state");
        assert!(load(&path, 0, HOUR).is_empty(), "no file: nothing");
        let at = 1_000_000_000_000u64;
        save(&path, at, &saved()).unwrap();
        assert_eq!(load(&path, at + 60_000, HOUR), saved());
        assert_eq!(load(&path, at - 60_000, HOUR), saved());
        assert!(load(&path, at + ms(HOUR) + 1, HOUR).is_empty());
    }

    /// A damaged file is ignored or its bad entries skipped; nothing
    /// panics.
    #[test]
    fn a_damaged_state_file_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("repair_state");
        for junk in [
            &b"not json"[..],
            br#"{"version":2,"saved_unix_ms":0,"files":[]}"#,
            br#"{"version":1,"saved_unix_ms":0}"#,
            b"",
        ] {
            std::fs::write(&path, junk).unwrap();
            assert!(load(&path, 0, HOUR).is_empty());
        }
        let si = StorageIndex([9; 16]).to_string();
        let text = format!(
            r#"{{"version":1,"saved_unix_ms":5,"files":[
              {{"si":"nope","below_ms":1,"failures":0,"retry_in_ms":null}},
              {{"si":"{si}","below_ms":18446744073709551615,"failures":4294967295,"retry_in_ms":18446744073709551615}}]}}"#
        );
        std::fs::write(&path, text).unwrap();
        let got = load(&path, 5, HOUR);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].si, StorageIndex([9; 16]));
        let big = vec![b' '; (MAX_FILE_BYTES + 2) as usize];
        std::fs::write(&path, big).unwrap();
        assert!(load(&path, 0, HOUR).is_empty());
    }
}
