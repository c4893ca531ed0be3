//! Location records as they arrive from gossip or a handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = grapevine_crypto::UnverifiedRecord::parse(data) {
        if let Ok(rec) = u.verify() {
            // A verified record re-encodes to exactly the bytes it came from.
            assert_eq!(rec.bytes(), data);
        }
    }
});
