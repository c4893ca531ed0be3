//! The protocol between `grapevine-perf swarm` and its worker processes
//! (`grapevine-perf swarm-worker`, hidden): the worker's arguments, and the
//! JSON status line a worker prints every half-second. Commands go to a
//! worker on its stdin, one per line: `kill-ids ID,ID,...` (crash those
//! nodes) and `quit`. Both kinds of worker, grapevine's ([`crate::gossip_worker`])
//! and the chitchat baseline's ([`crate::baseline`]), speak it.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Arguments of the hidden worker.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// First node index.
    #[arg(long)]
    pub first: usize,
    /// Nodes in this worker.
    #[arg(long)]
    pub count: usize,
    /// Nodes in the whole swarm.
    #[arg(long)]
    pub total: usize,
    /// Seed address (absent for worker 0, which runs the seed).
    #[arg(long)]
    pub seed: Option<SocketAddr>,
    /// Milliseconds between this worker's node starts.
    #[arg(long)]
    pub interval_ms: u64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Port for the seed node.
    #[arg(long, default_value_t = 0)]
    pub seed_port: u16,
    /// Run chitchat nodes instead of grapevine nodes.
    #[arg(long)]
    pub chitchat: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) seed: Option<SocketAddr>,
    pub(crate) nodes: usize,
    pub(crate) started: usize,
    /// Nodes holding all `total` records.
    pub(crate) full: usize,
    /// Unix ms of the last node start.
    pub(crate) last_start_ms: u64,
    pub(crate) rss: u64,
    pub(crate) cpu: f64,
    pub(crate) dg_sent: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) dg_recv: u64,
    pub(crate) bytes_recv: u64,
    pub(crate) max_dg: u64,
    /// Cookies issued (grapevine only).
    #[serde(default)]
    pub(crate) cookies: u64,
    /// Probes started (grapevine only).
    #[serde(default)]
    pub(crate) probes: u64,
    /// Dead verdicts about nodes not killed by the harness.
    pub(crate) false_dead: u64,
    /// Suspect verdicts (any node).
    pub(crate) suspects: u64,
    /// Suspect verdicts about nodes not killed by the harness.
    #[serde(default)]
    pub(crate) false_suspects: u64,
    /// Survivors here that see every killed node dead.
    pub(crate) killed_seen: usize,
    pub(crate) survivors: usize,
    pub(crate) ids: Vec<String>,
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn emit(status: &Status) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, status)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The worker's runtime: `args.threads` worker threads.
///
/// # Errors
/// If the runtime cannot be built.
pub fn runtime(args: &WorkerArgs) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?)
}
