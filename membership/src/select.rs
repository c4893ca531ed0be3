//! Server selection by the permuted list (as Tahoe-LAFS): for a storage
//! index, servers are ordered by a keyed hash of index and node id. Anyone
//! holding the same records computes the same order, so shares can be found
//! again without asking a central party, and each file's shares spread over
//! a different sequence of servers.
//!
//! The order is computed by one function,
//! [`grapevine_crypto::placement::permuted`], which storage's client calls
//! too; this module only re-exports it, so membership and storage cannot
//! drift apart. Its output for fixed inputs is pinned by a test there.

pub use grapevine_crypto::placement::{permutation_key, permuted, Placed};

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::NodeId;

    /// Membership's selection is the pinned order (see
    /// `grapevine_crypto::placement`).
    #[test]
    fn selection_is_the_pinned_permuted_list() {
        let ids: Vec<NodeId> = (0..10u8).map(|i| NodeId([i; 32])).collect();
        let order: Vec<u8> = permuted(&[3u8; 16], ids).iter().map(|n| n.0[0]).collect();
        assert_eq!(order, [5, 4, 0, 1, 2, 8, 6, 9, 7, 3]);
    }
}
