//! Everyday use II (issue 15), with real `grapevine run` processes: health
//! a user can see, messages a user can read, habits of a good command.
//!
//! Each test uses its own loopback network (127.12.x.0/24; the host-name
//! test 127.0.0.1:39461, as `localhost` names only that); run them under
//! `flock /tmp/gv-heavy.lock`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::*;

/// Issue 15.1: `check` reports Tahoe's check-result keys in text and JSON
/// and exits 0 healthy, 3 not healthy, 4 corrupt, 5 unrecoverable; a file
/// with no shares anywhere says so.
#[test]
fn check_reports_health_and_exits_with_its_verdict() {
    let mut g = grid("127.12.1", 4, |_, t| t);
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(1_000_000, 11)).unwrap();
    let put: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(["--k", "2", "--n", "4", "--happy", "3", "--json", "--node"])
        .arg(&g.dirs[0])))
    .unwrap();
    let cap = put["cap"].as_str().unwrap().to_string();
    let me = &g.dirs[0];

    let (code, out, err) = check(&cap, me, &["--verify", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in [
        "count-shares-good",
        "count-shares-needed",
        "count-shares-expected",
        "count-good-share-hosts",
        "list-corrupt-shares",
        "servers-responding",
        "healthy",
        "sharemap",
    ] {
        assert!(r["results"].get(key).is_some(), "{key}: {r}");
    }
    assert_eq!(r["results"]["count-shares-good"], 4);
    assert_eq!(r["results"]["healthy"], true);

    // A server gone: not healthy, still readable.
    g.nodes[3].0.kill().unwrap();
    g.nodes[3].0.wait().unwrap();
    let (code, out, _) = check(&cap, me, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("not healthy: 3 of 4 shares good"), "{out}");

    // A share corrupted on disk: --verify finds it, names it, exits 4, and
    // tells its server, which checks the share itself and quarantines it
    // (issue 15.2).
    let victim = share_files(&g.dirs[2]).pop().expect("node 3 holds a share");
    let mut b = std::fs::read(&victim).unwrap();
    b[100] ^= 0xff;
    std::fs::write(&victim, &b).unwrap();
    let (code, out, _) = check(&cap, me, &["--verify", "--json"]);
    assert_eq!(code, 4, "{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let corrupt = r["results"]["list-corrupt-shares"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{r}");
    let node3 = ok(grapevine().args(["whoami", "--node"]).arg(&g.dirs[2]));
    assert_eq!(corrupt[0][0], node3.trim());
    assert_eq!(r["results"]["count-shares-good"], 2);
    assert_eq!(
        r["corrupt-share-reports"][0]["verdict"], "quarantined",
        "{r}"
    );
    assert!(share_files(&g.dirs[2]).is_empty(), "still served");
    assert_eq!(
        std::fs::read_dir(g.dirs[2].join("storage").join("corrupt"))
            .unwrap()
            .count(),
        1,
        "quarantined"
    );
    // Quarantined, it is no longer offered: two good shares, not healthy.
    let (code, text, _) = check(&cap, me, &["--verify"]);
    assert_eq!(code, 3, "{text}");

    // Another server gone: fewer than k good shares, exit 5.
    g.nodes[1].0.kill().unwrap();
    g.nodes[1].0.wait().unwrap();
    let (code, out, _) = check(&cap, me, &["--verify"]);
    assert_eq!(code, 5, "{out}");
    assert!(out.starts_with("unrecoverable"), "{out}");

    // A file with no shares anywhere says so.
    let mut parts: Vec<String> = cap.split(':').map(str::to_string).collect();
    let first = if parts[2].starts_with('a') { "b" } else { "a" };
    parts[2].replace_range(0..1, first);
    let (code, out, _) = check(&parts.join(":"), me, &[]);
    assert_eq!(code, 5, "{out}");
    assert!(out.starts_with("no share of this file was found"), "{out}");
    // The exit codes are documented.
    let help = ok(grapevine().args(["check", "--help"]));
    assert!(
        help.contains("3 not healthy") && help.contains("5 unrecoverable"),
        "{help}"
    );
}

/// Issue 15.2, the reader's side: a download that finds a corrupt share
/// tells its server, which checks the share itself and quarantines it; the
/// file still reads, and `get` says what happened.
#[test]
fn a_reader_that_finds_a_corrupt_share_tells_its_server() {
    let g = grid("127.12.8", 4, |_, t| t);
    let file = g.root.path().join("f.bin");
    let data = bytes(1_000_000, 14);
    std::fs::write(&file, &data).unwrap();
    let put: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(["--k", "2", "--n", "4", "--happy", "3", "--json", "--node"])
        .arg(&g.dirs[0])))
    .unwrap();
    let cap = put["cap"].as_str().unwrap();
    // Share 0 is one a reader reads first (a primary share): corrupt it.
    let holder = put["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["share"] == 0)
        .unwrap()["server"]
        .as_str()
        .unwrap()
        .to_string();
    let i = g
        .dirs
        .iter()
        .position(|d| ok(grapevine().args(["whoami", "--node"]).arg(d)).trim() == holder)
        .unwrap();
    let victim = share_files(&g.dirs[i])
        .into_iter()
        .find(|p| p.file_name().unwrap() == "0")
        .unwrap();
    let mut b = std::fs::read(&victim).unwrap();
    b[100] ^= 0xff;
    std::fs::write(&victim, &b).unwrap();
    let reader = (0..4).find(|&r| r != i).unwrap();
    let back = g.root.path().join("back.bin");
    let (success, _, err) = run(grapevine()
        .arg("get")
        .arg(cap)
        .arg("-o")
        .arg(&back)
        .arg("--node")
        .arg(&g.dirs[reader]));
    assert!(success, "{err}");
    assert!(std::fs::read(&back).unwrap() == data);
    assert!(
        err.contains("share 0 on server")
            && err.contains("is corrupt and was skipped; its server checked it and quarantined it"),
        "{err}"
    );
    assert!(!victim.exists(), "the corrupt share is still served");
    let quarantine = g.dirs[i].join("storage").join("corrupt");
    assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 1);
}

/// Issue 15.3: `put` says what it did; where the grid has fewer servers
/// than `happy` it says what to change, and grid-wide defaults in
/// config.toml are honoured.
#[test]
fn put_says_what_it_did_and_what_to_change() {
    let g = grid("127.12.2", 2, |_, t| t);
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(500_000, 12)).unwrap();
    let put = || {
        run(grapevine()
            .arg("put")
            .arg(&file)
            .arg("--node")
            .arg(&g.dirs[0]))
    };
    let (success, _, err) = put();
    assert!(!success);
    assert!(
        err.contains("this node sees 2 storage servers")
            && err.contains("--k 1 --n 2 --happy 2")
            && err.contains("shares_needed, shares_total and shares_happy"),
        "{err}"
    );
    let cfg = g.dirs[0].join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}shares_needed = 1\nshares_total = 2\nshares_happy = 2\n"),
    )
    .unwrap();
    let (success, out, err) = put();
    assert!(success, "{err}");
    assert!(out.trim().starts_with("gv:chk:"), "{out}");
    assert!(
        err.contains(&format!(
            "stored {} (500000 bytes) as 2 shares (1 needed to read) on 2 servers: happiness 2 of 2 required",
            file.display()
        )),
        "{err}"
    );
}

/// Issue 15.4: errors are sentences with paths and values, never debug
/// dumps or backtraces (even with RUST_BACKTRACE set), and settings that
/// make a node useless are refused at load.
#[test]
fn errors_are_sentences_without_backtraces() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("n");
    ok(grapevine()
        .arg("init")
        .arg(&d)
        .args(["--listen", "127.12.3.1:7946"]));
    let file = root.path().join("f.bin");
    std::fs::write(&file, b"some bytes").unwrap();
    let bad = |cmd: &mut Command, want: &str| {
        let (success, out, err) = run(cmd.env("RUST_BACKTRACE", "1"));
        assert!(!success, "{out}");
        assert!(err.contains(want), "want {want:?}: {err}");
        for dump in ["acktrace", "Params {", "Error {", "os error 21"] {
            assert!(!err.contains(dump), "{dump:?} in {err}");
        }
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    };
    bad(
        grapevine()
            .arg("put")
            .arg(&file)
            .args(["--k", "0", "--n", "4", "--happy", "3", "--node"])
            .arg(&d),
        "share parameters k = 0, n = 4, happy = 3 cannot work",
    );
    bad(
        grapevine()
            .arg("put")
            .arg(root.path())
            .arg("--node")
            .arg(&d),
        &format!("{} is a directory", root.path().display()),
    );
    bad(
        grapevine().args(["members", "--node"]).arg(&d),
        &format!("no node running in {}", d.display()),
    );
    // A node with no client sessions is refused at load (it used to run).
    let cfg = d.join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}client_sessions = 0\n")).unwrap();
    let child = grapevine()
        .arg("run")
        .arg(&d)
        .env("RUST_BACKTRACE", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = exit_within(child, 20, "a node with client_sessions = 0 started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}: `client_sessions` is 0", cfg.display())),
        "{err}"
    );
    assert!(!err.contains("acktrace"), "{err}");
}

/// Issue 15.5: seeds and `advertise` take host names. Node 2 starts first,
/// with `--seed localhost:39461` while nothing answers there, and retries;
/// node 1 then starts at 127.0.0.1:39461 advertising `localhost:39461`;
/// node 2 joins on a retry, and knows node 1 by the address the name
/// resolved to.
#[test]
fn seeds_and_advertise_take_host_names() {
    let root = tempfile::tempdir().unwrap();
    let d1 = root.path().join("n1");
    let d2 = root.path().join("n2");
    ok(grapevine().arg("init").arg(&d1).args([
        "--listen",
        "127.0.0.1:39461",
        "--nickname",
        "named",
    ]));
    let cfg = d1.join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("advertise = []", "advertise = [\"localhost:39461\"]"),
    )
    .unwrap();
    ok(grapevine().arg("init").arg(&d2).args([
        "--listen",
        "127.12.4.2:7946",
        "--seed",
        "localhost:39461",
    ]));
    let config2 = std::fs::read_to_string(d2.join("config.toml")).unwrap();
    assert!(
        config2.contains("seeds = [\"localhost:39461\"]"),
        "{config2}"
    );
    // Node 2 asks its seed, and asks again with nobody answering: it says so.
    let n2 = run_logged(&d2, &[("RUST_LOG", "warn")]);
    wait_for("node 2 to retry a seed nobody answers at", 30, || {
        n2.text().contains("no seed has answered yet; retrying")
    });
    let _n1 = run_nodes(std::slice::from_ref(&d1));
    wait_for("node 2 joins node 1 through its host name", 60, || {
        peers(&d2).is_some_and(|m| {
            m.iter().any(|r| {
                r["nickname"] == "named" && r["state"] == "alive" && r["addr"] == "127.0.0.1:39461"
            })
        })
    });
}

/// A running node whose standard error is kept, line by line.
struct Logged {
    _node: Running,
    lines: Arc<Mutex<Vec<String>>>,
}

fn run_logged(dir: &std::path::Path, env: &[(&str, &str)]) -> Logged {
    let mut child = grapevine()
        .arg("run")
        .arg(dir)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    Logged {
        _node: Running(child),
        lines,
    }
}

impl Logged {
    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Issue 15.6: no colour codes in logs when standard error is not a
/// terminal; a progress bar on standard error whenever it is a terminal,
/// also when standard output is redirected (and with --json); `get` says
/// what it wrote.
#[test]
fn logs_are_plain_progress_shows_on_a_terminal_and_get_says_what_it_wrote() {
    let root = tempfile::tempdir().unwrap();
    let dirs = init_nodes(root.path(), "127.12.6", 2);
    let logged = run_logged(&dirs[0], &[("RUST_LOG", "info")]);
    let _n2 = run_nodes(&dirs[1..]);
    wait_for("the nodes see each other", 60, || {
        dirs.iter()
            .all(|d| peers(d).is_some_and(|m| m.iter().any(|r| r["state"] == "alive")))
    });
    wait_for("node 1 logged its start", 30, || {
        logged.text().contains("node running")
    });
    assert!(!logged.text().contains('\u{1b}'), "{:?}", logged.text());

    let file = root.path().join("f.bin");
    std::fs::write(&file, bytes(30_000_000, 13)).unwrap();
    let under_a_terminal = |cmd: String| -> String {
        // `script` gives the command a terminal; its transcript is what the
        // terminal showed.
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .expect("script(1) from util-linux");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bin = std::env::var("GRAPEVINE_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_grapevine").to_string());
    let json = root.path().join("put.json");
    let shown = under_a_terminal(format!(
        "{bin} put {} --k 1 --n 2 --happy 2 --json --node {} > {}",
        file.display(),
        dirs[0].display(),
        json.display()
    ));
    assert!(shown.contains("MiB/"), "no progress bar: {shown:?}");
    let put: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cap = put["cap"].as_str().unwrap();
    let back = root.path().join("back.bin");
    let shown = under_a_terminal(format!(
        "{bin} get {cap} -o {} --json --node {} > {}",
        back.display(),
        dirs[1].display(),
        root.path().join("get.json").display()
    ));
    assert!(shown.contains("MiB/"), "no progress bar: {shown:?}");
    assert!(
        shown.contains(&format!(
            "wrote 30000000 bytes to {} (verified)",
            back.display()
        )),
        "{shown:?}"
    );
    // Without a terminal: no bar, no escape codes, the same sentence.
    let (success, _, err) = run(grapevine()
        .arg("get")
        .arg(cap)
        .arg("-o")
        .arg(&back)
        .arg("--node")
        .arg(&dirs[1]));
    assert!(success, "{err}");
    assert_eq!(
        err.trim(),
        format!("wrote 30000000 bytes to {} (verified)", back.display())
    );
}

/// Issue 15.7: `init` makes `storage/`; `whoami` works on a stopped node;
/// the startup log names every address (metrics too); `members` shows the
/// node itself, marked; human `status` shows the closed-grid counters; a
/// failed start leaves no stale `control.sock`.
#[test]
fn a_node_describes_itself() {
    let root = tempfile::tempdir().unwrap();
    let dirs = init_nodes(root.path(), "127.12.7", 2);
    assert!(dirs[0].join("storage").is_dir(), "init makes storage/");
    let id = ok(grapevine().args(["whoami", "--node"]).arg(&dirs[0]));
    let key = grapevine_crypto::Identity::load(&dirs[0].join("identity.key")).unwrap();
    assert_eq!(
        id.trim(),
        key.node_id().to_string(),
        "whoami of a stopped node"
    );
    let cfg = dirs[0].join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}metrics = \"127.12.7.1:9464\"\n")).unwrap();
    let logged = run_logged(&dirs[0], &[]);
    let mut n2 = run_nodes(&dirs[1..]);
    wait_for("node 1 logged its start", 30, || {
        logged.text().contains("running")
    });
    let start = logged.text();
    for part in [
        "gossip udp/127.12.7.1:7946",
        "storage sessions tcp/127.12.7.1:7946",
        "metrics http://127.12.7.1:9464/metrics",
        "control ",
    ] {
        assert!(start.contains(part), "{part:?} not in {start:?}");
    }
    wait_for("the nodes see each other", 60, || {
        peers(&dirs[0]).is_some_and(|m| m.iter().any(|r| r["state"] == "alive"))
    });
    let rows = members(&dirs[0]).unwrap();
    let me: Vec<_> = rows.iter().filter(|r| r["self"] == true).collect();
    assert_eq!(me.len(), 1, "{rows:?}");
    assert_eq!(me[0]["id"], id.trim());
    let table = ok(grapevine().args(["members", "--node"]).arg(&dirs[0]));
    let short = &id.trim()[..10];
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('*') && l.contains(short))
            && table.contains("2 members (* this node)"),
        "{table}"
    );
    let st = ok(grapevine().args(["status", "--node"]).arg(&dirs[0]));
    for figure in [
        "records not admitted",
        "from outside a closed grid",
        "over their source's rate",
    ] {
        assert!(st.contains(figure), "{figure:?} not in {st}");
    }
    // Node 2 crashes (its socket file stays), then fails to start: no
    // stale control.sock is left behind.
    n2[0].0.kill().unwrap();
    n2[0].0.wait().unwrap();
    let sock = dirs[1].join("control.sock");
    assert!(sock.exists(), "a crash leaves the socket file");
    let cfg2 = dirs[1].join("config.toml");
    let text = std::fs::read_to_string(&cfg2).unwrap();
    std::fs::write(
        &cfg2,
        text.replace("capacity_mib = 10240", "capacity_mib = \"lots\""),
    )
    .unwrap();
    let (success, _, err) = run(grapevine().arg("run").arg(&dirs[1]));
    assert!(!success && err.contains("capacity_mib"), "{err}");
    assert!(!sock.exists(), "a failed start left {}", sock.display());
    n2.clear();
    // A second node on a running node's directory is refused, and the
    // running one keeps its control socket.
    let (success, _, err) = run(grapevine().arg("run").arg(&dirs[0]));
    assert!(!success, "{err}");
    assert!(
        members(&dirs[0]).is_some(),
        "node 1 lost its control socket"
    );
}
