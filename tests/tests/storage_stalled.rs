//! Stalled servers against a real client (issue 18.2, the client's side):
//! every share server of a loopback grid sits behind a proxy that can stop
//! passing the server's answers on (a server that accepts and never
//! answers) or pass them a byte a second. Upload, download and locate each
//! finish without the stalled server, at the cost of one request deadline;
//! before, one stalled server hung the whole operation. A download
//! cancelled while its reads wait on stalled servers leaves no read task
//! holding a session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::client::{self, ClientIdentity, KeyMode, ServerRef};
use grapevine_storage::{Cap, Params, PoolConfig, SessionPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NORMAL: u8 = 0;
/// The server's answers are held, never passed on.
const MUTE: u8 = 1;
/// The server's answers are passed on a byte a second.
const TRICKLE: u8 = 2;

/// A proxy in front of one share server.
struct Proxy {
    mode: Arc<AtomicU8>,
    /// Bytes passed from the server to clients.
    down: Arc<AtomicU64>,
    /// Connections whose server answered and whose answer is held (MUTE).
    holding: Arc<AtomicU64>,
}

/// Pass the server's bytes (`from`) on to the client (`to`) as the mode says.
async fn pump_down(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    down: Arc<AtomicU64>,
    holding: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut held = false;
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let mode = mode.load(Ordering::Relaxed);
            if held != (mode == MUTE) {
                held = mode == MUTE;
                if held {
                    holding.fetch_add(1, Ordering::Relaxed);
                } else {
                    holding.fetch_sub(1, Ordering::Relaxed);
                }
            }
            match mode {
                NORMAL => {
                    if to.write_all(rest).await.is_err() {
                        return;
                    }
                    down.fetch_add(rest.len() as u64, Ordering::Relaxed);
                    rest = &[];
                }
                TRICKLE => {
                    if to.write_all(&rest[..1]).await.is_err() {
                        return;
                    }
                    rest = &rest[1..];
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

async fn proxy(server: SocketAddr) -> (SocketAddr, Proxy) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mode = Arc::new(AtomicU8::new(NORMAL));
    let down = Arc::new(AtomicU64::new(0));
    let holding = Arc::new(AtomicU64::new(0));
    let (m, d, h) = (mode.clone(), down.clone(), holding.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(server).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (ur, mut uw) = upstream.into_split();
            tokio::spawn(async move {
                let mut cr = cr;
                let _ = tokio::io::copy(&mut cr, &mut uw).await;
            });
            tokio::spawn(pump_down(ur, cw, m.clone(), d.clone(), h.clone()));
        }
    });
    (
        addr,
        Proxy {
            mode,
            down,
            holding,
        },
    )
}

struct Grid {
    refs: Vec<ServerRef>,
    proxies: Vec<Proxy>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Ten share servers, each behind its own proxy.
async fn grid() -> Grid {
    let mut g = Grid {
        refs: Vec::new(),
        proxies: Vec::new(),
        _dirs: Vec::new(),
    };
    for i in 0..10u8 {
        let dir = tempfile::tempdir().unwrap();
        let srv = grapevine_storage::testing::spawn_local(
            [127, 0, 0, 1].into(),
            dir.path(),
            Some(format!("s{i}")),
        )
        .await
        .unwrap();
        let (addr, p) = proxy(srv.addr).await;
        g.refs.push(ServerRef { id: srv.id, addr });
        g.proxies.push(p);
        g._dirs.push(dir);
    }
    g
}

/// A fresh pool whose requests and handshakes have a 1 s deadline.
fn pool() -> SessionPool {
    let identity = Arc::new(Identity::generate());
    let record = LocationRecord::new(&identity, vec!["127.0.0.1:1".parse().unwrap()])
        .sign(&identity)
        .unwrap();
    let me = ClientIdentity {
        identity,
        record,
        session: SessionConfig {
            handshake_timeout: Duration::from_secs(1),
            ..SessionConfig::default()
        },
    };
    SessionPool::new(
        me,
        PoolConfig {
            request_timeout: Duration::from_secs(1),
            ..PoolConfig::default()
        },
    )
}

/// Guard against a hang: an operation that never returns fails the test.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung on a stalled server"))
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

fn upload_req(d: &[u8]) -> client::UploadRequest<&[u8], &[u8]> {
    client::UploadRequest {
        params: Params::default(),
        mode: KeyMode::Random,
        size: d.len() as u64,
        input: d,
        hash_input: None,
    }
}

/// 18.2: a server that stops answering, or answers a byte a second, in
/// the middle of an upload, in the middle of a download, or when asked
/// which shares it holds, costs the operation one deadline: the upload
/// places its shares elsewhere, the download reads other shares, locate
/// answers without it. Before (no deadline after the handshake) each of
/// these waited for the server for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_costs_a_deadline_not_the_operation() {
    let g = grid().await;
    for stall in [MUTE, TRICKLE] {
        let normal = || {
            for p in &g.proxies {
                p.mode.store(NORMAL, Ordering::Relaxed);
            }
        };
        // Upload: server 0 stalls once 2 MiB have gone out.
        normal();
        let d = data(8 << 20, stall);
        let p = pool();
        let up = bounded(
            "the upload",
            client::upload(&p, &g.refs, upload_req(&d), &|done| {
                if done >= 2 << 20 {
                    g.proxies[0].mode.store(stall, Ordering::Relaxed);
                }
            }),
        )
        .await
        .expect("nine servers still meet happy = 7");
        assert_eq!(up.servers, 9, "stall {stall}");
        assert!(up.placements.iter().all(|(_, id)| *id != g.refs[0].id));

        // Download: the server sending the most stalls once 2 MiB are
        // decoded (it is one of the `k` the download reads from).
        normal();
        let p = pool();
        let before: Vec<u64> = g
            .proxies
            .iter()
            .map(|p| p.down.load(Ordering::Relaxed))
            .collect();
        let mut out = Vec::new();
        let stalled = std::sync::Mutex::new(None);
        bounded(
            "the download",
            client::download(&p, &g.refs, &up.cap, &mut out, &|done| {
                let mut s = stalled.lock().unwrap();
                if done >= 2 << 20 && s.is_none() {
                    let (i, sent) = g
                        .proxies
                        .iter()
                        .zip(&before)
                        .map(|(p, b)| p.down.load(Ordering::Relaxed) - b)
                        .enumerate()
                        .max_by_key(|(_, sent)| *sent)
                        .unwrap();
                    assert!(sent > 256 << 10, "no server is sending blocks");
                    g.proxies[i].mode.store(stall, Ordering::Relaxed);
                    *s = Some(i);
                }
            }),
        )
        .await
        .expect("the other shares are read instead");
        assert!(out == d, "stall {stall}: the download is wrong");
        assert!(stalled.lock().unwrap().is_some());

        // Locate: server 1 stalls before it is asked (new sessions to it
        // stall in their handshake).
        normal();
        g.proxies[1].mode.store(stall, Ordering::Relaxed);
        let p = pool();
        let Cap::Chk(cap) = &up.cap else {
            panic!("an 8 MiB file is stored on the grid")
        };
        let found = bounded(
            "locate",
            client::locate(&p, &g.refs, cap.storage_index(), 3, 10),
        )
        .await;
        assert!(found.shares.len() >= 3, "stall {stall}: {found:?}");
        assert!(found.shares.iter().all(|l| l.server.id != g.refs[1].id));
    }
}

/// 18.6: a download cancelled (its future dropped) while its per-share
/// reads wait on stalled servers leaves nothing running: the read tasks
/// are aborted, their sessions closed and their pool slots free at once,
/// long before the request deadline. Before, each read task ran on until
/// its deadline, holding its session and slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_leaves_no_reads_running() {
    let g = grid().await;
    // A 10-minute deadline: only the cancellation can free the sessions.
    let p = Arc::new(SessionPool::new(
        pool().identity().clone(),
        PoolConfig {
            request_timeout: Duration::from_secs(600),
            idle_timeout: Duration::ZERO,
            ..PoolConfig::default()
        },
    ));
    // More segments than the download can have asked for when the servers
    // stall (after 2 segments written: the decoder at most 3 segments on,
    // each share at most `read_ahead` beyond), so reads are still to be
    // sent to the stalled servers. (With 8 segments and 8 ahead, every
    // block could be in before the stall, and nothing left to hold.)
    let ahead = usize::try_from(p.config().memory.read_ahead()).unwrap();
    let d = data((2 + 3 + ahead + 4) << 20, 7);
    let up = bounded(
        "the upload",
        client::upload(&pool(), &g.refs, upload_req(&d), &|_| {}),
    )
    .await
    .unwrap();
    let stalled = Arc::new(tokio::sync::Notify::new());
    let download = {
        let (p, refs, cap, stalled) = (p.clone(), g.refs.clone(), up.cap.clone(), stalled.clone());
        let modes: Vec<_> = g.proxies.iter().map(|x| x.mode.clone()).collect();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let once = std::sync::atomic::AtomicBool::new(false);
            let _ = client::download(&p, &refs, &cap, &mut out, &|done| {
                if done >= 2 << 20 && !once.swap(true, Ordering::Relaxed) {
                    // Every server stops answering: the reads in flight wait.
                    for m in &modes {
                        m.store(MUTE, Ordering::Relaxed);
                    }
                    stalled.notify_one();
                }
            })
            .await;
        })
    };
    bounded("the stall", stalled.notified()).await;
    // The download goes on asking for blocks: its reads wait on stalled
    // servers once the servers of at least k = 3 shares have answered and
    // their answers are held (none of those reads can finish before the
    // 10-minute deadline).
    bounded("three reads held by stalled servers", async {
        while g
            .proxies
            .iter()
            .filter(|x| x.holding.load(Ordering::Relaxed) > 0)
            .count()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    p.close_idle();
    assert!(p.open_sessions() >= 3, "the reads hold their sessions");
    download.abort();
    let _ = download.await;
    bounded("the sessions' release", async {
        while p.open_sessions() > 0 {
            p.close_idle();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
