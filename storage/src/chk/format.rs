//! The share and UEB formats, and what both sides of the codec share: the
//! segment size, block sizes, the Merkle root, the convergent key, the
//! parameters' check.

use chacha20::cipher::KeyIvInit;
use chacha20::ChaCha20;

use crate::cap::ReadCap;
use crate::error::CodecError;
use crate::types::Params;

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: u64 = 1 << 20;
/// Footer length.
pub const FOOTER_LEN: u64 = 24;
/// The share layout's version, the footer's last byte.
pub const SHARE_VERSION: u8 = b'1';
pub(crate) const MAGIC: &[u8; 4] = b"GVS1";
/// The UEB format's version, its first field.
pub const UEB_VERSION: u8 = 1;

impl Params {
    /// Check `1 <= k <= happy <= n <= 256` (k may exceed happy only when
    /// n == k).
    ///
    /// # Errors
    /// [`CodecError::BadParams`].
    pub fn validate(&self) -> Result<(), CodecError> {
        if self.k == 0 || self.k > self.n || self.n > 256 || self.happy > self.n || self.happy == 0
        {
            return Err(CodecError::BadParams(*self));
        }
        Ok(())
    }
}

/// The URI extension block: everything a reader needs besides the key.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Ueb {
    /// Format version.
    pub version: u8,
    /// Shares needed.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// File size in bytes.
    pub size: u64,
    /// Segment size.
    pub segment_size: u64,
    /// Merkle root of each share's block hashes.
    pub share_roots: Vec<[u8; 32]>,
    /// BLAKE3 of the whole ciphertext.
    pub ciphertext_hash: [u8; 32],
}

impl Ueb {
    /// Number of segments.
    pub fn segments(&self) -> u64 {
        self.size.div_ceil(self.segment_size).max(1)
    }

    /// Plaintext length of segment `i`.
    pub fn segment_len(&self, i: u64) -> u64 {
        let start = i * self.segment_size;
        (self.size - start.min(self.size)).min(self.segment_size)
    }

    /// Block length of segment `i` (the segment padded to an even multiple
    /// of k, divided by k).
    pub fn block_len(&self, i: u64) -> u64 {
        block_len(self.segment_len(i), self.k)
    }

    /// Offset of segment `i`'s block within a share.
    pub fn block_offset(&self, i: u64) -> u64 {
        // All segments but the last are full.
        i * block_len(self.segment_size, self.k)
    }

    /// Total bytes of blocks in each share.
    pub fn blocks_len(&self) -> u64 {
        let s = self.segments();
        self.block_offset(s - 1) + self.block_len(s - 1)
    }

    /// Encoded form.
    pub fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, bincode::config::standard()).expect("UEB encodes")
    }

    /// Decode and check against the capability's hash and parameters.
    ///
    /// # Errors
    /// [`CodecError::UebMismatch`] or [`CodecError::Malformed`].
    pub fn decode_checked(bytes: &[u8], cap: &ReadCap) -> Result<Self, CodecError> {
        if blake3::hash(bytes).as_bytes() != &cap.ueb_hash {
            return Err(CodecError::UebMismatch);
        }
        // The version comes first: a newer UEB is refused before its body
        // is interpreted by the rules of this one.
        match bytes.first() {
            Some(&UEB_VERSION) => {}
            Some(&v) => {
                return Err(CodecError::UnsupportedVersion {
                    what: "extension block",
                    version: v as u32,
                    supported: UEB_VERSION as u32,
                })
            }
            None => return Err(CodecError::Malformed("empty extension block".into())),
        }
        let (u, used): (Ueb, usize) =
            bincode::decode_from_slice(bytes, bincode::config::standard().with_limit::<65536>())
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
        if used != bytes.len()
            || u.k != cap.k
            || u.n != cap.n
            || u.size != cap.size
            || u.share_roots.len() != u.n as usize
            || u.segment_size == 0
            || u.segment_size > 64 * SEGMENT_SIZE
        {
            return Err(CodecError::UebMismatch);
        }
        Ok(u)
    }
}

pub(crate) fn block_len(segment_len: u64, k: u16) -> u64 {
    let b = segment_len.div_ceil(k as u64).max(1);
    b + (b & 1) // reed-solomon-simd needs even shard sizes
}

/// Binary Merkle root over leaf hashes (BLAKE3, domain-separated nodes; an
/// odd node is promoted).
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return *blake3::hash(b"grapevine empty tree").as_bytes();
    }
    let mut level: Vec<[u8; 32]> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| match c {
                [a, b] => {
                    let mut h = blake3::Hasher::new_derive_key("grapevine merkle node v1");
                    h.update(a);
                    h.update(b);
                    *h.finalize().as_bytes()
                }
                [a] => *a,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    level[0]
}

/// The convergent key of `content` for a client's `secret`: whoever holds
/// the same secret and content gets the same key (and so the same shares).
pub fn convergent_key(secret: &[u8; 32], params: &Params, content_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(b"grapevine convergent key v1");
    h.update(&params.k.to_le_bytes());
    h.update(&params.n.to_le_bytes());
    h.update(content_hash);
    *h.finalize().as_bytes()
}

pub(crate) fn cipher(key: &[u8; 32]) -> ChaCha20 {
    ChaCha20::new(key.into(), &[0u8; 12].into())
}

/// Where a share's parts are, from its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the block hash list.
    pub hashes_offset: u64,
    /// Offset of the UEB.
    pub ueb_offset: u64,
    /// Length of the UEB.
    pub ueb_len: u32,
}

impl Footer {
    /// Parse the last [`FOOTER_LEN`] bytes of a share of `share_size` bytes.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] if inconsistent;
    /// [`CodecError::UnsupportedVersion`] if the share was laid out by a
    /// newer release.
    pub fn parse(bytes: &[u8], share_size: u64) -> Result<Self, CodecError> {
        if bytes.len() != FOOTER_LEN as usize || bytes[20..23] != MAGIC[..3] {
            return Err(CodecError::Malformed("bad share footer".into()));
        }
        match bytes[23] {
            SHARE_VERSION => {}
            v @ b'2'..=b'9' => {
                return Err(CodecError::UnsupportedVersion {
                    what: "share",
                    version: (v - b'0') as u32,
                    supported: (SHARE_VERSION - b'0') as u32,
                })
            }
            _ => return Err(CodecError::Malformed("bad share footer".into())),
        }
        let f = Footer {
            hashes_offset: u64::from_le_bytes(bytes[0..8].try_into().expect("8")),
            ueb_offset: u64::from_le_bytes(bytes[8..16].try_into().expect("8")),
            ueb_len: u32::from_le_bytes(bytes[16..20].try_into().expect("4")),
        };
        if f.hashes_offset > f.ueb_offset
            || f.ueb_offset + f.ueb_len as u64 + FOOTER_LEN != share_size
            || f.ueb_len > 65536
        {
            return Err(CodecError::Malformed("share footer offsets".into()));
        }
        Ok(f)
    }
}
