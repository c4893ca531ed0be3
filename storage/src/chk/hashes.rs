//! What every reader of shares does alike, with a read capability
//! ([`Decoder`](super::Decoder)) or only a verify capability
//! ([`Verifier`](super::Verifier)): [`ShareHashes`] holds the file's
//! extension block (already checked against the capability) and the block
//! hash lists it accepted, one per share. A share's list is accepted only
//! if its Merkle root is the one the extension block records for the
//! share's number; a block is used only if it hashes to its entry in an
//! accepted list and has its segment's block length. From any `k` checked
//! blocks of a segment, Reed-Solomon decoding restores the `k` original
//! blocks: the segment's ciphertext cut in `k`, which the decoder decrypts
//! and the verifier encodes again into missing shares' blocks.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use crate::chk::encode::RS_SLICE;
use crate::chk::format::Ueb;
use crate::chk::merkle::merkle_root;
use crate::error::CodecError;
use crate::types::StorageIndex;

/// A file's verified extension block and the share hash lists accepted
/// against it.
#[derive(Debug, Clone)]
pub(crate) struct ShareHashes {
    ueb: Ueb,
    lists: Vec<Option<Arc<[[u8; 32]]>>>,
}

impl ShareHashes {
    /// No list accepted yet, for a file whose extension block `ueb` was
    /// verified (decoded, validated, checked against a capability).
    pub(crate) fn new(ueb: Ueb) -> Self {
        let n = ueb.n as usize;
        ShareHashes {
            ueb,
            lists: vec![None; n],
        }
    }

    /// The verified extension block.
    pub(crate) fn ueb(&self) -> &Ueb {
        &self.ueb
    }

    /// Accept share `shnum`'s block hash list if its Merkle root matches.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if it does not, if it is not one hash
    /// per segment long, or if the file has no share `shnum` (nothing
    /// changes).
    pub(crate) fn add(&mut self, shnum: u16, bytes: &[u8]) -> Result<(), CodecError> {
        let s = shnum as usize;
        if s >= self.lists.len() || bytes.len() as u64 != self.ueb.hashes_len() {
            return Err(CodecError::CorruptShare(shnum));
        }
        let list: Vec<[u8; 32]> = bytes
            .chunks(32)
            .map(|c| c.try_into().expect("32"))
            .collect();
        if merkle_root(&list) != self.ueb.share_roots[s] {
            return Err(CodecError::CorruptShare(shnum));
        }
        self.lists[s] = Some(list.into());
        Ok(())
    }

    /// Check one block of segment `seg` from share `shnum`.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if its hash or length is wrong, or the
    /// share's hash list was not accepted.
    pub(crate) fn check(&self, shnum: u16, seg: u64, block: &[u8]) -> Result<(), CodecError> {
        let ok = self
            .lists
            .get(shnum as usize)
            .and_then(|h| h.as_ref())
            .and_then(|h| h.get(seg as usize))
            .is_some_and(|h| h == blake3::hash(block).as_bytes())
            && block.len() as u64 == self.ueb.block_len(seg);
        if ok {
            Ok(())
        } else {
            Err(CodecError::CorruptShare(shnum))
        }
    }

    /// Share `shnum`'s accepted list as a [`BlockChecker`] of its own, for
    /// `si`'s file; `None` if no list was accepted for it.
    pub(crate) fn checker(&self, si: StorageIndex, shnum: u16) -> Option<BlockChecker> {
        let list = self.lists.get(shnum as usize)?.clone()?;
        Some(BlockChecker {
            si,
            shnum,
            list,
            ueb: Arc::new(self.ueb.clone()),
        })
    }

    /// The share numbers of `blocks` (`(shnum, block)` of segment `seg`)
    /// whose block fails [`ShareHashes::check`]; each block is hashed once.
    pub(crate) fn corrupt<B: AsRef<[u8]>>(&self, seg: u64, blocks: &[(u16, B)]) -> Vec<u16> {
        blocks
            .iter()
            .filter(|(s, b)| self.check(*s, seg, b.as_ref()).is_err())
            .map(|(s, _)| *s)
            .collect()
    }

    /// The `k` original blocks of a segment from at least `k` distinct
    /// checked blocks `(shnum, block)` of it (see
    /// [`ShareHashes::corrupt`]): those given as they are, the others
    /// restored by Reed-Solomon decoding. A share number given twice counts
    /// once.
    ///
    /// # Errors
    /// [`CodecError::NotEnoughShares`] with fewer than `k` distinct share
    /// numbers; [`CodecError::Erasure`] if decoding fails (a share number
    /// past `n`, blocks of unequal lengths).
    #[cfg(test)]
    pub(crate) fn originals<'a, B: AsRef<[u8]>>(
        &self,
        blocks: &'a [(u16, B)],
    ) -> Result<Vec<Cow<'a, [u8]>>, CodecError> {
        self.originals_with(blocks, false)
    }

    /// [`ShareHashes::originals`], restoring missing blocks with the erasure
    /// coder's small tables if `small_tables` (see [`restore_small`]).
    pub(crate) fn originals_with<'a, B: AsRef<[u8]>>(
        &self,
        blocks: &'a [(u16, B)],
        small_tables: bool,
    ) -> Result<Vec<Cow<'a, [u8]>>, CodecError> {
        originals_with(&self.ueb, blocks, small_tables)
    }
}

/// The `k` original blocks of a segment of the file `ueb` describes, from
/// at least `k` checked blocks (see [`ShareHashes::originals`]), restoring
/// missing ones with the erasure coder's small tables if `small_tables`
/// (see [`restore_small`]).
pub(crate) fn originals_with<'a, B: AsRef<[u8]>>(
    ueb: &Ueb,
    blocks: &'a [(u16, B)],
    small_tables: bool,
) -> Result<Vec<Cow<'a, [u8]>>, CodecError> {
    let (k, n) = (ueb.k as usize, ueb.n as usize);
    let mut originals: Vec<Option<Cow<'a, [u8]>>> = vec![None; k];
    let mut recovery: Vec<(usize, &[u8])> = Vec::new();
    for (s, b) in blocks {
        let s = *s as usize;
        if s < k {
            originals[s] = Some(Cow::Borrowed(b.as_ref()));
        } else if !recovery.iter().any(|r| r.0 == s - k) {
            recovery.push((s - k, b.as_ref()));
        }
    }
    let have = originals.iter().filter(|o| o.is_some()).count();
    let short = |have| CodecError::NotEnoughShares { have, need: k };
    if have < k {
        if have + recovery.len() < k {
            return Err(short(have + recovery.len()));
        }
        let restored: Vec<(usize, Vec<u8>)> = if small_tables {
            restore_small(k, n - k, &originals, &recovery).map_err(erasure)?
        } else {
            reed_solomon_simd::decode(
                k,
                n - k,
                originals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.as_ref().map(|b| (i, b))),
                recovery.iter().copied(),
            )
            .map_err(erasure)?
            .into_iter()
            .collect()
        };
        for (i, b) in restored {
            originals[i] = Some(Cow::Owned(b));
        }
    }
    originals
        .into_iter()
        .map(|o| o.ok_or_else(|| short(have)))
        .collect()
}

/// A Reed-Solomon error as the codec reports it.
/// Restore the missing originals from `originals` and `recovery` (index,
/// block) with reed-solomon-simd's reference engine (384 KiB of tables
/// against the fast engines' 8 MiB), [`RS_SLICE`] bytes of each block at a
/// time (a work area of a few slices rather than a few blocks): the same
/// blocks as one pass of the fast engine, for a small memory budget.
fn restore_small(
    k: usize,
    m: usize,
    originals: &[Option<Cow<'_, [u8]>>],
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

pub(crate) fn erasure(e: reed_solomon_simd::Error) -> CodecError {
    CodecError::Erasure(e.to_string())
}

/// One share's accepted block hash list, to check its blocks away from
/// the decoder: a download's receivers check each block as it arrives, on
/// whichever core runs them, and hand the decoder [`CheckedBlock`]s.
#[derive(Debug, Clone)]
pub struct BlockChecker {
    si: StorageIndex,
    shnum: u16,
    list: Arc<[[u8; 32]]>,
    ueb: Arc<Ueb>,
}

impl BlockChecker {
    /// The share it checks.
    pub fn shnum(&self) -> u16 {
        self.shnum
    }

    /// `block` as segment `seg`'s block of this share, if it hashes to its
    /// entry in the accepted list and has the segment's block length.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] otherwise.
    pub fn check(&self, seg: u64, block: Bytes) -> Result<CheckedBlock, CodecError> {
        let ok = block.len() as u64 == self.ueb.block_len(seg)
            && self
                .list
                .get(usize::try_from(seg).unwrap_or(usize::MAX))
                .is_some_and(|h| h == blake3::hash(&block).as_bytes());
        if ok {
            Ok(CheckedBlock {
                si: self.si,
                shnum: self.shnum,
                seg,
                block,
            })
        } else {
            Err(CodecError::CorruptShare(self.shnum))
        }
    }
}

/// A block that passed its share's hash check ([`BlockChecker::check`],
/// the only way to make one): the decoder takes it without hashing it
/// again.
#[derive(Debug, Clone)]
pub struct CheckedBlock {
    pub(crate) si: StorageIndex,
    pub(crate) shnum: u16,
    pub(crate) seg: u64,
    pub(crate) block: Bytes,
}

impl CheckedBlock {
    /// Its share.
    pub fn shnum(&self) -> u16 {
        self.shnum
    }

    /// Its segment.
    pub fn seg(&self) -> u64 {
        self.seg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chk::testing::{encode_all, parts};
    use crate::types::Params;

    /// Blocks of segment 0 of `shares`, and hash lists accepted for
    /// shares `from`.
    fn setup(from: &[u16]) -> (Vec<Vec<u8>>, ShareHashes) {
        let params = Params {
            k: 3,
            n: 6,
            happy: 4,
        };
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let (shares, _) = encode_all([2; 32], &data, params);
        let (_, ueb, _) = parts(&shares[0]);
        let mut h = ShareHashes::new(Ueb::decode_structural(ueb).unwrap());
        for &s in from {
            h.add(s, parts(&shares[s as usize]).2).unwrap();
        }
        let len = h.ueb().block_len(0) as usize;
        let blocks = shares.iter().map(|s| s[..len].to_vec()).collect();
        (blocks, h)
    }

    /// A hash list is accepted only for its own share number, whole;
    /// a block only with an accepted list, its own hash and its length.
    #[test]
    fn lists_and_blocks_are_checked_against_the_extension_block() {
        let (blocks, mut h) = setup(&[0, 4]);
        assert!(h.check(0, 0, &blocks[0]).is_ok());
        assert!(h.check(4, 0, &blocks[4]).is_ok());
        assert!(matches!(
            h.check(1, 0, &blocks[1]),
            Err(CodecError::CorruptShare(1))
        ));
        assert!(h.check(0, 0, &blocks[4]).is_err(), "another share's block");
        assert!(
            h.check(0, 1, &blocks[0]).is_err(),
            "a segment past the last"
        );
        let mut bad = blocks[0].clone();
        bad[0] ^= 1;
        assert!(h.check(0, 0, &bad).is_err());
        assert_eq!(
            h.corrupt(
                0,
                &[(0, &bad[..]), (4, &blocks[4][..]), (2, &blocks[2][..])]
            ),
            vec![0, 2]
        );
        let list = h.lists[0].clone().unwrap().concat();
        assert!(h.add(1, &list).is_err(), "share 0's list as share 1's");
        assert!(h.add(0, &list[..31]).is_err(), "cut short");
        assert!(
            h.add(0, &[&list[..], &[0; 32]].concat()).is_err(),
            "too long"
        );
        assert!(h.add(6, &list).is_err(), "no share 6");
    }

    /// A 3-of-6 file of `data` under `key`: its shares, and a decoder
    /// that accepted the hash lists of shares `lists`.
    fn decoder_with_lists(
        key: [u8; 32],
        data: &[u8],
        lists: &[u16],
    ) -> (Vec<Vec<u8>>, crate::chk::Decoder) {
        let params = Params {
            k: 3,
            n: 6,
            happy: 4,
        };
        let (shares, cap) = encode_all(key, data, params);
        let mut dec = crate::chk::Decoder::new(cap, parts(&shares[0]).1).unwrap();
        for &s in lists {
            dec.add_hashes(s, parts(&shares[s as usize]).2).unwrap();
        }
        (shares, dec)
    }

    /// Share `s`'s block of segment `seg`, as read off a session.
    fn block_of(shares: &[Vec<u8>], u: &Ueb, s: u16, seg: u64) -> Bytes {
        let (off, len) = (u.block_offset(seg) as usize, u.block_len(seg) as usize);
        Bytes::copy_from_slice(&shares[s as usize][off..off + len])
    }

    /// A share's checker passes its own blocks only (hash, length,
    /// segment), and the decoder takes checked blocks of its own file and
    /// next segment only.
    #[test]
    fn checked_blocks_are_the_shares_own_and_the_decoder_takes_only_its_next_segment() {
        let data: Vec<u8> = (0..2_600_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (shares, mut dec) = decoder_with_lists([5; 32], &data, &[1, 4, 5]);
        assert!(dec.checker(0).is_none(), "no list accepted for share 0");
        let u = dec.ueb().clone();
        let checkers: Vec<BlockChecker> = [1u16, 4, 5]
            .iter()
            .map(|&s| dec.checker(s).unwrap())
            .collect();
        let block = |s: u16, seg: u64| block_of(&shares, &u, s, seg);
        let c1 = &checkers[0];
        assert!(c1.check(0, block(1, 0)).is_ok());
        assert!(c1.check(0, block(4, 0)).is_err(), "another share's block");
        assert!(c1.check(1, block(1, 0)).is_err(), "another segment's block");
        let mut bad = block(1, 0).to_vec();
        bad[7] ^= 1;
        assert!(matches!(
            c1.check(0, bad.into()),
            Err(CodecError::CorruptShare(1))
        ));
        let checked = |seg: u64| -> Vec<CheckedBlock> {
            checkers
                .iter()
                .map(|c| c.check(seg, block(c.shnum(), seg)).unwrap())
                .collect()
        };
        let (seg0, seg1) = (checked(0), checked(1));
        assert!(
            dec.decode_checked_segment(seg1.clone()).is_err(),
            "segment 1 before segment 0"
        );
        let mut plain = dec.decode_checked_segment(seg0.clone()).unwrap().concat();
        for seg in 1..u.segments() {
            let blocks = if seg == 1 { seg1.clone() } else { checked(seg) };
            plain.extend(dec.decode_checked_segment(blocks).unwrap().concat());
        }
        assert!(plain == data, "decoded from recovery shares, whole");
        // A block checked for another file is refused.
        let (_, mut dec2) = decoder_with_lists([6; 32], &data, &[1, 4, 5]);
        assert!(
            dec2.decode_checked_segment(seg0).is_err(),
            "another file's blocks"
        );
    }

    /// From the `k` primary blocks (and a recovery block beside them), the
    /// plaintext comes back as those blocks decrypted where they lie: each
    /// piece is its block's own memory (no copy), the last segment's
    /// padding is cut, and the whole file comes back.
    #[test]
    fn primary_blocks_are_decrypted_where_they_lie() {
        // 2.5 segments: the last one's blocks carry padding.
        let data: Vec<u8> = (0..2_621_441u32).map(|i| (i * 11 % 241) as u8).collect();
        let (shares, mut dec) = decoder_with_lists([9; 32], &data, &[0, 1, 2, 3]);
        let u = dec.ueb().clone();
        let mut plain = Vec::new();
        for seg in 0..u.segments() {
            let mut starts = Vec::new();
            let blocks: Vec<CheckedBlock> = [3u16, 2, 0, 1]
                .iter()
                .map(|&s| {
                    let b = block_of(&shares, &u, s, seg);
                    if s < 3 {
                        starts.push((s, b.as_ptr()));
                    }
                    dec.checker(s).unwrap().check(seg, b).unwrap()
                })
                .collect();
            starts.sort();
            let pieces = dec.decode_checked_segment(blocks).unwrap();
            assert!(
                !pieces.is_empty() && pieces.len() <= 3,
                "{} pieces",
                pieces.len()
            );
            for (piece, (_, start)) in pieces.iter().zip(&starts) {
                assert_eq!(piece.as_ptr(), *start, "segment {seg}: a piece was copied");
            }
            let got: usize = pieces.iter().map(|p| p.len()).sum();
            assert_eq!(got as u64, u.segment_len(seg), "segment {seg}'s length");
            plain.extend(pieces.concat());
        }
        assert!(plain == data, "the whole file, from its primary blocks");
    }

    /// Any `k` distinct blocks give the originals; a share number given
    /// twice is counted once.
    #[test]
    fn originals_come_from_any_k_distinct_blocks() {
        let (blocks, h) = setup(&[]);
        let want: Vec<&[u8]> = blocks[..3].iter().map(Vec::as_slice).collect();
        for from in [[0u16, 1, 2], [3, 4, 5], [0, 4, 2], [5, 1, 3]] {
            let given: Vec<(u16, &[u8])> =
                from.iter().map(|&s| (s, &blocks[s as usize][..])).collect();
            let got = h.originals(&given).unwrap();
            assert_eq!(got.iter().map(|c| &c[..]).collect::<Vec<_>>(), want);
        }
        for twice in [[4u16, 4, 5], [0, 0, 5]] {
            let given: Vec<(u16, &[u8])> = twice
                .iter()
                .map(|&s| (s, &blocks[s as usize][..]))
                .collect();
            assert!(matches!(
                h.originals(&given),
                Err(CodecError::NotEnoughShares { have: 2, need: 3 })
            ));
        }
    }
}
