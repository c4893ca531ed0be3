//! The first handshake message, as a responder receives it from anyone.
#![no_main]
use std::sync::OnceLock;

use grapevine_crypto::noise::ResponderHandshake;
use grapevine_crypto::{Identity, LocationRecord, SessionConfig, SignedRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static ME: OnceLock<(Identity, SignedRecord)> = OnceLock::new();
    let (id, rec) = ME.get_or_init(|| {
        let id = Identity::generate();
        let rec = LocationRecord::new(&id, vec!["10.0.0.1:1".parse().unwrap()])
            .sign(&id)
            .unwrap();
        (id, rec)
    });
    let _ = ResponderHandshake::respond(id, rec, data, &SessionConfig::default());
});
