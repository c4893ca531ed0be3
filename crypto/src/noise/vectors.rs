//! Known-answer tests: the published `Noise_IK_25519_ChaChaPoly_BLAKE2s`
//! vectors (cacophony, as shipped in the `snow` crate package; see
//! `crypto/tests/vectors/README.md`) through this crate's handshake
//! configuration and its in-place transport, and the
//! `Noise_IK_25519_AESGCM_BLAKE2s` ones through the in-place `AESGCM`
//! transport (their handshake is `snow`'s: grapevine's is always
//! `ChaChaPoly`).

use crate::cipher::{self, TransportCipher};
use crate::noise::handshake::{builder, into_transport};

fn hex(v: &serde_json::Value, field: &str) -> Vec<u8> {
    let s = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {field}"));
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.as_bytes())
        .expect("hex")
}

fn key(v: &serde_json::Value, field: &str) -> [u8; 32] {
    hex(v, field).try_into().expect("32-byte key")
}

#[test]
fn cacophony_ik_vectors_through_handshake_and_in_place_transport() {
    run(
        include_str!("../../tests/vectors/cacophony-IK_25519_ChaChaPoly_BLAKE2s.json"),
        TransportCipher::ChaChaPoly,
    );
}

#[test]
fn cacophony_ik_aesgcm_vectors_through_in_place_transport() {
    run(
        include_str!("../../tests/vectors/cacophony-IK_25519_AESGCM_BLAKE2s.json"),
        TransportCipher::AesGcm,
    );
}

/// A handshake builder for the vector's protocol: grapevine's own
/// configuration for `ChaChaPoly`, `snow`'s for `AESGCM`.
fn vector_builder<'a>(
    cipher: TransportCipher,
    local: &'a [u8; 32],
    prologue: &'a [u8],
) -> snow::Builder<'a> {
    match cipher {
        TransportCipher::ChaChaPoly => builder(local, prologue).unwrap(),
        TransportCipher::AesGcm => {
            let params = "Noise_IK_25519_AESGCM_BLAKE2s".parse().unwrap();
            snow::Builder::with_resolver(params, cipher::resolver())
                .local_private_key(local)
                .unwrap()
                .prologue(prologue)
                .unwrap()
        }
    }
}

fn run(json: &str, cipher: TransportCipher) {
    let file: serde_json::Value = serde_json::from_str(json).expect("vector file parses");
    let vectors = file["vectors"].as_array().expect("vectors");
    assert!(!vectors.is_empty());
    for v in vectors {
        let name = format!("Noise_IK_25519_{}_BLAKE2s", cipher.noise_name());
        assert_eq!(v["protocol_name"], name.as_str());
        if cipher == TransportCipher::ChaChaPoly {
            assert_eq!(name, crate::noise::NOISE_PARAMS);
        }
        let (init_s, resp_s) = (key(v, "init_static"), key(v, "resp_static"));
        let (init_e, resp_e) = (hex(v, "init_ephemeral"), hex(v, "resp_ephemeral"));
        let (init_p, resp_p) = (hex(v, "init_prologue"), hex(v, "resp_prologue"));
        let remote = hex(v, "init_remote_static");
        let mut init = vector_builder(cipher, &init_s, &init_p)
            .remote_public_key(&remote)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&init_e)
            .build_initiator()
            .unwrap();
        let mut resp = vector_builder(cipher, &resp_s, &resp_p)
            .fixed_ephemeral_key_for_testing_only(&resp_e)
            .build_responder()
            .unwrap();
        let messages = v["messages"].as_array().expect("messages");
        assert!(messages.len() > 2, "the vector has transport messages");
        let mut buf = vec![0u8; 1024];
        let mut out = vec![0u8; 1024];
        // Handshake: `-> e, es, s, ss` then `<- e, ee, se`.
        for (i, m) in messages[..2].iter().enumerate() {
            let (payload, ct) = (hex(m, "payload"), hex(m, "ciphertext"));
            let (w, r) = if i == 0 {
                (&mut init, &mut resp)
            } else {
                (&mut resp, &mut init)
            };
            let n = w.write_message(&payload, &mut buf).unwrap();
            assert_eq!(&buf[..n], &ct[..], "handshake message {i}");
            let n = r.read_message(&ct, &mut out).unwrap();
            assert_eq!(&out[..n], &payload[..], "handshake message {i}");
        }
        let hash = hex(v, "handshake_hash");
        assert_eq!(init.get_handshake_hash(), &hash[..]);
        assert_eq!(resp.get_handshake_hash(), &hash[..]);
        // Transport: the initiator sends the even messages, the responder
        // the odd ones, each sealed and opened in place by the cipher
        // states `Transport` frames are sealed with.
        let mut ti = into_transport(init, true, u64::MAX, cipher).unwrap();
        let mut tr = into_transport(resp, false, u64::MAX, cipher).unwrap();
        for (i, m) in messages.iter().enumerate().skip(2) {
            let (payload, ct) = (hex(m, "payload"), hex(m, "ciphertext"));
            let (sender, receiver) = if i % 2 == 0 {
                (&mut ti, &mut tr)
            } else {
                (&mut tr, &mut ti)
            };
            let mut sealed = payload.clone();
            let tag = sender.keys_mut().0.seal_in_place(&mut sealed).unwrap();
            sealed.extend_from_slice(&tag);
            assert_eq!(sealed, ct, "transport message {i}");
            let mut opened = ct.clone();
            let n = receiver.keys_mut().1.open_in_place(&mut opened).unwrap();
            assert_eq!(&opened[..n], &payload[..], "transport message {i}");
        }
    }
}
