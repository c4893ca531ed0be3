//! Share contents as read back from a server or a disk: the footer and the
//! URI extension block checked against a capability.
#![no_main]
use std::sync::OnceLock;

use grapevine_storage::cap::ReadCap;
use grapevine_storage::chk::{Encoder, Footer, Params, Ueb};
use libfuzzer_sys::fuzz_target;

fn cap() -> &'static ReadCap {
    static CAP: OnceLock<ReadCap> = OnceLock::new();
    CAP.get_or_init(|| {
        let mut enc = Encoder::new([3; 32], Params::default(), 1000).unwrap();
        let mut buf = vec![5u8; 1000];
        enc.encode_segment(&mut buf).unwrap();
        enc.finish().unwrap().1
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = Footer::parse(data, data.len() as u64 + 1000);
    let _ = Ueb::decode_checked(data, cap());
});
