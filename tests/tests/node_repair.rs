//! Automatic repair by the holders on a grid of library nodes (issue 23.3),
//! with the time constants shortened by configuration: a node restarting
//! within the grace period starts no repair anywhere; two nodes dying for
//! good leave the file below its threshold, and after the grace period the
//! holders bring it back to every share, with one repair (the responsible
//! holder's), not one per holder.

use std::time::{Duration, Instant};

use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{Config, Node, NodeDir, Options, PutOptions};
use grapevine_storage::Params;

#[path = "common/grid.rs"]
mod grid;
use grid::{free_sockets, wait_for};

const NODES: usize = 8;
const GRACE_SECS: u64 = 12;

fn config(listen: std::net::SocketAddr, i: usize, seed: Option<std::net::SocketAddr>) -> Config {
    let mut cfg = Config::new(listen);
    cfg.nickname = Some(format!("node-{i}"));
    cfg.reserve_mib = 0;
    cfg.seeds = seed.into_iter().map(Into::into).collect();
    cfg.repair = true;
    cfg.repair_check_secs = 1;
    cfg.repair_grace_secs = GRACE_SECS;
    cfg.repair_takeover_secs = 5;
    // Repair below every share (n), so losing one share counts.
    cfg.repair_threshold = 8;
    cfg.repair_mib_per_s = 64;
    cfg
}

async fn start(d: &NodeDir, i: usize, seed: Option<std::net::SocketAddr>) -> Node {
    let listen = "127.0.0.1:0".parse().unwrap();
    let mut opts = Options::in_process();
    opts.sockets = Some(free_sockets().await);
    Node::start(config(listen, i, seed), d, opts).await.unwrap()
}

fn repairs_started(nodes: &[Option<Node>]) -> u64 {
    nodes
        .iter()
        .flatten()
        .map(|n| n.state().repair_stats().status().repairs_started)
        .sum()
}

fn min_passes(nodes: &[Option<Node>]) -> u64 {
    nodes
        .iter()
        .flatten()
        .map(|n| n.state().repair_stats().status().passes)
        .min()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_die_for_good_are_repaired_and_a_short_restart_is_not() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    let mut dirs = Vec::new();
    let mut seed = None;
    for i in 0..NODES {
        let d = NodeDir::new(root.path().join(format!("n{i}")));
        dir::init(
            &d,
            &InitOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                advertise: Vec::new(),
                seeds: vec![],
                nickname: Some(format!("node-{i}")),
                capacity_mib: 1024,
                gateway: None,
            },
        )
        .unwrap();
        let node = start(&d, i, seed).await;
        seed.get_or_insert(node.local_addr());
        nodes.push(Some(node));
        dirs.push(d);
    }
    let seed = seed.unwrap();
    for n in nodes.iter().flatten() {
        let c = n.client();
        wait_for("every node to see every storage server", 60, || {
            let c = c.clone();
            async move { c.servers().await.unwrap().len() == NODES }
        })
        .await;
    }
    let data = grid::data(1_500_000, 3);
    let opts = PutOptions {
        params: Params {
            k: 3,
            n: 8,
            happy: 6,
        },
        random_key: false,
    };
    let client = nodes[0].as_ref().unwrap().client();
    let up = client.put_bytes(&data, opts).await.unwrap();
    assert_eq!(up.servers, NODES, "one share on each node");

    // A short restart: node 5 is down for about a second, then back with
    // its shares. Wait until every node has checked for longer than the
    // grace period since: no repair anywhere.
    let restarted = 5;
    drop(nodes[restarted].take());
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes[restarted] = Some(start(&dirs[restarted], restarted, Some(seed)).await);
    let back = Instant::now();
    let passes = min_passes(&nodes);
    wait_for(
        "every node to check for longer than the grace period after the restart",
        120,
        || {
            let ok = back.elapsed() > Duration::from_secs(GRACE_SECS + 8)
                && min_passes(&nodes) > passes + 3;
            async move { ok }
        },
    )
    .await;
    assert_eq!(repairs_started(&nodes), 0, "a restart started a repair");
    let c = client.check(&up.cap, false).await.unwrap();
    assert_eq!(c.results.count_shares_good, 8, "{c:#?}");

    // Two nodes die for good: after the grace period the file has every
    // share again, on the six left.
    let gone = [nodes[6].take().unwrap().id(), nodes[7].take().unwrap().id()];
    let died = Instant::now();
    wait_for("the file to be healthy again", 180, || {
        let client = client.clone();
        let cap = up.cap.clone();
        async move {
            let c = client.check(&cap, false).await.unwrap();
            c.results.count_shares_good == 8
                && c.results
                    .sharemap
                    .values()
                    .flatten()
                    .all(|s| gone.iter().all(|g| g.to_string() != *s))
        }
    })
    .await;
    assert!(
        died.elapsed() >= Duration::from_secs(GRACE_SECS),
        "repaired before the grace period ended ({:?})",
        died.elapsed()
    );
    let c = client.check(&up.cap, true).await.unwrap();
    assert!(
        c.results.healthy && c.results.count_corrupt_shares == 0,
        "{c:#?}"
    );
    let reader = nodes[3].as_ref().unwrap().client();
    assert!(reader.get_bytes(&up.cap).await.unwrap() == data);
    // One holder repaired it; the others backed off.
    let started = repairs_started(&nodes);
    let regenerated: u64 = nodes
        .iter()
        .flatten()
        .map(|n| n.state().repair_stats().status().shares_regenerated)
        .sum();
    assert!((1..=2).contains(&started), "{started} repairs started");
    assert_eq!(regenerated, 2, "{regenerated} shares regenerated");
}
