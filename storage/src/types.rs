//! The types every part of storage shares: the storage index (and how it
//! is derived from a file's key) and the erasure-coding parameters. A leaf:
//! it depends on no other module of the crate, so the codec, the store, the
//! protocol and the client all depend on it and never on each other for
//! these.

use data_encoding::BASE32_NOPAD;

/// Length of a storage index in bytes.
pub const SI_LEN: usize = 16;
/// Largest share a server stores, and so the largest a file's layout may
/// imply (a share holds 1/k of a file plus hashes): every size computed
/// from a capability, an extension block or a server's answer is checked
/// against it before anything is read or allocated.
pub const MAX_SHARE_SIZE: u64 = 64 << 30;
/// Largest number of shares of one file (share numbers are below it).
pub const MAX_SHARES: u16 = 256;

/// A storage index: 16 bytes derived from the file's key, naming its shares.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode,
)]
pub struct StorageIndex(pub [u8; SI_LEN]);

impl std::fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl StorageIndex {
    /// The storage index written as [`Display`](std::fmt::Display) writes
    /// it (lowercase unpadded base32), if `s` is one.
    pub fn parse(s: &str) -> Option<Self> {
        let v = BASE32_NOPAD
            .decode(s.to_ascii_uppercase().as_bytes())
            .ok()?;
        Some(StorageIndex(v.try_into().ok()?))
    }
}

/// The key's storage index: the first [`SI_LEN`] bytes of
/// `BLAKE3-derive-key("grapevine storage index v1", key)`. Knowing it
/// reveals nothing about the key.
pub fn storage_index(key: &[u8; 32]) -> StorageIndex {
    let h = blake3::derive_key("grapevine storage index v1", key);
    let mut si = [0u8; SI_LEN];
    si.copy_from_slice(&h[..SI_LEN]);
    StorageIndex(si)
}

/// What a server did with a reader's report that one of its shares is
/// corrupt (the server checks the share itself before doing anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportVerdict {
    /// The share checked out (or did recently): it stays.
    Kept,
    /// The share failed the server's own check and was quarantined.
    Quarantined,
}

/// Erasure-coding parameters (checked by the codec:
/// [`Params::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Params {
    /// Shares needed to read.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// Distinct servers that must hold shares for an upload to succeed.
    pub happy: u16,
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "k = {}, n = {}, happy = {}", self.k, self.n, self.happy)
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            k: 3,
            n: 10,
            happy: 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation is part of the capability format (a reader finds a
    /// file's shares under the index its key gives): pinned, with the value
    /// checked by the independent BLAKE3 of
    /// `crypto/tests/vectors/permuted-list.py`.
    #[test]
    fn storage_index_derivation_is_pinned() {
        let si = storage_index(&[1; 32]);
        assert_eq!(si.to_string(), "fe7hkl7uoctngxzf3gdz7p2bli");
        assert_eq!(StorageIndex::parse(&si.to_string()), Some(si));
        assert_eq!(StorageIndex::parse("fe7hkl7uoc"), None);
        assert_ne!(si, storage_index(&[2; 32]));
    }
}
