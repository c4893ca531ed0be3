//! The `chitchat` baseline for `grapevine-perf swarm --baseline chitchat`: the
//! same worker protocol and status lines, with chitchat nodes (each its own
//! UDP socket on 127.9.x.y) carrying a signed record of the same size as a
//! key-value. chitchat exposes no datagram counters, so traffic figures are
//! reported as zero, and no verdict events, so "false dead" is the number of
//! (observer, live node) pairs marked dead at the last sample; memory, CPU,
//! convergence and detection are measured the same way.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use chitchat::transport::UdpTransport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use grapevine_crypto::{Identity, LocationRecord};
use tokio::io::AsyncBufReadExt;

use crate::worker::{emit, unix_ms, Status, WorkerArgs};
use grapevine_node::procfs;

fn addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 9, (i / 250) as u8, (i % 250 + 1) as u8], port))
}

/// Run a worker's chitchat nodes.
///
/// # Errors
/// If a node cannot start.
pub async fn worker_main(args: &WorkerArgs) -> Result<()> {
    let port = if args.seed_port == 0 {
        7946
    } else {
        args.seed_port
    };
    let seed = addr(0, port);
    let mut nodes: Vec<Option<(String, ChitchatHandle)>> = Vec::new();
    let mut status = Status {
        nodes: args.count,
        ..Status::default()
    };
    let mut killed: HashSet<String> = HashSet::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut next_start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_start), if nodes.len() < args.count => {
                let i = args.first + nodes.len();
                let ident = Identity::generate();
                let rec = LocationRecord::new(&ident, vec![addr(i, port)]).sign(&ident)?;
                let name = format!("n{i}");
                let config = ChitchatConfig {
                    chitchat_id: ChitchatId { node_id: name.clone().into(), generation_id: 0, gossip_advertise_addr: addr(i, port) },
                    cluster_id: "grapevine-baseline".into(),
                    gossip_interval: Duration::from_secs(1),
                    listen_addr: addr(i, port),
                    seed_nodes: if i == 0 { vec![] } else { vec![seed.to_string()] },
                    failure_detector_config: FailureDetectorConfig::default(),
                    marked_for_deletion_grace_period: Duration::from_secs(3600),
                    catchup_callback: None,
                    extra_liveness_predicate: None,
                    protocol_version: ProtocolVersion::V0,
                };
                let kv = vec![("record".to_string(), data_encoding::HEXLOWER.encode(rec.bytes()))];
                let h = spawn_chitchat(config, kv, &UdpTransport).await?;
                if i == 0 {
                    status.seed = Some(seed);
                    emit(&status)?;
                }
                status.ids.push(name.clone());
                nodes.push(Some((name, h)));
                status.started = nodes.len();
                status.last_start_ms = unix_ms();
                next_start += Duration::from_millis(args.interval_ms);
            }
            line = stdin.next_line() => {
                let Ok(Some(line)) = line else { return Ok(()) };
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("kill-ids") => {
                        for w in words.flat_map(|w| w.split(',')) {
                            killed.insert(w.to_string());
                        }
                        for n in nodes.iter_mut() {
                            if n.as_ref().is_some_and(|(name, _)| killed.contains(name)) {
                                if let Some((_, h)) = n.take() {
                                    let _ = h.shutdown().await;
                                }
                            }
                        }
                    }
                    _ => return Ok(()),
                }
            }
            _ = tick.tick() => {
                let mut full = 0;
                let mut seen = 0;
                let mut false_dead = 0u64;
                let mut survivors = 0;
                for (_, h) in nodes.iter().flatten() {
                    survivors += 1;
                    let (records, dead): (usize, Vec<String>) = h
                        .with_chitchat(|c| {
                            let r = c.node_states().values().filter(|s| s.contains_key("record")).count();
                            let d = c.dead_nodes().map(|id| id.node_id.to_string()).collect();
                            (r, d)
                        })
                        .await;
                    if records >= args.total {
                        full += 1;
                    }
                    if !killed.is_empty() && killed.iter().all(|k| dead.contains(k)) {
                        seen += 1;
                    }
                    false_dead += dead.iter().filter(|d| !killed.contains(*d)).count() as u64;
                }
                status.full = full;
                status.killed_seen = seen;
                status.survivors = survivors;
                // chitchat exposes only who is dead now, not verdicts: report
                // (observer, live node) pairs currently marked dead.
                status.false_dead = false_dead;
                status.rss = procfs::rss_bytes();
                status.cpu = procfs::cpu_seconds();
                emit(&status)?;
                if status.started == args.count {
                    status.ids.clear();
                }
            }
        }
    }
}
