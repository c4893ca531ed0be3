//! CPU time by job: each job of a grid worker runs on threads of its own
//! name (the gossip, storage and client runtimes, their blocking pools
//! included; the harness on the main thread), so the kernel's per-thread
//! counters in `/proc/self/task/*/stat` say what each job costs. The
//! runtimes keep idle blocking threads alive for the whole run, so no
//! thread's time is lost with the thread; whatever is not on a named
//! thread is reported as `other`. [`Snap`] is the workers' counters at
//! one instant; two of them make a [`Window`].

use std::collections::BTreeMap;
use std::time::Instant;

use crate::grid::report::Window;

/// Thread names of the jobs (at most 15 bytes: the kernel's limit).
pub const JOBS: [&str; 3] = ["gv-gossip", "gv-storage", "gv-client"];

/// CPU seconds by job name, read now. Threads named after none of
/// [`JOBS`] count as `harness` (the worker's main thread is named so by
/// the kernel after the binary) or `other`.
pub fn by_job(total: f64) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        if let Some((name, secs)) = parse_stat(&stat) {
            let job = JOBS
                .iter()
                .find(|j| name.starts_with(**j))
                .map(|j| j.trim_start_matches("gv-").to_string())
                .unwrap_or_else(|| "harness".to_string());
            *out.entry(job).or_default() += secs;
        }
    }
    let named: f64 = out.values().sum();
    out.insert("other".into(), (total - named).max(0.0));
    out
}

/// A snapshot of the workers' cumulative counters.
#[derive(Debug, Clone, Default)]
pub struct Snap {
    /// When.
    pub at: Option<Instant>,
    /// CPU seconds, all workers.
    pub cpu: f64,
    /// CPU seconds by job.
    pub jobs: BTreeMap<String, f64>,
    /// Gossip bytes sent.
    pub bytes: u64,
    /// Gossip datagrams sent.
    pub dgs: u64,
}

impl Snap {
    /// What happened between this snapshot and a later one, over `nodes`.
    pub fn window(&self, later: &Snap, nodes: usize) -> Window {
        let (a, b) = (self, later);
        let secs = match (a.at, b.at) {
            (Some(x), Some(y)) => y.duration_since(x).as_secs_f64().max(1e-3),
            _ => 1e-3,
        };
        let n = nodes.max(1) as f64;
        Window {
            secs,
            cores: (b.cpu - a.cpu) / secs,
            cores_by_job: b
                .jobs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        // A job's share is never below zero (`other` is
                        // what is left of a total read at another instant).
                        ((v - a.jobs.get(k).copied().unwrap_or(0.0)) / secs).max(0.0),
                    )
                })
                .collect(),
            bytes_per_node_s: b.bytes.saturating_sub(a.bytes) as f64 / secs / n,
            datagrams_per_node_s: b.dgs.saturating_sub(a.dgs) as f64 / secs / n,
        }
    }
}

/// (thread name, user + system seconds) from a `stat` line.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let f: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((name, (ticks(11)? + ticks(12)?) / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_name_and_the_time() {
        let line = "1234 (gv-storage) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("gv-storage", 3.0)));
        let odd = "9 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 1 2 0";
        assert_eq!(parse_stat(odd), Some(("a) b (c)", 0.03)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_busy_named_thread_is_charged_to_its_job() {
        let h = std::thread::Builder::new()
            .name("gv-client".into())
            .spawn(|| {
                // Spin until the kernel has charged this thread 0.2 s
                // (whatever else the machine is doing), then look.
                let own = || {
                    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                    parse_stat(&s).unwrap().1
                };
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                let mut x = 0u64;
                while own() < 0.2 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "never got 0.2 s of CPU"
                    );
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                    }
                }
                by_job(node_cpu())
            })
            .unwrap();
        let jobs = h.join().unwrap();
        assert!(jobs["client"] >= 0.2, "{jobs:?}");
        assert!(jobs["other"] >= 0.0);
    }

    fn node_cpu() -> f64 {
        grapevine_node::procfs::cpu_seconds()
    }
}
