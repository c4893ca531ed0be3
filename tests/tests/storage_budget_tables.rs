//! Issue 25: a ranged read and a repair follow the memory budget's choice
//! of erasure coder engine, as a put and a whole get do. Under a budget
//! below 32 MiB ([`MemoryBudget::small_tables`]) they restore and
//! regenerate blocks with reed-solomon-simd's reference engine, a slice of
//! each block at a time, so neither builds the fast engines' 8 MiB
//! multiplication table (built once per process and kept for its life) nor
//! a work area of whole blocks. This test's allocator records the largest
//! single allocation made while each runs: with the fast engine it is that
//! table.
//!
//! One test in this binary: the table is built at most once per process,
//! so a second test could find it built already. Real sockets on loopback:
//! run it under `flock /tmp/gv-heavy.lock`.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use grapevine_storage::client::{self, ClientIdentity, KeyMode, RepairOptions, ServerRef};
use grapevine_storage::{Cap, MemoryBudget, Params, PoolConfig, SessionPool};

#[path = "common/noting_alloc.rs"]
mod noting_alloc;
#[path = "common/servers.rs"]
mod servers;
use noting_alloc::NotingAlloc;
use servers::{refs, stop};

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Records the largest allocation made while armed.
fn note(size: usize) {
    if ARMED.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: NotingAlloc = NotingAlloc(note);

/// The largest allocation `f` makes (and anything running meanwhile).
async fn largest_during<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let r = f.await;
    ARMED.store(false, Ordering::SeqCst);
    (r, LARGEST.load(Ordering::SeqCst))
}

/// The fast engines' table: 65,536 entries of 128 bytes.
const FAST_TABLE: usize = 8 << 20;
const IP: [u8; 4] = [127, 5, 2, 1];
const PARAMS: Params = Params {
    k: 3,
    n: 10,
    happy: 7,
};

fn pool(memory: MemoryBudget) -> SessionPool {
    let me: ClientIdentity = servers::client_identity("127.5.2.2:1");
    SessionPool::new(
        me,
        PoolConfig {
            memory,
            ..PoolConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_and_repair_under_a_small_budget_never_build_the_fast_table() {
    let budget = MemoryBudget::mib(8);
    assert!(budget.small_tables());
    let mut grid = servers::servers(IP, "t", 12).await;
    let all = refs(&grid);
    let p = pool(budget);
    let mut d = vec![0u8; 3 << 20];
    blake3::Hasher::new()
        .update(b"tables")
        .finalize_xof()
        .fill(&mut d);
    let up = client::upload(
        &p,
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
    .await
    .unwrap();
    let Cap::Chk(read) = &up.cap else {
        panic!("not a CHK capability")
    };
    let holder = |shnum: u16| up.placements.iter().find(|p| p.0 == shnum).unwrap().1;

    // A range read without share 0's server: its blocks are restored.
    let without_0: Vec<ServerRef> = all.iter().copied().filter(|s| s.id != holder(0)).collect();
    let (start, len) = ((1 << 20) + 100, 300_000u64);
    let mut out = Vec::new();
    let (r, largest) = largest_during(client::download_range(
        &p, &without_0, &up.cap, start, len, &mut out,
    ))
    .await;
    r.unwrap();
    assert_eq!(out, d[start as usize..(start + len) as usize]);
    assert!(
        largest < FAST_TABLE,
        "a ranged read under {budget} allocated {largest} bytes at once: the fast coder's table"
    );

    // Shares 0 and 9 gone for good: repair restores share 0's blocks and
    // encodes share 9's again.
    for shnum in [0, 9] {
        let i = grid.iter().position(|s| s.r.id == holder(shnum)).unwrap();
        stop(&mut grid[i]).await;
    }
    let opts = RepairOptions {
        verify: false,
        rate: None,
    };
    let (r, largest) = largest_during(client::repair(&p, &all, &read.verify_cap(), &opts)).await;
    let r = r.unwrap();
    let mut regenerated: Vec<u16> = r
        .repair_report
        .shares_regenerated
        .iter()
        .map(|s| s.0)
        .collect();
    regenerated.sort();
    assert_eq!(regenerated, [0, 9], "{r:?}");
    assert!(
        largest < FAST_TABLE,
        "repair under {budget} allocated {largest} bytes at once: the fast coder's table"
    );
}
