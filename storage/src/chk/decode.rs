//! The decoder: verified blocks in, plaintext out, segment by segment.

use chacha20::cipher::{StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

use crate::cap::ReadCap;
use crate::chk::encode::RS_SLICE;
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
    small_tables: bool,
}

/// Restore the missing originals from `originals` and `recovery` (index,
/// block) with reed-solomon-simd's reference engine (384 KiB of tables
/// against the fast engines' 8 MiB), [`RS_SLICE`] bytes of each block at a
/// time (a work area of a few slices rather than a few blocks): the same
/// blocks as one pass of the fast engine, for a small memory budget.
fn restore_small(
    k: usize,
    m: usize,
    originals: &[Option<std::borrow::Cow<'_, [u8]>>],
    recovery: &[(usize, &[u8])],
) -> Result<Vec<(usize, Vec<u8>)>, reed_solomon_simd::Error> {
    use reed_solomon_simd::rate::{DefaultRateDecoder, RateDecoder};
    let b = originals
        .iter()
        .flatten()
        .map(|o| o.len())
        .chain(recovery.iter().map(|r| r.1.len()))
        .next()
        .unwrap_or(0);
    let missing: Vec<usize> = (0..k).filter(|&i| originals[i].is_none()).collect();
    let mut out: Vec<(usize, Vec<u8>)> = missing
        .iter()
        .map(|&i| (i, Vec::with_capacity(b)))
        .collect();
    let mut dec: Option<DefaultRateDecoder<reed_solomon_simd::engine::Naive>> = None;
    let mut at = 0;
    while at < b {
        let end = (at + RS_SLICE).min(b);
        let d = match &mut dec {
            Some(d) => {
                d.reset(k, m, end - at)?;
                d
            }
            slot => slot.insert(DefaultRateDecoder::new(
                k,
                m,
                end - at,
                reed_solomon_simd::engine::Naive::new(),
                None,
            )?),
        };
        for (i, o) in originals.iter().enumerate() {
            if let Some(o) = o {
                d.add_original_shard(i, &o[at..end])?;
            }
        }
        for (i, r) in recovery {
            d.add_recovery_shard(*i, &r[at..end])?;
        }
        let r = d.decode()?;
        for (i, o) in out.iter_mut() {
            let slice =
                r.restored_original(*i)
                    .ok_or(reed_solomon_simd::Error::NotEnoughShards {
                        original_count: k,
                        original_received_count: 0,
                        recovery_received_count: 0,
                    })?;
            o.extend_from_slice(slice);
        }
        at = end;
    }
    Ok(out)
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
        let mut out = match self.ciphertext_of(seg, blocks)? {
            Ok(c) => c,
            Err(bad) => return Ok(Err(bad)),
        };
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
        if seg >= self.ueb.segments() {
            return Err(CodecError::Malformed(format!(
                "segment {seg} of a file of {} segments",
                self.ueb.segments()
            )));
        }
        let mut out = match self.ciphertext_of(seg, blocks)? {
            Ok(c) => c,
            Err(bad) => return Ok(Err(bad)),
        };
        let mut c = cipher(&self.cap.key);
        c.seek(seg * self.ueb.segment_size);
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
            let restored = if self.small_tables {
                restore_small(k, self.ueb.n as usize - k, &originals, &recovery)
            } else {
                reed_solomon_simd::decode(
                    k,
                    (self.ueb.n as usize) - k,
                    originals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, o)| o.as_ref().map(|b| (i, b))),
                    recovery.iter().map(|(i, b)| (*i, b)),
                )
                .map(|r| r.into_iter().collect())
            }
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
