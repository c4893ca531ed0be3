//! Read capabilities: all a reader needs to find, check and decrypt a file.
//!
//! * `gv:chk:<key>:<ueb-hash>:<k>:<n>:<size>`: key and UEB hash in lowercase
//!   unpadded base32. The storage index is derived from the key.
//! * `gv:lit:<data>`: files of at most [`LIT_MAX`] bytes live in the
//!   capability itself (base32); nothing is stored on the grid.
//!
//! * `gv:chk-verify:<si>:<ueb-hash>:<k>:<n>:<size>`: a [`VerifyCap`], the
//!   storage index instead of the key. Derived from a read capability
//!   ([`ReadCap::verify_cap`]), it is enough to find, check, verify and
//!   repair the file's shares (the extension block's hash authenticates
//!   every block hash and so every block), and not enough to decrypt them:
//!   the storage index is a one-way function of the key.
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

    /// The verify capability of the same file: everything but the key.
    pub fn verify_cap(&self) -> VerifyCap {
        VerifyCap {
            si: self.storage_index(),
            ueb_hash: self.ueb_hash,
            k: self.k,
            n: self.n,
            size: self.size,
        }
    }
}

/// A capability to find, check, verify and repair a CHK file's shares, but
/// not to read it: the read capability without its key, with the storage
/// index (a one-way function of the key) in its place. A server holding a
/// share derives it from the share's extension block
/// ([`verify_cap_of`](crate::chk::verify_cap_of)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyCap {
    /// Where the shares are filed.
    pub si: StorageIndex,
    /// BLAKE3 of the UEB.
    pub ueb_hash: [u8; 32],
    /// Shares needed.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// File size.
    pub size: u64,
}

impl fmt::Display for VerifyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gv:chk-verify:{}:{}:{}:{}:{}",
            self.si,
            b32(&self.ueb_hash),
            self.k,
            self.n,
            self.size
        )
    }
}

impl FromStr for VerifyCap {
    type Err = CodecError;

    /// A `gv:chk-verify:...` capability; a read capability (`gv:chk:...`)
    /// is accepted too and reduced to its verify capability.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        match parts.as_slice() {
            ["gv", "chk-verify", si, ueb, k, n, size] => {
                let (k, n, size) = (num(k)?, num(n)?, chk_size(size)?);
                check_k_of_n(k, n)?;
                Ok(VerifyCap {
                    si: crate::types::StorageIndex(un_b32(si)?),
                    ueb_hash: un_b32(ueb)?,
                    k: k as u16,
                    n: n as u16,
                    size,
                })
            }
            ["gv", "chk", ..] => match s.parse::<Cap>()? {
                Cap::Chk(c) => Ok(c.verify_cap()),
                Cap::Lit(_) => Err(CodecError::BadCap("not a CHK capability".into())),
            },
            _ => Err(CodecError::BadCap(
                "expected gv:chk-verify:... or gv:chk:...".into(),
            )),
        }
    }
}

/// A number as capabilities write it: decimal digits, no sign, no leading
/// zero (so that one file's capability strings differ in letter case at
/// most: base32 is read in either).
fn num(v: &str) -> Result<u64, CodecError> {
    let canonical =
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && (v == "0" || !v.starts_with('0'));
    canonical
        .then(|| v.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            // Echo a short prefix only: a capability may be any length.
            let shown: String = v.chars().take(24).collect();
            let more = if v.chars().nth(24).is_some() {
                "..."
            } else {
                ""
            };
            CodecError::BadCap(format!("bad number {shown:?}{more}"))
        })
}

/// A CHK capability's file size: a file of at most [`LIT_MAX`] bytes lives
/// in a `gv:lit:` capability and never has a CHK one.
fn chk_size(v: &str) -> Result<u64, CodecError> {
    let size = num(v)?;
    if size <= LIT_MAX as u64 {
        return Err(CodecError::BadCap(format!(
            "a file of {size} bytes has a gv:lit: capability, not a CHK one"
        )));
    }
    Ok(size)
}

fn check_k_of_n(k: u64, n: u64) -> Result<(), CodecError> {
    if k == 0 || k > n || n > 256 {
        return Err(CodecError::BadCap(format!("bad k-of-n {k}-of-{n}")));
    }
    Ok(())
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
                let (k, n, size) = (num(k)?, num(n)?, chk_size(size)?);
                check_k_of_n(k, n)?;
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

    /// One file, one capability string (up to letter case): numbers with signs or leading
    /// zeros, and CHK sizes a literal capability holds, are refused; a
    /// long bad field is not echoed whole.
    #[test]
    fn capabilities_are_canonical() {
        let c = Cap::Chk(ReadCap {
            key: [1; 32],
            ueb_hash: [2; 32],
            k: 3,
            n: 10,
            size: 100_000,
        });
        let s = c.to_string();
        assert!(s.ends_with(":3:10:100000"), "{s}");
        let head = s.trim_end_matches(":3:10:100000");
        for tail in [
            ":3:10:+100000",
            ":03:10:100000",
            ":3:010:100000",
            ":3:10:0100000",
            ":3:10: 100000",
            ":3:10:0",
            ":3:10:55",
        ] {
            let bad = format!("{head}{tail}");
            assert!(bad.parse::<Cap>().is_err(), "{bad}");
        }
        assert!(format!("{head}:3:10:56").parse::<Cap>().is_ok());
        let verify = match &c {
            Cap::Chk(r) => r.verify_cap().to_string(),
            Cap::Lit(_) => unreachable!(),
        };
        let vhead = verify.trim_end_matches(":3:10:100000");
        for tail in [":3:10:0100000", ":+3:10:100000", ":3:10:7"] {
            let bad = format!("{vhead}{tail}");
            assert!(bad.parse::<VerifyCap>().is_err(), "{bad}");
        }
        let huge = format!("{head}:3:10:{}", "9".repeat(100_000));
        let e = huge.parse::<Cap>().unwrap_err().to_string();
        assert!(e.len() < 200, "{} bytes of error", e.len());
    }

    /// Issue 23.2: the verify capability carries no key, is derived from
    /// the read capability and round-trips; a read capability cannot be
    /// made from it, and a verify capability is no read capability.
    #[test]
    fn a_verify_cap_is_the_read_cap_without_its_key() {
        let key = [7u8; 32];
        let r = ReadCap {
            key,
            ueb_hash: [2; 32],
            k: 3,
            n: 10,
            size: 12345,
        };
        let v = r.verify_cap();
        assert_eq!(v.si, r.storage_index());
        let s = v.to_string();
        assert!(s.starts_with("gv:chk-verify:"), "{s}");
        assert!(!s.contains(&b32(&key)), "the key is in {s}");
        assert_eq!(s.parse::<VerifyCap>().unwrap(), v);
        // A read capability reduces to its verify capability.
        assert_eq!(
            Cap::Chk(r.clone())
                .to_string()
                .parse::<VerifyCap>()
                .unwrap(),
            v
        );
        // Reading needs the key: a verify capability is not a read one.
        assert!(s.parse::<Cap>().is_err());
        for bad in [
            "gv:chk-verify:aaaa:aaaa:3:10:1",
            "gv:chk-verify:x:y",
            "gv:lit:aaaa",
        ] {
            assert!(bad.parse::<VerifyCap>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn prop_verify_caps_never_panic(s in ".{0,200}") {
            let _ = s.parse::<VerifyCap>();
        }

        #[test]
        fn prop_never_panics(s in ".{0,200}") {
            let _ = s.parse::<Cap>();
        }
    }
}
