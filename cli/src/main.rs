//! The `grapevine` command: argument parsing, output and exit codes over
//! the node library (`grapevine_node`). Benchmarks, the swarm and the
//! baselines live in `grapevine-perf`, so this binary links no TLS stack and
//! no chitchat, and uses the system allocator.
//!
//! Errors are printed here, as one sentence on standard error
//! (`grapevine: ...`), never as a debug dump and never with a backtrace,
//! whatever `RUST_BACKTRACE` says. Exit codes ([`exit`]): 0 success, 1 an
//! error, 2 bad usage; `check` adds 3 (not healthy), 4 (corrupt shares) and
//! 5 (unrecoverable).

/// `println!` that returns an error (from the enclosing function) when
/// standard output is closed, instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::exit::out(format_args!($($t)*))?
    };
}

mod check;
mod demo;
mod exit;
mod files;
mod grid;
mod info;
mod malloc;
mod repair;
mod run;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// grapevine: a storage grid whose members find each other by gossip.
#[derive(Debug, Parser)]
#[command(name = "grapevine", version, about, after_help = exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a local grid end to end: store a file, lose servers, read it back.
    Demo(demo::DemoArgs),
    /// Create a node directory: identity, secrets, a commented config, the store.
    Init(run::InitArgs),
    /// Run the node in DIR in the foreground (SIGTERM drains and leaves).
    Run(run::RunArgs),
    /// The grid's members as a running node sees them (this node marked *).
    Members(info::MembersArgs),
    /// A running node's own figures.
    Status(info::StatusArgs),
    /// A node's id (the node need not be running).
    Whoami(info::StatusArgs),
    /// Store a file on the grid; prints its read capability.
    Put(files::PutArgs),
    /// Fetch a file by its capability (to standard output unless -o).
    Get(files::GetArgs),
    /// Report a file's health (Tahoe's check-result keys); exit 0 if healthy.
    /// With --repair, regenerate missing and corrupt shares.
    Check(check::CheckArgs),
    /// The verify capability of a read capability: enough to check and
    /// repair the file, not to read it.
    VerifyCap(repair::VerifyCapArgs),
    /// What a running node's automatic repair job has done.
    Repair(repair::RepairArgs),
    /// Closed grids: make a grid key, admit nodes.
    #[command(subcommand)]
    Grid(grid::GridCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node's log says what went wrong along the way; a one-shot command
    // says it in its own output (a put names the servers it lost, a get the
    // corrupt shares it skipped), so its standard error carries sentences,
    // not log lines, unless RUST_LOG asks for them.
    let default_log = match cli.command {
        Cmd::Run(_) | Cmd::Demo(_) => "warn",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let r = match cli.command {
        Cmd::Demo(a) => demo::run(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Init(a) => run::init(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Run(a) => run::run(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Members(a) => info::members(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Status(a) => info::status(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Whoami(a) => info::whoami(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Put(a) => files::put(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Get(a) => files::get(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Check(a) => check::check(&a),
        Cmd::VerifyCap(a) => repair::verify_cap(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Repair(a) => repair::report(&a).map(|_| ExitCode::SUCCESS),
        Cmd::Grid(c) => grid::run(&c).map(|_| ExitCode::SUCCESS),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grapevine: {}", exit::sentence(&e));
            ExitCode::from(exit::of_error(&e))
        }
    }
}
