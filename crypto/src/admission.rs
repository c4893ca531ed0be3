//! Closed grids: a grid key signs admission certificates for nodes.
//!
//! A grid operator creates a grid key (an ed25519 key, kept offline or on
//! one admin machine) and hands each node a certificate: the grid key's
//! signature over `DOMAIN || grid public key || node id || expiry`. The node
//! carries its certificate in its [`LocationRecord`](crate::LocationRecord)
//! ([`LocationRecord::admission`](crate::LocationRecord)), so it travels with the
//! record through gossip and handshakes and anyone configured with the grid's
//! public key ([`GridId`]) can check it. A node of a closed grid ignores
//! records without a valid certificate and refuses sessions from their
//! owners ([`SessionConfig::grid`](crate::SessionConfig)).
//!
//! A certificate binds one node id: it cannot be moved to another key. It
//! can carry an expiry (seconds since the Unix epoch; 0 for none), which is
//! how admission is withdrawn short of changing the grid key.

use std::fmt;
use std::str::FromStr;

pub use crate::error::AdmissionError;
use crate::error::IdentityError;
use crate::identity::{Identity, NodeId};

const DOMAIN: &[u8] = b"grapevine/admission\0";
const CERT_PREFIX: &str = "gv:adm:";

/// The public half of a grid key: what every node of a closed grid is
/// configured with. Written like a node id (52 base32 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GridId(pub NodeId);

impl fmt::Display for GridId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for GridId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GridId({})", self.0.short())
    }
}

impl FromStr for GridId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(GridId(s.parse()?))
    }
}

impl GridId {
    /// The grid id of a grid key.
    pub fn of(grid_key: &Identity) -> Self {
        GridId(grid_key.node_id())
    }
}

/// An admission certificate: the grid key's signature over a node id and an
/// expiry.
#[derive(Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Admission {
    /// Expiry in seconds since the Unix epoch; 0 means none.
    pub expires: u64,
    /// The grid key's signature.
    pub signature: [u8; 64],
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Admission(expires {})", self.expires)
    }
}

fn message(grid: &GridId, node: &NodeId, expires: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 72);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&grid.0 .0);
    m.extend_from_slice(&node.0);
    m.extend_from_slice(&expires.to_le_bytes());
    m
}

impl Admission {
    /// Admit `node` to the grid of `grid_key`, until `expires` (Unix
    /// seconds; 0 for no expiry).
    pub fn issue(grid_key: &Identity, node: &NodeId, expires: u64) -> Self {
        let grid = GridId::of(grid_key);
        Admission {
            expires,
            signature: grid_key.sign(&message(&grid, node, expires)),
        }
    }

    /// Check that this certificate admits `node` to `grid` at `now_unix`.
    ///
    /// # Errors
    /// [`AdmissionError::BadSignature`] or [`AdmissionError::Expired`].
    pub fn verify(
        &self,
        grid: &GridId,
        node: &NodeId,
        now_unix: u64,
    ) -> Result<(), AdmissionError> {
        grid.0
            .verify(&message(grid, node, self.expires), &self.signature)
            .map_err(|_| AdmissionError::BadSignature(grid.0.short()))?;
        if self.expires != 0 && now_unix >= self.expires {
            return Err(AdmissionError::Expired {
                expired: self.expires,
                now: now_unix,
            });
        }
        Ok(())
    }
}

/// How far clocks may disagree, in seconds: a certificate counts as
/// expired only this long after its expiry, wherever it is checked (by the
/// node it admits at start, by members receiving its record, by both ends
/// of a session), so nodes whose clocks differ by less agree on it.
/// Membership holds back records issued further ahead of the grid's time
/// than the same allowance.
pub const CLOCK_ALLOWANCE_SECS: u64 = 3600;

/// Check `admission` (a record's certificate, if any) for `node` against
/// `grid` now (less [`CLOCK_ALLOWANCE_SECS`]).
///
/// # Errors
/// [`AdmissionError::Missing`] or the certificate's own errors.
pub fn check(
    grid: &GridId,
    node: &NodeId,
    admission: Option<&Admission>,
) -> Result<(), AdmissionError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .saturating_sub(CLOCK_ALLOWANCE_SECS);
    admission
        .ok_or(AdmissionError::Missing)?
        .verify(grid, node, now)
}

impl fmt::Display for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = Vec::with_capacity(72);
        b.extend_from_slice(&self.expires.to_le_bytes());
        b.extend_from_slice(&self.signature);
        write!(
            f,
            "{CERT_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&b).to_lowercase()
        )
    }
}

impl FromStr for Admission {
    type Err = AdmissionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s
            .trim()
            .strip_prefix(CERT_PREFIX)
            .ok_or(AdmissionError::Malformed("no gv:adm: prefix"))?;
        let b = data_encoding::BASE32_NOPAD
            .decode(body.to_uppercase().as_bytes())
            .map_err(|_| AdmissionError::Malformed("not base32"))?;
        if b.len() != 72 {
            return Err(AdmissionError::Malformed("wrong length"));
        }
        Ok(Admission {
            expires: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            signature: b[8..].try_into().expect("64 bytes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rng;

    #[test]
    fn admits_its_node_and_no_other() {
        let grid_key = Identity::generate_with(&mut rng(1));
        let grid = GridId::of(&grid_key);
        let node = Identity::generate_with(&mut rng(2)).node_id();
        let other = Identity::generate_with(&mut rng(3)).node_id();
        let cert = Admission::issue(&grid_key, &node, 0);
        assert_eq!(cert.verify(&grid, &node, 1_900_000_000), Ok(()));
        assert!(matches!(
            cert.verify(&grid, &other, 1),
            Err(AdmissionError::BadSignature(_))
        ));
        // Another grid's key does not vouch for this grid.
        let stranger = Identity::generate_with(&mut rng(4));
        let foreign = Admission::issue(&stranger, &node, 0);
        assert!(foreign.verify(&grid, &node, 1).is_err());
        // Tampering with the expiry breaks the signature.
        let mut t = Admission::issue(&grid_key, &node, 100);
        t.expires = 0;
        assert!(t.verify(&grid, &node, 1).is_err());
        assert_eq!(check(&grid, &node, None), Err(AdmissionError::Missing));
    }

    #[test]
    fn expires() {
        let grid_key = Identity::generate_with(&mut rng(1));
        let grid = GridId::of(&grid_key);
        let node = Identity::generate_with(&mut rng(2)).node_id();
        let cert = Admission::issue(&grid_key, &node, 1000);
        assert_eq!(cert.verify(&grid, &node, 999), Ok(()));
        assert_eq!(
            cert.verify(&grid, &node, 1000),
            Err(AdmissionError::Expired {
                expired: 1000,
                now: 1000
            })
        );
        assert!(check(&grid, &node, Some(&cert)).is_err(), "1970 is past");
    }

    #[test]
    fn text_form_round_trips_and_rejects_junk() {
        let grid_key = Identity::generate_with(&mut rng(1));
        let node = Identity::generate_with(&mut rng(2)).node_id();
        let cert = Admission::issue(&grid_key, &node, 77);
        let text = cert.to_string();
        assert!(text.starts_with("gv:adm:"));
        assert_eq!(text.parse::<Admission>().unwrap(), cert);
        for junk in [
            "",
            "gv:adm:",
            "gv:adm:!!!",
            "gv:chk:aaaa",
            &text[..text.len() - 2],
        ] {
            assert!(junk.parse::<Admission>().is_err(), "{junk:?}");
        }
        let grid: GridId = GridId::of(&grid_key).to_string().parse().unwrap();
        assert_eq!(grid, GridId::of(&grid_key));
    }
}
