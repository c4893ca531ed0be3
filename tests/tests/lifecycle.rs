//! Issue 16, a member's life over restarts and wrong clocks, with nodes of
//! the node library in this process (the clock is skewed through
//! `Options::clock`, as `faketime` would for a process):
//!
//! * a node restarted on a new address with its clock a day behind is seen
//!   alive at the new address by all (its first record is already above the
//!   last it signed: `DIR/last_seq`), and its status shows the offset;
//! * a node started once a year ahead, then with the right time, can still
//!   update its record (the number the core signed above the year-ahead
//!   record reached `DIR/last_seq` through the driver's hook), and shows
//!   the record its core signed (`whoami`, its own row in `members`);
//! * a grid's first node (no seeds) restarted on a new address rejoins
//!   through its peer cache (`DIR/peers`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_crypto::{NodeId, SignedRecord};
use grapevine_membership::MemberState;
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::seq::WallClock;
use grapevine_node::{Config, Node, NodeDir, Options};

#[path = "common/wait.rs"]
mod wait;
use wait::wait_for;

const DAY_MS: i64 = 86_400_000;

fn init(root: &std::path::Path, i: usize) -> NodeDir {
    let d = NodeDir::new(root.join(format!("n{i}")));
    dir::init(
        &d,
        &InitOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: Vec::new(),
            seeds: vec![],
            nickname: Some(format!("n{i}")),
            capacity_mib: 1024,
            gateway: None,
        },
    )
    .unwrap();
    d
}

fn config(seed: Option<SocketAddr>) -> Config {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap());
    cfg.reserve_mib = 0;
    cfg.seeds = seed.into_iter().map(Into::into).collect();
    cfg
}

/// Start the node in `d`; a node just stopped in this process may hold its
/// store's lock for a moment (its tasks end asynchronously): tried again
/// until it starts, within 30 s.
async fn start(d: &NodeDir, seed: Option<SocketAddr>, skew_ms: i64) -> Node {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut opts = Options::in_process();
        opts.clock = WallClock { skew_ms };
        match Node::start(config(seed), d, opts).await {
            Ok(n) => return n,
            Err(e) => assert!(Instant::now() < deadline, "cannot start: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` nodes, node 0 the seed of the others, each seeing the others alive.
async fn grid(root: &std::path::Path, n: usize) -> (Vec<NodeDir>, Vec<Option<Node>>) {
    let dirs: Vec<NodeDir> = (0..n).map(|i| init(root, i)).collect();
    let mut nodes = vec![Some(start(&dirs[0], None, 0).await)];
    let seed = nodes[0].as_ref().unwrap().local_addr();
    for d in &dirs[1..] {
        nodes.push(Some(start(d, Some(seed), 0).await));
    }
    for node in nodes.iter().flatten() {
        let h = node.state().membership().clone();
        wait_for("every node to see every other alive", 60, || {
            let h = h.clone();
            async move {
                h.counters()
                    .alive
                    .load(std::sync::atomic::Ordering::Relaxed) as usize
                    == n - 1
            }
        })
        .await;
    }
    (dirs, nodes)
}

/// `id` as `node` sees it: its state and record.
async fn view(node: &Node, id: NodeId) -> Option<(MemberState, SignedRecord)> {
    let m = node.state().membership().members().await.ok()?;
    let v = m.into_iter().find(|v| v.id == id)?;
    Some((v.state, v.record?))
}

/// Whether every node of `nodes` but `except` sees `id` alive at a record
/// that `ok` accepts.
async fn all_see(
    nodes: &[Option<Node>],
    except: usize,
    id: NodeId,
    ok: impl Fn(&SignedRecord) -> bool,
) -> bool {
    for (i, n) in nodes.iter().enumerate() {
        if i == except {
            continue;
        }
        let Some(n) = n else { continue };
        match view(n, id).await {
            Some((MemberState::Alive, r)) if ok(&r) => {}
            _ => return false,
        }
    }
    true
}

fn last_seq(d: &NodeDir) -> u64 {
    std::fs::read_to_string(d.seq_path())
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_on_a_new_address_with_its_clock_a_day_behind_is_seen_alive_there() {
    let root = tempfile::tempdir().unwrap();
    let (dirs, mut nodes) = grid(root.path(), 4).await;
    let seed = nodes[0].as_ref().unwrap().local_addr();
    let n3 = nodes[3].take().unwrap();
    let (id, old_seq, old_addr) = (n3.id(), n3.state().record().seq(), n3.local_addr());
    n3.leave(Duration::from_secs(5)).await.unwrap();
    wait_for("node 3 seen as left", 30, || {
        let n0 = nodes[0].as_ref().unwrap();
        async move { matches!(view(n0, id).await, Some((MemberState::Left, _))) }
    })
    .await;
    // Back a day behind, on another port.
    let n3 = start(&dirs[3], Some(seed), -DAY_MS).await;
    let new_addr = n3.local_addr();
    assert_ne!(new_addr, old_addr);
    let first = n3.state().record();
    assert!(
        first.seq() > old_seq,
        "its first record is above the last it signed, whatever its clock: {} <= {old_seq}",
        first.seq()
    );
    assert_eq!(last_seq(&dirs[3]), first.seq(), "kept before it was sent");
    nodes[3] = Some(n3);
    let at_new = |r: &SignedRecord| r.record().addrs[0] == new_addr && r.seq() > old_seq;
    wait_for(
        "every node to see node 3 alive at its new address",
        30,
        || all_see(&nodes, 3, id, at_new),
    )
    .await;
    // Its status shows its clock a day behind the grid's.
    let n3 = nodes[3].as_ref().unwrap();
    wait_for("node 3 to measure the grid's clock", 30, || async {
        n3.state().status().await.unwrap().clock_offset_s.is_some()
    })
    .await;
    let st = n3.state().status().await.unwrap();
    let off = st.clock_offset_s.unwrap();
    assert!((86_400 - 120..=86_400 + 120).contains(&off), "{off}");
    assert!(st.clock_peers >= 1, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_once_a_year_ahead_then_on_time_can_still_update_its_record() {
    const YEAR_MS: i64 = 365 * DAY_MS;
    let root = tempfile::tempdir().unwrap();
    let (dirs, mut nodes) = grid(root.path(), 3).await;
    let seed = nodes[0].as_ref().unwrap().local_addr();
    let id = nodes[2].as_ref().unwrap().id();
    nodes[2]
        .take()
        .unwrap()
        .leave(Duration::from_secs(5))
        .await
        .unwrap();
    // A year ahead: its record is held back by the others until it learns
    // the grid's time from them and signs again at it.
    let ahead = start(&dirs[2], Some(seed), YEAR_MS).await;
    let ahead_seq = ahead.state().record().seq();
    let ahead_addr = ahead.local_addr();
    nodes[2] = Some(ahead);
    let now_s = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let resigned = |r: &SignedRecord| {
        r.record().addrs[0] == ahead_addr
            && r.seq() > ahead_seq
            && r.record().issued_at.abs_diff(now_s()) < 3600
    };
    wait_for(
        "every node to see the year-ahead node at a record signed at the grid's time",
        60,
        || all_see(&nodes, 2, id, resigned),
    )
    .await;
    let held = view(nodes[0].as_ref().unwrap(), id).await.unwrap().1.seq();
    // The node itself shows the record its core signed (whoami and its own
    // row in `members`), not the year-ahead one it started with.
    let own = nodes[2].as_ref().unwrap().state().record();
    assert!(
        resigned(&own) && own.seq() >= held,
        "the node shows seq {} issued at {}, the grid holds seq {held}",
        own.seq(),
        own.record().issued_at
    );
    let hex: String = own.bytes().iter().map(|b| format!("{b:02x}")).collect();
    let whoami = nodes[2].as_ref().unwrap().state().whoami();
    assert_eq!(whoami.record.as_deref(), Some(hex.as_str()));
    let rows = nodes[2]
        .as_ref()
        .unwrap()
        .state()
        .member_rows()
        .await
        .unwrap();
    assert!(rows[0].this_node && rows[0].record == hex, "{:?}", rows[0]);
    assert!(
        last_seq(&dirs[2]) >= held,
        "the number the core signed is on disk: {} < {held}",
        last_seq(&dirs[2])
    );
    // Back with the right time, on another port: seen there.
    nodes[2]
        .take()
        .unwrap()
        .leave(Duration::from_secs(5))
        .await
        .unwrap();
    let on_time = start(&dirs[2], Some(seed), 0).await;
    let addr = on_time.local_addr();
    nodes[2] = Some(on_time);
    wait_for("every node to see the node back on time", 30, || {
        all_see(&nodes, 2, id, |r| {
            r.record().addrs[0] == addr && r.seq() > held
        })
    })
    .await;
    // And it can still update its record (here: the free space it offers).
    let n2 = nodes[2].as_ref().unwrap();
    let rec = grapevine_node::record::publish(n2.state(), &config(Some(seed)), vec![addr], 7)
        .await
        .unwrap();
    assert_eq!(rec.record().free_mib, 7);
    wait_for("every node to hold the updated record", 30, || {
        all_see(&nodes, 2, id, |r| {
            r.record().free_mib == 7 && r.record().addrs[0] == addr
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_node_restarted_elsewhere_rejoins_through_its_peer_cache() {
    let root = tempfile::tempdir().unwrap();
    let (dirs, mut nodes) = grid(root.path(), 3).await;
    let n0 = nodes[0].take().unwrap();
    let id = n0.id();
    n0.leave(Duration::from_secs(5)).await.unwrap();
    assert!(dirs[0].peers_path().exists(), "saved on leaving");
    // No seeds, another port: only the cache can lead it back.
    let n0 = start(&dirs[0], None, 0).await;
    let addr = n0.local_addr();
    let known = n0.state().membership().members().await.unwrap();
    assert_eq!(known.len(), 2, "the cached members, before any answer");
    nodes[0] = Some(n0);
    wait_for(
        "every node to see node 0 alive at its new address",
        30,
        || all_see(&nodes, 0, id, |r| r.record().addrs[0] == addr),
    )
    .await;
    let n0 = nodes[0].as_ref().unwrap();
    let h = n0.state().membership().clone();
    wait_for("node 0 to see the others alive", 30, || {
        let h = h.clone();
        async move {
            h.counters()
                .alive
                .load(std::sync::atomic::Ordering::Relaxed)
                == 2
        }
    })
    .await;
}
