//! `grapevine-perf churn`: issue 23's churn scenario. Real library nodes in
//! this process, time constants shortened by configuration so weeks fit in
//! minutes: store files (sizes log-uniform), restart a few nodes briefly
//! (no repair may follow), then let a share of the servers die for good,
//! one after another, spaced longer than the grace period, while as many
//! new ones join. At the end: files readable, files healthy (at least
//! `happy` distinct good shares), what repair read and wrote, its peak
//! bandwidth per node, and repairs started during the restarts. Run it with
//! `--no-repair` to see what is lost without repair.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{Config, Node, NodeDir, Options, PutOptions};
use grapevine_storage::{Cap, Params};
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Arguments of `churn`.
#[derive(Debug, clap::Args)]
pub struct ChurnArgs {
    /// Storage servers at the start.
    #[arg(long, default_value_t = 200)]
    servers: usize,
    /// Files stored.
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Smallest file, KiB.
    #[arg(long, default_value_t = 64)]
    min_kib: u64,
    /// Largest file, KiB.
    #[arg(long, default_value_t = 4096)]
    max_kib: u64,
    /// Shares needed.
    #[arg(long, default_value_t = 3)]
    k: u16,
    /// Shares made.
    #[arg(long, default_value_t = 10)]
    n: u16,
    /// Servers that must take shares (and the repair threshold).
    #[arg(long, default_value_t = 7)]
    happy: u16,
    /// Percent of the servers that die for good (as many join).
    #[arg(long, default_value_t = 20)]
    die_pct: usize,
    /// Nodes restarted briefly before the deaths.
    #[arg(long, default_value_t = 5)]
    restarts: usize,
    /// Repair off (to see what is lost).
    #[arg(long)]
    no_repair: bool,
    /// Seconds between repair checks of every held file.
    #[arg(long, default_value_t = 2)]
    check_secs: u64,
    /// Grace period, seconds.
    #[arg(long, default_value_t = 10)]
    grace_secs: u64,
    /// Takeover wait per holder rank, seconds.
    #[arg(long, default_value_t = 10)]
    takeover_secs: u64,
    /// Repair pace per node, MiB/s.
    #[arg(long, default_value_t = 64)]
    mib_per_s: u32,
    /// Seconds each restarted node stays down (default: two check
    /// intervals, so other holders' checks miss it).
    #[arg(long)]
    restart_secs: Option<u64>,
    /// Longest wait, after the last death, for every file to be healthy
    /// again (seconds).
    #[arg(long, default_value_t = 900)]
    settle_secs: u64,
    /// Where the nodes' directories go (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// JSON report.
    #[arg(long)]
    json: bool,
}

/// The report.
#[derive(Debug, Default, Serialize)]
struct Report {
    servers: usize,
    files: usize,
    bytes_stored: u64,
    repair: bool,
    died: usize,
    joined: usize,
    restarted: usize,
    /// Files below their threshold (summed over the nodes' last passes),
    /// at most, while the restarts went on.
    below_threshold_during_restarts: u64,
    repairs_during_restarts: u64,
    files_readable: usize,
    files_healthy: usize,
    /// Files by distinct good shares at the end (index: shares).
    good_shares_histogram: Vec<usize>,
    repairs_started: u64,
    repairs_succeeded: u64,
    shares_regenerated: u64,
    repair_bytes_read: u64,
    repair_bytes_written: u64,
    /// The least those repairs could have read: `k` blocks per segment
    /// of each file repaired.
    repair_minimum_read: u64,
    /// Bytes read per byte written by repair.
    read_per_byte_regenerated: f64,
    /// Bytes read over the minimum (target: at most 1.25).
    read_over_minimum: f64,
    peak_repair_bytes_per_s_per_node: u64,
    /// Repair passes over their files, all nodes.
    repair_passes: u64,
    /// File checks by the repair jobs, all nodes.
    repair_file_checks: u64,
    /// Seconds: nodes up, files stored, restarts, deaths, settling.
    phase_seconds: Vec<f64>,
    seconds: f64,
}

struct Grid {
    root: std::path::PathBuf,
    /// Each node's cap on the storage sessions its client opens (see
    /// [`session_cap`]).
    sessions: usize,
    nodes: Vec<Option<Node>>,
    seed: std::net::SocketAddr,
    /// The repair figures of nodes stopped (their counters go with them).
    retired: [u64; FIGURES],
}

/// Descriptors a node holds besides its sessions (sockets, the store's
/// files being read), and the process's own.
const FDS_PER_NODE: u64 = 24;
const FDS_PROCESS: u64 = 256;

/// Each node's cap on the storage sessions its client opens, so that
/// `nodes` nodes fit the process's open-file limit: every session between
/// two nodes of this process holds two descriptors (the client's and the
/// server's end), and the default cap (64) times 240 nodes would need
/// 30,000. A client at its cap closes its longest-idle session to open
/// another.
fn session_cap(nodes: u64) -> Result<usize> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let spare = limit
        .saturating_sub(FDS_PROCESS)
        .saturating_sub(FDS_PER_NODE.saturating_mul(nodes));
    let cap = spare / 2 / nodes.max(1);
    anyhow::ensure!(
        cap >= 16,
        "open-file limit {limit} too low for {nodes} nodes (raise it with ulimit -n)"
    );
    Ok(usize::try_from(cap.min(64)).unwrap_or(64))
}

fn config(a: &ChurnArgs, i: usize, seed: Option<std::net::SocketAddr>, sessions: usize) -> Config {
    let mut cfg = Config::new("127.0.0.1:0".parse().expect("address"));
    cfg.client_sessions = sessions;
    cfg.nickname = Some(format!("c{i}"));
    cfg.reserve_mib = 0;
    cfg.seeds = seed.into_iter().map(Into::into).collect();
    cfg.repair = !a.no_repair;
    cfg.repair_check_secs = a.check_secs.max(1);
    cfg.repair_grace_secs = a.grace_secs;
    cfg.repair_takeover_secs = a.takeover_secs;
    cfg.repair_threshold = a.happy;
    cfg.repair_mib_per_s = a.mib_per_s.max(1);
    cfg.shares_needed = a.k;
    cfg.shares_total = a.n;
    cfg.shares_happy = a.happy;
    cfg
}

impl Grid {
    async fn start_node(
        &mut self,
        a: &ChurnArgs,
        i: usize,
        seed: Option<std::net::SocketAddr>,
    ) -> Result<Node> {
        let d = NodeDir::new(self.root.join(format!("n{i}")));
        if !d.path().join("config.toml").exists() {
            dir::init(
                &d,
                &InitOptions {
                    listen: "127.0.0.1:0".parse()?,
                    advertise: Vec::new(),
                    seeds: vec![],
                    nickname: Some(format!("c{i}")),
                    capacity_mib: 100_000,
                    gateway: None,
                },
            )?;
        }
        Ok(Node::start(config(a, i, seed, self.sessions), &d, Options::in_process()).await?)
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// Stop node `i` (no goodbye), keeping its repair figures.
    fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            let f = figures(&n);
            for (r, v) in self.retired.iter_mut().zip(f) {
                *r += v;
            }
        }
    }

    /// [`figures`] summed over every node that ever ran.
    fn repair_sum(&self) -> [u64; FIGURES] {
        let mut out = self.retired;
        for n in self.live() {
            for (o, v) in out.iter_mut().zip(figures(n)) {
                *o += v;
            }
        }
        out
    }
}

const FIGURES: usize = 8;

/// Repairs started and succeeded, shares regenerated, bytes read, written
/// and the minimum read, passes and file checks.
fn figures(n: &Node) -> [u64; FIGURES] {
    let r = n.state().repair_stats().status();
    [
        r.repairs_started,
        r.repairs_succeeded,
        r.shares_regenerated,
        r.bytes_read,
        r.bytes_written,
        r.minimum_read,
        r.passes,
        r.files_checked,
    ]
}

/// Files below their threshold at the nodes' last passes, summed.
fn below_sum(g: &Grid) -> u64 {
    g.live()
        .map(|n| n.state().repair_stats().status().below_threshold)
        .sum()
}

/// Wait until `node` sees `count` storage servers, at most `secs`.
async fn wait_servers(node: &Node, count: usize, secs: u64) -> Result<()> {
    let c = node.client();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while c.servers().await?.len() < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "node sees fewer than {count} servers after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Sleep `d` while sampling every node's repair counters each second: the
/// highest bytes (read + written) any node moved in one second.
async fn sample(g: &Grid, d: Duration, peak: &mut u64) {
    let end = Instant::now() + d;
    let mut last: Vec<(grapevine_crypto::identity::NodeId, u64)> = Vec::new();
    while Instant::now() < end {
        let now: Vec<_> = g
            .live()
            .map(|n| {
                let s = n.state().repair_stats().status();
                (n.id(), s.bytes_read + s.bytes_written)
            })
            .collect();
        for (id, b) in &now {
            if let Some((_, before)) = last.iter().find(|l| l.0 == *id) {
                *peak = (*peak).max(b.saturating_sub(*before));
            }
        }
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// File `f`'s `len` bytes (the same for the same `f`, so a read is
/// compared without keeping the file).
fn content(f: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::SmallRng::seed_from_u64(f ^ 0x9e37_79b9_7f4a_7c15).fill(&mut data[..]);
    data
}

fn size_of(cap: &Cap) -> Option<u64> {
    match cap {
        Cap::Chk(c) => Some(c.size),
        Cap::Lit(d) => Some(d.len() as u64),
    }
}

/// `grapevine-perf churn`.
///
/// # Errors
/// Nodes that do not start or see each other; uploads that fail.
pub fn run(a: &ChurnArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: &ChurnArgs) -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let root = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let deaths = a.servers * a.die_pct / 100;
    let sessions = session_cap((a.servers + deaths) as u64)?;
    eprintln!("{sessions} storage sessions per node at most");
    let mut g = Grid {
        root,
        sessions,
        nodes: Vec::new(),
        seed: "127.0.0.1:1".parse()?,
        retired: [0; FIGURES],
    };
    let first = g.start_node(a, 0, None).await?;
    g.seed = first.local_addr();
    g.nodes.push(Some(first));
    for i in 1..a.servers {
        let n = g.start_node(a, i, Some(g.seed)).await?;
        g.nodes.push(Some(n));
    }
    let n0 = g.nodes[0].as_ref().context("node 0")?;
    wait_servers(n0, a.servers, 300).await?;
    let up = started.elapsed();
    eprintln!("{} nodes up in {:.1} s", a.servers, up.as_secs_f64());

    // Files, sizes log-uniform.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(23);
    let client = n0.client();
    let opts = PutOptions {
        params: Params {
            k: a.k,
            n: a.n,
            happy: a.happy,
        },
        random_key: true,
    };
    let (lo, hi) = (
        (a.min_kib.max(1) as f64).ln(),
        (a.max_kib.max(a.min_kib.max(1)) as f64).ln(),
    );
    let mut files: Vec<(Cap, u64)> = Vec::new();
    let mut report = Report {
        servers: a.servers,
        files: a.files,
        repair: !a.no_repair,
        ..Report::default()
    };
    for f in 0..a.files as u64 {
        let kib = rng.gen_range(lo..=hi).exp();
        let data = content(f, (kib * 1024.0) as usize);
        let up = client.put_bytes(&data, opts).await?;
        report.bytes_stored += data.len() as u64;
        files.push((up.cap, f));
        if (f + 1) % 100 == 0 {
            eprintln!(
                "{} files stored at {:.0} s",
                f + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("{} files ({} bytes) stored", a.files, report.bytes_stored);

    report.phase_seconds = vec![
        up.as_secs_f64(),
        started.elapsed().saturating_sub(up).as_secs_f64(),
    ];
    let mut phase = Instant::now();
    let mut lap = |report: &mut Report| {
        report.phase_seconds.push(phase.elapsed().as_secs_f64());
        phase = Instant::now();
    };
    let check = a.check_secs.max(1);
    let step = Duration::from_secs(a.grace_secs + 3 * check);
    let mut peak = 0u64;
    // Restarts: each node down for a while (less than the grace period),
    // then back.
    let before = g.repair_sum()[0];
    let down = Duration::from_secs(a.restart_secs.unwrap_or(2 * check));
    for r in 0..a.restarts.min(a.servers.saturating_sub(1)) {
        let i = 1 + r;
        g.kill(i);
        sample(&g, down, &mut peak).await;
        report.below_threshold_during_restarts =
            report.below_threshold_during_restarts.max(below_sum(&g));
        let n = g.start_node(a, i, Some(g.seed)).await?;
        g.nodes[i] = Some(n);
        report.restarted += 1;
    }
    sample(&g, step + Duration::from_secs(a.takeover_secs), &mut peak).await;
    report.repairs_during_restarts = g.repair_sum()[0] - before;
    eprintln!(
        "restarts done: {} repairs started, {} passes so far",
        report.repairs_during_restarts,
        g.repair_sum()[6]
    );
    lap(&mut report);

    // Deaths for good, spaced longer than the grace period; as many join.
    let mut victims: Vec<usize> = (1..a.servers).collect();
    for _ in 0..deaths {
        if victims.is_empty() {
            break;
        }
        let v = victims.swap_remove(rng.gen_range(0..victims.len()));
        g.kill(v);
        report.died += 1;
        let i = g.nodes.len();
        let n = g.start_node(a, i, Some(g.seed)).await?;
        g.nodes.push(Some(n));
        report.joined += 1;
        sample(&g, step, &mut peak).await;
        let [begun, _, regenerated, _, _, _, passes, checks] = g.repair_sum();
        eprintln!(
            "death {} of {deaths} at {:.0} s: {begun} repairs started, {regenerated} shares regenerated, {} files below threshold, {passes} passes, {checks} file checks",
            report.died,
            started.elapsed().as_secs_f64(),
            below_sum(&g)
        );
    }
    lap(&mut report);
    // Settle: every live node has made two more passes, the last of them
    // after a grace period and a takeover, and finds nothing below its
    // threshold; or the deadline.
    let settle_deadline = Instant::now() + Duration::from_secs(a.settle_secs);
    sample(&g, step + Duration::from_secs(a.takeover_secs), &mut peak).await;
    if !a.no_repair {
        let mark: Vec<u64> = g
            .live()
            .map(|n| n.state().repair_stats().status().passes)
            .collect();
        loop {
            let passed = g
                .live()
                .zip(&mark)
                .all(|(n, m)| n.state().repair_stats().status().passes >= m + 2);
            if passed && below_sum(&g) == 0 {
                break;
            }
            if Instant::now() >= settle_deadline {
                eprintln!(
                    "settling: deadline reached, {} files below threshold",
                    below_sum(&g)
                );
                break;
            }
            sample(&g, Duration::from_secs(1), &mut peak).await;
        }
    }
    lap(&mut report);

    let reader = g.nodes[0].as_ref().context("node 0")?.client();
    report.good_shares_histogram = vec![0; usize::from(a.n) + 1];
    for (cap, f) in &files {
        // A check that fails counts the file as having no good share.
        let good = match reader.check(cap, false).await {
            Ok(r) => r.results.count_shares_good,
            Err(e) => {
                eprintln!("check of a file failed: {e}");
                0
            }
        };
        if good >= usize::from(a.happy) {
            report.files_healthy += 1;
        }
        let last = report.good_shares_histogram.len() - 1;
        report.good_shares_histogram[good.min(last)] += 1;
        if let Ok(back) = reader.get_bytes(cap).await {
            if back == content(*f, back.len()) && Some(back.len() as u64) == size_of(cap) {
                report.files_readable += 1;
            }
        }
    }
    let [s, ok, regen, read, written, minimum, passes, checks] = g.repair_sum();
    report.repairs_started = s;
    report.repairs_succeeded = ok;
    report.shares_regenerated = regen;
    report.repair_bytes_read = read;
    report.repair_bytes_written = written;
    report.repair_minimum_read = minimum;
    report.repair_passes = passes;
    report.repair_file_checks = checks;
    if written > 0 {
        report.read_per_byte_regenerated = read as f64 / written as f64;
    }
    if minimum > 0 {
        report.read_over_minimum = read as f64 / minimum as f64;
    }
    report.peak_repair_bytes_per_s_per_node = peak;
    report.seconds = started.elapsed().as_secs_f64();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report:#?}");
    }
    Ok(())
}
