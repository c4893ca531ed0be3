//! The generated file the storage and gateway benchmarks put and get:
//! deterministic bytes produced on the fly and checked on the way back,
//! never held in memory whole (`bench ceiling` times producing and
//! checking them, as a stage of the pipeline).

use tokio::io::AsyncWrite;

/// One MiB of pseudo-random bytes: the generated file repeats it, with each
/// MiB's first 8 bytes XORed with its index so no two MiB are equal.
fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut z = 0x9e37_79b9_7f4a_7c15u64;
        (0..PATTERN_LEN / 8)
            .flat_map(|_| {
                z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut x = z;
                x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (x ^ (x >> 31)).to_le_bytes()
            })
            .collect()
    })
}
const PATTERN_LEN: usize = 1 << 20;

/// Visit the generated file's bytes at `pos..pos + len` as slices of the
/// pattern, with each MiB's index mixed into its first 8 bytes.
fn generated_at(mut pos: u64, len: usize, mut f: impl FnMut(&[u8])) {
    let p = pattern();
    let end = pos + len as u64;
    while pos < end {
        let mib = pos / PATTERN_LEN as u64;
        let off = (pos % PATTERN_LEN as u64) as usize;
        let n = (PATTERN_LEN - off).min((end - pos) as usize);
        if off < 8 {
            let mut head = [0u8; 8];
            for (i, h) in head.iter_mut().enumerate() {
                *h = p[i] ^ mib.to_le_bytes()[i];
            }
            let h = (8 - off).min(n);
            f(&head[off..off + h]);
            if n > h {
                f(&p[off + h..off + n]);
            }
        } else {
            f(&p[off..off + n]);
        }
        pos += n as u64;
    }
}

/// A generated file: deterministic bytes produced on the fly, never held
/// in memory whole.
pub(crate) struct Generated {
    pos: u64,
    size: u64,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.size - self.pos) as usize;
        generated_at(self.pos, n, |s| buf.put_slice(s));
        self.pos += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

pub(crate) fn generated(size: u64) -> Generated {
    Generated { pos: 0, size }
}

/// Fill `buf` with the generated file's bytes from `pos` (what [`Generated`]
/// does per read; `bench ceiling` times it).
pub(crate) fn fill_generated(pos: u64, buf: &mut [u8]) {
    let mut at = 0;
    generated_at(pos, buf.len(), |s| {
        buf[at..at + s.len()].copy_from_slice(s);
        at += s.len();
    });
}

/// Whether `buf` is the generated file's bytes from `pos` (what
/// [`CheckSink`] does per write; `bench ceiling` times it).
pub(crate) fn matches_generated(pos: u64, buf: &[u8]) -> bool {
    let mut at = 0;
    let mut same = true;
    generated_at(pos, buf.len(), |s| {
        same &= s == &buf[at..at + s.len()];
        at += s.len();
    });
    same
}

/// Compares what is written with the generated file, to check the download
/// without storing it.
pub(crate) struct CheckSink {
    pub(crate) pos: u64,
    pub(crate) mismatch: bool,
}

impl AsyncWrite for CheckSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.mismatch |= !matches_generated(this.pos, buf);
        this.pos += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_bytes_do_not_depend_on_how_they_are_read() {
        let mut whole = Vec::new();
        generated_at(0, 3 * PATTERN_LEN + 100, |s| whole.extend_from_slice(s));
        for (start, len) in [
            (0, 5),
            (3, 10),
            (PATTERN_LEN as u64 - 2, 20),
            (2 * PATTERN_LEN as u64 + 7, 1000),
        ] {
            let mut part = Vec::new();
            generated_at(start, len, |s| part.extend_from_slice(s));
            assert_eq!(part, whole[start as usize..start as usize + len]);
        }
        // No two MiB are the same.
        assert_ne!(whole[..PATTERN_LEN], whole[PATTERN_LEN..2 * PATTERN_LEN]);
    }
}
