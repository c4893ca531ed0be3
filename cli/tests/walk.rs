//! A new operator's walk of the CLI: `init` refuses what `run` would
//! refuse and leaves nothing behind when it fails; a repair that
//! regenerated nothing says why; a command asking a node that does not
//! answer gives up with a sentence instead of waiting forever.
//!
//! The repair test runs real nodes on 127.12.24.0/24; run it under
//! `flock /tmp/gv-heavy.lock`.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

/// `grapevine init ARGS DIR`.
fn init(dir: &Path, args: &[&str]) -> Output {
    grapevine()
        .arg("init")
        .arg(dir)
        .args(args)
        .args(["--no-gateway"])
        .output()
        .unwrap()
}

/// What `run` says of the configuration in `dir`, without the file's name
/// (`grapevine: DIR/config.toml: ...`).
fn run_refuses(dir: &Path) -> String {
    let out = grapevine().arg("run").arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "run accepted {}", dir.display());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let prefix = format!("grapevine: {}: ", dir.join("config.toml").display());
    err.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{err}"))
        .to_string()
}

/// `init --listen 0.0.0.0:7946` (and any other setting `run` would refuse)
/// is refused up front, as bad usage, with `run`'s own sentence; nothing
/// is written. With `--advertise` it is a node `run` accepts.
#[test]
fn init_refuses_what_run_would_refuse_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    // What `run` says of each setting, from a config edited by hand.
    let edited = root.path().join("edited");
    let out = init(&edited, &["--listen", "127.0.0.1:7946"]);
    assert!(out.status.success(), "{out:?}");
    let cfg = edited.join("config.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    for (args, from, to) in [
        (
            vec!["--listen", "0.0.0.0:7946"],
            "listen = \"127.0.0.1:7946\"",
            "listen = \"0.0.0.0:7946\"",
        ),
        (
            vec!["--listen", "[::]:7946"],
            "listen = \"127.0.0.1:7946\"",
            "listen = \"[::]:7946\"",
        ),
        (
            vec!["--listen", "127.0.0.1:7946", "--seed", "0.0.0.0:7946"],
            "seeds = []",
            "seeds = [\"0.0.0.0:7946\"]",
        ),
        (
            vec!["--listen", "127.0.0.1:7946", "--capacity-mib", "0"],
            "capacity_mib = 10240",
            "capacity_mib = 0",
        ),
    ] {
        std::fs::write(&cfg, good.replace(from, to)).unwrap();
        let said_by_run = run_refuses(&edited);
        let dir = root.path().join("new").join("node");
        let out = init(&dir, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&said_by_run),
            "{args:?}: {err} / {said_by_run}"
        );
        assert!(
            err.starts_with(&format!("grapevine: not creating {}: ", dir.display())),
            "{err}"
        );
        assert!(
            !root.path().join("new").exists(),
            "{args:?}: init wrote something"
        );
    }
    // Where others reach a node listening on every address: accepted by
    // init and by run's check (run itself would bind the port).
    let dir = root.path().join("any");
    let out = init(
        &dir,
        &["--listen", "0.0.0.0:7946", "--advertise", "10.0.0.5:7946"],
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(text.contains("advertise = [\"10.0.0.5:7946\"]"), "{text}");
    let t: toml::Table = text.parse().unwrap();
    assert_eq!(t["listen"].as_str(), Some("0.0.0.0:7946"));
}

/// A failed `init` removes the directories it made (parents too), and in
/// a directory that was there before, the files it wrote; the directory
/// itself stays. The failure here is a file size limit of 0 (as a full
/// disk would fail it), after the directory is made.
#[test]
fn a_failed_init_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let bin = grapevine().get_program().to_owned();
    let init_limited = |dir: &Path| -> Output {
        // SIGXFSZ ignored: a write over the limit fails with EFBIG.
        Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 0; exec \"$0\" init \"$1\" --no-gateway")
            .arg(&bin)
            .arg(dir)
            .output()
            .unwrap()
    };
    let made = root.path().join("a").join("b").join("node");
    let out = init_limited(&made);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("identity.key"), "{err}");
    assert!(
        !root.path().join("a").exists(),
        "left behind: {:?}",
        walk(root.path())
    );
    let there = root.path().join("there");
    std::fs::create_dir(&there).unwrap();
    std::fs::write(there.join("notes.txt"), b"mine").unwrap();
    let out = init_limited(&there);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(&there)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["notes.txt".to_string()]);
    // A name that is refused before anything is made leaves nothing
    // either.
    let named = root.path().join("c").join("node");
    let out = init(&named, &["--nickname", &"x".repeat(17)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!root.path().join("c").exists());
}

/// A repair that cannot regenerate anything says so in a sentence, with
/// the reason, not "0 shares regenerated ()".
#[test]
fn a_failed_repair_says_why_in_a_sentence() {
    let mut g = grid("127.12.24", 3, |_, t| t);
    let file = g.root.path().join("f.bin");
    std::fs::write(&file, bytes(300_000, 24)).unwrap();
    let cap = put_cap(&g.dirs[0], &file, &["--k", "2", "--n", "3", "--happy", "3"]);
    // Two of the three holders die: one share is left of the two needed.
    for n in &mut g.nodes[1..] {
        n.0.kill().unwrap();
        n.0.wait().unwrap();
    }
    let (code, out, err) = check(&cap, &g.dirs[0], &["--repair"]);
    assert_eq!(code, 5, "{out}{err}");
    assert!(!out.contains("()"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("repair "))
        .unwrap_or_else(|| panic!("no repair line: {out}"));
    assert!(
        line.starts_with("repair FAILED: no shares were regenerated: unrecoverable: "),
        "{line}"
    );
    assert!(line.contains("2 needed"), "{line}");
}

/// A fake node: a control socket in `dir` that accepts connections and
/// never answers (as a node still starting, or hung, does).
fn mute_control_socket(dir: &Path) -> std::thread::JoinHandle<()> {
    let l = std::os::unix::net::UnixListener::bind(dir.join("control.sock")).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    })
}

/// `status`, `members` and `repair` against a node that does not answer
/// give up after the control deadline (shortened here), naming the node
/// directory; `whoami` then reads the identity key, as for a stopped node.
#[test]
fn commands_give_up_on_a_node_that_does_not_answer() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let out = init(&dir, &["--listen", "127.0.0.1:7946"]);
    assert!(out.status.success(), "{out:?}");
    let id = ok(grapevine().args(["whoami", "--node"]).arg(&dir));
    let _mute = mute_control_socket(&dir);
    for cmd in ["status", "members", "repair", "whoami"] {
        let child = grapevine()
            .args([cmd, "--node"])
            .arg(&dir)
            .env("GRAPEVINE_CONTROL_TIMEOUT_SECS", "0.5")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = exit_within(
            child,
            60,
            &format!("`grapevine {cmd}` still waiting for the node"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if cmd == "whoami" {
            assert!(out.status.success(), "{err}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), id);
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!(
                "the node in {} did not answer within 0.5 s",
                dir.display()
            )),
            "{cmd}: {err}"
        );
    }
}
