//! Issue 16: restarts rejoin the grid. Ten `grapevine run` processes on
//! 127.14.1.1 to .10 (node 1 has no seeds, the others seed on it) are
//! restarted one after another, in three orders, each node once per order:
//! gracefully (SIGTERM, as `systemctl restart` does) from the seedless node
//! up (node 1 and then node 2, which seeds on it, used to form an island the
//! others held `left`), crashed (SIGKILL) from node 10 down, and gracefully
//! in an interleaved order. After each restart the grid must be one within
//! [`ONE_WITHIN_S`]: every node sees the nine others alive, each at the
//! record it signed last.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const N: usize = 10;
/// After a node is back, the grid is one within this many seconds (the
/// bound the test asserts; on an idle machine it takes a few).
const ONE_WITHIN_S: u64 = 60;

/// Stop node `i`: gracefully (SIGTERM, waiting for a clean exit) or as a
/// crash (SIGKILL).
fn stop(node: &mut Running, graceful: bool) {
    if graceful {
        let pid = node.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let st = node.0.wait().unwrap();
        assert!(
            st.success(),
            "a node stopped by SIGTERM exits cleanly: {st:?}"
        );
    } else {
        node.0.kill().unwrap();
        node.0.wait().unwrap();
    }
}

/// Start `grapevine run` in `dir` and wait until it answers on its
/// control socket (starting again if it exits first, as when its port is
/// not free yet).
fn start(dir: &Path) -> Running {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut r = run_nodes(&[dir.to_path_buf()]).pop().unwrap();
        loop {
            if status(dir).is_some() {
                return r;
            }
            if r.0.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "{} never started", dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(Instant::now() < deadline, "{} never started", dir.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether every node sees every other alive at the record that node
/// signed last (its own row's); if not, what is missing, for the message.
fn grid_is_one(dirs: &[PathBuf]) -> Result<(), String> {
    let views: Vec<Vec<serde_json::Value>> = dirs
        .iter()
        .map(|d| members(d).ok_or_else(|| format!("{} does not answer", d.display())))
        .collect::<Result<_, _>>()?;
    let own: Vec<(String, String)> = views
        .iter()
        .map(|v| {
            let me = v.iter().find(|r| r["self"] == true).expect("own row");
            (
                me["id"].as_str().unwrap_or_default().to_string(),
                me["record"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (i, v) in views.iter().enumerate() {
        for (j, (id, rec)) in own.iter().enumerate() {
            if i == j {
                continue;
            }
            let row = v.iter().find(|r| r["id"] == id.as_str());
            let ok = row.is_some_and(|r| r["state"] == "alive" && r["record"] == rec.as_str());
            if !ok {
                let state = row.map_or("unknown".to_string(), |r| {
                    format!(
                        "{} (latest record: {})",
                        r["state"],
                        r["record"] == rec.as_str()
                    )
                });
                return Err(format!("node{} sees node{} {state}", i + 1, j + 1));
            }
        }
    }
    Ok(())
}

#[test]
fn every_node_restarted_one_after_another_rejoins_a_single_grid() {
    let mut g = grid("127.14.1", N, |_, t| t);
    let orders: [(&str, bool, [usize; N]); 3] = [
        (
            "graceful, seedless node first",
            true,
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
        (
            "crashed, last node first",
            false,
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        ),
        (
            "graceful, interleaved",
            true,
            [4, 0, 7, 1, 9, 2, 5, 3, 8, 6],
        ),
    ];
    let mut slowest = Duration::ZERO;
    for (name, graceful, order) in orders {
        for i in order {
            stop(&mut g.nodes[i], graceful);
            g.nodes[i] = start(&g.dirs[i]);
            let back = Instant::now();
            let deadline = back + Duration::from_secs(ONE_WITHIN_S);
            loop {
                match grid_is_one(&g.dirs) {
                    Ok(()) => break,
                    Err(why) => assert!(
                        Instant::now() < deadline,
                        "{name}: after node{} restarted, the grid is not one within {ONE_WITHIN_S} s: {why}",
                        i + 1
                    ),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            slowest = slowest.max(back.elapsed());
        }
    }
    eprintln!("slowest rejoin: {:.1} s", slowest.as_secs_f64());
}
