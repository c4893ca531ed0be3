//! Helpers shared by the process-level tests: start `grapevine` commands,
//! wait on conditions with deadlines, read a running node's state.

#![allow(dead_code)]

pub use std::process::Command;

/// The `grapevine` binary under test (`GRAPEVINE_TEST_BIN` runs the tests
/// against another build, as when showing that a test fails on old code).
pub fn grapevine() -> Command {
    match std::env::var_os("GRAPEVINE_TEST_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_grapevine")),
    }
}

pub struct Running(pub std::process::Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run grapevine");
    assert!(
        out.status.success(),
        "{cmd:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `grapevine put FILE PARAMS --node DIR`: the capability it printed.
pub fn put_cap(dir: &std::path::Path, file: &std::path::Path, params: &[&str]) -> String {
    ok(grapevine()
        .arg("put")
        .arg(file)
        .args(params)
        .arg("--node")
        .arg(dir))
    .trim()
    .to_string()
}

/// Wait for `child` to exit, at most `secs` (then kill it and fail,
/// saying `what` it did instead); its output.
pub fn exit_within(mut child: std::process::Child, secs: u64, what: &str) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `grapevine init` n nodes at `{net}.1` ... `{net}.n` (port 7946) under
/// `root`, each seeding to the first.
pub fn init_nodes(root: &std::path::Path, net: &str, n: usize) -> Vec<std::path::PathBuf> {
    let dirs: Vec<_> = (1..=n).map(|i| root.join(format!("node{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        let mut c = grapevine();
        c.arg("init").arg(d).args([
            "--listen",
            &format!("{net}.{}:7946", i + 1),
            "--nickname",
            &format!("node{}", i + 1),
        ]);
        if i > 0 {
            c.args(["--seed", &format!("{net}.1:7946")]);
        }
        ok(&mut c);
    }
    dirs
}

/// A grid of `n` running nodes at `{net}.1` ... `{net}.n`, each seeing
/// the others alive; `edit` may change each node's config.toml text first.
pub struct Grid {
    pub root: tempfile::TempDir,
    pub dirs: Vec<std::path::PathBuf>,
    pub nodes: Vec<Running>,
}

pub fn grid(net: &str, n: usize, edit: impl Fn(usize, String) -> String) -> Grid {
    let root = tempfile::tempdir().unwrap();
    let dirs = init_nodes(root.path(), net, n);
    for (i, d) in dirs.iter().enumerate() {
        let cfg = d.join("config.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, edit(i, text)).unwrap();
    }
    let nodes = run_nodes(&dirs);
    wait_for("every node sees every other alive", 60, || {
        dirs.iter().all(|d| {
            peers(d).is_some_and(|m| m.iter().filter(|r| r["state"] == "alive").count() == n - 1)
        })
    });
    Grid { root, dirs, nodes }
}

/// Deterministic test bytes.
pub fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// Run and return (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run grapevine");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `grapevine run` each directory, logs discarded.
pub fn run_nodes(dirs: &[std::path::PathBuf]) -> Vec<Running> {
    dirs.iter()
        .map(|d| {
            Running(
                grapevine()
                    .arg("run")
                    .arg(d)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect()
}

/// `grapevine check CAP ARGS --node DIR`: (exit code, stdout, stderr).
pub fn check(cap: &str, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = grapevine()
        .arg("check")
        .arg(cap)
        .args(args)
        .arg("--node")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` (none if it does not exist).
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// The share files a node in `dir` stores.
pub fn share_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walk(&dir.join("storage").join("shares"))
}

pub fn status(dir: &std::path::Path) -> Option<serde_json::Value> {
    let out = grapevine()
        .args(["status", "--json", "--node"])
        .arg(dir)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

pub fn members(dir: &std::path::Path) -> Option<Vec<serde_json::Value>> {
    let out = grapevine()
        .args(["members", "--json", "--node"])
        .arg(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()?
        .as_array()
        .cloned()
}

/// The other members a running node sees (its own row left out).
pub fn peers(dir: &std::path::Path) -> Option<Vec<serde_json::Value>> {
    Some(
        members(dir)?
            .into_iter()
            .filter(|r| r["self"] != true)
            .collect(),
    )
}

/// Whether this run is CI's (`CI=true`, as CI sets it; `CI=1` too).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A test that cannot run in this environment, for `why`: under CI that is
/// a failure (CI must run every test); elsewhere it says so and the caller
/// returns (the test passes as skipped).
pub fn cannot_run(why: &str) {
    assert!(!under_ci(), "this test cannot run here and CI=true: {why}");
    eprintln!("SKIPPED: {why}");
}

/// Send signal `sig` (a name: `TERM`, `STOP`, ...) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
}
