//! The decoder: verified blocks in, plaintext out, segment by segment.

use bytes::{Bytes, BytesMut};
use chacha20::cipher::{StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

use crate::cap::ReadCap;
use crate::chk::format::{cipher, Ueb};
use crate::chk::hashes::{BlockChecker, CheckedBlock, ShareHashes};
use crate::error::CodecError;

/// Decodes a file from verified blocks, segment by segment.
pub struct Decoder {
    cap: ReadCap,
    hashes: ShareHashes,
    cipher: ChaCha20,
    ciphertext: blake3::Hasher,
    next_segment: u64,
    small_tables: bool,
}

impl Decoder {
    /// Start from a capability and a UEB read from any share.
    ///
    /// # Errors
    /// [`CodecError::UebMismatch`] if the UEB is not the capability's.
    pub fn new(cap: ReadCap, ueb_bytes: &[u8]) -> Result<Self, CodecError> {
        let ueb = Ueb::decode_checked(ueb_bytes, &cap)?;
        Ok(Decoder {
            cipher: cipher(&cap.key),
            cap,
            hashes: ShareHashes::new(ueb),
            ciphertext: blake3::Hasher::new(),
            next_segment: 0,
            small_tables: false,
        })
    }

    /// Restore missing blocks (a segment read from recovery shares) with the
    /// erasure coder's reference engine and small work area, as
    /// [`Encoder::with_small_tables`](crate::chk::Encoder::with_small_tables)
    /// does for encoding: for a small memory budget. The plaintext is the
    /// same either way.
    pub fn with_small_tables(mut self, small: bool) -> Self {
        self.small_tables = small;
        self
    }

    /// The verified UEB.
    pub fn ueb(&self) -> &Ueb {
        self.hashes.ueb()
    }

    /// Accept share `shnum`'s block hash list if its Merkle root matches.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if it does not.
    pub fn add_hashes(&mut self, shnum: u16, bytes: &[u8]) -> Result<(), CodecError> {
        self.hashes.add(shnum, bytes)
    }

    /// Check one block of segment `seg` from share `shnum`.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if its hash is wrong or its hashes were
    /// not accepted.
    pub fn check_block(&self, shnum: u16, seg: u64, block: &[u8]) -> Result<(), CodecError> {
        self.hashes.check(shnum, seg, block)
    }

    /// Share `shnum`'s block checker, once its hash list is accepted
    /// ([`Decoder::add_hashes`]).
    pub fn checker(&self, shnum: u16) -> Option<BlockChecker> {
        self.hashes.checker(self.cap.storage_index(), shnum)
    }

    /// Decode the next segment from at least k blocks already checked by
    /// this file's [`BlockChecker`]s (not hashed again); returns its
    /// plaintext in pieces, in order.
    ///
    /// With the `k` primary blocks among them (the download asks for
    /// those first), the pieces are those blocks, hashed into the
    /// ciphertext's hash and decrypted where they lie: no copy when the
    /// decoder holds a block's only reference. Otherwise the missing
    /// originals are restored and the plaintext is one piece.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] for a block of another file or segment;
    /// otherwise as [`Decoder::decode_segment`].
    pub fn decode_checked_segment(
        &mut self,
        blocks: Vec<CheckedBlock>,
    ) -> Result<Vec<Bytes>, CodecError> {
        let seg = self.next_segment;
        let si = self.cap.storage_index();
        if let Some(b) = blocks.iter().find(|b| b.seg != seg || b.si != si) {
            return Err(CodecError::Malformed(format!(
                "a block of segment {} given for segment {seg}",
                b.seg
            )));
        }
        let k = usize::from(self.ueb().k);
        let has_primaries = (0..k).all(|s| blocks.iter().any(|b| usize::from(b.shnum) == s));
        if !has_primaries {
            let input: Vec<(u16, &[u8])> = blocks.iter().map(|b| (b.shnum, &b.block[..])).collect();
            let mut out = self.assemble(seg, &input)?;
            self.finish_segment(seg, &mut out)?;
            return Ok(vec![Bytes::from(out)]);
        }
        let mut primaries: Vec<Option<Bytes>> = vec![None; k];
        for b in blocks {
            let s = usize::from(b.shnum);
            if s < k && primaries[s].is_none() {
                primaries[s] = Some(b.block);
            }
        }
        let mut left = self.ueb().segment_len(seg) as usize;
        let mut offset = 0u64;
        let mut pieces = Vec::with_capacity(k);
        for mut block in primaries.into_iter().flatten() {
            if left == 0 {
                break;
            }
            block.truncate(left);
            let mut piece = BytesMut::from(block);
            self.crypt_piece(seg, offset, &mut piece);
            left -= piece.len();
            offset += piece.len() as u64;
            pieces.push(piece.freeze());
        }
        self.end_segment()?;
        Ok(pieces)
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
        let mut out = match self.ciphertext_of(seg, blocks)? {
            Ok(c) => c,
            Err(bad) => return Ok(Err(bad)),
        };
        self.finish_segment(seg, &mut out)?;
        Ok(Ok(out))
    }

    /// Hash segment `seg`'s ciphertext `out` into the whole file's,
    /// decrypt it in place and move on; after the last segment, check the
    /// whole ciphertext's hash.
    fn finish_segment(&mut self, seg: u64, out: &mut [u8]) -> Result<(), CodecError> {
        self.crypt_piece(seg, 0, out);
        self.end_segment()
    }

    /// Hash `piece`, the ciphertext of segment `seg` from `offset` on, into
    /// the whole file's, and decrypt it in place.
    fn crypt_piece(&mut self, seg: u64, offset: u64, piece: &mut [u8]) {
        self.ciphertext.update(piece);
        self.cipher.seek(seg * self.ueb().segment_size + offset);
        self.cipher.apply_keystream(piece);
    }

    /// Move on from a decrypted segment; after the last, check the whole
    /// ciphertext's hash.
    fn end_segment(&mut self) -> Result<(), CodecError> {
        self.next_segment += 1;
        if self.next_segment == self.ueb().segments()
            && self.ciphertext.finalize().as_bytes() != &self.ueb().ciphertext_hash
        {
            return Err(CodecError::CiphertextMismatch);
        }
        Ok(())
    }

    /// Decode segment `seg` on its own, for a ranged read: as
    /// [`Decoder::decode_segment_or_name_corrupt`], but any segment, in any
    /// order, and without changing the decoder. Every block is still checked
    /// against its share's hash list (whose Merkle root is in the UEB the
    /// capability names); the hash of the whole ciphertext, which needs
    /// every segment, is not.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] for a segment past the last; otherwise as
    /// [`Decoder::decode_segment`], except for corrupt blocks.
    pub fn decode_segment_at<B: AsRef<[u8]>>(
        &self,
        seg: u64,
        blocks: Vec<(u16, B)>,
    ) -> Result<Result<Vec<u8>, Vec<u16>>, CodecError> {
        if seg >= self.ueb().segments() {
            return Err(CodecError::Malformed(format!(
                "segment {seg} of a file of {} segments",
                self.ueb().segments()
            )));
        }
        let mut out = match self.ciphertext_of(seg, blocks)? {
            Ok(c) => c,
            Err(bad) => return Ok(Err(bad)),
        };
        let mut c = cipher(&self.cap.key);
        c.seek(seg * self.ueb().segment_size);
        c.apply_keystream(&mut out);
        Ok(Ok(out))
    }

    /// Segment `seg`'s ciphertext from at least k blocks, each checked
    /// against its hash first (`Ok(Err(shares))` names the corrupt ones).
    fn ciphertext_of<B: AsRef<[u8]>>(
        &self,
        seg: u64,
        blocks: Vec<(u16, B)>,
    ) -> Result<Result<Vec<u8>, Vec<u16>>, CodecError> {
        let bad = self.hashes.corrupt(seg, &blocks);
        if !bad.is_empty() {
            return Ok(Err(bad));
        }
        self.assemble(seg, &blocks).map(Ok)
    }

    /// Segment `seg`'s ciphertext from at least k checked blocks.
    fn assemble<B: AsRef<[u8]>>(
        &self,
        seg: u64,
        blocks: &[(u16, B)],
    ) -> Result<Vec<u8>, CodecError> {
        let originals = self.hashes.originals_with(blocks, self.small_tables)?;
        let mut out = Vec::with_capacity(originals.len() * self.ueb().block_len(seg) as usize);
        for o in &originals {
            out.extend_from_slice(o);
        }
        out.truncate(self.ueb().segment_len(seg) as usize);
        Ok(out)
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
