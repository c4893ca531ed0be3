//! Pair keys: a symmetric key that two nodes, and only they, can compute
//! from their identities, with no message exchanged.
//!
//! The key of nodes A and B is derived (BLAKE3 `derive_key`, context
//! [`PAIR_KEY_CONTEXT`]) from the X25519 product of A's secret and B's
//! public key, which equals B's secret times A's public key (the X25519
//! keys are the Montgomery forms of the ed25519 identities, see
//! [`crate::identity`]), followed by both node ids in ascending order. A
//! message authenticated with it (BLAKE3 keyed hash) comes from one of the
//! two: what storage listings use to prove that an answer is the server's
//! without a signature or a handshake (`grapevine_storage::listing`).
//!
//! What it does not give, compared with a session: no forward secrecy (the
//! key lasts as long as the identities), and no protection against key
//! compromise impersonation (whoever steals A's secret can pose as anyone
//! to A). Both are acceptable for what it authenticates: public facts,
//! asked for with a fresh nonce, whose worst misuse is a wrong count.
//!
//! The X25519 multiplication costs about as much as an ed25519 signature's
//! verification (`pair_key/derive` in benches/benches/crypto.rs), so
//! an [`Identity`] remembers the keys it derived lately, up to
//! [`PAIR_KEYS_KEPT`] (about 120 bytes each, 120 KiB at most; nothing
//! until used): a client checking files keeps its servers' keys, a server
//! its clients'.
//! A peer whose id is a weak (small-order) key gets no pair key: anyone
//! could compute it.

use crate::error::IdentityError;
pub use crate::identity::PAIR_KEYS_KEPT;
use crate::identity::{Identity, NodeId};

/// BLAKE3 `derive_key` context of pair keys.
pub const PAIR_KEY_CONTEXT: &str = "grapevine 2026-12 pair key v1";

fn lock(id: &Identity) -> std::sync::MutexGuard<'_, lru::LruCache<NodeId, [u8; 32]>> {
    // The cache holds no invariant a panic elsewhere could break.
    id.pair_keys.lock().unwrap_or_else(|e| e.into_inner())
}

impl Identity {
    /// The pair key of this node and `peer` (see the module docs),
    /// remembered once derived.
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] if `peer` is not a valid key or
    /// a weak one.
    pub fn pair_key(&self, peer: &NodeId) -> Result<[u8; 32], IdentityError> {
        if let Some(k) = lock(self).get(peer) {
            return Ok(*k);
        }
        let key = derive(self, peer)?;
        let mut keys = lock(self);
        if keys.len() >= PAIR_KEYS_KEPT {
            keys.pop_lru();
        }
        keys.put(*peer, key);
        Ok(key)
    }

    /// Whether the pair key with `peer` is remembered (so
    /// [`Identity::pair_key`] costs no public-key operation); does not
    /// count as a use.
    pub fn has_pair_key(&self, peer: &NodeId) -> bool {
        lock(self).contains(peer)
    }

    /// Pair keys remembered now (for tests and memory accounting).
    pub fn pair_keys_kept(&self) -> usize {
        lock(self).len()
    }
}

fn derive(me: &Identity, peer: &NodeId) -> Result<[u8; 32], IdentityError> {
    let theirs = peer.verifying_key()?;
    if theirs.is_weak() {
        return Err(IdentityError::InvalidPublicKey);
    }
    // X25519 of my secret and their key, computed on the Edwards form
    // (curve25519-dalek's vectorised variable-base multiplication: 37 us
    // against 52 us for x25519-dalek's ladder, `cargo bench --bench crypto`
    // in benches/); the same bytes, as a test below checks.
    let shared = theirs
        .to_edwards()
        .mul_clamped(me.x25519_secret())
        .to_montgomery()
        .to_bytes();
    if shared == [0; 32] {
        return Err(IdentityError::InvalidPublicKey);
    }
    let mine = me.node_id();
    let (low, high) = if mine <= *peer {
        (mine, *peer)
    } else {
        (*peer, mine)
    };
    let mut h = blake3::Hasher::new_derive_key(PAIR_KEY_CONTEXT);
    h.update(&shared);
    h.update(low.as_bytes());
    h.update(high.as_bytes());
    Ok(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_nodes_compute_the_same_key_and_no_third_does() {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        assert!(!a.has_pair_key(&b.node_id()));
        let ab = a.pair_key(&b.node_id()).unwrap();
        assert!(a.has_pair_key(&b.node_id()));
        assert!(!a.has_pair_key(&c.node_id()));
        assert_eq!(ab, b.pair_key(&a.node_id()).unwrap());
        assert_ne!(ab, a.pair_key(&c.node_id()).unwrap());
        assert_ne!(ab, c.pair_key(&b.node_id()).unwrap());
        assert_ne!(ab, c.pair_key(&a.node_id()).unwrap());
        // Remembered: the same key again, one entry per peer.
        assert_eq!(ab, a.pair_key(&b.node_id()).unwrap());
        assert_eq!(a.pair_keys_kept(), 2);
    }

    /// The product is X25519's: what a Noise session's static keys agree
    /// on too.
    #[test]
    fn the_shared_secret_is_x25519s() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let x25519 = x25519_dalek::StaticSecret::from(a.x25519_secret())
            .diffie_hellman(&x25519_dalek::PublicKey::from(b.x25519_public()));
        let mut h = blake3::Hasher::new_derive_key(PAIR_KEY_CONTEXT);
        h.update(x25519.as_bytes());
        let (low, high) = if a.node_id() <= b.node_id() {
            (a.node_id(), b.node_id())
        } else {
            (b.node_id(), a.node_id())
        };
        h.update(low.as_bytes());
        h.update(high.as_bytes());
        assert_eq!(a.pair_key(&b.node_id()).unwrap(), *h.finalize().as_bytes());
    }

    #[test]
    fn a_weak_or_invalid_peer_key_gets_no_pair_key() {
        let a = Identity::generate();
        // The identity point (small order): its X25519 product is zero.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert!(matches!(
            a.pair_key(&NodeId(identity_point)),
            Err(IdentityError::InvalidPublicKey)
        ));
        assert_eq!(a.pair_keys_kept(), 0, "nothing remembered for a refusal");
        // Not a point at all.
        let mut not_a_point = [0xffu8; 32];
        not_a_point[31] = 0x7f;
        let refused = (0u8..=255).any(|i| {
            not_a_point[0] = i;
            a.pair_key(&NodeId(not_a_point)).is_err()
        });
        assert!(refused, "some 32-byte strings are no ed25519 key");
    }

    #[test]
    fn the_memory_is_bounded() {
        let a = Identity::generate();
        for _ in 0..PAIR_KEYS_KEPT + 10 {
            a.pair_key(&Identity::generate().node_id()).unwrap();
        }
        assert_eq!(a.pair_keys_kept(), PAIR_KEYS_KEPT);
    }
}
