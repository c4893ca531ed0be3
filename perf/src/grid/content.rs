//! The workload's file contents: deterministic bytes made from a file's
//! seed and read on the fly ([`Generated`]), and a writer that compares
//! what a download writes with them ([`Compare`]), so no file is ever held
//! in memory whole and every get is checked byte for byte.
//!
//! Every 8-byte word of a file is a SplitMix64 mix of the file's seed and
//! the word's index: two files differ everywhere, and a byte served from
//! the wrong place, the wrong file or the wrong offset does not compare
//! equal.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The content seed of file `id` in a run seeded with `run`.
pub fn seed_of(run: u64, id: u64) -> u64 {
    mix(run ^ mix(id))
}

/// Fill `out` with the bytes of file `seed` at offset `pos`.
pub fn fill(seed: u64, pos: u64, out: &mut [u8]) {
    let key = mix(seed);
    let mut at = 0usize;
    let mut p = pos;
    while at < out.len() {
        let word = mix(key ^ (p / 8)).to_le_bytes();
        let off = (p % 8) as usize;
        let n = (8 - off).min(out.len() - at);
        out[at..at + n].copy_from_slice(&word[off..off + n]);
        at += n;
        p += n as u64;
    }
}

/// A file's bytes, generated as they are read.
#[derive(Debug)]
pub struct Generated {
    seed: u64,
    pos: u64,
    size: u64,
}

impl Generated {
    /// The `size` bytes of file `seed`.
    pub fn new(seed: u64, size: u64) -> Self {
        Generated { seed, pos: 0, size }
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.size - self.pos) as usize;
        let dst = buf.initialize_unfilled_to(n);
        fill(self.seed, self.pos, dst);
        buf.advance(n);
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Compares what is written with file `seed`, byte for byte.
#[derive(Debug)]
pub struct Compare {
    seed: u64,
    size: u64,
    pos: u64,
    first_mismatch: Option<u64>,
    scratch: Vec<u8>,
}

impl Compare {
    /// A comparison with the `size` bytes of file `seed`.
    pub fn new(seed: u64, size: u64) -> Self {
        Compare {
            seed,
            size,
            pos: 0,
            first_mismatch: None,
            scratch: Vec::new(),
        }
    }

    /// What went wrong, if anything.
    pub fn problem(&self) -> Option<String> {
        if let Some(at) = self.first_mismatch {
            Some(format!("content differs at byte {at}"))
        } else if self.pos != self.size {
            Some(format!("{} bytes written of {}", self.pos, self.size))
        } else {
            None
        }
    }
}

impl AsyncWrite for Compare {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.first_mismatch.is_none() {
            // Past the end counts as a mismatch at the end.
            let within = (this.size.saturating_sub(this.pos)).min(buf.len() as u64) as usize;
            this.scratch.resize(within, 0);
            fill(this.seed, this.pos, &mut this.scratch);
            if let Some(i) = this.scratch.iter().zip(buf).position(|(a, b)| a != b) {
                this.first_mismatch = Some(this.pos + i as u64);
            } else if within < buf.len() {
                this.first_mismatch = Some(this.size);
            }
        }
        this.pos = this.pos.saturating_add(buf.len() as u64);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn whole(seed: u64, size: usize) -> Vec<u8> {
        let mut v = vec![0; size];
        fill(seed, 0, &mut v);
        v
    }

    #[test]
    fn bytes_do_not_depend_on_how_they_are_read_and_files_differ() {
        let all = whole(7, 1000);
        for (start, len) in [(0, 5), (3, 10), (7, 1), (8, 8), (501, 499)] {
            let mut part = vec![0; len];
            fill(7, start as u64, &mut part);
            assert_eq!(part, all[start..start + len]);
        }
        let other = whole(8, 1000);
        let same = all.iter().zip(&other).filter(|(a, b)| a == b).count();
        assert!(same < 20, "two files share {same} of 1000 bytes");
    }

    #[tokio::test]
    async fn a_generated_file_compares_equal_and_any_change_is_caught() {
        let size = 70_001u64;
        let mut data = Vec::new();
        Generated::new(3, size)
            .read_to_end(&mut data)
            .await
            .unwrap();
        assert_eq!(data, whole(3, size as usize));

        let write = |bytes: Vec<u8>| async move {
            let mut c = Compare::new(3, size);
            for chunk in bytes.chunks(4099) {
                c.write_all(chunk).await.unwrap();
            }
            c
        };
        assert_eq!(write(data.clone()).await.problem(), None);
        let mut flipped = data.clone();
        flipped[65_536] ^= 1;
        let c = write(flipped).await;
        assert_eq!(c.problem().unwrap(), "content differs at byte 65536");
        let c = write(data[..1000].to_vec()).await;
        assert!(c.problem().is_some(), "a short file is not the file");
        let mut long = data.clone();
        long.push(0);
        assert!(write(long).await.problem().is_some(), "nor is a longer one");
        let c = write(whole(4, size as usize)).await;
        assert!(c.problem().is_some(), "nor another file");
    }
}
