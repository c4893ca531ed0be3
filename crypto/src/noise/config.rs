//! The session protocol's name, prologue and tunables.

use std::time::Duration;

use crate::admission::GridId;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Bound into every handshake so sessions of other protocols (or of another
/// version of this one) never match: a peer with another prologue fails
/// the handshake.
pub const PROLOGUE: &[u8] = b"grapevine session v1";
/// Largest handshake message: ephemeral key, encrypted static key and a
/// signed record of at most `MAX_RECORD_LEN` bytes, with tags, fit easily.
pub const MAX_HANDSHAKE_LEN: usize = 1024;

/// Tunables of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Largest message accepted or sent, in bytes.
    pub max_message: usize,
    /// Frames per direction between rekeys.
    pub rekey_after: u64,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
    /// A closed grid: sessions with peers whose record carries no valid
    /// admission certificate for this grid are refused, on both sides.
    pub grid: Option<GridId>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_message: 16 << 20,
            rekey_after: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            grid: None,
        }
    }
}
