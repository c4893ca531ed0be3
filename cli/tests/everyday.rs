//! Everyday use I (issue 14), with real `grapevine run` processes: what a
//! new operator lost or broke in fifteen minutes, each fixed.
//!
//! Each test uses its own loopback network (127.11.x.0/24); run them under
//! `flock /tmp/gv-heavy.lock`.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn get_cmd(cap: &str, dir: &std::path::Path) -> Command {
    let mut c = grapevine();
    c.arg("get").arg(cap).arg("--node").arg(dir);
    c
}

fn mkfifo(p: &std::path::Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

fn partials(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

/// A capability of the same shape as `cap` for a file that is nowhere (its
/// key changed, so its storage index is another).
fn missing_cap(cap: &str) -> String {
    let mut parts: Vec<String> = cap.split(':').map(str::to_string).collect();
    let key = &mut parts[2];
    let first = if key.starts_with('a') { "b" } else { "a" };
    key.replace_range(0..1, first);
    parts.join(":")
}

/// Issue 14.1: `get -o PATH` writes a regular file through a temporary
/// beside the symlink-resolved target, renamed only once verified; follows
/// symlinks; writes into FIFOs (and devices) directly, saying how much went
/// on a failure; refuses directories before downloading; `get` without
/// `-o` and `-o -` write to standard output, and a reader that leaves makes
/// the command fail saying the output is incomplete.
#[test]
fn get_never_destroys_what_is_at_its_target() {
    let g = grid("127.11.1", 4, |_, t| t);
    let file = g.root.path().join("f.bin");
    let data = bytes(1_500_000, 1);
    std::fs::write(&file, &data).unwrap();
    let cap = put_cap(&g.dirs[0], &file, &["--k", "2", "--n", "4", "--happy", "3"]);
    let reader = &g.dirs[1];
    let work = g.root.path().join("out");
    std::fs::create_dir(&work).unwrap();

    // A directory is refused, with its path, before anything is fetched.
    let (success, _, err) = run(get_cmd(&cap, reader).arg("-o").arg(&work));
    assert!(!success);
    assert!(
        err.contains(&format!("{} is a directory", work.display())),
        "{err}"
    );
    assert!(partials(g.root.path()).is_empty() && partials(&work).is_empty());

    // A symlink is followed: it stays a link, its target gets the file.
    let target = work.join("target.bin");
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink("target.bin", work.join("link")).unwrap();
    ok(get_cmd(&cap, reader).arg("-o").arg(work.join("link")));
    let link = std::fs::symlink_metadata(work.join("link")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    assert!(std::fs::read(&target).unwrap() == data);

    // A failed download leaves the old file as it was, and no partial.
    let (success, _, err) = run(get_cmd(&missing_cap(&cap), reader).arg("-o").arg(&target));
    assert!(!success);
    assert!(err.contains("no share of this file was found"), "{err}");
    assert!(std::fs::read(&target).unwrap() == data, "old file changed");
    assert!(partials(&work).is_empty(), "{:?}", partials(&work));

    // A FIFO is written into directly and stays a FIFO.
    let fifo = work.join("fifo");
    mkfifo(&fifo);
    let (tx, rx) = std::sync::mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        std::fs::File::open(&f)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let _ = tx.send(got);
    });
    let (success, _, err) = run(get_cmd(&cap, reader).arg("-o").arg(&fifo));
    let still_fifo = std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo();
    assert!(success && still_fifo, "fifo kept: {still_fifo}; {err}");
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the FIFO's reader got the file");
    assert!(got == data, "the FIFO carried {} bytes", got.len());

    // A FIFO whose reader leaves early: the command fails and says how
    // many bytes went out.
    let fifo2 = work.join("fifo2");
    mkfifo(&fifo2);
    let f = fifo2.clone();
    std::thread::spawn(move || {
        let mut first = vec![0u8; 100_000];
        let _ = std::fs::File::open(&f).unwrap().read_exact(&mut first);
    });
    let (success, _, err) = run(get_cmd(&cap, reader).arg("-o").arg(&fifo2));
    assert!(!success, "a broken FIFO is a failure");
    assert!(
        err.contains(&format!("the output to {} is incomplete", fifo2.display()))
            && err.contains("bytes were written"),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(&fifo2)
        .unwrap()
        .file_type()
        .is_fifo());

    // Standard output, without -o and with -o -.
    for args in [&[][..], &["-o", "-"][..]] {
        let out = get_cmd(&cap, reader).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(out.stdout == data, "{args:?}: {} bytes", out.stdout.len());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("wrote 1500000 bytes to standard output"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A pipe whose reader leaves: non-zero exit, "incomplete" on stderr.
    let mut child = get_cmd(&cap, reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut first = vec![0u8; 1000];
    so.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..1000]);
    drop(so);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the output to standard output is incomplete"),
        "{err}"
    );
}

/// Issue 14.2: `put -`, `put` with no file, `put /dev/stdin` and a FIFO
/// (what `put <(cat f)` gives) store what was read, not what metadata says.
#[test]
fn put_reads_standard_input_and_pipes() {
    let g = grid("127.11.2", 4, |_, t| t);
    let data = bytes(300_000, 2);
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, &data).unwrap();
    let params = ["--k", "2", "--n", "4", "--happy", "3"];
    let from_file = put_cap(&g.dirs[0], &file, &params);
    let piped = |args: &[&str]| -> (String, String) {
        let mut child = grapevine()
            .arg("put")
            .args(args)
            .args(params)
            .arg("--node")
            .arg(&g.dirs[0])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let d = data.clone();
        let w = std::thread::spawn(move || stdin.write_all(&d));
        let out = child.wait_with_output().unwrap();
        w.join().unwrap().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "put {args:?}: {err}");
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), err)
    };
    for args in [&["-"][..], &[][..], &["/dev/stdin"][..]] {
        let (cap, err) = piped(args);
        assert_eq!(cap, from_file, "put {args:?} stored other bytes: {err}");
        assert!(
            err.contains("stored standard input (300000 bytes)") || args == ["/dev/stdin"],
            "{err}"
        );
    }
    // A FIFO, as `put <(cat f)` gives.
    let fifo = g.root.path().join("fifo");
    mkfifo(&fifo);
    let f = fifo.clone();
    let d = data.clone();
    let w = std::thread::spawn(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)?
            .write_all(&d)
    });
    let cap = put_cap(&g.dirs[0], &fifo, &params);
    w.join().unwrap().unwrap();
    assert_eq!(cap, from_file);
    // And it reads back.
    let out = get_cmd(&cap, &g.dirs[3]).output().unwrap();
    assert!(out.stdout == data);
    // `--help` says how standard input is read.
    let help = ok(grapevine().args(["put", "--help"]));
    assert!(
        help.contains("spooled to a private temporary file"),
        "{help}"
    );
}

/// Issue 14.3: a second `put` of a stored file from the same node succeeds
/// with the same capability and reports the shares servers already held.
#[test]
fn re_putting_a_stored_file_succeeds_and_says_so() {
    let g = grid("127.11.3", 4, |_, t| t);
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(2_000_000, 3)).unwrap();
    let put = || {
        run(grapevine()
            .arg("put")
            .arg(&file)
            .args(["--k", "2", "--n", "4", "--happy", "3", "--json", "--node"])
            .arg(&g.dirs[0]))
    };
    let (first_ok, first, err) = put();
    assert!(first_ok, "{err}");
    let (again_ok, again, err) = put();
    assert!(again_ok, "the second put failed: {err}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(first["cap"], again["cap"]);
    assert_eq!(
        again["already_held"].as_array().unwrap().len(),
        4,
        "{again}"
    );
    assert_eq!(again["servers"], 4, "{again}");
    assert!(
        err.contains("4 of them already on the grid before this put"),
        "{err}"
    );
}

fn files_in(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// Start a 40 MB upload from `from` with `params`, and return it once
/// `watched`'s store holds a partial share of it (the moment chosen by the
/// test, not raced against the machine's speed).
fn upload_until_share_appears(
    g: &Grid,
    from: usize,
    params: &[&str],
    watched: usize,
) -> std::process::Child {
    let file = g.root.path().join(format!("big{watched}.bin"));
    std::fs::write(&file, bytes(40_000_000, watched as u32)).unwrap();
    let mut put = grapevine()
        .arg("put")
        .arg(&file)
        .args(params)
        .args(["--random-key", "--json", "--node"])
        .arg(&g.dirs[from])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let incoming = g.dirs[watched].join("storage").join("incoming");
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_in(&incoming) == 0 {
        assert!(
            Instant::now() < deadline,
            "node {watched} never got a share"
        );
        assert!(
            put.try_wait().unwrap().is_none(),
            "the upload ended before node {watched} got a share"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    put
}

/// Issue 14.5: SIGTERM during an upload drains: the node stops taking
/// sessions but lets the upload finish its share, then leaves (exit 0);
/// the drain is bounded, so a client that stalls cannot hold the node.
#[test]
fn sigterm_during_an_upload_lets_it_finish_then_leaves() {
    // Node 5 drains for up to two minutes (so the test never races the
    // machine), node 4 for one second.
    let mut g = grid("127.11.4", 5, |i, t| match i {
        4 => format!("{t}drain_secs = 120\n"),
        3 => format!("{t}drain_secs = 1\n"),
        _ => t,
    });
    // happy 5: the upload needs node 5's share.
    let put = upload_until_share_appears(&g, 0, &["--k", "2", "--n", "5", "--happy", "5"], 4);
    signal(g.nodes[4].0.id(), "TERM");
    let out = put.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the upload failed: {err}");
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(up["servers"], 5, "{up}");
    assert!(!err.contains("reset"), "{err}");
    let status = g.nodes[4].0.wait().unwrap();
    assert!(status.success(), "node 5 exited {status:?}");
    let store = g.dirs[4].join("storage");
    assert_eq!(files_in(&store.join("shares")), 1, "node 5 kept its share");
    assert_eq!(files_in(&store.join("incoming")), 0);

    // Bounded: node 4 drains for a second; a client frozen mid-upload does
    // not keep it running.
    let mut put = upload_until_share_appears(&g, 0, &["--k", "2", "--n", "4", "--happy", "4"], 3);
    signal(put.id(), "STOP");
    signal(g.nodes[3].0.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = g.nodes[3].0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 still draining after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    signal(put.id(), "CONT");
    let _ = put.kill();
    let _ = put.wait();
    g.nodes.truncate(3);
}

/// Issue 14.4, the node's side: the record publishes free space (re-signed
/// once it moved by more than the floor, here with `record_refresh_secs`
/// shortened), and `members` and `status` show capacity, used and disk
/// free apart.
#[test]
fn free_space_is_published_and_shown_apart_from_capacity() {
    let g = grid("127.11.5", 2, |_, t| {
        format!(
            "{}record_refresh_secs = 2\n",
            t.replace("capacity_mib = 10240", "capacity_mib = 200")
        )
    });
    // 1-of-2: each node takes a 70 MB share; the floor is 64 MiB.
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(70_000_000, 5)).unwrap();
    put_cap(
        &g.dirs[0],
        &file,
        &["--k", "1", "--n", "2", "--happy", "2", "--random-key"],
    );
    wait_for("node 1 sees both nodes' free space drop", 60, || {
        members(&g.dirs[0]).is_some_and(|rows| {
            rows.len() == 2
                && rows.iter().all(|r| {
                    r["capacity_mib"] == 200 && r["free_mib"].as_u64().is_some_and(|f| f < 140)
                })
        })
    });
    let st = status(&g.dirs[1]).unwrap();
    assert_eq!(st["storage_capacity"], 200u64 << 20, "{st}");
    assert!(st["storage_used"].as_u64().unwrap() >= 70_000_000, "{st}");
    assert!(st["storage_disk_free"].as_u64().unwrap() > 0, "{st}");
    let text = ok(grapevine().args(["status", "--node"]).arg(&g.dirs[1]));
    assert!(
        text.contains("200.0 MiB offered") && text.contains("used") && text.contains("disk"),
        "{text}"
    );
    let table = ok(grapevine().args(["members", "--node"]).arg(&g.dirs[0]));
    assert!(
        table.contains("capacity MiB") && table.contains("free MiB"),
        "{table}"
    );
}

/// Issue 14.4, enforcement: a node offering 1 MiB refuses a 9.8 MB share
/// (the store checks capacity at allocation); the upload goes to the
/// others, and `members` shows what the small node offers.
#[test]
fn a_node_takes_no_more_than_the_capacity_it_offers() {
    let g = grid("127.11.6", 3, |i, t| {
        if i == 2 {
            t.replace("capacity_mib = 10240", "capacity_mib = 1")
        } else {
            t
        }
    });
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(9_800_000, 6)).unwrap();
    let out = ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(["--k", "1", "--n", "3", "--happy", "2", "--json", "--node"])
        .arg(&g.dirs[0]));
    let put: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(put["servers"], 2, "{put}");
    let small = g.dirs[2].join("storage");
    assert_eq!(
        files_in(&small.join("shares")),
        0,
        "the 1 MiB node took a share"
    );
    let rows = members(&g.dirs[0]).unwrap();
    let row = rows.iter().find(|r| r["nickname"] == "node3").unwrap();
    assert_eq!(row["capacity_mib"], 1, "{row}");
    assert!(row["free_mib"].as_u64().unwrap() <= 1, "{row}");
}
