//! The full check of a stored share, and what a reader's report of a
//! corrupt share gets: the store checks the share itself, checksum and the
//! share's own hash tree ([`ShareCheck`]), in one pass and bounded memory,
//! and quarantines it only if that fails.

use crate::chk::ShareCheck;
use crate::error::{CodecError, StoreError};
use crate::store::base::ShareStore;
use crate::types::{ReportVerdict, StorageIndex};

/// How long a share found good on a reader's report is not checked again
/// (a hostile reader repeating reports costs one check per share per this
/// long).
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(600);
/// Shares remembered as recently found good.
const RECENT_GOOD: usize = 1024;

/// What a full check of a stored share found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareHealth {
    /// The checksum and the share's own hash tree agree with its bytes.
    Good,
    /// The bytes on disk are not those written (the at-rest checksum fails).
    ChecksumMismatch,
    /// The checksum holds, but the share does not match its own extension
    /// block: it was written broken (or rewritten with its checksum).
    Inconsistent(String),
    /// The checksum holds and the share is of a newer format than this
    /// release reads: nothing more can be said.
    NewerFormat,
}

impl ShareStore {
    /// Check a stored share fully: its checksum and its own hash tree
    /// ([`ShareCheck`]), in one pass, in bounded memory. Changes nothing.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Io`].
    pub fn check(&self, si: &StorageIndex, shnum: u16) -> Result<ShareHealth, StoreError> {
        let size = self.share_size(si, shnum)?;
        let tail_len = size.min(ShareCheck::TAIL_LEN);
        let tail = self.read_range(si, shnum, size - tail_len, tail_len)?;
        let mut check = ShareCheck::new(shnum, size, &tail);
        let sum_ok = self.stream(si, shnum, |b| {
            if let Ok(c) = check.as_mut() {
                c.feed(b);
            }
        })?;
        if !sum_ok {
            return Ok(ShareHealth::ChecksumMismatch);
        }
        Ok(match check.and_then(ShareCheck::finish) {
            Ok(()) => ShareHealth::Good,
            Err(CodecError::UnsupportedVersion { .. }) => ShareHealth::NewerFormat,
            Err(e) => ShareHealth::Inconsistent(e.to_string()),
        })
    }

    /// A reader says share `shnum` of `si` is corrupt. The store checks it
    /// itself ([`ShareStore::check`]) and quarantines it only if it fails;
    /// a share found good is not checked again for ten minutes (a reader
    /// repeating the report costs nothing more).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Io`].
    pub fn report_corrupt(
        &self,
        si: &StorageIndex,
        shnum: u16,
    ) -> Result<ReportVerdict, StoreError> {
        let key = (*si, shnum);
        let now = std::time::Instant::now();
        {
            let mut recent = self
                .inner
                .recent_good
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            recent.retain(|(_, at)| now.duration_since(*at) < RECHECK_AFTER);
            if recent.iter().any(|(k, _)| *k == key) {
                self.share_size(si, shnum)?;
                return Ok(ReportVerdict::Kept);
            }
        }
        match self.check(si, shnum)? {
            ShareHealth::Good | ShareHealth::NewerFormat => {
                let mut recent = self
                    .inner
                    .recent_good
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if recent.len() >= RECENT_GOOD {
                    recent.pop_front();
                }
                recent.push_back((key, now));
                Ok(ReportVerdict::Kept)
            }
            bad => {
                tracing::warn!(%si, shnum, "a reader reported the share corrupt and it is: {bad:?}");
                self.quarantine(si, shnum);
                Ok(ReportVerdict::Quarantined)
            }
        }
    }
}
