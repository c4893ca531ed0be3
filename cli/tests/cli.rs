//! Process-level tests of the `grapevine` binary: real processes, real
//! sockets, output parsed as a user's script would.

mod common;

use common::*;

/// The demo shows the grid's job end to end: a file stored, where its
/// shares went, read back through another node, read again with n - k
/// share holders crashed, checked, and the figures measured.
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
    // Stored 3-of-8: eight share lines, each on a distinct node.
    assert!(stdout.contains("3-of-8 (happy 7)"), "{stdout}");
    let shares: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("share ") && l.contains(" on node-"))
        .collect();
    assert_eq!(shares.len(), 8, "{stdout}");
    let mut holders: Vec<&str> = shares
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    holders.sort_unstable();
    holders.dedup();
    assert_eq!(holders.len(), 8, "one share per node: {stdout}");
    assert!(
        stdout.contains("node-07 read it back") && stdout.contains("8388608 bytes, identical"),
        "{stdout}"
    );
    // Five share holders crashed; the file still reads, and check says
    // exactly what is left.
    assert!(
        stdout.contains("crashed 5 of the 8 share holders"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read it again from the 3 shares left") && stdout.contains(": identical"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not healthy: 3 of 8 shares good (3 needed to read) on 3 servers"),
        "{stdout}"
    );
    // Repaired with the verify capability: every share back, on the three
    // servers left.
    assert!(
        stdout.contains("repair successful: 5 shares regenerated")
            && stdout.contains("now healthy: 8 of 8 shares good (3 needed to read) on 3 servers"),
        "{stdout}"
    );
    assert!(stdout.contains("saw the 5 crashed nodes dead"), "{stdout}");
    assert!(stdout.contains("left gracefully"), "{stdout}");
    let figures = stdout
        .lines()
        .find(|l| l.starts_with("figures:"))
        .unwrap_or_else(|| panic!("no figures: {stdout}"));
    for f in ["convergence", "put", "get", "crash detection"] {
        assert!(figures.contains(f), "{figures}");
    }
    assert!(stdout.contains("demo complete"), "{stdout}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = grapevine().args(["no-such-command"]).output().unwrap();
    assert!(!out.status.success());
    // Bad usage exits 2, whether clap or the command finds it, and never
    // panics (101) or half-succeeds.
    let root = tempfile::tempdir().unwrap();
    let node = root.path().join("n");
    ok(grapevine()
        .arg("init")
        .arg(&node)
        .args(["--listen", "127.7.9.1:7946", "--no-gateway"]));
    let id = ok(grapevine().arg("whoami").arg("--node").arg(&node));
    let key = root.path().join("grid.key");
    ok(grapevine().args(["grid", "new"]).arg(&key));
    let n = node.to_str().unwrap();
    let k = key.to_str().unwrap();
    for args in [
        &["get", "gv:lit:nbswy3dp", "--json", "--node", n][..],
        &["put", "--k", "5", "--n", "3", "--node", n],
        &["demo", "--nodes", "4"],
        &["demo", "--file-mib", "0"],
        &["grid", "admit", "--key", k, id.trim(), "--days", "2920000"],
        &[
            "grid",
            "admit",
            "--key",
            k,
            id.trim(),
            "--days",
            "18446744073709551615",
        ],
        &["grid", "admit", "--key", k, id.trim(), "--days", "0"],
    ] {
        let out = grapevine().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "grapevine {args:?}: {err}");
        assert!(out.stdout.is_empty(), "grapevine {args:?} printed output");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The laboratory is not in the production binary.
    for cmd in ["swarm", "bench"] {
        let out = grapevine().arg(cmd).output().unwrap();
        assert!(!out.status.success(), "grapevine {cmd} exists");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn four_node_processes_store_and_serve_a_file() {
    let root = tempfile::tempdir().unwrap();
    let dirs = init_nodes(root.path(), "127.7.0", 4);
    // Keys are private.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dirs[0].join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Node 1 serves metrics on its own loopback address.
    let cfg1 = dirs[0].join("config.toml");
    let text = std::fs::read_to_string(&cfg1).unwrap();
    std::fs::write(&cfg1, format!("{text}metrics = \"127.7.0.1:9464\"\n")).unwrap();
    let mut nodes = run_nodes(&dirs);
    wait_for("every node sees three alive members", 60, || {
        dirs.iter().all(|d| {
            peers(d).is_some_and(|m| m.iter().filter(|r| r["state"] == "alive").count() == 3)
        })
    });
    let metrics = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect("127.7.0.1:9464").expect("metrics port");
        c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("grapevine_members{state=\"alive\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("grapevine_records 4"), "{metrics}");
    assert!(metrics.contains("grapevine_sessions_open 0"), "{metrics}");
    assert!(
        metrics.contains("grapevine_storage_capacity_bytes 10737418240"),
        "{metrics}"
    );
    assert!(
        metrics.contains("grapevine_storage_disk_free_bytes "),
        "{metrics}"
    );
    let whoami = ok(grapevine().args(["whoami", "--node"]).arg(&dirs[0]));
    assert_eq!(whoami.trim().len(), 52);
    let status: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .args(["status", "--json", "--node"])
        .arg(&dirs[0])))
    .unwrap();
    assert_eq!(status["records"], 4);

    let file = root.path().join("file.bin");
    let data: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let put: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(["--k", "2", "--n", "4", "--happy", "3", "--json", "--node"])
        .arg(&dirs[1])))
    .unwrap();
    let cap = put["cap"].as_str().unwrap().to_string();
    assert!(cap.starts_with("gv:chk:"), "{cap}");
    let out = root.path().join("back.bin");
    ok(grapevine()
        .arg("get")
        .arg(&cap)
        .arg("-o")
        .arg(&out)
        .arg("--node")
        .arg(&dirs[2]));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let check: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .arg("check")
        .arg(&cap)
        .args(["--verify", "--json", "--node"])
        .arg(&dirs[3])))
    .unwrap();
    assert_eq!(check["results"]["count-shares-good"], 4, "{check}");
    assert_eq!(check["results"]["healthy"], true, "{check}");
    let st: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .args(["status", "--json", "--node"])
        .arg(&dirs[0])))
    .unwrap();
    assert!(
        st["storage_requests"].as_u64().unwrap() > 0,
        "node 1 served shares: {st}"
    );
    assert!(
        st["storage_used"].as_u64().unwrap() > 1_000_000,
        "node 1 holds a share: {st}"
    );

    // SIGTERM: the node leaves gracefully and exits cleanly.
    let pid = nodes[3].0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = nodes[3].0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let n4 = put["placements"].as_array().unwrap().len();
    assert_eq!(n4, 4);
    wait_for("node 4 seen as left", 30, || {
        members(&dirs[0]).is_some_and(|m| {
            m.iter()
                .any(|r| r["nickname"] == "node4" && r["state"] == "left")
        })
    });
    let left = ok(grapevine()
        .args(["members", "--state", "left", "--node"])
        .arg(&dirs[0]));
    assert!(
        left.contains("node4") && left.contains("1 member\n"),
        "{left}"
    );
    nodes.truncate(3);
}

#[test]
fn config_errors_name_file_line_and_key() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("n");
    ok(grapevine()
        .arg("init")
        .arg(&d)
        .args(["--listen", "127.7.1.1:7946"]));
    let cfg = d.join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("capacity_mib = 10240", "capacity_mib = \"lots\""),
    )
    .unwrap();
    let out = grapevine().arg("run").arg(&d).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml:17: key `capacity_mib`: invalid type"),
        "{err}"
    );
    std::fs::write(&cfg, text.replace("seeds = []", "seeds = [\"0.0.0.0:0\"]")).unwrap();
    let out = grapevine().arg("run").arg(&d).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("seed 0.0.0.0:0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second init refuses to overwrite the identity.
    let out = grapevine().arg("init").arg(&d).output().unwrap();
    assert!(!out.status.success());
    // No node running: a clear error.
    let out = grapevine()
        .args(["members", "--node"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node running"));
}

#[test]
fn a_closed_grid_admits_only_nodes_with_certificates() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("grid.key");
    let new = ok(grapevine().args(["grid", "new"]).arg(&key));
    assert!(new.starts_with("grid = \""), "{new}");
    // A grid key is never overwritten.
    assert!(!grapevine()
        .args(["grid", "new"])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
    let dirs = init_nodes(root.path(), "127.7.2", 3);
    let node_id = |d: &std::path::Path| {
        let key = grapevine_crypto::Identity::load(&d.join("identity.key")).unwrap();
        key.node_id().to_string()
    };
    // Nodes 1 and 2 are admitted; node 3 runs as an open node.
    for d in &dirs[..2] {
        let cert = ok(grapevine()
            .args(["grid", "admit", "--days", "30", "--key"])
            .arg(&key)
            .arg(node_id(d)));
        let cfg = d.join("config.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("{text}{cert}")).unwrap();
    }
    // A certificate is for one node: node 1's does not admit node 3.
    let cfg3 = dirs[2].join("config.toml");
    let open_text = std::fs::read_to_string(&cfg3).unwrap();
    let cert1: String = std::fs::read_to_string(dirs[0].join("config.toml"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("grid =") || l.starts_with("admission ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg3, format!("{open_text}{cert1}")).unwrap();
    let out = grapevine().arg("run").arg(&dirs[2]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot join grid"), "{err}");
    assert!(err.contains("made for another node id"), "{err}");
    std::fs::write(&cfg3, open_text).unwrap();

    let _nodes = run_nodes(&dirs);
    wait_for("the two admitted nodes see each other", 60, || {
        dirs[..2].iter().all(|d| {
            peers(d).is_some_and(|m| m.iter().filter(|r| r["state"] == "alive").count() == 1)
        })
    });
    // The outsider keeps retrying its join; the members refuse it, never
    // take it in, and it learns nothing of them.
    wait_for("node 1 refuses the outsider's record", 60, || {
        status(&dirs[0]).is_some_and(|s| s["records_unadmitted"].as_u64() >= Some(1))
    });
    for d in &dirs[..2] {
        let m = members(d).unwrap();
        assert!(m.iter().all(|r| r["nickname"] != "node3"), "{m:?}");
    }
    assert_eq!(peers(&dirs[2]).unwrap().len(), 0);
    // Admitted nodes store and fetch between themselves.
    let file = root.path().join("f.bin");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let put: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(["--k", "1", "--n", "2", "--happy", "2", "--json", "--node"])
        .arg(&dirs[1])))
    .unwrap();
    assert_eq!(put["servers"], 2, "{put}");
}

#[test]
fn a_storage_node_killed_during_an_upload_costs_only_its_share() {
    let root = tempfile::tempdir().unwrap();
    let dirs = init_nodes(root.path(), "127.7.3", 5);
    let mut nodes = run_nodes(&dirs);
    wait_for("every node sees four alive members", 60, || {
        dirs.iter().all(|d| {
            peers(d).is_some_and(|m| m.iter().filter(|r| r["state"] == "alive").count() == 4)
        })
    });
    // 2-of-5 puts one share on each of the five servers.
    let file = root.path().join("big.bin");
    let data: Vec<u8> = (0..40_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let mut put = grapevine()
        .arg("put")
        .arg(&file)
        .args([
            "--k",
            "2",
            "--n",
            "5",
            "--happy",
            "3",
            "--random-key",
            "--json",
            "--node",
        ])
        .arg(&dirs[0])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The fault, at a point the test chooses rather than a race with the
    // machine's speed: the moment node 5's share appears in its store's
    // incoming/ directory (allocated, being written), node 5 is frozen
    // (SIGSTOP), so the upload cannot finish with it; then it is killed.
    let incoming = dirs[4].join("storage").join("incoming");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while walk(&incoming).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "node 5 was never given a share"
        );
        assert!(
            put.try_wait().unwrap().is_none(),
            "the upload ended before node 5 was given a share"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    signal(nodes[4].0.id(), "STOP");
    // The kill happens mid-upload: the upload is still running, node 5
    // holds a partial share and no finished one.
    assert!(
        put.try_wait().unwrap().is_none(),
        "the upload finished before the fault"
    );
    assert_eq!(walk(&incoming).len(), 1, "one partial share on node 5");
    let finished = walk(&dirs[4].join("storage").join("shares"));
    assert!(finished.is_empty(), "node 5 already finished {finished:?}");
    nodes[4].0.kill().unwrap();
    nodes[4].0.wait().unwrap();
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "four servers still meet happy = 3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let put: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(put["servers"], 4, "{put}");
    // The put says which server it lost, in its JSON and its summary.
    let node5 = ok(grapevine().arg("whoami").arg("--node").arg(&dirs[4]));
    assert_eq!(put["lost"][0]["server"], node5.trim(), "{put}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("was lost during the put"), "{said}");
    // In sentences, not log lines.
    assert!(!said.contains("WARN"), "{said}");
    // The file reads back, from another node, without the dead one.
    let cap = put["cap"].as_str().unwrap().to_string();
    let back = root.path().join("back.bin");
    ok(grapevine()
        .arg("get")
        .arg(&cap)
        .arg("-o")
        .arg(&back)
        .arg("--node")
        .arg(&dirs[2]));
    assert!(std::fs::read(&back).unwrap() == data, "file differs");
    // The dead node left no share visible on its disk: the partial write
    // stayed in incoming/ and is removed when the node next opens its store.
    let shares: Vec<_> = walk(&dirs[4].join("storage").join("shares"));
    assert!(shares.is_empty(), "{shares:?}");
}

#[test]
fn init_gives_each_node_its_own_gateway_and_run_serves_it() {
    let root = tempfile::tempdir().unwrap();
    let gateway = |d: &std::path::Path| -> Option<std::net::SocketAddr> {
        let t: toml::Table = std::fs::read_to_string(d.join("config.toml"))
            .unwrap()
            .parse()
            .unwrap();
        t.get("gateway")
            .map(|v| v.as_str().unwrap().parse().unwrap())
    };
    let init = |name: &str, extra: &[&str]| {
        let d = root.path().join(name);
        let out = ok(grapevine()
            .arg("init")
            .arg(&d)
            .args(["--listen", "127.7.9.1:7946"])
            .args(extra));
        (d, out)
    };
    // Two nodes made one after the other on one address, before either
    // runs: each its own gateway port, from Tahoe's 3456 on.
    let (a, out) = init("a", &[]);
    let ga = gateway(&a).expect("a gateway by default");
    assert_eq!(ga.ip().to_string(), "127.7.9.1");
    assert!(ga.port() >= 3456, "{ga}");
    assert!(
        out.contains(&format!("web gateway at http://{ga}/")),
        "{out}"
    );
    let (b, _) = init("b", &[]);
    let gb = gateway(&b).expect("a gateway by default");
    assert_ne!(ga, gb);
    let (c, _) = init("c", &["--gateway", "127.0.0.1:4999"]);
    assert_eq!(gateway(&c), Some("127.0.0.1:4999".parse().unwrap()));
    let (d, out) = init("d", &["--no-gateway"]);
    assert_eq!(gateway(&d), None);
    assert!(!out.contains("web gateway"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(a.join("api_auth_token")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    // The node serves its gateway as soon as it runs.
    let _running = run_nodes(std::slice::from_ref(&a));
    let answer = || -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(ga).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        write!(
            s,
            "GET /statistics?t=json HTTP/1.1\r\nHost: {ga}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    wait_for("the gateway to answer", 60, || {
        answer().is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(answer().unwrap().contains("\"stats\""));
}
