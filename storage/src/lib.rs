//! Storage for grapevine: the share server's on-disk store.
//!
//! [`ShareStore`] keeps write-once shares under a node's directory: written
//! to a temporary file, fsynced, renamed into place and the directory
//! fsynced, so a share is either wholly there or not at all; each carries an
//! XXH3-128 checksum against disk corruption, checked on full reads, and a
//! corrupt share is quarantined rather than served. A configured reserve of
//! free space is never used.
//!
//! [`chk`] is the sans-IO file codec: ChaCha20 encryption under a per-file
//! or convergent key, 1 MiB segments, k-of-N Reed-Solomon blocks, BLAKE3
//! block hashes under per-share Merkle roots, and an extension block whose
//! hash is in the read capability ([`cap`]). [`protocol`] is the versioned
//! request/response protocol carried over Noise sessions, [`server`] answers
//! it from a store (a synchronous core and a thin tokio driver), and
//! [`client`] uploads (placement by the permuted list, servers-of-happiness,
//! surviving servers lost mid-upload), downloads (verifying every block,
//! surviving lost and corrupt shares) and checks files, with requests
//! pipelined, each under a deadline, over sessions from a capped pool.
//!
//! Modules depend on each other one way only: [`types`] (storage index,
//! parameters) and [`error`] at the bottom; the codec, the store and the
//! protocol above them; the server and the client on top
//! (`tests/tests/structure.rs` checks that no import loop comes back). Test
//! hooks (a local server in one call, a fake free-space figure) are in
//! `testing` and behind the `test-util` feature.
//!
//! ```
//! use grapevine_storage::{ShareStore, StorageIndex};
//! let dir = tempfile::tempdir().unwrap();
//! let store = ShareStore::open(dir.path(), 0).unwrap();
//! let si = StorageIndex([1; 16]);
//! let mut w = store.allocate(&si, 0, 5).unwrap();
//! w.write_at(0, b"share").unwrap();
//! w.close().unwrap();
//! assert_eq!(store.read(&si, 0, 0, 5).unwrap(), b"share");
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod budget;
pub mod cap;
pub mod chk;
pub mod client;
pub mod error;
pub mod latency;
pub mod listing;
pub mod listing_datagram;
pub mod protocol;
pub mod repair;
pub mod server;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod types;

pub use budget::MemoryBudget;
pub use cap::{Cap, ReadCap, VerifyCap};
pub use chk::{Decoder, Encoder};
pub use client::{PoolConfig, SessionPool};
pub use error::{ClientError, CodecError, StoreError};
pub use server::ServerStats;
pub use store::{ShareStore, ShareWriter};
pub use types::{Params, StorageIndex};
