//! Ranged downloads on a real grid of ten share servers on loopback: any
//! range reads back exactly the file's bytes, a corrupt block in the range is
//! caught and its share replaced, and a 1 MiB range from the middle of a
//! large file asks the servers for about one segment per share, not the file.

use grapevine_storage::client::{self, KeyMode, ServerRef};
use grapevine_storage::{Cap, Params, SessionPool};

#[path = "common/servers.rs"]
mod servers;
use servers::{refs, walk};

const MIB: u64 = 1 << 20;
const IP: [u8; 4] = [127, 5, 1, 1];

fn pool() -> SessionPool {
    servers::pool("127.5.1.2:1")
}

fn data(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"range")
        .finalize_xof()
        .fill(&mut out);
    out
}

async fn put(p: &SessionPool, refs: &[ServerRef], d: &[u8]) -> client::UploadReport {
    let req = client::UploadRequest {
        params: Params::default(),
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: d,
        hash_input: None::<&[u8]>,
    };
    client::upload(p, refs, req, &|_| {}).await.unwrap()
}

async fn range(p: &SessionPool, refs: &[ServerRef], cap: &Cap, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let r = client::download_range(p, refs, cap, start, len, &mut out)
        .await
        .unwrap();
    assert_eq!(r.bytes, out.len() as u64);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_range_reads_back_exactly_the_files_bytes() {
    let grid = servers::servers(IP, "r", 10).await;
    let refs = refs(&grid);
    let p = pool();
    let d = data(3 * MIB as usize + 777);
    let len = d.len() as u64;
    let up = put(&p, &refs, &d).await;
    for (start, n) in [
        (0, 1),
        (0, len),
        (MIB - 10, 20),
        (MIB, MIB),
        (2 * MIB + 5, MIB + 100),
        (len - 5, 100),
        (len - 1, 1),
        (12345, 0),
        (len, 10),
        (len + 1000, 10),
        (7, u64::MAX),
    ] {
        let got = range(&p, &refs, &up.cap, start, n).await;
        let a = start.min(len) as usize;
        let b = start.saturating_add(n).min(len) as usize;
        assert!(got == d[a..b], "range {start}+{n}: {} bytes", got.len());
    }
    let lit: Cap = Cap::Lit(b"a literal file".to_vec());
    assert_eq!(range(&p, &refs, &lit, 2, 7).await, b"literal");
    assert_eq!(range(&p, &refs, &lit, 99, 7).await, b"");

    // A corrupt block inside the range: caught by its hash, its share
    // replaced, the bytes still right.
    let (shnum, holder) = up.placements[0];
    let holder = refs.iter().position(|r| r.id == holder).unwrap();
    let file = walk(&grid[holder].dir.path().join("shares"))
        .into_iter()
        .find(|f| f.file_name().unwrap() == shnum.to_string().as_str())
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    // Segment 1's block starts at one full block (1 MiB / k, even) in.
    let block = MIB.div_ceil(3);
    let block = block + (block & 1);
    bytes[block as usize + 10] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let mut out = Vec::new();
    let r = client::download_range(&p, &refs, &up.cap, MIB + 100, 1000, &mut out)
        .await
        .unwrap();
    assert!(out == d[(MIB + 100) as usize..(MIB + 1100) as usize]);
    if shnum < 3 {
        assert_eq!(r.corrupt.len(), 1, "{r:?}");
        assert_eq!(r.corrupt[0].0, shnum);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_from_the_middle_reads_about_one_segment_per_share() {
    let grid = servers::servers(IP, "r", 10).await;
    let refs = refs(&grid);
    let p = pool();
    let d = data(24 * MIB as usize);
    let up = put(&p, &refs, &d).await;
    let requests = || grid.iter().map(|s| s.stats.requests()).sum::<u64>();

    let before = requests();
    let got = range(&p, &refs, &up.cap, 12 * MIB, MIB).await;
    let ranged = requests() - before;
    assert!(got == d[12 * MIB as usize..13 * MIB as usize]);

    let before = requests();
    let mut all = Vec::new();
    client::download(&p, &refs, &up.cap, &mut all, &|_| {})
        .await
        .unwrap();
    let whole = requests() - before;
    assert!(all == d);
    // Locate asks each of the ten servers once; each of the k = 3 shares
    // opened costs three metadata reads (footer, UEB, hash list) and one
    // block read per segment. An aligned 1 MiB range is one segment.
    assert!(ranged <= 10 + 3 * (3 + 1), "ranged read: {ranged} requests");
    assert!(whole >= 10 + 3 * 24, "whole read: {whole} requests");
}

/// The same file stored twice with the same convergent key: every server
/// already holds its shares, nothing is written, and the upload still
/// succeeds with the same capability (it failed as "not happy": servers
/// that only already held shares were not counted while encoding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_file_twice_convergently_gives_the_same_capability() {
    let grid = servers::servers(IP, "r", 10).await;
    let refs = refs(&grid);
    let p = pool();
    let d = data(2 * MIB as usize + 5);
    let put = || async {
        let req = client::UploadRequest {
            params: Params::default(),
            mode: KeyMode::Convergent([3; 32]),
            size: d.len() as u64,
            input: &d[..],
            hash_input: Some(&d[..]),
        };
        client::upload(&p, &refs, req, &|_| {}).await
    };
    let first = put().await.unwrap();
    let requests = || grid.iter().map(|s| s.stats.requests()).sum::<u64>();
    let before = requests();
    let second = put().await.expect("the second upload of the same file");
    assert_eq!(second.cap, first.cap);
    assert_eq!(second.servers, 10);
    // No block was written again: a few requests per server, not a
    // write per segment.
    assert!(
        requests() - before <= 3 * 10,
        "{} requests",
        requests() - before
    );
}
