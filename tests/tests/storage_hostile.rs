//! Hostile peers against a real share server on loopback (issue 18): a
//! server process out of file descriptors keeps its listener; a silent
//! session, one that sends a byte at a time, and one that never reads its
//! answers are each cut off, and the space they reserved comes back; a
//! message over the protocol's size ends the session before it is kept.

use std::future::Future;
use std::io::BufRead;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use grapevine_crypto::session::Session;
use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::client::{ClientIdentity, Conn, ServerRef};
use grapevine_storage::protocol::{decode, encode, Reply, Request, RequestMsg, ResponseMsg};
use grapevine_storage::server::{run_listener, ServerLimits, ServerStats};
use grapevine_storage::{PoolConfig, SessionPool, ShareStore, StorageIndex};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

struct Server {
    r: ServerRef,
    store: ShareStore,
    stats: Arc<ServerStats>,
    _dir: tempfile::TempDir,
}

async fn server(limits: ServerLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let id = Arc::new(Identity::generate());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
    let store = ShareStore::open(dir.path(), 0).unwrap();
    let stats = Arc::new(ServerStats::default());
    let r = ServerRef {
        id: id.node_id(),
        addr,
    };
    tokio::spawn(run_listener(
        listener,
        id,
        rec,
        store.clone(),
        limits,
        stats.clone(),
        grapevine_storage::server::Drain::never(),
    ));
    Server {
        r,
        store,
        stats,
        _dir: dir,
    }
}

fn me() -> ClientIdentity {
    let identity = Arc::new(Identity::generate());
    let record = LocationRecord::new(&identity, vec!["127.0.0.1:1".parse().unwrap()])
        .sign(&identity)
        .unwrap();
    ClientIdentity {
        identity,
        record,
        session: SessionConfig::default(),
    }
}

fn short(idle_ms: u64, request_ms: u64) -> ServerLimits {
    ServerLimits {
        idle_timeout: Duration::from_millis(idle_ms),
        request_timeout: Duration::from_millis(request_ms),
        ..ServerLimits::default()
    }
}

/// Wait (up to a deadline) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const SI: StorageIndex = StorageIndex([3; 16]);

/// 18.2: a session that allocates a share and goes silent is closed at
/// the idle deadline, and the space reserved for its share comes back; so
/// is one that keeps asking harmless questions while it holds the share
/// open without writing it. Before, both held their reservation for as
/// long as they kept the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sessions_are_closed_and_their_reservations_freed() {
    let s = server(short(400, 5000)).await;
    for keep_asking in [false, true] {
        let mut c = Conn::open(&me(), s.r).await.unwrap();
        let shnum = u16::from(keep_asking);
        c.call(Request::Allocate {
            si: SI,
            shnum,
            size: 10 << 20,
        })
        .await
        .unwrap();
        assert_eq!(s.store.space().unwrap().reserved, (10 << 20) + 16);
        let before = s.stats.sessions_timed_out();
        // Either silent, or a `Version` every 100 ms (never idle, never
        // writing) until the server closes the session.
        let pinger = tokio::spawn(async move {
            while keep_asking && c.call(Request::Version).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            c
        });
        until("the session is closed", || {
            s.stats.sessions_timed_out() == before + 1
        })
        .await;
        until("its reservation is freed", || {
            s.store.space().unwrap().reserved == 0
        })
        .await;
        until("it is counted closed", || s.stats.sessions_open() == 0).await;
        pinger.abort();
    }
}

/// 18.6: a pooled session the server closed while it sat idle (servers
/// idle sessions out) is replaced by a fresh one and the request sent once
/// more, so that server is not skipped for the whole operation. Before,
/// the request failed on the dead session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_session_the_server_closed_is_replaced_once() {
    let s = server(short(300, 5000)).await;
    let pool = SessionPool::new(
        me(),
        PoolConfig {
            idle_timeout: Duration::from_secs(600),
            ..PoolConfig::default()
        },
    );
    let mut c = pool.get(s.r).await.unwrap();
    assert!(matches!(
        pool.call(&mut c, Request::Version).await,
        Ok(Reply::Version { .. })
    ));
    pool.put_back(c);
    until("the server idles the pooled session out", || {
        s.stats.sessions_timed_out() == 1 && s.stats.sessions_open() == 0
    })
    .await;
    let mut c = pool.get(s.r).await.unwrap();
    assert_eq!(pool.sessions_opened(), 1, "the idle session was handed out");
    let r = tokio::time::timeout(Duration::from_secs(20), pool.call(&mut c, Request::Version))
        .await
        .expect("the retry has a deadline");
    assert!(matches!(r, Ok(Reply::Version { .. })), "{r:?}");
    assert_eq!(pool.sessions_opened(), 2, "one fresh session, once");
}

/// A stream whose writes, once `slow` is set, go out a byte every 50 ms.
struct Trickle {
    inner: TcpStream,
    slow: Arc<AtomicBool>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !self.slow.load(Ordering::Relaxed) {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
        if wait.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.wait = None;
        let one = &buf[..buf.len().min(1)];
        Pin::new(&mut self.inner).poll_write(cx, one)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// 18.2: a client that sends its write a byte at a time is cut off at the
/// deadline (a request must arrive whole within it), and its reservation
/// freed. Before, the server waited for the message for as long as it
/// took (20 minutes for this 24 KiB write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_a_byte_at_a_time_is_cut_off() {
    let s = server(short(600, 5000)).await;
    let me = me();
    let slow = Arc::new(AtomicBool::new(false));
    let stream = Trickle {
        inner: TcpStream::connect(s.r.addr).await.unwrap(),
        slow: slow.clone(),
        wait: None,
    };
    let (mut session, _) = Session::connect(stream, &me.identity, &me.record, s.r.id, &me.session)
        .await
        .unwrap();
    let alloc = RequestMsg::new(
        1,
        Request::<Vec<u8>>::Allocate {
            si: SI,
            shnum: 0,
            size: 24 << 10,
        },
    );
    session.send(&encode(&alloc)).await.unwrap();
    let r: ResponseMsg = decode(&session.recv().await.unwrap()).unwrap();
    assert_eq!(r.reply, Reply::Ok);
    slow.store(true, Ordering::Relaxed);
    let write = RequestMsg::new(
        2,
        Request::Write {
            si: SI,
            shnum: 0,
            offset: 0,
            data: vec![7u8; 24 << 10],
        },
    );
    let sending = tokio::spawn(async move {
        let _ = session.send(&encode(&write)).await;
        session
    });
    until("the trickling session is closed", || {
        s.stats.sessions_timed_out() == 1
    })
    .await;
    until("its reservation is freed", || {
        s.store.space().unwrap().reserved == 0
    })
    .await;
    sending.abort();
}

/// 18.2: a client that asks and never reads the answers fills its socket;
/// the server gives up on an answer not taken within the request deadline
/// and closes the session. Before, it waited on the write for ever,
/// holding the session and whatever it had reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off() {
    let s = server(short(60_000, 500)).await;
    let mut c = Conn::open(&me(), s.r).await.unwrap();
    let data = vec![1u8; 1 << 20];
    c.call(Request::Allocate {
        si: SI,
        shnum: 0,
        size: 1 << 20,
    })
    .await
    .unwrap();
    c.send_write(SI, 0, 0, &data).await.unwrap();
    c.call(Request::Close { si: SI, shnum: 0 }).await.unwrap();
    let stream = TcpStream::connect(s.r.addr).await.unwrap();
    let me = me();
    let (mut session, _) = Session::connect(stream, &me.identity, &me.record, s.r.id, &me.session)
        .await
        .unwrap();
    let read = encode(&RequestMsg::new(
        1,
        Request::<Vec<u8>>::Read {
            si: SI,
            shnum: 0,
            offset: 0,
            len: 1 << 20,
        },
    ));
    // Ask for 64 MiB of answers and read none of them.
    let asking = tokio::spawn(async move {
        for _ in 0..64 {
            if session.send(&read).await.is_err() {
                break;
            }
        }
        session
    });
    until("the session that never reads is closed", || {
        s.stats.sessions_timed_out() == 1
    })
    .await;
    until("it is counted closed", || s.stats.sessions_open() == 1).await;
    drop(c);
    asking.abort();
}

/// 18.3: storage messages are at most the protocol's size (a 1 MiB write
/// and its header). A 2 MiB message ends the session: the server does not
/// keep it, and answers nothing. Before, sessions took 16 MiB messages
/// and answered them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_protocols_size_end_the_session() {
    let s = server(ServerLimits::default()).await;
    let me = me();
    let stream = TcpStream::connect(s.r.addr).await.unwrap();
    let (mut session, _) = Session::connect(stream, &me.identity, &me.record, s.r.id, &me.session)
        .await
        .unwrap();
    let big = encode(&RequestMsg::new(
        1,
        Request::Write {
            si: SI,
            shnum: 0,
            offset: 0,
            data: vec![0u8; 2 << 20],
        },
    ));
    let _ = session.send(&big).await;
    let r = tokio::time::timeout(Duration::from_secs(20), session.recv())
        .await
        .expect("the server neither answered nor closed");
    assert!(r.is_err(), "the server answered a 2 MiB message");
    // The largest real message still goes through on a new session.
    let mut c = Conn::open(&me, s.r).await.unwrap();
    c.call(Request::Allocate {
        si: SI,
        shnum: 1,
        size: 1 << 20,
    })
    .await
    .unwrap();
    c.send_write(SI, 1, 0, &vec![5u8; 1 << 20]).await.unwrap();
    assert!(matches!(c.recv().await, Ok(Reply::Ok)));
}

const CHILD: &str = "GV_FD_LIMIT_CHILD";

/// 18.1: a share server whose process runs out of file descriptors keeps
/// its listener: accept errors are counted and retried after a pause, and
/// once descriptors are free again a new client is served. Before, the
/// first failed accept ended the listener (`accept().await?`) and every
/// later client was refused. The server runs in a child process (this
/// test, run again) with a low open-file limit; this process floods it
/// with connections that never finish their handshake.
#[test]
fn listener_survives_running_out_of_file_descriptors() {
    if std::env::var_os(CHILD).is_some() {
        return fd_limited_server();
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "listener_survives_running_out_of_file_descriptors",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |want: &str| -> String {
        for l in lines.by_ref() {
            let l = l.unwrap();
            if let Some(rest) = l.strip_prefix(want) {
                return rest.trim().to_string();
            }
        }
        panic!("the child ended before saying {want:?}");
    };
    let addr: std::net::SocketAddr = next("GV addr").parse().unwrap();
    let id: grapevine_crypto::NodeId = next("GV id").parse().unwrap();
    // Far more connections than the child has descriptors for.
    let flood: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    assert!(flood.len() > 50, "{} connections", flood.len());
    next("GV accept failed");
    drop(flood);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = ServerRef { id, addr };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // Each attempt, and so the whole loop, ends by the deadline: an
        // attempt whose handshake or answer never comes is cut off there.
        loop {
            let r = tokio::time::timeout_at(deadline, async {
                let mut c = Conn::open(&me(), server).await?;
                c.call(Request::Version).await
            })
            .await;
            match r {
                Ok(Ok(Reply::Version { .. })) => break,
                other => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the server never served again: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "the child failed: {status}");
}

/// The child's side: a share server under a low open-file limit, saying
/// where it is, then when an accept has failed, then serving until its
/// standard input closes.
fn fd_limited_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = server(ServerLimits::default()).await;
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        rlimit::setrlimit(rlimit::Resource::NOFILE, open + 12, hard).unwrap();
        println!("GV addr {}", s.r.addr);
        println!("GV id {}", s.r.id);
        until("an accept fails", || s.stats.accept_errors() > 0).await;
        println!("GV accept failed");
        // Serve until the parent is done.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .unwrap();
    });
}
