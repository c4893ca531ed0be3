//! The binary Merkle tree over a share's block hashes: [`merkle_root`] of
//! a list in memory, and [`MerkleStream`], the same root computed from
//! leaves pushed one at a time in `O(log n)` memory (a server checking a
//! 64 GiB share never holds its hash list).
//!
//! The tree pairs nodes left to right, level by level, and promotes an odd
//! last node unchanged; an inner node is BLAKE3 in derive-key mode
//! (`"grapevine merkle node v1"`) over its two children. Pushing leaves
//! onto a stack and merging equal levels, then folding what is left from
//! the right, gives exactly that tree (`prop_stream_matches_levels`).

/// BLAKE3 of nothing under its own context: the root of an empty tree.
fn empty_root() -> [u8; 32] {
    *blake3::hash(b"grapevine empty tree").as_bytes()
}

fn parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("grapevine merkle node v1");
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Binary Merkle root over leaf hashes (BLAKE3, domain-separated nodes; an
/// odd node is promoted).
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut s = MerkleStream::default();
    for l in leaves {
        s.push(l);
    }
    s.root()
}

/// A Merkle root computed from leaves given one at a time. Holds one hash
/// per level (at most 64).
#[derive(Debug, Clone, Default)]
pub struct MerkleStream {
    /// Complete subtrees, largest first: (level, root).
    stack: Vec<(u32, [u8; 32])>,
    leaves: u64,
}

impl MerkleStream {
    /// Add the next leaf.
    pub fn push(&mut self, leaf: &[u8; 32]) {
        let mut node = (0u32, *leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, parent(&left, &node.1));
        }
        self.stack.push(node);
        self.leaves += 1;
    }

    /// Leaves pushed so far.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> [u8; 32] {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            acc = parent(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tree as its definition says: level by level, odd node promoted.
    fn by_levels(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.is_empty() {
            return empty_root();
        }
        let mut level = leaves.to_vec();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|c| match c {
                    [a, b] => parent(a, b),
                    [a] => *a,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
        }
        level[0]
    }

    /// The root of known leaves is pinned: it is part of every share
    /// already stored (a change would make every file unreadable).
    #[test]
    fn roots_are_pinned() {
        let leaves: Vec<[u8; 32]> = (0..3u8).map(|i| [i; 32]).collect();
        let want = parent(&parent(&leaves[0], &leaves[1]), &leaves[2]);
        assert_eq!(merkle_root(&leaves), want);
        assert_eq!(merkle_root(&leaves[..1]), leaves[0]);
        assert_eq!(merkle_root(&[]), empty_root());
    }

    proptest! {
        #[test]
        fn prop_stream_matches_levels(n in 0usize..300, seed in any::<u8>()) {
            let leaves: Vec<[u8; 32]> = (0..n)
                .map(|i| *blake3::hash(&[seed, (i % 256) as u8, (i / 256) as u8]).as_bytes())
                .collect();
            prop_assert_eq!(merkle_root(&leaves), by_levels(&leaves));
        }
    }
}
