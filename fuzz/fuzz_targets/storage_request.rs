//! Storage requests and responses, and a share server answering them.
#![no_main]
use std::sync::OnceLock;

use grapevine_storage::protocol::{decode, RequestMsg, ResponseMsg};
use grapevine_storage::server::ShareServer;
use grapevine_storage::ShareStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("gv-fuzz-store-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let _ = decode::<ResponseMsg>(data);
    if decode::<RequestMsg>(data).is_ok() || data.first() == Some(&0) {
        let store = ShareStore::open(dir, 0).unwrap();
        let mut srv = ShareServer::new(store);
        let out = srv.handle_bytes(data).joined();
        decode::<ResponseMsg>(&out).expect("the server's answers decode");
    }
});
