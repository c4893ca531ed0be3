//! Nodes of the node library, several in this one process (no child
//! processes): they find each other by gossip, store a file, read it back
//! through another node, check it, and keep serving it after a node
//! crashes. One node serves its control socket and one its HTTP metrics, to
//! show both are per node and optional; the others serve neither.

use std::time::Duration;

use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{control, metrics, Config, Node, NodeDir, Options, PutOptions};
use grapevine_storage::Params;

#[path = "common/wait.rs"]
mod wait;
use wait::wait_for;

const NODES: usize = 5;

/// Child processes of this process (every thread's `children` list).
fn child_processes() -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().map(str::to_string));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_nodes_in_one_process_put_get_and_check_a_file() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    let mut seed = None;
    for i in 0..NODES {
        let d = NodeDir::new(root.path().join(format!("n{i}")));
        let listen = "127.0.0.1:0".parse().unwrap();
        dir::init(
            &d,
            &InitOptions {
                listen,
                advertise: Vec::new(),
                seeds: vec![],
                nickname: Some(format!("n{i}")),
                capacity_mib: 1024,
                gateway: None,
            },
        )
        .unwrap();
        let mut cfg = Config::new(listen);
        cfg.nickname = Some(format!("n{i}"));
        cfg.reserve_mib = 0;
        cfg.seeds = seed.into_iter().map(Into::into).collect();
        let mut opts = Options::in_process();
        opts.control = i == 0;
        if i == 1 {
            cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
            opts.http = true;
        }
        let node = Node::start(cfg, &d, opts).await.unwrap();
        seed.get_or_insert(node.local_addr());
        nodes.push(Some(node));
    }
    // Only the nodes asked to serve control or HTTP do.
    assert!(at(&nodes, 0).control_path().is_some() && at(&nodes, 1).control_path().is_none());
    assert!(at(&nodes, 1).http_addr().is_some() && at(&nodes, 0).http_addr().is_none());

    for i in 0..NODES {
        let c = at(&nodes, i).client();
        wait_for("every node to see every storage server", 60, || {
            let c = c.clone();
            async move { c.servers().await.unwrap().len() == NODES }
        })
        .await;
    }

    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let opts = PutOptions {
        params: Params {
            k: 2,
            n: 5,
            happy: 4,
        },
        random_key: false,
    };
    let up = at(&nodes, 0).client().put_bytes(&data, opts).await.unwrap();
    assert_eq!(up.servers, NODES, "one share on each node: {up:?}");
    let back = at(&nodes, 3).client().get_bytes(&up.cap).await.unwrap();
    assert!(back == data, "the file read back through node 3 differs");
    let check = at(&nodes, 4).client().check(&up.cap, true).await.unwrap();
    assert_eq!(check.results.count_shares_good, 5, "{check:?}");
    assert!(check.results.healthy && check.results.count_corrupt_shares == 0);
    // A convergent re-put of the same bytes stores nothing new and says so.
    let again = at(&nodes, 0).client().put_bytes(&data, opts).await.unwrap();
    assert_eq!(again.cap.to_string(), up.cap.to_string());
    assert_eq!(again.already_held.len(), 5, "{again:?}");

    // The control socket of node 0 answers as a node process's would.
    let st = control::status(&NodeDir::new(root.path().join("n0")))
        .await
        .unwrap();
    assert_eq!(st.records, NODES as u64);
    assert!(st.storage_used > 1_000_000, "{st:?}");
    // Node 1's metrics over HTTP, node 2's read directly.
    let body = http_get(at(&nodes, 1).http_addr().unwrap(), "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(&format!("grapevine_records {NODES}")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "grapevine_members{{state=\"alive\"}} {}",
            NODES - 1
        )),
        "{body}"
    );
    // A check that only counts shares, by a node holding no sessions, asks
    // every server (itself included) for a listing: one each.
    let check = at(&nodes, 2).client().check(&up.cap, false).await.unwrap();
    assert_eq!(check.results.count_shares_good, 5, "{check:?}");
    let m2 = metrics::encode(&metrics::registry(at(&nodes, 2).state().clone()));
    assert!(m2.contains("grapevine_storage_stored_bytes "), "{m2}");
    assert!(m2.contains("grapevine_storage_listings_total 1\n"), "{m2}");
    // Asked in a datagram to the node's gossip socket, which handed it to
    // the share server.
    assert!(
        m2.contains("grapevine_storage_datagram_listings_total 1\n"),
        "{m2}"
    );
    // Timed (from the socket's read), and its hand-over too.
    for line in [
        "grapevine_storage_listing_seconds_count{path=\"datagram\"} 1\n",
        "grapevine_storage_listing_seconds_bucket{path=\"datagram\",le=\"+Inf\"} 1\n",
        "grapevine_storage_listing_seconds_count{path=\"tcp\"} 0\n",
        "grapevine_storage_datagram_handover_seconds_count 1\n",
    ] {
        assert!(m2.contains(line), "{line} in {m2}");
    }
    let st2 = at(&nodes, 2).state().status().await.unwrap();
    assert_eq!(
        (st2.storage_listings, st2.storage_datagram_listings),
        (1, 1),
        "the status says so too"
    );

    // Node 4 crashes (no goodbye): the others see it dead, and the file
    // still reads back from the four that are left.
    let crashed = nodes[4].take().unwrap().id();
    let watcher = at(&nodes, 0).state().clone();
    wait_for("node 0 to see the crashed node dead", 60, || {
        let w = watcher.clone();
        async move {
            w.membership().states(vec![crashed]).await.unwrap()[0]
                == Some(grapevine_membership::MemberState::Dead)
        }
    })
    .await;
    let back = at(&nodes, 2).client().get_bytes(&up.cap).await.unwrap();
    assert!(back == data, "the file read back after the crash differs");
    // Node 3 leaves gracefully: seen as left.
    let leaver = nodes[3].take().unwrap();
    let left = leaver.id();
    leaver.leave(Duration::from_secs(5)).await.unwrap();
    wait_for("node 0 to see node 3 as left", 30, || {
        let w = watcher.clone();
        async move {
            w.membership().states(vec![left]).await.unwrap()[0]
                == Some(grapevine_membership::MemberState::Left)
        }
    })
    .await;
    assert!(
        child_processes().is_empty(),
        "the nodes ran in this process: {:?}",
        child_processes()
    );
}

fn at(nodes: &[Option<Node>], i: usize) -> &Node {
    nodes[i].as_ref().expect("node running")
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body))
        .await
        .expect("the HTTP server answers and closes")
        .unwrap();
    body
}

/// A node whose client goes quiet closes its idle sessions by itself: the
/// pool only closes them when it is used, so without the node's periodic
/// sweep they stayed open for good (found by `grapevine-perf grid`: 256
/// sessions open 40 s after the last operation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_closes_its_idle_sessions() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    let mut seed = None;
    for i in 0..3 {
        let d = NodeDir::new(root.path().join(format!("q{i}")));
        let listen = "127.0.0.1:0".parse().unwrap();
        dir::init(
            &d,
            &InitOptions {
                listen,
                advertise: Vec::new(),
                seeds: vec![],
                nickname: None,
                capacity_mib: 64,
                gateway: None,
            },
        )
        .unwrap();
        let mut cfg = Config::new(listen);
        cfg.reserve_mib = 0;
        cfg.client_idle_secs = 1;
        cfg.seeds = seed.into_iter().map(Into::into).collect();
        let node = Node::start(cfg, &d, Options::in_process()).await.unwrap();
        seed.get_or_insert(node.local_addr());
        nodes.push(node);
    }
    let c = nodes[0].client();
    wait_for("every storage server", 60, || {
        let c = c.clone();
        async move { c.servers().await.unwrap().len() == 3 }
    })
    .await;
    let opts = PutOptions {
        params: Params {
            k: 1,
            n: 3,
            happy: 3,
        },
        random_key: false,
    };
    c.put_bytes(&[7u8; 100_000], opts).await.unwrap();
    let pool = c.pool().clone();
    assert!(pool.open_sessions() > 0, "the put left sessions to reuse");
    // Nothing uses the pool from here on.
    wait_for("the idle sessions to close", 30, || {
        let pool = pool.clone();
        async move { pool.open_sessions() == 0 }
    })
    .await;
}
