//! How much more memory this process may use: what the system has
//! available, and, where the process runs in a memory cgroup with a limit
//! (a container, a systemd slice, `grapevine-perf lowmem`'s group), that
//! limit less what the group already uses. Inside a 512 MiB container on
//! a 24 GiB machine `MemAvailable` says gigabytes, and a benchmark that
//! trusted it would be killed by the group's OOM killer.
//!
//! Both cgroup versions are read: v1's memory controller
//! (`hierarchical_memory_limit` in `memory.stat` is the tightest limit of
//! the group and its ancestors; `memory.usage_in_bytes`), and v2's unified
//! hierarchy (`memory.max` and `memory.current` of the group and each
//! ancestor, the tightest room among them). Usage counts page cache the
//! kernel could reclaim, so the room is underestimated, never over: the
//! safe side for deciding how much to allocate. The parsing is pure and
//! tested on text; only [`available_memory`] reads the files.

use std::path::{Path, PathBuf};

/// A limit at or above this is "no limit" (cgroup v1 writes
/// `9223372036854771712`, the largest page-aligned `i64`).
const UNLIMITED: u64 = 1 << 62;

/// Bytes of memory this process may still use: `MemAvailable`, or its
/// memory cgroup's room if that is smaller. `None` if neither is known.
pub fn available_memory() -> Option<u64> {
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t));
    let group = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| memory_cgroup(&t))
        .and_then(|g| g.room(Path::new("/sys/fs/cgroup")));
    tightest(system, group)
}

/// The smaller of two bounds, either of which may be unknown.
fn tightest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` of `/proc/meminfo`'s text, bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory cgroup a process is in, from its `/proc/PID/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemoryCgroup {
    /// In cgroup v1's memory controller, at this path under its mount.
    V1(String),
    /// In cgroup v2's unified hierarchy, at this path.
    V2(String),
}

/// Which memory cgroup `/proc/self/cgroup`'s text names: the v1 memory
/// controller's line if there is one, else the v2 line (`0::/path`).
fn memory_cgroup(text: &str) -> Option<MemoryCgroup> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(MemoryCgroup::V1(path.to_string()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(MemoryCgroup::V2(path.to_string()));
        }
    }
    v2
}

/// The room under a limit: `limit` less `usage` (texts of the cgroup
/// files); `None` for no limit ("max", or v1's huge number) or text that
/// does not parse.
fn room(limit: &str, usage: &str) -> Option<u64> {
    let limit = limit.trim();
    if limit == "max" {
        return None;
    }
    let limit: u64 = limit.parse().ok()?;
    if limit >= UNLIMITED {
        return None;
    }
    let usage: u64 = usage.trim().parse().ok()?;
    Some(limit.saturating_sub(usage))
}

/// A `key value` line of a v1 `memory.stat`.
fn stat_field<'a>(stat: &'a str, key: &str) -> Option<&'a str> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then_some(v)
    })
}

impl MemoryCgroup {
    /// The room left in this group (and its ancestors) with cgroupfs
    /// mounted at `root` (v1's memory controller at `root/memory`);
    /// `None` if there is no limit or the files cannot be read.
    fn room(&self, root: &Path) -> Option<u64> {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok();
        match self {
            MemoryCgroup::V1(path) => {
                let dir = under(&root.join("memory"), path);
                let stat = read(dir.join("memory.stat"))?;
                let limit = stat_field(&stat, "hierarchical_memory_limit")?;
                room(limit, &read(dir.join("memory.usage_in_bytes"))?)
            }
            MemoryCgroup::V2(path) => {
                let mut best = None;
                let mut dir = under(root, path);
                // The group, then each ancestor below the root (the root
                // has no memory.max).
                while dir.starts_with(root) && dir != root {
                    if let (Some(max), Some(current)) = (
                        read(dir.join("memory.max")),
                        read(dir.join("memory.current")),
                    ) {
                        best = tightest(best, room(&max, &current));
                    }
                    if !dir.pop() {
                        break;
                    }
                }
                best
            }
        }
    }
}

/// `path` (absolute, as `/proc/self/cgroup` writes it) under `mount`.
fn under(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cgroup_is_read_from_either_version() {
        let v1 = "9:name=systemd:/\n4:memory:/process_api/10b1\n0::/\n1:cpu:/\n";
        assert_eq!(
            memory_cgroup(v1),
            Some(MemoryCgroup::V1("/process_api/10b1".into()))
        );
        let joined = "5:cpu,memory,pids:/a/b\n";
        assert_eq!(memory_cgroup(joined), Some(MemoryCgroup::V1("/a/b".into())));
        let v2 = "0::/user.slice/user-0.slice/session-1.scope\n";
        assert_eq!(
            memory_cgroup(v2),
            Some(MemoryCgroup::V2(
                "/user.slice/user-0.slice/session-1.scope".into()
            ))
        );
        assert_eq!(memory_cgroup("4:cpu:/x\ngarbage\n"), None);
        assert_eq!(memory_cgroup(""), None);
    }

    #[test]
    fn the_room_is_the_limit_less_the_usage_and_no_limit_is_none() {
        assert_eq!(room("536870912\n", "134217728\n"), Some(384 << 20));
        assert_eq!(room("100", "150"), Some(0), "over the limit: no room");
        assert_eq!(room("max\n", "5"), None);
        assert_eq!(room("9223372036854771712\n", "5"), None);
        assert_eq!(room("12x", "5"), None);
        assert_eq!(room("100", ""), None);
        assert_eq!(tightest(Some(5), Some(3)), Some(3));
        assert_eq!(tightest(None, Some(3)), Some(3));
        assert_eq!(tightest(Some(5), None), Some(5));
        assert_eq!(tightest(None, None), None);
        let meminfo = "MemTotal: 100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(mem_available(meminfo), Some(2 << 20));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    /// Both versions' files laid out in a directory as cgroupfs lays them
    /// out: v1's hierarchical limit, v2's tightest group on the way up.
    #[test]
    fn the_room_is_read_from_the_group_files() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/ci/job");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(
            v1.join("memory.stat"),
            "cache 0\nhierarchical_memory_limit 268435456\n",
        )
        .unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "67108864\n").unwrap();
        let g = MemoryCgroup::V1("/ci/job".into());
        assert_eq!(g.room(root.path()), Some(192 << 20));

        let leaf = root.path().join("slice/scope");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        std::fs::write(leaf.join("memory.current"), "1000\n").unwrap();
        let slice = root.path().join("slice");
        std::fs::write(slice.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(slice.join("memory.current"), "805306368\n").unwrap();
        let g = MemoryCgroup::V2("/slice/scope".into());
        assert_eq!(
            g.room(root.path()),
            Some(256 << 20),
            "the slice's limit binds"
        );
        let none = MemoryCgroup::V2("/elsewhere".into());
        assert_eq!(none.room(root.path()), None);
        assert!(available_memory().is_some_and(|a| a > 0));
    }
}
