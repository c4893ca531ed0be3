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
    repairs_during_restarts: u64,
    files_readable: usize,
    files_healthy: usize,
    repairs_started: u64,
    repairs_succeeded: u64,
    shares_regenerated: u64,
    repair_bytes_read: u64,
    repair_bytes_written: u64,
    /// Bytes read per byte written by repair.
    read_per_byte_regenerated: f64,
    /// That figure over the minimum, k.
    of_minimum: f64,
    peak_repair_bytes_per_s_per_node: u64,
    seconds: f64,
}

struct Grid {
    root: std::path::PathBuf,
    nodes: Vec<Option<Node>>,
    seed: std::net::SocketAddr,
    /// The repair figures of nodes stopped (their counters go with them).
    retired: [u64; 5],
}

fn config(a: &ChurnArgs, i: usize, seed: Option<std::net::SocketAddr>) -> Config {
    let mut cfg = Config::new("127.0.0.1:0".parse().expect("address"));
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
                    seeds: vec![],
                    nickname: Some(format!("c{i}")),
                    capacity_mib: 100_000,
                    gateway: None,
                },
            )?;
        }
        Ok(Node::start(config(a, i, seed), &d, Options::in_process()).await?)
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

    /// Repairs started and succeeded, shares regenerated, bytes read and
    /// written, by every node that ever ran.
    fn repair_sum(&self) -> [u64; 5] {
        let mut out = self.retired;
        for n in self.live() {
            for (o, v) in out.iter_mut().zip(figures(n)) {
                *o += v;
            }
        }
        out
    }
}

fn figures(n: &Node) -> [u64; 5] {
    let r = n.state().repair_stats().status();
    [
        r.repairs_started,
        r.repairs_succeeded,
        r.shares_regenerated,
        r.bytes_read,
        r.bytes_written,
    ]
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
    let mut g = Grid {
        root,
        nodes: Vec::new(),
        seed: "127.0.0.1:1".parse()?,
        retired: [0; 5],
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
    eprintln!(
        "{} nodes up in {:.1} s",
        a.servers,
        started.elapsed().as_secs_f64()
    );

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
    }
    eprintln!("{} files ({} bytes) stored", a.files, report.bytes_stored);

    let step = Duration::from_secs(a.grace_secs + 3 * a.check_secs.max(1));
    let mut peak = 0u64;
    // Restarts: each node down for a second, then back.
    let before = g.repair_sum()[0];
    for r in 0..a.restarts.min(a.servers.saturating_sub(1)) {
        let i = 1 + r;
        g.kill(i);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = g.start_node(a, i, Some(g.seed)).await?;
        g.nodes[i] = Some(n);
        report.restarted += 1;
    }
    sample(&g, step, &mut peak).await;
    report.repairs_during_restarts = g.repair_sum()[0] - before;
    eprintln!(
        "restarts done: {} repairs started",
        report.repairs_during_restarts
    );

    // Deaths for good, spaced longer than the grace period; as many join.
    let deaths = a.servers * a.die_pct / 100;
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
        let [started, _, regenerated, _, _] = g.repair_sum();
        eprintln!(
            "death {} of {deaths}: {started} repairs started, {regenerated} shares regenerated",
            report.died
        );
    }
    // Settle: another grace period and a takeover.
    sample(&g, step + Duration::from_secs(a.takeover_secs), &mut peak).await;

    let reader = g.nodes[0].as_ref().context("node 0")?.client();
    for (cap, f) in &files {
        let r = reader.check(cap, false).await?;
        if r.results.count_shares_good >= usize::from(a.happy) {
            report.files_healthy += 1;
        }
        if let Ok(back) = reader.get_bytes(cap).await {
            if back == content(*f, back.len()) && Some(back.len() as u64) == size_of(cap) {
                report.files_readable += 1;
            }
        }
    }
    let [s, ok, regen, read, written] = g.repair_sum();
    report.repairs_started = s;
    report.repairs_succeeded = ok;
    report.shares_regenerated = regen;
    report.repair_bytes_read = read;
    report.repair_bytes_written = written;
    if written > 0 {
        report.read_per_byte_regenerated = read as f64 / written as f64;
        report.of_minimum = report.read_per_byte_regenerated / f64::from(a.k);
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
