//! A compact ChaCha20-Poly1305 for `snow`: the cipher state is the 32-byte
//! key alone, and `ring`'s assembly implementation is bound to it per
//! message.
//!
//! Why: `snow`'s own ring resolver keeps a prepared `ring` key per direction
//! (about 500 bytes each, sized for the largest AEAD ring supports), and its
//! RustCrypto cipher is about 40% slower on 64 KiB messages. Binding the key
//! per message costs a 32-byte copy; the AEAD itself is the same
//! `ChaCha20-Poly1305` (RFC 8439) with Noise's nonce layout (32 zero bits,
//! then the 64-bit counter little-endian).

use ring::aead::{self, LessSafeKey, UnboundKey, CHACHA20_POLY1305};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};

const TAG: usize = 16;

#[derive(Default)]
struct CompactChaChaPoly {
    key: [u8; 32],
}

impl CompactChaChaPoly {
    fn bound(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.key).expect("32-byte key"))
    }
}

fn nonce(n: u64) -> aead::Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    aead::Nonce::assume_unique_for_key(b)
}

impl Cipher for CompactChaChaPoly {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }

    fn set(&mut self, key: &[u8; 32]) {
        self.key = *key;
    }

    fn encrypt(&self, n: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .bound()
            .seal_in_place_separate_tag(nonce(n), aead::Aad::from(authtext), &mut out[..len])
            .expect("in-range nonce and length");
        out[len..len + TAG].copy_from_slice(tag.as_ref());
        len + TAG
    }

    fn decrypt(
        &self,
        n: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        if ciphertext.len() < TAG || out.len() < ciphertext.len() - TAG {
            return Err(snow::Error::Decrypt);
        }
        if out.len() >= ciphertext.len() {
            // Fast path (transport frames): decrypt in the caller's buffer.
            let in_out = &mut out[..ciphertext.len()];
            in_out.copy_from_slice(ciphertext);
            let plain = self
                .bound()
                .open_in_place(nonce(n), aead::Aad::from(authtext), in_out)
                .map_err(|_| snow::Error::Decrypt)?;
            return Ok(plain.len());
        }
        // Handshake fields are decrypted into buffers of exactly their
        // plaintext size: use a small temporary.
        let mut tmp = ciphertext.to_vec();
        let plain = self
            .bound()
            .open_in_place(nonce(n), aead::Aad::from(authtext), &mut tmp)
            .map_err(|_| snow::Error::Decrypt)?;
        out[..plain.len()].copy_from_slice(plain);
        Ok(plain.len())
    }
}

/// One direction of an established session, driven directly (not through
/// `snow`'s transport state) so frames are sealed and opened in place: the
/// sender builds the frame in its output buffer and encrypts it there; the
/// receiver decrypts the frame in the buffer it was read into. The AEAD,
/// nonce layout and rekey are Noise's (the same as [`CompactChaChaPoly`]
/// through `snow`; a test holds them equal).
#[derive(Clone)]
pub(crate) struct CipherKey {
    key: [u8; 32],
    nonce: u64,
}

impl CipherKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        CipherKey { key, nonce: 0 }
    }

    fn bound(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.key).expect("32-byte key"))
    }

    fn next_nonce(&mut self) -> Option<aead::Nonce> {
        // 2^64 - 1 is reserved by Noise for rekeying.
        if self.nonce == u64::MAX {
            return None;
        }
        let n = nonce(self.nonce);
        self.nonce += 1;
        Some(n)
    }

    /// Encrypt `buf` in place and return its tag.
    pub(crate) fn seal_in_place(&mut self, buf: &mut [u8]) -> Option<[u8; TAG]> {
        let n = self.next_nonce()?;
        let tag = self
            .bound()
            .seal_in_place_separate_tag(n, aead::Aad::empty(), buf)
            .ok()?;
        let mut t = [0u8; TAG];
        t.copy_from_slice(tag.as_ref());
        Some(t)
    }

    /// Decrypt `buf` (ciphertext then tag) in place; returns the plaintext
    /// length, or `None` if it does not authenticate.
    pub(crate) fn open_in_place(&mut self, buf: &mut [u8]) -> Option<usize> {
        let n = self.next_nonce()?;
        self.bound()
            .open_in_place(n, aead::Aad::empty(), buf)
            .ok()
            .map(|p| p.len())
    }

    /// Noise's REKEY: the new key is the first 32 bytes of encrypting 32
    /// zero bytes under nonce 2^64 - 1. The nonce counter carries on.
    pub(crate) fn rekey(&mut self) {
        let mut zeros = [0u8; 32];
        let _ = self.bound().seal_in_place_separate_tag(
            nonce(u64::MAX),
            aead::Aad::empty(),
            &mut zeros,
        );
        self.key = zeros;
    }
}

impl std::fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CipherKey(nonce {})", self.nonce)
    }
}

struct CompactResolver;

impl CryptoResolver for CompactResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }
    fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::ChaChaPoly => Some(Box::new(CompactChaChaPoly::default())),
            _ => None,
        }
    }
}

/// The resolver grapevine builds sessions with: the compact cipher above,
/// `snow`'s defaults (curve25519-dalek, BLAKE2s) for everything else.
pub(crate) fn resolver() -> Box<dyn CryptoResolver + Send> {
    Box::new(FallbackResolver::new(
        Box::new(CompactResolver),
        Box::new(DefaultResolver),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 section 2.8.2 test vector, through the snow `Cipher` trait
    /// with Noise's nonce layout (constant 0x07000000 || IV as the 64-bit LE
    /// counter 0x4746454443424140).
    #[test]
    fn rfc8439_aead_vector() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let mut c = CompactChaChaPoly::default();
        c.set(&key);
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        // RFC nonce is 07 00 00 00 40 41 42 43 44 45 46 47; Noise fixes the
        // first four bytes to zero, so check round-trip plus the tag against
        // a direct ring computation with the same layout.
        let n = 0x4746454443424140u64;
        let mut out = vec![0u8; pt.len() + TAG];
        let len = c.encrypt(n, &aad, pt, &mut out);
        assert_eq!(len, pt.len() + TAG);
        let direct = {
            let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap());
            let mut b = pt.to_vec();
            k.seal_in_place_append_tag(nonce(n), aead::Aad::from(&aad), &mut b)
                .unwrap();
            b
        };
        assert_eq!(out, direct);
        let mut back = vec![0u8; out.len()];
        let n2 = c.decrypt(n, &aad, &out, &mut back).unwrap();
        assert_eq!(&back[..n2], pt);
        out[0] ^= 1;
        assert!(c.decrypt(n, &aad, &out, &mut back).is_err());
        assert!(c.decrypt(n, &aad, &out[..10], &mut back).is_err());
    }

    /// A finished `Noise_NN` handshake: `a` with our cipher, `b` with snow's
    /// stock RustCrypto one.
    fn nn_handshake() -> (snow::HandshakeState, snow::HandshakeState) {
        let params: snow::params::NoiseParams =
            "Noise_NN_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
        let mut a = snow::Builder::with_resolver(params.clone(), resolver())
            .build_initiator()
            .unwrap();
        let mut b = snow::Builder::new(params).build_responder().unwrap();
        let mut buf = [0u8; 1024];
        let mut pl = [0u8; 1024];
        let n = a.write_message(b"", &mut buf).unwrap();
        b.read_message(&buf[..n], &mut pl).unwrap();
        let n = b.write_message(b"", &mut buf).unwrap();
        a.read_message(&buf[..n], &mut pl).unwrap();
        (a, b)
    }

    /// Sealing and opening in place with the raw split keys gives exactly
    /// what snow's transport state gives, before and after a rekey.
    #[test]
    fn in_place_keys_match_snow_transport() {
        let (mut a, b) = nn_handshake();
        let mut buf = [0u8; 1024];
        let mut pl = [0u8; 1024];
        let (k1, k2) = a.dangerously_get_raw_split();
        let mut send = CipherKey::new(k1);
        let mut recv = CipherKey::new(k2);
        let mut a = a.into_transport_mode().unwrap();
        let mut b = b.into_transport_mode().unwrap();
        for round in 0..3 {
            let msg = format!("message {round}");
            let n = a.write_message(msg.as_bytes(), &mut buf).unwrap();
            let mut mine = msg.as_bytes().to_vec();
            let tag = send.seal_in_place(&mut mine).unwrap();
            mine.extend_from_slice(&tag);
            assert_eq!(&buf[..n], &mine[..], "round {round}");
            let n = b.write_message(b"reply", &mut buf).unwrap();
            let mut wire = buf[..n].to_vec();
            let len = recv.open_in_place(&mut wire).unwrap();
            assert_eq!(&wire[..len], b"reply");
            a.read_message(&buf[..n], &mut pl).unwrap();
            a.rekey_outgoing();
            send.rekey();
            b.rekey_outgoing();
            a.rekey_incoming();
            recv.rekey();
        }
        let mut bad = vec![0u8; 40];
        assert!(recv.open_in_place(&mut bad).is_none());
    }

    /// Known-answer: the same Noise handshake built with snow's stock
    /// RustCrypto cipher and with ours interoperates.
    #[test]
    fn interoperates_with_snow_default_cipher() {
        let (a, b) = nn_handshake();
        let mut buf = [0u8; 1024];
        let mut pl = [0u8; 1024];
        let mut a = a.into_transport_mode().unwrap();
        let mut b = b.into_transport_mode().unwrap();
        let n = a
            .write_message(b"across implementations", &mut buf)
            .unwrap();
        let m = b.read_message(&buf[..n], &mut pl).unwrap();
        assert_eq!(&pl[..m], b"across implementations");
        let n = b.write_message(b"and back", &mut buf).unwrap();
        let m = a.read_message(&buf[..n], &mut pl).unwrap();
        assert_eq!(&pl[..m], b"and back");
        a.rekey_outgoing();
        b.rekey_incoming();
        let n = a.write_message(b"rekeyed", &mut buf).unwrap();
        let m = b.read_message(&buf[..n], &mut pl).unwrap();
        assert_eq!(&pl[..m], b"rekeyed");
    }
}
