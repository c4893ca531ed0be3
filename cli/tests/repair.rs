//! Repair from the command line (issue 23), with real `grapevine run`
//! processes on 127.12.23.0/24: `check CAP --repair` regenerates the share
//! a dead server took and reports Tahoe's repair keys; `verify-cap` gives
//! a capability that checks but does not read; `grapevine repair` shows the
//! node's repair job. Run under `flock /tmp/gv-heavy.lock`.

mod common;

use common::*;

#[test]
fn check_repair_regenerates_what_a_dead_server_took() {
    let mut g = grid("127.12.23", 5, |_, t| t);
    let file = g.root.path().join("f.bin");
    let data = bytes(700_000, 23);
    std::fs::write(&file, &data).unwrap();
    let put: serde_json::Value = serde_json::from_str(&ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(["--k", "2", "--n", "4", "--happy", "3", "--json", "--node"])
        .arg(&g.dirs[0])))
    .unwrap();
    let cap = put["cap"].as_str().unwrap().to_string();
    // A holder other than node 1 dies for good.
    let victim = (1..5)
        .find(|&i| !share_files(&g.dirs[i]).is_empty())
        .expect("a holder besides node 1");
    g.nodes[victim].0.kill().unwrap();
    g.nodes[victim].0.wait().unwrap();

    let vcap = ok(grapevine().arg("verify-cap").arg(&cap))
        .trim()
        .to_string();
    assert!(vcap.starts_with("gv:chk-verify:"), "{vcap}");
    // A verify capability checks but does not read.
    let (got, _, err) = run(grapevine()
        .arg("get")
        .arg(&vcap)
        .arg("--node")
        .arg(&g.dirs[0]));
    assert!(!got, "a verify capability read the file");
    assert!(err.contains("gv:"), "{err}");
    let (code, out, _) = check(&vcap, &g.dirs[0], &[]);
    assert_eq!(code, 3, "{out}");

    // Repair with the verify capability: exit 0 (healthy after), Tahoe's keys.
    let (code, text, err) = check(&vcap, &g.dirs[0], &["--repair", "--json"]);
    assert_eq!(code, 0, "{text}{err}");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["repair-attempted"], true, "{r}");
    assert_eq!(r["repair-successful"], true, "{r}");
    assert_eq!(
        r["pre-repair-results"]["results"]["count-shares-good"], 3,
        "{r}"
    );
    assert_eq!(
        r["post-repair-results"]["results"]["count-shares-good"], 4,
        "{r}"
    );
    assert_eq!(r["post-repair-results"]["results"]["healthy"], true, "{r}");
    // The file reads back with the read capability, and a second repair in
    // words has nothing to do.
    let back = g.root.path().join("back.bin");
    ok(grapevine()
        .arg("get")
        .arg(&cap)
        .arg("-o")
        .arg(&back)
        .arg("--node")
        .arg(&g.dirs[0]));
    assert!(std::fs::read(&back).unwrap() == data);
    let again = ok(grapevine()
        .args(["check", &cap, "--repair", "--node"])
        .arg(&g.dirs[0]));
    assert!(again.contains("repair not attempted"), "{again}");
    // The node's repair job reports (its first pass is an hour away).
    let report = ok(grapevine().args(["repair", "--node"]).arg(&g.dirs[0]));
    assert!(report.contains("0 repairs started"), "{report}");
    let status = status(&g.dirs[0]).unwrap();
    assert!(status.get("repair_started").is_some(), "{status}");
}
