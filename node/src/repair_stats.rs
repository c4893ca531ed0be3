//! What the repair job ([`crate::repair`]) has done and how it is set: read
//! by `status`, the metrics and `grapevine repair`. A leaf, so the node's
//! state holds these without depending on the job that fills them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use grapevine_storage::repair::PlannerConfig;
use serde::{Deserialize, Serialize};

/// How many recent errors the job keeps for `grapevine repair`.
pub const LAST_ERRORS: usize = 10;

/// The repair job's settings (from the node's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSettings {
    /// Whether the job runs at all.
    pub enabled: bool,
    /// Time between checks of every held file.
    pub interval: Duration,
    /// The planner's grace, threshold, takeover and backoff.
    pub planner: PlannerConfig,
    /// Bytes a second repair reads and writes at most.
    pub bytes_per_s: u64,
}

/// What the repair job has done.
#[derive(Debug, Default)]
pub struct RepairStats {
    pub(crate) passes: AtomicU64,
    pub(crate) files_checked: AtomicU64,
    pub(crate) below_threshold: AtomicU64,
    pub(crate) unrecoverable: AtomicU64,
    pub(crate) waiting: AtomicU64,
    pub(crate) repairs_started: AtomicU64,
    pub(crate) repairs_succeeded: AtomicU64,
    pub(crate) shares_regenerated: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) minimum_read: AtomicU64,
    last_errors: Mutex<VecDeque<String>>,
}

impl RepairStats {
    /// The figures now, and the last errors.
    pub fn status(&self) -> RepairStatus {
        RepairStatus {
            passes: self.passes.load(Relaxed),
            files_checked: self.files_checked.load(Relaxed),
            below_threshold: self.below_threshold.load(Relaxed),
            unrecoverable: self.unrecoverable.load(Relaxed),
            queue: self.waiting.load(Relaxed),
            repairs_started: self.repairs_started.load(Relaxed),
            repairs_succeeded: self.repairs_succeeded.load(Relaxed),
            shares_regenerated: self.shares_regenerated.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            minimum_read: self.minimum_read.load(Relaxed),
            last_errors: self
                .last_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    pub(crate) fn error(&self, e: String) {
        let mut l = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() >= LAST_ERRORS {
            l.pop_front();
        }
        l.push_back(e);
    }
}

/// What the repair job has done (`grapevine repair`, and `repair_*` in
/// `status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStatus {
    /// Passes over the held files completed.
    pub passes: u64,
    /// File checks made.
    pub files_checked: u64,
    /// Files below their threshold at their last check (last pass).
    pub below_threshold: u64,
    /// Files with fewer than k good shares at their last check (last pass).
    pub unrecoverable: u64,
    /// Files below their threshold waiting for their grace period, another
    /// holder or a backoff (last pass).
    pub queue: u64,
    /// Repairs this node started.
    pub repairs_started: u64,
    /// Repairs that left their file at or above its threshold.
    pub repairs_succeeded: u64,
    /// Shares regenerated and written.
    pub shares_regenerated: u64,
    /// Bytes repair read.
    pub bytes_read: u64,
    /// Bytes repair wrote.
    pub bytes_written: u64,
    /// The least its repairs that regenerated shares could have read (`k`
    /// blocks per segment each): `bytes_read` over it is the read
    /// amplification.
    #[serde(default)]
    pub minimum_read: u64,
    /// The last errors, oldest first.
    pub last_errors: Vec<String>,
}
