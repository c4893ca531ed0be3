//! Issue 25.1: the client's memory budget bounds its pipelines. An upload
//! never holds more segments than the budget's `upload_segments`, a
//! download never requests more segments ahead than its `read_ahead`, and a
//! session never has more requests outstanding than its `in_flight`; each
//! transfer still delivers the file whole. (The share server's bound is
//! tested beside its driver: `requests_beyond_the_budget_wait_their_turn`.)

use std::sync::Arc;

use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::chk::SEGMENT_SIZE;
use grapevine_storage::client::{self, ClientIdentity, KeyMode, ServerRef};
use grapevine_storage::{Cap, MemoryBudget, Params, PoolConfig, SessionPool};

/// Ten share servers on loopback (any free port), kept while the guards
/// live.
async fn servers() -> (Vec<tempfile::TempDir>, Vec<ServerRef>) {
    let mut dirs = Vec::new();
    let mut refs = Vec::new();
    for i in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let srv = grapevine_storage::testing::spawn_local(
            [127, 0, 0, 1].into(),
            dir.path(),
            Some(format!("b{i}")),
        )
        .await
        .unwrap();
        refs.push(ServerRef {
            id: srv.id,
            addr: srv.addr,
        });
        dirs.push(dir);
    }
    (dirs, refs)
}

fn pool(memory: MemoryBudget) -> SessionPool {
    let identity = Arc::new(Identity::generate());
    let record = LocationRecord::new(&identity, vec!["127.0.0.1:1".parse().unwrap()])
        .sign(&identity)
        .unwrap();
    SessionPool::new(
        ClientIdentity {
            identity,
            record,
            session: SessionConfig::default(),
        },
        PoolConfig {
            memory,
            ..PoolConfig::default()
        },
    )
}

fn data(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"budget")
        .finalize_xof()
        .fill(&mut out);
    out
}

const PARAMS: Params = Params {
    k: 3,
    n: 10,
    happy: 7,
};

/// Upload and download a 12-segment file under `memory`: (the upload's
/// peak segments, the download's peak read-ahead).
async fn round_trip(memory: MemoryBudget, refs: &[ServerRef]) -> (usize, u64) {
    let d = data(12 * SEGMENT_SIZE as usize - 1000);
    let p = pool(memory);
    let req = client::UploadRequest {
        params: PARAMS,
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: &d[..],
        hash_input: None::<&[u8]>,
    };
    let up = client::upload(&p, refs, req, &|_| ()).await.unwrap();
    assert!(matches!(up.cap, Cap::Chk(_)));
    let mut out = Vec::new();
    let down = client::download(&p, refs, &up.cap, &mut out, &|_| ())
        .await
        .unwrap();
    assert!(out == d, "the file came back whole under {memory}");
    (up.waits.peak_segments, down.waits.peak_ahead)
}

/// A budget too small for two segments makes the upload hold one at a
/// time and the download read one segment ahead; an unbounded one goes
/// deeper (what shows the bound is what holds them back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bounds_upload_segments_and_read_ahead() {
    let (_dirs, refs) = servers().await;
    for mib in [4, 12, 16] {
        let m = MemoryBudget::mib(mib);
        let (segments, ahead) = round_trip(m, &refs).await;
        assert!(
            (1..=m.upload_segments(PARAMS)).contains(&segments),
            "{mib} MiB: the upload held {segments} segments at once, budget {}",
            m.upload_segments(PARAMS)
        );
        assert!(
            (1..=m.read_ahead()).contains(&ahead),
            "{mib} MiB: the download asked {ahead} segments ahead, budget {}",
            m.read_ahead()
        );
    }
    assert_eq!(MemoryBudget::mib(4).upload_segments(PARAMS), 1);
    let (segments, ahead) = round_trip(MemoryBudget::UNBOUNDED, &refs).await;
    assert!(
        segments > 1,
        "unbounded, the upload reads ahead: {segments}"
    );
    assert!(ahead > 1, "unbounded, the download reads ahead: {ahead}");
}

/// A session made by a pool with a budget keeps at most the budget's
/// requests outstanding.
#[tokio::test]
async fn sessions_keep_the_budgets_requests_in_flight() {
    let (_dirs, refs) = servers().await;
    for (m, want) in [
        (MemoryBudget::mib(0), 2),
        (MemoryBudget::mib(8), 4),
        (MemoryBudget::UNBOUNDED, client::MAX_IN_FLIGHT),
    ] {
        let conn = pool(m).get(refs[0]).await.unwrap();
        assert_eq!(conn.max_in_flight(), want, "{m}");
    }
}
