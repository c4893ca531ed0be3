//! A `swarm` worker of grapevine nodes: membership only (each node its own
//! UDP socket on its own 127.3.x.y address), in one tokio runtime; status
//! lines on stdout, commands on stdin ([`crate::worker`]).

use std::collections::HashSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use grapevine_crypto::{Identity, NodeId};
use grapevine_membership::driver::{start_local, MembershipHandle};
use grapevine_membership::{Config, Event, MemberState};
use grapevine_node::procfs;

use crate::worker::{emit, unix_ms, Status, WorkerArgs};

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 3, (i / 250) as u8, (i % 250 + 1) as u8], 0))
}

/// Run a worker's grapevine nodes until told to quit.
///
/// # Errors
/// Fails if sockets cannot be bound.
pub async fn worker_main(args: &WorkerArgs) -> Result<()> {
    let (sink_tx, mut sink_rx) = tokio::sync::mpsc::unbounded_channel::<(NodeId, Event)>();
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut nodes: Vec<Option<MembershipHandle>> = Vec::with_capacity(args.count);
    let mut seed = args.seed;
    let mut status = Status {
        nodes: args.count,
        ..Status::default()
    };
    let mut killed: HashSet<NodeId> = HashSet::new();
    let mut next_start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_start), if nodes.len() < args.count => {
                let i = args.first + nodes.len();
                let seeds = seed.map(|s| vec![s]).unwrap_or_default();
                let mut addr = node_addr(i);
                if i == 0 {
                    addr.set_port(args.seed_port);
                }
                let h = start_local(
                    addr,
                    Arc::new(Identity::generate()),
                    Some(format!("swarm-{i}")),
                    seeds,
                    Config::new_lan(),
                    Some(sink_tx.clone()),
                ).await.with_context(|| format!("starting node {i} at {}", node_addr(i)))?;
                if seed.is_none() {
                    seed = Some(h.local_addr());
                    status.seed = seed;
                    emit(&status)?;
                }
                status.ids.push(h.id().to_string());
                nodes.push(Some(h));
                status.started = nodes.len();
                status.last_start_ms = unix_ms();
                next_start += Duration::from_millis(args.interval_ms);
            }
            Some((_, e)) = sink_rx.recv() => {
                if let Event::StateChanged { id, to, .. } = e {
                    match to {
                        MemberState::Dead if !killed.contains(&id) => status.false_dead += 1,
                        MemberState::Suspect => {
                            status.suspects += 1;
                            if !killed.contains(&id) {
                                status.false_suspects += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            cmd = cmd_rx.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                let mut words = cmd.split_whitespace();
                match words.next() {
                    Some("kill-ids") => {
                        for w in words.flat_map(|w| w.split(',')) {
                            if let Ok(id) = w.parse::<NodeId>() {
                                killed.insert(id);
                            }
                        }
                        for n in nodes.iter_mut() {
                            if n.as_ref().is_some_and(|h| killed.contains(&h.id())) {
                                // Dropping the last handle stops the node's
                                // task: a crash, no goodbye.
                                *n = None;
                            }
                        }
                    }
                    Some("quit") | None => return Ok(()),
                    Some(other) => tracing::warn!("unknown worker command {other}"),
                }
            }
            _ = tick.tick() => {
                let live: Vec<&MembershipHandle> = nodes.iter().flatten().collect();
                status.full = live
                    .iter()
                    .filter(|h| h.counters().records.load(Ordering::Relaxed) as usize >= args.total)
                    .count();
                let sum = |f: fn(&MembershipHandle) -> u64| live.iter().map(|h| f(h)).sum::<u64>();
                status.dg_sent = sum(|h| h.counters().datagrams_sent.load(Ordering::Relaxed));
                status.bytes_sent = sum(|h| h.counters().bytes_sent.load(Ordering::Relaxed));
                status.dg_recv = sum(|h| h.counters().datagrams_received.load(Ordering::Relaxed));
                status.bytes_recv = sum(|h| h.counters().bytes_received.load(Ordering::Relaxed));
                status.cookies = sum(|h| h.counters().cookies_issued.load(Ordering::Relaxed));
                status.probes = sum(|h| h.counters().probes.load(Ordering::Relaxed));
                status.max_dg = live
                    .iter()
                    .map(|h| h.counters().max_datagram.load(Ordering::Relaxed))
                    .max()
                    .unwrap_or(0);
                status.rss = procfs::rss_bytes();
                status.cpu = procfs::cpu_seconds();
                status.survivors = live.len();
                if !killed.is_empty() {
                    let ids: Vec<NodeId> = killed.iter().copied().collect();
                    let mut seen = 0;
                    for h in &live {
                        if h.counters().dead.load(Ordering::Relaxed) as usize >= ids.len() {
                            let states = h.states(ids.clone()).await.unwrap_or_default();
                            if states.iter().all(|s| *s == Some(MemberState::Dead)) {
                                seen += 1;
                            }
                        }
                    }
                    status.killed_seen = seen;
                }
                emit(&status)?;
                // Ids are sent once, in the first line after all started.
                if status.started == args.count {
                    status.ids.clear();
                }
            }
        }
    }
}
