//! Read capabilities: all a reader needs to find, check and decrypt a file.
//!
//! * `gv:chk:<key>:<ueb-hash>:<k>:<n>:<size>`: key and UEB hash in lowercase
//!   unpadded base32. The storage index is derived from the key.
//! * `gv:lit:<data>`: files of at most [`LIT_MAX`] bytes live in the
//!   capability itself (base32); nothing is stored on the grid.
//!
//! The kind after `gv:` is the capability's format version: a new format
//! gets a new kind, and a kind this release does not know is refused
//! ([`CodecError::BadCap`]), never guessed at.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;

use crate::error::CodecError;
use crate::types::{storage_index, StorageIndex};

/// Largest file inlined in a literal capability.
pub const LIT_MAX: usize = 55;

/// A capability to read a CHK file.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadCap {
    /// Encryption key.
    pub key: [u8; 32],
    /// BLAKE3 of the UEB.
    pub ueb_hash: [u8; 32],
    /// Shares needed.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// File size.
    pub size: u64,
}

impl fmt::Debug for ReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        write!(
            f,
            "ReadCap(si {}, {}-of-{}, {} bytes)",
            self.storage_index(),
            self.k,
            self.n,
            self.size
        )
    }
}

impl ReadCap {
    /// The storage index the shares are filed under.
    pub fn storage_index(&self) -> StorageIndex {
        storage_index(&self.key)
    }
}

/// Any capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cap {
    /// Stored on the grid.
    Chk(ReadCap),
    /// Inlined.
    Lit(Vec<u8>),
}

fn b32(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

fn un_b32<const N: usize>(s: &str) -> Result<[u8; N], CodecError> {
    let v = BASE32_NOPAD
        .decode(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| CodecError::BadCap("bad base32".into()))?;
    v.try_into()
        .map_err(|_| CodecError::BadCap("wrong length".into()))
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::Chk(c) => write!(
                f,
                "gv:chk:{}:{}:{}:{}:{}",
                b32(&c.key),
                b32(&c.ueb_hash),
                c.k,
                c.n,
                c.size
            ),
            Cap::Lit(d) => write!(f, "gv:lit:{}", b32(d)),
        }
    }
}

impl FromStr for Cap {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        match parts.as_slice() {
            ["gv", "lit", data] => {
                let d = BASE32_NOPAD
                    .decode(data.to_ascii_uppercase().as_bytes())
                    .map_err(|_| CodecError::BadCap("bad base32".into()))?;
                if d.len() > LIT_MAX {
                    return Err(CodecError::BadCap("literal too long".into()));
                }
                Ok(Cap::Lit(d))
            }
            ["gv", "chk", key, ueb, k, n, size] => {
                let num = |v: &str| {
                    v.parse::<u64>()
                        .map_err(|_| CodecError::BadCap(format!("bad number {v:?}")))
                };
                let (k, n, size) = (num(k)?, num(n)?, num(size)?);
                if k == 0 || k > n || n > 256 {
                    return Err(CodecError::BadCap(format!("bad k-of-n {k}-of-{n}")));
                }
                Ok(Cap::Chk(ReadCap {
                    key: un_b32(key)?,
                    ueb_hash: un_b32(ueb)?,
                    k: k as u16,
                    n: n as u16,
                    size,
                }))
            }
            _ => Err(CodecError::BadCap(
                "expected gv:chk:... or gv:lit:...".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Cap::Chk(ReadCap {
            key: [1; 32],
            ueb_hash: [2; 32],
            k: 3,
            n: 10,
            size: 12345,
        });
        let s = c.to_string();
        assert!(s.starts_with("gv:chk:"));
        assert_eq!(s.parse::<Cap>().unwrap(), c);
        let l = Cap::Lit(b"tiny".to_vec());
        assert_eq!(l.to_string().parse::<Cap>().unwrap(), l);
        for bad in [
            "",
            "gv:chk:a:b:3:10:1",
            "gv:chk:x:y",
            "http://x",
            "gv:lit:!!",
            "gv:chk:aaaa:aaaa:0:1:1",
            // A kind from a newer release.
            "gv:mut:aaaa:aaaa",
        ] {
            assert!(bad.parse::<Cap>().is_err(), "{bad}");
        }
        assert!(
            !format!("{:?}", c).contains(&b32(&[1; 32])),
            "Debug must not leak the key"
        );
    }

    proptest! {
        #[test]
        fn prop_never_panics(s in ".{0,200}") {
            let _ = s.parse::<Cap>();
        }
    }
}
