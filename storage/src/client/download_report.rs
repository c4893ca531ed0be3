//! What a download did ([`DownloadReport`]): its bytes, the shares it
//! skipped as corrupt and what their servers did when told, and where its
//! time went ([`DownloadWaits`]).

use std::time::Duration;

use grapevine_crypto::identity::NodeId;

use crate::error::{ClientError, CodecError};
use crate::types::ReportVerdict;

/// What a download did.
#[derive(Debug, Clone, Default)]
pub struct DownloadReport {
    /// Bytes written.
    pub bytes: u64,
    /// Shares skipped as corrupt.
    pub corrupt: Vec<(u16, NodeId)>,
    /// What each corrupt share's server did when told (`None`: the report
    /// did not reach it).
    pub reported: Vec<(u16, NodeId, Option<ReportVerdict>)>,
    /// Shares skipped because their extension block is not the one the
    /// capability names (counted in `corrupt` too).
    pub unmatched: usize,
    /// Shares skipped for another reason than corruption (their server
    /// unreachable, a format this release cannot read, no session free).
    pub unusable: usize,
    /// Shares skipped, or servers not asked for their lists, because every
    /// session of the pool stayed in use (counted in `unusable` too).
    pub busy: usize,
    /// Where the download's time went (for benchmarks and logs).
    pub waits: DownloadWaits,
}

impl DownloadReport {
    /// Whether every share found failed on its extension block: then the
    /// capability is the likelier culprit than the shares.
    pub(crate) fn cap_mismatch(&self) -> bool {
        self.unmatched > 0 && self.unmatched == self.corrupt.len() && self.unusable == 0
    }

    /// What a download that failed with `e` says: a client whose pool was
    /// too busy to open a share it needed did not find the file missing,
    /// it was busy ([`ClientError::PoolExhausted`]: 503 at the gateway,
    /// worth trying again), whatever else failed.
    pub(crate) fn busy_or(&self, e: ClientError, sessions: usize) -> ClientError {
        let missing = matches!(
            e,
            ClientError::NoShares { .. } | ClientError::Codec(CodecError::NotEnoughShares { .. })
        );
        if missing && self.busy > 0 {
            ClientError::PoolExhausted(sessions)
        } else {
            e
        }
    }

    /// The error of a download that could open no share: when every share
    /// it found failed on its extension block, the capability is the
    /// likelier culprit ([`CodecError::CapMismatch`]).
    pub(crate) fn none_opened(&self, k: usize) -> ClientError {
        if self.cap_mismatch() {
            CodecError::CapMismatch {
                shares: self.unmatched,
            }
            .into()
        } else {
            CodecError::NotEnoughShares { have: 0, need: k }.into()
        }
    }
}

/// Where a download's time went (see the module docs): decoding summed
/// over segments near twice the download's time on two cores means
/// decoding bounds it; long waits for blocks mean the servers, sessions and
/// receivers do.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DownloadWaits {
    /// Time spent decoding segments, summed over segments (they decode
    /// side by side, so this may exceed the download's time).
    pub decoding: Duration,
    /// Time nothing was decoding: the download waiting for a segment's
    /// blocks.
    pub for_blocks: Duration,
    /// Time segments whose decoding had started waited for a worker to
    /// run it, summed over segments.
    pub for_decoder: Duration,
    /// Most blocks a share's receiver held at once, asked for, queued,
    /// being decoded or waiting to be written: segments read ahead (at
    /// most the memory budget's
    /// [`read_ahead_for`](crate::MemoryBudget::read_ahead_for) the file's
    /// segment size, and the session's [`Conn::depth`](crate::client::Conn::depth)).
    pub peak_ahead: u64,
}
