//! Process figures read from /proc (Linux): RSS, CPU time, socket memory.

use std::fs;

/// Resident set size of this process in bytes (0 where /proc is missing).
pub fn rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

fn page_size() -> u64 {
    4096
}

/// User + system CPU seconds used by this process so far.
pub fn cpu_seconds() -> f64 {
    cpu_of("self")
}

/// User + system CPU seconds used by process `pid` (a number or "self").
pub fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Kernel TCP socket buffer memory in bytes, from /proc/net/sockstat.
pub fn tcp_socket_mem_bytes() -> u64 {
    fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?;
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                if w == "mem" {
                    return it.next()?.parse::<u64>().ok();
                }
            }
            None
        })
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}
