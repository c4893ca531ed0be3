//! The permuted-list key: where a storage index's shares go.
//!
//! Servers are ordered by `BLAKE3-derive-key("grapevine permuted list v1",
//! len(si) || si || node id)`. It lives here, beside node ids, so that
//! membership (which selects servers) and storage (which places and finds
//! shares) compute exactly the same order without depending on each other.

use crate::identity::NodeId;

/// The permutation key of `server` for `storage_index`.
pub fn permutation_key(storage_index: &[u8], server: &NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("grapevine permuted list v1");
    h.update(&(storage_index.len() as u32).to_le_bytes());
    h.update(storage_index);
    h.update(server.as_bytes());
    *h.finalize().as_bytes()
}
