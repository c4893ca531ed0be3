//! `grapevine-perf bench sessions`: what an idle authenticated session costs, and
//! how fast a session moves data, for grapevine's Noise sessions and for
//! TLS 1.3 (tokio-rustls) in the same harness.
//!
//! The parent process dials N sessions to a child process (`grapevine-perf bench
//! session-peer`) on 127.0.0.1 and keeps them idle. Each side counts its
//! live heap bytes (counting global allocator) and RSS before and after; the
//! kernel's TCP buffer memory comes from /proc/net/sockstat. One extra
//! session then streams 64 KiB messages for a few seconds to measure
//! throughput and CPU time on both ends. Both processes run a
//! single-threaded tokio runtime, so CPU seconds are core-seconds.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use grapevine_crypto::noise::{FrameDecoder, InitiatorHandshake, ResponderHandshake};
use grapevine_crypto::{Identity, LocationRecord, Session, SessionConfig, SignedRecord};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

use crate::alloc::live_bytes;
use crate::session_peer::{provider, PeerReport, Proto, MSG, PEER_SEED};
use grapevine_node::procfs;

/// Arguments of `bench sessions`.
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// Idle sessions to open.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Seconds of streaming for the throughput figure.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the TLS comparison row.
    #[arg(long)]
    pub no_tls: bool,
}

/// One row of results.
#[derive(Debug, Serialize)]
pub struct Row {
    /// "noise" or "tls13".
    pub proto: &'static str,
    /// Idle sessions held open.
    pub sessions: usize,
    /// Dialling side: heap bytes per idle session (allocator-counted).
    pub client_heap_bytes_per_session: f64,
    /// Dialling side: RSS growth per idle session.
    pub client_rss_bytes_per_session: f64,
    /// Accepting side (one task per session): heap bytes per idle session.
    pub server_heap_bytes_per_session: f64,
    /// Accepting side: RSS growth per idle session.
    pub server_rss_bytes_per_session: f64,
    /// Kernel TCP buffer memory (/proc/net/sockstat `mem`) per session, both ends.
    pub kernel_sockstat_bytes_per_session: f64,
    /// Completed handshakes per second (64 in flight).
    pub handshakes_per_sec: f64,
    /// Socket throughput with 64 KiB messages, MB/s (10^6 bytes).
    pub throughput_mb_s: f64,
    /// Sender's MB per CPU-second over the socket run.
    pub sender_mb_per_cpu_s: f64,
    /// Receiver's MB per CPU-second over the socket run.
    pub receiver_mb_per_cpu_s: f64,
    /// In-memory seal of 64 KiB messages on one core, MB/s (Noise only).
    pub seal_mb_s: Option<f64>,
    /// In-memory open of 64 KiB messages on one core, MB/s (Noise only).
    pub open_mb_s: Option<f64>,
}

/// Run the benchmark and print the figures.
///
/// # Errors
/// Fails if the child cannot be started or a session fails.
pub fn run(args: &SessionsArgs) -> Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if (limit as usize) < args.count + 100 {
        bail!(
            "open-file limit is {limit}, too low for {} sessions (raise it with ulimit -n)",
            args.count
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = vec![rt.block_on(measure(Proto::Noise, args))?];
    if !args.no_tls {
        rows.push(rt.block_on(measure(Proto::Tls, args))?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let f = |v: f64| format!("{v:.0}");
    println!(
        "{:<6} {:>8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "proto",
        "sessions",
        "cli heap/s",
        "cli rss/s",
        "srv heap/s",
        "srv rss/s",
        "kernel/s",
        "hs/s",
        "MB/s",
        "snd MB/cpu",
        "rcv MB/cpu"
    );
    for r in rows {
        println!(
            "{:<6} {:>8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            r.proto,
            r.sessions,
            f(r.client_heap_bytes_per_session),
            f(r.client_rss_bytes_per_session),
            f(r.server_heap_bytes_per_session),
            f(r.server_rss_bytes_per_session),
            f(r.kernel_sockstat_bytes_per_session),
            f(r.handshakes_per_sec),
            f(r.throughput_mb_s),
            f(r.sender_mb_per_cpu_s),
            f(r.receiver_mb_per_cpu_s),
        );
        if let (Some(s), Some(o)) = (r.seal_mb_s, r.open_mb_s) {
            println!(
                "       in-memory, one core, 64 KiB messages: seal {s:.0} MB/s, open {o:.0} MB/s"
            );
        }
    }
    println!("(bytes per idle session; MB = 10^6 bytes)");
}

struct Peer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
    tls_cert: Option<Vec<u8>>,
}

impl Peer {
    fn spawn(proto: Proto) -> Result<Peer> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["bench", "session-peer", "--proto"])
            .arg(match proto {
                Proto::Noise => "noise",
                Proto::Tls => "tls",
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting session peer")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        if words.next() != Some("READY") {
            bail!("session peer did not start: {line:?}");
        }
        let port: u16 = words.next().context("port")?.parse()?;
        let tls_cert = words
            .next()
            .map(|h| data_encoding::HEXLOWER.decode(h.as_bytes()))
            .transpose()?;
        Ok(Peer {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls_cert,
        })
    }

    /// Have the peer take its memory baseline and restart its count.
    fn baseline(&mut self) -> Result<()> {
        writeln!(self.stdin, "BASELINE")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim() != "OK" {
            bail!("peer answered {line:?} to BASELINE");
        }
        Ok(())
    }

    /// Poll the peer until it has counted `n` sessions (or 10 s pass).
    async fn report_when(&mut self, n: u64) -> Result<PeerReport> {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = self.report()?;
            if r.established >= n || Instant::now() > deadline {
                return Ok(r);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn report(&mut self) -> Result<PeerReport> {
        writeln!(self.stdin, "REPORT")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("peer report {line:?}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The Noise session is held inline and the TLS stream boxed: both live in the
// same heap-allocated Vec whose slots are counted, so each row pays for what
// its session really holds.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Noise(Session<TcpStream>),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn measure(proto: Proto, args: &SessionsArgs) -> Result<Row> {
    let mut peer = Peer::spawn(proto)?;
    let me = Arc::new(Identity::generate());
    let my_record = LocationRecord::new(&me, vec!["127.0.0.1:1".parse()?]).sign(&me)?;
    let peer_id = Identity::from_seed(PEER_SEED).node_id();
    let tls = match &peer.tls_cert {
        Some(der) => Some(tls_connector(der)?),
        None => None,
    };
    let cfg = SessionConfig::default();
    let addr = peer.addr;
    let connect = {
        let me = me.clone();
        let my_record = my_record.clone();
        let tls = tls.clone();
        let cfg = cfg.clone();
        move || {
            let me = me.clone();
            let my_record = my_record.clone();
            let tls = tls.clone();
            let cfg = cfg.clone();
            async move {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok::<Conn, anyhow::Error>(match tls {
                    None => {
                        Conn::Noise(Session::connect(s, &me, &my_record, peer_id, &cfg).await?.0)
                    }
                    Some(c) => {
                        let name = rustls::pki_types::ServerName::try_from("localhost")?;
                        Conn::Tls(Box::new(c.connect(name, s).await?))
                    }
                })
            }
        }
    };

    // Warm up allocator arenas and the runtime with a few sessions.
    let mut warm = Vec::new();
    for _ in 0..8 {
        warm.push(connect().await?);
    }
    drop(warm);
    // The peer's baseline: once it has counted the warm-up sessions.
    peer.report_when(8).await?;
    peer.baseline()?;

    let heap0 = live_bytes();
    let rss0 = procfs::rss_bytes();
    let kernel0 = procfs::tcp_socket_mem_bytes();
    let sem = Arc::new(Semaphore::new(64));
    let start = Instant::now();
    // Join as we go: a finished task's cell (sized for the whole handshake
    // future) would otherwise stay allocated until the end and count as
    // if it were part of the idle session.
    let mut set = tokio::task::JoinSet::new();
    let mut conns = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        let permit = sem.clone().acquire_owned().await?;
        let c = connect.clone();
        set.spawn(async move {
            let r = c().await;
            drop(permit);
            r
        });
        while let Some(r) = set.try_join_next() {
            conns.push(r??);
        }
    }
    while let Some(r) = set.join_next().await {
        conns.push(r??);
    }
    let hs_secs = start.elapsed().as_secs_f64();
    drop(set);
    let heap1 = live_bytes();
    let rss1 = procfs::rss_bytes();
    // The peer counts a session once its accept returns, just after it sent
    // the reply this side has already read: wait (with a deadline) until it
    // has counted them all, so its memory figure covers every session.
    let report = peer.report_when(args.count as u64).await?;
    let kernel1 = procfs::tcp_socket_mem_bytes();
    let n = args.count as f64;
    if report.established < args.count as u64 {
        bail!(
            "peer established {} of {} sessions",
            report.established,
            args.count
        );
    }

    let (throughput, snd, rcv) = stream(connect().await?, args.seconds).await?;
    let (seal, open) = match proto {
        Proto::Noise => {
            let (s, o) = in_memory_seal_open(&me, &my_record)?;
            (Some(s), Some(o))
        }
        Proto::Tls => (None, None),
    };
    drop(conns);
    Ok(Row {
        proto: match proto {
            Proto::Noise => "noise",
            Proto::Tls => "tls13",
        },
        sessions: args.count,
        client_heap_bytes_per_session: (heap1 - heap0) as f64 / n,
        client_rss_bytes_per_session: (rss1 as f64 - rss0 as f64) / n,
        server_heap_bytes_per_session: report.heap_delta as f64 / n,
        server_rss_bytes_per_session: report.rss_delta as f64 / n,
        kernel_sockstat_bytes_per_session: (kernel1 as f64 - kernel0 as f64) / n,
        handshakes_per_sec: n / hs_secs,
        throughput_mb_s: throughput,
        sender_mb_per_cpu_s: snd,
        receiver_mb_per_cpu_s: rcv,
        seal_mb_s: seal,
        open_mb_s: open,
    })
}

/// Stream 64 KiB messages for `seconds`; returns (MB/s, sender MB/cpu-s,
/// receiver MB/cpu-s).
async fn stream(conn: Conn, seconds: f64) -> Result<(f64, f64, f64)> {
    let buf = vec![0x5au8; MSG];
    let start = Instant::now();
    let cpu0 = procfs::cpu_seconds();
    let mut sent: u64 = 0;
    let reply: Vec<u8> = match conn {
        Conn::Noise(mut s) => {
            while start.elapsed().as_secs_f64() < seconds {
                for _ in 0..16 {
                    s.send(&buf).await?;
                    sent += MSG as u64;
                }
            }
            s.send(&[]).await?;
            s.recv().await?
        }
        Conn::Tls(mut s) => {
            let mut framed = Vec::with_capacity(4 + MSG);
            framed.extend_from_slice(&(MSG as u32).to_be_bytes());
            framed.extend_from_slice(&buf);
            while start.elapsed().as_secs_f64() < seconds {
                for _ in 0..16 {
                    s.write_all(&framed).await?;
                    sent += MSG as u64;
                }
            }
            s.write_all(&0u32.to_be_bytes()).await?;
            s.flush().await?;
            let mut r = vec![0u8; 16];
            s.read_exact(&mut r).await?;
            r
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds() - cpu0;
    if reply.len() != 16 {
        bail!("bad throughput reply");
    }
    let got = u64::from_le_bytes(reply[..8].try_into()?);
    let peer_cpu = u64::from_le_bytes(reply[8..].try_into()?) as f64 / 1e6;
    if got != sent {
        bail!("peer received {got} of {sent} bytes");
    }
    let mb = sent as f64 / 1e6;
    Ok((mb / wall, mb / cpu.max(0.01), mb / peer_cpu.max(0.01)))
}

fn in_memory_seal_open(me: &Identity, my_record: &SignedRecord) -> Result<(f64, f64)> {
    let cfg = SessionConfig::default();
    let other = Identity::from_seed(PEER_SEED);
    let other_rec = LocationRecord::new(&other, vec!["127.0.0.1:2".parse()?]).sign(&other)?;
    let (hs, m1) = InitiatorHandshake::start(me, my_record, other.node_id(), &cfg)?;
    let (_b, _, m2) = ResponderHandshake::respond(&other, &other_rec, &m1[2..], &cfg)?;
    let (mut a, _) = hs.finish(&m2[2..])?;
    let msg = vec![1u8; MSG];
    let rounds = 4000;
    // Seal into one reused buffer (as a sender does), timed.
    let mut scratch = Vec::with_capacity(MSG + 64);
    let t = Instant::now();
    for _ in 0..rounds {
        scratch.clear();
        a.seal_message(&msg, cfg.max_message, &mut scratch)?;
    }
    let seal = (rounds * MSG) as f64 / 1e6 / t.elapsed().as_secs_f64();
    // Open needs successive ciphertexts: produce them untimed from a second
    // pair, then time opening them into one reused buffer.
    let (hs, m1) = InitiatorHandshake::start(me, my_record, other.node_id(), &cfg)?;
    let (mut b, _, m2) = ResponderHandshake::respond(&other, &other_rec, &m1[2..], &cfg)?;
    let (mut a, _) = hs.finish(&m2[2..])?;
    let mut wires = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut w = Vec::with_capacity(MSG + 64);
        a.seal_message(&msg, cfg.max_message, &mut w)?;
        wires.push(w);
    }
    let t = Instant::now();
    let mut out = Vec::with_capacity(MSG + 64);
    for w in &wires {
        let mut dec = FrameDecoder::default();
        dec.extend(w);
        out.clear();
        let mut done = false;
        while let Some(f) = dec.next_frame()? {
            done = b.open_frame(&f, &mut out, cfg.max_message)?;
        }
        if !done || out.len() != MSG {
            bail!("in-memory message did not reassemble");
        }
    }
    let open = (rounds * MSG) as f64 / 1e6 / t.elapsed().as_secs_f64();
    Ok((seal, open))
}

fn tls_connector(cert_der: &[u8]) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}
