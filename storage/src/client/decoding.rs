//! A download's decoding: each segment decoded as a task of its own, up
//! to [`DECODE_AHEAD`] at once, and handed back in order.
//!
//! The coordinator ([`download`](crate::client::download)) starts a
//! segment's decoding as soon as `k` of its blocks have arrived. Every
//! block was checked against its share's hash list by the receiver that
//! read it ([`BlockChecker`](crate::chk::BlockChecker)), so a task only
//! decodes ([`SegmentDecoder::decode`]): restores missing originals,
//! hashes the ciphertext (as a subtree of the whole file's hash) and
//! decrypts. The coordinator takes the results in order and gives them to
//! the [`Decoder`](crate::chk::Decoder), which merges the hashes and checks
//! the whole after the last segment.
//!
//! Why tasks and not one decoding thread: a thread of its own was a third
//! thread on two cores, and the download's one serial stage. Profiles
//! (`perf sched`, docs/performance.md) showed it sharing a core with a
//! runtime worker while the other core idled, the decoder and the workers
//! taking turns instead of overlapping. As tasks, segments decode on
//! whichever worker is free, two at once on two cores, and nothing waits
//! for a thread to be woken.
//!
//! A segment's blocks (and so its shares' read-ahead permits) are held
//! until the segment is decoded, so what is decoding counts against the
//! memory budget's [`read_ahead`](crate::MemoryBudget::read_ahead).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use crate::chk::{CheckedBlock, DecodedSegment, SegmentDecoder};
use crate::error::{ClientError, CodecError};

/// Segments started and not yet written at most: decoding, or decoded and
/// waiting for an earlier one.
pub(crate) const DECODE_AHEAD: u64 = 3;

/// A block received and waiting for its segment's decoding; its permit
/// keeps its share's receiver from asking too far ahead.
pub(crate) struct Held {
    /// The block, checked.
    pub(crate) block: CheckedBlock,
    /// Released when the block is.
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

/// Where the decoding's time went.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Times {
    /// Decoding, summed over segments (more than the download's time when
    /// segments decode side by side).
    pub(crate) decoding: Duration,
    /// Nothing decoding: the coordinator waiting for a segment's blocks.
    pub(crate) for_blocks: Duration,
    /// Summed over segments: how long each waited, started, for a worker.
    pub(crate) queued: Duration,
}

/// A segment's decoding as its task ends it.
struct Finished {
    decoded: Result<DecodedSegment, CodecError>,
    took: Duration,
    waited: Duration,
}

/// The segments being decoded, in order; their tasks are aborted if this
/// is dropped (a download cancelled).
pub(crate) struct Decoding {
    decoder: SegmentDecoder,
    tasks: VecDeque<JoinHandle<Finished>>,
    pub(crate) times: Times,
}

impl Decoding {
    /// Decode segments with `decoder`.
    pub(crate) fn new(decoder: SegmentDecoder) -> Self {
        Decoding {
            decoder,
            tasks: VecDeque::new(),
            times: Times::default(),
        }
    }

    /// Whether no segment is being decoded or waiting to be taken.
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Start decoding segment `seg` from `blocks` (at least `k`, checked),
    /// after the segments already started.
    pub(crate) fn start(&mut self, seg: u64, blocks: Vec<Held>) {
        let decoder = self.decoder.clone();
        let queued = Instant::now();
        self.tasks.push_back(tokio::spawn(async move {
            let start = Instant::now();
            // The blocks go to the decoder, which decrypts them where they
            // lie; their permits are released once they are decoded.
            let (input, permits): (Vec<CheckedBlock>, Vec<_>) =
                blocks.into_iter().map(|h| (h.block, h._permit)).unzip();
            let decoded = decoder.decode(seg, input);
            drop(permits);
            Finished {
                decoded,
                took: start.elapsed(),
                waited: start.duration_since(queued),
            }
        }));
    }

    /// The first segment started, decoded (cancel-safe: the segment stays
    /// first until this returns). Pending forever when nothing was
    /// started.
    pub(crate) async fn next(&mut self) -> Result<DecodedSegment, ClientError> {
        let Some(task) = self.tasks.front_mut() else {
            return std::future::pending().await;
        };
        let finished = task.await;
        self.tasks.pop_front();
        match finished {
            Ok(f) => {
                self.times.decoding += f.took;
                self.times.queued += f.waited;
                Ok(f.decoded?)
            }
            // A panic (a bug): the download fails rather than waits.
            Err(e) => Err(ClientError::Io(std::io::Error::other(format!(
                "a segment's decoding failed: {e}"
            )))),
        }
    }
}

impl Drop for Decoding {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
