//! Cookies: stateless proof that an address receives what is sent to it,
//! as QUIC's address validation tokens (RFC 9000 section 8).
//!
//! A source address proves nothing by itself (UDP sources can be spoofed),
//! so a node answers a datagram with at most three times its bytes unless
//! the datagram echoes a cookie the node issued to its source address. A
//! cookie is 64 bits of `BLAKE3-keyed(key, address || epoch)`: the key is
//! the node's own (from its seeded RNG, never sent), the epoch counts
//! [`CookieJar::PERIOD`]s since the node started. Nothing is stored per
//! address: a cookie is checked by computing it again, for this epoch and
//! the one before (so a cookie lives one to two periods). Whoever can read
//! datagrams sent to an address can echo its cookie; that is the point: it
//! proves the address receives, nothing more.
//!
//! [`HeldCookies`] is the other side: the cookies peers issued to this
//! node, by the peer's address, echoed in every datagram sent there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::wire::Cookie;

/// Issues and checks this node's cookies.
#[derive(Debug)]
pub struct CookieJar {
    key: [u8; 32],
    origin: Instant,
}

/// What an echoed cookie says about its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Issued to this address in this period.
    Current,
    /// Issued to this address in the period before: valid, but the peer
    /// should get a fresh one.
    Previous,
    /// Not issued to this address (or too old, or none).
    Invalid,
}

impl Echo {
    /// Whether the address is proven.
    pub fn is_valid(self) -> bool {
        !matches!(self, Echo::Invalid)
    }
}

fn addr_bytes(addr: &SocketAddr, epoch: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(27);
    match addr {
        SocketAddr::V4(a) => {
            b.push(4);
            b.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            b.push(6);
            b.extend_from_slice(&a.ip().octets());
        }
    }
    b.extend_from_slice(&addr.port().to_le_bytes());
    b.extend_from_slice(&epoch.to_le_bytes());
    b
}

impl CookieJar {
    /// How long one epoch lasts; a cookie is valid for one to two.
    pub const PERIOD: Duration = Duration::from_secs(3600);

    /// A jar keyed by `key` (secret, from the node's RNG), counting
    /// epochs from `origin`.
    pub fn new(key: [u8; 32], origin: Instant) -> Self {
        CookieJar { key, origin }
    }

    fn epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / Self::PERIOD.as_secs()
    }

    fn compute(&self, addr: &SocketAddr, epoch: u64) -> Cookie {
        let h = blake3::keyed_hash(&self.key, &addr_bytes(addr, epoch));
        let mut c = [0u8; 8];
        c.copy_from_slice(&h.as_bytes()[..8]);
        c
    }

    /// The cookie for `addr` now.
    pub fn issue(&self, addr: &SocketAddr, now: Instant) -> Cookie {
        self.compute(addr, self.epoch(now))
    }

    /// Whether `cookie` (if any) was issued to `addr`, now or in the
    /// period before.
    pub fn check(&self, addr: &SocketAddr, cookie: Option<&Cookie>, now: Instant) -> Echo {
        let Some(c) = cookie else {
            return Echo::Invalid;
        };
        let e = self.epoch(now);
        if self.compute(addr, e) == *c {
            Echo::Current
        } else if e > 0 && self.compute(addr, e - 1) == *c {
            Echo::Previous
        } else {
            Echo::Invalid
        }
    }
}

/// Cookies peers issued to this node, by the peer's address. The caller
/// keeps only those of members and seeds; the table is bounded all the
/// same ([`HeldCookies::MAX`]).
#[derive(Debug, Default)]
pub struct HeldCookies {
    map: HashMap<SocketAddr, Cookie>,
}

impl HeldCookies {
    /// Most cookies held at once; when full, an arbitrary half is dropped
    /// (their peers issue them again on the next contact).
    pub const MAX: usize = 32_768;

    /// Hold `cookie` from `addr`.
    pub fn insert(&mut self, addr: SocketAddr, cookie: Cookie) {
        if self.map.len() >= Self::MAX && !self.map.contains_key(&addr) {
            let mut drop = self.map.len() / 2;
            self.map.retain(|_, _| {
                if drop > 0 {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.map.insert(addr, cookie);
    }

    /// The cookie `addr` issued to this node.
    pub fn get(&self, addr: &SocketAddr) -> Option<Cookie> {
        self.map.get(addr).copied()
    }

    /// Forget the cookie of `addr`.
    pub fn remove(&mut self, addr: &SocketAddr) {
        self.map.remove(addr);
    }

    /// Cookies held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_cookie_proves_only_the_address_it_was_issued_to_for_two_periods() {
        let t0 = crate::testing::epoch();
        let jar = CookieJar::new([7; 32], t0);
        let c = jar.issue(&a("10.0.0.1:7946"), t0);
        assert_eq!(jar.check(&a("10.0.0.1:7946"), Some(&c), t0), Echo::Current);
        for other in ["10.0.0.1:7947", "10.0.0.2:7946", "[::ffff:10.0.0.1]:7946"] {
            assert_eq!(jar.check(&a(other), Some(&c), t0), Echo::Invalid, "{other}");
        }
        assert_eq!(jar.check(&a("10.0.0.1:7946"), None, t0), Echo::Invalid);
        // Another node's key gives other cookies.
        let theirs = CookieJar::new([8; 32], t0);
        assert_ne!(theirs.issue(&a("10.0.0.1:7946"), t0), c);
        // One period later it is still good (a fresh one is due); two
        // periods later it is not.
        let p = CookieJar::PERIOD;
        assert_eq!(
            jar.check(&a("10.0.0.1:7946"), Some(&c), t0 + p),
            Echo::Previous
        );
        assert_eq!(
            jar.check(&a("10.0.0.1:7946"), Some(&c), t0 + 2 * p),
            Echo::Invalid
        );
        assert_ne!(jar.issue(&a("10.0.0.1:7946"), t0 + p), c);
    }

    #[test]
    fn held_cookies_are_bounded() {
        let mut h = HeldCookies::default();
        for i in 0..(HeldCookies::MAX as u32 + 10) {
            let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
            h.insert(addr, [1; 8]);
            assert!(h.len() <= HeldCookies::MAX);
        }
        h.insert(a("10.9.9.9:9"), [2; 8]);
        assert_eq!(h.get(&a("10.9.9.9:9")), Some([2; 8]));
        h.remove(&a("10.9.9.9:9"));
        assert_eq!(h.get(&a("10.9.9.9:9")), None);
    }
}
