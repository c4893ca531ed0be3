//! The share and UEB formats, and what both sides of the codec share: the
//! segment size, block sizes, the Merkle root, the convergent key, the
//! parameters' check.

use chacha20::cipher::KeyIvInit;
use chacha20::ChaCha20;

use crate::cap::{ReadCap, VerifyCap};
use crate::error::CodecError;
use crate::types::{Params, MAX_SHARES, MAX_SHARE_SIZE};

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: u64 = 1 << 20;
/// Smallest segment size an extension block may name. A reader refuses
/// smaller ones: a file of tiny segments has a hash per few bytes (a
/// capability naming 1-byte segments would make a reader fetch 32 bytes of
/// hashes per byte of file).
pub const MIN_SEGMENT_SIZE: u64 = 4 << 10;
/// Largest segment size an extension block may name (a reader holds a
/// segment in memory).
pub const MAX_SEGMENT_SIZE: u64 = 16 << 20;
/// Largest extension block.
pub const MAX_UEB_LEN: u32 = 65536;
/// Most segments a file may have: a reader holds 32 bytes of hash per
/// segment for each share it reads (128 MiB at this limit), so an
/// extension block naming more is refused. At 1 MiB segments, 4 TiB.
pub const MAX_SEGMENTS: u64 = 1 << 22;
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
    /// Number of segments. (The sizes below saturate rather than wrap or
    /// divide by zero on a block that was never validated; a validated one,
    /// [`Ueb::validate`], never reaches the limits.)
    pub fn segments(&self) -> u64 {
        self.size.div_ceil(self.segment_size.max(1)).max(1)
    }

    /// Plaintext length of segment `i`.
    pub fn segment_len(&self, i: u64) -> u64 {
        let start = i.saturating_mul(self.segment_size);
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
        i.saturating_mul(block_len(self.segment_size, self.k))
    }

    /// Total bytes of blocks in each share.
    pub fn blocks_len(&self) -> u64 {
        let s = self.segments();
        self.block_offset(s - 1)
            .saturating_add(self.block_len(s - 1))
    }

    /// Bytes of the block hash list in each share (32 per segment).
    pub fn hashes_len(&self) -> u64 {
        self.segments().saturating_mul(32)
    }

    /// Size of each share whose extension block encodes to `ueb_len`
    /// bytes, if it stays within [`MAX_SHARE_SIZE`].
    pub fn share_size(&self, ueb_len: u64) -> Option<u64> {
        let s = self
            .blocks_len()
            .checked_add(self.hashes_len())?
            .checked_add(ueb_len)?
            .checked_add(FOOTER_LEN)?;
        (s <= MAX_SHARE_SIZE).then_some(s)
    }

    /// Check what holds for every extension block this release writes,
    /// whoever made the one at hand: `1 <= k <= n <= 256`, one root per
    /// share, a segment size between [`MIN_SEGMENT_SIZE`] and
    /// [`MAX_SEGMENT_SIZE`], at most [`MAX_SEGMENTS`] segments, and shares
    /// no larger than [`MAX_SHARE_SIZE`].
    /// After this, no size computed from the block overflows.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] naming what is wrong.
    pub fn validate(&self) -> Result<(), CodecError> {
        let bad = |what: &str| Err(CodecError::Malformed(format!("extension block: {what}")));
        if self.k == 0 || self.k > self.n || self.n > MAX_SHARES {
            return bad(&format!("{}-of-{} encoding", self.k, self.n));
        }
        if self.share_roots.len() != self.n as usize {
            return bad("share roots do not match n");
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return bad(&format!("segment size {}", self.segment_size));
        }
        if self.size.div_ceil(self.segment_size) > MAX_SEGMENTS {
            return bad(&format!(
                "file of {} bytes has too many segments",
                self.size
            ));
        }
        if self.share_size(MAX_UEB_LEN as u64).is_none() {
            return bad(&format!(
                "file of {} bytes makes shares too large",
                self.size
            ));
        }
        Ok(())
    }

    /// Decode an extension block and [`Ueb::validate`] it, without a
    /// capability: what a server can check of the blocks it stores.
    ///
    /// # Errors
    /// [`CodecError::UnsupportedVersion`] for a newer block;
    /// [`CodecError::Malformed`] otherwise.
    pub fn decode_structural(bytes: &[u8]) -> Result<Self, CodecError> {
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
        if bytes.len() > MAX_UEB_LEN as usize {
            return Err(CodecError::Malformed("extension block too long".into()));
        }
        let (u, used): (Ueb, usize) = bincode::decode_from_slice(
            bytes,
            bincode::config::standard().with_limit::<{ MAX_UEB_LEN as usize }>(),
        )
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
        if used != bytes.len() {
            return Err(CodecError::Malformed(
                "trailing bytes after the extension block".into(),
            ));
        }
        u.validate()?;
        Ok(u)
    }

    /// Encoded form.
    pub fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, bincode::config::standard()).expect("UEB encodes")
    }

    /// Decode, [`Ueb::validate`] and check against the capability's hash
    /// and parameters.
    ///
    /// # Errors
    /// [`CodecError::UebMismatch`], [`CodecError::UnsupportedVersion`] or
    /// [`CodecError::Malformed`].
    pub fn decode_checked(bytes: &[u8], cap: &ReadCap) -> Result<Self, CodecError> {
        Ueb::decode_verified(bytes, &cap.verify_cap())
    }

    /// As [`Ueb::decode_checked`], against a verify capability (which
    /// names the same hash and parameters, without the key).
    ///
    /// # Errors
    /// As [`Ueb::decode_checked`].
    pub fn decode_verified(bytes: &[u8], cap: &VerifyCap) -> Result<Self, CodecError> {
        if blake3::hash(bytes).as_bytes() != &cap.ueb_hash {
            return Err(CodecError::UebMismatch);
        }
        let u = Ueb::decode_structural(bytes)?;
        if u.k != cap.k || u.n != cap.n || u.size != cap.size {
            return Err(CodecError::UebMismatch);
        }
        Ok(u)
    }
}

pub(crate) fn block_len(segment_len: u64, k: u16) -> u64 {
    let b = segment_len.div_ceil(k as u64).max(1);
    b + (b & 1) // reed-solomon-simd needs even shard sizes
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

/// A share's trailer, written after its blocks (which end at
/// `blocks_len`): its block hash list, the extension block, and the footer
/// that says where both are.
pub(crate) fn trailer(hashes: &[[u8; 32]], ueb_bytes: &[u8], blocks_len: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(hashes.len() * 32 + ueb_bytes.len() + FOOTER_LEN as usize);
    for h in hashes {
        t.extend_from_slice(h);
    }
    let ueb_offset = blocks_len + 32 * hashes.len() as u64;
    t.extend_from_slice(ueb_bytes);
    t.extend_from_slice(&blocks_len.to_le_bytes());
    t.extend_from_slice(&ueb_offset.to_le_bytes());
    t.extend_from_slice(&(ueb_bytes.len() as u32).to_le_bytes());
    t.extend_from_slice(MAGIC);
    t
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
        // Offsets come from whoever wrote the share: checked arithmetic, so
        // values near 2^64 cannot wrap into a plausible layout.
        let end = f
            .ueb_offset
            .checked_add(f.ueb_len as u64)
            .and_then(|e| e.checked_add(FOOTER_LEN));
        if f.hashes_offset > f.ueb_offset || end != Some(share_size) || f.ueb_len > MAX_UEB_LEN {
            return Err(CodecError::Malformed("share footer offsets".into()));
        }
        Ok(f)
    }
}
