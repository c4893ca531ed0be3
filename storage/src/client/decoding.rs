//! A download's decoder: one blocking thread that checks and decodes the
//! segments the coordinator ([`download`](crate::client::download)) hands
//! it, in order, back to back.
//!
//! The coordinator queues a segment as soon as `k` of its blocks have
//! arrived, up to [`DECODE_AHEAD`] segments before the decoder, so the
//! decoder goes from one segment straight to the next without waiting for
//! the coordinator (which shares the runtime's workers with the receivers
//! and, in a one-process grid, with the servers) to wake and hand it work.
//! Every block was checked against its share's hash list by the receiver
//! that read it ([`BlockChecker`](crate::chk::BlockChecker), on whichever
//! core ran the receiver), so the thread only decodes
//! ([`Decoder::decode_checked_segment`]): restores missing originals,
//! hashes the ciphertext and decrypts. A segment that fails to decode
//! (it cannot, with checked blocks, short of a bug) ends the download.
//!
//! The thread keeps each segment's blocks (and so its shares' read-ahead
//! permits) until the segment is decoded, so what is queued counts against
//! the memory budget's [`read_ahead`](crate::MemoryBudget::read_ahead).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::chk::{CheckedBlock, Decoder};
use crate::error::CodecError;

/// Segments queued for the decoder at most, the one it decodes included.
pub(crate) const DECODE_AHEAD: u64 = 3;

/// A block received and waiting for its segment's decoding; its permit
/// keeps its share's receiver from asking too far ahead.
pub(crate) struct Held {
    /// The coordinator's number for the receiver it came from.
    pub(crate) slot: u64,
    /// The block, checked.
    pub(crate) block: CheckedBlock,
    /// Released when the block is.
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

/// A segment for the decoder: its number, at least `k` blocks, when it
/// was queued.
pub(crate) struct Job {
    pub(crate) seg: u64,
    pub(crate) blocks: Vec<Held>,
    pub(crate) queued: Instant,
}

/// What the decoder did with a segment, in the order they were queued.
pub(crate) enum Done {
    /// Its plaintext, in pieces (the blocks are released).
    Plain(Vec<Bytes>),
    /// Not decoded (an earlier segment failed); the blocks given back.
    Unused(u64, Vec<Held>),
    /// Decoding failed for good.
    Failed(CodecError),
}

/// Where the decoder's time went.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Times {
    /// Checking and decoding.
    pub(crate) decoding: Duration,
    /// Idle, waiting for a segment's blocks.
    pub(crate) for_blocks: Duration,
    /// Summed over segments: how long each waited in the queue for the
    /// decoder.
    pub(crate) queued: Duration,
}

/// A running decoder thread.
pub(crate) struct Decoding {
    pub(crate) jobs: mpsc::UnboundedSender<Job>,
    pub(crate) done: mpsc::UnboundedReceiver<Done>,
    pub(crate) thread: tokio::task::JoinHandle<(Decoder, Times)>,
}

/// Start a decoder thread on `dec`, which decodes the next segment it is
/// given (segments must be queued in order, from the decoder's next).
pub(crate) fn start(mut dec: Decoder) -> Decoding {
    let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
    let (tx, done) = mpsc::unbounded_channel();
    let thread = tokio::task::spawn_blocking(move || {
        let mut times = Times::default();
        let mut stopped = false;
        loop {
            let idle = Instant::now();
            let Some(job) = rx.blocking_recv() else { break };
            let start = Instant::now();
            if stopped {
                let _ = tx.send(Done::Unused(job.seg, job.blocks));
                continue;
            }
            times.for_blocks += start.duration_since(idle);
            times.queued += start.saturating_duration_since(job.queued);
            // The blocks go to the decoder, which decrypts them where they
            // lie; their permits are released once they are decoded.
            let (input, permits): (Vec<CheckedBlock>, Vec<_>) =
                job.blocks.into_iter().map(|h| (h.block, h._permit)).unzip();
            let r = dec.decode_checked_segment(input);
            drop(permits);
            times.decoding += start.elapsed();
            let out = match r {
                Ok(plain) => Done::Plain(plain),
                Err(e) => {
                    stopped = true;
                    Done::Failed(e)
                }
            };
            if tx.send(out).is_err() {
                break;
            }
        }
        (dec, times)
    });
    Decoding { jobs, done, thread }
}
