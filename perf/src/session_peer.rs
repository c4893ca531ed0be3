//! The accepting side of `grapevine-perf bench sessions`, run as its own
//! process (`grapevine-perf bench session-peer`, hidden): it accepts Noise or
//! TLS 1.3 sessions, holds them idle (one task per session, as a server
//! does), sinks throughput streams, and on stdin's `BASELINE` / `REPORT`
//! lines takes its memory baseline or prints a [`PeerReport`].

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use grapevine_crypto::{Identity, LocationRecord, Session, SessionConfig, SignedRecord};
use grapevine_node::procfs;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

use crate::alloc::live_bytes;

/// Bytes per throughput message.
pub const MSG: usize = 64 * 1024;
/// The peer's identity seed (the dialler knows its id from it).
pub const PEER_SEED: [u8; 32] = [7; 32];

/// Which protocol a peer speaks.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Proto {
    /// grapevine's Noise sessions.
    Noise,
    /// TLS 1.3 via tokio-rustls (ring provider).
    Tls,
}

/// Arguments of the hidden `bench session-peer` child.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// Protocol to serve.
    #[arg(long, value_enum)]
    pub proto: Proto,
}

/// What the peer reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerReport {
    /// Heap bytes since the baseline.
    pub heap_delta: i64,
    /// RSS bytes since the baseline.
    pub rss_delta: i64,
    /// Sessions established since the baseline.
    pub established: u64,
}

/// The TLS crypto provider both sides use.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The child side: accept sessions, hold them idle, sink throughput streams,
/// and report its own memory when asked on stdin.
///
/// # Errors
/// Fails if it cannot bind or set up TLS.
pub fn peer(args: &PeerArgs) -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(peer_main(args.proto))
}

async fn peer_main(proto: Proto) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let ident = Arc::new(Identity::from_seed(PEER_SEED));
    let record = LocationRecord::new(&ident, vec![listener.local_addr()?]).sign(&ident)?;
    let (acceptor, cert_hex) = match proto {
        Proto::Noise => (None, String::new()),
        Proto::Tls => {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
            let der = ck.cert.der().to_vec();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
            let cfg = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_no_client_auth()
                .with_single_cert(vec![der.clone().into()], key)?;
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
                data_encoding::HEXLOWER.encode(&der),
            )
        }
    };
    let established = Arc::new(AtomicU64::new(0));
    let heap0 = Arc::new(AtomicU64::new(0));
    let rss0 = Arc::new(AtomicU64::new(0));

    // Control: stdin lines, on a blocking thread.
    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if ctl_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    println!("READY {port} {cert_hex}");
    std::io::stdout().flush()?;

    loop {
        tokio::select! {
            acc = listener.accept() => {
                let (s, _) = acc?;
                let _ = s.set_nodelay(true);
                let ident = ident.clone();
                let record = record.clone();
                let acceptor = acceptor.clone();
                let established = established.clone();
                // One spawn per protocol: a future is as large as its
                // largest state, and the idle task holds all of it.
                match acceptor {
                    None => {
                        tokio::spawn(serve_noise(s, ident, record, established));
                    }
                    Some(a) => {
                        tokio::spawn(serve_tls(s, a, established));
                    }
                }
            }
            line = ctl_rx.recv() => {
                match line.as_deref() {
                    Some("BASELINE") => {
                        // The parent has dropped its warm-up sessions.
                        heap0.store(live_bytes() as u64, Ordering::Relaxed);
                        rss0.store(procfs::rss_bytes(), Ordering::Relaxed);
                        established.store(0, Ordering::Relaxed);
                        println!("OK");
                        std::io::stdout().flush()?;
                    }
                    Some("REPORT") => {
                        let report = PeerReport {
                            heap_delta: live_bytes() - heap0.load(Ordering::Relaxed) as i64,
                            rss_delta: procfs::rss_bytes() as i64 - rss0.load(Ordering::Relaxed) as i64,
                            established: established.load(Ordering::Relaxed),
                        };
                        println!("{}", serde_json::to_string(&report)?);
                        std::io::stdout().flush()?;
                    }
                    _ => return Ok(()),
                }
            }
        }
    }
}

fn established_one(established: &AtomicU64) {
    established.fetch_add(1, Ordering::Relaxed);
}

async fn serve_noise(
    s: TcpStream,
    ident: Arc<Identity>,
    record: SignedRecord,
    established: Arc<AtomicU64>,
) {
    // Boxed so the idle task does not carry the handshake's state inline.
    let accepted = Box::pin(Session::accept(
        s,
        &ident,
        &record,
        &SessionConfig::default(),
    ))
    .await;
    drop((ident, record));
    let Ok((mut sess, _)) = accepted else { return };
    established_one(&established);
    drop(established);
    let mut got = 0u64;
    let mut cpu0 = None;
    loop {
        let Ok(m) = sess.recv().await else { return };
        if m.is_empty() {
            let cpu = procfs::cpu_seconds() - cpu0.unwrap_or_else(procfs::cpu_seconds);
            let mut r = got.to_le_bytes().to_vec();
            r.extend_from_slice(&((cpu * 1e6) as u64).to_le_bytes());
            if sess.send(&r).await.is_err() {
                return;
            }
            got = 0;
            cpu0 = None;
        } else {
            cpu0.get_or_insert_with(procfs::cpu_seconds);
            got += m.len() as u64;
        }
    }
}

async fn serve_tls(s: TcpStream, acceptor: tokio_rustls::TlsAcceptor, established: Arc<AtomicU64>) {
    let Ok(s) = Box::pin(acceptor.accept(s)).await else {
        return;
    };
    established_one(&established);
    if let Err(e) = tls_sink(s).await {
        tracing::debug!("tls session ended: {e}");
    }
}

async fn tls_sink(mut s: tokio_rustls::server::TlsStream<TcpStream>) -> Result<()> {
    let mut got = 0u64;
    let mut cpu0 = None;
    loop {
        let len = s.read_u32().await? as usize;
        if len == 0 {
            let cpu = procfs::cpu_seconds() - cpu0.unwrap_or_else(procfs::cpu_seconds);
            s.write_all(&got.to_le_bytes()).await?;
            s.write_all(&((cpu * 1e6) as u64).to_le_bytes()).await?;
            s.flush().await?;
            got = 0;
            cpu0 = None;
            continue;
        }
        if len > MSG {
            bail!("oversized message");
        }
        cpu0.get_or_insert_with(procfs::cpu_seconds);
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await?;
        got += len as u64;
    }
}
