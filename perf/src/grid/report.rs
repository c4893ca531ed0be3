//! The grid's report: figures the harness measured ([`Measured`]) and
//! those made from the operation records ([`build`]: percentiles per
//! operation and size, overall, cold and warm; failures, operations on
//! files beyond repair, the read-back), printed as text or JSON.
//!
//! Latency percentiles are over the workload's successful operations
//! (failures are counted, not timed; the read-back is not part of the
//! workload). Percentiles are nearest-rank.

use std::collections::BTreeMap;

use serde::Serialize;

use grapevine_storage::client::ListingTimesSnapshot;
use grapevine_storage::latency::Snapshot;

use crate::grid::proto::{OpRecord, ServerListingTimes};

/// p50, p95 and p99 of a set of latencies, and how many there were.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Pcts {
    /// Median, ms.
    pub p50: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Operations.
    pub n: usize,
}

impl Pcts {
    /// From a histogram (each quantile good to its bucket's width).
    pub fn of(times: &Snapshot) -> Pcts {
        let ms = |q| times.quantile_micros(q).unwrap_or(0.0) / 1000.0;
        Pcts {
            p50: ms(0.5),
            p95: ms(0.95),
            p99: ms(0.99),
            n: times.total() as usize,
        }
    }
}

/// Listing times over the steady window, ms, by where they were measured
/// and how the listing was asked.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ListingLatency {
    /// Clients, from asking to the answer opened: `datagram`, `tcp`,
    /// `session`.
    pub client: BTreeMap<String, Pcts>,
    /// Servers: `datagram` (from the node's socket reading the query to
    /// the answer sent), `handover` (of that, the part before the share
    /// server took it), `session` (from the request read to the answer
    /// sent), `tcp` (from the accept to the answer written).
    pub server: BTreeMap<String, Pcts>,
}

impl ListingLatency {
    /// From the histograms.
    pub fn of(client: &ListingTimesSnapshot, server: &ServerListingTimes) -> Self {
        let map = |v: &[(&str, &Snapshot)]| {
            v.iter()
                .map(|(k, s)| (k.to_string(), Pcts::of(s)))
                .collect()
        };
        ListingLatency {
            client: map(&[
                ("datagram", &client.datagram),
                ("tcp", &client.tcp),
                ("session", &client.session),
            ]),
            server: map(&[
                ("datagram", &server.datagram),
                ("handover", &server.handover),
                ("session", &server.session),
                ("tcp", &server.tcp),
            ]),
        }
    }
}

/// `{op: {size: percentiles}}`.
pub type Table = BTreeMap<String, BTreeMap<String, Pcts>>;

/// The nearest-rank `p`th percentile of `sorted` (ascending; 0 if empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "4KiB", "1MiB", or bytes.
pub fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

fn pcts(mut v: Vec<f64>) -> Pcts {
    v.sort_by(f64::total_cmp);
    Pcts {
        p50: percentile(&v, 50.0),
        p95: percentile(&v, 95.0),
        p99: percentile(&v, 99.0),
        n: v.len(),
    }
}

/// Latency percentiles of the successful workload operations `keep` keeps.
pub fn table(ops: &[OpRecord], keep: impl Fn(&OpRecord) -> bool) -> Table {
    let mut by: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.ok && !o.readback && keep(o)) {
        by.entry((o.op.clone(), o.size)).or_default().push(o.ms);
    }
    let mut t = Table::new();
    for ((op, size), v) in by {
        t.entry(op).or_default().insert(size_label(size), pcts(v));
    }
    t
}

/// CPU of one window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Length, seconds.
    pub secs: f64,
    /// Cores used by all workers.
    pub cores: f64,
    /// Cores by job (gossip, storage, client, harness, other).
    pub cores_by_job: BTreeMap<String, f64>,
    /// Gossip bytes sent per node per second.
    pub bytes_per_node_s: f64,
    /// Gossip datagrams sent per node per second.
    pub datagrams_per_node_s: f64,
}

/// What the harness measured itself.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Nodes.
    pub nodes: usize,
    /// Worker processes.
    pub procs: usize,
    /// Client nodes.
    pub clients: usize,
    /// Churn, percent per step.
    pub churn_pct: f64,
    /// Seconds from the first start to the last.
    pub start_span_s: f64,
    /// Seconds from the last start until every node held every record.
    pub converge_after_last_start_s: Option<f64>,
    /// Peak of the workers' RSS over the nodes.
    pub rss_per_node_bytes: f64,
    /// The same at the end of the idle window.
    pub rss_per_node_idle_bytes: f64,
    /// The idle window.
    pub idle: Window,
    /// The steady window.
    pub steady: Window,
    /// Largest storage sessions open at one server, any time.
    pub sessions_open_per_node_max: u64,
    /// Storage sessions open per node, mean over the steady window.
    pub sessions_open_per_node_mean: f64,
    /// Largest client pool, any time.
    pub client_sessions_open_max: u64,
    /// The pools' cap.
    pub client_sessions_cap: usize,
    /// Storage sessions open after the settle window, all servers.
    pub sessions_open_after_idle: u64,
    /// Client pool sessions open after the settle window, all clients.
    pub client_sessions_open_after_idle: u64,
    /// Sessions the client pools opened during the workload.
    pub handshakes: u64,
    /// Listing times, clients', over the workload.
    pub client_listing_times: ListingTimesSnapshot,
    /// Listing times, servers', over the workload.
    pub server_listing_times: ServerListingTimes,
    /// Dead verdicts about nodes that were up.
    pub false_dead_verdicts: u64,
    /// Some of them: (observer index, subject id).
    pub false_dead_examples: Vec<(usize, String)>,
    /// Dead verdicts about a life of a node that had ended, reached after
    /// it came back (not false: see `grid::verdicts`).
    pub dead_verdicts_on_ended_lives: u64,
    /// Dead verdicts, all.
    pub dead_verdicts: u64,
    /// Suspect verdicts.
    pub suspect_verdicts: u64,
    /// Churn steps taken.
    pub churn_steps: usize,
    /// Crashes.
    pub nodes_crashed: usize,
    /// Graceful leaves.
    pub nodes_left: usize,
    /// Seconds until every running node saw each step's nodes dead or left.
    pub detect_s_per_step: Vec<Option<f64>>,
    /// Seconds from the last return until every node saw every node alive.
    pub all_alive_after_return_s: Option<f64>,
    /// Node starts that failed.
    pub start_failures: u64,
    /// Files stored.
    pub files_stored: usize,
}

/// The report (text, or JSON with these keys).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always "grapevine".
    pub system: &'static str,
    /// Nodes.
    pub nodes: usize,
    /// Worker processes.
    pub procs: usize,
    /// Client nodes.
    pub clients: usize,
    /// Churn, percent per step.
    pub churn_pct: f64,
    /// Seconds from the first start to the last.
    pub start_span_s: f64,
    /// Seconds from the last start until every node held every record.
    pub converge_after_last_start_s: Option<f64>,
    /// Peak RSS of the workers over the nodes, storage included.
    pub rss_per_node_bytes: f64,
    /// The same, at the end of the idle window.
    pub rss_per_node_idle_bytes: f64,
    /// Cores, idle grid.
    pub idle_cores: f64,
    /// Cores by job, idle grid.
    pub idle_cpu_by_job: BTreeMap<String, f64>,
    /// Gossip bytes per node per second, idle grid.
    pub idle_bytes_per_node_s: f64,
    /// Seconds of the steady window.
    pub steady_window_s: f64,
    /// Cores, steady window (workload and churn).
    pub steady_cores: f64,
    /// Cores by job, steady window.
    pub steady_cpu_by_job: BTreeMap<String, f64>,
    /// Gossip bytes per node per second, steady window.
    pub steady_bytes_per_node_s: f64,
    /// Gossip datagrams per node per second, steady window.
    pub steady_datagrams_per_node_s: f64,
    /// Largest storage sessions open at one server, any time.
    pub sessions_open_per_node_max: u64,
    /// Storage sessions open per node, mean over the steady window.
    pub sessions_open_per_node_mean: f64,
    /// Largest client pool, any time.
    pub client_sessions_open_max: u64,
    /// The client pools' cap.
    pub client_sessions_cap: usize,
    /// Storage sessions still open after the settle window.
    pub sessions_open_after_idle: u64,
    /// Client pool sessions still open after the settle window.
    pub client_sessions_open_after_idle: u64,
    /// Sessions opened per workload operation.
    pub handshakes_per_op_mean: f64,
    /// Listings (servers asked without a session) per workload operation.
    pub listings_per_op_mean: f64,
    /// Of those listings, the share answered in datagrams (the rest over
    /// TCP).
    pub listings_in_datagrams: f64,
    /// Listing times (of every operation, warm and cold), by where they
    /// were measured and how they were asked.
    pub listing_ms: ListingLatency,
    /// Workload operations.
    pub ops: usize,
    /// Of which warm (a session held to every server used).
    pub ops_warm: usize,
    /// Cold (none held).
    pub ops_cold: usize,
    /// Mixed.
    pub ops_mixed: usize,
    /// 99th percentile of how late operations started against schedule.
    pub start_lag_ms_p99: f64,
    /// Latency, all successful operations.
    pub latency_ms: Table,
    /// Latency, cold operations.
    pub cold_latency_ms: Table,
    /// Latency, warm operations.
    pub warm_latency_ms: Table,
    /// Failed operations (not counting those on files beyond repair).
    pub failed_ops: usize,
    /// Some failures: "op size: error".
    pub failed_examples: Vec<String>,
    /// Operations on files with fewer than k shares up (counted apart).
    pub ops_on_files_beyond_repair: usize,
    /// Files stored.
    pub files_stored: usize,
    /// Files read back at the end.
    pub files_read_back: usize,
    /// Files not read back intact (or not read back at all).
    pub files_unreadable_at_end: usize,
    /// Some of them.
    pub unreadable_examples: Vec<String>,
    /// Dead verdicts about nodes that were up.
    pub false_dead_verdicts: u64,
    /// Some of them: (observer index, subject id).
    pub false_dead_examples: Vec<(usize, String)>,
    /// Dead verdicts about a life of a node that had ended, reached after
    /// it came back (not false: see `grid::verdicts`).
    pub dead_verdicts_on_ended_lives: u64,
    /// Dead verdicts, all.
    pub dead_verdicts: u64,
    /// Suspect verdicts (refuted ones included).
    pub suspect_verdicts: u64,
    /// Churn steps.
    pub churn_steps: usize,
    /// Crashes.
    pub nodes_crashed: usize,
    /// Graceful leaves.
    pub nodes_left: usize,
    /// Worst churn step: seconds until every running node saw its nodes
    /// dead or left (null if some step was never seen whole).
    pub detect_s: Option<f64>,
    /// Each step's.
    pub detect_s_per_step: Vec<Option<f64>>,
    /// Seconds from the last return until every node saw every node alive.
    pub all_alive_after_return_s: Option<f64>,
    /// Node starts that failed.
    pub start_failures: u64,
}

/// The report from the harness's figures and the operation records.
pub fn build(m: Measured, ops: &[OpRecord]) -> Report {
    let work: Vec<&OpRecord> = ops.iter().filter(|o| !o.readback).collect();
    let back: Vec<&OpRecord> = ops.iter().filter(|o| o.readback).collect();
    let count = |c: &str| work.iter().filter(|o| o.class == c).count();
    let failed: Vec<&&OpRecord> = work.iter().filter(|o| !o.ok && !o.beyond_repair).collect();
    let describe = |o: &OpRecord| {
        format!(
            "{} {} (file {:x}): {}",
            o.op,
            size_label(o.size),
            o.file,
            o.error.as_deref().unwrap_or("?")
        )
    };
    let mut lags: Vec<f64> = work.iter().map(|o| o.lag_ms).collect();
    lags.sort_by(f64::total_cmp);
    let read_ok = back.iter().filter(|o| o.ok).count();
    let detect_s = if m.detect_s_per_step.iter().any(Option::is_none) {
        None
    } else {
        m.detect_s_per_step
            .iter()
            .flatten()
            .copied()
            .reduce(f64::max)
    };
    Report {
        system: "grapevine",
        nodes: m.nodes,
        procs: m.procs,
        clients: m.clients,
        churn_pct: m.churn_pct,
        start_span_s: m.start_span_s,
        converge_after_last_start_s: m.converge_after_last_start_s,
        rss_per_node_bytes: m.rss_per_node_bytes,
        rss_per_node_idle_bytes: m.rss_per_node_idle_bytes,
        idle_cores: m.idle.cores,
        idle_cpu_by_job: m.idle.cores_by_job,
        idle_bytes_per_node_s: m.idle.bytes_per_node_s,
        steady_window_s: m.steady.secs,
        steady_cores: m.steady.cores,
        steady_cpu_by_job: m.steady.cores_by_job,
        steady_bytes_per_node_s: m.steady.bytes_per_node_s,
        steady_datagrams_per_node_s: m.steady.datagrams_per_node_s,
        sessions_open_per_node_max: m.sessions_open_per_node_max,
        sessions_open_per_node_mean: m.sessions_open_per_node_mean,
        client_sessions_open_max: m.client_sessions_open_max,
        client_sessions_cap: m.client_sessions_cap,
        sessions_open_after_idle: m.sessions_open_after_idle,
        client_sessions_open_after_idle: m.client_sessions_open_after_idle,
        handshakes_per_op_mean: work.iter().map(|o| o.handshakes).sum::<u64>() as f64
            / work.len().max(1) as f64,
        listings_per_op_mean: work.iter().map(|o| o.listings).sum::<u64>() as f64
            / work.len().max(1) as f64,
        listings_in_datagrams: work.iter().map(|o| o.datagram_listings).sum::<u64>() as f64
            / work.iter().map(|o| o.listings).sum::<u64>().max(1) as f64,
        listing_ms: ListingLatency::of(&m.client_listing_times, &m.server_listing_times),
        ops: work.len(),
        ops_warm: count("warm"),
        ops_cold: count("cold"),
        ops_mixed: count("mixed"),
        start_lag_ms_p99: percentile(&lags, 99.0),
        latency_ms: table(ops, |_| true),
        cold_latency_ms: table(ops, |o| o.class == "cold"),
        warm_latency_ms: table(ops, |o| o.class == "warm"),
        failed_ops: failed.len(),
        failed_examples: failed.iter().take(10).map(|o| describe(o)).collect(),
        ops_on_files_beyond_repair: work.iter().filter(|o| o.beyond_repair).count(),
        files_stored: m.files_stored,
        files_read_back: read_ok,
        files_unreadable_at_end: m.files_stored.saturating_sub(read_ok),
        unreadable_examples: back
            .iter()
            .filter(|o| !o.ok)
            .take(10)
            .map(|o| describe(o))
            .collect(),
        false_dead_verdicts: m.false_dead_verdicts,
        false_dead_examples: m.false_dead_examples,
        dead_verdicts_on_ended_lives: m.dead_verdicts_on_ended_lives,
        dead_verdicts: m.dead_verdicts,
        suspect_verdicts: m.suspect_verdicts,
        churn_steps: m.churn_steps,
        nodes_crashed: m.nodes_crashed,
        nodes_left: m.nodes_left,
        detect_s,
        detect_s_per_step: m.detect_s_per_step,
        all_alive_after_return_s: m.all_alive_after_return_s,
        start_failures: m.start_failures,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} s"))
        .unwrap_or_else(|| "NOT REACHED".into())
}

fn jobs(j: &BTreeMap<String, f64>) -> String {
    j.iter()
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(name: &str, t: &Table) {
    println!("  {name} (ms: p50 / p95 / p99, n)");
    for (op, sizes) in t {
        for (size, p) in sizes {
            println!(
                "    {op:<6} {size:>6}  {:8.1} {:8.1} {:8.1}  {:>5}",
                p.p50, p.p95, p.p99, p.n
            );
        }
    }
}

/// Print the report as text.
pub fn print(r: &Report) {
    println!(
        "grapevine grid: {} nodes in {} process(es), {} clients, churn {}% per step",
        r.nodes, r.procs, r.clients, r.churn_pct
    );
    println!("  starts spread over             {:.1} s", r.start_span_s);
    println!(
        "  every record everywhere after  {} (from the last start)",
        opt(r.converge_after_last_start_s)
    );
    println!(
        "  RSS per node                   {:.0} KiB peak, {:.0} KiB idle",
        r.rss_per_node_bytes / 1024.0,
        r.rss_per_node_idle_bytes / 1024.0
    );
    println!(
        "  idle grid                      {:.3} cores ({}), {:.0} B/s gossip per node",
        r.idle_cores,
        jobs(&r.idle_cpu_by_job),
        r.idle_bytes_per_node_s
    );
    println!(
        "  steady window {:>4.0} s          {:.3} cores ({}), {:.0} B/s gossip per node",
        r.steady_window_s,
        r.steady_cores,
        jobs(&r.steady_cpu_by_job),
        r.steady_bytes_per_node_s
    );
    println!(
        "  storage sessions per node      max {}, mean {:.3}; after idle: {} open",
        r.sessions_open_per_node_max, r.sessions_open_per_node_mean, r.sessions_open_after_idle
    );
    println!(
        "  client pools                   max {} of {}; after idle: {} open",
        r.client_sessions_open_max, r.client_sessions_cap, r.client_sessions_open_after_idle
    );
    println!(
        "  operations                     {} ({} warm, {} cold, {} mixed), {:.2} handshakes each, start lag p99 {:.0} ms",
        r.ops, r.ops_warm, r.ops_cold, r.ops_mixed, r.handshakes_per_op_mean, r.start_lag_ms_p99
    );
    println!(
        "  listings                       {:.2} each, {:.1}% answered in datagrams",
        r.listings_per_op_mean,
        r.listings_in_datagrams * 100.0
    );
    for (side, times) in [
        ("client", &r.listing_ms.client),
        ("server", &r.listing_ms.server),
    ] {
        let line: Vec<String> = times
            .iter()
            .filter(|(_, p)| p.n > 0)
            .map(|(k, p)| format!("{k} {:.2}/{:.2}/{:.2} ({})", p.p50, p.p95, p.p99, p.n))
            .collect();
        println!(
            "  listing ms, {side:<6}           {}",
            if line.is_empty() {
                "none".to_string()
            } else {
                line.join(", ")
            }
        );
    }
    print_table("latency, all", &r.latency_ms);
    print_table("latency, cold", &r.cold_latency_ms);
    print_table("latency, warm", &r.warm_latency_ms);
    println!(
        "  failed operations              {} (and {} on files beyond repair)",
        r.failed_ops, r.ops_on_files_beyond_repair
    );
    for e in &r.failed_examples {
        println!("    {e}");
    }
    println!(
        "  files stored / read back / unreadable  {} / {} / {}",
        r.files_stored, r.files_read_back, r.files_unreadable_at_end
    );
    for e in &r.unreadable_examples {
        println!("    {e}");
    }
    println!(
        "  churn                          {} steps, {} crashed, {} left; seen by all after {} (worst step)",
        r.churn_steps,
        r.nodes_crashed,
        r.nodes_left,
        opt(r.detect_s)
    );
    println!(
        "  every node alive everywhere    {} after the last return",
        opt(r.all_alive_after_return_s)
    );
    println!(
        "  false dead verdicts            {} (of {} dead verdicts; {} suspect)",
        r.false_dead_verdicts, r.dead_verdicts, r.suspect_verdicts
    );
    for (obs, id) in &r.false_dead_examples {
        println!("    node {obs} declared {id} dead");
    }
    println!(
        "  dead verdicts on ended lives   {} (about a node's life before it came back)",
        r.dead_verdicts_on_ended_lives
    );
    if r.start_failures > 0 {
        println!("  node starts failed             {}", r.start_failures);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: &str, size: u64, ms: f64, class: &str, ok: bool) -> OpRecord {
        OpRecord {
            client: 0,
            op: op.into(),
            size,
            file: 1,
            start_ms: 0,
            lag_ms: 0.0,
            ms,
            class: class.into(),
            handshakes: if class == "cold" { 10 } else { 0 },
            listings: if op == "check" { 10 } else { 0 },
            datagram_listings: if op == "check" { 9 } else { 0 },
            servers: 10,
            ok,
            beyond_repair: false,
            readback: false,
            shares_found: None,
            error: (!ok).then(|| "broken".into()),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0], 0.0), 1.0);
    }

    #[test]
    fn sizes_are_labelled_as_the_issue_names_them() {
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(16 << 20), "16MiB");
        assert_eq!(size_label(1000), "1000B");
    }

    #[test]
    fn the_report_counts_failures_apart_from_files_beyond_repair() {
        let mut ops = vec![
            op("get", 4096, 10.0, "cold", true),
            op("get", 4096, 30.0, "warm", true),
            op("get", 4096, 20.0, "mixed", true),
            op("get", 4096, 99.0, "cold", false),
            op("put", 1 << 20, 50.0, "cold", true),
        ];
        let mut lost = op("check", 4096, 5.0, "cold", false);
        lost.beyond_repair = true;
        ops.push(lost);
        let mut back = op("get", 4096, 1.0, "warm", true);
        back.readback = true;
        ops.push(back.clone());
        back.ok = false;
        back.error = Some("content differs at byte 3".into());
        ops.push(back);
        let datagram = grapevine_storage::latency::Latencies::default();
        for us in [900, 1000, 1100, 20_000] {
            datagram.record(std::time::Duration::from_micros(us));
        }
        let client_listing_times = ListingTimesSnapshot {
            datagram: datagram.snapshot(),
            ..ListingTimesSnapshot::default()
        };
        let m = Measured {
            files_stored: 3,
            detect_s_per_step: vec![Some(3.0), Some(9.5)],
            client_listing_times,
            ..Measured::default()
        };
        let r = build(m, &ops);
        // Listing times from the histograms, to their buckets' width.
        let d = r.listing_ms.client["datagram"];
        assert_eq!(d.n, 4);
        assert!((0.89..1.16).contains(&d.p50), "{d:?}");
        assert!((19.0..24.0).contains(&d.p99), "{d:?}");
        assert_eq!(r.listing_ms.client["session"].n, 0);
        assert_eq!(r.listing_ms.server["handover"].n, 0);
        assert_eq!(r.ops, 6);
        assert_eq!((r.ops_warm, r.ops_cold, r.ops_mixed), (1, 4, 1));
        assert_eq!(r.failed_ops, 1);
        assert_eq!(r.ops_on_files_beyond_repair, 1);
        assert_eq!(r.failed_examples, vec!["get 4KiB (file 1): broken"]);
        // One read back intact, one not, one never read back.
        assert_eq!((r.files_read_back, r.files_unreadable_at_end), (1, 2));
        assert_eq!(r.detect_s, Some(9.5));
        let all = r.latency_ms["get"]["4KiB"];
        assert_eq!((all.n, all.p50, all.p99), (3, 20.0, 30.0));
        assert_eq!(r.cold_latency_ms["get"]["4KiB"].n, 1);
        assert_eq!(r.warm_latency_ms["get"]["4KiB"].p50, 30.0);
        assert!(!r.warm_latency_ms.contains_key("put"));
        assert!((r.handshakes_per_op_mean - 40.0 / 6.0).abs() < 1e-9);
        // One check, ten listings, nine of them in datagrams.
        assert!((r.listings_per_op_mean - 10.0 / 6.0).abs() < 1e-9);
        assert!((r.listings_in_datagrams - 0.9).abs() < 1e-9);
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "converge_after_last_start_s",
            "rss_per_node_bytes",
            "steady_cores",
            "steady_bytes_per_node_s",
            "sessions_open_per_node_max",
            "sessions_open_per_node_mean",
            "handshakes_per_op_mean",
            "listings_per_op_mean",
            "listings_in_datagrams",
            "listing_ms",
            "latency_ms",
            "cold_latency_ms",
            "warm_latency_ms",
            "failed_ops",
            "ops_on_files_beyond_repair",
            "files_stored",
            "files_unreadable_at_end",
            "false_dead_verdicts",
            "detect_s",
        ] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
        assert_eq!(json["latency_ms"]["get"]["4KiB"]["p95"], 30.0);
    }

    #[test]
    fn a_step_never_seen_whole_leaves_detection_unreached() {
        let m = Measured {
            detect_s_per_step: vec![Some(3.0), None],
            ..Measured::default()
        };
        assert_eq!(build(m, &[]).detect_s, None);
    }
}
