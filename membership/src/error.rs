//! Error types of the membership crate.

/// Why a datagram could not be encoded or decoded. A datagram that fails to
/// decode is counted and dropped; it changes no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Larger than `MAX_DATAGRAM`.
    #[error("datagram of {0} bytes exceeds the 1400-byte limit")]
    TooLarge(usize),
    /// Unknown wire version.
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// A message kind this node does not know (added by a newer version).
    #[error("unknown message kind {0}")]
    UnknownKind(u32),
    /// Does not decode.
    #[error("malformed datagram: {0}")]
    Malformed(String),
    /// Bytes left after the message.
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
}

/// Errors of the membership driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The UDP socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The node's task has stopped.
    #[error("membership task has stopped")]
    Stopped,
    /// The node's own record could not be signed.
    #[error("own record: {0}")]
    Record(#[from] grapevine_crypto::RecordError),
}
