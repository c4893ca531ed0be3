//! Fixtures for the codec's unit tests: a file's shares made whole, and
//! the parts of a share's trailer.

use crate::cap::ReadCap;
use crate::chk::format::{Footer, FOOTER_LEN, SEGMENT_SIZE};
use crate::chk::Encoder;
use crate::types::Params;

/// The `n` whole shares of `data` encrypted under `key`, each checked to
/// be the size the encoder announced, and the read capability.
pub(crate) fn encode_all(key: [u8; 32], data: &[u8], params: Params) -> (Vec<Vec<u8>>, ReadCap) {
    let mut enc = Encoder::new(key, params, data.len() as u64).unwrap();
    let mut shares = vec![Vec::new(); params.n as usize];
    for seg in 0..enc.segments() {
        let start = (seg * SEGMENT_SIZE) as usize;
        let end = (start + SEGMENT_SIZE as usize).min(data.len());
        let chunk = data[start..end].to_vec();
        for (s, b) in shares.iter_mut().zip(enc.encode_segment(&chunk).unwrap()) {
            s.extend_from_slice(&b);
        }
    }
    let size = enc.share_size();
    let (trailers, cap) = enc.finish().unwrap();
    for (s, t) in shares.iter_mut().zip(trailers) {
        s.extend_from_slice(&t);
        assert_eq!(s.len() as u64, size);
    }
    (shares, cap)
}

/// A whole share's footer, extension block and block hash list.
pub(crate) fn parts(share: &[u8]) -> (Footer, &[u8], &[u8]) {
    let f = Footer::parse(
        &share[share.len() - FOOTER_LEN as usize..],
        share.len() as u64,
    )
    .unwrap();
    let ueb = &share[f.ueb_offset as usize..(f.ueb_offset + f.ueb_len as u64) as usize];
    let hashes = &share[f.hashes_offset as usize..f.ueb_offset as usize];
    (f, ueb, hashes)
}
