//! Process-level tests of the `grapevine` binary: real processes, real
//! sockets, output parsed as a user's script would.

use std::process::Command;

fn grapevine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_grapevine"))
}

#[test]
fn swarm_of_sixty_nodes_in_two_processes_converges_and_detects_a_kill() {
    let out = grapevine()
        .args([
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
        ])
        .output()
        .expect("run grapevine swarm");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
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
    let out = grapevine()
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
        .expect("run grapevine bench sessions");
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
fn demo_runs_end_to_end() {
    let out = grapevine()
        .args(["demo", "--nodes", "8"])
        .output()
        .expect("run grapevine demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every node holds all 8 signed"), "{stdout}");
    assert!(stdout.contains("you sent 100000 bytes"), "{stdout}");
    assert!(stdout.contains("left gracefully"), "{stdout}");
    assert!(stdout.contains("demo complete"), "{stdout}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = grapevine()
        .args(["swarm", "--nodes", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2 nodes"));
    let out = grapevine().args(["no-such-command"]).output().unwrap();
    assert!(!out.status.success());
}
