//! An established session's cipher states: frames sealed and opened in
//! place, with Noise's nonces and REKEY.

use crate::cipher::{CipherKey, TransportCipher};
use crate::error::SessionError;

/// Largest frame on the wire (ciphertext, without the 2-byte length).
pub const MAX_FRAME_LEN: usize = 65535;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Largest message fragment carried by one frame.
pub const MAX_FRAGMENT: usize = MAX_FRAME_LEN - TAG_LEN - 1;

/// Bytes on the wire of a message of `total` bytes: each frame's length,
/// flag and tag besides the message.
pub fn sealed_len(total: usize) -> usize {
    let frames = total.div_ceil(MAX_FRAGMENT).max(1);
    total + frames * (2 + 1 + TAG_LEN)
}
/// Flag: this fragment ends its message.
pub const FLAG_FINAL: u8 = 1;

/// An established session's cipher states. Holds no buffers: callers pass
/// them in per frame. Frames are sealed and opened in place (one copy of
/// the payload into the output on sending, none on receiving).
#[derive(Debug)]
pub struct Transport {
    send: CipherKey,
    recv: CipherKey,
    sent: u64,
    received: u64,
    rekey_after: u64,
}

impl Transport {
    /// The transport of a finished handshake: its two split keys (the
    /// first for the initiator's sending direction, as Noise's `Split()`
    /// returns them) under `cipher`, each direction rekeyed every
    /// `rekey_after` frames.
    pub(crate) fn from_split(
        k1: [u8; 32],
        k2: [u8; 32],
        initiator: bool,
        rekey_after: u64,
        cipher: TransportCipher,
    ) -> Self {
        let (send, recv) = if initiator { (k1, k2) } else { (k2, k1) };
        Transport {
            send: CipherKey::new(send, cipher),
            recv: CipherKey::new(recv, cipher),
            sent: 0,
            received: 0,
            rekey_after: rekey_after.max(1),
        }
    }

    /// The cipher states themselves (sending, receiving), for known-answer
    /// tests against published Noise transport messages.
    #[cfg(test)]
    pub(crate) fn keys_mut(&mut self) -> (&mut CipherKey, &mut CipherKey) {
        (&mut self.send, &mut self.recv)
    }

    /// The AEAD this session's frames are sealed with.
    pub fn cipher(&self) -> TransportCipher {
        self.send.cipher()
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.sent
    }

    /// Encrypt `msg` as one or more frames, each with its length prefix,
    /// appended to `out`.
    ///
    /// # Errors
    /// [`SessionError::MessageTooLarge`] if `msg` exceeds `max_message`.
    pub fn seal_message(
        &mut self,
        msg: &[u8],
        max_message: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        self.seal_parts(&[msg], max_message, out)
    }

    /// Encrypt the concatenation of `parts` as one message (so a header and
    /// a payload need not be joined first), appended to `out`.
    ///
    /// # Errors
    /// [`SessionError::MessageTooLarge`] if the parts exceed `max_message`.
    pub fn seal_parts(
        &mut self,
        parts: &[&[u8]],
        max_message: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > max_message {
            return Err(SessionError::MessageTooLarge {
                size: total,
                max: max_message,
            });
        }
        out.reserve(sealed_len(total));
        let mut left = total;
        let (mut part, mut at) = (0usize, 0usize);
        loop {
            let n = left.min(MAX_FRAGMENT);
            left -= n;
            let start = out.len();
            out.extend_from_slice(&[0, 0]);
            let mut need = n;
            while need > 0 {
                let p = parts[part];
                let take = (p.len() - at).min(need);
                out.extend_from_slice(&p[at..at + take]);
                at += take;
                need -= take;
                if at == p.len() {
                    part += 1;
                    at = 0;
                }
            }
            out.push(if left == 0 { FLAG_FINAL } else { 0 });
            let tag = self
                .send
                .seal_in_place(&mut out[start + 2..])
                .ok_or(SessionError::Decrypt)?;
            out.extend_from_slice(&tag);
            let len = (out.len() - start - 2) as u16;
            out[start..start + 2].copy_from_slice(&len.to_be_bytes());
            self.sent += 1;
            if self.sent % self.rekey_after == 0 {
                self.send.rekey();
            }
            if left == 0 {
                return Ok(());
            }
        }
    }

    /// Decrypt one frame body (without its length prefix) where it lies:
    /// `frame` becomes the fragment it carries. Returns whether the
    /// fragment ends its message.
    ///
    /// # Errors
    /// [`SessionError::Decrypt`] for a tampered, replayed, reordered or
    /// truncated frame; [`SessionError::MalformedFrame`] for a bad flag
    /// byte or a frame too short to hold one.
    pub fn open_in_place(&mut self, frame: &mut Vec<u8>) -> Result<bool, SessionError> {
        self.open_tail(frame, 0)
    }

    /// Decrypt the frame body that `buf` holds from `start` on, where it
    /// lies: afterwards `buf` is its bytes before `start` followed by the
    /// fragment the frame carries. A receiver reads each frame of a message
    /// onto the end of the message and opens it there, so no fragment is
    /// copied. Returns whether the fragment ends its message.
    ///
    /// # Errors
    /// As [`Transport::open_in_place`] (a `start` past the end is a frame
    /// too short). On error the bytes from `start` on are unspecified; the
    /// session cannot continue anyway.
    pub fn open_tail(&mut self, buf: &mut Vec<u8>, start: usize) -> Result<bool, SessionError> {
        if buf.len().saturating_sub(start) < TAG_LEN + 1 {
            return Err(SessionError::MalformedFrame);
        }
        let n = self
            .recv
            .open_in_place(&mut buf[start..])
            .ok_or(SessionError::Decrypt)?;
        buf.truncate(start + n);
        self.received += 1;
        if self.received % self.rekey_after == 0 {
            self.recv.rekey();
        }
        match buf.pop() {
            Some(FLAG_FINAL) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(SessionError::MalformedFrame),
        }
    }

    /// Decrypt one frame body (without its length prefix), appending its
    /// fragment to `message`. Returns whether the fragment ends its message.
    ///
    /// # Errors
    /// As [`Transport::open_in_place`]; [`SessionError::MessageTooLarge`] if
    /// `message` would exceed `max`. On error `message` is left as it was.
    pub fn open_frame(
        &mut self,
        frame: &[u8],
        message: &mut Vec<u8>,
        max: usize,
    ) -> Result<bool, SessionError> {
        if frame.len() < TAG_LEN + 1 {
            return Err(SessionError::MalformedFrame);
        }
        let start = message.len();
        let frag = frame.len() - TAG_LEN - 1;
        if start + frag > max {
            return Err(SessionError::MessageTooLarge {
                size: start + frag,
                max,
            });
        }
        message.extend_from_slice(frame);
        let n = match self.recv.open_in_place(&mut message[start..]) {
            Some(n) => n,
            None => {
                message.truncate(start);
                return Err(SessionError::Decrypt);
            }
        };
        self.received += 1;
        if self.received % self.rekey_after == 0 {
            self.recv.rekey();
        }
        let flag = message[start + n - 1];
        message.truncate(start + n - 1);
        if flag > FLAG_FINAL {
            message.truncate(start);
            return Err(SessionError::MalformedFrame);
        }
        Ok(flag == FLAG_FINAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::config::SessionConfig;
    use crate::noise::frame::FrameDecoder;
    use crate::noise::handshake::tests::pair;

    fn deliver(
        from: &mut Transport,
        to: &mut Transport,
        msg: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        let mut wire = Vec::new();
        from.seal_message(msg, 1 << 24, &mut wire)?;
        let mut dec = FrameDecoder::default();
        dec.extend(&wire);
        let mut msg = Vec::new();
        while let Some(f) = dec.next_frame()? {
            if to.open_frame(&f, &mut msg, 1 << 24)? {
                return Ok(msg);
            }
        }
        panic!("message incomplete");
    }

    #[test]
    fn messages_of_every_size_round_trip() {
        let (mut a, mut b) = pair(&SessionConfig::default());
        for size in [
            0,
            1,
            MAX_FRAGMENT - 1,
            MAX_FRAGMENT,
            MAX_FRAGMENT + 1,
            3 * MAX_FRAGMENT + 7,
        ] {
            let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
            assert_eq!(deliver(&mut a, &mut b, &msg).unwrap(), msg);
            assert_eq!(deliver(&mut b, &mut a, &msg).unwrap(), msg);
        }
    }

    #[test]
    fn parts_are_sealed_as_one_message_and_open_in_place() {
        let (mut a, mut b) = pair(&SessionConfig::default());
        let head: Vec<u8> = (0..37u8).collect();
        for body_len in [0, 5, MAX_FRAGMENT - 37, MAX_FRAGMENT, 2 * MAX_FRAGMENT + 3] {
            let body: Vec<u8> = (0..body_len).map(|i| (i * 7) as u8).collect();
            let mut wire = Vec::new();
            a.seal_parts(&[&head, &[], &body], 1 << 24, &mut wire)
                .unwrap();
            assert_eq!(wire.len(), sealed_len(head.len() + body_len));
            let mut dec = FrameDecoder::default();
            dec.extend(&wire);
            let mut msg = Vec::new();
            let mut last = false;
            while let Some(mut f) = dec.next_frame().unwrap() {
                assert!(!last, "nothing after the final fragment");
                last = b.open_in_place(&mut f).unwrap();
                msg.extend_from_slice(&f);
            }
            assert!(last);
            let mut expect = head.clone();
            expect.extend_from_slice(&body);
            assert_eq!(msg, expect, "body {body_len}");
        }
        // A frame opened in place is checked like any other.
        let mut wire = Vec::new();
        a.seal_message(b"x", 100, &mut wire).unwrap();
        let mut f = wire[2..].to_vec();
        f[0] ^= 1;
        assert!(matches!(
            b.open_in_place(&mut f),
            Err(SessionError::Decrypt)
        ));
        let mut short = vec![0u8; TAG_LEN];
        assert!(matches!(
            b.open_in_place(&mut short),
            Err(SessionError::MalformedFrame)
        ));
    }

    /// Frames opened at the end of the message they belong to: the
    /// message is the fragments in order, nothing before `start` changes,
    /// and a bad frame or a `start` past the end is refused.
    #[test]
    fn frames_open_at_the_tail_of_their_message() {
        let (mut a, mut b) = pair(&SessionConfig::default());
        let body: Vec<u8> = (0..3 * MAX_FRAGMENT + 11)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut wire = Vec::new();
        a.seal_message(&body, 1 << 24, &mut wire).unwrap();
        let mut dec = FrameDecoder::default();
        dec.extend(&wire);
        let mut msg = b"kept".to_vec();
        let mut last = false;
        while let Some(f) = dec.next_frame().unwrap() {
            assert!(!last);
            let start = msg.len();
            msg.extend_from_slice(&f);
            last = b.open_tail(&mut msg, start).unwrap();
        }
        assert!(last);
        assert_eq!(&msg[..4], b"kept");
        assert_eq!(msg[4..], body[..]);
        let mut wire = Vec::new();
        a.seal_message(b"x", 100, &mut wire).unwrap();
        let mut buf = b"ab".to_vec();
        buf.extend_from_slice(&wire[2..]);
        buf[3] ^= 1;
        assert!(matches!(
            b.open_tail(&mut buf, 2),
            Err(SessionError::Decrypt)
        ));
        let mut short = vec![0u8; TAG_LEN + 1];
        assert!(matches!(
            b.open_tail(&mut short, 1),
            Err(SessionError::MalformedFrame)
        ));
        assert!(matches!(
            b.open_tail(&mut short, 100),
            Err(SessionError::MalformedFrame)
        ));
    }

    #[test]
    fn frames_never_exceed_max() {
        let (mut a, _) = pair(&SessionConfig::default());
        let mut wire = Vec::new();
        a.seal_message(&vec![1u8; 200_000], 1 << 24, &mut wire)
            .unwrap();
        let mut dec = FrameDecoder::default();
        dec.extend(&wire);
        let mut frames = 0;
        while let Some(f) = dec.next_frame().unwrap() {
            assert!(f.len() <= MAX_FRAME_LEN);
            frames += 1;
        }
        assert_eq!(frames, 4);
    }

    /// Both directions rekey after every `rekey_after` frames, in step, and
    /// a rekey really changes the key. Senders and receivers are made from
    /// the same split keys, some rekeying every 3 frames and some never, and
    /// every receiver opens every frame it is given in order, so its nonce
    /// always matches: a frame that fails to open fails on its key alone.
    /// The test breaks if either side skips REKEY (the rekeying receivers
    /// cannot open frame 3 of a sender that did not rekey, and the other
    /// way round) or if REKEY leaves the key as it was (frame 3 would equal
    /// the never-rekeying sender's, and open under the old key).
    #[test]
    fn rekey_changes_the_key_in_step_on_both_sides() {
        for cipher in [TransportCipher::ChaChaPoly, TransportCipher::AesGcm] {
            rekey_in_step(cipher);
        }
        // The same across a real handshake, both ways.
        let cfg = SessionConfig {
            rekey_after: 3,
            ..SessionConfig::default()
        };
        let (mut a, mut b) = pair(&cfg);
        for i in 0..20u8 {
            assert_eq!(deliver(&mut a, &mut b, &[i; 10]).unwrap(), vec![i; 10]);
            assert_eq!(deliver(&mut b, &mut a, &[i; 7]).unwrap(), vec![i; 7]);
        }
    }

    fn rekey_in_step(cipher: TransportCipher) {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let split =
            |initiator, rekey_after| Transport::from_split(k1, k2, initiator, rekey_after, cipher);
        let mut sender = split(true, 3);
        let mut stale_sender = split(true, u64::MAX);
        // One receiver per opening path (the driver opens in place, tools
        // through `open_frame`), and one that never rekeys.
        let mut in_place = split(false, 3);
        let mut appending = split(false, 3);
        let mut stale = split(false, u64::MAX);
        for i in 0..10u8 {
            let msg = [i; 10];
            let (mut wire, mut stale_wire) = (Vec::new(), Vec::new());
            sender.seal_message(&msg, 100, &mut wire).unwrap();
            stale_sender
                .seal_message(&msg, 100, &mut stale_wire)
                .unwrap();
            let mut frame = wire[2..].to_vec();
            assert!(in_place.open_in_place(&mut frame).unwrap(), "frame {i}");
            assert_eq!(frame, msg);
            let mut m = Vec::new();
            assert!(appending.open_frame(&wire[2..], &mut m, 100).unwrap());
            assert_eq!(m, msg, "frame {i}");
            if i < 3 {
                // The first key, on both senders.
                assert_eq!(wire, stale_wire, "frame {i}");
                let mut f = wire[2..].to_vec();
                assert!(stale.open_in_place(&mut f).unwrap());
            } else if i == 3 {
                assert_ne!(wire, stale_wire, "frame 3 is sealed under a new key");
                let mut f = wire[2..].to_vec();
                assert!(
                    matches!(stale.open_in_place(&mut f), Err(SessionError::Decrypt)),
                    "a receiver in nonce step that did not rekey cannot open frame 3"
                );
            } else {
                assert_ne!(wire, stale_wire, "{cipher}, frame {i}");
            }
        }
    }

    #[test]
    fn tampered_replayed_and_truncated_frames_are_rejected() {
        let (mut a, mut b) = pair(&SessionConfig::default());
        let mut wire = Vec::new();
        a.seal_message(b"hello", 100, &mut wire).unwrap();
        let frame = wire[2..].to_vec();

        let mut tampered = frame.clone();
        tampered[3] ^= 1;
        let mut m = Vec::new();
        assert!(matches!(
            b.open_frame(&tampered, &mut m, 100),
            Err(SessionError::Decrypt)
        ));
        assert!(m.is_empty());

        let (mut a, mut b) = pair(&SessionConfig::default());
        let mut wire = Vec::new();
        a.seal_message(b"hello", 100, &mut wire).unwrap();
        let frame = wire[2..].to_vec();
        let mut m = Vec::new();
        assert!(b.open_frame(&frame, &mut m, 100).unwrap());
        assert_eq!(m, b"hello");
        let mut m = Vec::new();
        assert!(matches!(
            b.open_frame(&frame, &mut m, 100),
            Err(SessionError::Decrypt)
        ));
        assert!(b.open_frame(&frame[..5], &mut m, 100).is_err());
    }

    #[test]
    fn oversized_message_is_refused_on_both_ends() {
        let (mut a, mut b) = pair(&SessionConfig::default());
        let mut wire = Vec::new();
        assert!(matches!(
            a.seal_message(&[0; 1000], 999, &mut wire),
            Err(SessionError::MessageTooLarge {
                size: 1000,
                max: 999
            })
        ));
        let mut wire = Vec::new();
        a.seal_message(&[0; 200_000], 1 << 20, &mut wire).unwrap();
        let mut dec = FrameDecoder::default();
        dec.extend(&wire);
        let mut m = Vec::new();
        let f = dec.next_frame().unwrap().unwrap();
        assert!(matches!(
            b.open_frame(&f, &mut m, 1000),
            Err(SessionError::MessageTooLarge { .. })
        ));
    }
}
