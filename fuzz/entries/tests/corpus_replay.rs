//! Every committed corpus input, through the same function its fuzz target
//! calls: a known input that panics again fails CI, on stable Rust.
//!
//! A corpus directory that is missing or empty fails the test (a replay of
//! nothing would pass whatever the code does). Each replay calls the
//! target's entry function itself, the one its `fuzz_targets/*.rs` file is
//! checked to call (not a dispatch by name, which could be unhooked
//! unnoticed), and every target must have its replay test in this file.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("directory entry").path();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} is empty: nothing would be replayed",
        dir.display()
    );
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    let files = corpus(target);
    for (path, bytes) in &files {
        let r = std::panic::catch_unwind(|| entry(bytes));
        assert!(
            r.is_ok(),
            "fuzz target {target} panicked on {} (replay: fuzz/run.sh, or cargo +nightly fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
    eprintln!("{target}: replayed {} inputs", files.len());
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    // A new target without a corpus (or without a line below) is a gap.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = grapevine_fuzz_entries::TARGETS
        .iter()
        .map(|s| s.to_string())
        .collect();
    known.sort();
    assert_eq!(on_disk, known);
    let targets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz_targets");
    for t in grapevine_fuzz_entries::TARGETS {
        let src = std::fs::read_to_string(targets.join(format!("{t}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{t}.rs: {e}"));
        assert!(
            src.contains(&format!("grapevine_fuzz_entries::{t}(")),
            "fuzz/fuzz_targets/{t}.rs does not call grapevine_fuzz_entries::{t}"
        );
        assert!(
            THIS_FILE.contains(&format!("replay(\"{t}\", grapevine_fuzz_entries::{t});")),
            "no replay test for fuzz target {t} in this file"
        );
    }
}

/// This file's own text: every target needs its replay line below.
const THIS_FILE: &str = include_str!("corpus_replay.rs");

#[test]
fn record_corpus() {
    replay("record", grapevine_fuzz_entries::record);
}

#[test]
fn gossip_corpus() {
    replay("gossip", grapevine_fuzz_entries::gossip);
}

#[test]
fn frames_corpus() {
    replay("frames", grapevine_fuzz_entries::frames);
}

#[test]
fn handshake_corpus() {
    replay("handshake", grapevine_fuzz_entries::handshake);
}

#[test]
fn storage_request_corpus() {
    replay("storage_request", grapevine_fuzz_entries::storage_request);
}

#[test]
fn share_file_corpus() {
    replay("share_file", grapevine_fuzz_entries::share_file);
}

#[test]
fn capability_corpus() {
    replay("capability", grapevine_fuzz_entries::capability);
}

#[test]
fn listing_corpus() {
    replay("listing", grapevine_fuzz_entries::listing);
}
