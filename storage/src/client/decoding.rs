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
//! for a thread to be woken. Long work
//! ([`SegmentDecoder::is_long`]: a foreign file's large segments, a
//! restore with the small tables) goes to a blocking thread instead, so it
//! does not hold a worker the node's other tasks need.
//!
//! A segment's blocks are decrypted where they lie, so its plaintext is
//! its blocks' buffers: their read-ahead permits go with the decoded
//! segment ([`Ready`]) and are released once it is written, so what is
//! decoding, and what is decoded and waiting for an earlier segment, counts
//! against the memory budget's
//! [`read_ahead`](crate::MemoryBudget::read_ahead).

use std::collections::{BTreeMap, VecDeque};
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

/// File a block that arrived for segment `seg`, unless that segment's
/// decoding has started (it is below `queued`, the next to start): such a
/// block (a second copy of a share, read by a replacement) is dropped at
/// once with its read-ahead permit. Filed, it would wait for a decoding
/// that never comes, holding the permit, and its receiver, out of permits,
/// would wait for ever. Returns whether it was filed.
pub(crate) fn file_arrival(
    held: &mut BTreeMap<u64, Vec<Held>>,
    queued: u64,
    seg: u64,
    block: Held,
) -> bool {
    if seg < queued {
        return false;
    }
    file_block(held.entry(seg).or_default(), block)
}

/// File a checked block among its segment's, once per share number (a
/// replacement may be the same share from another server), so `k` blocks
/// filed are `k` distinct shares. Returns whether it was filed (a second
/// block of a share number is dropped, with its permit).
pub(crate) fn file_block(segment: &mut Vec<Held>, block: Held) -> bool {
    if segment
        .iter()
        .any(|h| h.block.shnum() == block.block.shnum())
    {
        return false;
    }
    segment.push(block);
    true
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
    permits: Permits,
    took: Duration,
    waited: Duration,
}

/// The read-ahead permits of a segment's blocks.
type Permits = Vec<Option<OwnedSemaphorePermit>>;

/// A decoded segment, with its blocks' read-ahead permits: drop it once
/// its plaintext is written.
pub(crate) struct Ready {
    /// The segment, decoded.
    pub(crate) segment: DecodedSegment,
    /// Released when the segment is (its plaintext lies in its blocks'
    /// buffers).
    pub(crate) _permits: Permits,
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
    ///
    /// Long work ([`SegmentDecoder::is_long`]: a foreign file's large
    /// segments, or a restore with the small tables) runs on a blocking
    /// thread instead, so it does not hold a worker that the node's other
    /// tasks (gossip, serving shares) need for tens of milliseconds on a
    /// small board.
    pub(crate) fn start(&mut self, seg: u64, blocks: Vec<Held>) {
        let decoder = self.decoder.clone();
        let queued = Instant::now();
        let long = decoder.is_long(blocks.iter().map(|h| h.block.shnum()));
        let decode = move || {
            let start = Instant::now();
            // The blocks go to the decoder, which decrypts them where they
            // lie; their permits stay with the plaintext until it is
            // written.
            let (input, permits): (Vec<CheckedBlock>, Permits) =
                blocks.into_iter().map(|h| (h.block, h._permit)).unzip();
            let decoded = decoder.decode(seg, input);
            Finished {
                decoded,
                permits,
                took: start.elapsed(),
                waited: start.duration_since(queued),
            }
        };
        self.tasks.push_back(if long {
            tokio::task::spawn_blocking(decode)
        } else {
            tokio::spawn(async move { decode() })
        });
    }

    /// The first segment started, decoded, with its blocks' permits
    /// (cancel-safe: the segment stays first until this returns). Pending
    /// forever when nothing was started.
    pub(crate) async fn next(&mut self) -> Result<Ready, ClientError> {
        let Some(task) = self.tasks.front_mut() else {
            return std::future::pending().await;
        };
        let finished = task.await;
        self.tasks.pop_front();
        match finished {
            Ok(f) => {
                self.times.decoding += f.took;
                self.times.queued += f.waited;
                Ok(Ready {
                    segment: f.decoded?,
                    _permits: f.permits,
                })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use bytes::Bytes;
    use tokio::sync::Semaphore;

    use crate::chk::testing::{encode_all, parts};
    use crate::chk::{Decoder, SEGMENT_SIZE};
    use crate::types::Params;

    /// A decoded segment keeps its blocks' read-ahead permits (its
    /// plaintext lies in their buffers) until it is taken and dropped,
    /// written: segments decoded ahead of the one being written count
    /// against the budget.
    #[tokio::test]
    async fn decoded_segments_hold_their_permits_until_taken_and_dropped() {
        let params = Params {
            k: 3,
            n: 5,
            happy: 3,
        };
        let data: Vec<u8> = (0..SEGMENT_SIZE + 999).map(|i| (i % 253) as u8).collect();
        let (shares, cap) = encode_all([9; 32], &data, params);
        let mut dec = Decoder::new(cap, parts(&shares[0]).1).unwrap();
        for (s, share) in shares.iter().enumerate() {
            dec.add_hashes(s as u16, parts(share).2).unwrap();
        }
        let permits = Arc::new(Semaphore::new(6));
        let mut decoding = Decoding::new(dec.segment_decoder());
        for seg in 0..2u64 {
            let (off, len) = (
                dec.ueb().block_offset(seg) as usize,
                dec.ueb().block_len(seg) as usize,
            );
            let blocks = [0u16, 1, 4]
                .iter()
                .map(|&s| {
                    let b = Bytes::copy_from_slice(&shares[s as usize][off..off + len]);
                    Held {
                        block: dec.checker(s).unwrap().check(seg, b).unwrap(),
                        _permit: Some(permits.clone().try_acquire_owned().unwrap()),
                    }
                })
                .collect();
            decoding.start(seg, blocks);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !decoding.tasks.iter().all(|t| t.is_finished()) {
            assert!(Instant::now() < deadline, "the decodings did not finish");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            permits.available_permits(),
            0,
            "decoded and not taken, both segments hold their permits"
        );
        let first = decoding.next().await.unwrap();
        assert_eq!(permits.available_permits(), 0, "taken, not yet written");
        let Ready { segment, _permits } = first;
        let mut written = Vec::new();
        for p in dec.accept(segment).unwrap() {
            written.extend_from_slice(&p);
        }
        drop(_permits);
        assert_eq!(
            permits.available_permits(),
            3,
            "written: the first's go back"
        );
        let Ready { segment, _permits } = decoding.next().await.unwrap();
        for p in dec.accept(segment).unwrap() {
            written.extend_from_slice(&p);
        }
        drop(_permits);
        assert_eq!(written, data);
        assert_eq!(permits.available_permits(), 6);
    }
}
