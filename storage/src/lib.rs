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
//! hash is in the read capability ([`cap`]). [`protocol`] is the
//! request/response protocol carried over Noise sessions, [`server`] answers
//! it from a store, and [`client`] uploads (placement by the permuted list,
//! servers-of-happiness, surviving servers lost mid-upload), downloads
//! (verifying every block, surviving lost and corrupt shares) and checks
//! files, with requests pipelined over sessions from a capped [`pool`].
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

pub mod cap;
pub mod chk;
pub mod client;
pub mod error;
pub mod pool;
pub mod protocol;
pub mod server;
pub mod store;

pub use cap::{Cap, ReadCap};
pub use chk::{Decoder, Encoder, Params};
pub use error::{CodecError, StoreError};
pub use pool::{PoolConfig, SessionPool};
pub use store::{ShareStore, ShareWriter, StorageIndex};
