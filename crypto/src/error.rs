//! Error types of the crypto crate, one enum per layer. A leaf: the
//! modules that return these errors depend on this one, never the reverse
//! (the record limits the messages name live in [`crate::limits`]).

use std::io;

use crate::limits::MAX_ADDRS;

/// Errors about identities and key files. No state changes on any of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The bytes are not a valid ed25519 public key.
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
    /// A signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// Text is not a 52-character base32 node id.
    #[error("not a node id: expected 52 characters of base32")]
    BadNodeIdText,
    /// Reading or writing a key file failed.
    #[error("key file {0}: {1}")]
    Io(String, #[source] io::Error),
    /// The key file may be read or written by others than its owner.
    #[error("key file {0} has mode {1:o}: it must be readable by its owner only (chmod 600)")]
    InsecurePermissions(String, u32),
    /// The key file is not in the expected format.
    #[error("key file {0} is malformed")]
    BadKeyFile(String),
}

/// Why a location record was rejected. A rejected record changes nothing.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the smallest possible record.
    #[error("record truncated")]
    Truncated,
    /// The format version byte is not one this software reads.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The body does not decode.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// Bytes follow the signature's expected position.
    #[error("{0} trailing bytes after record body")]
    TrailingBytes(usize),
    /// A text field is longer than allowed.
    #[error("field {field} is {len} bytes, at most {max} allowed")]
    FieldTooLong {
        /// The field's name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No socket address, or more than allowed.
    #[error("record has {0} addresses, 1 to {MAX_ADDRS} allowed")]
    AddressCount(usize),
    /// Free space above capacity.
    #[error("free space {free} MiB exceeds capacity {capacity} MiB")]
    FreeExceedsCapacity {
        /// Free MiB.
        free: u32,
        /// Capacity MiB.
        capacity: u32,
    },
    /// The record's X25519 key is not the one its signing key maps to.
    #[error("record's X25519 key is not the one its ed25519 key signs for")]
    StaticKeyMismatch,
    /// The node id is not a valid ed25519 key.
    #[error("record's node id is not a valid ed25519 key")]
    InvalidNodeId,
    /// The signature does not verify.
    #[error("bad record signature")]
    BadSignature,
}

/// Why a certificate does not admit a node to a closed grid (see
/// [`crate::admission`]). Checking changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The record carries no certificate.
    #[error("no admission certificate")]
    Missing,
    /// The signature is not the grid key's over this node id and expiry:
    /// the certificate was made for another node, or by another grid key.
    #[error(
        "the admission certificate does not admit this node to grid {0}: it was made for \
         another node id or by another grid key (`grapevine grid admit` makes one for this node's id)"
    )]
    BadSignature(String),
    /// The certificate has expired.
    #[error(
        "the admission certificate expired on {} (it is now {}): renew it with `grapevine grid admit`",
        unix_date(*expired),
        unix_date(*now)
    )]
    Expired {
        /// Its expiry, Unix seconds.
        expired: u64,
        /// The time it was checked at, Unix seconds.
        now: u64,
    },
    /// The text form does not parse.
    #[error("malformed admission certificate: {0}")]
    Malformed(&'static str),
}

/// Unix seconds as a UTC date and time (`2026-01-02T03:04:05Z`).
fn unix_date(secs: u64) -> String {
    std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(secs))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| format!("{secs} s after 1970"))
}

/// Errors of the Noise session layer. After any of them the session is
/// unusable and must be dropped (the cipher state may have advanced).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// A closed grid's peer without a valid admission certificate.
    #[error("peer {0} is not admitted to this grid: {1}")]
    NotAdmitted(String, AdmissionError),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// The handshake did not finish before its deadline.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// A handshake message failed: wrong key, tampering or truncation. The
    /// cause is not revealed further on purpose.
    #[error("handshake failed")]
    HandshakeFailed,
    /// The peer's identity record was invalid.
    #[error("peer identity rejected: {0}")]
    PeerRecord(#[from] RecordError),
    /// The peer proved an identity other than the one we dialled.
    #[error("peer is {got}, expected {expected}")]
    UnexpectedPeer {
        /// Node id dialled.
        expected: String,
        /// Node id proven.
        got: String,
    },
    /// The peer's record names a static key other than the one it used.
    #[error("peer's record does not match its session key")]
    KeyMismatch,
    /// A frame failed to decrypt: tampered, replayed, reordered or truncated.
    #[error("frame failed to decrypt")]
    Decrypt,
    /// A frame is malformed (empty, or bad fragment flags).
    #[error("malformed frame")]
    MalformedFrame,
    /// A message is larger than the configured maximum.
    #[error("message of {size} bytes exceeds maximum {max}")]
    MessageTooLarge {
        /// Size seen or asked for.
        size: usize,
        /// The maximum.
        max: usize,
    },
}
