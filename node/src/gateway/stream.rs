//! Streaming a download to an HTTP client in flat memory.
//!
//! The download runs as its own task writing into a [`ChannelWriter`] (an
//! `AsyncWrite` over a bounded channel of [`CHUNK`]-byte pieces); the
//! response body is a [`ChannelBody`] reading the other end, with the
//! download's exact length as its size (so the response has a
//! Content-Length). At most [`CHANNEL_CHUNKS`] pieces wait in between, so a
//! download holds a few MiB whatever the file's size. When the client goes
//! away the body is dropped, the writer's next write fails and the download
//! ends; when the client stops reading for [`ChannelWriter`]'s stall time,
//! the write fails too, so a client that never reads cannot hold the
//! gateway's sessions to storage servers. A download that fails midway
//! drops its writer: the body ends short with an error and the server cuts
//! the connection, so a client never takes a truncated file for a whole one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::PollSender;

use crate::gateway::slots::HeldSlots;

/// Largest piece sent through the channel.
pub const CHUNK: usize = 1024 * 1024;
/// Pieces the channel holds.
pub const CHANNEL_CHUNKS: usize = 4;

/// A channel for one download: the writer's and the body's ends.
pub fn channel() -> (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
    mpsc::channel(CHANNEL_CHUNKS)
}

/// Writes into a download channel.
#[derive(Debug)]
pub struct ChannelWriter {
    tx: PollSender<Bytes>,
    stall: Duration,
    /// When the current wait (for the reader, or for slots) fails.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The gateway's session slots the download holds, if any
    /// ([`crate::gateway::slots`]).
    slots: Option<HeldSlots>,
    /// How long the reader may take nothing before the slots go back.
    park_after: Duration,
    /// When they go back.
    give_back: Option<Pin<Box<Sleep>>>,
}

impl ChannelWriter {
    /// A writer into `tx` that fails once the reader takes nothing for
    /// `stall`.
    pub fn new(tx: mpsc::Sender<Bytes>, stall: Duration) -> Self {
        ChannelWriter {
            tx: PollSender::new(tx),
            stall,
            deadline: None,
            slots: None,
            park_after: stall,
            give_back: None,
        }
    }

    /// The writer of a download holding `slots`: they go back once the
    /// reader has taken nothing for `park_after` (when the storage client
    /// parks the download and closes its sessions), and are taken back
    /// before the next write goes on.
    pub fn with_slots(mut self, slots: Option<HeldSlots>, park_after: Duration) -> Self {
        self.slots = slots;
        self.park_after = park_after;
        self
    }

    /// Pending, or the wait's failure once it has lasted `stall`.
    fn wait(&mut self, cx: &mut Context<'_>, what: &str) -> Poll<io::Result<usize>> {
        let stall = self.stall;
        let d = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if d.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} for {stall:?}"),
            )));
        }
        Poll::Pending
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP client went away")
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.tx.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {
                if let Some(slots) = this.slots.as_mut().filter(|s| !s.held()) {
                    // The reader is back: the slots first (the place in
                    // the channel stays reserved meanwhile).
                    if this.give_back.take().is_some() {
                        this.deadline = None;
                    }
                    match slots.poll_take(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            return this.wait(cx, "no storage session slots came free")
                        }
                    }
                }
                this.deadline = None;
                this.give_back = None;
                let n = buf.len().min(CHUNK);
                this.tx
                    .send_item(Bytes::copy_from_slice(&buf[..n]))
                    .map_err(|_| gone())?;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(gone())),
            Poll::Pending => {
                if let Some(slots) = this.slots.as_mut().filter(|s| s.held()) {
                    let after = this.park_after;
                    let g = this
                        .give_back
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                    if g.as_mut().poll(cx).is_ready() {
                        slots.give_back();
                        tracing::debug!("a download's client takes no data: its slots go back");
                    }
                }
                this.wait(cx, "the HTTP client took no data")
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// A response body of exactly `remaining` bytes read from a download
/// channel (after `first`, a piece already taken from it).
#[derive(Debug)]
pub struct ChannelBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    remaining: u64,
}

impl ChannelBody {
    /// A body of `len` bytes: `first`, then what comes through `rx`.
    pub fn new(first: Option<Bytes>, rx: mpsc::Receiver<Bytes>, len: u64) -> Self {
        ChannelBody {
            first,
            rx,
            remaining: len,
        }
    }

    fn take(&mut self, b: Bytes) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let n = b.len() as u64;
        if n > self.remaining {
            self.remaining = 0;
            return Poll::Ready(Some(Err(io::Error::other(
                "the download is longer than announced",
            ))));
        }
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(b))))
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(b) = self.first.take() {
            return self.take(b);
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => self.take(b),
            Poll::Ready(None) => {
                let left = self.remaining;
                self.remaining = 0;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the download failed with {left} bytes to go"),
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_download_streams_in_pieces_of_its_exact_length() {
        let (tx, rx) = channel();
        let data: Vec<u8> = (0..3 * CHUNK + 5).map(|i| i as u8).collect();
        let d = data.clone();
        let writer = tokio::spawn(async move {
            let mut w = ChannelWriter::new(tx, Duration::from_secs(5));
            w.write_all(&d).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let body = ChannelBody::new(None, rx, data.len() as u64);
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let got = body.collect().await.unwrap().to_bytes();
        assert!(got == data);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_download_that_stops_short_ends_the_body_with_an_error() {
        let (tx, rx) = channel();
        let mut w = ChannelWriter::new(tx, Duration::from_secs(5));
        w.write_all(b"half").await.unwrap();
        drop(w);
        let r = ChannelBody::new(None, rx, 8).collect().await;
        assert!(r.is_err(), "a short body must not end cleanly");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stalls_or_leaves_fails_the_writer() {
        let (tx, rx) = channel();
        let mut w = ChannelWriter::new(tx, Duration::from_secs(60));
        let big = vec![0u8; CHUNK * (CHANNEL_CHUNKS + 2)];
        let e = w.write_all(&big).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        drop(rx);
        let (tx, rx) = channel();
        drop(rx);
        let mut w = ChannelWriter::new(tx, Duration::from_secs(60));
        let e = w.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    /// A download's slots go back once its client has taken nothing for
    /// `park_after`, so another operation can take them; when the client
    /// reads again the download takes them back before it writes on
    /// (waiting while the other holds them), and holds them to its end.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_downloads_slots_go_back_and_are_taken_again() {
        use crate::gateway::slots::Slots;

        let slots = Slots::new(10, false);
        let held = slots.take(10, None).await.unwrap();
        let (tx, mut rx) = channel();
        let data = vec![9u8; CHUNK * (CHANNEL_CHUNKS + 3)];
        let d = data.clone();
        let writer = tokio::spawn(async move {
            let mut w = ChannelWriter::new(tx, Duration::from_secs(60))
                .with_slots(Some(held), Duration::from_secs(5));
            w.write_all(&d).await.unwrap();
            w
        });
        // The channel fills; five seconds on, the slots are free.
        let start = tokio::time::Instant::now();
        while slots.free() < 10 {
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "the slots stayed taken"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(start.elapsed() >= Duration::from_secs(5));
        // Another operation takes them; the client reads what waits in
        // the channel, and the download waits for its slots.
        let other = slots.take(10, None).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..CHANNEL_CHUNKS {
            got.extend_from_slice(&rx.recv().await.unwrap());
        }
        let more = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        assert!(more.is_err(), "wrote on without its slots");
        drop(other);
        while got.len() < data.len() {
            got.extend_from_slice(&rx.recv().await.unwrap());
        }
        assert!(got == data);
        let w = writer.await.unwrap();
        assert_eq!(slots.free(), 0, "held to the end");
        drop(w);
        assert_eq!(slots.free(), 10);
    }
}
