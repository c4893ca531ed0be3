//! CHK ("content hash key") encoding, sans-IO: plaintext segments in, one
//! block per share out; blocks in, verified plaintext out.
//!
//! * The file is encrypted with ChaCha20 under a 32-byte key: random, or
//!   *convergent* (keyed BLAKE3 of the content under the client's
//!   convergence secret, so the same client storing the same file twice
//!   stores it once).
//! * The ciphertext is cut into segments of [`SEGMENT_SIZE`]; each segment is
//!   split into `k` blocks and Reed-Solomon coded into `n` blocks
//!   (`reed-solomon-simd`), one per share.
//! * Each block is hashed (BLAKE3); a share's block hashes form a binary
//!   Merkle tree whose root goes into the **UEB** (URI extension block) with
//!   the parameters and a hash of the whole ciphertext. The read capability
//!   carries the key and the UEB's hash, so a reader trusts nothing a server
//!   says: the UEB must hash to the capability, each share's hash list to its
//!   root in the UEB, each block to its hash.
//!
//! Share layout (written front to back, so upload streams):
//!
//! ```text
//! blocks of segment 0 .. blocks of segment S-1 | block hashes (S x 32) | UEB | footer
//! footer = hashes_offset:u64 ueb_offset:u64 ueb_len:u32 magic "GVS" version
//! ```
//!
//! Versions: the footer's last byte is the share layout's version (`'1'`),
//! and the UEB starts with its own (`1`). A reader refuses a version newer
//! than it knows with [`CodecError::UnsupportedVersion`] (the file was
//! written by a newer release) rather than misread it.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

use crate::cap::ReadCap;
use crate::error::CodecError;
use crate::types::StorageIndex;
pub use crate::types::{storage_index, Params};

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: u64 = 1 << 20;
/// Footer length.
pub const FOOTER_LEN: u64 = 24;
/// The share layout's version, the footer's last byte.
pub const SHARE_VERSION: u8 = b'1';
const MAGIC: &[u8; 4] = b"GVS1";
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

fn block_len(segment_len: u64, k: u16) -> u64 {
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

fn cipher(key: &[u8; 32]) -> ChaCha20 {
    ChaCha20::new(key.into(), &[0u8; 12].into())
}

/// Encodes a file segment by segment.
pub struct Encoder {
    key: [u8; 32],
    params: Params,
    size: u64,
    cipher: ChaCha20,
    segment: u64,
    block_hashes: Vec<Vec<[u8; 32]>>,
    ciphertext: blake3::Hasher,
    rs: Option<reed_solomon_simd::ReedSolomonEncoder>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoder({:?}, segment {})", self.params, self.segment)
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder({:?}, segment {})", self.cap, self.next_segment)
    }
}

impl Encoder {
    /// An encoder for a file of `size` bytes.
    ///
    /// # Errors
    /// [`CodecError::BadParams`].
    pub fn new(key: [u8; 32], params: Params, size: u64) -> Result<Self, CodecError> {
        params.validate()?;
        Ok(Encoder {
            key,
            params,
            size,
            cipher: cipher(&key),
            segment: 0,
            block_hashes: vec![Vec::new(); params.n as usize],
            ciphertext: blake3::Hasher::new(),
            rs: None,
        })
    }

    /// The file's storage index.
    pub fn storage_index(&self) -> StorageIndex {
        storage_index(&self.key)
    }

    /// Number of segments.
    pub fn segments(&self) -> u64 {
        self.size.div_ceil(SEGMENT_SIZE).max(1)
    }

    /// Size of each share (blocks, hashes, UEB and footer), known in
    /// advance so servers can be asked to allocate it.
    pub fn share_size(&self) -> u64 {
        let ueb = self.ueb_template();
        ueb.blocks_len() + 32 * self.segments() + ueb.encode().len() as u64 + FOOTER_LEN
    }

    fn ueb_template(&self) -> Ueb {
        Ueb {
            version: UEB_VERSION,
            k: self.params.k,
            n: self.params.n,
            size: self.size,
            segment_size: SEGMENT_SIZE,
            share_roots: vec![[0; 32]; self.params.n as usize],
            ciphertext_hash: [0; 32],
        }
    }

    /// Encrypt and encode the next segment (exactly [`SEGMENT_SIZE`] bytes,
    /// except the last). Returns one block per share.
    ///
    /// # Errors
    /// [`CodecError::SegmentLength`] for a wrongly sized segment.
    pub fn encode_segment(&mut self, plaintext: &mut [u8]) -> Result<Vec<Vec<u8>>, CodecError> {
        let ueb = self.ueb_template();
        let expect = ueb.segment_len(self.segment);
        if self.segment >= self.segments() || plaintext.len() as u64 != expect {
            return Err(CodecError::SegmentLength {
                expected: expect,
                got: plaintext.len() as u64,
            });
        }
        self.cipher.apply_keystream(plaintext);
        self.ciphertext.update(plaintext);
        let k = self.params.k as usize;
        let b = block_len(expect, self.params.k) as usize;
        let recovery_count = (self.params.n - self.params.k) as usize;
        // The primary blocks are the ciphertext cut in k, the last padded
        // with zeros; the recovery blocks come from one reused encoder.
        let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(self.params.n as usize);
        for i in 0..k {
            let (start, end) = (
                (i * b).min(plaintext.len()),
                ((i + 1) * b).min(plaintext.len()),
            );
            let mut blk = Vec::with_capacity(b);
            blk.extend_from_slice(&plaintext[start..end]);
            blk.resize(b, 0);
            blocks.push(blk);
        }
        if recovery_count > 0 {
            let erasure = |e: reed_solomon_simd::Error| CodecError::Erasure(e.to_string());
            let rs = match &mut self.rs {
                Some(rs) => {
                    rs.reset(k, recovery_count, b).map_err(erasure)?;
                    rs
                }
                slot => slot.insert(
                    reed_solomon_simd::ReedSolomonEncoder::new(k, recovery_count, b)
                        .map_err(erasure)?,
                ),
            };
            for blk in &blocks {
                rs.add_original_shard(blk).map_err(erasure)?;
            }
            let recovery: Vec<Vec<u8>> = rs
                .encode()
                .map_err(erasure)?
                .recovery_iter()
                .map(<[u8]>::to_vec)
                .collect();
            blocks.extend(recovery);
        }
        for (i, blk) in blocks.iter().enumerate() {
            self.block_hashes[i].push(*blake3::hash(blk).as_bytes());
        }
        self.segment += 1;
        Ok(blocks)
    }

    /// After the last segment: the per-share trailers (block hashes, UEB,
    /// footer) and the read capability.
    ///
    /// # Errors
    /// [`CodecError::SegmentLength`] if segments are missing.
    pub fn finish(self) -> Result<(Vec<Vec<u8>>, ReadCap), CodecError> {
        if self.segment != self.segments() {
            return Err(CodecError::SegmentLength {
                expected: self.segments(),
                got: self.segment,
            });
        }
        let mut ueb = self.ueb_template();
        ueb.share_roots = self.block_hashes.iter().map(|h| merkle_root(h)).collect();
        ueb.ciphertext_hash = *self.ciphertext.finalize().as_bytes();
        let ueb_bytes = ueb.encode();
        let blocks_len = ueb.blocks_len();
        let trailers = self
            .block_hashes
            .iter()
            .map(|hashes| {
                let mut t =
                    Vec::with_capacity(hashes.len() * 32 + ueb_bytes.len() + FOOTER_LEN as usize);
                for h in hashes {
                    t.extend_from_slice(h);
                }
                let hashes_offset = blocks_len;
                let ueb_offset = blocks_len + 32 * hashes.len() as u64;
                t.extend_from_slice(&ueb_bytes);
                t.extend_from_slice(&hashes_offset.to_le_bytes());
                t.extend_from_slice(&ueb_offset.to_le_bytes());
                t.extend_from_slice(&(ueb_bytes.len() as u32).to_le_bytes());
                t.extend_from_slice(MAGIC);
                t
            })
            .collect();
        let cap = ReadCap {
            key: self.key,
            ueb_hash: *blake3::hash(&ueb_bytes).as_bytes(),
            k: self.params.k,
            n: self.params.n,
            size: self.size,
        };
        Ok((trailers, cap))
    }
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

/// Decodes a file from verified blocks, segment by segment.
pub struct Decoder {
    cap: ReadCap,
    ueb: Ueb,
    hashes: Vec<Option<Vec<[u8; 32]>>>,
    cipher: ChaCha20,
    ciphertext: blake3::Hasher,
    next_segment: u64,
}

impl Decoder {
    /// Start from a capability and a UEB read from any share.
    ///
    /// # Errors
    /// [`CodecError::UebMismatch`] if the UEB is not the capability's.
    pub fn new(cap: ReadCap, ueb_bytes: &[u8]) -> Result<Self, CodecError> {
        let ueb = Ueb::decode_checked(ueb_bytes, &cap)?;
        let n = ueb.n as usize;
        Ok(Decoder {
            cipher: cipher(&cap.key),
            cap,
            ueb,
            hashes: vec![None; n],
            ciphertext: blake3::Hasher::new(),
            next_segment: 0,
        })
    }

    /// The verified UEB.
    pub fn ueb(&self) -> &Ueb {
        &self.ueb
    }

    /// Accept share `shnum`'s block hash list if its Merkle root matches.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if it does not.
    pub fn add_hashes(&mut self, shnum: u16, bytes: &[u8]) -> Result<(), CodecError> {
        let s = shnum as usize;
        if s >= self.hashes.len() || bytes.len() as u64 != 32 * self.ueb.segments() {
            return Err(CodecError::CorruptShare(shnum));
        }
        let list: Vec<[u8; 32]> = bytes
            .chunks(32)
            .map(|c| c.try_into().expect("32"))
            .collect();
        if merkle_root(&list) != self.ueb.share_roots[s] {
            return Err(CodecError::CorruptShare(shnum));
        }
        self.hashes[s] = Some(list);
        Ok(())
    }

    /// Check one block of segment `seg` from share `shnum`.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if its hash is wrong or its hashes were
    /// not accepted.
    pub fn check_block(&self, shnum: u16, seg: u64, block: &[u8]) -> Result<(), CodecError> {
        let hashes = self
            .hashes
            .get(shnum as usize)
            .and_then(|h| h.as_ref())
            .ok_or(CodecError::CorruptShare(shnum))?;
        let ok = hashes
            .get(seg as usize)
            .is_some_and(|h| h == blake3::hash(block).as_bytes())
            && block.len() as u64 == self.ueb.block_len(seg);
        if ok {
            Ok(())
        } else {
            Err(CodecError::CorruptShare(shnum))
        }
    }

    /// Decode the next segment from at least k checked blocks
    /// `(shnum, block)`; returns its plaintext.
    ///
    /// # Errors
    /// [`CodecError::NotEnoughShares`], [`CodecError::CorruptShare`],
    /// [`CodecError::Erasure`]; [`CodecError::CiphertextMismatch`] after the
    /// last segment if the whole ciphertext does not hash as recorded.
    pub fn decode_segment<B: AsRef<[u8]>>(
        &mut self,
        blocks: Vec<(u16, B)>,
    ) -> Result<Vec<u8>, CodecError> {
        match self.decode_segment_or_name_corrupt(blocks)? {
            Ok(plain) => Ok(plain),
            Err(bad) => Err(CodecError::CorruptShare(bad[0])),
        }
    }

    /// As [`Decoder::decode_segment`], but when blocks fail their hashes,
    /// return `Ok(Err(shares))` naming every corrupt one (each block is
    /// hashed once; nothing changes, so the segment can be retried with
    /// other shares).
    ///
    /// # Errors
    /// As [`Decoder::decode_segment`], except for corrupt blocks.
    pub fn decode_segment_or_name_corrupt<B: AsRef<[u8]>>(
        &mut self,
        blocks: Vec<(u16, B)>,
    ) -> Result<Result<Vec<u8>, Vec<u16>>, CodecError> {
        let seg = self.next_segment;
        let k = self.ueb.k as usize;
        let bad: Vec<u16> = blocks
            .iter()
            .filter(|(shnum, b)| self.check_block(*shnum, seg, b.as_ref()).is_err())
            .map(|(shnum, _)| *shnum)
            .collect();
        if !bad.is_empty() {
            return Ok(Err(bad));
        }
        let mut originals: Vec<Option<std::borrow::Cow<'_, [u8]>>> = vec![None; k];
        let mut recovery = Vec::new();
        for (shnum, b) in &blocks {
            if (*shnum as usize) < k {
                originals[*shnum as usize] = Some(std::borrow::Cow::Borrowed(b.as_ref()));
            } else {
                recovery.push((*shnum as usize - k, b.as_ref()));
            }
        }
        let have = originals.iter().filter(|o| o.is_some()).count();
        if have < k {
            if have + recovery.len() < k {
                return Err(CodecError::NotEnoughShares {
                    have: have + recovery.len(),
                    need: k,
                });
            }
            let restored = reed_solomon_simd::decode(
                k,
                (self.ueb.n as usize) - k,
                originals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.as_ref().map(|b| (i, b))),
                recovery.iter().map(|(i, b)| (*i, b)),
            )
            .map_err(|e| CodecError::Erasure(e.to_string()))?;
            for (i, b) in restored {
                originals[i] = Some(std::borrow::Cow::Owned(b));
            }
        }
        let seg_len = self.ueb.segment_len(seg) as usize;
        let mut out = Vec::with_capacity(originals.len() * self.ueb.block_len(seg) as usize);
        for o in originals {
            out.extend_from_slice(&o.ok_or(CodecError::NotEnoughShares { have, need: k })?);
        }
        out.truncate(seg_len);
        self.ciphertext.update(&out);
        self.cipher.seek(seg * self.ueb.segment_size);
        self.cipher.apply_keystream(&mut out);
        self.next_segment += 1;
        if self.next_segment == self.ueb.segments()
            && self.ciphertext.finalize().as_bytes() != &self.ueb.ciphertext_hash
        {
            return Err(CodecError::CiphertextMismatch);
        }
        Ok(Ok(out))
    }

    /// The capability being decoded.
    pub fn cap(&self) -> &ReadCap {
        &self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encode `data` into n full share byte strings.
    fn encode_all(data: &[u8], params: Params) -> (Vec<Vec<u8>>, ReadCap) {
        let mut enc = Encoder::new([9; 32], params, data.len() as u64).unwrap();
        let mut shares = vec![Vec::new(); params.n as usize];
        for seg in 0..enc.segments() {
            let start = (seg * SEGMENT_SIZE) as usize;
            let end = (start + SEGMENT_SIZE as usize).min(data.len());
            let mut chunk = data[start..end].to_vec();
            for (i, b) in enc
                .encode_segment(&mut chunk)
                .unwrap()
                .into_iter()
                .enumerate()
            {
                shares[i].extend_from_slice(&b);
            }
        }
        let size = enc.share_size();
        let (trailers, cap) = enc.finish().unwrap();
        for (s, t) in shares.iter_mut().zip(trailers) {
            s.extend_from_slice(&t);
            assert_eq!(s.len() as u64, size);
        }
        (shares, cap)
    }

    fn decode_from(shares: &[(u16, &Vec<u8>)], cap: &ReadCap) -> Result<Vec<u8>, CodecError> {
        let first = shares[0].1;
        let footer = Footer::parse(
            &first[first.len() - FOOTER_LEN as usize..],
            first.len() as u64,
        )?;
        let ueb_bytes = &first
            [footer.ueb_offset as usize..footer.ueb_offset as usize + footer.ueb_len as usize];
        let mut dec = Decoder::new(cap.clone(), ueb_bytes)?;
        for (shnum, s) in shares {
            let f = Footer::parse(&s[s.len() - 24..], s.len() as u64)?;
            dec.add_hashes(*shnum, &s[f.hashes_offset as usize..f.ueb_offset as usize])?;
        }
        let mut out = Vec::new();
        for seg in 0..dec.ueb().segments() {
            let off = dec.ueb().block_offset(seg) as usize;
            let len = dec.ueb().block_len(seg) as usize;
            let blocks = shares
                .iter()
                .map(|(n, s)| (*n, s[off..off + len].to_vec()))
                .collect();
            out.extend(dec.decode_segment(blocks)?);
        }
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn any_k_of_n_shares_decode() {
        let d = data(2 * SEGMENT_SIZE as usize + 12345);
        let (shares, cap) = encode_all(&d, Params::default());
        for pick in [[0u16, 1, 2], [7, 8, 9], [0, 5, 9], [2, 4, 6]] {
            let chosen: Vec<(u16, &Vec<u8>)> =
                pick.iter().map(|&i| (i, &shares[i as usize])).collect();
            assert_eq!(decode_from(&chosen, &cap).unwrap(), d, "{pick:?}");
        }
    }

    #[test]
    fn shares_are_encrypted() {
        let d = vec![b'A'; 5000];
        let (shares, _) = encode_all(&d, Params::default());
        let run = shares[0]
            .windows(16)
            .filter(|w| w.iter().all(|&b| b == b'A'))
            .count();
        assert_eq!(run, 0, "plaintext visible in a share");
    }

    #[test]
    fn small_and_empty_files() {
        for len in [0usize, 1, 2, 3, 100, SEGMENT_SIZE as usize] {
            let d = data(len);
            let (shares, cap) = encode_all(
                &d,
                Params {
                    k: 2,
                    n: 4,
                    happy: 3,
                },
            );
            let chosen = vec![(1u16, &shares[1]), (3u16, &shares[3])];
            assert_eq!(decode_from(&chosen, &cap).unwrap(), d, "len {len}");
        }
    }

    #[test]
    fn corrupt_block_is_detected_not_decoded() {
        let d = data(300_000);
        let (mut shares, cap) = encode_all(&d, Params::default());
        shares[1][10] ^= 1;
        let chosen: Vec<(u16, &Vec<u8>)> = [0u16, 1, 2]
            .iter()
            .map(|&i| (i, &shares[i as usize]))
            .collect();
        assert!(matches!(
            decode_from(&chosen, &cap),
            Err(CodecError::CorruptShare(1))
        ));
    }

    #[test]
    fn tampered_hash_list_or_ueb_is_detected() {
        let d = data(300_000);
        let (shares, cap) = encode_all(&d, Params::default());
        let mut s = shares[4].clone();
        let f = Footer::parse(&s[s.len() - 24..], s.len() as u64).unwrap();
        s[f.hashes_offset as usize] ^= 1;
        let chosen = vec![(4u16, &s), (5, &shares[5]), (6, &shares[6])];
        assert!(matches!(
            decode_from(&chosen, &cap),
            Err(CodecError::CorruptShare(4))
        ));
        let mut s = shares[4].clone();
        s[f.ueb_offset as usize + 3] ^= 1;
        let chosen = vec![(4u16, &s), (5, &shares[5]), (6, &shares[6])];
        assert!(matches!(
            decode_from(&chosen, &cap),
            Err(CodecError::UebMismatch)
        ));
    }

    #[test]
    fn too_few_shares_is_a_clear_error() {
        let d = data(1000);
        let (shares, cap) = encode_all(&d, Params::default());
        let chosen = vec![(0u16, &shares[0]), (8, &shares[8])];
        assert!(matches!(
            decode_from(&chosen, &cap),
            Err(CodecError::NotEnoughShares { have: 2, need: 3 })
        ));
    }

    #[test]
    fn convergent_keys_repeat_only_with_the_same_secret() {
        let p = Params::default();
        let h = *blake3::hash(b"file").as_bytes();
        assert_eq!(
            convergent_key(&[1; 32], &p, &h),
            convergent_key(&[1; 32], &p, &h)
        );
        assert_ne!(
            convergent_key(&[1; 32], &p, &h),
            convergent_key(&[2; 32], &p, &h)
        );
        assert_ne!(storage_index(&[1; 32]), storage_index(&[2; 32]));
    }

    /// The compatibility rule for files: a share or UEB of a newer format
    /// is refused with a clear error, not misread.
    #[test]
    fn newer_share_and_ueb_versions_are_refused() {
        let d = data(1000);
        let (shares, cap) = encode_all(&d, Params::default());
        let s = &shares[0];
        let footer = &s[s.len() - FOOTER_LEN as usize..];
        assert_eq!(&footer[20..], b"GVS1");
        let mut newer = footer.to_vec();
        newer[23] = b'2';
        assert!(matches!(
            Footer::parse(&newer, s.len() as u64),
            Err(CodecError::UnsupportedVersion {
                what: "share",
                version: 2,
                supported: 1
            })
        ));
        newer[23] = b'x';
        assert!(matches!(
            Footer::parse(&newer, s.len() as u64),
            Err(CodecError::Malformed(_))
        ));
        // A UEB of version 2 whose hash is in the capability (as a newer
        // release would write it): refused before its body is read.
        let f = Footer::parse(footer, s.len() as u64).unwrap();
        let mut ueb = s[f.ueb_offset as usize..f.ueb_offset as usize + f.ueb_len as usize].to_vec();
        assert_eq!(ueb[0], UEB_VERSION);
        ueb[0] = 2;
        let newer_cap = ReadCap {
            ueb_hash: *blake3::hash(&ueb).as_bytes(),
            ..cap.clone()
        };
        assert!(matches!(
            Decoder::new(newer_cap, &ueb),
            Err(CodecError::UnsupportedVersion {
                what: "extension block",
                version: 2,
                ..
            })
        ));
    }

    #[test]
    fn merkle_root_depends_on_every_leaf_and_order() {
        let leaves: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
        let r = merkle_root(&leaves);
        let mut swapped = leaves.clone();
        swapped.swap(0, 1);
        assert_ne!(r, merkle_root(&swapped));
        let mut changed = leaves.clone();
        changed[4][0] ^= 1;
        assert_ne!(r, merkle_root(&changed));
    }
}
