//! Session framing: a byte stream split into length-prefixed frames.
#![no_main]
use grapevine_crypto::noise::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = FrameDecoder::default();
    // Feed in uneven pieces, as a socket would.
    for chunk in data.chunks(7) {
        d.extend(chunk);
        while let Ok(Some(f)) = d.next_frame() {
            assert!(!f.is_empty());
        }
    }
});
