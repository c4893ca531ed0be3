//! CHK ("content hash key") encoding, sans-IO: plaintext segments in, one
//! block per share out; blocks in, verified plaintext out. `format` holds
//! the share and UEB layouts, `merkle` the hash tree, `encode` the
//! [`Encoder`], `decode` the [`Decoder`], and `verify` the [`ShareCheck`]
//! a server runs on a share it holds (no capability needed: the share is
//! checked against its own extension block), and `regen` the [`Verifier`]
//! that checks shares and regenerates missing ones from a verify
//! capability, without the key (repair). The decoder and the verifier
//! check share hash lists and blocks, and restore a segment's original
//! blocks, alike: `hashes` does it for both.
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
//! than it knows with
//! [`CodecError::UnsupportedVersion`](crate::error::CodecError::UnsupportedVersion) (the file was
//! written by a newer release) rather than misread it.

mod decode;
mod encode;
mod format;
mod hashes;
mod merkle;
mod regen;
mod subtrees;
#[cfg(test)]
pub(crate) mod testing;
mod verify;

pub use crate::types::{storage_index, Params};
pub use decode::{DecodedSegment, Decoder, SegmentDecoder};
pub use encode::Encoder;
pub(crate) use encode::RS_SLICE;
pub use format::{
    convergent_key, Footer, Ueb, FOOTER_LEN, MAX_SEGMENTS, MAX_SEGMENT_SIZE, MAX_UEB_LEN,
    MIN_SEGMENT_SIZE, SEGMENT_SIZE, SHARE_VERSION, UEB_VERSION,
};
pub use hashes::{BlockChecker, CheckedBlock};
pub use merkle::{merkle_root, MerkleStream};
pub use regen::{verify_cap_of, NewShare, Verifier};
pub use verify::ShareCheck;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::ReadCap;
    use crate::error::CodecError;

    /// Encode `data` into n full share byte strings.
    fn encode_all(data: &[u8], params: Params) -> (Vec<Vec<u8>>, ReadCap) {
        testing::encode_all([9; 32], data, params)
    }

    fn decode_from(shares: &[(u16, &Vec<u8>)], cap: &ReadCap) -> Result<Vec<u8>, CodecError> {
        decode_with(shares, cap, false)
    }

    fn decode_with(
        shares: &[(u16, &Vec<u8>)],
        cap: &ReadCap,
        small_tables: bool,
    ) -> Result<Vec<u8>, CodecError> {
        let mut dec = Decoder::new(cap.clone(), testing::parts(shares[0].1).1)?
            .with_small_tables(small_tables);
        for (shnum, s) in shares {
            dec.add_hashes(*shnum, testing::parts(s).2)?;
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

    /// Issue 25: with the small tables (a small memory budget), a file
    /// read from recovery shares only, or from a mix, decodes to the same
    /// bytes as with the fast engine.
    #[test]
    fn small_tables_restore_the_same_blocks() {
        let p = Params {
            k: 3,
            n: 10,
            happy: 7,
        };
        let d = data(2 * SEGMENT_SIZE as usize + 4321);
        let (shares, cap) = encode_all(&d, p);
        for pick in [[7u16, 8, 9], [0, 5, 9], [1, 2, 3]] {
            let chosen: Vec<_> = pick.iter().map(|&i| (i, &shares[i as usize])).collect();
            assert!(decode_with(&chosen, &cap, true).unwrap() == d, "{pick:?}");
        }
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

    /// Issue 18.4: offsets and sizes from a server or a capability are
    /// checked, not wrapped. A footer whose offsets add up past 2^64 to the
    /// share's size used to parse (in release builds, where overflow
    /// wraps; debug builds panicked).
    #[test]
    fn footer_offsets_that_wrap_are_refused() {
        let footer = |hashes: u64, ueb: u64, len: u32| {
            let mut f = Vec::new();
            f.extend_from_slice(&hashes.to_le_bytes());
            f.extend_from_slice(&ueb.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(b"GVS1");
            f
        };
        // (2^64 - 24) + 1000 + 24 wraps to 1000.
        let wrapping = footer(0, u64::MAX - 23, 1000);
        assert!(Footer::parse(&wrapping, 1000).is_err());
        assert!(Footer::parse(&footer(u64::MAX, u64::MAX, u32::MAX), 1000).is_err());
        // The honest layout of a 1000-byte share still parses.
        assert!(Footer::parse(&footer(100, 900, 76), 1000).is_ok());
    }

    /// Issue 18.4: an extension block (which a capability's author
    /// controls) naming 1-byte segments, or a file so large that 32 bytes
    /// of hash per segment overflow, is refused before a reader asks a
    /// server for anything it implies; so is a file whose shares would be
    /// larger than a server stores.
    #[test]
    fn hostile_extension_blocks_are_refused() {
        let d = data(1000);
        let (_, cap) = encode_all(&d, Params::default());
        let good = Ueb {
            version: UEB_VERSION,
            k: cap.k,
            n: cap.n,
            size: cap.size,
            segment_size: SEGMENT_SIZE,
            share_roots: vec![[0; 32]; cap.n as usize],
            ciphertext_hash: [0; 32],
        };
        assert!(good.validate().is_ok());
        for (what, bad) in [
            (
                "one-byte segments",
                Ueb {
                    segment_size: 1,
                    ..good.clone()
                },
            ),
            (
                "zero segment size",
                Ueb {
                    segment_size: 0,
                    ..good.clone()
                },
            ),
            (
                "2^64-byte file",
                Ueb {
                    size: u64::MAX,
                    ..good.clone()
                },
            ),
            (
                "shares over the limit",
                Ueb {
                    size: 3 * crate::types::MAX_SHARE_SIZE,
                    ..good.clone()
                },
            ),
            (
                "2^23 segments of 4 KiB",
                Ueb {
                    size: 1 << 35,
                    segment_size: 4096,
                    ..good.clone()
                },
            ),
            (
                "k above n",
                Ueb {
                    k: 11,
                    ..good.clone()
                },
            ),
        ] {
            assert!(bad.validate().is_err(), "{what} accepted");
            // And through a capability made for it (its author controls both).
            let bytes = bad.encode();
            let cap = ReadCap {
                ueb_hash: *blake3::hash(&bytes).as_bytes(),
                k: bad.k,
                n: bad.n,
                size: bad.size,
                ..cap.clone()
            };
            assert!(Decoder::new(cap, &bytes).is_err(), "{what} decoded");
            // Nothing it names overflows or panics, validated or not.
            let _ = (bad.segments(), bad.blocks_len(), bad.hashes_len());
            let _ = (bad.block_offset(u64::MAX), bad.block_len(u64::MAX));
        }
        assert!(Encoder::new(
            [0; 32],
            Params {
                k: 1,
                n: 1,
                happy: 1
            },
            65 << 30
        )
        .is_err());
        assert!(Encoder::new(
            [0; 32],
            Params {
                k: 1,
                n: 1,
                happy: 1
            },
            1 << 30
        )
        .is_ok());
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
