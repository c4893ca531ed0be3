//! The hash of a file's whole ciphertext, which the UEB records, put
//! together from its segments' hashes so that segments can be hashed on
//! any thread, in any order.
//!
//! BLAKE3 is a tree hash: the input is cut into 1 KiB chunks, and every
//! left subtree holds a power of two of them. With segments a power of two
//! long (our encoder's 1 MiB, and anything from 4 KiB to 16 MiB that is a
//! power of two), every segment but the last is a complete subtree of the
//! file's tree, and the last (shorter or not) is a right subtree: each
//! segment's *chaining value* can be computed on its own
//! ([`segment_chaining_value`], with `blake3::hazmat`), and merging them in
//! order ([`SegmentStack`]) gives exactly `blake3::hash` of the whole
//! ciphertext. A file of one segment is hashed as a whole, and one whose
//! segment size is not a power of two (no encoder of ours writes one, but a
//! UEB may say so) in order, by one hasher ([`CiphertextHash::Serial`]).
//! Tests check every shape against `blake3::hash`.

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use crate::chk::format::Ueb;

/// Whether `ueb`'s segments can be hashed on their own and merged: a
/// power-of-two segment size of at least a chunk, and more than one
/// segment (a file of one segment is its tree's root).
pub(crate) fn segments_are_subtrees(ueb: &Ueb) -> bool {
    ueb.segment_size.is_power_of_two()
        && ueb.segment_size >= blake3::CHUNK_LEN as u64
        && ueb.segments() > 1
}

/// The chaining value of segment `seg`'s ciphertext, given in order as
/// `pieces`, for a file whose segments are subtrees
/// ([`segments_are_subtrees`]) of `segment_size` bytes.
///
/// The pieces must hold between 1 and `segment_size` bytes in all (the
/// caller's segments are cut by the UEB, whose validation bounds them).
pub(crate) fn segment_chaining_value<P: AsRef<[u8]>>(
    segment_size: u64,
    seg: u64,
    pieces: &[P],
) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(seg * segment_size);
    for p in pieces {
        h.update(p.as_ref());
    }
    h.finalize_non_root()
}

/// Segments' chaining values merged as they come, in order: at most one
/// entry per level of the tree (`log2` of the segment count) is kept.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentStack {
    stack: Vec<ChainingValue>,
    pushed: u64,
}

impl SegmentStack {
    /// Add the next segment's chaining value, one that is not the last:
    /// every subtree it completes is merged (as BLAKE3's own hasher merges
    /// chunks).
    pub(crate) fn push(&mut self, cv: ChainingValue) {
        let mut cv = cv;
        self.pushed += 1;
        let mut total = self.pushed;
        while total & 1 == 0 {
            let Some(left) = self.stack.pop() else { break };
            cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
            total >>= 1;
        }
        self.stack.push(cv);
    }

    /// The whole ciphertext's hash, given the last segment's chaining
    /// value; `None` if no segment came before it (a file of one segment
    /// is hashed whole, not by subtrees).
    pub(crate) fn finish(mut self, last: ChainingValue) -> Option<[u8; 32]> {
        let mut right = last;
        while let Some(left) = self.stack.pop() {
            if self.stack.is_empty() {
                return Some(*merge_subtrees_root(&left, &right, Mode::Hash).as_bytes());
            }
            right = merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        None
    }
}

/// The hash of a file's ciphertext as its segments are decoded in order.
#[derive(Debug, Clone)]
pub(crate) enum CiphertextHash {
    /// Every byte through one hasher (one segment, or a segment size that
    /// is not a power of two).
    Serial(Box<blake3::Hasher>),
    /// Segments' chaining values, merged.
    Subtrees(SegmentStack),
}

impl CiphertextHash {
    /// For the file `ueb` describes.
    pub(crate) fn for_file(ueb: &Ueb) -> Self {
        if segments_are_subtrees(ueb) {
            CiphertextHash::Subtrees(SegmentStack::default())
        } else {
            CiphertextHash::Serial(Box::default())
        }
    }

    /// Whether a segment's chaining value is what this takes
    /// ([`CiphertextHash::add_segment`]), rather than its bytes.
    pub(crate) fn takes_subtrees(&self) -> bool {
        matches!(self, CiphertextHash::Subtrees(_))
    }

    /// Hash segment `seg`'s ciphertext, `pieces` in order (the caller
    /// gives segments in order).
    pub(crate) fn add_bytes<P: AsRef<[u8]>>(&mut self, ueb: &Ueb, seg: u64, pieces: &[P]) {
        match self {
            CiphertextHash::Serial(h) => {
                for p in pieces {
                    h.update(p.as_ref());
                }
            }
            CiphertextHash::Subtrees(_) => {
                let cv = segment_chaining_value(ueb.segment_size, seg, pieces);
                self.add_segment(ueb, seg, cv);
            }
        }
    }

    /// Add segment `seg`'s chaining value (only for
    /// [`CiphertextHash::Subtrees`]; ignored otherwise).
    pub(crate) fn add_segment(&mut self, ueb: &Ueb, seg: u64, cv: ChainingValue) {
        if let CiphertextHash::Subtrees(s) = self {
            if seg + 1 == ueb.segments() {
                // Kept for `finish`: the last segment is a right subtree.
                s.stack.push(cv);
                s.pushed += 1;
            } else {
                s.push(cv);
            }
        }
    }

    /// The whole ciphertext's hash, once every segment was added; `None`
    /// when subtrees were added that cannot make a whole (fewer than two
    /// segments), which the caller takes for a mismatch: a hash that
    /// matches nothing, rather than a value a UEB could hold.
    pub(crate) fn finish(self) -> Option<[u8; 32]> {
        match self {
            CiphertextHash::Serial(h) => Some(*h.finalize().as_bytes()),
            CiphertextHash::Subtrees(mut s) => {
                let last = s.stack.pop()?;
                s.finish(last)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn ueb(size: u64, segment_size: u64) -> Ueb {
        Ueb {
            version: crate::chk::UEB_VERSION,
            k: 3,
            n: 10,
            size,
            segment_size,
            share_roots: vec![[0; 32]; 10],
            ciphertext_hash: [0; 32],
        }
    }

    /// Segments hashed on their own, each cut in pieces of its own, and
    /// merged in order give BLAKE3's hash of the whole ciphertext, for
    /// every count of segments up to 17 (every shape of stack), a last
    /// segment full or short, and segment sizes of a chunk and more.
    #[test]
    fn merged_segments_hash_as_the_whole_ciphertext() {
        for segment_size in [1024u64, 4096] {
            for segments in 2..=17u64 {
                for last in [1, 1000, segment_size - 1, segment_size] {
                    let size = (segments - 1) * segment_size + last;
                    let d = data(size as usize);
                    let u = ueb(size, segment_size);
                    assert!(segments_are_subtrees(&u));
                    let mut h = CiphertextHash::Subtrees(SegmentStack::default());
                    for (seg, bytes) in d.chunks(segment_size as usize).enumerate() {
                        let third = bytes.len() / 3;
                        let pieces = [&bytes[..third], &bytes[third..]];
                        let cv = segment_chaining_value(segment_size, seg as u64, &pieces);
                        h.add_segment(&u, seg as u64, cv);
                    }
                    assert_eq!(
                        h.finish(),
                        Some(*blake3::hash(&d).as_bytes()),
                        "{segments} segments of {segment_size}, the last {last}"
                    );
                }
            }
        }
    }

    /// A file of one segment, or of segments whose size is not a power of
    /// two, is hashed byte by byte in order, and gives the same hash.
    #[test]
    fn other_shapes_are_hashed_in_order() {
        for (size, segment_size) in [
            (0u64, 4096u64),
            (4096, 4096),
            (100, 1 << 20),
            (25_000, 5000),
        ] {
            let u = ueb(size, segment_size);
            let mut h = CiphertextHash::for_file(&u);
            assert!(!h.takes_subtrees(), "{size} in segments of {segment_size}");
            let d = data(size as usize);
            for (seg, bytes) in d.chunks(segment_size as usize).enumerate() {
                h.add_bytes(&u, seg as u64, &[bytes]);
            }
            assert_eq!(h.finish(), Some(*blake3::hash(&d).as_bytes()));
        }
        let u = ueb(3 * 4096 + 5, 4096);
        assert!(CiphertextHash::for_file(&u).takes_subtrees());
        let d = data(u.size as usize);
        let mut h = CiphertextHash::for_file(&u);
        for (seg, bytes) in d.chunks(4096).enumerate() {
            h.add_bytes(&u, seg as u64, &[bytes]);
        }
        assert_eq!(h.finish(), Some(*blake3::hash(&d).as_bytes()));
    }

    /// A segment missing from the merge, or two swapped, gives another
    /// hash (the check after the last segment catches it).
    #[test]
    fn a_segment_missing_or_out_of_place_changes_the_hash() {
        let u = ueb(4 * 4096, 4096);
        let d = data(u.size as usize);
        let cvs: Vec<ChainingValue> = d
            .chunks(4096)
            .enumerate()
            .map(|(s, b)| segment_chaining_value(4096, s as u64, &[b]))
            .collect();
        let whole = *blake3::hash(&d).as_bytes();
        let merged = |order: &[usize]| {
            let mut h = CiphertextHash::for_file(&u);
            for (i, &s) in order.iter().enumerate() {
                h.add_segment(&u, if i + 1 == order.len() { 3 } else { i as u64 }, cvs[s]);
            }
            h.finish()
        };
        assert_eq!(merged(&[0, 1, 2, 3]), Some(whole));
        assert_ne!(merged(&[1, 0, 2, 3]), Some(whole));
        assert_ne!(merged(&[0, 1, 3]), Some(whole));
    }

    /// Subtrees that cannot make a whole (nothing added, or only the last
    /// segment) give no hash at all, which the decoder takes for a
    /// mismatch, rather than a made-up value a UEB could hold.
    #[test]
    fn too_few_subtrees_give_no_hash() {
        let u = ueb(4 * 4096, 4096);
        assert_eq!(CiphertextHash::for_file(&u).finish(), None);
        let d = data(4096);
        let mut h = CiphertextHash::for_file(&u);
        h.add_segment(&u, 3, segment_chaining_value(4096, 3, &[&d]));
        assert_eq!(h.finish(), None);
    }
}
