//! Verifying and regenerating shares with a verify capability: no key, so
//! no plaintext.
//!
//! [`Verifier`] checks a share the way a reader does, against a
//! [`VerifyCap`] instead of a read capability: the extension block must
//! hash to the capability, each share's block hash list to its Merkle root
//! in the block, each block to its hash. None of that needs the key.
//!
//! [`Verifier::regenerate`] turns `k` checked blocks of a segment into the
//! blocks of missing shares: Reed-Solomon decoding restores the `k`
//! original blocks, which are *ciphertext* (the file is encrypted before it
//! is cut into blocks), and encoding them again gives any recovery block.
//! The repairer handles ciphertext only and never holds the key, so it can
//! be trusted with a verify capability and nothing more.
//!
//! A regenerated share is written only if it is exactly the share the
//! uploader made: [`NewShare`] collects the hashes of its blocks as they
//! are made and [`Verifier::trailer`] refuses to finish it unless their
//! Merkle root is the one the extension block records for its number. The
//! blocks it came from were each checked before use, so this holds by
//! construction; the check makes sure of it before anything is closed.

use crate::cap::VerifyCap;
use crate::chk::encode::recovery_sliced;
use crate::chk::format::{trailer, Ueb, FOOTER_LEN};
use crate::chk::hashes::{erasure, ShareHashes};
use crate::chk::merkle::merkle_root;
use crate::error::CodecError;
use crate::types::StorageIndex;

/// The verify capability a share's own extension block implies: what a
/// server holding the share knows of its file without any capability. It
/// names the file the share's uploader meant, whoever that was: a repair
/// driven by it regenerates shares consistent with that block and nothing
/// else.
///
/// # Errors
/// [`CodecError::Malformed`] or [`CodecError::UnsupportedVersion`] if the
/// block is not one this release reads.
pub fn verify_cap_of(si: StorageIndex, ueb_bytes: &[u8]) -> Result<VerifyCap, CodecError> {
    let ueb = Ueb::decode_structural(ueb_bytes)?;
    Ok(VerifyCap {
        si,
        ueb_hash: *blake3::hash(ueb_bytes).as_bytes(),
        k: ueb.k,
        n: ueb.n,
        size: ueb.size,
    })
}

/// Checks a file's shares against a verify capability and regenerates
/// missing ones, never decrypting anything.
#[derive(Debug)]
pub struct Verifier {
    cap: VerifyCap,
    ueb_bytes: Vec<u8>,
    hashes: ShareHashes,
    small_tables: bool,
}

impl Verifier {
    /// Start from a verify capability and a UEB read from any share.
    ///
    /// # Errors
    /// [`CodecError::UebMismatch`] if the UEB is not the capability's;
    /// [`CodecError::Malformed`] or [`CodecError::UnsupportedVersion`] if
    /// it is not one this release reads.
    pub fn new(cap: VerifyCap, ueb_bytes: &[u8]) -> Result<Self, CodecError> {
        let ueb = Ueb::decode_verified(ueb_bytes, &cap)?;
        Ok(Verifier {
            cap,
            ueb_bytes: ueb_bytes.to_vec(),
            hashes: ShareHashes::new(ueb),
            small_tables: false,
        })
    }

    /// Regenerate with the erasure coder's reference engine (`true`: its
    /// tables take 384 KiB instead of the fast engines' 8 MiB, built once
    /// per process): for a small memory budget
    /// ([`MemoryBudget::small_tables`](crate::MemoryBudget::small_tables)),
    /// as uploads and downloads do. The shares are the same either way.
    pub fn with_small_tables(mut self, small: bool) -> Self {
        self.small_tables = small;
        self
    }

    /// The verified UEB.
    pub fn ueb(&self) -> &Ueb {
        self.hashes.ueb()
    }

    /// The capability checked against.
    pub fn cap(&self) -> &VerifyCap {
        &self.cap
    }

    /// Size of every share of the file.
    pub fn share_size(&self) -> u64 {
        // Validated UEB: within MAX_SHARE_SIZE, no overflow.
        self.ueb().blocks_len() + self.ueb().hashes_len() + self.ueb_bytes.len() as u64 + FOOTER_LEN
    }

    /// Accept share `shnum`'s block hash list if its Merkle root matches.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if it does not.
    pub fn add_hashes(&mut self, shnum: u16, bytes: &[u8]) -> Result<(), CodecError> {
        self.hashes.add(shnum, bytes)
    }

    /// Check one block of segment `seg` from share `shnum` (whose hashes
    /// were accepted).
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if its hash or length is wrong.
    pub fn check_block(&self, shnum: u16, seg: u64, block: &[u8]) -> Result<(), CodecError> {
        self.hashes.check(shnum, seg, block)
    }

    /// The blocks of shares `want` for segment `seg`, from at least `k`
    /// blocks `(shnum, block)` of other shares. Every given block is checked
    /// first: `Ok(Err(shares))` names those that failed (nothing is made).
    ///
    /// # Errors
    /// [`CodecError::NotEnoughShares`] with fewer than `k` distinct blocks;
    /// [`CodecError::Malformed`] for a share number or segment out of range;
    /// [`CodecError::Erasure`].
    pub fn regenerate<B: AsRef<[u8]>>(
        &self,
        seg: u64,
        blocks: &[(u16, B)],
        want: &[u16],
    ) -> Result<Result<Vec<Vec<u8>>, Vec<u16>>, CodecError> {
        let (k, n) = (self.ueb().k as usize, self.ueb().n as usize);
        if seg >= self.ueb().segments() {
            return Err(CodecError::Malformed(format!("no segment {seg}")));
        }
        if let Some(w) = want.iter().find(|&&w| w as usize >= n) {
            return Err(CodecError::Malformed(format!("no share {w}")));
        }
        let bad = self.hashes.corrupt(seg, blocks);
        if !bad.is_empty() {
            return Ok(Err(bad));
        }
        let len = self.ueb().block_len(seg) as usize;
        // The engine the budget asks for; encoding goes a slice of each
        // block at a time (a work area of a few slices, not a few
        // blocks), and so does decoding with the small tables.
        let originals = self.hashes.originals_with(blocks, self.small_tables)?;
        let recovered: Vec<Vec<u8>> = if want.iter().any(|&w| w as usize >= k) && n > k {
            recovery_sliced(&mut None, k, n - k, &originals, len, self.small_tables)
                .map_err(erasure)?
        } else {
            Vec::new()
        };
        Ok(Ok(want
            .iter()
            .map(|&w| {
                let w = w as usize;
                if w < k {
                    originals[w].to_vec()
                } else {
                    recovered[w - k].clone()
                }
            })
            .collect()))
    }

    /// A share `shnum` about to be regenerated.
    pub fn new_share(&self, shnum: u16) -> NewShare {
        NewShare {
            shnum,
            hashes: Vec::new(),
        }
    }

    /// The trailer (block hashes, UEB, footer) of `share` once all its
    /// blocks were made, if its blocks are exactly those the UEB records
    /// for its number.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if the regenerated share's Merkle root
    /// is not the UEB's (it must not be written), or if blocks are missing.
    pub fn trailer(&self, share: &NewShare) -> Result<Vec<u8>, CodecError> {
        let s = share.shnum as usize;
        if share.hashes.len() as u64 != self.ueb().segments()
            || self.ueb().share_roots.get(s) != Some(&merkle_root(&share.hashes))
        {
            return Err(CodecError::CorruptShare(share.shnum));
        }
        Ok(trailer(
            &share.hashes,
            &self.ueb_bytes,
            self.ueb().blocks_len(),
        ))
    }
}

/// A share being regenerated: the hashes of its blocks so far.
#[derive(Debug, Clone)]
pub struct NewShare {
    shnum: u16,
    hashes: Vec<[u8; 32]>,
}

impl NewShare {
    /// Its share number.
    pub fn shnum(&self) -> u16 {
        self.shnum
    }

    /// The next block was made: `block`.
    pub fn push_block(&mut self, block: &[u8]) {
        self.hashes.push(*blake3::hash(block).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chk::testing::{encode_all, parts};
    use crate::chk::SEGMENT_SIZE;
    use crate::types::Params;

    /// Shares of `data` (3-of-10) and the verify capability.
    fn shares_of(data: &[u8]) -> (Vec<Vec<u8>>, VerifyCap) {
        let (shares, cap) = encode_all([5; 32], data, Params::default());
        (shares, cap.verify_cap())
    }

    fn verifier(shares: &[Vec<u8>], cap: VerifyCap, from: &[u16]) -> Verifier {
        let mut v = Verifier::new(cap, parts(&shares[from[0] as usize]).1).unwrap();
        for &i in from {
            v.add_hashes(i, parts(&shares[i as usize]).2).unwrap();
        }
        v
    }

    /// Issue 23.1/23.2: any k shares regenerate every other share byte
    /// for byte, with a verify capability only (no key anywhere), and
    /// nothing the regeneration handles contains the plaintext; with the
    /// small tables of a small memory budget too (issue 25).
    #[test]
    fn any_k_shares_regenerate_the_others_exactly_without_the_key() {
        for small in [false, true] {
            regenerate_all(small);
        }
    }

    fn regenerate_all(small: bool) {
        let plain: Vec<u8> = b"attack at dawn; "
            .iter()
            .copied()
            .cycle()
            .take(2 * SEGMENT_SIZE as usize + 5000)
            .collect();
        let (shares, cap) = shares_of(&plain);
        for from in [[0u16, 1, 2], [7, 8, 9], [1, 5, 9]] {
            let v = verifier(&shares, cap, &from).with_small_tables(small);
            let want: Vec<u16> = (0..10).filter(|s| !from.contains(s)).collect();
            let mut made: Vec<NewShare> = want.iter().map(|&w| v.new_share(w)).collect();
            let mut bodies = vec![Vec::new(); want.len()];
            for seg in 0..v.ueb().segments() {
                let (off, len) = (
                    v.ueb().block_offset(seg) as usize,
                    v.ueb().block_len(seg) as usize,
                );
                let blocks: Vec<(u16, &[u8])> = from
                    .iter()
                    .map(|&i| (i, &shares[i as usize][off..off + len]))
                    .collect();
                let out = v.regenerate(seg, &blocks, &want).unwrap().unwrap();
                for ((b, m), body) in out.iter().zip(&mut made).zip(&mut bodies) {
                    assert!(
                        !b.windows(16).any(|w| w == b"attack at dawn; "),
                        "plaintext in a regenerated block"
                    );
                    m.push_block(b);
                    body.extend_from_slice(b);
                }
            }
            for ((w, m), mut body) in want.iter().zip(&made).zip(bodies) {
                body.extend(v.trailer(m).unwrap());
                assert_eq!(
                    body, shares[*w as usize],
                    "share {w} from {from:?}, small tables {small}"
                );
            }
        }
    }

    /// A corrupt block is named, not used; a share whose blocks are not
    /// the UEB's gets no trailer (so it is never closed).
    #[test]
    fn corrupt_inputs_are_named_and_wrong_shares_get_no_trailer() {
        let (shares, cap) = shares_of(&[9u8; 300_000]);
        let v = verifier(&shares, cap, &[0, 1, 2]);
        let len = v.ueb().block_len(0) as usize;
        let mut bad = shares[1][..len].to_vec();
        bad[3] ^= 1;
        let blocks = vec![
            (0u16, shares[0][..len].to_vec()),
            (1, bad),
            (2, shares[2][..len].to_vec()),
        ];
        assert_eq!(v.regenerate(0, &blocks, &[5]).unwrap(), Err(vec![1]));
        // Too few, a share out of range, a segment out of range.
        let two = [blocks[0].clone(), blocks[2].clone()];
        assert!(v.regenerate(0, &two, &[5]).is_err());
        assert!(v.regenerate(0, &blocks, &[10]).is_err());
        assert!(v.regenerate(9, &blocks, &[5]).is_err());
        let mut wrong = v.new_share(5);
        wrong.push_block(&shares[4][..len]);
        assert!(v.trailer(&wrong).is_err());
        assert!(v.trailer(&v.new_share(5)).is_err());
        // A UEB that is not the capability's is refused.
        let other = VerifyCap {
            ueb_hash: [0; 32],
            ..cap
        };
        let (_, ueb, _) = parts(&shares[0]);
        assert!(matches!(
            Verifier::new(other, ueb),
            Err(CodecError::UebMismatch)
        ));
        // A holder derives the file's verify capability from its share.
        assert_eq!(verify_cap_of(cap.si, ueb).unwrap(), cap);
        assert!(verify_cap_of(cap.si, &ueb[1..]).is_err());
    }
}
