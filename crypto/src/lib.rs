//! Identities, signed location records and the Noise session layer of
//! grapevine.
//!
//! * [`Identity`] / [`NodeId`]: a node is its ed25519 key pair; its id is the
//!   public key, written as lowercase base32. The Noise static key is the
//!   X25519 (Montgomery) form of the same key, so a node id alone is enough
//!   to open an authenticated session to its owner.
//! * [`LocationRecord`] / [`SignedRecord`]: the compact signed statement of
//!   where a node listens and what it offers. Any node can verify one no
//!   matter who relayed it; a higher `seq` replaces a lower one.
//! * [`admission`]: closed grids; a grid key's certificate for a node id.
//! * [`noise`]: the sans-IO handshake (`Noise_IK_25519_ChaChaPoly_BLAKE2s`)
//!   and transport (ChaCha20-Poly1305, or AES-256-GCM where both ends run
//!   it in hardware) with framing, fragmentation and rekeying, checked
//!   against the published Noise and RFC 8439 vectors; [`Session`] (in [`session`])
//!   is its thin tokio driver, and the only module that uses tokio.
//! * [`placement`]: the permuted list, the one order of servers for a
//!   storage index that membership and storage share.
//!
//! Modules depend on each other one way only: [`limits`] and [`error`] at
//! the bottom, then [`identity`], [`admission`], [`record`], the Noise core,
//! and the driver on top (`tests/tests/structure.rs` checks that no import
//! loop comes back). This crate depends on no other grapevine crate.
//!
//! ```
//! use grapevine_crypto::{Identity, LocationRecord, SignedRecord};
//!
//! let me = Identity::generate();
//! let record = LocationRecord::new(&me, vec!["127.0.0.1:7000".parse().unwrap()])
//!     .sign(&me)
//!     .unwrap();
//! // Anyone can check it, whoever passed it on.
//! let received = SignedRecord::decode(record.bytes()).unwrap();
//! assert_eq!(received.node_id(), me.node_id());
//! assert!(record.bytes().len() <= 200);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
mod cipher;
pub mod error;
pub mod identity;
pub mod limits;
pub mod noise;
pub mod pair_key;
pub mod placement;
pub mod record;
pub mod session;
pub mod testing;
pub mod verified;

pub use admission::{Admission, GridId};
pub use error::{AdmissionError, IdentityError, RecordError, SessionError};
pub use identity::{Identity, NodeId};
pub use noise::{SessionConfig, Transport, TransportCipher};
pub use record::{LocationRecord, SignedRecord, UnverifiedRecord};
pub use session::Session;
