//! The decoder: verified blocks in, plaintext out, segment by segment.
//!
//! A segment's decoding (restoring missing originals, hashing its
//! ciphertext, decrypting) needs nothing from the segments before it, so a
//! [`SegmentDecoder`] does it on any thread, several segments at once; the
//! [`Decoder`] takes the [`DecodedSegment`]s back in order
//! ([`Decoder::accept`]) and, after the last, checks the whole
//! ciphertext's hash, merged from the segments' (`subtrees`). Where the
//! segments cannot be hashed on their own (one segment; a segment size
//! that is not a power of two), a decoded segment comes back still
//! encrypted and `accept` hashes and decrypts it, in order.

use std::sync::Arc;

use blake3::hazmat::ChainingValue;
use bytes::{Bytes, BytesMut};
use chacha20::cipher::{StreamCipher, StreamCipherSeek};

use crate::cap::ReadCap;
use crate::chk::format::{cipher, Ueb, SEGMENT_SIZE};
use crate::chk::hashes::{originals_with, BlockChecker, CheckedBlock, ShareHashes};
use crate::chk::subtrees::{segment_chaining_value, CiphertextHash};
use crate::error::CodecError;
use crate::types::StorageIndex;

/// Decodes a file from verified blocks, segment by segment.
pub struct Decoder {
    cap: ReadCap,
    hashes: ShareHashes,
    ciphertext: CiphertextHash,
    next_segment: u64,
    small_tables: bool,
}

/// What decoding one segment needs, for any thread: the key, the file's
/// layout. Made by [`Decoder::segment_decoder`]; cheap to clone.
#[derive(Clone)]
pub struct SegmentDecoder {
    key: [u8; 32],
    si: StorageIndex,
    ueb: Arc<Ueb>,
    small_tables: bool,
    /// Hash each segment's ciphertext as a subtree here (else `accept`
    /// hashes it, in order).
    subtrees: bool,
}

/// A segment decoded by a [`SegmentDecoder`], for [`Decoder::accept`].
pub struct DecodedSegment {
    si: StorageIndex,
    seg: u64,
    pieces: Vec<Bytes>,
    /// The ciphertext's chaining value, the pieces decrypted; or `None`:
    /// the pieces are still the ciphertext.
    hashed: Option<ChainingValue>,
}

impl DecodedSegment {
    /// Its segment.
    pub fn seg(&self) -> u64 {
        self.seg
    }
}

impl std::fmt::Debug for SegmentDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentDecoder({})", self.si)
    }
}

impl std::fmt::Debug for DecodedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecodedSegment({})", self.seg)
    }
}

impl SegmentDecoder {
    /// Whether decoding a segment from blocks of shares `shnums` is long
    /// work: the segment larger than this client's ([`SEGMENT_SIZE`]; a
    /// foreign uploader's may be 16 MiB), or missing originals restored
    /// with the erasure coder's small tables (its reference engine, several
    /// times slower than the SIMD ones). A download runs such work apart
    /// from the runtime's workers.
    pub fn is_long(&self, shnums: impl IntoIterator<Item = u16>) -> bool {
        let k = self.ueb.k;
        let originals = shnums.into_iter().filter(|&s| s < k).count();
        self.ueb.segment_size > SEGMENT_SIZE || (self.small_tables && originals < usize::from(k))
    }

    /// Decode segment `seg` from at least k blocks already checked by this
    /// file's [`BlockChecker`]s (not hashed again).
    ///
    /// With the `k` primary blocks among them (the download asks for
    /// those first), the pieces are those blocks, decrypted where they lie:
    /// no copy when the decoder holds a block's only reference. Otherwise
    /// the missing originals are restored and the plaintext is one piece.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] for a block of another file or segment, or
    /// a segment past the last; [`CodecError::NotEnoughShares`],
    /// [`CodecError::Erasure`].
    pub fn decode(
        &self,
        seg: u64,
        blocks: Vec<CheckedBlock>,
    ) -> Result<DecodedSegment, CodecError> {
        if let Some(b) = blocks.iter().find(|b| b.seg != seg || b.si != self.si) {
            return Err(CodecError::Malformed(format!(
                "a block of segment {} given for segment {seg}",
                b.seg
            )));
        }
        if seg >= self.ueb.segments() {
            return Err(CodecError::Malformed(format!(
                "segment {seg} of a file of {} segments",
                self.ueb.segments()
            )));
        }
        let k = usize::from(self.ueb.k);
        let len = self.ueb.segment_len(seg) as usize;
        let has_primaries = (0..k).all(|s| blocks.iter().any(|b| usize::from(b.shnum) == s));
        let mut pieces: Vec<BytesMut> = if has_primaries {
            let mut primaries: Vec<Option<Bytes>> = vec![None; k];
            for b in blocks {
                let s = usize::from(b.shnum);
                if s < k && primaries[s].is_none() {
                    primaries[s] = Some(b.block);
                }
            }
            let mut left = len;
            let mut pieces = Vec::with_capacity(k);
            for mut block in primaries.into_iter().flatten() {
                if left == 0 {
                    break;
                }
                block.truncate(left);
                left -= block.len();
                pieces.push(BytesMut::from(block));
            }
            pieces
        } else {
            let input: Vec<(u16, &[u8])> = blocks.iter().map(|b| (b.shnum, &b.block[..])).collect();
            let originals = originals_with(&self.ueb, &input, self.small_tables)?;
            let mut out =
                BytesMut::with_capacity(originals.len() * self.ueb.block_len(seg) as usize);
            for o in &originals {
                out.extend_from_slice(o);
            }
            out.truncate(len);
            vec![out]
        };
        let hashed = if self.subtrees {
            let cv = segment_chaining_value(self.ueb.segment_size, seg, &pieces);
            decrypt(&self.key, self.ueb.segment_size, seg, &mut pieces);
            Some(cv)
        } else {
            None
        };
        Ok(DecodedSegment {
            si: self.si,
            seg,
            pieces: pieces.into_iter().map(BytesMut::freeze).collect(),
            hashed,
        })
    }
}

/// Decrypt segment `seg`'s ciphertext `pieces` (in order, from the
/// segment's start) in place.
fn decrypt(key: &[u8; 32], segment_size: u64, seg: u64, pieces: &mut [BytesMut]) {
    let mut c = cipher(key);
    c.seek(seg * segment_size);
    for p in pieces {
        c.apply_keystream(p);
    }
}

impl Decoder {
    /// Start from a capability and a UEB read from any share.
    ///
    /// # Errors
    /// [`CodecError::UebMismatch`] if the UEB is not the capability's.
    pub fn new(cap: ReadCap, ueb_bytes: &[u8]) -> Result<Self, CodecError> {
        let ueb = Ueb::decode_checked(ueb_bytes, &cap)?;
        Ok(Decoder {
            cap,
            ciphertext: CiphertextHash::for_file(&ueb),
            hashes: ShareHashes::new(ueb),
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

    /// What decoding a segment needs, for any thread
    /// ([`SegmentDecoder::decode`]); its results go back to
    /// [`Decoder::accept`], in order.
    pub fn segment_decoder(&self) -> SegmentDecoder {
        SegmentDecoder {
            key: self.cap.key,
            si: self.cap.storage_index(),
            ueb: Arc::new(self.ueb().clone()),
            small_tables: self.small_tables,
            subtrees: self.ciphertext.takes_subtrees(),
        }
    }

    /// Take the next segment, decoded by this file's [`SegmentDecoder`];
    /// returns its plaintext in pieces, in order. After the last segment,
    /// the whole ciphertext's hash is checked.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] for a segment other than the next, or one
    /// of another file;
    /// [`CodecError::CiphertextMismatch`] after the last segment if the
    /// whole ciphertext does not hash as recorded.
    pub fn accept(&mut self, decoded: DecodedSegment) -> Result<Vec<Bytes>, CodecError> {
        let DecodedSegment {
            si,
            seg,
            pieces,
            hashed,
        } = decoded;
        if si != self.cap.storage_index() {
            return Err(CodecError::Malformed(format!(
                "a segment of {si} given to the decoder of {}",
                self.cap.storage_index()
            )));
        }
        if seg != self.next_segment {
            return Err(CodecError::Malformed(format!(
                "segment {seg} decoded where {} was next",
                self.next_segment
            )));
        }
        let ueb = self.hashes.ueb();
        let pieces = match hashed {
            Some(cv) => {
                self.ciphertext.add_segment(ueb, seg, cv);
                pieces
            }
            None => {
                self.ciphertext.add_bytes(ueb, seg, &pieces);
                let mut pieces: Vec<BytesMut> = pieces.into_iter().map(BytesMut::from).collect();
                decrypt(&self.cap.key, ueb.segment_size, seg, &mut pieces);
                pieces.into_iter().map(BytesMut::freeze).collect()
            }
        };
        self.end_segment()?;
        Ok(pieces)
    }

    /// Decode the next segment from at least k blocks already checked by
    /// this file's [`BlockChecker`]s (not hashed again); returns its
    /// plaintext in pieces, in order: [`SegmentDecoder::decode`] then
    /// [`Decoder::accept`], on this thread.
    ///
    /// # Errors
    /// As [`SegmentDecoder::decode`] and [`Decoder::accept`].
    pub fn decode_checked_segment(
        &mut self,
        blocks: Vec<CheckedBlock>,
    ) -> Result<Vec<Bytes>, CodecError> {
        let decoded = self.segment_decoder().decode(self.next_segment, blocks)?;
        self.accept(decoded)
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
        let ueb = self.hashes.ueb();
        self.ciphertext.add_bytes(ueb, seg, &[&*out]);
        let mut c = cipher(&self.cap.key);
        c.seek(seg * ueb.segment_size);
        c.apply_keystream(out);
        self.end_segment()
    }

    /// Move on from a decrypted segment; after the last, check the whole
    /// ciphertext's hash.
    fn end_segment(&mut self) -> Result<(), CodecError> {
        self.next_segment += 1;
        if self.next_segment == self.ueb().segments() {
            let fresh = CiphertextHash::for_file(self.ueb());
            let hash = std::mem::replace(&mut self.ciphertext, fresh);
            if hash.finish() != Some(self.ueb().ciphertext_hash) {
                return Err(CodecError::CiphertextMismatch);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chk::testing::{encode_all, parts};
    use crate::types::Params;

    const PARAMS: Params = Params {
        k: 3,
        n: 10,
        happy: 7,
    };

    /// A file of `segments` segments (the last short), its shares, and a
    /// decoder with every share's hash list.
    fn file(segments: u64) -> (Vec<u8>, Vec<Vec<u8>>, Decoder) {
        file_with_key([4; 32], segments)
    }

    /// [`file`], encrypted under `key`.
    fn file_with_key(key: [u8; 32], segments: u64) -> (Vec<u8>, Vec<Vec<u8>>, Decoder) {
        let len = (segments - 1) * SEGMENT_SIZE + 12_345;
        let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let (shares, cap) = encode_all(key, &data, PARAMS);
        let mut dec = Decoder::new(cap, parts(&shares[0]).1).unwrap();
        for (s, share) in shares.iter().enumerate() {
            dec.add_hashes(s as u16, parts(share).2).unwrap();
        }
        (data, shares, dec)
    }

    /// Segment `seg`'s blocks of shares `shnums`, checked.
    fn blocks(dec: &Decoder, shares: &[Vec<u8>], seg: u64, shnums: &[u16]) -> Vec<CheckedBlock> {
        let (off, len) = (
            dec.ueb().block_offset(seg) as usize,
            dec.ueb().block_len(seg) as usize,
        );
        shnums
            .iter()
            .map(|&s| {
                let b = Bytes::copy_from_slice(&shares[s as usize][off..off + len]);
                dec.checker(s).unwrap().check(seg, b).unwrap()
            })
            .collect()
    }

    /// Decoding is long work (run apart from the runtime's workers) for
    /// segments larger than this client's, and for a restore with the
    /// small tables; not for this client's segments from the primary
    /// blocks, nor for a restore with the SIMD engines.
    #[test]
    fn long_work_is_large_segments_or_a_restore_with_the_small_tables() {
        let (_, _, dec) = file(2);
        let fast = dec.segment_decoder();
        assert!(!fast.is_long([0, 1, 2]));
        assert!(!fast.is_long([0, 4, 2]));
        let small = dec.with_small_tables(true).segment_decoder();
        assert!(!small.is_long([2, 0, 1]));
        assert!(small.is_long([0, 1, 3]));
        assert!(small.is_long([5, 6, 7]));
        let mut ueb = fast.ueb.as_ref().clone();
        ueb.segment_size = 4 * SEGMENT_SIZE;
        let large = SegmentDecoder {
            ueb: Arc::new(ueb),
            ..fast
        };
        assert!(large.is_long([0, 1, 2]));
    }

    /// Segments decoded on threads of their own, all at once and finished
    /// in any order, some from primary shares and some from recovery
    /// shares, taken back in order give the file, and the whole
    /// ciphertext's hash (merged from the segments') checks.
    #[test]
    fn segments_decode_on_any_thread_and_are_taken_in_order() {
        let (data, shares, mut dec) = file(5);
        let sd = dec.segment_decoder();
        let threads: Vec<_> = (0..5u64)
            .rev()
            .map(|seg| {
                let shnums: &[u16] = if seg % 2 == 0 { &[0, 1, 2] } else { &[7, 1, 9] };
                let input = blocks(&dec, &shares, seg, shnums);
                let sd = sd.clone();
                std::thread::spawn(move || sd.decode(seg, input).unwrap())
            })
            .collect();
        let mut decoded: Vec<DecodedSegment> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        decoded.reverse();
        let mut plain = Vec::new();
        for d in decoded {
            plain.extend(dec.accept(d).unwrap().concat());
        }
        assert_eq!(plain, data);
    }

    /// A segment taken out of turn, or another file's, is refused, and a
    /// segment whose hash is not its ciphertext's fails the whole file's
    /// check after the last.
    #[test]
    fn segments_out_of_turn_or_with_a_wrong_hash_are_refused() {
        let (_, shares, mut dec) = file(3);
        let sd = dec.segment_decoder();
        let d1 = sd.decode(1, blocks(&dec, &shares, 1, &[0, 1, 2])).unwrap();
        assert!(matches!(dec.accept(d1), Err(CodecError::Malformed(_))));
        assert!(
            sd.decode(0, blocks(&dec, &shares, 1, &[0, 1, 2])).is_err(),
            "blocks of segment 1 given for 0"
        );
        assert!(sd.decode(3, Vec::new()).is_err(), "a segment past the last");
        let (_, other_shares, other) = file_with_key([5; 32], 2);
        let foreign = other
            .segment_decoder()
            .decode(0, blocks(&other, &other_shares, 0, &[0, 1, 2]))
            .unwrap();
        assert!(
            matches!(dec.accept(foreign), Err(CodecError::Malformed(_))),
            "another file's segment"
        );
        for seg in 0..3 {
            let mut d = sd
                .decode(seg, blocks(&dec, &shares, seg, &[0, 1, 2]))
                .unwrap();
            if seg == 1 {
                let cv = d.hashed.as_mut().expect("segments of 1 MiB are subtrees");
                cv[0] ^= 1;
            }
            let r = dec.accept(d);
            if seg < 2 {
                r.unwrap();
            } else {
                assert!(matches!(r, Err(CodecError::CiphertextMismatch)), "{r:?}");
            }
        }
    }
}
