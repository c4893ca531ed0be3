//! `grapevine-perf swarm`: start N real nodes (each with its own UDP socket on its
//! own 127.3.x.y address) in P worker processes and measure the grid:
//! convergence time, steady-state traffic, CPU and memory, failure
//! detection time and false "dead" verdicts.
//!
//! The parent starts worker 0, learns the seed's address from it, starts the
//! other workers, and reads a JSON status line from each worker every
//! half-second. Commands go to workers on stdin.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::worker::{unix_ms, Status};

/// Arguments of `grapevine-perf swarm`.
#[derive(Debug, clap::Args)]
pub struct SwarmArgs {
    /// Nodes to run.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Worker processes to spread them over.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Seconds of the steady-state window (traffic, CPU, false deaths).
    #[arg(long, default_value_t = 300)]
    pub steady_secs: u64,
    /// Milliseconds between node starts.
    #[arg(long, default_value_t = 5)]
    pub start_interval_ms: u64,
    /// Give up waiting for convergence or detection after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Run the comparison baseline instead of grapevine: `chitchat` (same
    /// harness, same record size as a key-value, default failure detector,
    /// 1 s gossip interval).
    #[arg(long, value_parser = ["chitchat"])]
    pub baseline: Option<String>,
    /// Port of the seed node (node 0, at 127.3.0.1), so that other
    /// processes, such as a `grapevine run` node, can join the swarm.
    #[arg(long, default_value_t = 0)]
    pub seed_port: u16,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    latest: Status,
    ids: Vec<String>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_worker(
    idx: usize,
    first: usize,
    count: usize,
    args: &SwarmArgs,
    seed: Option<SocketAddr>,
    tx: mpsc::Sender<(usize, Status)>,
) -> Result<Worker> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "swarm-worker",
        "--first",
        &first.to_string(),
        "--count",
        &count.to_string(),
    ])
    .args(["--total", &args.nodes.to_string()])
    .args([
        "--interval-ms",
        &(args.start_interval_ms * args.procs as u64).to_string(),
    ])
    .args(["--threads", &(2 / args.procs).max(1).to_string()])
    .args(["--seed-port", &args.seed_port.to_string()]);
    if args.baseline.is_some() {
        cmd.arg("--chitchat");
    }
    if let Some(s) = seed {
        cmd.args(["--seed", &s.to_string()]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Status>(&line) {
                Ok(s) => {
                    if tx.send((idx, s)).is_err() {
                        break;
                    }
                }
                Err(e) => tracing::warn!("bad worker line {line:?}: {e}"),
            }
        }
    });
    Ok(Worker {
        child,
        stdin,
        latest: Status::default(),
        ids: Vec::new(),
    })
}

/// The figures `swarm` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// "grapevine" or the baseline's name.
    pub system: String,
    /// Nodes.
    pub nodes: usize,
    /// Worker processes.
    pub procs: usize,
    /// Seconds from the first start to the last.
    pub start_span_s: f64,
    /// Seconds from the last node start until every node held all records.
    pub converge_after_last_start_s: Option<f64>,
    /// Steady-state window length.
    pub steady_window_s: f64,
    /// RSS of the workers divided by nodes.
    pub rss_per_node_bytes: f64,
    /// CPU cores used by the whole swarm in the steady window.
    pub steady_cores: f64,
    /// Datagrams sent per node per second in the steady window.
    pub steady_datagrams_per_node_s: f64,
    /// Bytes sent per node per second in the steady window.
    pub steady_bytes_per_node_s: f64,
    /// Datagrams received per node per second in the steady window.
    pub steady_datagrams_received_per_node_s: f64,
    /// Cookies issued per node per second in the steady window (each a
    /// datagram of its own, counted in the datagrams above).
    pub steady_cookies_per_node_s: f64,
    /// Cookies issued over the whole run, per node.
    pub cookies_per_node: f64,
    /// Probes started per node per second in the steady window (one per
    /// probe period: 1 at the configured period, fewer where local health
    /// or measured round trips stretch it; 0 for a baseline).
    pub steady_probes_per_node_s: f64,
    /// Largest datagram any node sent.
    pub max_datagram_bytes: u64,
    /// Nodes killed.
    pub killed: usize,
    /// Seconds from the kill until every survivor saw every killed node dead.
    pub detect_s: Option<f64>,
    /// Dead verdicts about nodes that were not killed, over the whole run.
    pub false_dead_verdicts: u64,
    /// Dead verdicts about live nodes within the steady window.
    pub false_dead_in_steady_window: u64,
    /// Suspect verdicts over the whole run (refuted ones included).
    pub suspect_verdicts: u64,
    /// Suspect verdicts about nodes that were not killed (every observer
    /// that held one suspect counts once), over the whole run.
    pub false_suspect_verdicts: u64,
    /// Suspect verdicts about live nodes within the steady window.
    pub false_suspect_in_steady_window: u64,
}

/// Run the swarm and print the report.
///
/// # Errors
/// Fails if workers cannot start or die.
pub fn run(args: &SwarmArgs) -> Result<()> {
    if args.nodes < 2 || args.procs == 0 || args.procs > args.nodes {
        bail!("need at least 2 nodes and 1 to {} processes", args.nodes);
    }
    let (tx, rx) = mpsc::channel::<(usize, Status)>();
    let per = args.nodes.div_ceil(args.procs);
    let limit = Duration::from_secs(args.timeout_secs);
    let mut workers = vec![spawn_worker(
        0,
        0,
        per.min(args.nodes),
        args,
        None,
        tx.clone(),
    )?];
    let seed = loop {
        let (_, s) = rx
            .recv_timeout(Duration::from_secs(30))
            .context("worker 0 did not start")?;
        if let Some(seed) = s.seed {
            break seed;
        }
    };
    let t_start_ms = unix_ms();
    for p in 1..args.procs {
        let first = p * per;
        let count = per.min(args.nodes - first);
        workers.push(spawn_worker(p, first, count, args, Some(seed), tx.clone())?);
    }
    let ms = |s: &Status| s.last_start_ms;
    let pump = |workers: &mut Vec<Worker>, until: Duration| -> Result<()> {
        let end = Instant::now() + until;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok((i, s)) => {
                    if !s.ids.is_empty() {
                        workers[i].ids = s.ids.clone();
                    }
                    workers[i].latest = s;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("workers exited"),
            }
        }
        for w in workers.iter_mut() {
            if let Some(status) = w.child.try_wait()? {
                bail!("a worker exited: {status}");
            }
        }
        Ok(())
    };

    // 1. Convergence.
    let mut converged_at = None;
    let deadline =
        Instant::now() + limit + Duration::from_millis(args.start_interval_ms * args.nodes as u64);
    while Instant::now() < deadline {
        pump(&mut workers, Duration::from_millis(250))?;
        let started: usize = workers.iter().map(|w| w.latest.started).sum();
        let full: usize = workers.iter().map(|w| w.latest.full).sum();
        if !args.json {
            eprint!(
                "\rstarted {started}/{n}  holding all records {full}/{n}   ",
                n = args.nodes
            );
        }
        if started == args.nodes && full == args.nodes {
            converged_at = Some(unix_ms());
            break;
        }
    }
    let last_start = workers.iter().map(|w| ms(&w.latest)).max().unwrap_or(0);
    let first_start_span = last_start.saturating_sub(t_start_ms) as f64 / 1000.0;
    let converge = converged_at.map(|c| c.saturating_sub(last_start) as f64 / 1000.0);
    if !args.json {
        eprintln!();
    }

    // 2. Steady window.
    pump(&mut workers, Duration::from_secs(2))?;
    let snap = |workers: &Vec<Worker>| -> (f64, u64, u64, u64, u64, u64, u64, u64) {
        (
            workers.iter().map(|w| w.latest.cpu).sum(),
            workers.iter().map(|w| w.latest.dg_sent).sum(),
            workers.iter().map(|w| w.latest.bytes_sent).sum(),
            workers.iter().map(|w| w.latest.dg_recv).sum(),
            workers.iter().map(|w| w.latest.false_dead).sum(),
            workers.iter().map(|w| w.latest.cookies).sum(),
            workers.iter().map(|w| w.latest.false_suspects).sum(),
            workers.iter().map(|w| w.latest.probes).sum(),
        )
    };
    let s0 = snap(&workers);
    let t0 = Instant::now();
    let mut left = Duration::from_secs(args.steady_secs);
    while !left.is_zero() {
        let step = left.min(Duration::from_secs(10));
        pump(&mut workers, step)?;
        left -= step;
        if !args.json {
            let el = t0.elapsed().as_secs_f64();
            let s1 = snap(&workers);
            eprint!(
                "\rsteady {el:.0}s: {:.2} cores, {:.2} datagrams/s/node, false dead {}   ",
                (s1.0 - s0.0) / el,
                (s1.1 - s0.1) as f64 / el / args.nodes as f64,
                s1.4
            );
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let s1 = snap(&workers);
    let rss: u64 = workers.iter().map(|w| w.latest.rss).sum();
    let n = args.nodes as f64;
    if !args.json {
        eprintln!();
    }

    // 3. Kill 1%, spread over the workers, never the seed.
    let kill_count = (args.nodes / 100).max(1);
    let all_ids: Vec<String> = workers.iter().flat_map(|w| w.ids.clone()).collect();
    if all_ids.len() != args.nodes {
        bail!(
            "workers reported {} of {} node ids",
            all_ids.len(),
            args.nodes
        );
    }
    let step = (args.nodes - 1) / kill_count;
    let victims: Vec<String> = (0..kill_count)
        .map(|k| all_ids[1 + k * step].clone())
        .collect();
    let line = format!("kill-ids {}\n", victims.join(","));
    for w in workers.iter_mut() {
        w.stdin.write_all(line.as_bytes())?;
        w.stdin.flush()?;
    }
    let t_kill = Instant::now();
    let mut detect = None;
    while t_kill.elapsed() < limit {
        pump(&mut workers, Duration::from_millis(250))?;
        let survivors: usize = workers.iter().map(|w| w.latest.survivors).sum();
        let seen: usize = workers.iter().map(|w| w.latest.killed_seen).sum();
        if !args.json {
            eprint!("\rkilled {kill_count}: seen dead by {seen}/{survivors}   ");
        }
        if survivors == args.nodes - kill_count && seen == survivors {
            detect = Some(t_kill.elapsed().as_secs_f64());
            break;
        }
    }
    if !args.json {
        eprintln!();
    }
    let max_dg = workers.iter().map(|w| w.latest.max_dg).max().unwrap_or(0);
    let report = Report {
        system: args.baseline.clone().unwrap_or_else(|| "grapevine".into()),
        nodes: args.nodes,
        procs: args.procs,
        start_span_s: first_start_span,
        converge_after_last_start_s: converge,
        steady_window_s: dt,
        rss_per_node_bytes: rss as f64 / n,
        steady_cores: (s1.0 - s0.0) / dt,
        steady_datagrams_per_node_s: (s1.1 - s0.1) as f64 / dt / n,
        steady_bytes_per_node_s: (s1.2 - s0.2) as f64 / dt / n,
        steady_datagrams_received_per_node_s: (s1.3 - s0.3) as f64 / dt / n,
        steady_cookies_per_node_s: (s1.5 - s0.5) as f64 / dt / n,
        steady_probes_per_node_s: (s1.7 - s0.7) as f64 / dt / n,
        cookies_per_node: workers.iter().map(|w| w.latest.cookies).sum::<u64>() as f64 / n,
        max_datagram_bytes: max_dg,
        killed: kill_count,
        detect_s: detect,
        false_dead_verdicts: workers.iter().map(|w| w.latest.false_dead).sum(),
        false_dead_in_steady_window: s1.4.saturating_sub(s0.4),
        suspect_verdicts: workers.iter().map(|w| w.latest.suspects).sum(),
        false_suspect_verdicts: workers.iter().map(|w| w.latest.false_suspects).sum(),
        false_suspect_in_steady_window: s1.6.saturating_sub(s0.6),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    let opt = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} s"))
            .unwrap_or_else(|| "NOT REACHED".into())
    };
    println!(
        "{} swarm: {} nodes in {} process(es)",
        r.system, r.nodes, r.procs
    );
    println!("  starts spread over               {:.1} s", r.start_span_s);
    println!(
        "  all records everywhere after     {} (from the last start)",
        opt(r.converge_after_last_start_s)
    );
    println!(
        "  RSS per node                     {:.0} KiB",
        r.rss_per_node_bytes / 1024.0
    );
    println!(
        "  steady window                    {:.0} s",
        r.steady_window_s
    );
    println!(
        "  CPU, whole swarm                 {:.3} cores",
        r.steady_cores
    );
    println!(
        "  datagrams sent per node          {:.2} /s",
        r.steady_datagrams_per_node_s
    );
    println!(
        "  bytes sent per node              {:.0} B/s",
        r.steady_bytes_per_node_s
    );
    println!(
        "  datagrams received per node      {:.2} /s",
        r.steady_datagrams_received_per_node_s
    );
    println!(
        "  cookies issued per node          {:.3} /s (whole run: {:.1} per node)",
        r.steady_cookies_per_node_s, r.cookies_per_node
    );
    println!(
        "  probes started per node          {:.2} /s",
        r.steady_probes_per_node_s
    );
    println!(
        "  largest datagram                 {} B",
        r.max_datagram_bytes
    );
    println!(
        "  killed {} node(s); all survivors saw them dead after {}",
        r.killed,
        opt(r.detect_s)
    );
    println!(
        "  false dead verdicts              {} (steady window: {})",
        r.false_dead_verdicts, r.false_dead_in_steady_window
    );
    println!("  suspect verdicts (refuted incl.) {}", r.suspect_verdicts);
    println!(
        "  ... of nodes not killed          {} (steady window: {})",
        r.false_suspect_verdicts, r.false_suspect_in_steady_window
    );
}
