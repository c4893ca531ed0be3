//! The session ciphers: a compact ChaCha20-Poly1305 for `snow`'s handshake,
//! and the two AEADs a session's transport frames may be sealed with. A
//! cipher state is the 32-byte key alone, and `ring`'s assembly
//! implementation is bound to it per message.
//!
//! Why: `snow`'s own ring resolver keeps a prepared `ring` key per direction
//! (544 bytes each, sized for the largest AEAD ring supports), and its
//! RustCrypto cipher is about 40% slower on 64 KiB messages. Binding the key
//! per message costs a 32-byte copy for ChaCha20-Poly1305 and a key
//! schedule for AES-256-GCM (both included in the session stages of
//! `grapevine-perf bench ceiling`).
//!
//! The handshake is always `ChaChaPoly` (RFC 8439 with Noise's nonce
//! layout: 32 zero bits, then the 64-bit counter little-endian). The
//! transport is [`TransportCipher::AesGcm`] (Noise's `AESGCM`: AES-256-GCM,
//! 32 zero bits then the counter big-endian) when both ends' signed records
//! offer it ([`crate::record::FEATURE_AES_GCM`], set where the CPU has AES
//! and carry-less multiply instructions: about three times
//! ChaCha20-Poly1305's rate in `bench ceiling`'s session stages where
//! grapevine is measured, docs/performance.md), and `ChaChaPoly` otherwise
//! (on ARM boards without the crypto extensions it is expected to beat a
//! software AES; not measured here). Both use the handshake's split keys and Noise's REKEY of that
//! cipher, so either transport is exactly Noise's transport for a protocol
//! name with that cipher; the published `AESGCM` vectors check it.

use ring::aead::{self, Algorithm, LessSafeKey, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};

const TAG: usize = 16;

const CHACHA: TransportCipher = TransportCipher::ChaChaPoly;

#[derive(Default)]
struct CompactChaChaPoly {
    key: [u8; 32],
}

/// The AEAD a session's transport frames are sealed with, agreed in the
/// handshake from both ends' signed records (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportCipher {
    /// ChaCha20-Poly1305 (RFC 8439): fast in software everywhere.
    ChaChaPoly,
    /// AES-256-GCM: where both ends have AES in hardware.
    AesGcm,
}

impl TransportCipher {
    /// Noise's name for the cipher (`ChaChaPoly`, `AESGCM`).
    pub fn noise_name(self) -> &'static str {
        match self {
            TransportCipher::ChaChaPoly => "ChaChaPoly",
            TransportCipher::AesGcm => "AESGCM",
        }
    }

    fn algorithm(self) -> &'static Algorithm {
        match self {
            TransportCipher::ChaChaPoly => &CHACHA20_POLY1305,
            TransportCipher::AesGcm => &AES_256_GCM,
        }
    }

    /// Noise's nonce for counter `n`: 32 zero bits, then the 64-bit
    /// counter, little-endian for `ChaChaPoly` and big-endian for `AESGCM`.
    fn nonce(self, n: u64) -> [u8; 12] {
        let mut b = [0u8; 12];
        match self {
            TransportCipher::ChaChaPoly => b[4..].copy_from_slice(&n.to_le_bytes()),
            TransportCipher::AesGcm => b[4..].copy_from_slice(&n.to_be_bytes()),
        }
        b
    }
}

impl std::fmt::Display for TransportCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportCipher::ChaChaPoly => "ChaCha20-Poly1305",
            TransportCipher::AesGcm => "AES-256-GCM",
        })
    }
}

/// Whether this CPU runs AES-256-GCM in hardware (AES and carry-less
/// multiply instructions), where it is several times faster than
/// ChaCha20-Poly1305; without them `ring`'s constant-time software AES is
/// expected to be slower than ChaCha20-Poly1305 (not measured: no such
/// machine here).
pub(crate) fn aes_gcm_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn bound(alg: TransportCipher, key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(alg.algorithm(), key).expect("32-byte key"))
}

/// AEAD encryption of `buf` in place under `alg`, `key` and the 96-bit
/// `nonce`; returns the tag. Every encryption of this crate (handshake
/// fields through `snow`, transport frames, REKEY) is this function.
fn seal(
    alg: TransportCipher,
    key: &[u8; 32],
    nonce: [u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Option<[u8; TAG]> {
    let tag = bound(alg, key)
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            buf,
        )
        .ok()?;
    let mut t = [0u8; TAG];
    t.copy_from_slice(tag.as_ref());
    Some(t)
}

/// The inverse of [`seal`]: `buf` is ciphertext then tag; on success its
/// first bytes are the plaintext, whose length is returned.
fn open(
    alg: TransportCipher,
    key: &[u8; 32],
    nonce: [u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Option<usize> {
    bound(alg, key)
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            buf,
        )
        .ok()
        .map(|p| p.len())
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
        let tag = seal(
            CHACHA,
            &self.key,
            CHACHA.nonce(n),
            authtext,
            &mut out[..len],
        )
        .expect("in-range nonce and length");
        out[len..len + TAG].copy_from_slice(&tag);
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
            return open(CHACHA, &self.key, CHACHA.nonce(n), authtext, in_out)
                .ok_or(snow::Error::Decrypt);
        }
        // Handshake fields are decrypted into buffers of exactly their
        // plaintext size: use a small temporary.
        let mut tmp = ciphertext.to_vec();
        let len = open(CHACHA, &self.key, CHACHA.nonce(n), authtext, &mut tmp)
            .ok_or(snow::Error::Decrypt)?;
        out[..len].copy_from_slice(&tmp[..len]);
        Ok(len)
    }
}

/// One direction of an established session, driven directly (not through
/// `snow`'s transport state) so frames are sealed and opened in place: the
/// sender builds the frame in its output buffer and encrypts it there; the
/// receiver decrypts the frame in the buffer it was read into. The AEAD,
/// nonce layout and rekey are Noise's for the cipher (for `ChaChaPoly` the
/// same as [`CompactChaChaPoly`] through `snow`; tests hold both ciphers
/// equal to `snow`'s transport and to the published vectors).
#[derive(Clone)]
pub(crate) struct CipherKey {
    key: [u8; 32],
    nonce: u64,
    cipher: TransportCipher,
}

impl CipherKey {
    pub(crate) fn new(key: [u8; 32], cipher: TransportCipher) -> Self {
        CipherKey {
            key,
            nonce: 0,
            cipher,
        }
    }

    pub(crate) fn cipher(&self) -> TransportCipher {
        self.cipher
    }

    fn next_nonce(&mut self) -> Option<[u8; 12]> {
        // 2^64 - 1 is reserved by Noise for rekeying.
        if self.nonce == u64::MAX {
            return None;
        }
        let n = self.cipher.nonce(self.nonce);
        self.nonce += 1;
        Some(n)
    }

    /// Encrypt `buf` in place and return its tag.
    pub(crate) fn seal_in_place(&mut self, buf: &mut [u8]) -> Option<[u8; TAG]> {
        let n = self.next_nonce()?;
        seal(self.cipher, &self.key, n, &[], buf)
    }

    /// Decrypt `buf` (ciphertext then tag) in place; returns the plaintext
    /// length, or `None` if it does not authenticate.
    pub(crate) fn open_in_place(&mut self, buf: &mut [u8]) -> Option<usize> {
        let n = self.next_nonce()?;
        open(self.cipher, &self.key, n, &[], buf)
    }

    /// Noise's REKEY: the new key is the first 32 bytes of encrypting 32
    /// zero bytes under nonce 2^64 - 1. The nonce counter carries on.
    pub(crate) fn rekey(&mut self) {
        let mut zeros = [0u8; 32];
        let _ = seal(
            self.cipher,
            &self.key,
            self.cipher.nonce(u64::MAX),
            &[],
            &mut zeros,
        );
        self.key = zeros;
    }
}

impl std::fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CipherKey({}, nonce {})", self.cipher, self.nonce)
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

    /// RFC 8439 section 2.8.2, the published AEAD test vector: key, nonce,
    /// AAD and plaintext in, exactly the published ciphertext and tag out,
    /// through the same [`seal`] and [`open`] every frame and handshake
    /// field of a session goes through (Noise fixes the nonce's first four
    /// bytes at zero, so the vector's nonce, `07 00 00 00 ...`, is given to
    /// them whole; the Noise vectors in `noise/vectors.rs` cover the Noise
    /// nonce layout).
    #[test]
    fn rfc8439_aead_vector() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0x00, 0x00, 0x00, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct: [u8; 114] = [
            0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb, 0x7b, 0x86, 0xaf, 0xbc, 0x53, 0xef,
            0x7e, 0xc2, 0xa4, 0xad, 0xed, 0x51, 0x29, 0x6e, 0x08, 0xfe, 0xa9, 0xe2, 0xb5, 0xa7,
            0x36, 0xee, 0x62, 0xd6, 0x3d, 0xbe, 0xa4, 0x5e, 0x8c, 0xa9, 0x67, 0x12, 0x82, 0xfa,
            0xfb, 0x69, 0xda, 0x92, 0x72, 0x8b, 0x1a, 0x71, 0xde, 0x0a, 0x9e, 0x06, 0x0b, 0x29,
            0x05, 0xd6, 0xa5, 0xb6, 0x7e, 0xcd, 0x3b, 0x36, 0x92, 0xdd, 0xbd, 0x7f, 0x2d, 0x77,
            0x8b, 0x8c, 0x98, 0x03, 0xae, 0xe3, 0x28, 0x09, 0x1b, 0x58, 0xfa, 0xb3, 0x24, 0xe4,
            0xfa, 0xd6, 0x75, 0x94, 0x55, 0x85, 0x80, 0x8b, 0x48, 0x31, 0xd7, 0xbc, 0x3f, 0xf4,
            0xde, 0xf0, 0x8e, 0x4b, 0x7a, 0x9d, 0xe5, 0x76, 0xd2, 0x65, 0x86, 0xce, 0xc6, 0x4b,
            0x61, 0x16,
        ];
        let tag: [u8; TAG] = [
            0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a, 0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60,
            0x06, 0x91,
        ];
        let mut buf = pt.to_vec();
        assert_eq!(seal(CHACHA, &key, nonce, &aad, &mut buf), Some(tag));
        assert_eq!(buf, ct);
        buf.extend_from_slice(&tag);
        assert_eq!(open(CHACHA, &key, nonce, &aad, &mut buf), Some(pt.len()));
        assert_eq!(&buf[..pt.len()], pt);
        // One bit anywhere (ciphertext, tag, AAD) and it does not open.
        for i in [0, ct.len() - 1, ct.len(), ct.len() + TAG - 1] {
            let mut bad = ct.to_vec();
            bad.extend_from_slice(&tag);
            bad[i] ^= 1;
            assert_eq!(open(CHACHA, &key, nonce, &aad, &mut bad), None, "byte {i}");
        }
        let mut good = ct.to_vec();
        good.extend_from_slice(&tag);
        assert_eq!(open(CHACHA, &key, nonce, &aad[1..], &mut good), None);
    }

    /// A finished `Noise_NN` handshake with `cipher`: `a` with our
    /// resolver (for `ChaChaPoly` our cipher), `b` with snow's stock
    /// RustCrypto one.
    fn nn_handshake(cipher: TransportCipher) -> (snow::HandshakeState, snow::HandshakeState) {
        let params: snow::params::NoiseParams =
            format!("Noise_NN_25519_{}_BLAKE2s", cipher.noise_name())
                .parse()
                .unwrap();
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
    /// what snow's transport state gives, before and after a rekey, for
    /// both transport ciphers (snow's `AESGCM` is RustCrypto's, so this
    /// also holds ring's AES-256-GCM to an independent implementation).
    #[test]
    fn in_place_keys_match_snow_transport() {
        for cipher in [TransportCipher::ChaChaPoly, TransportCipher::AesGcm] {
            in_place_keys_match_snow_transport_with(cipher);
        }
    }

    fn in_place_keys_match_snow_transport_with(cipher: TransportCipher) {
        let (mut a, b) = nn_handshake(cipher);
        let mut buf = [0u8; 1024];
        let mut pl = [0u8; 1024];
        let (k1, k2) = a.dangerously_get_raw_split();
        let mut send = CipherKey::new(k1, cipher);
        let mut recv = CipherKey::new(k2, cipher);
        let mut a = a.into_transport_mode().unwrap();
        let mut b = b.into_transport_mode().unwrap();
        for round in 0..3 {
            let msg = format!("message {round}");
            let n = a.write_message(msg.as_bytes(), &mut buf).unwrap();
            let mut mine = msg.as_bytes().to_vec();
            let tag = send.seal_in_place(&mut mine).unwrap();
            mine.extend_from_slice(&tag);
            assert_eq!(&buf[..n], &mine[..], "{cipher}, round {round}");
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
        let (a, b) = nn_handshake(TransportCipher::ChaChaPoly);
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
