//! Node identities: an ed25519 key pair whose public key is the node id.
//!
//! The X25519 static key a node uses for Noise sessions is the Montgomery
//! form of the same key pair (the ed25519 secret scalar used for X25519, as
//! libsodium's `crypto_sign_ed25519_sk_to_curve25519` does). Anyone holding a
//! node id can therefore compute the node's session key, and a record whose
//! X25519 key is not the one its signer's id maps to is rejected outright.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::{CryptoRngCore, OsRng};

use crate::error::IdentityError;

/// Length in characters of [`NodeId::short`].
pub const SHORT_ID_LEN: usize = 10;

const KEY_FILE_PREFIX: &str = "grapevine-ed25519-seed-v1:";

/// A node's identity on the grid: its ed25519 public key.
///
/// Displayed as 52 characters of lowercase unpadded base32; [`NodeId::short`]
/// gives a prefix for tables.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The raw 32 public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first [`SHORT_ID_LEN`] characters of the base32 form.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_LEN);
        s
    }

    /// The ed25519 verifying key.
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] if the bytes are not a valid point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::InvalidPublicKey)
    }

    /// The X25519 public key that belongs to this node id.
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] if the bytes are not a valid point.
    pub fn x25519_public(&self) -> Result<[u8; 32], IdentityError> {
        Ok(self.verifying_key()?.to_montgomery().to_bytes())
    }

    /// Verify `signature` over `message` by this node.
    ///
    /// # Errors
    /// [`IdentityError::BadSignature`] when it does not verify.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), IdentityError> {
        let key = self.verifying_key()?;
        key.verify(message, &Signature::from_bytes(signature))
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = BASE32_NOPAD
            .decode(s.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| IdentityError::BadNodeIdText)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| IdentityError::BadNodeIdText)?;
        Ok(NodeId(arr))
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Pair keys an identity remembers ([`Identity::pair_key`]; least
/// recently used dropped first, by `pair_key` itself: the cache is
/// created unbounded so that it reserves nothing until used).
pub const PAIR_KEYS_KEPT: usize = 1024;

/// A node's secret identity: the ed25519 signing key, and the pair keys
/// derived from it lately ([`Identity::pair_key`]).
pub struct Identity {
    signing: SigningKey,
    pub(crate) pair_keys: Mutex<lru::LruCache<NodeId, [u8; 32]>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.node_id().short())
    }
}

impl Identity {
    /// A fresh identity from the operating system's RNG.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A fresh identity from the given RNG (tests pass a seeded one).
    pub fn generate_with<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The identity for a 32-byte ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            signing: SigningKey::from_bytes(&seed),
            // Grown as keys are derived, not reserved up front (a
            // thousand-node test process holds a thousand identities).
            pair_keys: Mutex::new(lru::LruCache::unbounded()),
        }
    }

    /// This node's id (its ed25519 public key).
    pub fn node_id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 private key used as the Noise static key.
    pub fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    /// The X25519 public key matching [`Identity::x25519_secret`].
    pub fn x25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_montgomery().to_bytes()
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Write the identity to `path`, readable only by its owner (mode 0600).
    ///
    /// # Errors
    /// [`IdentityError::Io`] if the file exists or cannot be written; nothing
    /// is overwritten.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let text = format!(
            "{KEY_FILE_PREFIX}{}\n",
            BASE32_NOPAD
                .encode(self.signing.as_bytes())
                .to_ascii_lowercase()
        );
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let io = |e| IdentityError::Io(path.display().to_string(), e);
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }

    /// Read an identity written by [`Identity::save`].
    ///
    /// # Errors
    /// [`IdentityError::InsecurePermissions`] if the group or others may read
    /// or write the file; [`IdentityError::BadKeyFile`] if it is malformed.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |e| IdentityError::Io(path.display().to_string(), e);
        let meta = fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::InsecurePermissions(
                    path.display().to_string(),
                    mode,
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = fs::read_to_string(path).map_err(io)?;
        let bad = || IdentityError::BadKeyFile(path.display().to_string());
        let b32 = text.trim().strip_prefix(KEY_FILE_PREFIX).ok_or_else(bad)?;
        let seed = BASE32_NOPAD
            .decode(b32.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad())?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad())?;
        Ok(Self::from_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rng;

    #[test]
    fn node_id_text_round_trip() {
        let id = Identity::generate_with(&mut rng(1)).node_id();
        let text = id.to_string();
        assert_eq!(text.len(), 52);
        assert!(text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert_eq!(id.short(), text[..SHORT_ID_LEN]);
        assert!("not base32!".parse::<NodeId>().is_err());
        assert!("aaaa".parse::<NodeId>().is_err());
    }

    #[test]
    fn x25519_key_is_montgomery_form_of_node_id() {
        let ident = Identity::generate_with(&mut rng(2));
        let secret = x25519_dalek::StaticSecret::from(ident.x25519_secret());
        let public = x25519_dalek::PublicKey::from(&secret);
        assert_eq!(public.to_bytes(), ident.x25519_public());
        assert_eq!(
            ident.node_id().x25519_public().unwrap(),
            ident.x25519_public()
        );
    }

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let ident = Identity::generate_with(&mut rng(3));
        let sig = ident.sign(b"hello");
        ident.node_id().verify(b"hello", &sig).unwrap();
        assert!(matches!(
            ident.node_id().verify(b"hellO", &sig),
            Err(IdentityError::BadSignature)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_refused_when_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let ident = Identity::generate_with(&mut rng(4));
        ident.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identity::load(&path).unwrap().node_id(), ident.node_id());
        // Never overwrites.
        assert!(ident.save(&path).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::InsecurePermissions(_, 0o644))
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::BadKeyFile(_))
        ));
        // A key file of a newer format is refused, not guessed at.
        let newer = format!("grapevine-ed25519-seed-v2:{}\n", "a".repeat(52));
        fs::write(&path, newer).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::BadKeyFile(_))
        ));
    }
}
