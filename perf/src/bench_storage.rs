//! `grapevine-perf bench storage`: put and get throughput on a local grid of
//! share servers (each its own identity, TCP listener and on-disk store in
//! a temporary directory), with the default 3-of-10 encoding. Then each
//! server verifies every share it holds against its checksum (`Verify`,
//! one share at a time), and the bench reports the peak heap above what was
//! live before: the servers stream the check, so it stays a few buffers
//! however large the share (issue 18.3).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::client::{self, ClientIdentity, KeyMode, ServerRef};
use grapevine_storage::protocol::{Reply, Request};
use grapevine_storage::Params;
use grapevine_storage::{PoolConfig, SessionPool, StorageIndex};
use serde::Serialize;

use crate::generated::{generated, CheckSink, Generated};

use grapevine_node::procfs;

use crate::alloc;
use crate::bench_ceiling::{self, CeilingReport};
use crate::ceiling::fraction;
use crate::counters::{Delta, Snapshot};

/// Arguments of `bench storage`.
#[derive(Debug, clap::Args)]
pub struct StorageArgs {
    /// File size: bytes, or with a KiB/MiB/GiB suffix.
    #[arg(long, default_value = "256MiB")]
    pub size: String,
    /// Storage servers in the local grid.
    #[arg(long, default_value_t = 10)]
    pub servers: usize,
    /// Directory under which the servers keep their stores (default: the
    /// system temporary directory). Point it at a tmpfs such as /dev/shm to
    /// measure the pipeline without the disk.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Put and get this many files, one after another (each with fresh
    /// servers); the figures are the median run's, with every run listed.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Untimed runs first: put and get this many files of the same size
    /// before the first ceiling and the first timed run. On a virtual
    /// machine whose host takes back the memory its guest frees (free page
    /// reporting), the first put after a while writes its shares into pages
    /// the host must back again, and measured here spent 1.3 s more in the
    /// kernel per GiB than the runs after it; the warm-up pays that instead
    /// of the first timed run. Its figures are reported apart.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Do not prime the memory before each put: by default, right before
    /// it, as many bytes as the put will store (10/3 of the file, at most
    /// half the memory this process may still use: the system's available
    /// memory or its memory cgroup's room) are written into memory, untimed,
    /// and held, then given back a lead ahead of the shares as the put
    /// stores them, so that on a virtual machine that makes memory free
    /// for a while slow to use again the put writes into memory freed a
    /// moment before (`prime.rs`; the writing's time is `prime_s`).
    #[arg(long)]
    pub no_prime: bool,
    /// Do not measure the ceiling (`bench ceiling`) before, between and
    /// after the runs.
    #[arg(long)]
    pub no_ceiling: bool,
    /// Cores the ceiling assumes (default: this machine's).
    #[arg(long)]
    pub cores: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The figures: the median run's put and get (each median apart), the
/// ceiling measured around the runs, and every run.
#[derive(Debug, Serialize)]
pub struct StorageReport {
    /// Put's ceiling, MB/s of file: the mean of all the measurements
    /// before, between and after the runs (`None` with `--no-ceiling`).
    /// The median run's own is `put_ceiling_mb_s`.
    pub put_ceiling_mean_mb_s: Option<f64>,
    /// Get's ceiling, MB/s: the mean of all the measurements.
    pub get_ceiling_mean_mb_s: Option<f64>,
    /// Median put as a fraction of its run's ceiling.
    pub put_fraction: Option<f64>,
    /// Median get as a fraction of its run's ceiling.
    pub get_fraction: Option<f64>,
    /// What bound put's ceiling (first measurement).
    pub put_binding: Option<String>,
    /// What bound get's ceiling (first measurement).
    pub get_binding: Option<String>,
    /// Every run.
    pub runs: Vec<RunFigures>,
    /// The untimed warm-up runs (`--warmup`), not counted in any figure
    /// above.
    pub warmup: Vec<RunFigures>,
    /// Every ceiling measurement, in order (one before each run, one after
    /// the last).
    pub ceilings: Vec<crate::bench_ceiling::CeilingReport>,
    /// The median run's figures.
    #[serde(flatten)]
    pub median: RunFigures,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// File size in bytes.
    pub bytes: u64,
    /// Servers.
    pub servers: usize,
    /// Encoding.
    pub k: u16,
    /// Encoding.
    pub n: u16,
    /// Upload MB/s (10^6 bytes of file per second).
    pub put_mb_s: f64,
    /// Download MB/s.
    pub get_mb_s: f64,
    /// CPU core-seconds per second during put (the whole process).
    pub put_cores: f64,
    /// CPU core-seconds per second during get.
    pub get_cores: f64,
    /// The largest share verified, bytes.
    pub verify_share_bytes: u64,
    /// Shares verified.
    pub verify_shares: usize,
    /// Peak heap bytes (allocator-counted, the whole process) above those
    /// live before, while the servers verified every share.
    pub verify_peak_heap_bytes: i64,
    /// Put's ceiling for this run (the mean of the measurements just
    /// before and just after it), MB/s.
    pub put_ceiling_mb_s: Option<f64>,
    /// Get's ceiling for this run, MB/s.
    pub get_ceiling_mb_s: Option<f64>,
    /// Process counters during the put.
    pub put_counters: Delta,
    /// Seconds the put's encoder spent encoding (one thread at a time).
    pub put_encoding_s: f64,
    /// Seconds the put's driver waited for the encoder.
    pub put_wait_encoder_s: f64,
    /// Seconds the put's driver waited for room in the writers' queues.
    pub put_wait_writers_s: f64,
    /// Seconds of the put in all.
    pub put_s: f64,
    /// Bytes of memory written right before the put and given back as it
    /// stored its shares: their size, at most half the memory this
    /// process may use (0 with `--no-prime`).
    pub primed_bytes: u64,
    /// Seconds the priming's writing took (untimed: not in the put's).
    pub prime_s: f64,
    /// Bytes of the priming's memory in huge pages (given back at a
    /// fraction of the cost of base pages: `anon_memory.rs`), where the
    /// kernel says.
    pub primed_huge_bytes: Option<u64>,
    /// Seconds the get spent decoding segments, summed over segments
    /// (they decode side by side: up to the get's seconds times the cores).
    pub get_decoding_s: f64,
    /// Seconds the get had nothing decoding, waiting for blocks.
    pub get_wait_blocks_s: f64,
    /// Seconds segments whose decoding had started waited for a worker,
    /// summed over segments.
    pub get_wait_decoder_s: f64,
    /// Seconds of the get in all.
    pub get_s: f64,
    /// Process counters during the get.
    pub get_counters: Delta,
}

/// Parse "1GiB", "256MiB", "1000".
///
/// # Errors
/// Unparseable text.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1u64 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    let v: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad size {s:?}"))?;
    Ok(v * mul)
}

/// Run the benchmark.
///
/// # Errors
/// Setup, upload or download failures, or a download that does not match.
pub fn run(args: &StorageArgs) -> Result<()> {
    let size = parse_size(&args.size)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cores = args.cores.unwrap_or_else(bench_ceiling::machine_cores);
    let dir = args.dir.as_deref();
    let ceiling = || -> Result<Option<CeilingReport>> {
        if args.no_ceiling {
            return Ok(None);
        }
        Ok(Some(bench_ceiling::measure(
            dir,
            Params::default(),
            cores,
            bench_ceiling::threads_for(cores),
        )?))
    };
    let warmup = (0..args.warmup)
        .map(|_| on_workers(&rt, size, args.servers, dir, !args.no_prime))
        .collect::<Result<Vec<_>>>()?;
    let mut ceilings = Vec::new();
    let mut runs = Vec::new();
    let mut before = ceiling()?;
    for _ in 0..args.runs {
        let mut r = on_workers(&rt, size, args.servers, dir, !args.no_prime)?;
        let after = ceiling()?;
        if let (Some(b), Some(a)) = (&before, &after) {
            r.put_ceiling_mb_s = Some((b.put.bytes_per_s + a.put.bytes_per_s) / 2e6);
            r.get_ceiling_mb_s = Some((b.get.bytes_per_s + a.get.bytes_per_s) / 2e6);
        }
        ceilings.extend(before.take());
        before = after;
        runs.push(r);
    }
    ceilings.extend(before);
    let report = StorageReport {
        warmup,
        ..combine_runs(runs, ceilings)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// The report of `runs` (at least one) and the ceilings measured around
/// them: the median put and the median get (of different runs, perhaps),
/// each as a fraction of its own run's ceiling.
fn combine_runs(runs: Vec<RunFigures>, ceilings: Vec<CeilingReport>) -> StorageReport {
    let pick = |key: fn(&RunFigures) -> f64| {
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by(|&a, &b| key(&runs[a]).total_cmp(&key(&runs[b])));
        order[order.len() / 2]
    };
    let (p, g) = (pick(|r| r.put_mb_s), pick(|r| r.get_mb_s));
    let mut median = runs[p].clone();
    let got = &runs[g];
    median.get_mb_s = got.get_mb_s;
    median.get_cores = got.get_cores;
    median.get_ceiling_mb_s = got.get_ceiling_mb_s;
    median.get_counters = got.get_counters;
    median.get_decoding_s = got.get_decoding_s;
    median.get_wait_blocks_s = got.get_wait_blocks_s;
    median.get_wait_decoder_s = got.get_wait_decoder_s;
    median.get_s = got.get_s;
    let mean = |f: fn(&CeilingReport) -> f64| {
        (!ceilings.is_empty())
            .then(|| ceilings.iter().map(f).sum::<f64>() / ceilings.len() as f64 / 1e6)
    };
    StorageReport {
        put_ceiling_mean_mb_s: mean(|c| c.put.bytes_per_s),
        get_ceiling_mean_mb_s: mean(|c| c.get.bytes_per_s),
        put_fraction: median
            .put_ceiling_mb_s
            .map(|c| fraction(median.put_mb_s, c)),
        get_fraction: median
            .get_ceiling_mb_s
            .map(|c| fraction(median.get_mb_s, c)),
        put_binding: ceilings.first().map(|c| c.put.binding.clone()),
        get_binding: ceilings.first().map(|c| c.get.binding.clone()),
        runs,
        warmup: Vec::new(),
        ceilings,
        median,
    }
}

fn print_report(r: &StorageReport) {
    let m = &r.median;
    println!(
        "grapevine bench storage: {} MiB, {}-of-{} over {} servers on loopback, {} run(s)",
        m.bytes >> 20,
        m.k,
        m.n,
        m.servers,
        r.runs.len()
    );
    let of = |f: Option<f64>, c: Option<f64>| match (f, c) {
        (Some(f), Some(c)) => format!("  = {:.0}% of the ceiling {c:.1}", f * 100.0),
        _ => String::new(),
    };
    println!(
        "  put  {:8.1} MB/s  ({:.2} cores){}",
        m.put_mb_s,
        m.put_cores,
        of(r.put_fraction, m.put_ceiling_mb_s)
    );
    println!(
        "  get  {:8.1} MB/s  ({:.2} cores){}",
        m.get_mb_s,
        m.get_cores,
        of(r.get_fraction, m.get_ceiling_mb_s)
    );
    if let (Some(pb), Some(gb)) = (&r.put_binding, &r.get_binding) {
        println!("  ceiling bound by: put {pb}; get {gb}");
    }
    if r.runs.len() > 1 {
        let list = |f: fn(&RunFigures) -> f64| {
            r.runs
                .iter()
                .map(|x| format!("{:.1}", f(x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  runs: put {}; get {}",
            list(|x| x.put_mb_s),
            list(|x| x.get_mb_s)
        );
    }
    for w in &r.warmup {
        println!(
            "  warm-up (not counted): put {:.1}, get {:.1} MB/s",
            w.put_mb_s, w.get_mb_s
        );
    }
    if m.primed_bytes > 0 {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        let huge = m
            .primed_huge_bytes
            .map(|h| format!(", {:.0} MiB of it in huge pages", mib(h)))
            .unwrap_or_default();
        println!(
            "  before the put, {:.0} MiB of memory written in {:.2} s (untimed{huge}) and given back as the put stored its shares (--no-prime leaves it out)",
            mib(m.primed_bytes),
            m.prime_s
        );
    }
    println!(
        "  put pipeline: {:.2} s; encoder busy {:.2} s; driver waited {:.2} s for the encoder, {:.2} s for the writers",
        m.put_s, m.put_encoding_s, m.put_wait_encoder_s, m.put_wait_writers_s
    );
    println!(
        "  get pipeline: {:.2} s; decoding {:.2} s (summed over segments); nothing decoding {:.2} s; decodings waited {:.2} s for a worker",
        m.get_s, m.get_decoding_s, m.get_wait_blocks_s, m.get_wait_decoder_s
    );
    let c = &m.put_counters;
    println!(
        "  put counters: user {:.2} s, system {:.2} s, {} minor faults, {} voluntary / {} involuntary switches, {} allocations ({} of 64 KiB or more), {:.2} s stolen by the host",
        c.user_s, c.system_s, c.minor_faults, c.voluntary_switches, c.involuntary_switches, c.allocs, c.large_allocs, c.steal_s
    );
    if let Some(kib) = c.reported_to_host_kib {
        println!(
            "  during the put the kernel handed {:.0} MiB of free memory back to the host (free page reporting)",
            kib as f64 / 1024.0
        );
    }
    println!(
        "  verify {} shares of up to {:.1} MiB: peak heap +{:.1} KiB",
        m.verify_shares,
        m.verify_share_bytes as f64 / f64::from(1u32 << 20),
        m.verify_peak_heap_bytes as f64 / 1024.0
    );
}

/// `n` share servers in this process on `ip`, each storing in a fresh
/// directory (under `base`, else the temp dir): how a client reaches them,
/// and their directories (removed when dropped).
pub(crate) async fn local_servers(
    n: usize,
    ip: [u8; 4],
    base: Option<&std::path::Path>,
) -> Result<(Vec<ServerRef>, Vec<tempfile::TempDir>)> {
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = match base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let srv = grapevine_storage::testing::spawn_local(
            ip.into(),
            dir.path(),
            Some(format!("bench-{i}")),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting server {i}: {e}"))?;
        servers.push(ServerRef {
            id: srv.id,
            addr: srv.addr,
        });
        dirs.push(dir);
    }
    Ok((servers, dirs))
}

/// One run of [`bench()`] as a task of `rt`, so the upload's driver and the
/// download's coordinator run on the runtime's workers, as in a node's
/// gateway and in `grapevine put` and `get`, rather than on the thread
/// that waits for the run. There, every hand-off between them and the
/// tasks and threads they feed woke a third thread, which took a core
/// from them for a few microseconds at a time, some 5,000 times a get
/// (`perf sched`): measured in pairs of sets on the same build, put and
/// get each rose by 3.5 to 5 points of the ceiling on workers.
fn on_workers(
    rt: &tokio::runtime::Runtime,
    size: u64,
    n_servers: usize,
    base: Option<&std::path::Path>,
    prime: bool,
) -> Result<RunFigures> {
    let base = base.map(std::path::Path::to_path_buf);
    rt.block_on(async move {
        tokio::spawn(async move { bench(size, n_servers, base.as_deref(), prime).await })
            .await
            .map_err(|e| anyhow::anyhow!("the run's task: {e}"))?
    })
}

async fn bench(
    size: u64,
    n_servers: usize,
    base: Option<&std::path::Path>,
    prime: bool,
) -> Result<RunFigures> {
    let (servers, dirs) = local_servers(n_servers, [127, 6, 0, 1], base).await?;
    let ident = Arc::new(Identity::generate());
    let record = LocationRecord::new(&ident, vec!["127.6.0.2:1".parse()?]).sign(&ident)?;
    let me = ClientIdentity {
        identity: ident,
        record,
        session: SessionConfig::default(),
    };
    let pool = SessionPool::new(me, PoolConfig::default());
    let params = Params::default();

    let primed_bytes = if prime {
        let volume = crate::bench_ceiling::share_volume(size, params);
        crate::prime::primable(volume, crate::headroom::available_memory())
    } else {
        0
    };
    // Held until the put stores its shares, given back a lead ahead of
    // them (prime.rs).
    let (ballast, prime_s) =
        tokio::task::spawn_blocking(move || crate::prime::Ballast::hold(primed_bytes)).await?;
    let prime_s = prime_s.as_secs_f64();
    let primed_huge_bytes = ballast.huge_bytes();
    let ballast = std::sync::Mutex::new(ballast);
    let give_back = |done: u64| {
        let stored = crate::bench_ceiling::share_volume(done, params);
        if let Ok(mut b) = ballast.lock() {
            b.give_back_for(stored);
        }
    };
    let c0 = Snapshot::now();
    let cpu0 = procfs::cpu_seconds();
    let t = Instant::now();
    let req = client::UploadRequest {
        params,
        mode: KeyMode::Random,
        size,
        input: generated(size),
        hash_input: None::<Generated>,
    };
    let up = client::upload(&pool, &servers, req, &give_back)
        .await
        .context("upload")?;
    drop(ballast);
    let put_s = t.elapsed().as_secs_f64();
    let put_cpu = procfs::cpu_seconds() - cpu0;
    let put_counters = c0.delta(&Snapshot::now());

    let c0 = Snapshot::now();
    let cpu0 = procfs::cpu_seconds();
    let t = Instant::now();
    let mut sink = CheckSink {
        pos: 0,
        mismatch: false,
    };
    let rep = client::download(&pool, &servers, &up.cap, &mut sink, &|_| {})
        .await
        .context("download")?;
    let get_s = t.elapsed().as_secs_f64();
    let get_cpu = procfs::cpu_seconds() - cpu0;
    let get_counters = c0.delta(&Snapshot::now());
    if rep.bytes != size || sink.pos != size || sink.mismatch {
        bail!("downloaded file does not match what was uploaded");
    }
    let grapevine_storage::Cap::Chk(rc) = &up.cap else {
        bail!("a {size}-byte file was inlined, not stored: nothing to verify");
    };
    let (verify_shares, verify_share_bytes, verify_peak_heap_bytes) =
        verify_all(&pool, &servers, &rc.storage_index()).await?;
    drop(dirs);
    Ok(RunFigures {
        bytes: size,
        servers: n_servers,
        k: params.k,
        n: params.n,
        put_mb_s: size as f64 / 1e6 / put_s,
        get_mb_s: size as f64 / 1e6 / get_s,
        put_cores: put_cpu / put_s,
        get_cores: get_cpu / get_s,
        verify_shares,
        verify_share_bytes,
        verify_peak_heap_bytes,
        put_ceiling_mb_s: None,
        get_ceiling_mb_s: None,
        put_counters,
        get_counters,
        put_encoding_s: up.waits.encoding.as_secs_f64(),
        put_wait_encoder_s: up.waits.for_encoder.as_secs_f64(),
        put_wait_writers_s: up.waits.for_writers.as_secs_f64(),
        put_s,
        primed_bytes,
        prime_s,
        primed_huge_bytes,
        get_decoding_s: rep.waits.decoding.as_secs_f64(),
        get_wait_blocks_s: rep.waits.for_blocks.as_secs_f64(),
        get_wait_decoder_s: rep.waits.for_decoder.as_secs_f64(),
        get_s,
    })
}

/// Ask every server to verify each share of `si` it holds, one at a time:
/// (shares verified, the largest one's size, peak heap above the level
/// before the first).
async fn verify_all(
    pool: &SessionPool,
    servers: &[ServerRef],
    si: &StorageIndex,
) -> Result<(usize, u64, i64)> {
    let mut held = Vec::new();
    for s in servers {
        let mut conn = pool.get(*s).await.context("verify: session")?;
        match pool.call(&mut conn, Request::List { si: *si }).await? {
            Reply::Shares(shares) => held.extend(shares.into_iter().map(|sh| (conn.server(), sh))),
            other => bail!("verify: list answered {other:?}"),
        }
        pool.put_back(conn);
    }
    let mut conns = Vec::new();
    for s in servers {
        conns.push(pool.get(*s).await.context("verify: session")?);
    }
    let base = alloc::live_bytes();
    alloc::reset_peak();
    let mut largest = 0;
    for (server, (shnum, size)) in &held {
        let conn = conns
            .iter_mut()
            .find(|c| c.server() == *server)
            .context("verify: no session")?;
        match pool
            .call(
                conn,
                Request::Verify {
                    si: *si,
                    shnum: *shnum,
                },
            )
            .await?
        {
            Reply::Ok => largest = largest.max(*size),
            other => bail!("verify: share {shnum} answered {other:?}"),
        }
    }
    let peak = alloc::peak_bytes() - base;
    for c in conns {
        pool.put_back(c);
    }
    Ok((held.len(), largest, peak))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(put: f64, get: f64, put_ceiling: f64, get_ceiling: f64) -> RunFigures {
        RunFigures {
            bytes: 1 << 20,
            servers: 10,
            k: 3,
            n: 10,
            put_mb_s: put,
            get_mb_s: get,
            put_cores: put / 100.0,
            get_cores: get / 100.0,
            verify_share_bytes: 0,
            verify_shares: 0,
            verify_peak_heap_bytes: 0,
            put_ceiling_mb_s: Some(put_ceiling),
            get_ceiling_mb_s: Some(get_ceiling),
            put_counters: Delta::default(),
            get_counters: Delta::default(),
            put_encoding_s: 0.0,
            put_wait_encoder_s: 0.0,
            put_wait_writers_s: 0.0,
            put_s: 1.0,
            primed_bytes: 0,
            prime_s: 0.0,
            primed_huge_bytes: None,
            get_decoding_s: 0.0,
            get_wait_blocks_s: 0.0,
            get_wait_decoder_s: 0.0,
            get_s: 1.0,
        }
    }

    /// The report's put and get are the median runs' (each on its own),
    /// each as a fraction of the ceiling measured around its own run.
    #[test]
    fn runs_combine_into_medians_against_their_own_ceilings() {
        let runs = vec![
            run(150.0, 500.0, 200.0, 600.0),
            run(190.0, 400.0, 250.0, 500.0),
            run(100.0, 450.0, 100.0, 900.0),
        ];
        let r = combine_runs(runs, Vec::new());
        assert_eq!(r.median.put_mb_s, 150.0);
        assert_eq!(r.median.put_ceiling_mb_s, Some(200.0));
        assert_eq!(r.put_fraction, Some(0.75));
        assert_eq!(r.median.get_mb_s, 450.0);
        assert_eq!(r.median.get_cores, 4.5);
        assert_eq!(r.median.get_ceiling_mb_s, Some(900.0));
        assert_eq!(r.get_fraction, Some(0.5));
        assert_eq!(r.runs.len(), 3);
        // No ceiling measured: no fraction invented.
        let mut one = run(150.0, 500.0, 0.0, 0.0);
        one.put_ceiling_mb_s = None;
        one.get_ceiling_mb_s = None;
        let r = combine_runs(vec![one], Vec::new());
        assert_eq!((r.put_fraction, r.get_fraction), (None, None));
        assert_eq!(r.put_ceiling_mean_mb_s, None);
    }
}
