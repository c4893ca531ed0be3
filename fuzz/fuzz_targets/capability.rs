//! Capability strings and admission certificates, as users paste them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = s.parse::<grapevine_storage::Cap>() {
            let again: grapevine_storage::Cap = c.to_string().parse().expect("round trip");
            assert_eq!(again, c);
        }
        let _ = s.parse::<grapevine_crypto::Admission>();
    }
});
