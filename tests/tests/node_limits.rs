//! The node's own guards around its listeners (issue 18.1), through the
//! node library: it raises its soft open-file limit at start, withdraws the
//! storage role from its signed record when the share listener stops for
//! good, and its control socket backs off, never spins, when accept fails.
//!
//! Tests that change the process's open-file limit run the node in a child
//! process (this test binary, run again for that one test, as
//! `storage_hostile.rs::listener_survives_running_out_of_file_descriptors`
//! does), so no other test in this binary runs under the changed limit.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{control, Config, Node, NodeDir, Options, Sockets, StorageRuntime};

#[path = "common/ci.rs"]
mod ci;
#[path = "common/wait.rs"]
mod wait;
use wait::wait_for;

/// Set (to the test's name) in a child process run for that test.
const CHILD: &str = "GV_NODE_LIMITS_CHILD";

/// A fresh node directory and configuration listening on loopback.
fn node_dir(root: &std::path::Path, name: &str) -> (NodeDir, Config) {
    let d = NodeDir::new(root.join(name));
    let listen = "127.0.0.1:0".parse().unwrap();
    dir::init(
        &d,
        &InitOptions {
            listen,
            advertise: Vec::new(),
            seeds: vec![],
            nickname: Some(name.into()),
            capacity_mib: 64,
            gateway: None,
        },
    )
    .unwrap();
    let mut cfg = Config::new(listen);
    cfg.nickname = Some(name.into());
    cfg.reserve_mib = 0;
    (d, cfg)
}

/// Run this test binary again for test `name` alone, with [`CHILD`] set;
/// its standard input and output are piped.
fn spawn_child(name: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env(CHILD, name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn is_child(name: &str) -> bool {
    std::env::var_os(CHILD).is_some_and(|v| v == name)
}

/// The rest of the line after the first line of `lines` starting `want`.
fn next_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, want: &str) -> String {
    for l in lines.by_ref() {
        let l = l.unwrap();
        if let Some(rest) = l.strip_prefix(want) {
            return rest.trim().to_string();
        }
    }
    panic!("the child ended before saying {want:?}");
}

/// A share listener whose accept fails for good (a bound TCP socket that is
/// not listening: `accept` says `EINVAL`) ends; the node then re-signs its
/// record without the storage role and publishes it, so a peer sees the
/// node as a member that serves no storage. Before, the node kept
/// advertising storage it could not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_withdraws_storage_when_its_share_listener_stops_for_good() {
    let root = tempfile::tempdir().unwrap();
    let (da, cfg_a) = node_dir(root.path(), "a");
    // A UDP port the system picks may be taken for TCP (by any
    // connection's end on this host): try another until both are ours.
    let (udp, tcp) = {
        let mut tries = 0;
        loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            let tcp =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            match tcp.bind(&addr.into()) {
                Ok(()) => break (udp, tcp),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => tries += 1,
                Err(e) => panic!("binding {addr} for TCP: {e}"),
            }
        }
    };
    tcp.set_nonblocking(true).unwrap();
    // Never `listen`ed: the first accept fails with EINVAL, a fatal error.
    let tcp = tokio::net::TcpListener::from_std(std::net::TcpListener::from(tcp)).unwrap();
    let mut opts = Options::in_process();
    opts.sockets = Some(Sockets { udp, tcp });
    let a = Node::start(cfg_a, &da, opts).await.unwrap();
    let has_storage =
        |n: &Node| n.state().record().record().roles & grapevine_crypto::record::ROLE_STORAGE != 0;

    wait_for("node a to withdraw its storage role", 30, || {
        let s = a.state().clone();
        async move { s.record().record().roles & grapevine_crypto::record::ROLE_STORAGE == 0 }
    })
    .await;
    assert!(!a.state().storage_serving());
    let status = a.state().status().await.unwrap();
    assert!(!status.storage_serving);
    // The status says what the record offers for sessions.
    assert_eq!(
        status.sessions_offer_aes_gcm,
        grapevine_crypto::record::local_features() & grapevine_crypto::record::FEATURE_AES_GCM != 0
    );

    // A peer learns the record without the role: a member, not a server.
    let (db, mut cfg_b) = node_dir(root.path(), "b");
    cfg_b.seeds = vec![a.local_addr().into()];
    let b = Node::start(cfg_b, &db, Options::in_process())
        .await
        .unwrap();
    assert!(has_storage(&b));
    let a_id = a.id().to_string();
    wait_for("node b to hold node a's record", 30, || {
        let (s, a_id) = (b.state().clone(), a_id.clone());
        async move {
            s.member_rows()
                .await
                .unwrap()
                .iter()
                .any(|r| r.id == a_id && r.state == "alive" && !r.record.is_empty())
        }
    })
    .await;
    let rows = b.state().member_rows().await.unwrap();
    let row = rows.iter().find(|r| r.id == a_id).unwrap();
    assert!(!row.storage, "b sees a as a storage server: {row:?}");
    let servers = b.state().storage_servers().await.unwrap();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0].id, b.id());
}

/// A node started with `raise_fd_limit` (as `Options::process()`, what
/// `grapevine run` uses) lifts its soft open-file limit to the hard limit:
/// a storage server holds a descriptor per session, and the usual soft
/// limit of 1024 is far below what it may serve.
#[test]
fn a_node_raises_its_soft_open_file_limit_at_start() {
    const NAME: &str = "a_node_raises_its_soft_open_file_limit_at_start";
    assert!(Options::process().raise_fd_limit);
    if is_child(NAME) {
        return raising_child();
    }
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard <= 256 {
        ci::cannot_run(&format!(
            "the hard open-file limit ({hard}) leaves no room to test raising the soft one"
        ));
        return;
    }
    let mut child = spawn_child(NAME);
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let before: u64 = next_line(&mut lines, "GV before").parse().unwrap();
    let after: u64 = next_line(&mut lines, "GV after").parse().unwrap();
    let child_hard: u64 = next_line(&mut lines, "GV hard").parse().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(before, 256);
    assert_eq!(after, child_hard, "soft limit {after}, hard {child_hard}");
}

/// The child's side: lower the soft limit, start a node as its own
/// process would, say the soft limit before and after.
fn raising_child() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let (d, cfg) = node_dir(root.path(), "raise");
        let opts = Options {
            storage_runtime: StorageRuntime::Current,
            raise_fd_limit: true,
            ..Options::default()
        };
        println!(
            "GV before {}",
            rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0
        );
        let node = Node::start(cfg, &d, opts).await.unwrap();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        println!("GV after {soft}");
        println!("GV hard {hard}");
        drop(node);
    });
}

/// Counts formatted log lines that contain a phrase.
#[derive(Clone)]
struct LineCounter {
    phrase: &'static [u8],
    count: Arc<AtomicUsize>,
}

impl Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.windows(self.phrase.len()).any(|w| w == self.phrase) {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Seconds over which the child counts failed control accepts.
const WINDOW: Duration = Duration::from_secs(2);

/// When the node is out of file descriptors, every accept on its control
/// socket fails while connections wait in the backlog, so the socket stays
/// readable: a loop that retried at once would spin a core and flood the
/// log. The loop backs off (10 ms doubling to 1 s), so within a two-second
/// window it fails a handful of times, not thousands; once descriptors are
/// free it serves again. The node runs in a child process with a low
/// open-file limit that counts the loop's warnings.
#[test]
fn the_control_socket_backs_off_when_accept_fails() {
    const NAME: &str = "the_control_socket_backs_off_when_accept_fails";
    if is_child(NAME) {
        return control_child();
    }
    let mut child = spawn_child(NAME);
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let dir = NodeDir::new(next_line(&mut lines, "GV dir"));
    // Far more connections than the child has descriptors for; they wait
    // in the listener's backlog.
    let flood: Vec<_> = (0..64)
        .map(|_| std::os::unix::net::UnixStream::connect(dir.control_path()).unwrap())
        .collect();
    writeln!(stdin, "flooded").unwrap();
    // The child reports only after it has seen an accept fail, so the
    // count is at least one: what tests the backoff is its upper bound.
    let failures: u64 = next_line(&mut lines, "GV failures").parse().unwrap();
    let window = Duration::from_millis(next_line(&mut lines, "GV window ms").parse().unwrap());
    assert!(window >= WINDOW, "{window:?}");
    // Waits of 10, 20, ..., 640 ms (1.27 s), then 1 s each: seven quick
    // tries, then one a second, plus the one that opened the window; twice
    // the quick ones, should a descriptor come free for a moment (an accept
    // that succeeds starts the waits again). A loop that spins fails
    // thousands of times.
    let most = 2 * 8 + window.as_secs() + 1;
    assert!(
        failures <= most,
        "{failures} failed accepts in {window:?} (at most {most}): the loop spins"
    );
    drop(flood);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        wait_for("the control socket to serve again", 30, || {
            let dir = &dir;
            async move {
                matches!(
                    tokio::time::timeout(Duration::from_secs(5), control::whoami(dir)).await,
                    Ok(Ok(_))
                )
            }
        })
        .await;
    });
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "the child failed: {status}");
}

/// The child's side: a node serving its control socket under a low
/// open-file limit; once told the parent has flooded it, it counts the
/// control loop's failed accepts over [`WINDOW`], says how many, and
/// serves until its standard input closes.
fn control_child() {
    let count = Arc::new(AtomicUsize::new(0));
    let writer = LineCounter {
        phrase: b"control socket accept",
        count: count.clone(),
    };
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let (d, cfg) = node_dir(root.path(), "control");
        let opts = Options {
            storage_runtime: StorageRuntime::Current,
            control: true,
            ..Options::default()
        };
        let _node = Node::start(cfg, &d, opts).await.unwrap();
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        rlimit::setrlimit(rlimit::Resource::NOFILE, open + 8, hard).unwrap();
        println!("GV dir {}", d.path().display());
        let stdin = tokio::task::spawn_blocking(|| {
            let mut lines = std::io::stdin().lock().lines();
            assert_eq!(lines.next().unwrap().unwrap(), "flooded");
            // Wait for the parent to close its end.
            for _ in lines {}
        });
        wait_for("a control accept to fail", 30, || {
            let n = count.load(Ordering::Relaxed);
            async move { n > 0 }
        })
        .await;
        // The window: from one failed accept, for at least WINDOW, as
        // measured (a busy machine may make the sleep longer).
        let start = count.load(Ordering::Relaxed);
        let opened = Instant::now();
        tokio::time::sleep(WINDOW).await;
        let n = count.load(Ordering::Relaxed) - start + 1;
        let window = opened.elapsed();
        println!("GV failures {n}");
        println!("GV window ms {}", window.as_millis());
        stdin.await.unwrap();
    });
}
