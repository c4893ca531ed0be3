//! `grapevine-perf bench gateway`: the web gateway against the library call
//! `grapevine get` makes, in the same run, on a grid of library nodes in
//! this process (3-of-10 over ten nodes by default).
//!
//! 1. A generated file of `--size` is stored through node 0.
//! 2. It is read `--rounds` times each way, alternately: through
//!    `Client::get` (what `grapevine get` runs) and through an HTTP `GET
//!    /uri/$CAP` on node 0's gateway, read by a raw TCP client. Both check
//!    every byte against the generated file without storing it. Reported:
//!    MB/s of each (best of the rounds), their ratio, and the most live heap
//!    (counting allocator) and RSS seen during each, sampled every 10 ms,
//!    above what was live before: flat memory shows as the same few MiB
//!    whatever `--size`.
//! 3. `Range` of 1 MiB from the middle: the storage requests the grid
//!    answered for it, beside what a whole read costs.
//! 4. `--small` GETs at once of a 64 KiB file: how many were answered
//!    correctly, and the wall time.
//!
//! Figures only; nothing here asserts a speed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::gateway::{Gateway, GatewaySettings};
use grapevine_node::{procfs, Config, Node, NodeDir, Options, PutOptions};
use grapevine_storage::{Cap, Params};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::alloc;
use crate::bench_storage::parse_size;
use crate::generated::{generated, CheckSink, Generated};

/// Arguments of `bench gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// File size: bytes, or with a KiB/MiB/GiB suffix.
    #[arg(long, default_value = "1GiB")]
    pub size: String,
    /// Nodes in the grid.
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Reads each way.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Small GETs at once.
    #[arg(long, default_value_t = 200)]
    pub small: usize,
    /// Directory for the nodes' stores (default: the system temporary
    /// directory); a tmpfs such as /dev/shm leaves the disk out.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct GatewayReport {
    /// File size.
    pub bytes: u64,
    /// Nodes.
    pub nodes: usize,
    /// Encoding.
    pub k: u16,
    /// Encoding.
    pub n: u16,
    /// `Client::get` (as `grapevine get`), best round, MB/s.
    pub get_mb_s: f64,
    /// HTTP GET through the gateway, best round, MB/s.
    pub gateway_mb_s: f64,
    /// gateway / get.
    pub ratio: f64,
    /// Most live heap above the baseline during a `Client::get`, bytes.
    pub get_peak_heap: i64,
    /// Most live heap above the baseline during a gateway GET, bytes.
    pub gateway_peak_heap: i64,
    /// Most RSS above the baseline during a gateway GET, bytes.
    pub gateway_peak_rss: i64,
    /// Storage requests the grid answered for a 1 MiB range from the middle.
    pub range_requests: u64,
    /// Storage requests for one whole read.
    pub whole_requests: u64,
    /// Segments in the file (a whole read asks k blocks of each).
    pub segments: u64,
    /// Small GETs sent at once.
    pub small: usize,
    /// Small GETs answered with the right bytes.
    pub small_ok: usize,
    /// Wall time for all of them, seconds.
    pub small_s: f64,
}

/// Run the benchmark.
///
/// # Errors
/// Setup failures, or a read that does not match the file.
pub fn run(args: &GatewayArgs) -> Result<()> {
    let size = parse_size(&args.size)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(bench(size, args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    println!(
        "grapevine bench gateway: {} MiB, {}-of-{} over {} library nodes in one process",
        r.bytes >> 20,
        r.k,
        r.n,
        r.nodes
    );
    println!(
        "  get (Client::get)   {:8.1} MB/s   peak heap {:6.1} MiB",
        r.get_mb_s,
        mib(r.get_peak_heap)
    );
    println!(
        "  gateway GET         {:8.1} MB/s   peak heap {:6.1} MiB, RSS {:6.1} MiB   ({:.0}% of get)",
        r.gateway_mb_s,
        mib(r.gateway_peak_heap),
        mib(r.gateway_peak_rss),
        100.0 * r.ratio
    );
    println!(
        "  Range 1 MiB mid-file: {} storage requests (a whole read: {}, {} segments)",
        r.range_requests, r.whole_requests, r.segments
    );
    println!(
        "  {} small GETs at once: {} answered correctly in {:.2} s",
        r.small, r.small_ok, r.small_s
    );
    Ok(())
}

/// Samples live heap and RSS every 10 ms while alive; the peaks above the
/// values at its start.
struct Peaks {
    heap: Arc<AtomicI64>,
    rss: Arc<AtomicI64>,
    stop: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Peaks {
    fn start() -> Peaks {
        let heap = Arc::new(AtomicI64::new(0));
        let rss = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicU64::new(0));
        let (h, r, s) = (heap.clone(), rss.clone(), stop.clone());
        let (h0, r0) = (alloc::live_bytes(), procfs::rss_bytes() as i64);
        let task = tokio::spawn(async move {
            while s.load(Relaxed) == 0 {
                h.fetch_max(alloc::live_bytes() - h0, Relaxed);
                r.fetch_max(procfs::rss_bytes() as i64 - r0, Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Peaks {
            heap,
            rss,
            stop,
            task,
        }
    }

    async fn end(self) -> (i64, i64) {
        self.stop.store(1, Relaxed);
        let _ = self.task.await;
        (self.heap.load(Relaxed), self.rss.load(Relaxed))
    }
}

/// GET `path` from `addr` over raw HTTP/1.1 into `out`; the body's length.
async fn http_get<W: AsyncWrite + Unpin>(
    addr: SocketAddr,
    path: &str,
    extra: &str,
    out: &mut W,
) -> Result<u64> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let body_start = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("the gateway closed before its answer's head");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            bail!("no end to the answer's head");
        }
    };
    let status = String::from_utf8_lossy(&head[..head.len().min(12)]).into_owned();
    if !(status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.1 206")) {
        bail!("gateway answered {}", String::from_utf8_lossy(&head));
    }
    let mut total = (head.len() - body_start) as u64;
    out.write_all(&head[body_start..]).await?;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        out.write_all(&buf[..n]).await?;
    }
    Ok(total)
}

async fn start_grid(
    n: usize,
    base: Option<&std::path::Path>,
) -> Result<(tempfile::TempDir, Vec<Node>, Vec<NodeDir>)> {
    let root = match base {
        Some(b) => tempfile::tempdir_in(b)?,
        None => tempfile::tempdir()?,
    };
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut seed = None;
    for i in 0..n {
        let d = NodeDir::new(root.path().join(format!("n{i}")));
        let listen = "127.0.0.1:0".parse()?;
        dir::init(
            &d,
            &InitOptions {
                listen,
                advertise: Vec::new(),
                seeds: vec![],
                nickname: Some(format!("bench-{i}")),
                capacity_mib: 1 << 20,
                gateway: None,
            },
        )?;
        let mut cfg = Config::new(listen);
        cfg.reserve_mib = 0;
        cfg.seeds = seed.into_iter().map(Into::into).collect();
        let node = Node::start(cfg, &d, Options::in_process()).await?;
        seed.get_or_insert(node.local_addr());
        nodes.push(node);
        dirs.push(d);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for node in &nodes {
        while node.client().servers().await?.len() < n {
            if Instant::now() > deadline {
                bail!("the grid did not form within two minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((root, nodes, dirs))
}

async fn bench(size: u64, a: &GatewayArgs) -> Result<GatewayReport> {
    let (_root, nodes, dirs) = start_grid(a.nodes, a.dir.as_deref()).await?;
    let params = Params {
        k: 3.min(a.nodes as u16),
        n: 10.min(a.nodes as u16),
        happy: 7.min(a.nodes as u16),
    };
    let mut settings = GatewaySettings::new("127.0.0.1:0".parse()?);
    settings.params = params;
    let gw = Gateway::bind(nodes[0].state().clone(), settings, &dirs[0]).await?;
    let addr = gw.local_addr();
    let _serve = tokio::spawn(gw.serve());
    let client = nodes[0].client();
    let opts = PutOptions {
        params,
        random_key: true,
    };
    let up = client
        .put(generated(size), None::<Generated>, size, opts, &|_| {})
        .await
        .context("storing the file")?;
    let path = format!("/uri/{}", up.cap);

    let (mut get_best, mut gw_best) = (0f64, 0f64);
    let (mut get_heap, mut gw_heap, mut gw_rss) = (0i64, 0i64, 0i64);
    for _ in 0..a.rounds.max(1) {
        let peaks = Peaks::start();
        let t = Instant::now();
        let mut sink = CheckSink {
            pos: 0,
            mismatch: false,
        };
        client
            .get(&up.cap, &mut sink, &|_| {})
            .await
            .context("Client::get")?;
        let s = t.elapsed().as_secs_f64();
        let (h, _) = peaks.end().await;
        if sink.pos != size || sink.mismatch {
            bail!("Client::get read back other bytes");
        }
        get_best = get_best.max(size as f64 / 1e6 / s);
        get_heap = get_heap.max(h);

        let peaks = Peaks::start();
        let t = Instant::now();
        let mut sink = CheckSink {
            pos: 0,
            mismatch: false,
        };
        let got = http_get(addr, &path, "", &mut sink)
            .await
            .context("gateway GET")?;
        let s = t.elapsed().as_secs_f64();
        let (h, r) = peaks.end().await;
        if got != size || sink.mismatch {
            bail!("the gateway sent other bytes ({got} of {size})");
        }
        gw_best = gw_best.max(size as f64 / 1e6 / s);
        gw_heap = gw_heap.max(h);
        gw_rss = gw_rss.max(r);
    }

    let requests = || {
        nodes
            .iter()
            .map(|n| n.state().storage_stats().requests())
            .sum::<u64>()
    };
    let before = requests();
    let mut sink = tokio::io::sink();
    client.get(&up.cap, &mut sink, &|_| {}).await?;
    let whole_requests = requests() - before;
    let mid = (size / 2).saturating_sub(1 << 19);
    let before = requests();
    let range = format!("range: bytes={mid}-{}\r\n", (mid + (1 << 20)).min(size) - 1);
    http_get(addr, &path, &range, &mut sink)
        .await
        .context("ranged GET")?;
    let range_requests = requests() - before;
    let segments = match &up.cap {
        Cap::Chk(c) => c.size.div_ceil(1 << 20).max(1),
        Cap::Lit(_) => 0,
    };

    let small_size = 64 * 1024;
    let small = client
        .put(
            generated(small_size),
            None::<Generated>,
            small_size,
            opts,
            &|_| {},
        )
        .await?;
    let small_path = Arc::new(format!("/uri/{}", small.cap));
    let t = Instant::now();
    let gets: Vec<_> = (0..a.small)
        .map(|_| {
            let p = small_path.clone();
            tokio::spawn(async move {
                let mut sink = CheckSink {
                    pos: 0,
                    mismatch: false,
                };
                let r = http_get(addr, &p, "", &mut sink).await;
                matches!(r, Ok(n) if n == small_size) && !sink.mismatch
            })
        })
        .collect();
    let mut small_ok = 0;
    for g in gets {
        if g.await.unwrap_or(false) {
            small_ok += 1;
        }
    }
    let small_s = t.elapsed().as_secs_f64();

    Ok(GatewayReport {
        bytes: size,
        nodes: a.nodes,
        k: params.k,
        n: params.n,
        get_mb_s: get_best,
        gateway_mb_s: gw_best,
        ratio: gw_best / get_best.max(f64::MIN_POSITIVE),
        get_peak_heap: get_heap,
        gateway_peak_heap: gw_heap,
        gateway_peak_rss: gw_rss,
        range_requests,
        whole_requests,
        segments,
        small: a.small,
        small_ok,
        small_s,
    })
}
