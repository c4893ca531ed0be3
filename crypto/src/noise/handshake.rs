//! The two sides of the `Noise_IK` handshake, each proving a node id with
//! its signed location record, and ending in a [`Transport`].

use snow::HandshakeState;

use crate::admission::{self, GridId};
use crate::cipher::{self, TransportCipher};
use crate::error::SessionError;
use crate::identity::{Identity, NodeId};
use crate::noise::config::{SessionConfig, MAX_HANDSHAKE_LEN, NOISE_PARAMS, PROLOGUE};
use crate::noise::transport::Transport;
use crate::record::{SignedRecord, UnverifiedRecord, FEATURE_AES_GCM};

fn hs_err(_: snow::Error) -> SessionError {
    SessionError::HandshakeFailed
}

/// A handshake builder for `NOISE_PARAMS` with the compact cipher, the
/// local static key and `prologue`: the one configuration both sides (and
/// the known-answer tests, with the vectors' prologue) start from.
pub(crate) fn builder<'a>(
    local_secret: &'a [u8; 32],
    prologue: &'a [u8],
) -> Result<snow::Builder<'a>, SessionError> {
    let params = NOISE_PARAMS.parse().map_err(hs_err)?;
    snow::Builder::with_resolver(params, cipher::resolver())
        .local_private_key(local_secret)
        .map_err(hs_err)?
        .prologue(prologue)
        .map_err(hs_err)
}

/// The transport of a finished handshake, sealed with `cipher`.
pub(crate) fn into_transport(
    mut hs: HandshakeState,
    initiator: bool,
    rekey_after: u64,
    cipher: TransportCipher,
) -> Result<Transport, SessionError> {
    if !hs.is_handshake_finished() {
        return Err(SessionError::HandshakeFailed);
    }
    let (k1, k2) = hs.dangerously_get_raw_split();
    Ok(Transport::from_split(
        k1,
        k2,
        initiator,
        rekey_after,
        cipher,
    ))
}

/// The transport cipher of a session between the nodes of two records:
/// AES-256-GCM if both offer it, ChaCha20-Poly1305 otherwise. Both ends
/// decide from the same two records (the ones the handshake carried, each
/// signed by its node and bound into the handshake's transcript), so they
/// agree, and no one between them can change the choice.
pub fn agreed_cipher(a: &SignedRecord, b: &SignedRecord) -> TransportCipher {
    if a.record().roles & b.record().roles & FEATURE_AES_GCM != 0 {
        TransportCipher::AesGcm
    } else {
        TransportCipher::ChaChaPoly
    }
}

/// Prefix `body` with its 2-byte length into a fresh buffer.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The initiator's half-done handshake, waiting for the responder's reply.
#[derive(Debug)]
pub struct InitiatorHandshake {
    hs: HandshakeState,
    /// The record this side sent: with the responder's, it decides the
    /// transport cipher.
    local_record: SignedRecord,
    expected: NodeId,
    rekey_after: u64,
    grid: Option<GridId>,
}

impl InitiatorHandshake {
    /// Start a handshake to `remote` (its node id; the static key is derived
    /// from it). Returns the state and the framed first message to send.
    ///
    /// # Errors
    /// [`SessionError::HandshakeFailed`] if `remote` is not a valid key.
    pub fn start(
        local: &Identity,
        local_record: &SignedRecord,
        remote: NodeId,
        cfg: &SessionConfig,
    ) -> Result<(Self, Vec<u8>), SessionError> {
        let remote_static = remote
            .x25519_public()
            .map_err(|_| SessionError::HandshakeFailed)?;
        let secret = local.x25519_secret();
        let mut hs = builder(&secret, PROLOGUE)?
            .remote_public_key(&remote_static)
            .map_err(hs_err)?
            .build_initiator()
            .map_err(hs_err)?;
        let mut buf = vec![0u8; MAX_HANDSHAKE_LEN];
        let n = hs
            .write_message(local_record.bytes(), &mut buf)
            .map_err(hs_err)?;
        Ok((
            InitiatorHandshake {
                hs,
                local_record: local_record.clone(),
                expected: remote,
                rekey_after: cfg.rekey_after,
                grid: cfg.grid,
            },
            framed(&buf[..n]),
        ))
    }

    /// Read the responder's reply (without its length prefix) and finish.
    ///
    /// # Errors
    /// [`SessionError::HandshakeFailed`] if it does not decrypt,
    /// [`SessionError::PeerRecord`] if the responder's record is invalid,
    /// [`SessionError::UnexpectedPeer`] if it is some other node.
    pub fn finish(mut self, reply: &[u8]) -> Result<(Transport, SignedRecord), SessionError> {
        if reply.len() > MAX_HANDSHAKE_LEN {
            return Err(SessionError::HandshakeFailed);
        }
        let mut buf = vec![0u8; MAX_HANDSHAKE_LEN];
        let n = self.hs.read_message(reply, &mut buf).map_err(hs_err)?;
        let record = UnverifiedRecord::parse(&buf[..n])?.verify()?;
        if record.node_id() != self.expected {
            return Err(SessionError::UnexpectedPeer {
                expected: self.expected.to_string(),
                got: record.node_id().to_string(),
            });
        }
        if self.hs.get_remote_static() != Some(&record.record().x25519[..]) {
            return Err(SessionError::KeyMismatch);
        }
        admitted(self.grid.as_ref(), &record)?;
        let cipher = agreed_cipher(&self.local_record, &record);
        Ok((
            into_transport(self.hs, true, self.rekey_after, cipher)?,
            record,
        ))
    }
}

/// In a closed grid, the peer's record must carry a valid admission.
fn admitted(grid: Option<&GridId>, peer: &SignedRecord) -> Result<(), SessionError> {
    match grid {
        None => Ok(()),
        Some(g) => admission::check(g, &peer.node_id(), peer.record().admission.as_deref())
            .map_err(|e| SessionError::NotAdmitted(peer.node_id().short(), e)),
    }
}

/// The responder side: one call reads the first message and writes the reply.
#[derive(Debug)]
pub struct ResponderHandshake;

impl ResponderHandshake {
    /// Read the initiator's first message (without length prefix), verify the
    /// identity it proves, and produce the transport, the peer's record and
    /// the framed reply to send.
    ///
    /// # Errors
    /// [`SessionError::HandshakeFailed`] if the message does not decrypt
    /// (wrong responder key, another prologue, tampered, truncated),
    /// [`SessionError::PeerRecord`] if the initiator's record is invalid,
    /// [`SessionError::KeyMismatch`] if it is not the key the initiator used.
    pub fn respond(
        local: &Identity,
        local_record: &SignedRecord,
        first: &[u8],
        cfg: &SessionConfig,
    ) -> Result<(Transport, SignedRecord, Vec<u8>), SessionError> {
        let secret = local.x25519_secret();
        let mut hs = builder(&secret, PROLOGUE)?
            .build_responder()
            .map_err(hs_err)?;
        if first.len() > MAX_HANDSHAKE_LEN {
            return Err(SessionError::HandshakeFailed);
        }
        let mut buf = vec![0u8; MAX_HANDSHAKE_LEN];
        let n = hs.read_message(first, &mut buf).map_err(hs_err)?;
        let peer = UnverifiedRecord::parse(&buf[..n])?.verify()?;
        if hs.get_remote_static() != Some(&peer.record().x25519[..]) {
            return Err(SessionError::KeyMismatch);
        }
        // In a closed grid, an unadmitted initiator gets no reply at all.
        admitted(cfg.grid.as_ref(), &peer)?;
        let n = hs
            .write_message(local_record.bytes(), &mut buf)
            .map_err(hs_err)?;
        let reply = framed(&buf[..n]);
        let cipher = agreed_cipher(local_record, &peer);
        Ok((
            into_transport(hs, false, cfg.rekey_after, cipher)?,
            peer,
            reply,
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{record_for, rng};

    /// Two ends of a finished handshake: (initiator, responder).
    pub(crate) fn pair(cfg: &SessionConfig) -> (Transport, Transport) {
        let ia = Identity::generate_with(&mut rng(1));
        let ib = Identity::generate_with(&mut rng(2));
        let ra = record_for(&ia, "127.0.0.1:1").sign(&ia).unwrap();
        let rb = record_for(&ib, "127.0.0.1:2").sign(&ib).unwrap();
        let (init, m1) = InitiatorHandshake::start(&ia, &ra, ib.node_id(), cfg).unwrap();
        let (b, peer_a, m2) = ResponderHandshake::respond(&ib, &rb, &m1[2..], cfg).unwrap();
        assert_eq!(peer_a.node_id(), ia.node_id());
        let (a, peer_b) = init.finish(&m2[2..]).unwrap();
        assert_eq!(peer_b.node_id(), ib.node_id());
        (a, b)
    }

    /// Both ends agree on the transport cipher from the two records the
    /// handshake carried: AES-256-GCM only when both offer it. A record
    /// that offers it is what its node signed: the initiator's own record
    /// decides as much as the responder's, and another record of the same
    /// node (say, gossip's older one) plays no part.
    #[test]
    fn the_transport_cipher_is_aes_gcm_only_when_both_records_offer_it() {
        use crate::record::{FEATURE_AES_GCM as AES, ROLE_STORAGE};
        let cfg = SessionConfig::default();
        let ia = Identity::generate_with(&mut rng(1));
        let ib = Identity::generate_with(&mut rng(2));
        let rec = |id: &Identity, addr: &str, features: u8| {
            let mut r = record_for(id, addr);
            r.roles = ROLE_STORAGE | features;
            r.sign(id).unwrap()
        };
        for (fa, fb, want) in [
            (AES, AES, TransportCipher::AesGcm),
            (AES, 0, TransportCipher::ChaChaPoly),
            (0, AES, TransportCipher::ChaChaPoly),
            (0, 0, TransportCipher::ChaChaPoly),
        ] {
            let (ra, rb) = (rec(&ia, "127.0.0.1:1", fa), rec(&ib, "127.0.0.1:2", fb));
            assert_eq!(agreed_cipher(&ra, &rb), want);
            assert_eq!(agreed_cipher(&rb, &ra), want);
            let (init, m1) = InitiatorHandshake::start(&ia, &ra, ib.node_id(), &cfg).unwrap();
            let (mut b, _, m2) = ResponderHandshake::respond(&ib, &rb, &m1[2..], &cfg).unwrap();
            let (mut a, _) = init.finish(&m2[2..]).unwrap();
            assert_eq!((a.cipher(), b.cipher()), (want, want));
            // And they talk: a frame sealed by one opens at the other.
            let mut wire = Vec::new();
            a.seal_message(b"agreed", 100, &mut wire).unwrap();
            let mut frame = wire[2..].to_vec();
            assert!(b.open_in_place(&mut frame).unwrap());
            assert_eq!(frame, b"agreed");
        }
        // Frames sealed under one cipher do not open under the other, so a
        // disagreement could not go unnoticed.
        let (k1, k2) = ([3u8; 32], [4u8; 32]);
        let mut aes = Transport::from_split(k1, k2, true, 100, TransportCipher::AesGcm);
        let mut chacha = Transport::from_split(k1, k2, false, 100, TransportCipher::ChaChaPoly);
        let mut wire = Vec::new();
        aes.seal_message(b"x", 100, &mut wire).unwrap();
        let mut frame = wire[2..].to_vec();
        assert!(chacha.open_in_place(&mut frame).is_err());
    }

    #[test]
    fn handshake_to_wrong_key_fails_at_responder() {
        let cfg = SessionConfig::default();
        let ia = Identity::generate_with(&mut rng(1));
        let ib = Identity::generate_with(&mut rng(2));
        let ic = Identity::generate_with(&mut rng(3));
        let ra = record_for(&ia, "127.0.0.1:1").sign(&ia).unwrap();
        let rb = record_for(&ib, "127.0.0.1:2").sign(&ib).unwrap();
        // A dials C's key but B answers.
        let (_init, m1) = InitiatorHandshake::start(&ia, &ra, ic.node_id(), &cfg).unwrap();
        assert!(matches!(
            ResponderHandshake::respond(&ib, &rb, &m1[2..], &cfg),
            Err(SessionError::HandshakeFailed)
        ));
    }

    /// The compatibility rule for sessions: another version of the session
    /// protocol has another prologue, and the handshake fails cleanly.
    #[test]
    fn handshake_of_another_protocol_version_is_refused() {
        let cfg = SessionConfig::default();
        let ia = Identity::generate_with(&mut rng(1));
        let ib = Identity::generate_with(&mut rng(2));
        let ra = record_for(&ia, "127.0.0.1:1").sign(&ia).unwrap();
        let rb = record_for(&ib, "127.0.0.1:2").sign(&ib).unwrap();
        let secret = ia.x25519_secret();
        let remote = ib.node_id().x25519_public().unwrap();
        let mut hs = builder(&secret, b"grapevine session v2")
            .unwrap()
            .remote_public_key(&remote)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut buf = vec![0u8; MAX_HANDSHAKE_LEN];
        let n = hs.write_message(ra.bytes(), &mut buf).unwrap();
        assert!(matches!(
            ResponderHandshake::respond(&ib, &rb, &buf[..n], &cfg),
            Err(SessionError::HandshakeFailed)
        ));
    }

    #[test]
    fn tampered_and_truncated_handshakes_fail() {
        let cfg = SessionConfig::default();
        let ia = Identity::generate_with(&mut rng(1));
        let ib = Identity::generate_with(&mut rng(2));
        let ra = record_for(&ia, "127.0.0.1:1").sign(&ia).unwrap();
        let rb = record_for(&ib, "127.0.0.1:2").sign(&ib).unwrap();
        let (init, m1) = InitiatorHandshake::start(&ia, &ra, ib.node_id(), &cfg).unwrap();
        let mut bad = m1[2..].to_vec();
        bad[40] ^= 1;
        assert!(ResponderHandshake::respond(&ib, &rb, &bad, &cfg).is_err());
        assert!(ResponderHandshake::respond(&ib, &rb, &m1[2..20], &cfg).is_err());
        let (_b, _, m2) = ResponderHandshake::respond(&ib, &rb, &m1[2..], &cfg).unwrap();
        let mut bad2 = m2[2..].to_vec();
        let n = bad2.len();
        bad2[n - 3] ^= 1;
        assert!(matches!(
            init.finish(&bad2),
            Err(SessionError::HandshakeFailed)
        ));
    }

    #[test]
    fn initiator_presenting_someone_elses_record_is_refused() {
        // Mallory holds her own key but presents Alice's (validly signed) record.
        let cfg = SessionConfig::default();
        let alice = Identity::generate_with(&mut rng(1));
        let bob = Identity::generate_with(&mut rng(2));
        let mallory = Identity::generate_with(&mut rng(3));
        let ra = record_for(&alice, "127.0.0.1:1").sign(&alice).unwrap();
        let rb = record_for(&bob, "127.0.0.1:2").sign(&bob).unwrap();
        let (_init, m1) = InitiatorHandshake::start(&mallory, &ra, bob.node_id(), &cfg).unwrap();
        assert!(matches!(
            ResponderHandshake::respond(&bob, &rb, &m1[2..], &cfg),
            Err(SessionError::KeyMismatch)
        ));
    }

    #[test]
    fn responder_impersonation_is_detected_by_initiator() {
        // Even if an attacker answered with a valid record of another node,
        // it cannot complete IK without the dialled key; and a reply carrying
        // the wrong record is refused.
        let cfg = SessionConfig::default();
        let ia = Identity::generate_with(&mut rng(1));
        let ib = Identity::generate_with(&mut rng(2));
        let ic = Identity::generate_with(&mut rng(3));
        let ra = record_for(&ia, "127.0.0.1:1").sign(&ia).unwrap();
        let rc = record_for(&ic, "127.0.0.1:3").sign(&ic).unwrap();
        let (init, m1) = InitiatorHandshake::start(&ia, &ra, ib.node_id(), &cfg).unwrap();
        // B's key holder answers but presents C's record.
        let (_b, _, m2) = ResponderHandshake::respond(&ib, &rc, &m1[2..], &cfg).unwrap();
        assert!(matches!(
            init.finish(&m2[2..]),
            Err(SessionError::UnexpectedPeer { .. })
        ));
    }
}
