//! The encoder: plaintext segments in, one block per share out, then each
//! share's trailer and the read capability.

use chacha20::cipher::StreamCipher;
use chacha20::ChaCha20;

use reed_solomon_simd::engine::Naive;
use reed_solomon_simd::rate::{DefaultRateEncoder, RateEncoder};
use reed_solomon_simd::Error as RsError;

use crate::cap::ReadCap;
use crate::chk::format::{block_len, cipher, trailer, Ueb, FOOTER_LEN, SEGMENT_SIZE, UEB_VERSION};
use crate::chk::merkle::merkle_root;
use crate::error::CodecError;
use crate::types::{storage_index, Params, StorageIndex};

/// Bytes of each block the Reed-Solomon coder takes at a time (a multiple
/// of 64, its column width).
pub(crate) const RS_SLICE: usize = 64 << 10;

/// Encodes a file segment by segment.
pub struct Encoder {
    key: [u8; 32],
    params: Params,
    size: u64,
    cipher: ChaCha20,
    segment: u64,
    block_hashes: Vec<Vec<[u8; 32]>>,
    ciphertext: blake3::Hasher,
    rs: Option<Coder>,
    small_tables: bool,
}

/// The Reed-Solomon coder: reed-solomon-simd's fastest engine for this CPU
/// (its multiplication tables take 8 MiB, built once per process), or its
/// reference engine (384 KiB of tables, slower). Both compute the same
/// blocks.
pub(crate) enum Coder {
    Fast(reed_solomon_simd::ReedSolomonEncoder),
    Small(DefaultRateEncoder<Naive>),
}

impl Coder {
    fn new(k: usize, m: usize, bytes: usize, small: bool) -> Result<Coder, RsError> {
        Ok(if small {
            Coder::Small(DefaultRateEncoder::new(k, m, bytes, Naive::new(), None)?)
        } else {
            Coder::Fast(reed_solomon_simd::ReedSolomonEncoder::new(k, m, bytes)?)
        })
    }

    fn reset(&mut self, k: usize, m: usize, bytes: usize) -> Result<(), RsError> {
        match self {
            Coder::Fast(c) => c.reset(k, m, bytes),
            Coder::Small(c) => c.reset(k, m, bytes),
        }
    }

    fn add(&mut self, shard: &[u8]) -> Result<(), RsError> {
        match self {
            Coder::Fast(c) => c.add_original_shard(shard),
            Coder::Small(c) => c.add_original_shard(shard),
        }
    }

    /// Write each recovery shard over bytes `at..` of its block in `out`.
    fn encode_onto(&mut self, out: &mut [Vec<u8>], at: usize) -> Result<(), RsError> {
        let r = match self {
            Coder::Fast(c) => c.encode()?,
            Coder::Small(c) => c.encode()?,
        };
        for (o, shard) in out.iter_mut().zip(r.recovery_iter()) {
            o[at..at + shard.len()].copy_from_slice(shard);
        }
        Ok(())
    }
}

/// The `m` recovery blocks of `primary` (`k` blocks of `b` bytes, `b`
/// even), computed [`RS_SLICE`] bytes of each block at a time with the
/// coder in `rs` (made, with the small tables if `small`, if there is none
/// yet; kept for the next call): Reed-Solomon works on each 64-byte column
/// of the blocks apart from the others, so the blocks are the same as from
/// one pass over whole blocks, while the coder's work area is a few slices
/// rather than a few blocks (512 KiB instead of 2.7 MiB at 3-of-10).
pub(crate) fn recovery_sliced<B: AsRef<[u8]>>(
    rs: &mut Option<Coder>,
    k: usize,
    m: usize,
    primary: &[B],
    b: usize,
    small: bool,
) -> Result<Vec<Vec<u8>>, RsError> {
    let mut recovery: Vec<Vec<u8>> = (0..m).map(|_| vec![0; b]).collect();
    recovery_sliced_onto(rs, k, m, primary, b, small, &mut recovery)?;
    Ok(recovery)
}

/// [`recovery_sliced`] over `recovery` (`m` blocks of `b` bytes, reused
/// buffers written over where they lie).
fn recovery_sliced_onto<B: AsRef<[u8]>>(
    rs: &mut Option<Coder>,
    k: usize,
    m: usize,
    primary: &[B],
    b: usize,
    small: bool,
    recovery: &mut [Vec<u8>],
) -> Result<(), RsError> {
    let mut at = 0;
    while at < b {
        // `b` is even and every slice but the last a multiple of 64.
        let end = (at + RS_SLICE).min(b);
        let c = match &mut *rs {
            Some(c) => {
                c.reset(k, m, end - at)?;
                c
            }
            slot => slot.insert(Coder::new(k, m, end - at, small)?),
        };
        for blk in primary {
            c.add(&blk.as_ref()[at..end])?;
        }
        c.encode_onto(recovery, at)?;
        at = end;
    }
    Ok(())
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
            small_tables: false,
        };
        enc.ueb_template().validate()?;
        Ok(enc)
    }

    /// Use (`true`) the erasure coder's reference engine, whose tables take
    /// 384 KiB instead of the fast engines' 8 MiB, at some cost in speed:
    /// for a small memory budget
    /// ([`MemoryBudget::small_tables`](crate::MemoryBudget::small_tables)).
    /// The blocks are the same either way.
    pub fn with_small_tables(mut self, small: bool) -> Self {
        self.small_tables = small;
        self.rs = None;
        self
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
    pub fn encode_segment(&mut self, plaintext: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
        let mut blocks = Vec::new();
        self.encode_segment_into(plaintext, &mut blocks)?;
        Ok(blocks)
    }

    /// [`Encoder::encode_segment`] into `blocks`: its buffers (a previous
    /// segment's, say) are written over where they lie, so an upload that
    /// hands its blocks back encodes segment after segment without
    /// allocating (a fresh 341 KiB block per share and segment was mapped by
    /// the allocator and faulted in page by page: more than half of a put's
    /// page faults, measured).
    ///
    /// # Errors
    /// As [`Encoder::encode_segment`]; `blocks` is then unspecified.
    pub fn encode_segment_into(
        &mut self,
        plaintext: &[u8],
        blocks: &mut Vec<Vec<u8>>,
    ) -> Result<(), CodecError> {
        let ueb = self.ueb_template();
        let expect = ueb.segment_len(self.segment);
        if self.segment >= self.segments() || plaintext.len() as u64 != expect {
            return Err(CodecError::SegmentLength {
                expected: expect,
                got: plaintext.len() as u64,
            });
        }
        let k = self.params.k as usize;
        let n = self.params.n as usize;
        let b = block_len(expect, self.params.k) as usize;
        // Every block is `b` bytes. A reused buffer already is (zeroed
        // only where it grows) and is written over where it lies.
        blocks.resize_with(n, Vec::new);
        for blk in blocks.iter_mut() {
            blk.resize(b, 0);
        }
        // The primary blocks are the ciphertext cut in k, the last padded
        // with zeros: the plaintext is encrypted straight into them (no
        // ciphertext buffer to copy from), and hashed there.
        for (i, blk) in blocks[..k].iter_mut().enumerate() {
            let (start, end) = (
                (i * b).min(plaintext.len()),
                ((i + 1) * b).min(plaintext.len()),
            );
            let (data, pad) = blk.split_at_mut(end - start);
            self.cipher
                .apply_keystream_b2b(&plaintext[start..end], data)
                .map_err(|e| CodecError::Malformed(format!("file cipher: {e}")))?;
            self.ciphertext.update(data);
            pad.fill(0);
        }
        // The recovery blocks come from one reused coder.
        if n > k {
            let (primary, recovery) = blocks.split_at_mut(k);
            recovery_sliced_onto(
                &mut self.rs,
                k,
                n - k,
                primary,
                b,
                self.small_tables,
                recovery,
            )
            .map_err(|e| CodecError::Erasure(e.to_string()))?;
        }
        for (i, blk) in blocks.iter().enumerate() {
            self.block_hashes[i].push(*blake3::hash(blk).as_bytes());
        }
        self.segment += 1;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-of-10 encoder of a `size`-byte file under a fixed key.
    fn encoder(size: u64) -> Encoder {
        let params = Params {
            k: 3,
            n: 10,
            happy: 7,
        };
        Encoder::new([7; 32], params, size).unwrap()
    }

    /// Encoding into reused buffers gives exactly the blocks (and the
    /// capability) of encoding into fresh ones, and after the first
    /// segment allocates nothing: every block is written where the
    /// previous segment's lay, the shorter last segment too.
    #[test]
    fn encoding_into_reused_blocks_gives_the_same_blocks_without_allocating() {
        let size = 3 * SEGMENT_SIZE + 1000;
        let mut fresh = encoder(size);
        let mut reused = encoder(size);
        let mut x = blake3::Hasher::new().finalize_xof();
        let mut blocks = Vec::new();
        let mut first: Vec<*const u8> = Vec::new();
        for (i, len) in [SEGMENT_SIZE, SEGMENT_SIZE, SEGMENT_SIZE, 1000]
            .into_iter()
            .enumerate()
        {
            let mut seg = vec![0u8; len as usize];
            x.fill(&mut seg);
            let copy = seg.clone();
            let want = fresh.encode_segment(&seg).unwrap();
            reused.encode_segment_into(&copy, &mut blocks).unwrap();
            assert_eq!(blocks, want, "segment {i}");
            let at: Vec<*const u8> = blocks.iter().map(|b| b.as_ptr()).collect();
            if i == 0 {
                first = at;
            } else {
                assert_eq!(at, first, "segment {i} was written into new buffers");
            }
        }
        let (t1, c1) = fresh.finish().unwrap();
        let (t2, c2) = reused.finish().unwrap();
        assert_eq!((t1, c1), (t2, c2));
    }

    /// Recovery blocks made a slice at a time, by either engine, are the
    /// ones a single pass over whole blocks makes with the fast engine (what
    /// every reader's decoder expects): for blocks longer than a slice, not
    /// a multiple of 64, and short ones.
    #[test]
    fn sliced_recovery_blocks_equal_whole_block_ones() {
        let size = 2 * SEGMENT_SIZE + 1000;
        for small in [false, true] {
            let mut enc = encoder(size).with_small_tables(small);
            let mut x = blake3::Hasher::new().finalize_xof();
            for len in [SEGMENT_SIZE, SEGMENT_SIZE, 1000] {
                let mut seg = vec![0u8; len as usize];
                x.fill(&mut seg);
                let blocks = enc.encode_segment(&seg).unwrap();
                let b = blocks[0].len();
                assert!(len < SEGMENT_SIZE || (b > RS_SLICE && b % 64 != 0), "{b}");
                let whole = reed_solomon_simd::encode(3, 7, &blocks[..3]).unwrap();
                assert_eq!(blocks[3..], whole[..], "{len} bytes, small tables {small}");
            }
        }
    }

    /// The blocks, trailers and capability of a file are fixed by its key
    /// and plaintext: files stored by an earlier release must decode, and
    /// readers compare hashes with what the writer computed, so any change
    /// to how the encoder encrypts, cuts or codes is a format change. The
    /// digest was computed by the encoder of 2026-12-05 (which encrypted
    /// the segment in place and copied it into the blocks).
    #[test]
    fn encoding_is_fixed_by_key_and_plaintext() {
        let size = 2 * SEGMENT_SIZE + 1000;
        let mut enc = encoder(size);
        let mut x = blake3::Hasher::new_derive_key("grapevine chk golden").finalize_xof();
        let mut all = blake3::Hasher::new();
        for len in [SEGMENT_SIZE, SEGMENT_SIZE, 1000] {
            let mut seg = vec![0u8; len as usize];
            x.fill(&mut seg);
            for b in enc.encode_segment(&seg).unwrap() {
                all.update(&b);
            }
        }
        let (trailers, cap) = enc.finish().unwrap();
        for t in &trailers {
            all.update(t);
        }
        all.update(crate::cap::Cap::Chk(cap).to_string().as_bytes());
        assert_eq!(
            all.finalize().to_hex().as_str(),
            "5a9697450b815f1be071aae0e4cef22aafe1ffe62a943b89cec778c2584d2892"
        );
    }
}
