//! Limits of the location record format, in a leaf module so that the
//! record codec and the errors that name the limits both depend on it and
//! not on each other.

/// Current record format version.
pub const RECORD_VERSION: u8 = 1;
/// Most socket addresses a record may carry.
pub const MAX_ADDRS: usize = 4;
/// Longest software version string, in bytes.
pub const MAX_SOFTWARE_LEN: usize = 12;
/// Longest nickname, in bytes.
pub const MAX_NICKNAME_LEN: usize = 16;
/// Largest encoded record (four IPv6 addresses, an admission certificate and
/// every field at its limit).
pub const MAX_RECORD_LEN: usize = 400;
/// Length of the trailing signature.
pub const SIGNATURE_LEN: usize = 64;
