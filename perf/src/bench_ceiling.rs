//! `grapevine-perf bench ceiling`: measure, on this machine and now, the
//! single-core throughput of every stage a put and a get pass through, and
//! combine them ([`crate::ceiling`]) into the pipeline's ceiling on this
//! many cores. `bench storage` runs the same measurement before its put
//! and after its get and reports put and get as a fraction of it.
//!
//! A put or a get keeps every core busy, so a core's rate is measured
//! while the others work too: one thread per core (`--threads`, default
//! the cores) times every stage at once, in lockstep
//! ([`crate::lockstep`]), and a stage's rate is the mean of the threads'.
//! What one core loses to another (shared caches and memory bandwidth, the
//! kernel's locks on one filesystem or on loopback, a hypervisor's
//! scheduling of its virtual cores) is then in the ceiling, as it is in
//! the put; `--threads 1` measures each stage alone.
//!
//! Each stage runs on the calling thread over buffers the size of a
//! storage block (a 1 MiB segment's k-th part), as the pipeline does,
//! with the same crates and, where they are public, the same functions:
//! the Noise transport's `seal_parts` and `open_in_place`, the share
//! store's `allocate`/`write_at`/`close`/`read`, ChaCha20, BLAKE3 and
//! reed-solomon-simd as the CHK codec uses them, a TCP socket on loopback.
//! A stage is timed three times for at least [`MIN_SECS`] each and the
//! median kept. What the ceiling leaves out is what the code adds: copies
//! between buffers, allocation, thread hand-offs, waiting.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use grapevine_crypto::noise::{InitiatorHandshake, ResponderHandshake, TAG_LEN};
use grapevine_crypto::record::{local_features, FEATURE_AES_GCM};
use grapevine_crypto::{Identity, LocationRecord, SessionConfig, Transport, TransportCipher};
use grapevine_storage::chk::{Ueb, SEGMENT_SIZE, UEB_VERSION};
use grapevine_storage::protocol::{write_header, MAX_MESSAGE};
use grapevine_storage::{Params, ShareStore, StorageIndex};
use serde::Serialize;

use crate::ceiling::{self, stage, Ceiling, Measured};
use crate::lockstep::{self, Lockstep};

/// Shortest time a stage is timed for, per repeat.
pub const MIN_SECS: f64 = 0.15;
/// Repeats per stage (the median is kept).
const REPEATS: usize = 3;
/// Bytes a store stage writes (then reads back, then fsyncs).
const STORE_BYTES: u64 = 64 << 20;

/// Arguments of `bench ceiling`.
#[derive(Debug, clap::Args)]
pub struct CeilingArgs {
    /// Directory for the store stages (as `bench storage --dir`; default:
    /// the system temporary directory).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Cores the pipeline may use (default: this machine's).
    #[arg(long)]
    pub cores: Option<f64>,
    /// Threads timing each stage at once (default: the cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Bytes of shares a put of `file_size` bytes stores: n/k of it.
pub fn share_volume(file_size: u64, params: Params) -> u64 {
    let k = u64::from(params.k.max(1));
    file_size.saturating_mul(u64::from(params.n)).div_ceil(k)
}

/// Measured stages and the ceilings of put and get.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    /// Cores the ceiling assumes.
    pub cores: f64,
    /// Threads that timed each stage at once.
    pub threads: usize,
    /// The AEAD the session stages sealed and opened with: what two nodes
    /// of this process agree on (AES-256-GCM where the CPU runs it in
    /// hardware, unless `GRAPEVINE_SESSION_CIPHER=chacha`).
    pub session_cipher: String,
    /// Shares needed and total (the weights follow them).
    pub k: u16,
    /// Shares total.
    pub n: u16,
    /// Each stage's single-core rate (the mean of the threads').
    pub stages: Vec<Measured>,
    /// By stage, the slowest thread's rate over the fastest's (1.0 for
    /// one thread).
    pub thread_spread: BTreeMap<&'static str, f64>,
    /// Put's ceiling.
    pub put: Ceiling,
    /// Get's ceiling (from primary shares).
    pub get: Ceiling,
    /// Seconds the measurement took.
    pub secs: f64,
}

/// Cores of this machine (1 if unknown).
pub fn machine_cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Run `bench ceiling`.
///
/// # Errors
/// A stage that fails (a store that cannot be written, a socket that
/// cannot be opened).
pub fn run(args: &CeilingArgs) -> Result<()> {
    let cores = args.cores.unwrap_or_else(machine_cores);
    let threads = args.threads.unwrap_or_else(|| threads_for(cores));
    let r = measure(args.dir.as_deref(), Params::default(), cores, threads)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "grapevine bench ceiling: {}-of-{}, {} cores, measured in {:.1} s",
        r.k, r.n, r.cores, r.secs
    );
    println!(
        "  single-core stage rates (MB/s), {} thread{} at once, sessions sealed with {}:",
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.session_cipher
    );
    for m in &r.stages {
        let spread = r.thread_spread.get(m.stage).copied().unwrap_or(1.0);
        println!(
            "    {:<24} {:>9.0}   (slowest thread {:.0}% of the fastest)",
            m.stage,
            m.bytes_per_s / 1e6,
            spread * 100.0
        );
    }
    print_ceiling("put", &r.put);
    print_ceiling("get", &r.get);
    Ok(())
}

fn print_ceiling(what: &str, c: &Ceiling) {
    println!(
        "  {what} ceiling {:8.1} MB/s  (bound: {}; {:.2} ms of CPU per MB)",
        c.bytes_per_s / 1e6,
        c.binding,
        c.cpu_s_per_byte * 1e9
    );
    for b in c.bounds.iter().skip(1) {
        println!(
            "        then {:<18} {:8.1} MB/s",
            b.what,
            b.bytes_per_s / 1e6
        );
    }
}

/// The transport cipher two nodes of this process agree on: the one the
/// session stages here and `bench storage`'s sessions use.
pub fn local_session_cipher() -> TransportCipher {
    if local_features() & FEATURE_AES_GCM != 0 {
        TransportCipher::AesGcm
    } else {
        TransportCipher::ChaChaPoly
    }
}

/// Threads for `cores` cores: one each, at least one.
pub fn threads_for(cores: f64) -> usize {
    (cores.round() as usize).max(1)
}

/// Measure every stage on `threads` threads at once and combine them for
/// `params` on `cores` cores.
///
/// # Errors
/// As [`run`].
pub fn measure(
    dir: Option<&Path>,
    params: Params,
    cores: f64,
    threads: usize,
) -> Result<CeilingReport> {
    let t = Instant::now();
    let block = block_len(params);
    let threads = threads.max(1);
    let group = Lockstep::new(threads);
    let per_thread: Vec<Result<Vec<Measured>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let group = group.clone();
                s.spawn(move || {
                    let _member = group.join();
                    measure_stages(dir, params, block)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a stage panicked")))
            })
            .collect()
    });
    let per_thread: Vec<Vec<Measured>> = per_thread.into_iter().collect::<Result<_>>()?;
    let (stages, thread_spread) = mean_over_threads(&per_thread);
    let put = ceiling::combine(&stages, &ceiling::put_steps(params.k, params.n), cores)?;
    let get = ceiling::combine(&stages, &ceiling::get_steps(), cores)?;
    Ok(CeilingReport {
        cores,
        threads,
        session_cipher: local_session_cipher().to_string(),
        k: params.k,
        n: params.n,
        stages,
        thread_spread,
        put,
        get,
        secs: t.elapsed().as_secs_f64(),
    })
}

/// Each stage's mean rate over the threads, and its slowest thread's
/// rate over its fastest's.
fn mean_over_threads(per_thread: &[Vec<Measured>]) -> (Vec<Measured>, BTreeMap<&'static str, f64>) {
    let Some(first) = per_thread.first() else {
        return (Vec::new(), BTreeMap::new());
    };
    let (mut mean, mut spread) = (Vec::new(), BTreeMap::new());
    for (i, m) in first.iter().enumerate() {
        let rates: Vec<f64> = per_thread
            .iter()
            .filter_map(|t| t.get(i).map(|x| x.bytes_per_s))
            .collect();
        let (lo, hi) = rates.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
        mean.push(Measured {
            stage: m.stage,
            bytes_per_s: rates.iter().sum::<f64>() / rates.len() as f64,
        });
        spread.insert(
            m.stage,
            if hi > 0.0 && hi.is_finite() {
                lo / hi
            } else {
                1.0
            },
        );
    }
    (mean, spread)
}

/// A full segment's block length, as the codec computes it.
fn block_len(params: Params) -> usize {
    Ueb {
        version: UEB_VERSION,
        k: params.k,
        n: params.n,
        size: SEGMENT_SIZE,
        segment_size: SEGMENT_SIZE,
        share_roots: vec![[0; 32]; params.n as usize],
        ciphertext_hash: [0; 32],
    }
    .block_len(0) as usize
}

/// Time `f` (which handles `bytes` bytes per call) for at least
/// [`MIN_SECS`], [`REPEATS`] times; the median rate in bytes per second.
fn rate(bytes: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut rates = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        lockstep::step();
        let t = Instant::now();
        let mut done = 0u64;
        while t.elapsed().as_secs_f64() < MIN_SECS {
            f()?;
            done += bytes as u64;
        }
        rates.push(done as f64 / t.elapsed().as_secs_f64());
    }
    Ok(median(&mut rates))
}

/// The median of `v` (sorted in place); 0 for none.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure_stages(dir: Option<&Path>, params: Params, block: usize) -> Result<Vec<Measured>> {
    let k = params.k as usize;
    let recovery = (params.n - params.k) as usize;
    let mut out = Vec::new();
    let mut put = |stage, bytes_per_s| out.push(Measured { stage, bytes_per_s });
    let mut buf = pseudo_random(block * k);

    // The benchmark's own input and comparison (a copy and a compare).
    let mut dst = vec![0u8; buf.len()];
    put(
        stage::INPUT,
        rate(buf.len(), || {
            crate::generated::fill_generated(0, &mut dst);
            Ok(())
        })?,
    );
    put(
        stage::COMPARE,
        rate(buf.len(), || {
            std::hint::black_box(crate::generated::matches_generated(0, &dst));
            Ok(())
        })?,
    );

    // File encryption: ChaCha20 as the codec keys it.
    let mut c = chacha20::ChaCha20::new(&[7u8; 32].into(), &[0u8; 12].into());
    put(
        stage::FILE_CIPHER,
        rate(buf.len(), || {
            c.apply_keystream(&mut buf);
            Ok(())
        })?,
    );
    put(
        stage::BLAKE3,
        rate(block, || {
            std::hint::black_box(blake3::hash(&buf[..block]));
            Ok(())
        })?,
    );

    // Erasure coding: k originals to n - k recovery blocks, reusing the
    // encoder as the codec does; decoding from recovery blocks only (the
    // worst case; a get from primaries decodes nothing).
    let shards: Vec<&[u8]> = buf.chunks(block).collect();
    let mut enc = reed_solomon_simd::ReedSolomonEncoder::new(k, recovery, block)?;
    let mut rec: Vec<Vec<u8>> = Vec::new();
    put(
        stage::ERASURE_ENCODE,
        rate(k * block, || {
            enc.reset(k, recovery, block)?;
            for s in &shards {
                enc.add_original_shard(s)?;
            }
            let r = enc.encode()?;
            if rec.is_empty() {
                rec = r.recovery_iter().map(<[u8]>::to_vec).collect();
            }
            Ok(())
        })?,
    );
    let from = rec.len().min(k);
    put(
        stage::ERASURE_DECODE,
        rate(k * block, || {
            let restored = reed_solomon_simd::decode(
                k,
                recovery,
                std::iter::empty::<(usize, &[u8])>(),
                rec.iter().take(from).enumerate(),
            )?;
            std::hint::black_box(restored);
            Ok(())
        })?,
    );

    let (seal, open) = seal_open(&buf[..block])?;
    put(stage::SEAL, seal);
    put(stage::OPEN, open);
    put(stage::LOOPBACK, loopback()?);
    let (write, sync, read) = store(dir, &buf[..block])?;
    put(stage::STORE_WRITE, write);
    put(stage::STORE_SYNC, sync);
    put(stage::STORE_READ, read);
    Ok(out)
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    crate::generated::fill_generated(12345, &mut v);
    v
}

/// Seal and open a storage write of one block (header and block as the
/// client sends them) through a Noise transport: (seal, open) bytes/s.
fn seal_open(block: &[u8]) -> Result<(f64, f64)> {
    let cfg = SessionConfig {
        max_message: MAX_MESSAGE,
        ..SessionConfig::default()
    };
    let pair = || -> Result<(Transport, Transport)> {
        let a = Identity::generate();
        let b = Identity::generate();
        let ra = LocationRecord::new(&a, vec!["127.0.0.1:1".parse()?]).sign(&a)?;
        let rb = LocationRecord::new(&b, vec!["127.0.0.1:2".parse()?]).sign(&b)?;
        let (hs, m1) = InitiatorHandshake::start(&a, &ra, b.node_id(), &cfg)?;
        let (tb, _, m2) = ResponderHandshake::respond(&b, &rb, &m1[2..], &cfg)?;
        let (ta, _) = hs.finish(&m2[2..])?;
        Ok((ta, tb))
    };
    let head = write_header(1, StorageIndex([1; 16]), 0, 0, block.len());
    let (mut a, _) = pair()?;
    anyhow::ensure!(
        a.cipher() == local_session_cipher(),
        "the session stages sealed with {}, not {}",
        a.cipher(),
        local_session_cipher()
    );
    let mut wire = Vec::with_capacity(block.len() + 4096);
    let seal = rate(block.len(), || {
        wire.clear();
        a.seal_parts(&[&head[..], block], cfg.max_message, &mut wire)?;
        Ok(())
    })?;
    // Opening needs a sender's successive frames: each repeat seals
    // (untimed) enough messages to open for at least MIN_SECS, then opens
    // every frame where it lies, as the session does.
    let messages = ((seal * MIN_SECS * 1.5) as usize / block.len()).clamp(16, 2048);
    let mut rates = Vec::new();
    for _ in 0..REPEATS {
        let (mut a, mut b) = pair()?;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for _ in 0..messages {
            wire.clear();
            a.seal_parts(&[&head[..], block], cfg.max_message, &mut wire)?;
            let mut at = 0;
            while at < wire.len() {
                let len = u16::from_be_bytes([wire[at], wire[at + 1]]) as usize;
                frames.push(wire[at + 2..at + 2 + len].to_vec());
                at += 2 + len;
            }
        }
        let bytes: usize = frames.iter().map(|f| f.len() - TAG_LEN - 1).sum();
        lockstep::step();
        let t = Instant::now();
        for f in &mut frames {
            b.open_in_place(f)?;
        }
        rates.push(bytes as f64 / t.elapsed().as_secs_f64());
    }
    Ok((seal, median(&mut rates)))
}

/// Bytes through a TCP connection on loopback, written and read by one
/// thread in 64 KiB pieces (the kernel's copy in and copy out).
fn loopback() -> Result<f64> {
    const PIECE: usize = 64 << 10;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut tx = std::net::TcpStream::connect(l.local_addr()?)?;
    let (mut rx, _) = l.accept()?;
    tx.set_nodelay(true)?;
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    let data = vec![5u8; PIECE];
    let mut back = vec![0u8; PIECE];
    rate(PIECE, || {
        tx.write_all(&data)?;
        rx.read_exact(&mut back)?;
        Ok(())
    })
}

/// A share store under `dir`: (write, fsync, read) bytes/s. Writes are
/// blocks through `write_at` (page cache and checksum), the fsync is the
/// close of a [`STORE_BYTES`] share (for the device, timed once per
/// repeat), reads are blocks of it.
fn store(dir: Option<&Path>, block: &[u8]) -> Result<(f64, f64, f64)> {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("store stage: temporary directory")?;
    let store = ShareStore::open(tmp.path(), 0)?;
    let per = (STORE_BYTES / block.len() as u64).max(1);
    let size = per * block.len() as u64;
    let (mut writes, mut syncs) = (Vec::new(), Vec::new());
    for i in 0..REPEATS {
        let si = StorageIndex([i as u8 + 1; 16]);
        let mut w = store.allocate(&si, 0, size)?;
        lockstep::step();
        let t = Instant::now();
        for j in 0..per {
            w.write_at(j * block.len() as u64, block)?;
        }
        writes.push(size as f64 / t.elapsed().as_secs_f64());
        lockstep::step();
        let t = Instant::now();
        w.close()?;
        // An fsync too quick to time (tmpfs) bounds nothing.
        let secs = t.elapsed().as_secs_f64();
        syncs.push(if secs > 0.0 {
            size as f64 / secs
        } else {
            f64::INFINITY
        });
    }
    let si = StorageIndex([1; 16]);
    let mut j = 0u64;
    let read = rate(block.len(), || {
        let d = store.read(&si, 0, (j % per) * block.len() as u64, block.len() as u64)?;
        std::hint::black_box(d);
        j += 1;
        Ok(())
    })?;
    Ok((median(&mut writes), median(&mut syncs), read))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(stage: &'static str, bytes_per_s: f64) -> Measured {
        Measured { stage, bytes_per_s }
    }

    #[test]
    fn stages_are_averaged_over_the_threads() {
        let per_thread = vec![
            vec![m("seal", 100.0), m("open", 300.0)],
            vec![m("seal", 50.0), m("open", 300.0)],
        ];
        let (mean, spread) = mean_over_threads(&per_thread);
        assert_eq!(mean[0].stage, "seal");
        assert_eq!(mean[0].bytes_per_s, 75.0);
        assert_eq!(mean[1].bytes_per_s, 300.0);
        assert_eq!(spread["seal"], 0.5);
        assert_eq!(spread["open"], 1.0);
        assert!(mean_over_threads(&[]).0.is_empty());
    }
}
