//! The parent of `grapevine-perf grid`: starts the worker processes, reads
//! their reports, relays stored files, runs the phases and the churn plan,
//! and hands what it measured to [`crate::grid::report`].
//!
//! Worker 0 runs node 0, the seed, and is started first; the others once
//! the seed is up. Nodes are spread in blocks (worker p runs nodes
//! p*N/P..), clients round robin over the workers (nodes 1..=C, so they
//! start early). Every figure is read from the workers' half-second status
//! lines; the harness itself keeps only the operation records, the files
//! and a one-second time series of what the nodes see (for the pictures).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::grid::churn::{ChurnConfig, ChurnPlanner, Step};
use crate::grid::cpu::Snap;
use crate::grid::plots::{self, Sample};
use crate::grid::proto::{
    self, send, Detect, FileRecord, FromWorker, OpRecord, ToWorker, WorkerStatus,
};
use crate::grid::report::{self, Measured};
use crate::grid::workload;
use crate::grid::GridArgs;
use crate::worker::unix_ms;

struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
    latest: WorkerStatus,
    ids: bool,
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = send(&mut self.stdin, &ToWorker::Quit);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Harness<'a> {
    args: &'a GridArgs,
    workers: Vec<WorkerProc>,
    rx: mpsc::Receiver<(usize, FromWorker)>,
    tx: mpsc::Sender<(usize, FromWorker)>,
    ids: Vec<Option<String>>,
    ops: Vec<OpRecord>,
    files: Vec<FileRecord>,
    to_relay: Vec<FileRecord>,
    readback_done: usize,
    t0: Instant,
    series: Vec<Sample>,
    marks: Vec<(f64, String)>,
    last_sample: Option<Instant>,
    steady: Option<(Instant, Option<Instant>)>,
    session_samples: (f64, u64),
    m: Measured,
    detect: Vec<(u64, Instant, Option<f64>)>,
    /// The phase last shown on stderr (with `--json`).
    shown: String,
}

/// Run the grid; print the report; draw the pictures if asked.
///
/// # Errors
/// Bad arguments; workers that cannot start or die; a grid that never
/// converges.
pub fn run(args: &GridArgs) -> Result<()> {
    let per = args.nodes.div_ceil(args.procs.max(1));
    if args.nodes < 2 || args.procs == 0 || args.procs > args.nodes {
        bail!("need at least 2 nodes and 1 to {} processes", args.nodes);
    }
    if args.clients == 0 || args.clients.div_ceil(args.procs) >= per {
        bail!("need at least one client, and fewer clients than nodes per process");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be above zero");
    }
    if args.nodes > 250 * 256 {
        bail!("at most {} nodes (addresses 127.10.x.y)", 250 * 256);
    }
    crate::grid::workload::Mix::parse(&args.ops, &args.sizes)?;
    // The pictures' directory is made (or refused) now, not after the run.
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp;
    let base: &Path = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("grapevine-grid-")
                .tempdir()?;
            tmp.path()
        }
    };
    let (tx, rx) = mpsc::channel();
    let mut h = Harness {
        args,
        workers: Vec::new(),
        rx,
        tx,
        ids: vec![None; args.nodes],
        ops: Vec::new(),
        files: Vec::new(),
        to_relay: Vec::new(),
        readback_done: 0,
        t0: Instant::now(),
        series: Vec::new(),
        marks: Vec::new(),
        last_sample: None,
        steady: None,
        session_samples: (0.0, 0),
        m: Measured {
            nodes: args.nodes,
            procs: args.procs,
            clients: args.clients,
            churn_pct: args.churn,
            client_sessions_cap: grapevine_node::Config::new(([127, 0, 0, 1], 1).into())
                .client_sessions,
            ..Measured::default()
        },
        detect: Vec::new(),
        shown: String::new(),
    };
    let result = h.phases(base);
    drop(h.workers.drain(..));
    if args.dir.is_some() && !args.keep {
        for i in 0..args.nodes {
            let _ = std::fs::remove_dir_all(base.join(format!("node-{i}")));
        }
    }
    result?;
    let samples = std::mem::take(&mut h.series);
    let marks = std::mem::take(&mut h.marks);
    let files = h.files.len();
    h.m.files_stored = files;
    if let Some(path) = &args.ops_out {
        proto::write_ops(path, &h.ops).with_context(|| format!("writing {}", path.display()))?;
    }
    let r = report::build(h.m.clone(), &h.ops);
    // The report first: a picture that cannot be written must not cost
    // the run's figures.
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        report::print(&r);
    }
    if let Some(dir) = &args.plots {
        plots::latency(&dir.join("grid-latency.png"), &h.ops, &r)?;
        plots::members(&dir.join("grid-members.png"), &samples, &marks, &r)?;
    }
    Ok(())
}

impl Harness<'_> {
    fn spawn(&mut self, p: usize, base: &Path, clients: &[(usize, usize)]) -> Result<()> {
        let a = self.args;
        let per = a.nodes.div_ceil(a.procs);
        let first = p * per;
        let count = per.min(a.nodes - first);
        let clients = clients
            .iter()
            .map(|(i, c)| format!("{i}:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("grid-worker")
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--total", &a.nodes.to_string()])
            .args([
                "--interval-ms",
                &(a.start_interval_ms * a.procs as u64).to_string(),
            ])
            .arg("--dir")
            .arg(base)
            .args(["--port", &a.port.to_string()])
            .args(["--clients", &clients])
            .args(["--clients-total", &a.clients.to_string()])
            .args(["--rate", &a.rate.to_string()])
            .args(["--ops", &a.ops, "--sizes", &a.sizes])
            .args(["--reuse", &a.reuse.to_string()])
            .args(["--run-seed", &a.seed.to_string()])
            .args(["--capacity-mib", &a.capacity_mib.to_string()])
            .args(["--op-timeout-secs", &a.op_timeout_secs.to_string()]);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<FromWorker>(&line) {
                    Ok(m) => {
                        if tx.send((p, m)).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!("bad worker line {line:?}: {e}"),
                }
            }
        });
        self.workers.push(WorkerProc {
            child,
            stdin,
            latest: WorkerStatus::default(),
            ids: false,
        });
        Ok(())
    }

    fn broadcast(&mut self, cmd: &ToWorker) -> Result<()> {
        for w in &mut self.workers {
            send(&mut w.stdin, cmd).context("a worker's stdin")?;
        }
        Ok(())
    }

    fn sum(&self, f: impl Fn(&WorkerStatus) -> u64) -> u64 {
        self.workers.iter().map(|w| f(&w.latest)).sum()
    }

    fn snap(&self) -> Snap {
        let mut jobs: BTreeMap<String, f64> = BTreeMap::new();
        for w in &self.workers {
            for (k, v) in &w.latest.cpu_jobs {
                *jobs.entry(k.clone()).or_default() += v;
            }
        }
        Snap {
            at: Some(Instant::now()),
            cpu: self.workers.iter().map(|w| w.latest.cpu).sum(),
            jobs,
            bytes: self.sum(|s| s.bytes_sent),
            dgs: self.sum(|s| s.dg_sent),
        }
    }

    fn handle(&mut self, p: usize, m: FromWorker) {
        match m {
            FromWorker::Status(s) => self.workers[p].latest = *s,
            FromWorker::Ids { ids } => {
                for (i, id) in ids {
                    if let Some(slot) = self.ids.get_mut(i) {
                        *slot = Some(id);
                    }
                }
                self.workers[p].ids = true;
            }
            FromWorker::Op(o) => self.ops.push(o),
            FromWorker::Stored(f) => {
                self.files.push(f.clone());
                self.to_relay.push(f);
            }
            FromWorker::ReadbackDone { .. } => self.readback_done += 1,
        }
    }

    /// Read reports for `d`, relay new files, sample, check the workers.
    fn pump(&mut self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((p, m)) => self.handle(p, m),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("workers exited"),
            }
        }
        if !self.to_relay.is_empty() {
            let files = std::mem::take(&mut self.to_relay);
            self.broadcast(&ToWorker::Files { files })?;
        }
        for w in &mut self.workers {
            if let Some(status) = w.child.try_wait()? {
                bail!("a worker exited: {status}");
            }
        }
        self.sample();
        self.check_detect();
        Ok(())
    }

    fn sample(&mut self) {
        let now = Instant::now();
        if self
            .last_sample
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sample = Some(now);
        let running = self.sum(|s| s.running as u64);
        let rss = self.sum(|s| s.rss) as f64 / self.args.nodes as f64;
        self.m.rss_per_node_bytes = self.m.rss_per_node_bytes.max(rss);
        let ssmax = self
            .workers
            .iter()
            .map(|w| w.latest.server_sessions_max)
            .max();
        self.m.sessions_open_per_node_max =
            self.m.sessions_open_per_node_max.max(ssmax.unwrap_or(0));
        let psmax = self
            .workers
            .iter()
            .map(|w| w.latest.pool_sessions_max)
            .max();
        self.m.client_sessions_open_max = self.m.client_sessions_open_max.max(psmax.unwrap_or(0));
        if let Some((_, None)) = self.steady {
            self.session_samples.0 +=
                self.sum(|s| s.server_sessions) as f64 / running.max(1) as f64;
            self.session_samples.1 += 1;
        }
        let with_nodes = self.workers.iter().filter(|w| w.latest.running > 0);
        self.series.push(Sample {
            t: now.duration_since(self.t0).as_secs_f64(),
            running,
            alive_min: with_nodes
                .clone()
                .map(|w| w.latest.alive_min)
                .min()
                .unwrap_or(0),
            alive_max: with_nodes.map(|w| w.latest.alive_max).max().unwrap_or(0),
            alive_mean: self.sum(|s| s.alive_sum) as f64 / running.max(1) as f64,
        });
    }

    fn check_detect(&mut self) {
        let Some((gen, at, None)) = self.detect.last().copied() else {
            return;
        };
        let running = self.sum(|s| s.running as u64);
        let seen: u64 = self
            .workers
            .iter()
            .filter(|w| w.latest.detect_generation == gen)
            .map(|w| w.latest.detect_seen as u64)
            .sum();
        if seen == running
            && self
                .workers
                .iter()
                .all(|w| w.latest.detect_generation == gen)
        {
            if let Some(last) = self.detect.last_mut() {
                last.2 = Some(at.elapsed().as_secs_f64());
            }
        }
    }

    fn mark(&mut self, what: impl Into<String>) {
        self.marks
            .push((self.t0.elapsed().as_secs_f64(), what.into()));
    }

    fn churn(&mut self, step: Step, planner: &ChurnPlanner) -> Result<()> {
        let id = |i: &usize| self.ids.get(*i).cloned().flatten().unwrap_or_default();
        let detect = step.takes_down().then(|| Detect {
            generation: self.detect.len() as u64 + 1,
            dead: step.crash.iter().map(id).collect(),
            left: step.leave.iter().map(id).collect(),
        });
        let down = planner.down().map(|(i, _)| id(&i)).collect();
        if step.takes_down() {
            self.m.churn_steps += 1;
            self.m.nodes_crashed += step.crash.len();
            self.m.nodes_left += step.leave.len();
            self.detect
                .push((self.detect.len() as u64 + 1, Instant::now(), None));
            self.mark(format!("-{}", step.crash.len() + step.leave.len()));
        }
        if !step.back.is_empty() {
            self.mark(format!("+{}", step.back.len()));
        }
        eprintln!(
            "\r{:7.1} s churn: crash {:?} leave {:?} back {:?}",
            self.t0.elapsed().as_secs_f64(),
            step.crash,
            step.leave,
            step.back
        );
        self.broadcast(&ToWorker::Churn {
            crash: step.crash,
            leave: step.leave,
            back: step.back,
            down,
            detect,
            at_ms: crate::worker::unix_ms(),
        })
    }

    /// The progress line on stderr: rewritten in place, or (with
    /// `--json`, whose stderr is usually kept) once per phase.
    fn progress(&mut self, what: &str) {
        let s = |f: fn(&WorkerStatus) -> u64| self.sum(f);
        let line = format!(
            "{what}: started {} running {} full {} all-alive {} ops {} files {} false-dead {}",
            s(|x| x.started as u64),
            s(|x| x.running as u64),
            s(|x| x.full as u64),
            s(|x| x.all_alive as u64),
            self.ops.len(),
            self.files.len(),
            s(|x| x.false_dead),
        );
        if !self.args.json {
            eprint!("\r{line}   ");
        } else if self.shown != what {
            eprintln!("{:7.1} s {line}", self.t0.elapsed().as_secs_f64());
            self.shown = what.to_string();
        }
    }

    /// Pump until `cond` holds or `limit` passes; the time it took.
    fn until(
        &mut self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&Self) -> bool,
    ) -> Result<Option<f64>> {
        let t = Instant::now();
        while t.elapsed() < limit {
            self.pump(Duration::from_millis(250))?;
            self.progress(what);
            if cond(self) {
                return Ok(Some(t.elapsed().as_secs_f64()));
            }
        }
        Ok(None)
    }

    fn phases(&mut self, base: &Path) -> Result<()> {
        let a = self.args;
        let n = a.nodes as u64;
        let clients = workload::clients_of(a.nodes, a.procs, a.clients);
        // 1. Start: the seed's worker first.
        self.spawn(0, base, &clients[0])?;
        let up = self.until("seed", Duration::from_secs(60), |h| {
            h.workers[0].latest.started >= 1
        })?;
        up.context("the seed node did not start")?;
        let t_first = unix_ms();
        for (p, c) in clients.iter().enumerate().skip(1) {
            self.spawn(p, base, c)?;
        }
        let limit =
            Duration::from_secs(a.timeout_secs) + Duration::from_millis(a.start_interval_ms * n);
        self.until("converging", limit, |h| {
            h.sum(|s| s.started as u64) == n
                && h.sum(|s| s.full as u64) == n
                && h.workers.iter().all(|w| w.ids)
        })?;
        let last_start = self
            .workers
            .iter()
            .map(|w| w.latest.last_start_ms)
            .max()
            .unwrap_or(0);
        self.m.start_span_s = last_start.saturating_sub(t_first) as f64 / 1000.0;
        if self.sum(|s| s.full as u64) == n {
            self.m.converge_after_last_start_s =
                Some(unix_ms().saturating_sub(last_start) as f64 / 1000.0);
        } else if self.workers.iter().any(|w| !w.ids) {
            bail!("not every node started within {limit:?}");
        }
        self.mark("converged");

        // 2. Idle window.
        self.pump(Duration::from_secs(1))?;
        let s0 = self.snap();
        self.until("idle", Duration::from_secs(a.idle_secs), |_| false)?;
        let s1 = self.snap();
        self.m.idle = s0.window(&s1, a.nodes);
        self.m.rss_per_node_idle_bytes = self.sum(|s| s.rss) as f64 / n as f64;

        // 3. Steady window: workload and churn.
        let opened0 = self.sum(|s| s.pool_opened);
        let listed0 = proto::listing_times(self.workers.iter().map(|w| &w.latest));
        self.broadcast(&ToWorker::Workload { on: true })?;
        self.mark("workload");
        let t_steady = Instant::now();
        self.steady = Some((t_steady, None));
        let eligible: Vec<usize> = (0..a.nodes)
            .filter(|i| *i != 0 && !clients.iter().flatten().any(|(c, _)| c == i))
            .collect();
        let cfg = ChurnConfig::from_pct(
            a.nodes,
            a.churn,
            Duration::from_secs(a.churn_every_secs),
            Duration::from_secs(a.return_after_secs),
        );
        let mut planner = ChurnPlanner::new(cfg, eligible, a.seed);
        let steady = Duration::from_secs(a.steady_secs);
        while t_steady.elapsed() < steady {
            let next = planner
                .next_due()
                .map(|d| d.saturating_sub(t_steady.elapsed()))
                .unwrap_or(Duration::MAX);
            let left = steady.saturating_sub(t_steady.elapsed());
            self.pump(next.min(left).min(Duration::from_millis(500)))?;
            self.progress("steady");
            if let Some(step) = planner.poll(t_steady.elapsed()) {
                self.churn(step, &planner)?;
            }
        }
        planner.stop();
        self.broadcast(&ToWorker::Workload { on: false })?;
        self.mark("workload ends");
        let s2 = self.snap();
        self.m.steady = s1.window(&s2, a.nodes);
        self.steady = Some((t_steady, Some(Instant::now())));
        let drain = Duration::from_secs(a.op_timeout_secs + 30);
        self.until("draining", drain, |h| {
            h.sum(|s| s.ops_in_flight as u64) == 0
        })?
        .context("operations still running after the workload stopped")?;
        self.m.handshakes = self.sum(|s| s.pool_opened).saturating_sub(opened0);
        let listed = proto::listing_times(self.workers.iter().map(|w| &w.latest));
        self.m.client_listing_times = listed.0.since(&listed0.0);
        self.m.server_listing_times = listed.1.since(&listed0.1);

        // 4. Every node back, and seen alive by every node.
        while !planner.all_up() {
            self.pump(Duration::from_millis(250))?;
            self.progress("returning");
            if let Some(step) = planner.poll(t_steady.elapsed()) {
                self.churn(step, &planner)?;
            }
        }
        self.m.all_alive_after_return_s =
            self.until("all alive", Duration::from_secs(a.timeout_secs), |h| {
                h.sum(|s| s.all_alive as u64) == n
            })?;
        if self.m.all_alive_after_return_s.is_none() {
            for (p, w) in self.workers.iter().enumerate() {
                let s = &w.latest;
                tracing::warn!(
                    "worker {p}: {} of {} running nodes see every other node alive \
                     (each sees {} to {} alive); (node, sees, should): {:?}",
                    s.all_alive,
                    s.running,
                    s.alive_min,
                    s.alive_max,
                    s.short_of_alive
                );
            }
        }
        self.mark("all back");

        // 5. Read back every file (the relay of the last files goes first).
        self.pump(Duration::from_millis(100))?;
        self.broadcast(&ToWorker::Readback)?;
        let limit = Duration::from_secs(a.op_timeout_secs * (self.files.len() as u64 + 1));
        self.until("reading back", limit, |h| h.readback_done == h.args.clients)?
            .context("the read-back did not finish")?;
        self.mark("read back");

        // 6. Settle: idle sessions should close.
        self.until("settling", Duration::from_secs(a.settle_secs), |_| false)?;
        self.m.sessions_open_after_idle = self.sum(|s| s.server_sessions);
        self.m.client_sessions_open_after_idle = self.sum(|s| s.pool_sessions);
        if !a.json {
            eprintln!();
        }

        // Verdicts, detection.
        self.m.false_dead_verdicts = self.sum(|s| s.false_dead);
        self.m.dead_verdicts = self.sum(|s| s.dead_verdicts);
        self.m.dead_verdicts_on_ended_lives = self.sum(|s| s.dead_on_ended_lives);
        self.m.suspect_verdicts = self.sum(|s| s.suspects);
        self.m.start_failures = self.sum(|s| s.start_failures);
        self.m.false_dead_examples = self
            .workers
            .iter()
            .flat_map(|w| w.latest.false_dead_examples.clone())
            .take(10)
            .collect();
        self.m.detect_s_per_step = self.detect.iter().map(|d| d.2).collect();
        self.m.sessions_open_per_node_mean =
            self.session_samples.0 / self.session_samples.1.max(1) as f64;
        Ok(())
    }
}
