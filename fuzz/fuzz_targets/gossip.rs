//! Gossip datagrams: the decoder, then a live SWIM core fed the bytes.
#![no_main]
use std::sync::{Arc, OnceLock};

use grapevine_membership::{wire::Message, Config, Swim};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fn node() -> Swim {
    static ID: OnceLock<(Arc<grapevine_crypto::Identity>, grapevine_crypto::SignedRecord)> =
        OnceLock::new();
    let (id, rec) = ID.get_or_init(|| {
        let id = Arc::new(grapevine_crypto::Identity::generate());
        let rec = grapevine_crypto::LocationRecord::new(&id, vec!["10.0.0.1:1".parse().unwrap()])
            .sign(&id)
            .unwrap();
        (id, rec)
    });
    Swim::new(
        id.clone(),
        rec.clone(),
        vec![],
        Config::new_lan(),
        rand::rngs::SmallRng::seed_from_u64(1),
        std::time::Instant::now(),
    )
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let _ = m.encode();
    }
    let mut n = node();
    let now = std::time::Instant::now();
    n.handle_datagram(now, "10.0.0.9:9".parse().unwrap(), data);
    n.handle_timeout(now + std::time::Duration::from_secs(1));
    while n.poll_transmit().is_some() {}
});
