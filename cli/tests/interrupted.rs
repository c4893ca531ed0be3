//! Everyday use II, with real `grapevine run` processes: a `put` or `get`
//! stopped by a signal (Ctrl-C, a service manager's SIGTERM, a closed
//! terminal's SIGHUP) leaves nothing behind: no plaintext spool of standard
//! input in TMPDIR, no hidden partial file beside the target. And what
//! `get -o` makes is the user's file, with the user's umask.
//!
//! Each test uses its own loopback network (127.11.x.0/24); run them under
//! `flock /tmp/gv-heavy.lock`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Names in `dir` that `keep` selects.
fn names(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| keep(n))
        .collect()
}

/// Wait (polling every few milliseconds, with a deadline) until `cond`,
/// failing if `child` ends first.
fn until(what: &str, child: &mut std::process::Child, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the command ended before {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An interrupted `put -` removes its spool of standard input (a plaintext
/// copy of what it was given) and exits 128 + the signal; so does an
/// interrupted `get -o`, with its partial file, leaving the file it was to
/// replace as it was.
#[test]
fn an_interrupted_put_or_get_leaves_nothing_behind() {
    let g = grid("127.11.7", 4, |_, t| t);
    let params = ["--k", "2", "--n", "4", "--happy", "3"];

    // put - : standard input spooled, then SIGTERM while the writer keeps
    // the pipe open.
    let spool_dir = g.root.path().join("tmp");
    std::fs::create_dir(&spool_dir).unwrap();
    let mut put = grapevine()
        .args(["put", "-"])
        .args(params)
        .arg("--node")
        .arg(&g.dirs[0])
        .env("TMPDIR", &spool_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = put.stdin.take().unwrap();
    stdin.write_all(&bytes(1 << 20, 7)).unwrap();
    stdin.flush().unwrap();
    let spooled = |d: &Path| {
        std::fs::read_dir(d).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".grapevine-put.")
                && e.metadata().is_ok_and(|m| m.len() >= 1 << 20)
        })
    };
    until("the spool to hold what was written", &mut put, || {
        spooled(&spool_dir)
    });
    signal(put.id(), "TERM");
    let out = put.wait_with_output().unwrap();
    drop(stdin);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{said}");
    assert!(out.stdout.is_empty(), "no capability for a stopped put");
    let left = names(&spool_dir, |_| true);
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");

    // get -o over an existing file, held up by servers that do not answer
    // (frozen), then SIGINT.
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(3_000_000, 8)).unwrap();
    let cap = ok(grapevine()
        .arg("put")
        .arg(&file)
        .args(params)
        .arg("--node")
        .arg(&g.dirs[0]))
    .trim()
    .to_string();
    let out_dir = g.root.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();

    // A new file `get -o` makes is made as any new file is: 0666 less the
    // umask (it was 0600, the temporary file's mode).
    let fresh = out_dir.join("fresh.bin");
    let bin = grapevine().get_program().to_owned();
    let st = Command::new("sh")
        .arg("-c")
        .arg("umask 027; exec \"$0\" get \"$1\" -o \"$2\" --node \"$3\"")
        .arg(&bin)
        .arg(&cap)
        .arg(&fresh)
        .arg(&g.dirs[1])
        .status()
        .unwrap();
    assert!(st.success());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{mode:o}");
    }
    std::fs::remove_file(&fresh).unwrap();
    let target = out_dir.join("f.bin");
    std::fs::write(&target, b"old").unwrap();
    // A private file: its replacement is never readable by others on the
    // way (the partial file is made with its mode).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Node 1 holds one share of a 2-of-4 file: the others are needed.
    for n in &g.nodes[1..] {
        signal(n.0.id(), "STOP");
    }
    let mut get = grapevine()
        .arg("get")
        .arg(&cap)
        .arg("-o")
        .arg(&target)
        .arg("--node")
        .arg(&g.dirs[0])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until("the partial file", &mut get, || {
        !names(&out_dir, |n| n.ends_with(".partial")).is_empty()
    });
    {
        use std::os::unix::fs::PermissionsExt;
        let partial = out_dir.join(&names(&out_dir, |n| n.ends_with(".partial"))[0]);
        let mode = std::fs::metadata(&partial).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the partial file of a private one: {mode:o}");
    }
    signal(get.id(), "INT");
    let out = get.wait_with_output().unwrap();
    for n in &g.nodes[1..] {
        signal(n.0.id(), "CONT");
    }
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 2), "{said}");
    assert_eq!(names(&out_dir, |_| true), vec!["f.bin".to_string()]);
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
}
