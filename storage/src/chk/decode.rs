//! The decoder: verified blocks in, plaintext out, segment by segment.

use chacha20::cipher::{StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

use crate::cap::ReadCap;
use crate::chk::format::{cipher, Ueb};
use crate::chk::merkle::merkle_root;
use crate::error::CodecError;

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
        if s >= self.hashes.len() || bytes.len() as u64 != self.ueb.hashes_len() {
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

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder({:?}, segment {})", self.cap, self.next_segment)
    }
}
