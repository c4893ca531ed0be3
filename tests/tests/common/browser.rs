//! Headless Chromium for the page tests, driven over WebDriver by Debian's
//! `chromedriver`, made so that a test can neither hang nor leave a browser
//! behind:
//!
//! - chromedriver starts with stdin, stdout and stderr on /dev/null and
//!   with every inherited descriptor above 2 marked close-on-exec, so
//!   neither it nor the chromium it starts holds a lock (say the shared
//!   `flock` file, if a caller forgot `-o`) or a pipe a caller waits on;
//! - it stays in the test's process group (so `timeout`, which signals its
//!   whole group, ends it with the test), and [`Browser`]'s drop kills it
//!   and every process under it by id (chromium, its zygotes and
//!   renderers), which would otherwise outlive a killed chromedriver;
//! - every WebDriver call has a deadline: the session is made within
//!   [`START`], pages load within 60 s and scripts run within 30 s
//!   (WebDriver's own timeouts), and [`within`] bounds a whole test;
//! - one test at a time in a test binary ([`within`] waits its turn), so
//!   two chromiums never starve a grid's timers on a small box.
//!
//! Without chromium or chromedriver, [`Browser::start`] returns `None` (the
//! test then passes as skipped), except under `CI=true`, where it fails.
//! `CHROMIUM` and `CHROMEDRIVER` name the binaries instead of `PATH`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use tokio::sync::{Mutex, MutexGuard};

#[path = "ci.rs"]
mod ci;
use ci::under_ci;

/// How long chromedriver has to start and give a session.
pub const START: Duration = Duration::from_secs(90);

/// One browser at a time in this process.
static TURN: Mutex<()> = Mutex::const_new(());

/// `env`'s path if set (None unless it is a file), else the first of
/// `names` on `PATH`.
fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// A WebDriver session on a headless chromium. Dropping it kills
/// chromedriver and everything under it.
pub struct Browser {
    pub client: Client,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser (its own profile directory), or `None` when
    /// chromium or chromedriver is missing outside CI.
    ///
    /// # Panics
    /// Under `CI=true` without them; when no session comes within [`START`].
    pub async fn start() -> Option<Browser> {
        let chromium = find_binary(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let chromedriver = find_binary("CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            assert!(
                !under_ci(),
                "CI=true but chromium or chromedriver is missing \
                 (apt-get install chromium chromium-driver, or set CHROMIUM and CHROMEDRIVER)"
            );
            eprintln!("SKIPPED: chromium or chromedriver not found");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let deadline = Instant::now() + START;
        let mut last = String::new();
        // A port picked here may be taken before chromedriver binds it:
        // then chromedriver exits, and another port is tried.
        while Instant::now() < deadline {
            let mut driver = Driver::spawn(&chromedriver);
            match driver.session(&chromium, profile.path(), deadline).await {
                Ok(client) => {
                    client
                        .update_timeouts(TimeoutConfiguration::new(
                            Some(Duration::from_secs(30)),
                            Some(Duration::from_secs(60)),
                            Some(Duration::ZERO),
                        ))
                        .await
                        .expect("WebDriver timeouts");
                    return Some(Browser {
                        client,
                        driver,
                        _profile: profile,
                    });
                }
                Err(e) => last = e,
            }
        }
        panic!("no WebDriver session within {START:?}: {last}");
    }

    /// chromedriver's process id.
    pub fn driver_pid(&self) -> u32 {
        self.driver.child.id()
    }
}

/// Run a test's body within `limit` once no other page test runs, failing
/// it (and so dropping its browser) when the time is up.
pub async fn within<F: std::future::Future<Output = ()>>(limit: Duration, body: F) {
    let _turn: MutexGuard<'static, ()> = TURN.lock().await;
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("the test took more than {limit:?}");
    }
}

/// chromedriver on a port of its own.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn spawn(chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cloexec_inherited(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        Driver { child, port }
    }

    /// A session on `chromium` with `profile`, or why not (chromedriver
    /// gone, or no answer by `deadline`).
    async fn session(
        &mut self,
        chromium: &Path,
        profile: &Path,
        deadline: Instant,
    ) -> Result<Client, String> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let caps: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1280,1400",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }
            }))
            .unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "chromedriver on port {} exited: {status}",
                    self.port
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no answer from chromedriver".into());
            }
            let mut b =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            b.capabilities(caps.clone());
            match tokio::time::timeout(left, b.connect(&url)).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => {
                    // Not listening yet (or chromium failed to start: the
                    // next round says so once chromedriver has exited).
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => return Err("chromedriver gave no session in time".into()),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Kill what runs under chromedriver while it still holds them as
        // its descendants (once it is gone they belong to init and cannot
        // be told from anyone else's), until none is left alive.
        let root = self.child.id();
        for _ in 0..50 {
            let live = descendants(root);
            if live.is_empty() {
                break;
            }
            for pid in live {
                kill(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live (not zombie) processes under `root`, from `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (f.next(), f.next().and_then(|p| p.parse().ok())) else {
            continue;
        };
        if state != "Z" && state != "X" {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if let Some(c) = children.get(&p) {
            out.extend(c);
            todo.extend(c);
        }
    }
    out
}

fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Mark every descriptor above 2 close-on-exec in the child before it
/// runs `cmd`: Rust opens its own files that way, but a test may inherit
/// others from whoever started it (a lock file, a pipe).
#[allow(unsafe_code)]
fn cloexec_inherited(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec and makes one
    // system call (async-signal-safe), touching no memory of the parent.
    // A kernel without close_range (before 5.11) leaves descriptors as
    // they are, which is how it would be without the hook.
    unsafe {
        cmd.pre_exec(|| {
            let _ = libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as i32);
            Ok(())
        });
    }
}
