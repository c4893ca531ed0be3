//! A download's receivers as its coordinator sees them: which share each
//! reads, how far it has delivered, starting one, filing what it sends,
//! dropping one that failed, and parking them all
//! ([`park`](crate::client::park)).
//!
//! The receivers themselves run as tasks ([`receive`](crate::client::receive));
//! [`Receivers`] aborts them when dropped, so a cancelled download leaves
//! none running, holding a session and a pool slot until a deadline.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::chk::{BlockChecker, Ueb};
use crate::client::conn::ServerRef;
use crate::client::decoding::{file_arrival, Held};
use crate::client::download_report::DownloadReport;
use crate::client::park::Parked;
use crate::client::receive::{receive_or_report, Arrival, Permits, Plan, Source};
use crate::error::{ClientError, CodecError};
use crate::types::StorageIndex;

/// Blocks received and not yet being decoded, by segment, each share's
/// once.
pub(crate) type HeldBlocks = BTreeMap<u64, Vec<Held>>;

/// A receiver the coordinator runs: which share, how far, its task.
pub(crate) struct Live {
    pub(crate) slot: u64,
    pub(crate) shnum: u16,
    pub(crate) server: ServerRef,
    /// The next segment it is to deliver (every block before it arrived,
    /// checked).
    pub(crate) delivered: u64,
    checker: BlockChecker,
    permits: Permits,
    pub(crate) task: tokio::task::JoinHandle<Option<Source>>,
}

/// The download's running receivers, aborted when dropped.
pub(crate) struct Receivers(pub(crate) Vec<Live>);

impl Drop for Receivers {
    fn drop(&mut self) {
        for l in &self.0 {
            l.task.abort();
        }
    }
}

/// What every receiver of one download shares, and their numbering.
pub(crate) struct Crew {
    si: StorageIndex,
    ueb: Ueb,
    /// Segments of read-ahead the budget allows.
    ahead: u64,
    tx: mpsc::UnboundedSender<Arrival>,
    /// The most blocks any receiver held at once.
    pub(crate) peak: Arc<AtomicU64>,
    next_slot: u64,
}

impl Crew {
    /// A crew for the file `ueb` describes, sending to `tx`.
    pub(crate) fn new(
        si: StorageIndex,
        ueb: Ueb,
        ahead: u64,
        tx: mpsc::UnboundedSender<Arrival>,
    ) -> Self {
        Crew {
            si,
            ueb,
            ahead,
            tx,
            peak: Arc::new(AtomicU64::new(0)),
            next_slot: 0,
        }
    }

    /// Start a receiver reading `src` from segment `from` on, with the
    /// share's `permits` if it held some before (else new ones).
    pub(crate) fn start(
        &mut self,
        live: &mut Receivers,
        src: Source,
        from: u64,
        permits: Option<Permits>,
    ) {
        let permits = permits.unwrap_or_else(|| Permits::for_share(self.ahead, &src.conn));
        let slot = self.next_slot;
        self.next_slot += 1;
        let plan = Plan {
            slot,
            si: self.si,
            ueb: self.ueb.clone(),
            from,
            permits: permits.clone(),
            tx: self.tx.clone(),
            peak: self.peak.clone(),
            checker: src.checker.clone(),
        };
        live.0.push(Live {
            slot,
            shnum: src.shnum,
            server: src.conn.server(),
            delivered: from,
            checker: src.checker.clone(),
            permits,
            task: tokio::spawn(receive_or_report(src, plan)),
        });
    }
}

/// File arrival `a` (a block under its segment, or its share's failure:
/// the share is dropped, a corrupt one noted in `report`). Whether its
/// share failed.
pub(crate) fn take_arrival(
    a: Arrival,
    live: &mut Receivers,
    held: &mut HeldBlocks,
    queued: u64,
    report: &mut DownloadReport,
) -> bool {
    let Some(l) = live.0.iter_mut().find(|l| l.slot == a.slot) else {
        // From a share already dropped (or parked).
        return false;
    };
    let failed = match a.block {
        Ok(block) => {
            l.delivered = a.seg + 1;
            let held_block = Held {
                block,
                _permit: a.permit,
            };
            file_arrival(held, queued, a.seg, held_block);
            false
        }
        Err(ClientError::Codec(CodecError::CorruptShare(_))) => {
            tracing::warn!(shnum = l.shnum, seg = a.seg, "corrupt block");
            report.corrupt.push((l.shnum, l.server.id));
            true
        }
        Err(e) => {
            tracing::warn!(shnum = l.shnum, "read failed: {e}");
            true
        }
    };
    if failed {
        drop_share(live, a.slot);
    }
    failed
}

/// Stop share `slot`'s receiver. (Its blocks already delivered were
/// checked and stay.)
pub(crate) fn drop_share(live: &mut Receivers, slot: u64) {
    if let Some(pos) = live.0.iter().position(|l| l.slot == slot) {
        let l = live.0.remove(pos);
        l.task.abort();
    }
}

/// Stop every receiver, closing its session (the reads it had in flight
/// are dropped), keep the blocks already off the sessions, and say what
/// is needed to read each share on from where it stopped. Shares that
/// delivered all `segments` are not kept.
pub(crate) fn park(
    live: &mut Receivers,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    held: &mut HeldBlocks,
    queued: u64,
    segments: u64,
    report: &mut DownloadReport,
) -> Vec<Parked> {
    for l in &live.0 {
        l.task.abort();
    }
    while let Ok(a) = rx.try_recv() {
        take_arrival(a, live, held, queued, report);
    }
    live.0
        .drain(..)
        .filter(|l| l.delivered < segments)
        .map(|l| Parked {
            server: l.server,
            shnum: l.shnum,
            checker: l.checker.clone(),
            from: l.delivered,
            permits: Some(l.permits.clone()),
        })
        .collect()
}
