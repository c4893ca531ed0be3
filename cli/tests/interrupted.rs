//! Everyday use II, with real `grapevine run` processes: a `put` or `get`
//! stopped by a signal (Ctrl-C, a service manager's SIGTERM, a closed
//! terminal's SIGHUP) leaves nothing behind: no plaintext spool of standard
//! input in TMPDIR, no hidden partial file beside the target, no progress
//! bar on the terminal. Then it dies by the signal, so that a shell loop of
//! puts stops at Ctrl-C. And what `get -o` makes is the user's file, with
//! the user's umask.
//!
//! Each test uses its own loopback network (127.11.x.0/24); run them under
//! `flock /tmp/gv-heavy.lock`.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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
/// copy of what it was given) and dies by the signal; so does an
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
    assert_eq!(out.status.signal(), Some(15), "{said}");
    assert!(said.contains("stopped by SIGTERM"), "{said}");
    assert!(out.stdout.is_empty(), "no capability for a stopped put");
    let left = names(&spool_dir, |_| true);
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");

    // get -o over an existing file, held up by servers that do not answer
    // (frozen), then SIGINT.
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(3_000_000, 8)).unwrap();
    let cap = put_cap(&g.dirs[0], &file, &params);
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
    assert_eq!(out.status.signal(), Some(2), "{said}");
    assert!(said.contains("stopped by an interrupt"), "{said}");
    assert_eq!(names(&out_dir, |_| true), vec!["f.bin".to_string()]);
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
}

/// Ctrl-C in a shell loop of puts (`for f in *; do grapevine put $f; done`)
/// stops the loop: the put dies by SIGINT (after removing its spool), and
/// the shell, seeing that, stops too (it went on to the next put when the
/// put exited 130).
#[test]
fn ctrl_c_stops_a_shell_loop_of_puts() {
    let g = grid("127.11.11", 1, |_, t| t);
    let spool_dir = g.root.path().join("tmp");
    std::fs::create_dir(&spool_dir).unwrap();
    let bin = grapevine().get_program().to_owned();
    // As a terminal's Ctrl-C does: SIGINT to the whole process group (the
    // shell and its put), the shell's SIGINT at its default whatever ours.
    let mut sh = Command::new("env")
        .args(["--default-signal=INT", "bash", "-c"])
        .arg(
            "for i in 1 2 3; do \"$0\" put - --k 1 --n 1 --happy 1 --node \"$1\" || echo \"put $i: $?\"; done; \
             echo after the loop",
        )
        .arg(&bin)
        .arg(&g.dirs[0])
        .env("TMPDIR", &spool_dir)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = sh.stdin.take().unwrap();
    stdin.write_all(&bytes(1 << 16, 11)).unwrap();
    stdin.flush().unwrap();
    until("the first put's spool", &mut sh, || {
        !names(&spool_dir, |n| n.starts_with(".grapevine-put.")).is_empty()
    });
    assert!(Command::new("kill")
        .args(["-INT", "--", &format!("-{}", sh.id())])
        .status()
        .unwrap()
        .success());
    // Were the loop to go on, its next puts would read to the end.
    drop(stdin);
    let out = sh.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.signal(), Some(2), "{said}");
    assert!(!said.contains("after the loop"), "{said}");
    assert!(said.contains("stopped by an interrupt"), "{said}");
    let left = names(&spool_dir, |_| true);
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// What a terminal shows once `transcript` has been written to it: text,
/// carriage returns, newlines, backspaces, and the control sequences
/// indicatif and console use (cursor up, down, left, right and to a
/// column; erase in line and in display). Others are skipped.
fn screen(transcript: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(transcript);
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut r, mut c) = (0usize, 0usize);
    let mut it = text.chars().peekable();
    while let Some(ch) = it.next() {
        match ch {
            '\r' => c = 0,
            '\n' => r += 1,
            '\u{8}' => c = c.saturating_sub(1),
            '\u{1b}' if it.peek() == Some(&'[') => {
                it.next();
                let mut params = String::new();
                let fin = loop {
                    match it.next() {
                        Some(x) if x.is_ascii_digit() || x == ';' || x == '?' => params.push(x),
                        Some(x) => break x,
                        None => break '\0',
                    }
                };
                let n = params
                    .trim_start_matches('?')
                    .split(';')
                    .next()
                    .and_then(|p| p.parse::<usize>().ok());
                let count = n.unwrap_or(1).max(1);
                while rows.len() <= r {
                    rows.push(Vec::new());
                }
                match fin {
                    'A' => r = r.saturating_sub(count),
                    'B' => r += count,
                    'C' => c += count,
                    'D' => c = c.saturating_sub(count),
                    'G' => c = count - 1,
                    'K' => match n.unwrap_or(0) {
                        0 => rows[r].truncate(c),
                        1 => rows[r].iter_mut().take(c + 1).for_each(|x| *x = ' '),
                        _ => rows[r].clear(),
                    },
                    'J' => match n.unwrap_or(0) {
                        0 => {
                            rows[r].truncate(c);
                            rows.truncate(r + 1);
                        }
                        _ => rows.iter_mut().for_each(Vec::clear),
                    },
                    _ => {}
                }
            }
            '\u{1b}' => {
                it.next();
            }
            ch if ch.is_control() => {}
            ch => {
                while rows.len() <= r {
                    rows.push(Vec::new());
                }
                let row = &mut rows[r];
                while row.len() < c {
                    row.push(' ');
                }
                if c < row.len() {
                    row[c] = ch;
                } else {
                    row.push(ch);
                }
                c += 1;
            }
        }
    }
    rows.into_iter()
        .map(|r| r.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

#[test]
fn the_screen_model_follows_carriage_returns_and_erasures() {
    let s = screen(b"abc\r\x1b[2Kxy\r\nline2\x1b[1A\rQ\x1b[K");
    assert_eq!(s, vec!["Q".to_string(), "line2".to_string()]);
}

/// A `get` stopped by Ctrl-C on a terminal clears its progress bar before
/// it says it was stopped: the terminal shows the sentence, not the bar
/// with the sentence run on after it. The get writes to a pipe whose
/// reader takes the first segment (so the bar shows it) and no more (so the
/// get waits).
#[test]
fn a_signal_clears_the_progress_bar_before_saying_so() {
    let g = grid("127.11.10", 1, |_, t| t);
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(3_000_000, 10)).unwrap();
    let cap = put_cap(&g.dirs[0], &file, &["--k", "1", "--n", "1", "--happy", "1"]);
    let bin = grapevine().get_program().to_owned();
    let (get_pid, reader_pid) = (
        g.root.path().join("get.pid"),
        g.root.path().join("reader.pid"),
    );
    let script = g.root.path().join("get.sh");
    std::fs::write(
        &script,
        format!(
            "sh -c 'echo $$ > \"$0\"; exec \"$1\" get \"$2\" --node \"$3\"' '{}' '{}' '{}' '{}' \\
             | sh -c 'echo $$ > \"$0\"; head -c 1048576 > /dev/null; exec sleep 600' '{}'\n",
            get_pid.display(),
            Path::new(&bin).display(),
            cap,
            g.dirs[0].display(),
            reader_pid.display(),
        ),
    )
    .unwrap();
    // `script` gives the pipeline a terminal; its transcript is what the
    // terminal was sent.
    let mut term = Command::new("script")
        .arg("-qec")
        .arg(format!("sh {}", script.display()))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let shown = shown.clone();
        let mut out = term.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    until(
        "the progress bar showing the first segment",
        &mut term,
        || text().contains("MiB/"),
    );
    let pid = |f: &Path| std::fs::read_to_string(f).unwrap().trim().to_string();
    signal(pid(&get_pid).parse().unwrap(), "INT");
    until("the get to say it was stopped", &mut term, || {
        text().contains("stopped by")
    });
    wait_for("the get to end", 60, || {
        !Path::new(&format!("/proc/{}", pid(&get_pid))).exists()
    });
    signal(pid(&reader_pid).parse().unwrap(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    while term.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "script(1) did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap();
    let rows = screen(&shown.lock().unwrap());
    assert!(
        !rows.iter().any(|l| l.contains("MiB/")),
        "the bar is still on the terminal: {rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|l| l.starts_with("grapevine: stopped by an interrupt")),
        "{rows:#?}"
    );
}
