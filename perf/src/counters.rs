//! Process counters around a benchmark phase, from /proc (Linux) and the
//! counting allocator: CPU split into user and system time, page faults,
//! context switches (voluntary: a thread waited; involuntary: the
//! scheduler took its core away), threads, and allocations. Where a put's
//! time goes on a slow run against a fast one shows in these before any
//! profiler is needed. Where /proc is missing the figures are zero.

use serde::Serialize;

use crate::alloc;

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    user_s: f64,
    system_s: f64,
    minor_faults: u64,
    major_faults: u64,
    voluntary: u64,
    involuntary: u64,
    threads: u64,
    allocs: u64,
    large_allocs: u64,
    steal_s: f64,
    reported_kib: Option<u64>,
}

/// Where a guest kernel with free page reporting says how much free memory
/// it has handed back to its host so far (KiB). The kernels of the
/// machines this project is measured on export it; most kernels do not.
const REPORTED_KIB: &str = "/sys/module/page_reporting/parameters/reported_kib";

/// What changed between two snapshots.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Delta {
    /// User CPU seconds.
    pub user_s: f64,
    /// System (kernel) CPU seconds.
    pub system_s: f64,
    /// Minor page faults (pages first touched, mostly fresh allocations).
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Voluntary context switches of the threads alive at the end (a
    /// thread blocked: waited for work, a lock, I/O).
    pub voluntary_switches: u64,
    /// Involuntary context switches (a runnable thread lost its core).
    pub involuntary_switches: u64,
    /// Threads at the end.
    pub threads: u64,
    /// Heap allocations.
    pub allocs: u64,
    /// Heap allocations of 64 KiB or more.
    pub large_allocs: u64,
    /// Seconds the hypervisor ran something else while this machine's
    /// virtual cores were ready to run (steal time, all cores, from
    /// /proc/stat): a slow run with steal was slowed by the host.
    pub steal_s: f64,
    /// Free memory the guest kernel handed back to the host meanwhile
    /// (free page reporting), KiB, where the kernel says ([`REPORTED_KIB`];
    /// `None` elsewhere). Memory handed back is backed again by the host
    /// when next written: a phase that writes into memory freed shortly
    /// before pays for what was handed back in between.
    pub reported_to_host_kib: Option<u64>,
}

impl Snapshot {
    /// The counters now.
    pub fn now() -> Snapshot {
        let mut s = Snapshot {
            allocs: alloc::allocs(),
            large_allocs: alloc::large_allocs(),
            ..Snapshot::default()
        };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            let f = stat_fields(&stat);
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            s.minor_faults = n(7);
            s.major_faults = n(9);
            s.user_s = n(11) as f64 / 100.0;
            s.system_s = n(12) as f64 / 100.0;
            s.threads = n(17);
        }
        if let Some(ticks) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| steal_ticks(&t))
        {
            s.steal_s = ticks as f64 / 100.0;
        }
        s.reported_kib = std::fs::read_to_string(REPORTED_KIB)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                if let Ok(status) = std::fs::read_to_string(t.path().join("status")) {
                    let (v, i) = switches(&status);
                    s.voluntary += v;
                    s.involuntary += i;
                }
            }
        }
        s
    }

    /// What changed from `self` to `later`.
    pub fn delta(&self, later: &Snapshot) -> Delta {
        Delta {
            user_s: later.user_s - self.user_s,
            system_s: later.system_s - self.system_s,
            minor_faults: later.minor_faults.saturating_sub(self.minor_faults),
            major_faults: later.major_faults.saturating_sub(self.major_faults),
            // Threads that exited take their switches with them: never
            // below zero.
            voluntary_switches: later.voluntary.saturating_sub(self.voluntary),
            involuntary_switches: later.involuntary.saturating_sub(self.involuntary),
            threads: later.threads,
            allocs: later.allocs.saturating_sub(self.allocs),
            large_allocs: later.large_allocs.saturating_sub(self.large_allocs),
            steal_s: (later.steal_s - self.steal_s).max(0.0),
            reported_to_host_kib: self
                .reported_kib
                .zip(later.reported_kib)
                .map(|(a, b)| b.saturating_sub(a)),
        }
    }
}

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces and parentheses): index 0 is the state (the line's 3rd field).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

/// Steal ticks of all cores from /proc/stat (the `cpu` line's eighth
/// number: user nice system idle iowait irq softirq steal).
fn steal_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

/// (voluntary, involuntary) context switches from a task's status file.
fn switches(status: &str) -> (u64, u64) {
    let mut v = (0, 0);
    for line in status.lines() {
        let num = |l: &str| {
            l.split(':')
                .nth(1)
                .and_then(|x| x.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("voluntary_ctxt_switches:") {
            v.0 = num(line);
        } else if line.starts_with("nonvoluntary_ctxt_switches:") {
            v.1 = num(line);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_are_parsed_by_field() {
        // A command name with a space and a parenthesis in it.
        let stat = "42 (a b) c) S 1 2 3 4 5 6 700 8 9 10 1234 567 0 0 20 0 7 0";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!(f[7], "700"); // minflt
        assert_eq!(f[9], "9"); // majflt
        assert_eq!(f[11], "1234"); // utime
        assert_eq!(f[12], "567"); // stime
        assert_eq!(f[17], "7"); // num_threads
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t15\nnonvoluntary_ctxt_switches:\t4\n";
        assert_eq!(switches(status), (15, 4));
        let proc_stat =
            "cpu  573039 183 167363 344300 14158 0 6674 4227 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(steal_ticks(proc_stat), Some(4227));
        assert_eq!(steal_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(steal_ticks("cpu  1 2 3\n"), None);
        assert_eq!(switches("garbage"), (0, 0));
    }

    #[test]
    fn a_delta_counts_this_process_work() {
        let a = Snapshot::now();
        // 64 MiB (above any malloc threshold: fresh pages from the kernel),
        // every page written; and 100 allocations of 64 KiB.
        let big = vec![1u8; 64 << 20];
        let small: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 64 << 10]).collect();
        std::hint::black_box((&big, &small));
        let b = Snapshot::now();
        let d = a.delta(&b);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(d.minor_faults >= 16_000, "{d:?}");
            assert!(d.threads >= 1, "{d:?}");
        } else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no /proc under CI"
            );
        }
        // The test binary has the counting allocator too (other tests may
        // allocate at the same time: at least ours are seen).
        assert!(d.allocs >= 102, "{d:?}");
        assert!(d.large_allocs >= 101, "{d:?}");
        assert_eq!(
            d.reported_to_host_kib.is_some(),
            std::path::Path::new(REPORTED_KIB).exists(),
            "{d:?}"
        );
    }

    #[test]
    fn memory_handed_to_the_host_is_counted_where_the_kernel_says() {
        let at = |kib| Snapshot {
            reported_kib: kib,
            ..Snapshot::default()
        };
        let d = |a, b| at(a).delta(&at(b)).reported_to_host_kib;
        assert_eq!(d(Some(1000), Some(5096)), Some(4096));
        assert_eq!(d(Some(5096), Some(1000)), Some(0), "a counter reset");
        assert_eq!(d(None, Some(1000)), None);
        assert_eq!(d(Some(1000), None), None);
    }
}
