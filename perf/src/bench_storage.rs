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
use tokio::io::AsyncWrite;

use grapevine_node::procfs;

use crate::alloc;

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
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct StorageReport {
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

/// One MiB of pseudo-random bytes: the generated file repeats it, with each
/// MiB's first 8 bytes XORed with its index so no two MiB are equal.
fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut z = 0x9e37_79b9_7f4a_7c15u64;
        (0..PATTERN_LEN / 8)
            .flat_map(|_| {
                z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut x = z;
                x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (x ^ (x >> 31)).to_le_bytes()
            })
            .collect()
    })
}
const PATTERN_LEN: usize = 1 << 20;

/// Visit the generated file's bytes at `pos..pos + len` as slices of the
/// pattern, with each MiB's index mixed into its first 8 bytes.
fn generated_at(mut pos: u64, len: usize, mut f: impl FnMut(&[u8])) {
    let p = pattern();
    let end = pos + len as u64;
    while pos < end {
        let mib = pos / PATTERN_LEN as u64;
        let off = (pos % PATTERN_LEN as u64) as usize;
        let n = (PATTERN_LEN - off).min((end - pos) as usize);
        if off < 8 {
            let mut head = [0u8; 8];
            for (i, h) in head.iter_mut().enumerate() {
                *h = p[i] ^ mib.to_le_bytes()[i];
            }
            let h = (8 - off).min(n);
            f(&head[off..off + h]);
            if n > h {
                f(&p[off + h..off + n]);
            }
        } else {
            f(&p[off..off + n]);
        }
        pos += n as u64;
    }
}

/// A generated file: deterministic bytes produced on the fly, never held
/// in memory whole.
pub(crate) struct Generated {
    pos: u64,
    size: u64,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.size - self.pos) as usize;
        generated_at(self.pos, n, |s| buf.put_slice(s));
        self.pos += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

pub(crate) fn generated(size: u64) -> Generated {
    Generated { pos: 0, size }
}

/// Compares what is written with the generated file, to check the download
/// without storing it.
pub(crate) struct CheckSink {
    pub(crate) pos: u64,
    pub(crate) mismatch: bool,
}

impl AsyncWrite for CheckSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let mut at = 0;
        generated_at(this.pos, buf.len(), |s| {
            this.mismatch |= s != &buf[at..at + s.len()];
            at += s.len();
        });
        this.pos += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Run the benchmark.
///
/// # Errors
/// Setup, upload or download failures, or a download that does not match.
pub fn run(args: &StorageArgs) -> Result<()> {
    let size = parse_size(&args.size)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(size, args.servers, args.dir.as_deref()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "grapevine bench storage: {} MiB, {}-of-{} over {} servers on loopback",
            report.bytes >> 20,
            report.k,
            report.n,
            report.servers
        );
        println!(
            "  put  {:8.1} MB/s  ({:.2} cores)",
            report.put_mb_s, report.put_cores
        );
        println!(
            "  get  {:8.1} MB/s  ({:.2} cores)",
            report.get_mb_s, report.get_cores
        );
        println!(
            "  verify {} shares of up to {:.1} MiB: peak heap +{:.1} KiB",
            report.verify_shares,
            report.verify_share_bytes as f64 / f64::from(1u32 << 20),
            report.verify_peak_heap_bytes as f64 / 1024.0
        );
    }
    Ok(())
}

async fn bench(
    size: u64,
    n_servers: usize,
    base: Option<&std::path::Path>,
) -> Result<StorageReport> {
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n_servers {
        let dir = match base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let srv = grapevine_storage::testing::spawn_local(
            [127, 6, 0, 1].into(),
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
    let ident = Arc::new(Identity::generate());
    let record = LocationRecord::new(&ident, vec!["127.6.0.2:1".parse()?]).sign(&ident)?;
    let me = ClientIdentity {
        identity: ident,
        record,
        session: SessionConfig::default(),
    };
    let pool = SessionPool::new(me, PoolConfig::default());
    let params = Params::default();

    let cpu0 = procfs::cpu_seconds();
    let t = Instant::now();
    let req = client::UploadRequest {
        params,
        mode: KeyMode::Random,
        size,
        input: generated(size),
        hash_input: None::<Generated>,
    };
    let up = client::upload(&pool, &servers, req, &|_| {})
        .await
        .context("upload")?;
    let put_s = t.elapsed().as_secs_f64();
    let put_cpu = procfs::cpu_seconds() - cpu0;

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
    if rep.bytes != size || sink.pos != size || sink.mismatch {
        bail!("downloaded file does not match what was uploaded");
    }
    let grapevine_storage::Cap::Chk(rc) = &up.cap else {
        bail!("a {size}-byte file was inlined, not stored: nothing to verify");
    };
    let (verify_shares, verify_share_bytes, verify_peak_heap_bytes) =
        verify_all(&pool, &servers, &rc.storage_index()).await?;
    drop(dirs);
    Ok(StorageReport {
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

    #[test]
    fn generated_bytes_do_not_depend_on_how_they_are_read() {
        let mut whole = Vec::new();
        generated_at(0, 3 * PATTERN_LEN + 100, |s| whole.extend_from_slice(s));
        for (start, len) in [
            (0, 5),
            (3, 10),
            (PATTERN_LEN as u64 - 2, 20),
            (2 * PATTERN_LEN as u64 + 7, 1000),
        ] {
            let mut part = Vec::new();
            generated_at(start, len, |s| part.extend_from_slice(s));
            assert_eq!(part, whole[start as usize..start as usize + len]);
        }
        // No two MiB are the same.
        assert_ne!(whole[..PATTERN_LEN], whole[PATTERN_LEN..2 * PATTERN_LEN]);
    }
}
