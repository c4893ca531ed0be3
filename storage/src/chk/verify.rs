//! A server's check of a share it holds, without the capability: is the
//! share consistent with its own extension block?
//!
//! A reader checks blocks against the capability. A server has no
//! capability, but each share carries its extension block (UEB), which
//! names the Merkle root of every share's block hashes. [`ShareCheck`]
//! takes the share's tail (footer and UEB) first, then the share's bytes
//! from the start, in any pieces, in one pass: it hashes every block and
//! builds the Merkle root of those hashes, and builds the root of the hash
//! list stored in the share; both must be the UEB's root for this share
//! number. Memory stays bounded whatever the share's size: one block
//! hasher and one hash per tree level.
//!
//! What it proves: the share is exactly what its uploader wrote, if the
//! uploader wrote a consistent share. A share that fails was damaged (on
//! disk, or by whoever could write the server's files) or uploaded broken;
//! either way no reader can use it. A share that passes may still belong
//! to a UEB that is not the capability's (a hostile uploader can make a
//! consistent share of garbage); readers find that out themselves. So a
//! reader's word that a share is corrupt is checked with this, and a share
//! is quarantined only when the check fails, never on the reader's say-so.

use crate::chk::format::{Footer, Ueb, FOOTER_LEN, MAX_UEB_LEN};
use crate::chk::merkle::MerkleStream;
use crate::error::CodecError;

/// Checks one share in a single pass over its bytes.
#[derive(Debug)]
pub struct ShareCheck {
    shnum: u16,
    ueb: Ueb,
    share_size: u64,
    /// End of the blocks; the hash list runs from there to `hashes_end`.
    blocks_end: u64,
    hashes_end: u64,
    /// Bytes fed so far.
    pos: u64,
    /// Segment whose block is being hashed, and where that block ends.
    seg: u64,
    block_end: u64,
    block: blake3::Hasher,
    computed: MerkleStream,
    listed: MerkleStream,
    leaf: [u8; 32],
    leaf_fill: usize,
}

impl ShareCheck {
    /// How many bytes from the end of a share [`ShareCheck::new`] needs at
    /// most (the footer and the largest UEB).
    pub const TAIL_LEN: u64 = FOOTER_LEN + MAX_UEB_LEN as u64;

    /// Start checking share `shnum` of `share_size` bytes, given its last
    /// `min(share_size, TAIL_LEN)` bytes (or more).
    ///
    /// # Errors
    /// [`CodecError::UnsupportedVersion`] if the share or its UEB is of a
    /// newer format (nothing can be said about it);
    /// [`CodecError::Malformed`] or [`CodecError::CorruptShare`] if its
    /// footer or UEB is broken or does not fit the share.
    pub fn new(shnum: u16, share_size: u64, tail: &[u8]) -> Result<Self, CodecError> {
        let flen = FOOTER_LEN as usize;
        if tail.len() < flen || tail.len() as u64 > share_size {
            return Err(CodecError::Malformed(
                "share shorter than its footer".into(),
            ));
        }
        let footer = Footer::parse(&tail[tail.len() - flen..], share_size)?;
        let ueb_start = (tail.len() - flen)
            .checked_sub(footer.ueb_len as usize)
            .ok_or_else(|| CodecError::Malformed("tail too short for the UEB".into()))?;
        let ueb = Ueb::decode_structural(&tail[ueb_start..tail.len() - flen])?;
        let corrupt = || CodecError::CorruptShare(shnum);
        if shnum >= ueb.n
            || footer.hashes_offset != ueb.blocks_len()
            || footer.ueb_offset - footer.hashes_offset != ueb.hashes_len()
        {
            return Err(corrupt());
        }
        Ok(ShareCheck {
            shnum,
            share_size,
            blocks_end: footer.hashes_offset,
            hashes_end: footer.ueb_offset,
            pos: 0,
            seg: 0,
            block_end: ueb.block_len(0),
            block: blake3::Hasher::new(),
            computed: MerkleStream::default(),
            listed: MerkleStream::default(),
            leaf: [0; 32],
            leaf_fill: 0,
            ueb,
        })
    }

    /// Feed the share's next bytes (from offset 0 on, in order).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take;
            if self.pos < self.blocks_end {
                take = bytes.len().min((self.block_end - self.pos) as usize);
                self.block.update(&bytes[..take]);
                if self.pos + take as u64 == self.block_end {
                    self.computed.push(self.block.finalize().as_bytes());
                    self.block.reset();
                    self.seg += 1;
                    self.block_end = self
                        .ueb
                        .block_offset(self.seg)
                        .saturating_add(self.ueb.block_len(self.seg))
                        .min(self.blocks_end);
                }
            } else if self.pos < self.hashes_end {
                take = bytes
                    .len()
                    .min((self.hashes_end - self.pos) as usize)
                    .min(32 - self.leaf_fill);
                self.leaf[self.leaf_fill..self.leaf_fill + take].copy_from_slice(&bytes[..take]);
                self.leaf_fill += take;
                if self.leaf_fill == 32 {
                    self.listed.push(&self.leaf);
                    self.leaf_fill = 0;
                }
            } else {
                // The UEB and footer, already read from the tail.
                take = bytes.len();
            }
            self.pos = self.pos.saturating_add(take as u64);
            bytes = &bytes[take..];
        }
    }

    /// The verdict, once every byte was fed.
    ///
    /// # Errors
    /// [`CodecError::CorruptShare`] if a block does not hash as the UEB's
    /// root for this share says, the stored hash list does not either, or
    /// the bytes fed were not the share's size.
    pub fn finish(self) -> Result<(), CodecError> {
        let root = self.ueb.share_roots[self.shnum as usize];
        let ok = self.pos == self.share_size
            && self.computed.leaves() == self.ueb.segments()
            && self.computed.root() == root
            && self.listed.root() == root;
        if ok {
            Ok(())
        } else {
            Err(CodecError::CorruptShare(self.shnum))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chk::testing::encode_all;
    use crate::chk::{Params, SEGMENT_SIZE};

    /// The n shares of a file of `len` bytes.
    fn shares(len: usize) -> Vec<Vec<u8>> {
        let p = Params {
            k: 2,
            n: 4,
            happy: 3,
        };
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        encode_all([4; 32], &data, p).0
    }

    fn check(shnum: u16, share: &[u8], piece: usize) -> Result<(), CodecError> {
        let tail_from = share.len().saturating_sub(ShareCheck::TAIL_LEN as usize);
        let mut c = ShareCheck::new(shnum, share.len() as u64, &share[tail_from..])?;
        for p in share.chunks(piece) {
            c.feed(p);
        }
        c.finish()
    }

    #[test]
    fn good_shares_pass_in_any_pieces() {
        for len in [0usize, 100, SEGMENT_SIZE as usize * 2 + 333] {
            let s = shares(len);
            for (i, share) in s.iter().enumerate() {
                for piece in [1usize, 7, 4096, 1 << 20] {
                    if piece == 1 && share.len() > 100_000 {
                        continue;
                    }
                    check(i as u16, share, piece).unwrap();
                }
            }
        }
    }

    /// Every region of a share is covered: a flipped byte in a block, in
    /// the hash list, in what the UEB says of this share (sizes, its root)
    /// or in the footer is found, and a share checked under another share
    /// number fails. (The UEB's other shares' roots and its ciphertext hash
    /// cannot be checked without the capability; the store's at-rest
    /// checksum covers those bytes.)
    #[test]
    fn damage_anywhere_is_found() {
        let s = shares(SEGMENT_SIZE as usize + 5000);
        let share = &s[1];
        let footer = Footer::parse(&share[share.len() - 24..], share.len() as u64).unwrap();
        for at in [
            0,
            footer.hashes_offset as usize - 1,
            footer.hashes_offset as usize + 40,
            // The segment size, and share 1's root (after version, k, n,
            // a 5-byte size, a 5-byte segment size, the list's length and
            // share 0's root).
            footer.ueb_offset as usize + 10,
            footer.ueb_offset as usize + 14 + 32 + 3,
            share.len() - 1,
        ] {
            let mut bad = share.clone();
            bad[at] ^= 0x20;
            assert!(check(1, &bad, 65536).is_err(), "damage at {at} not found");
        }
        assert!(matches!(
            check(2, share, 65536),
            Err(CodecError::CorruptShare(2))
        ));
        // Cut short, or with bytes added.
        let short = &share[..share.len() - 1];
        assert!(check(1, short, 65536).is_err());
        let tail = &share[share.len() - 1000..];
        let mut c = ShareCheck::new(1, share.len() as u64, tail).unwrap();
        c.feed(share);
        c.feed(b"x");
        assert!(c.finish().is_err());
    }

    /// A share's tail whose UEB names absurd sizes is refused before any
    /// byte is hashed (no overflow, no huge allocation).
    #[test]
    fn hostile_tails_are_refused() {
        assert!(ShareCheck::new(0, 10, &[0; 5]).is_err());
        let mut tail = vec![0u8; 24];
        tail[8..16].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
        tail[16..20].copy_from_slice(&1000u32.to_le_bytes());
        tail[20..24].copy_from_slice(b"GVS1");
        assert!(ShareCheck::new(0, 1000, &tail).is_err());
    }
}
