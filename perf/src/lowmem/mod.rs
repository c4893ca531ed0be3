//! `grapevine-perf lowmem`: issue 25's measurement. One real `grapevine run`
//! node and the `grapevine put`/`get` processes run together in a memory
//! cgroup (v1) this command creates and removes; the node is a member of a
//! swarm of library nodes (storage servers, in this process, outside the
//! cgroup) and the file's shares go to them. A file is put and got back at
//! each limit in the same run (unconstrained first), and for each the
//! report gives the throughput, the cgroup's `memory.max_usage_in_bytes`
//! (page cache included, as the kernel charges it), its peak anonymous and
//! cache memory, OOM kills and failed charges, and each process's peak RSS
//! (`VmHWM`) and anonymous memory (`RssAnon`, the highest sampled). Whether
//! the smallest limit reached 80% of the unconstrained throughput is the
//! issue's target.
//!
//! Processes enter the cgroup before they run anything: each is started
//! as `sh -c 'echo $$ > CGROUP/cgroup.procs && exec grapevine ...'`, so
//! everything it ever allocates is charged there. Puts use a random key, so
//! every limit stores the file anew (a convergent put of a stored file
//! writes nothing). The input's page cache is dropped before each put, so
//! the put reads it from disk as a board would; the output is written to
//! disk by `get -o` and compared (size and hash) with the input afterwards,
//! outside the cgroup.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{Client, Config, Node, NodeDir, Options};
use serde::Serialize;

mod cgroup;

pub use cgroup::{Cgroup, ProcMem};

/// Arguments of `lowmem`.
#[derive(Debug, clap::Args)]
pub struct LowmemArgs {
    /// Storage servers in the swarm (library nodes in this process).
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Memory limits of the node and CLI's cgroup, MiB (repeatable), run
    /// after an unconstrained one.
    #[arg(long = "limit-mib", default_values_t = [32, 16])]
    pub limits: Vec<u64>,
    /// Skip the unconstrained run (the CI test's shortcut).
    #[arg(long)]
    pub no_unconstrained: bool,
    /// File size, MiB.
    #[arg(long, default_value_t = 100)]
    pub size_mib: u64,
    /// The node's `memory_budget_mib` (default: the configuration's
    /// default); the CLI follows it.
    #[arg(long)]
    pub budget_mib: Option<u32>,
    /// The `grapevine` binary (default: the one beside this one).
    #[arg(long)]
    pub grapevine: Option<PathBuf>,
    /// Directory for the nodes and files (default: a temporary one under
    /// /var/tmp, on disk rather than tmpfs, whose pages are never
    /// reclaimed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds to wait for the node to see every storage server.
    #[arg(long, default_value_t = 300)]
    pub join_secs: u64,
    /// Seconds to let the swarm settle once the node sees it (joins cost
    /// CPU for a while), before the first transfer.
    #[arg(long, default_value_t = 10)]
    pub settle_secs: u64,
    /// KEY=VALUE set in the environment of the processes in the cgroup
    /// only (repeatable): for example `MALLOC_MMAP_THRESHOLD_=131072`.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One put and get at one limit.
#[derive(Debug, Default, Serialize)]
pub struct Phase {
    /// The cgroup's limit, MiB (none: unconstrained).
    pub limit_mib: Option<u64>,
    /// Whether the put and the get succeeded and the bytes read back equal
    /// the bytes put.
    pub ok: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Seconds the put took.
    pub put_secs: f64,
    /// Seconds the get took.
    pub get_secs: f64,
    /// MiB/s of the put alone.
    pub put_mib_per_s: f64,
    /// MiB/s of the get alone.
    pub get_mib_per_s: f64,
    /// MiB/s of the put and the get together (twice the file over their
    /// time).
    pub mib_per_s: f64,
    /// The cgroup's `memory.max_usage_in_bytes` over the phase.
    pub max_usage_bytes: u64,
    /// Highest anonymous memory charged to the cgroup (`memory.stat`
    /// `rss`), sampled.
    pub peak_cgroup_anon_bytes: u64,
    /// Highest page cache charged to the cgroup (`memory.stat` `cache`),
    /// sampled.
    pub peak_cgroup_cache_bytes: u64,
    /// Charges that hit the limit (`memory.failcnt`): reclaim, not failure.
    pub failcnt: u64,
    /// Processes the OOM killer killed in the cgroup during the phase.
    pub oom_kills: u64,
    /// The node process.
    pub node: ProcMem,
    /// The `grapevine put` process.
    pub put: ProcMem,
    /// The `grapevine get` process.
    pub get: ProcMem,
}

/// What `lowmem` measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Storage servers in the swarm, besides the node.
    pub nodes: usize,
    /// Storage servers the node saw when the transfers began.
    pub servers_seen: usize,
    /// File size, bytes.
    pub size_bytes: u64,
    /// The node's (and so the CLI's) memory budget, MiB (0: no bound;
    /// none: the configuration's default).
    pub budget_mib: Option<u32>,
    /// The cgroup used (removed at the end).
    pub cgroup: String,
    /// Environment given to the processes in the cgroup.
    pub env: Vec<String>,
    /// One entry per limit, in the order run.
    pub phases: Vec<Phase>,
    /// The smallest limit's throughput over the unconstrained one's.
    pub smallest_vs_unconstrained: Option<f64>,
    /// The smallest limit's put throughput over the unconstrained one's.
    pub put_vs_unconstrained: Option<f64>,
    /// The smallest limit's get throughput over the unconstrained one's.
    pub get_vs_unconstrained: Option<f64>,
    /// Whether that is at least 80% (issue 25's target).
    pub reached_80pct: Option<bool>,
}

/// Drop `path`'s pages from the page cache.
fn evict(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path)?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// `mib` MiB of pseudo-random bytes at `path`, synced.
fn write_input(path: &Path, mib: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = blake3::Hasher::new().update(b"lowmem").finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        x.fill(&mut buf);
        f.write_all(&buf)?;
    }
    f.into_inner()?.sync_all()?;
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, [u8; 32])> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        n += r as u64;
        h.update(&buf[..r]);
    }
    Ok((n, *h.finalize().as_bytes()))
}

/// Run `cmd` (in the cgroup) to its end, sampling its memory, the node's
/// and the cgroup's every few milliseconds: (success, stdout, stderr,
/// seconds).
fn run_sampled(
    mut cmd: Command,
    cg: &Cgroup,
    node: &mut Child,
    phase: &mut Phase,
    which: fn(&mut Phase) -> &mut ProcMem,
) -> Result<(bool, String, String, f64)> {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting grapevine")?;
    let pid = child.id();
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        which(phase).sample(pid);
        phase.node.sample(node.id());
        phase.peak_cgroup_anon_bytes = phase
            .peak_cgroup_anon_bytes
            .max(cg.field("memory.stat", "rss"));
        phase.peak_cgroup_cache_bytes = phase
            .peak_cgroup_cache_bytes
            .max(cg.field("memory.stat", "cache"));
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = t.elapsed().as_secs_f64();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    Ok((status.success(), out, err, secs))
}

/// `program` in the cgroup, with `env` (KEY=VALUE) set.
fn cg_env(cg: &Cgroup, program: &Path, env: &[String]) -> Result<Command> {
    let mut c = cg.command(program);
    for kv in env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv}: not KEY=VALUE"))?;
        c.env(k, v);
    }
    Ok(c)
}

/// A library storage node's configuration: seeded to `seed`, no repair or
/// scrub (they would only add noise here).
fn swarm_config(i: usize, seed: Option<std::net::SocketAddr>) -> Config {
    let mut cfg = Config::new("127.0.0.1:0".parse().expect("address"));
    cfg.nickname = Some(format!("m{i}"));
    cfg.capacity_mib = 4096;
    cfg.reserve_mib = 0;
    cfg.seeds = seed.into_iter().map(Into::into).collect();
    cfg.repair = false;
    cfg.scrub_mib_per_s = 0;
    cfg
}

/// A free loopback port for the node (UDP and TCP both free).
fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = u.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port")
}

/// `grapevine-perf lowmem`.
///
/// # Errors
/// No cgroup v1 memory controller; nodes that do not start or see each
/// other. A put or get that fails is reported, not an error.
pub fn run(a: &LowmemArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(measure(a))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

fn print_text(r: &Report) {
    println!(
        "lowmem: node + CLI in one cgroup, {} storage servers ({} seen), {} MiB file, budget {}",
        r.nodes,
        r.servers_seen,
        r.size_bytes >> 20,
        r.budget_mib
            .map_or("the default".into(), |m| format!("{m} MiB"))
    );
    println!(
        "{:>8} {:>4} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} {:>8} {:>8} {:>5} {:>20} {:>20} {:>20}",
        "limit",
        "ok",
        "put s",
        "get s",
        "put/s",
        "get/s",
        "MiB/s",
        "max use",
        "anon",
        "cache",
        "oom",
        "node hwm/anon/file",
        "put hwm/anon/file",
        "get hwm/anon/file"
    );
    let mib = |b: u64| format!("{:.1}M", b as f64 / f64::from(1 << 20));
    let pm = |p: &ProcMem| {
        format!(
            "{}/{}/{}K",
            p.peak_rss_kib, p.peak_anon_kib, p.peak_file_kib
        )
    };
    for p in &r.phases {
        println!(
            "{:>8} {:>4} {:>7.2} {:>7.2} {:>7.1} {:>7.1} {:>8.1} {:>9} {:>8} {:>8} {:>5} {:>20} {:>20} {:>20}",
            p.limit_mib.map_or("none".into(), |m| format!("{m} MiB")),
            if p.ok { "yes" } else { "NO" },
            p.put_secs,
            p.get_secs,
            p.put_mib_per_s,
            p.get_mib_per_s,
            p.mib_per_s,
            mib(p.max_usage_bytes),
            mib(p.peak_cgroup_anon_bytes),
            mib(p.peak_cgroup_cache_bytes),
            p.oom_kills,
            pm(&p.node),
            pm(&p.put),
            pm(&p.get),
        );
        if let Some(e) = &p.error {
            println!("         error: {e}");
        }
    }
    if let (Some(x), Some(ok)) = (r.smallest_vs_unconstrained, r.reached_80pct) {
        println!(
            "smallest limit: {:.0}% of the unconstrained throughput (put {:.0}%, get {:.0}%; {})",
            x * 100.0,
            r.put_vs_unconstrained.unwrap_or(0.0) * 100.0,
            r.get_vs_unconstrained.unwrap_or(0.0) * 100.0,
            if ok {
                "target of 80% reached"
            } else {
                "below the 80% target"
            }
        );
    }
}

/// Start the swarm and the node, run the phases, stop everything.
async fn measure(a: &LowmemArgs) -> Result<Report> {
    let grapevine = match &a.grapevine {
        Some(g) => g.clone(),
        None => std::env::current_exe()?.with_file_name("grapevine"),
    };
    if !grapevine.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p grapevine-cli) or pass --grapevine",
            grapevine.display()
        );
    }
    let cg = Cgroup::create(&format!("grapevine-lowmem-{}", std::process::id()))?;
    let tmp = tempfile::Builder::new()
        .prefix("grapevine-lowmem.")
        .tempdir_in(a.dir.as_deref().unwrap_or(Path::new("/var/tmp")))?;
    let root = tmp.path();

    // The swarm: library storage nodes outside the cgroup.
    let started = Instant::now();
    let mut swarm: Vec<Node> = Vec::new();
    let mut seed = None;
    for i in 0..a.nodes {
        let d = NodeDir::new(root.join(format!("s{i}")));
        dir::init(
            &d,
            &InitOptions {
                listen: "127.0.0.1:0".parse()?,
                advertise: Vec::new(),
                seeds: vec![],
                nickname: None,
                capacity_mib: 4096,
                gateway: None,
            },
        )?;
        let n = Node::start(swarm_config(i, seed), &d, Options::in_process()).await?;
        seed.get_or_insert(n.local_addr());
        swarm.push(n);
    }
    let seed = seed.context("no swarm")?;
    eprintln!(
        "{} library nodes started in {:.1} s",
        a.nodes,
        started.elapsed().as_secs_f64()
    );

    // The node: `grapevine run`, in the cgroup from its start.
    let node_dir = NodeDir::new(root.join("node"));
    dir::init(
        &node_dir,
        &InitOptions {
            listen: format!("127.0.0.1:{}", free_port()?).parse()?,
            advertise: Vec::new(),
            seeds: vec![seed.into()],
            nickname: Some("lowmem".into()),
            capacity_mib: 4096,
            gateway: None,
        },
    )?;
    // Only when asked: a `grapevine` from before issue 25 refuses the key.
    if let Some(m) = a.budget_mib {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(node_dir.config_path())?;
        writeln!(f, "memory_budget_mib = {m}")?;
    }
    let budget_mib = a.budget_mib;
    let mut node = cg_env(&cg, &grapevine, &a.env)?
        .arg("run")
        .arg(node_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting grapevine run")?;
    let r = phases(a, &grapevine, &cg, &node_dir, &mut node, budget_mib).await;
    let _ = node.kill();
    let _ = node.wait();
    drop(swarm);
    let mut report = r?;
    report.cgroup = cg.path().display().to_string();
    Ok(report)
}

/// Wait for the node to see the swarm, then put and get at each limit.
async fn phases(
    a: &LowmemArgs,
    grapevine: &Path,
    cg: &Cgroup,
    node_dir: &NodeDir,
    node: &mut Child,
    budget_mib: Option<u32>,
) -> Result<Report> {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(a.join_secs);
    let mut seen = 0;
    // The node's own control socket, asked from outside the cgroup.
    loop {
        if let Some(s) = node.try_wait()? {
            bail!("the node exited ({s}) before the transfers");
        }
        if let Ok(c) = Client::for_dir(node_dir).await {
            if let Ok(s) = c.servers().await {
                seen = s.len();
            }
        }
        // Itself and every library node.
        if seen > a.nodes || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "the node sees {seen} storage servers after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if seen < 10 {
        bail!("the node sees only {seen} storage servers");
    }
    tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;

    let size = a.size_mib << 20;
    let input = node_dir.path().join("input.bin");
    tokio::task::block_in_place(|| write_input(&input, a.size_mib))?;
    let want = tokio::task::block_in_place(|| hash_file(&input))?;
    let mut limits: Vec<Option<u64>> = Vec::new();
    if !a.no_unconstrained {
        limits.push(None);
    }
    limits.extend(a.limits.iter().map(|&m| Some(m)));

    let mut report = Report {
        nodes: a.nodes,
        servers_seen: seen,
        size_bytes: size,
        budget_mib,
        env: a.env.clone(),
        ..Report::default()
    };
    for limit in limits {
        let mut p = Phase {
            limit_mib: limit,
            ..Phase::default()
        };
        cg.limit(limit)?;
        // The node's peak from this phase on.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", node.id()), "5");
        let ooms = cg.oom_kills();
        evict(&input)?;
        let mut put = cg_env(cg, grapevine, &a.env)?;
        put.arg("put")
            .arg(&input)
            .arg("--random-key")
            .arg("--node")
            .arg(node_dir.path());
        // Blocking (it waits on the process): off the runtime's workers,
        // which serve the swarm's shares meanwhile.
        let (ok, out, err, secs) =
            tokio::task::block_in_place(|| run_sampled(put, cg, node, &mut p, |p| &mut p.put))?;
        p.put_secs = secs;
        let output = node_dir.path().join("output.bin");
        if !ok {
            p.error = Some(format!("put failed: {}", err.trim()));
        } else {
            let mut get = cg_env(cg, grapevine, &a.env)?;
            get.arg("get")
                .arg(out.trim())
                .arg("-o")
                .arg(&output)
                .arg("--node")
                .arg(node_dir.path());
            let (ok, _, err, secs) =
                tokio::task::block_in_place(|| run_sampled(get, cg, node, &mut p, |p| &mut p.get))?;
            p.get_secs = secs;
            if !ok {
                p.error = Some(format!("get failed: {}", err.trim()));
            } else if tokio::task::block_in_place(|| hash_file(&output))? != want {
                p.error = Some("the bytes read back differ from the bytes put".into());
            } else {
                p.ok = true;
            }
        }
        let _ = std::fs::remove_file(&output);
        p.max_usage_bytes = cg.read_u64("memory.max_usage_in_bytes");
        p.failcnt = cg.read_u64("memory.failcnt");
        p.oom_kills = cg.oom_kills().saturating_sub(ooms);
        if p.ok {
            p.mib_per_s = 2.0 * a.size_mib as f64 / (p.put_secs + p.get_secs);
            p.put_mib_per_s = a.size_mib as f64 / p.put_secs;
            p.get_mib_per_s = a.size_mib as f64 / p.get_secs;
        }
        if let Some(s) = node.try_wait()? {
            p.ok = false;
            p.error
                .get_or_insert_with(|| format!("the node exited ({s})"));
        }
        eprintln!(
            "limit {}: {}",
            limit.map_or("none".into(), |m| format!("{m} MiB")),
            p.error.as_deref().unwrap_or("ok")
        );
        let node_gone = p
            .error
            .as_deref()
            .is_some_and(|e| e.contains("node exited"));
        report.phases.push(p);
        if node_gone {
            break;
        }
    }
    let free = report.phases.iter().find(|p| p.limit_mib.is_none() && p.ok);
    let smallest = report
        .phases
        .iter()
        .filter(|p| p.limit_mib.is_some())
        .min_by_key(|p| p.limit_mib);
    if let (Some(f), Some(s)) = (free, smallest) {
        let x = if s.ok { s.mib_per_s / f.mib_per_s } else { 0.0 };
        report.smallest_vs_unconstrained = Some(x);
        // Same size both times: the time ratio inverted.
        let (put, get) = if s.ok {
            (f.put_secs / s.put_secs, f.get_secs / s.get_secs)
        } else {
            (0.0, 0.0)
        };
        report.put_vs_unconstrained = Some(put);
        report.get_vs_unconstrained = Some(get);
        report.reached_80pct = Some(x >= 0.8);
    }
    Ok(report)
}
