//! Process-level tests of `grapevine-perf`: the swarm, the benchmarks and
//! their arguments, run as a user runs them and their JSON parsed. They
//! check that each tool works and reports coherent figures, never timings.

use std::process::Command;

fn perf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_grapevine-perf"))
}

/// Run `cmd` (what it does: `what`), which must succeed, and parse the
/// JSON report it prints.
fn json_report(cmd: &mut Command, what: &str) -> serde_json::Value {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

#[test]
fn swarm_of_sixty_nodes_in_two_processes_converges_and_detects_a_kill() {
    let r = json_report(
        perf().args([
            "swarm",
            "--nodes",
            "60",
            "--procs",
            "2",
            "--steady-secs",
            "3",
            "--timeout-secs",
            "90",
            "--json",
        ]),
        "run grapevine-perf swarm",
    );
    assert_eq!(r["nodes"], 60);
    assert_eq!(r["procs"], 2);
    assert!(
        r["converge_after_last_start_s"].is_number(),
        "did not converge: {r}"
    );
    assert!(r["detect_s"].is_number(), "kill not detected: {r}");
    assert_eq!(r["killed"], 1);
    assert_eq!(r["false_dead_verdicts"], 0, "{r}");
    assert!(r["max_datagram_bytes"].as_u64().unwrap() <= 1400);
    assert!(r["rss_per_node_bytes"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_sessions_reports_both_rows() {
    let out = perf()
        .args([
            "bench",
            "sessions",
            "--count",
            "50",
            "--seconds",
            "0.3",
            "--json",
        ])
        .output()
        .expect("run grapevine-perf bench sessions");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["proto"], "noise");
    assert_eq!(rows[1]["proto"], "tls13");
    for r in rows {
        assert_eq!(r["sessions"], 50);
        assert!(r["throughput_mb_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["handshakes_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        assert!(
            r["client_heap_bytes_per_session"].as_f64().unwrap() > 0.0,
            "{r}"
        );
    }
}

#[test]
fn bench_storage_puts_and_gets_a_file_through_ten_servers() {
    let dir = tempfile::tempdir().unwrap();
    let r = json_report(
        perf()
            .args([
                "bench", "storage", "--size", "8MiB", "--runs", "2", "--cores", "2", "--json",
                "--dir",
            ])
            .arg(dir.path()),
        "run grapevine-perf bench storage",
    );
    assert_eq!(r["bytes"], 8 << 20);
    assert_eq!(r["servers"], 10);
    assert_eq!((r["k"].as_u64(), r["n"].as_u64()), (Some(3), Some(10)));
    for k in ["put_mb_s", "get_mb_s"] {
        assert!(r[k].as_f64().unwrap() > 0.0, "{r}");
    }
    // Two runs, a ceiling before, between and after them; the figures
    // are a median run's, as a fraction of that run's own ceiling.
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{r}");
    assert_eq!(r["ceilings"].as_array().unwrap().len(), 3, "{r}");
    // One untimed warm-up run first (the default), reported apart.
    let warmup = r["warmup"].as_array().unwrap();
    assert_eq!(warmup.len(), 1, "{r}");
    assert!(warmup[0]["put_mb_s"].as_f64().unwrap() > 0.0, "{r}");
    // Before each put, as many bytes as it stores (10/3 of the file) were
    // written into memory and freed, untimed.
    for run in runs.iter().chain(warmup) {
        assert_eq!(run["primed_bytes"], (10u64 << 23).div_ceil(3), "{run}");
        assert!(run["prime_s"].as_f64().unwrap() > 0.0, "{run}");
    }
    // The ceiling says which cipher its session stages sealed with.
    let cipher = r["ceilings"][0]["session_cipher"].as_str().unwrap();
    assert!(
        ["AES-256-GCM", "ChaCha20-Poly1305"].contains(&cipher),
        "{r}"
    );
    for (what, ceiling) in [("put", "put_ceiling_mb_s"), ("get", "get_ceiling_mb_s")] {
        let mb = r[format!("{what}_mb_s")].as_f64().unwrap();
        let c = r[ceiling].as_f64().unwrap();
        assert!(c > 0.0, "{r}");
        let f = r[format!("{what}_fraction")].as_f64().unwrap();
        assert!((f - mb / c).abs() < 1e-9, "{what}: {f} against {mb} / {c}");
        assert!(runs
            .iter()
            .any(|x| x[format!("{what}_mb_s")] == r[format!("{what}_mb_s")]));
    }
    assert!(r["put_binding"].as_str().is_some_and(|b| !b.is_empty()));
    // The put's counters and where its time went.
    assert!(r["put_counters"]["user_s"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(r["put_counters"]["allocs"].as_u64().unwrap() > 0, "{r}");
    assert!(r["put_encoding_s"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_storage_primes_nothing_when_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let r = json_report(
        perf()
            .args([
                "bench",
                "storage",
                "--size",
                "1MiB",
                "--warmup",
                "0",
                "--no-ceiling",
                "--no-prime",
                "--json",
                "--dir",
            ])
            .arg(dir.path()),
        "run grapevine-perf bench storage",
    );
    assert_eq!(r["primed_bytes"], 0, "{r}");
    assert!(r["put_mb_s"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_ceiling_measures_every_stage_and_combines_them() {
    let dir = tempfile::tempdir().unwrap();
    let r = json_report(
        perf()
            .args(["bench", "ceiling", "--cores", "2", "--json", "--dir"])
            .arg(dir.path()),
        "run grapevine-perf bench ceiling",
    );
    assert_eq!(r["cores"], 2.0);
    // Timed on a thread per core at once, each thread's rate of a stage
    // within a factor of the others'.
    assert_eq!(r["threads"], 2);
    let stages = r["stages"].as_array().unwrap();
    for s in stages {
        let spread = r["thread_spread"][s["stage"].as_str().unwrap()].as_f64();
        assert!(spread.is_some_and(|v| v > 0.0 && v <= 1.0), "{s}: {r}");
    }
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for want in [
        "bench input",
        "bench compare",
        "file cipher (ChaCha20)",
        "erasure encode",
        "erasure decode",
        "BLAKE3",
        "session seal",
        "session open",
        "loopback TCP",
        "store write",
        "store fsync",
        "store read",
    ] {
        assert!(names.contains(&want), "{want} not measured: {names:?}");
    }
    for s in stages {
        // An fsync too quick to time is infinite, which JSON writes as null.
        let ok = s["bytes_per_s"].as_f64().is_none_or(|v| v > 0.0);
        assert!(ok, "{s}");
    }
    for what in ["put", "get"] {
        let c = &r[what];
        let bounds = c["bounds"].as_array().unwrap();
        assert!(!bounds.is_empty());
        let rates: Vec<f64> = bounds
            .iter()
            .map(|b| b["bytes_per_s"].as_f64().unwrap())
            .collect();
        assert!(rates.windows(2).all(|w| w[0] <= w[1]), "{c}");
        assert_eq!(c["bytes_per_s"].as_f64().unwrap(), rates[0]);
        assert_eq!(c["binding"], bounds[0]["what"]);
        assert!(c["cpu_s_per_byte"].as_f64().unwrap() > 0.0);
    }
}

/// Issue 16.4: junk records cost bounded memory: past the cap each new one
/// takes the place of a member that never answered (as none of these did)
/// or is refused, so the table stays at the cap.
#[test]
fn bench_members_holds_the_table_at_the_cap() {
    let r = json_report(
        perf().args([
            "bench",
            "members",
            "--records",
            "600",
            "--cap",
            "400",
            "--json",
        ]),
        "run grapevine-perf bench members",
    );
    assert_eq!(r["offered"], 600);
    // The 200 past the cap took the places of members that never
    // answered, freed six at a time (a 64th of the cap): the table was found
    // full once per six records, and holds at most the cap, at least the
    // cap less one batch.
    let (members, evicted) = (
        r["members"].as_u64().unwrap(),
        r["evicted"].as_u64().unwrap(),
    );
    assert!((394..=400).contains(&members), "{r}");
    assert_eq!(r["refused"], 0, "{r}");
    assert_eq!(members + evicted, 600, "{r}");
    assert!(r["over_cap"].as_u64().unwrap() <= 200 / 6 + 1, "{r}");
    assert!(r["bytes_per_member"].as_f64().unwrap() > 100.0, "{r}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = perf().args(["swarm", "--nodes", "1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2 nodes"));
    let out = perf()
        .args(["bench", "storage", "--size", "lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad size"));
}

#[test]
fn bench_gateway_reports_coherent_figures() {
    let r = json_report(
        perf().args([
            "bench", "gateway", "--size", "8MiB", "--nodes", "5", "--rounds", "1", "--small", "30",
            "--json",
        ]),
        "run grapevine-perf bench gateway",
    );
    assert_eq!(r["bytes"], 8 << 20);
    assert_eq!((r["k"].as_u64(), r["n"].as_u64()), (Some(3), Some(5)));
    assert!(r["get_mb_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["gateway_mb_s"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["small_ok"], 30, "every small GET answered: {r}");
    // A 1 MiB range reads about one or two segments per share, not the
    // file: locate (one request per server), three metadata reads and at
    // most two block reads for each of the k shares.
    let range = r["range_requests"].as_u64().unwrap();
    assert!(range <= 5 + 3 * (3 + 2), "{r}");
    assert!(r["whole_requests"].as_u64().unwrap() >= 3 * 8, "{r}");
}
