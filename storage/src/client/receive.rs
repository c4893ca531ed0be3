//! A download's receiver for one share: it keeps the share's session busy
//! with pipelined block reads and hands each block, as soon as it is off
//! the session, to the download's coordinator
//! ([`download`](crate::client::download)).
//!
//! The receiver never holds more than `ahead` of its share's blocks at
//! once (the budget's read-ahead, or fewer where the link is short:
//! [`Permits::for_share`]): each read takes a permit from the share's own semaphore before it
//! is sent, and the permit travels with the block through the queue and
//! the decoder, released only when the segment it belongs to has been
//! decoded and written (its plaintext lies in the blocks' buffers), or
//! given up. A share whose blocks the decoder cannot use yet
//! (another share is slow) therefore stops asking after `ahead` blocks,
//! whatever the others do, and memory stays within the budget's
//! [`read_ahead`](crate::MemoryBudget::read_ahead) segments.
//!
//! The receiver stops at the file's last segment, at its share's first
//! failure (reported as an [`Arrival`] carrying the error) or when the
//! download is gone (the queue closed). It gives its [`Source`] back so a
//! download that ends well can return the session to the pool.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::chk::{BlockChecker, CheckedBlock, Ueb};
use crate::client::conn::Conn;
use crate::error::ClientError;
use crate::protocol::Request;
use crate::types::StorageIndex;

/// A share opened for reading: its session, its number and its block
/// hashes (accepted when it was opened).
pub(crate) struct Source {
    pub(crate) conn: Conn,
    pub(crate) shnum: u16,
    pub(crate) checker: BlockChecker,
}

/// One block off a share's session (or the read's failure).
pub(crate) struct Arrival {
    /// Which receiver it came from (the coordinator's number for it).
    pub(crate) slot: u64,
    /// The segment.
    pub(crate) seg: u64,
    /// The block, checked against its share's hash list, or why the share
    /// failed (a corrupt block:
    /// [`CodecError::CorruptShare`](crate::error::CodecError::CorruptShare)).
    pub(crate) block: Result<CheckedBlock, ClientError>,
    /// The share's read-ahead permit, released with the block.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// What a receiver reads and where it sends it.
pub(crate) struct Plan {
    /// The coordinator's number for this receiver.
    pub(crate) slot: u64,
    /// The file.
    pub(crate) si: StorageIndex,
    /// The file's layout (block offsets and lengths).
    pub(crate) ueb: Ueb,
    /// First segment to read.
    pub(crate) from: u64,
    /// The share's read-ahead permits: one per block held (requested,
    /// queued, being decoded or waiting to be written).
    pub(crate) permits: Permits,
    /// Where the blocks go.
    pub(crate) tx: mpsc::UnboundedSender<Arrival>,
    /// The most blocks any receiver held at once (for the report).
    pub(crate) peak: Arc<AtomicU64>,
    /// The share's block hashes: every block is checked here, as it
    /// arrives, so the checks of several shares run on several cores and
    /// a segment's decoding only decodes.
    pub(crate) checker: BlockChecker,
}

/// A share's read-ahead permits, one per block it holds. They outlive
/// its receiver: a download that parks
/// ([`park`](crate::client::park)) and reads the share again on a new
/// session goes on with the same permits, some still held by blocks the
/// first receiver delivered, so the share never holds more than its
/// read-ahead.
#[derive(Debug, Clone)]
pub(crate) struct Permits {
    sem: Arc<Semaphore>,
    of: usize,
}

impl Permits {
    /// Permits for a share read over `conn`: the budget's `ahead`
    /// segments, but no deeper than the link needs (`Conn::depth`: two
    /// blocks on a short link, whose bytes would otherwise wait in socket
    /// buffers and go cold; the budget's on a long one), measured by now:
    /// the session's opening and the share's first requests were round
    /// trips. At least one.
    pub(crate) fn for_share(ahead: u64, conn: &Conn) -> Self {
        let ahead = ahead.min(conn.depth() as u64).max(1);
        let of = usize::try_from(ahead)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Permits {
            sem: Arc::new(Semaphore::new(of)),
            of,
        }
    }

    /// Permits taken (blocks held).
    fn held(&self) -> usize {
        self.of - self.sem.available_permits()
    }
}

/// [`receive`], whose end the coordinator always hears of: a panic in it
/// (a bug) is caught and reported as the share's failure, so the download
/// replaces the share instead of waiting for blocks that never come.
/// `None` then (the session goes with it).
pub(crate) async fn receive_or_report(src: Source, plan: Plan) -> Option<Source> {
    let (tx, slot) = (plan.tx.clone(), plan.slot);
    reported(receive(src, plan), tx, slot).await
}

/// Run `work`; if it panics, tell the coordinator that receiver `slot`
/// failed.
async fn reported<F: Future>(
    work: F,
    tx: mpsc::UnboundedSender<Arrival>,
    slot: u64,
) -> Option<F::Output> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(slot, "a download's receiver panicked; its share is dropped");
            let _ = tx.send(Arrival {
                slot,
                seg: 0,
                block: Err(ClientError::Io(std::io::Error::other(
                    "the share's receiver failed",
                ))),
                permit: None,
            });
            None
        }
    }
}

/// Read blocks `plan.from..` of `src`'s share and send them to the
/// coordinator, at most as many held at a time as it has permits. Returns the source
/// (its session reusable if everything asked was answered).
pub(crate) async fn receive(mut src: Source, plan: Plan) -> Source {
    let Plan {
        slot,
        si,
        ueb,
        from,
        permits,
        tx,
        peak,
        checker,
    } = plan;
    let segments = ueb.segments();
    let sem = permits.sem.clone();
    let mut next = from;
    let mut in_flight: VecDeque<(u64, OwnedSemaphorePermit)> = VecDeque::new();
    loop {
        // Ask as far ahead as the permits allow without waiting.
        while next < segments {
            let permit = if in_flight.is_empty() {
                // Nothing to receive: wait for the decoder to free a
                // permit, or for the download to end.
                tokio::select! {
                    p = sem.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return src,
                    },
                    _ = tx.closed() => return src,
                }
            } else {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            };
            let r = src
                .conn
                .send(Request::Read {
                    si,
                    shnum: src.shnum,
                    offset: ueb.block_offset(next),
                    len: ueb.block_len(next) as u32,
                })
                .await;
            if let Err(e) = r {
                let _ = tx.send(Arrival {
                    slot,
                    seg: next,
                    block: Err(e),
                    permit: None,
                });
                return src;
            }
            in_flight.push_back((next, permit));
            next += 1;
            peak.fetch_max(permits.held() as u64, Ordering::Relaxed);
        }
        let Some((seg, permit)) = in_flight.pop_front() else {
            return src;
        };
        let block = match src.conn.recv_data(ueb.block_len(seg)).await {
            Ok(b) => checker.check(seg, b).map_err(ClientError::from),
            Err(e) => Err(e),
        };
        let failed = block.is_err();
        let sent = tx.send(Arrival {
            slot,
            seg,
            block,
            permit: Some(permit),
        });
        if failed || sent.is_err() {
            return src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that panics is heard of as its share's failure; one that
    /// ends well sends nothing more.
    #[tokio::test]
    async fn a_receiver_that_panics_is_reported_as_its_shares_failure() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ok = reported(async { 5u8 }, tx.clone(), 3).await;
        assert_eq!(ok, Some(5));
        assert!(
            rx.try_recv().is_err(),
            "nothing sent for a receiver that ended"
        );
        let gone: Option<u8> = reported(async { panic!("a bug") }, tx, 7).await;
        assert_eq!(gone, None);
        let a = rx.try_recv().expect("the failure is reported");
        assert_eq!(a.slot, 7);
        assert!(matches!(a.block, Err(ClientError::Io(_))));
    }
}
