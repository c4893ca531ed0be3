//! Error types of the storage crate, one enum per layer: the store, the
//! codec, the client. Depends only on the leaf [`crate::types`] and the
//! protocol's error codes.

use grapevine_crypto::error::SessionError;

use crate::protocol::ErrorCode;
use crate::types::Params;

/// Errors of the share store. Unless a variant says otherwise, nothing was
/// written or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The filesystem is full (ENOSPC) while writing; the partial share is
    /// discarded and never becomes visible.
    #[error("disk full writing {0}")]
    DiskFull(String),
    /// The announced size does not fit in the space left above the reserve.
    #[error("no space: need {need} bytes, {available} available above the reserve")]
    NoSpace {
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        available: u64,
    },
    /// Share numbers are below 256.
    #[error("share number {0} out of range")]
    BadShareNumber(u16),
    /// Zero or larger than the maximum share size.
    #[error("share size {0} not allowed")]
    TooLarge(u64),
    /// The share is already stored (shares are written once).
    #[error("share already exists")]
    AlreadyExists,
    /// No such share here.
    #[error("no such share")]
    NotFound,
    /// A read past the end of the share.
    #[error("read out of range")]
    OutOfRange,
    /// A write past the size announced at allocation.
    #[error("write beyond the allocated size")]
    BeyondAllocation,
    /// Shares are written in order.
    #[error("write at offset {got}, expected {expected}")]
    NotSequential {
        /// Next offset expected.
        expected: u64,
        /// Offset given.
        got: u64,
    },
    /// Closed before all announced bytes were written; discarded.
    #[error("share incomplete: {written} of {size} bytes")]
    Incomplete {
        /// Bytes written.
        written: u64,
        /// Bytes announced.
        size: u64,
    },
    /// The share failed its hash check; it was moved to quarantine.
    #[error("share is corrupt (hash mismatch); quarantined")]
    Corrupt,
    /// Another process (or another open in this one) holds the store's
    /// lock; nothing was read, removed or written.
    #[error("store {0} is in use by another process")]
    Locked(String),
    /// A mutable slot already holds this or a newer version; nothing was
    /// changed.
    #[error("slot holds version {held}; version {offered} is not newer")]
    StaleSequence {
        /// The version held.
        held: u64,
        /// The version offered.
        offered: u64,
    },
    /// A copy checked before a deletion is not a good copy of the share,
    /// or the evidence is for another share; nothing was deleted.
    #[error("no evidence for deleting the share: {0}")]
    BadEvidence(String),
    /// The store directory was written by a newer release (its `format`
    /// file names a format this one does not know); nothing was read,
    /// removed or written.
    #[error("store {path} has format {found}; this release reads format {supported} at most")]
    UnsupportedFormat {
        /// The store's directory.
        path: String,
        /// The format found (or the unreadable text).
        found: String,
        /// The newest format this release reads.
        supported: u32,
    },
}

/// Errors of the CHK codec and capabilities. None of them changes stored
/// data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Invalid k, n or happy.
    #[error("invalid share parameters ({0}): need 1 <= k <= n <= 256 and 1 <= happy <= n")]
    BadParams(Params),
    /// A segment of the wrong length was given to the encoder.
    #[error("segment of {got} bytes, expected {expected}")]
    SegmentLength {
        /// Expected length.
        expected: u64,
        /// Length given.
        got: u64,
    },
    /// The erasure coder failed.
    #[error("erasure coding: {0}")]
    Erasure(String),
    /// The UEB does not hash to the capability's, or disagrees with it.
    #[error("extension block does not match the capability")]
    UebMismatch,
    /// A share's hashes or blocks do not verify; skip it.
    #[error("share {0} is corrupt")]
    CorruptShare(u16),
    /// Fewer than k good shares.
    #[error(
        "only {have} good {} found, {need} needed to read the file",
        if *have == 1 { "share" } else { "shares" }
    )]
    NotEnoughShares {
        /// Good shares found.
        have: usize,
        /// Shares needed.
        need: usize,
    },
    /// Every share found failed on its extension block: they belong to
    /// the storage index, but not to this capability's file (a
    /// capability altered or mistyped after its storage index).
    #[error(
        "none of the {shares} {} found matches this capability's extension-block hash, size or parameters: is the capability right?",
        if *shares == 1 { "share" } else { "shares" }
    )]
    CapMismatch {
        /// Shares that did not match.
        shares: usize,
    },
    /// The decoded ciphertext does not hash as recorded.
    #[error("decoded file does not match its recorded hash")]
    CiphertextMismatch,
    /// Bytes that do not parse.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A capability string that does not parse.
    #[error("bad capability: {0}")]
    BadCap(String),
    /// A share or extension block written in a format newer than this
    /// release reads (the file was uploaded by a newer release).
    #[error("{what} has format version {version}; this release reads version {supported}")]
    UnsupportedVersion {
        /// What carries the version.
        what: &'static str,
        /// The version found.
        version: u32,
        /// The version this release reads.
        supported: u32,
    },
}

/// Errors of client operations. A failed upload leaves no share visible on
/// any server (unfinished shares are discarded with their session); a
/// failed download may have written a prefix of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A session failed.
    #[error("session to {0}: {1}")]
    Session(String, SessionError),
    /// A server did not answer a request (or take it) within the request
    /// deadline; its session is dropped.
    #[error("server {0} did not answer within the request deadline")]
    Timeout(String),
    /// A request on this session failed before (a deadline, a broken
    /// session, an answer out of protocol): the session is not used again,
    /// and requests on it fail at once.
    #[error("session to {0} failed earlier and is not used again")]
    Broken(String),
    /// A server refused a request.
    #[error("server {server}: {code:?}: {message}")]
    Server {
        /// The server.
        server: String,
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// A server answered with something unexpected.
    #[error("server {0} answered out of protocol: {1}")]
    Protocol(String, String),
    /// Encoding or verification failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Fewer distinct servers than `happy` took shares; the upload failed.
    #[error("only {got} distinct servers accepted shares, {happy} needed")]
    NotHappy {
        /// Servers that hold shares.
        got: usize,
        /// Servers needed.
        happy: usize,
    },
    /// No server asked holds any share of the file.
    #[error(
        "no share of this file was found: {responding} of the {asked} servers asked answered \
         and none holds any; it is not stored on this grid, or every server that held it is gone"
    )]
    NoShares {
        /// Servers asked.
        asked: usize,
        /// Servers that answered.
        responding: usize,
    },
    /// Every session of the pool stayed in use for the pool's wait time.
    #[error("all {0} sessions of the pool are in use")]
    PoolExhausted(usize),
    /// A k-of-n file is read from k servers at once: more than the pool
    /// may hold.
    #[error("reading a file of k = {need} takes {need} sessions at once, more than the {sessions} this client may hold (client_sessions): use a smaller k, or raise client_sessions")]
    TooFewSessions {
        /// k.
        need: u16,
        /// The pool's cap.
        sessions: usize,
    },
    /// Local file I/O.
    #[error("local i/o: {0}")]
    Io(#[from] std::io::Error),
}
