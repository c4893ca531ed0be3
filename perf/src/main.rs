//! `grapevine-perf`: grapevine's laboratory, apart from the node.
//!
//! The swarm (N membership nodes over P worker processes), the grid (N
//! whole nodes with clients working and churn), the session, storage and
//! gateway benchmarks, the data path's ceiling (`bench ceiling`), and the baselines they compare against (chitchat;
//! TLS 1.3 through tokio-rustls), with a counting global allocator so the
//! benchmarks can report live heap bytes. None of this is linked into the
//! production `grapevine` binary, which uses the system allocator.

mod alloc;
mod anon_memory;
mod baseline;
mod bench_ceiling;
mod bench_check;
mod bench_gateway;
mod bench_members;
mod bench_sessions;
mod bench_storage;
mod ceiling;
mod churn;
mod counters;
mod generated;
mod gossip_worker;
mod grid;
mod headroom;
mod lockstep;
mod lowmem;
mod prime;
mod session_peer;
mod swarm;
mod worker;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

/// grapevine-perf: swarms, benchmarks and baselines that print figures.
#[derive(Debug, Parser)]
#[command(name = "grapevine-perf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run N real nodes on this machine and measure the grid.
    Swarm(swarm::SwarmArgs),
    /// Run N real nodes (storage, clients with a workload, churn) and
    /// measure the whole system.
    Grid(grid::GridArgs),
    /// Issue 23's churn scenario: servers die for good while others join,
    /// with repair on or off; files readable and healthy at the end.
    Churn(churn::ChurnArgs),
    /// Issue 25: one `grapevine run` node and the CLI in a memory cgroup,
    /// a member of an N-node swarm, put and get a file at each limit.
    Lowmem(lowmem::LowmemArgs),
    /// (internal) one worker process of `grid`.
    #[command(hide = true)]
    GridWorker(grid::worker::GridWorkerArgs),
    /// (internal) one worker process of `swarm`.
    #[command(hide = true)]
    SwarmWorker(worker::WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Idle-session memory, handshake rate and throughput: Noise vs TLS 1.3.
    Sessions(bench_sessions::SessionsArgs),
    /// Put and get throughput on a local grid of share servers, as a
    /// fraction of the ceiling measured around them.
    Storage(bench_storage::StorageArgs),
    /// The ceiling of put and get on this machine now: every stage's
    /// single-core throughput, combined for this many cores.
    Ceiling(bench_ceiling::CeilingArgs),
    /// A check's cost with sessions held and with none (listings),
    /// and ten sessions opened, on local servers.
    Check(bench_check::CheckArgs),
    /// The web gateway against `grapevine get`'s library call: throughput,
    /// memory, a ranged read, many small GETs at once.
    Gateway(bench_gateway::GatewayArgs),
    /// What junk records cost an open grid's node, and the member cap.
    Members(bench_members::MembersArgs),
    /// (internal) the accepting side of `bench sessions`.
    #[command(hide = true)]
    SessionPeer(session_peer::PeerArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Bench(BenchCmd::Sessions(a)) => bench_sessions::run(&a),
        Cmd::Bench(BenchCmd::SessionPeer(a)) => session_peer::peer(&a),
        Cmd::Bench(BenchCmd::Storage(a)) => bench_storage::run(&a),
        Cmd::Bench(BenchCmd::Ceiling(a)) => bench_ceiling::run(&a),
        Cmd::Bench(BenchCmd::Gateway(a)) => bench_gateway::run(&a),
        Cmd::Bench(BenchCmd::Check(a)) => bench_check::run(&a),
        Cmd::Bench(BenchCmd::Members(a)) => bench_members::run(&a),
        Cmd::Swarm(a) => swarm::run(&a),
        Cmd::Grid(a) => grid::harness::run(&a),
        Cmd::Churn(a) => churn::run(&a),
        Cmd::Lowmem(a) => lowmem::run(&a),
        Cmd::GridWorker(a) => grid::worker::main(a),
        Cmd::SwarmWorker(a) => {
            let rt = worker::runtime(&a)?;
            if a.chitchat {
                rt.block_on(baseline::worker_main(&a))
            } else {
                rt.block_on(gossip_worker::worker_main(&a))
            }
        }
    }
}
