//! Server selection by the permuted list (as Tahoe-LAFS): for a storage
//! index, servers are ordered by `BLAKE3(storage index || node id)`. Anyone
//! holding the same records computes the same order, so shares can be found
//! again without asking a central party, and each file's shares spread over
//! a different sequence of servers.

use grapevine_crypto::NodeId;

pub use grapevine_crypto::placement::permutation_key;

/// `servers` in permuted-list order for `storage_index`.
pub fn permuted(storage_index: &[u8], servers: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
    let mut keyed: Vec<([u8; 32], NodeId)> = servers
        .into_iter()
        .map(|s| (permutation_key(storage_index, &s), s))
        .collect();
    keyed.sort_unstable();
    keyed.dedup_by(|a, b| a.1 == b.1);
    keyed.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<NodeId> {
        (0..n).map(|i| NodeId([i; 32])).collect()
    }

    #[test]
    fn order_is_independent_of_input_order_and_differs_per_index() {
        let mut rev = ids(50);
        rev.reverse();
        let a = permuted(b"si-1", ids(50));
        assert_eq!(a, permuted(b"si-1", rev));
        assert_ne!(a, permuted(b"si-2", ids(50)));
        assert_eq!(a.len(), 50);
    }

    #[test]
    fn adding_a_server_keeps_relative_order_of_others() {
        let before = permuted(b"x", ids(20));
        let mut more = ids(20);
        more.push(NodeId([200; 32]));
        let after: Vec<NodeId> = permuted(b"x", more)
            .into_iter()
            .filter(|s| s.0[0] != 200)
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn first_choices_spread_over_servers() {
        let servers = ids(10);
        let mut firsts = std::collections::HashSet::new();
        for i in 0..200u32 {
            firsts.insert(permuted(&i.to_le_bytes(), servers.clone())[0]);
        }
        assert_eq!(firsts.len(), 10);
    }
}
