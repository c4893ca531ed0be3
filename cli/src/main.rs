//! The `grapevine` command: thin over the grapevine libraries.

mod alloc;
mod baseline;
mod bench_sessions;
mod bench_storage;
mod demo;
mod grid;
mod node;
mod ops;
mod procfs;
mod swarm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

/// grapevine: a storage grid whose members find each other by gossip.
#[derive(Debug, Parser)]
#[command(name = "grapevine", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a local grid end to end and narrate it.
    Demo(demo::DemoArgs),
    /// Create a node directory: identity, secrets and a commented config.
    Init(node::InitArgs),
    /// Run the node in DIR in the foreground (SIGTERM leaves gracefully).
    Run(node::RunArgs),
    /// The grid's members as a running node sees them.
    Members(ops::MembersArgs),
    /// A running node's own figures.
    Status(ops::StatusArgs),
    /// A running node's id.
    Whoami(ops::StatusArgs),
    /// Store a file on the grid; prints its read capability.
    Put(ops::PutArgs),
    /// Fetch a file by its capability.
    Get(ops::GetArgs),
    /// Report which servers hold a file's shares.
    Check(ops::CheckArgs),
    /// Closed grids: make a grid key, admit nodes.
    #[command(subcommand)]
    Grid(grid::GridCmd),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run N real nodes on this machine and measure the grid.
    Swarm(swarm::SwarmArgs),
    /// (internal) one worker process of `swarm`.
    #[command(hide = true)]
    SwarmWorker(swarm::WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Idle-session memory, handshake rate and throughput: Noise vs TLS 1.3.
    Sessions(bench_sessions::SessionsArgs),
    /// Put and get throughput on a local grid of share servers.
    Storage(bench_storage::StorageArgs),
    /// (internal) the accepting side of `bench sessions`.
    #[command(hide = true)]
    SessionPeer(bench_sessions::PeerArgs),
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
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Init(a) => node::init(&a),
        Cmd::Run(a) => node::run(&a),
        Cmd::Members(a) => ops::members(&a),
        Cmd::Status(a) => ops::status(&a),
        Cmd::Whoami(a) => ops::whoami(&a),
        Cmd::Put(a) => ops::put(&a),
        Cmd::Get(a) => ops::get(&a),
        Cmd::Check(a) => ops::check(&a),
        Cmd::Grid(c) => grid::run(&c),
        Cmd::Bench(BenchCmd::Sessions(a)) => bench_sessions::run(&a),
        Cmd::Bench(BenchCmd::SessionPeer(a)) => bench_sessions::peer(&a),
        Cmd::Bench(BenchCmd::Storage(a)) => bench_storage::run(&a),
        Cmd::Swarm(a) => swarm::run(&a),
        Cmd::SwarmWorker(a) => swarm::worker(&a),
    }
}
