//! Issue 22: an upload fills the same block buffers segment after segment.
//! The writers hand each segment's blocks back to the encoder when the
//! last of them is done, so the number of block buffers allocated is
//! bounded by the segments an upload holds at once, not by the file's
//! length. (A fresh set of ten 341 KiB blocks per segment was mapped by the
//! allocator and faulted in page by page: more than half of a put's page
//! faults, measured with `perf record -e page-faults`.)
//!
//! This test's allocator counts the allocations of exactly one block's
//! size (a 1 MiB segment's block at 3-of-10: no other buffer of the
//! upload, the client's sealed messages and the servers' received ones
//! included, has that size) made while an upload of many segments runs.
//! Real sockets on loopback.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use grapevine_storage::budget::MAX_UPLOAD_SEGMENTS;
use grapevine_storage::chk::SEGMENT_SIZE;
use grapevine_storage::client::{self, KeyMode};
use grapevine_storage::{Params, PoolConfig, SessionPool};

#[path = "common/noting_alloc.rs"]
mod noting_alloc;
#[path = "common/servers.rs"]
mod servers;
use noting_alloc::NotingAlloc;
use servers::refs;

static ARMED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// A full segment's block at 3-of-10: a third of the segment, rounded up
/// to an even length.
const BLOCK: usize = (SEGMENT_SIZE as usize).div_ceil(3).next_multiple_of(2);

/// Counts the allocations of [`BLOCK`] bytes made while armed.
fn note(size: usize) {
    if size == BLOCK && ARMED.load(Ordering::Relaxed) {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: NotingAlloc = NotingAlloc(note);

const SEGMENTS: usize = 32;
const PARAMS: Params = Params {
    k: 3,
    n: 10,
    happy: 7,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reuses_its_block_buffers() {
    let grid = servers::servers([127, 5, 7, 1], "b", 10).await;
    let all = refs(&grid);
    let pool = SessionPool::new(
        servers::client_identity("127.5.7.20:1"),
        PoolConfig::default(),
    );
    let mut d = vec![0u8; SEGMENTS * SEGMENT_SIZE as usize];
    blake3::Hasher::new()
        .update(b"buffers")
        .finalize_xof()
        .fill(&mut d);
    COUNT.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let up = client::upload(
        &pool,
        &all,
        client::UploadRequest {
            params: PARAMS,
            mode: KeyMode::Random,
            size: d.len() as u64,
            input: &d[..],
            hash_input: None::<&[u8]>,
        },
        &|_| {},
    )
    .await;
    ARMED.store(false, Ordering::SeqCst);
    let up = up.unwrap();
    assert_eq!(up.placements.len(), 10);
    let blocks = COUNT.load(Ordering::SeqCst);
    let n = PARAMS.n as usize;
    // The count means something: the encoder's blocks are this size.
    assert!(blocks >= n, "{blocks} allocations of {BLOCK} bytes");
    // At most one set per segment held at once (and one in the encoder's
    // hands), whatever the file's length: 32 segments allocated 320 blocks
    // before the writers handed them back.
    let bound = n * (MAX_UPLOAD_SEGMENTS + 1);
    assert!(
        blocks <= bound,
        "{blocks} block buffers for {SEGMENTS} segments (at most {bound} expected)"
    );
    // And the file reads back.
    let mut out = Vec::new();
    client::download(&pool, &all, &up.cap, &mut out, &|_| {})
        .await
        .unwrap();
    assert!(out == d, "the file read back differs");
}
