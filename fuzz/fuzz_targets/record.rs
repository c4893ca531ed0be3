//! Location records as they arrive from gossip or a handshake.
//! The body lives in `grapevine_fuzz_entries`, so CI replays the corpus
//! through the same code on stable Rust.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| grapevine_fuzz_entries::record(data));
