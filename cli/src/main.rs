//! The `grapevine` command: argument parsing, output and exit codes over
//! the node library (`grapevine_node`). Benchmarks, the swarm and the
//! baselines live in `grapevine-perf`, so this binary links no TLS stack and
//! no chitchat, and uses the system allocator.

mod demo;
mod grid;
mod ops;
mod run;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Init(run::InitArgs),
    /// Run the node in DIR in the foreground (SIGTERM leaves gracefully).
    Run(run::RunArgs),
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
        Cmd::Init(a) => run::init(&a),
        Cmd::Run(a) => run::run(&a),
        Cmd::Members(a) => ops::members(&a),
        Cmd::Status(a) => ops::status(&a),
        Cmd::Whoami(a) => ops::whoami(&a),
        Cmd::Put(a) => ops::put(&a),
        Cmd::Get(a) => ops::get(&a),
        Cmd::Check(a) => ops::check(&a),
        Cmd::Grid(c) => grid::run(&c),
    }
}
