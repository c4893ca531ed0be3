//! The sans-IO Noise session core: handshake and transport, no sockets, no
//! clocks, no tokio ([`Session`](crate::session::Session) is the driver).
//!
//! Pattern `Noise_IK_25519_ChaChaPoly_BLAKE2s`: the initiator knows the
//! responder's static key from its location record. The initiator's first
//! message carries its own signed record as payload, encrypted; the
//! responder verifies the record, checks that its X25519 key is the static
//! key the initiator used in the handshake, and so learns the peer's node
//! id. The responder answers with its own record, which the initiator
//! checks against the node it meant to reach.
//!
//! The transport's cipher is agreed from the two records
//! ([`agreed_cipher`]): AES-256-GCM (Noise's `AESGCM`) when both nodes
//! offer it ([`FEATURE_AES_GCM`](crate::record::FEATURE_AES_GCM): their
//! CPUs run it in hardware), ChaCha20-Poly1305 otherwise. The handshake
//! itself is always `ChaChaPoly`.
//!
//! * [`handshake`](InitiatorHandshake): the two sides of the handshake
//!   (`snow` runs it, with the compact cipher of `crate::cipher`); each
//!   ends in a [`Transport`].
//! * [`Transport`]: an established session's two cipher states. Every
//!   handshake message and transport frame is a 2-byte big-endian length
//!   followed by that many bytes ([`MAX_FRAME_LEN`] at most). A transport
//!   frame's plaintext ends with a flag byte: [`FLAG_FINAL`] marks the last
//!   fragment of a message, so messages larger than one frame are split and
//!   reassembled ([`Transport::open_frame`]) up to a configured maximum.
//!   Frames are sealed and opened in place, with Noise's nonces and REKEY
//!   driven here rather than by `snow`; both directions rekey after every
//!   [`SessionConfig::rekey_after`] frames, at the same frame count on both
//!   sides, so no key encrypts more than that many frames.
//! * [`FrameDecoder`]: splits a byte stream into frames, for tests, fuzzing
//!   and drivers that read in bulk.
//!
//! The published `Noise_IK_25519_ChaChaPoly_BLAKE2s` vectors (cacophony, as
//! shipped with `snow`) are run against this handshake's configuration and
//! the in-place transport, and the `Noise_IK_25519_AESGCM_BLAKE2s` ones
//! against the in-place `AESGCM` transport (`crypto/tests/vectors/`).

mod config;
mod frame;
mod handshake;
mod transport;
#[cfg(test)]
mod vectors;

pub use crate::cipher::TransportCipher;
pub use config::{SessionConfig, MAX_HANDSHAKE_LEN, NOISE_PARAMS, PROLOGUE};
pub use frame::FrameDecoder;
pub use handshake::{agreed_cipher, InitiatorHandshake, ResponderHandshake};
pub use transport::{sealed_len, Transport, FLAG_FINAL, MAX_FRAGMENT, MAX_FRAME_LEN, TAG_LEN};
