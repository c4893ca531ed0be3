//! The encoder: plaintext segments in, one block per share out, then each
//! share's trailer and the read capability.

use chacha20::cipher::StreamCipher;
use chacha20::ChaCha20;

use crate::cap::ReadCap;
use crate::chk::format::{block_len, cipher, trailer, Ueb, FOOTER_LEN, SEGMENT_SIZE, UEB_VERSION};
use crate::chk::merkle::merkle_root;
use crate::error::CodecError;
use crate::types::{storage_index, Params, StorageIndex};

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

impl Encoder {
    /// An encoder for a file of `size` bytes.
    ///
    /// # Errors
    /// [`CodecError::BadParams`]; [`CodecError::Malformed`] if the file is
    /// too large for its shares to stay within
    /// [`MAX_SHARE_SIZE`](crate::types::MAX_SHARE_SIZE) (what a reader
    /// accepts, [`Ueb::validate`]).
    pub fn new(key: [u8; 32], params: Params, size: u64) -> Result<Self, CodecError> {
        params.validate()?;
        let enc = Encoder {
            key,
            params,
            size,
            cipher: cipher(&key),
            segment: 0,
            block_hashes: vec![Vec::new(); params.n as usize],
            ciphertext: blake3::Hasher::new(),
            rs: None,
        };
        enc.ueb_template().validate()?;
        Ok(enc)
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
        // Within MAX_SHARE_SIZE: checked in `new`.
        ueb.blocks_len() + ueb.hashes_len() + ueb.encode().len() as u64 + FOOTER_LEN
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
            .map(|hashes| trailer(hashes, &ueb_bytes, blocks_len))
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
