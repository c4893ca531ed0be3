//! `grapevine-perf grid`: the whole system at size. N real nodes of the node
//! library (membership, a share server with its own store, a session pool,
//! each in its own directory; no HTTP, no control socket) in P worker
//! processes; C of them are client nodes running a workload of puts, gets
//! and checks; nodes crash, leave and come back; at the end every file
//! ever stored is read back and compared.
//!
//! | module | job |
//! | --- | --- |
//! | [`harness`] | the parent: workers, phases, churn commands, the files relayed |
//! | [`worker`] | one worker process: its nodes, their clients, figures every half-second |
//! | [`proto`] | the line protocol between them |
//! | [`clients`] | the client tasks: operations timed, classified, compared |
//! | [`workload`] | pure decisions: which operation on which file; warm or cold |
//! | [`content`] | file bytes from a seed, generated and compared on the fly |
//! | [`churn`] | the pure churn plan: who goes down, who comes back, when |
//! | [`cpu`] | CPU time by job from per-thread counters |
//! | [`report`] | figures from the records: percentiles, the report, its text |
//! | [`plots`] | the two pictures |
//!
//! Phases: start every node (5 ms apart) and wait until every node holds
//! every record; an idle window (no workload, no churn: what the grid
//! costs doing nothing); the steady window (workload and churn); the
//! churned nodes' return and a wait until every node sees every node
//! alive; the read-back; a settle window (sessions should close when idle).

pub mod churn;
pub mod clients;
pub mod content;
pub mod cpu;
pub mod harness;
pub mod lives;
pub mod plots;
pub mod proto;
pub mod report;
pub mod verdicts;
pub mod worker;
pub mod workload;

use std::path::PathBuf;

/// Arguments of `grapevine-perf grid`.
#[derive(Debug, Clone, clap::Args)]
pub struct GridArgs {
    /// Nodes in the grid (clients included).
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Worker processes to spread them over.
    #[arg(long, default_value_t = 2)]
    pub procs: usize,
    /// Client nodes (they run the workload and never churn).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Seconds of the steady window (workload and churn).
    #[arg(long, default_value_t = 300)]
    pub steady_secs: u64,
    /// Seconds of the idle window before it (no workload, no churn).
    #[arg(long, default_value_t = 30)]
    pub idle_secs: u64,
    /// Percentage of nodes that crash at every churn step (0: no churn). A
    /// fifth as many (at least one) also leave gracefully.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Seconds between churn steps.
    #[arg(long, default_value_t = 30)]
    pub churn_every_secs: u64,
    /// Seconds a churned node stays down.
    #[arg(long, default_value_t = 60)]
    pub return_after_secs: u64,
    /// Directory for the nodes' directories (default: a temporary one,
    /// removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the nodes' directories (with --dir).
    #[arg(long)]
    pub keep: bool,
    /// Operations per client per second (exponential gaps).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Operation weights.
    #[arg(long, default_value = "put=1,get=2,check=1")]
    pub ops: String,
    /// File size weights.
    #[arg(long, default_value = "4KiB=4,64KiB=3,1MiB=2,16MiB=1")]
    pub sizes: String,
    /// Chance that a get or check is of one of the client's own last files.
    #[arg(long, default_value_t = 0.5)]
    pub reuse: f64,
    /// Seed of the workload and the churn.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Storage each node offers, MiB.
    #[arg(long, default_value_t = 1024)]
    pub capacity_mib: u32,
    /// Deadline of one operation, seconds.
    #[arg(long, default_value_t = 120)]
    pub op_timeout_secs: u64,
    /// Seconds to wait after the read-back before counting sessions still
    /// open (a node's pool closes sessions idle for 30 s at its sweep every
    /// 15 s, so within 45 s of their last use).
    #[arg(long, default_value_t = 50)]
    pub settle_secs: u64,
    /// Milliseconds between node starts.
    #[arg(long, default_value_t = 5)]
    pub start_interval_ms: u64,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Port every node listens on, each at its own 127.10.x.y address.
    #[arg(long, default_value_t = 7946)]
    pub port: u16,
    /// Write the two pictures (PNG) into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write every operation to this file, one JSON object a line.
    #[arg(long)]
    pub ops_out: Option<PathBuf>,
}
