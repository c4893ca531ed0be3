//! Signed listings: a query as a server reads it, an answer as a client
//! parses and verifies it. The body lives in `grapevine_fuzz_entries`, so
//! CI replays the corpus through the same code on stable Rust.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| grapevine_fuzz_entries::listing(data));
