//! The cgroup v1 memory group `lowmem` runs the node and the CLI in, and
//! what it reads of them: the group's counters and each process's
//! `/proc/PID/status`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Where cgroup v1's memory controller is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/memory";

/// One process's memory, from /proc/PID/status.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ProcMem {
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// Highest anonymous resident memory sampled (`RssAnon`), KiB.
    pub peak_anon_kib: u64,
    /// Highest file-backed resident memory sampled (`RssFile`: mostly the
    /// binary's pages), KiB.
    pub peak_file_kib: u64,
}

/// A cgroup v1 memory group, removed when dropped (once empty).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Make a new group under [`CGROUP_ROOT`].
    ///
    /// # Errors
    /// No writable cgroup v1 memory controller here.
    pub fn create(name: &str) -> Result<Cgroup> {
        let root = Path::new(CGROUP_ROOT);
        if !root.join("memory.limit_in_bytes").exists() {
            bail!("no cgroup v1 memory controller at {CGROUP_ROOT}");
        }
        let path = root.join(name);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Cgroup { path })
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        std::fs::write(self.path.join(file), value)
            .with_context(|| format!("writing {value} to {file}"))
    }

    fn read(&self, file: &str) -> Result<String> {
        std::fs::read_to_string(self.path.join(file)).with_context(|| format!("reading {file}"))
    }

    pub(crate) fn read_u64(&self, file: &str) -> u64 {
        self.read(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A `key value` line of `file`.
    pub(crate) fn field(&self, file: &str, key: &str) -> u64 {
        self.read(file)
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Set the limit (`None`: none), after resetting the peak and the
    /// failure count.
    ///
    /// # Errors
    /// The kernel refused the limit (usage cannot be reclaimed below it).
    pub fn limit(&self, mib: Option<u64>) -> Result<()> {
        let v = mib.map_or("-1".to_string(), |m| (m << 20).to_string());
        self.write("memory.limit_in_bytes", &v)?;
        self.write("memory.max_usage_in_bytes", "0")?;
        self.write("memory.failcnt", "0")
    }

    /// OOM kills in the group so far.
    pub fn oom_kills(&self) -> u64 {
        self.field("memory.oom_control", "oom_kill")
    }

    /// A command run inside the group from its first instruction on.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo $$ > \"$GV_CGROUP/cgroup.procs\" && exec \"$@\"")
            .arg("sh")
            .arg(program)
            .env("GV_CGROUP", &self.path);
        c
    }

    fn procs(&self) -> usize {
        self.read("cgroup.procs")
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // A process just killed leaves the group once it is reaped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.procs() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(e) = std::fs::remove_dir(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

/// `VmHWM`, `RssAnon` and `RssFile` of process `pid`, KiB.
fn proc_mem(pid: u32) -> Option<(u64, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((kib("VmHWM:")?, kib("RssAnon:")?, kib("RssFile:")?))
}

impl ProcMem {
    pub(crate) fn sample(&mut self, pid: u32) {
        if let Some((hwm, anon, file)) = proc_mem(pid) {
            self.peak_rss_kib = self.peak_rss_kib.max(hwm);
            self.peak_anon_kib = self.peak_anon_kib.max(anon);
            self.peak_file_kib = self.peak_file_kib.max(file);
        }
    }
}
