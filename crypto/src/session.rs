//! The tokio driver around [`crate::noise`]: a [`Session`] over any byte
//! stream (TCP in production, in-memory pipes in tests).
//!
//! An idle session is its stream plus [`Transport`] (two cipher states and
//! counters): no read or write buffer is kept. A buffer is allocated when a
//! frame arrives and handed over with its message.
//!
//! Messages are sealed into a buffer that belongs to the thread rather
//! than the session: each thread keeps the last one it sealed into, up to
//! [`SEAL_SPARE_MAX`], for its next message. A fresh buffer per message
//! was mapped by the allocator and faulted in page by page more often than
//! not (measured: most of a get's page faults were a server's replies
//! being sealed). The memory this keeps grows with the threads that send
//! (a runtime's workers), not with sessions or the grid; a process under a
//! small memory budget keeps none ([`keep_seal_buffers`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::SessionError;
use crate::identity::{Identity, NodeId};
use crate::noise::{
    InitiatorHandshake, ResponderHandshake, SessionConfig, Transport, MAX_FRAME_LEN,
    MAX_HANDSHAKE_LEN, TAG_LEN,
};
use crate::record::SignedRecord;

/// Capacity reserved for a message that spans several frames.
const MESSAGE_RESERVE: usize = (1 << 20) + 4096;

/// The largest sealing buffer a thread keeps for its next message: room
/// for a half-megabyte message and its framing (a storage block of any
/// layout but 1-of-n, whose blocks are whole segments).
pub const SEAL_SPARE_MAX: usize = (1 << 19) + 4096;

thread_local! {
    /// This thread's buffer for sealing its next message (empty until it
    /// sends one).
    static SEAL_SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Whether threads keep a sealing buffer between messages.
static KEEP_SEAL_BUFFERS: AtomicBool = AtomicBool::new(true);

/// Whether each thread keeps the buffer it sealed its last message into
/// for its next one (the default: yes). A process under a small memory
/// budget turns it off, to hold no buffer between messages at all; each
/// message is then sealed into a buffer of its own, freed once sent.
pub fn keep_seal_buffers(keep: bool) {
    KEEP_SEAL_BUFFERS.store(keep, Ordering::Relaxed);
}

/// An empty buffer to seal a message of `sealed` bytes into: this
/// thread's spare if it may keep the buffer afterwards, a new one if not.
fn take_seal_buffer(sealed: usize) -> Vec<u8> {
    if !KEEP_SEAL_BUFFERS.load(Ordering::Relaxed) {
        // One kept before it was turned off goes now.
        drop(SEAL_SPARE.with(Cell::take));
        return Vec::new();
    }
    if sealed > SEAL_SPARE_MAX {
        return Vec::new();
    }
    let mut out = SEAL_SPARE.with(Cell::take);
    out.clear();
    out
}

/// Keep `out` as this thread's sealing buffer if it is not too large and
/// larger than the one kept.
fn keep_seal_buffer(out: Vec<u8>) {
    if out.capacity() > SEAL_SPARE_MAX || !KEEP_SEAL_BUFFERS.load(Ordering::Relaxed) {
        return;
    }
    SEAL_SPARE.with(|spare| {
        let kept = spare.take();
        spare.set(if kept.capacity() >= out.capacity() {
            kept
        } else {
            out
        });
    });
}

/// An established, authenticated, encrypted session.
#[derive(Debug)]
pub struct Session<S> {
    stream: S,
    transport: Transport,
    peer: NodeId,
    max_message: usize,
    /// The next frame's length, or the first byte of it, when it arrived
    /// with the last frame's body.
    ahead: Ahead,
}

/// Up to two bytes read past a frame: the start of the next one.
#[derive(Debug, Default, Clone, Copy)]
struct Ahead {
    bytes: [u8; 2],
    len: u8,
}

/// Read a frame's 2-byte length; [`SessionError::MalformedFrame`] unless
/// it is 1 to `max`, [`SessionError::Closed`] at the end of the stream.
async fn read_len<S: AsyncRead + Unpin>(stream: &mut S, max: usize) -> Result<usize, SessionError> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(SessionError::Closed)
        }
        Err(e) => return Err(e.into()),
    }
    let len = u16::from_be_bytes(len) as usize;
    if len == 0 || len > max {
        return Err(SessionError::MalformedFrame);
    }
    Ok(len)
}

/// Append `len` bytes of `stream` to `buf`, read into its spare capacity
/// (no zeroing of bytes about to be overwritten).
async fn read_onto<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<(), SessionError> {
    let end = buf.len() + len;
    buf.reserve(len);
    while buf.len() < end {
        let want = end - buf.len();
        match stream.read_buf(&mut (&mut *buf).limit(want)).await {
            Ok(0) => return Err(SessionError::Closed),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> Result<Vec<u8>, SessionError> {
    let len = read_len(stream, max).await?;
    let mut frame = Vec::with_capacity(len);
    read_onto(stream, &mut frame, len).await?;
    Ok(frame)
}

async fn with_deadline<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| SessionError::HandshakeTimeout)?
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Run the initiator's handshake to `remote` over `stream`. Returns the
    /// session and the peer's verified record (the session itself keeps only
    /// the peer's id, to stay small while idle).
    ///
    /// # Errors
    /// [`SessionError::HandshakeTimeout`] past `cfg.handshake_timeout`; any
    /// handshake error of [`InitiatorHandshake`].
    pub async fn connect(
        mut stream: S,
        local: &Identity,
        local_record: &SignedRecord,
        remote: NodeId,
        cfg: &SessionConfig,
    ) -> Result<(Self, SignedRecord), SessionError> {
        with_deadline(cfg.handshake_timeout, async {
            let (hs, first) = InitiatorHandshake::start(local, local_record, remote, cfg)?;
            stream.write_all(&first).await?;
            drop(first);
            let reply = read_frame(&mut stream, MAX_HANDSHAKE_LEN).await?;
            let (transport, record) = hs.finish(&reply)?;
            Ok(Self::established(stream, transport, record, cfg))
        })
        .await
    }

    /// Run the responder's handshake over an accepted `stream`. Returns the
    /// session and the initiator's verified record.
    ///
    /// # Errors
    /// [`SessionError::HandshakeTimeout`] past `cfg.handshake_timeout`; any
    /// handshake error of [`ResponderHandshake`].
    pub async fn accept(
        mut stream: S,
        local: &Identity,
        local_record: &SignedRecord,
        cfg: &SessionConfig,
    ) -> Result<(Self, SignedRecord), SessionError> {
        with_deadline(cfg.handshake_timeout, async {
            let len = read_len(&mut stream, MAX_HANDSHAKE_LEN).await?;
            Self::respond(stream, len, local, local_record, cfg).await
        })
        .await
    }

    /// [`Session::accept`] for a driver that read the first handshake
    /// message's 2-byte length itself (to tell a handshake from another
    /// opening on the same port: storage's listings open with a
    /// zero length, which no handshake message has).
    ///
    /// # Errors
    /// As [`Session::accept`]; [`SessionError::MalformedFrame`] for a length
    /// no handshake message has.
    pub async fn accept_with_len(
        stream: S,
        len: u16,
        local: &Identity,
        local_record: &SignedRecord,
        cfg: &SessionConfig,
    ) -> Result<(Self, SignedRecord), SessionError> {
        let len = usize::from(len);
        if len == 0 || len > MAX_HANDSHAKE_LEN {
            return Err(SessionError::MalformedFrame);
        }
        with_deadline(
            cfg.handshake_timeout,
            Self::respond(stream, len, local, local_record, cfg),
        )
        .await
    }

    /// The responder's handshake once the first message's length is read.
    async fn respond(
        mut stream: S,
        len: usize,
        local: &Identity,
        local_record: &SignedRecord,
        cfg: &SessionConfig,
    ) -> Result<(Self, SignedRecord), SessionError> {
        let mut first = Vec::with_capacity(len);
        read_onto(&mut stream, &mut first, len).await?;
        let (transport, record, reply) =
            ResponderHandshake::respond(local, local_record, &first, cfg)?;
        drop(first);
        stream.write_all(&reply).await?;
        Ok(Self::established(stream, transport, record, cfg))
    }

    /// A session over `stream` once either side's handshake is done, with
    /// the peer's verified record.
    fn established(
        stream: S,
        transport: Transport,
        record: SignedRecord,
        cfg: &SessionConfig,
    ) -> (Self, SignedRecord) {
        let session = Session {
            stream,
            transport,
            peer: record.node_id(),
            max_message: cfg.max_message,
            ahead: Ahead::default(),
        };
        (session, record)
    }

    /// The peer's node id, proven in the handshake.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The AEAD this session's frames are sealed with, agreed in the
    /// handshake ([`crate::noise::agreed_cipher`]).
    pub fn cipher(&self) -> crate::noise::TransportCipher {
        self.transport.cipher()
    }

    /// Send one message (split into frames as needed).
    ///
    /// # Errors
    /// [`SessionError::MessageTooLarge`] or an I/O error.
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), SessionError> {
        self.send_parts(&[msg]).await
    }

    /// Send the concatenation of `parts` as one message, without joining
    /// them first (a header and a payload, say).
    ///
    /// # Errors
    /// [`SessionError::MessageTooLarge`] or an I/O error.
    pub async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), SessionError> {
        let total = parts.iter().map(|p| p.len()).sum();
        let mut out = take_seal_buffer(crate::noise::sealed_len(total));
        self.transport
            .seal_parts(parts, self.max_message, &mut out)?;
        self.stream.write_all(&out).await?;
        // On whichever thread the write ended (a task may move).
        keep_seal_buffer(out);
        Ok(())
    }

    /// Receive one whole message. A message of one frame is decrypted in
    /// the buffer it was read into and returned as is. A longer one is
    /// assembled in one buffer: each further frame is read onto its end and
    /// decrypted there, so only the first fragment is ever copied.
    ///
    /// # Errors
    /// [`SessionError::Closed`] when the peer closed cleanly between
    /// messages; [`SessionError::Decrypt`], [`SessionError::MalformedFrame`],
    /// [`SessionError::MessageTooLarge`] or I/O errors otherwise.
    pub async fn recv(&mut self) -> Result<Vec<u8>, SessionError> {
        self.recv_expecting(0).await
    }

    /// [`Session::recv`] of a message the caller expects to be about
    /// `expect` bytes (the answer to a read of a block, say; 0 when it
    /// cannot tell). The buffer is then sized for it from the first frame
    /// on: no 64 KiB fragment is copied into a larger buffer and no
    /// megabyte is reserved for a 341 KiB block (a download holds many).
    /// Only a hint: it is capped at the session's largest message, and a
    /// message of another size is received all the same, in a buffer
    /// that grows as it arrives.
    ///
    /// # Errors
    /// As [`Session::recv`].
    pub async fn recv_expecting(&mut self, expect: usize) -> Result<Vec<u8>, SessionError> {
        let too_large = |size, max| SessionError::MessageTooLarge { size, max };
        let len = self.frame_len().await?;
        let size = len.saturating_sub(TAG_LEN + 1);
        if size > self.max_message {
            return Err(too_large(size, self.max_message));
        }
        // Room for the whole message's plaintext plus the frame being
        // opened at its end (its flag byte and tag), and the next frame's
        // length read with it.
        let room = if expect > 0 {
            expect.min(self.max_message).saturating_add(TAG_LEN + 1)
        } else {
            0
        };
        let mut msg = Vec::with_capacity(len.max(room).saturating_add(2));
        self.frame_onto(&mut msg, len).await?;
        if self.transport.open_in_place(&mut msg)? {
            return Ok(msg);
        }
        if expect == 0 {
            // The first of several fragments of a message of unknown size:
            // room for a typical large message (a storage block) up
            // front, so the rest are read into place without
            // reallocating. Only pages written become resident, so a peer
            // that stops mid-message costs what it sent, not the
            // reservation.
            msg.reserve(
                MESSAGE_RESERVE
                    .min(self.max_message)
                    .saturating_sub(msg.len()),
            );
        }
        loop {
            let start = msg.len();
            let len = self.frame_len().await?;
            let size = start + len.saturating_sub(TAG_LEN + 1);
            if size > self.max_message {
                return Err(too_large(size, self.max_message));
            }
            self.frame_onto(&mut msg, len).await?;
            if self.transport.open_tail(&mut msg, start)? {
                return Ok(msg);
            }
        }
    }

    /// The next frame's length (1 to [`MAX_FRAME_LEN`]), from what was
    /// read ahead and the stream. [`SessionError::Closed`] at the end of
    /// the stream, [`SessionError::MalformedFrame`] for a bad length.
    async fn frame_len(&mut self) -> Result<usize, SessionError> {
        let have = usize::from(self.ahead.len);
        let mut len = self.ahead.bytes;
        if have < 2 {
            match self.stream.read_exact(&mut len[have..]).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(SessionError::Closed)
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.ahead.len = 0;
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 || len > MAX_FRAME_LEN {
            return Err(SessionError::MalformedFrame);
        }
        Ok(len)
    }

    /// Append a frame's `len` bytes to `buf`, reading as far as the next
    /// frame's length when it is already there (kept for
    /// [`Session::frame_len`]): one read per frame where there were two.
    /// Never waits for more than the frame.
    async fn frame_onto(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<(), SessionError> {
        let end = buf.len() + len;
        buf.reserve(len + 2);
        while buf.len() < end {
            let want = end + 2 - buf.len();
            match self.stream.read_buf(&mut (&mut *buf).limit(want)).await {
                Ok(0) => return Err(SessionError::Closed),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let extra = buf.len() - end;
        self.ahead.bytes[..extra].copy_from_slice(&buf[end..]);
        self.ahead.len = extra as u8;
        buf.truncate(end);
        Ok(())
    }

    /// Flush and shut down the write half.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn shutdown(&mut self) -> Result<(), SessionError> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{record_for, rng};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use tokio::net::{TcpListener, TcpStream};

    fn node(seed: u64) -> (Identity, SignedRecord) {
        let id = Identity::generate_with(&mut rng(seed));
        let rec = record_for(&id, "127.0.0.1:9").sign(&id).unwrap();
        (id, rec)
    }

    /// A node whose record offers the given feature bits.
    fn node_with(seed: u64, features: u8) -> (Identity, SignedRecord) {
        let id = Identity::generate_with(&mut rng(seed));
        let mut rec = record_for(&id, "127.0.0.1:9");
        rec.roles = crate::record::ROLE_STORAGE | crate::record::ROLE_CLIENT | features;
        let rec = rec.sign(&id).unwrap();
        (id, rec)
    }

    /// Nodes 1 and 2 with a session over `a` and `b` (the two ends of one
    /// pipe): (node 1's end, node 2's end).
    async fn connected<A, B>(a: A, b: B, cfg: &SessionConfig) -> (Session<A>, Session<B>)
    where
        A: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (ia, ra) = node(1);
        let (ib, rb) = node(2);
        let b_id = rb.node_id();
        let accept = tokio::spawn({
            let cfg = cfg.clone();
            async move { Session::accept(b, &ib, &rb, &cfg).await }
        });
        let (client, _) = Session::connect(a, &ia, &ra, b_id, cfg).await.unwrap();
        let (server, _) = accept.await.unwrap().unwrap();
        (client, server)
    }

    /// A round trip over TCP, for every pair of records' offers: the
    /// session is sealed with AES-256-GCM exactly when both offer it, and
    /// both ends agree (a disagreement could not open a single frame).
    #[tokio::test]
    async fn tcp_session_round_trip() {
        use crate::noise::TransportCipher::{AesGcm, ChaChaPoly};
        use crate::record::FEATURE_AES_GCM as AES;
        for (fa, fb, want) in [
            (AES, AES, AesGcm),
            (AES, 0, ChaChaPoly),
            (0, AES, ChaChaPoly),
            (0, 0, ChaChaPoly),
        ] {
            let (ia, ra) = node_with(1, fa);
            let (ib, rb) = node_with(2, fb);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let cfg = SessionConfig::default();
            let b_id = rb.node_id();
            let server = tokio::spawn({
                let cfg = cfg.clone();
                async move {
                    let (s, _) = listener.accept().await.unwrap();
                    let (mut sess, rec) = Session::accept(s, &ib, &rb, &cfg).await.unwrap();
                    let peer = sess.peer();
                    assert_eq!(rec.node_id(), peer);
                    let m = sess.recv().await.unwrap();
                    sess.send(&m).await.unwrap();
                    (peer, sess.cipher())
                }
            });
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sess, _) = Session::connect(stream, &ia, &ra, b_id, &cfg)
                .await
                .unwrap();
            assert_eq!(sess.cipher(), want, "offers {fa:#x} and {fb:#x}");
            let big = vec![7u8; 300_000];
            sess.send(&big).await.unwrap();
            assert_eq!(sess.recv().await.unwrap(), big);
            assert_eq!(server.await.unwrap(), (ia.node_id(), want));
        }
    }

    /// A message received with its size expected lands in a buffer of
    /// that size, with room for a tag and the next length (not the
    /// megabyte reserved for a message of unknown size, nor a first
    /// fragment's buffer copied into a larger one); a wrong or absurd hint
    /// still receives the message whole.
    #[tokio::test]
    async fn an_expected_size_sizes_the_receive_buffer() {
        let cfg = SessionConfig::default();
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut client, mut server) = connected(a, b, &cfg).await;
        let msg: Vec<u8> = (0..349_211u32).map(|i| (i % 251) as u8).collect();
        let sender = tokio::spawn(async move {
            for _ in 0..4 {
                client.send(&msg).await.unwrap();
            }
            msg
        });
        let exact = server.recv_expecting(349_211).await.unwrap();
        assert!(
            exact.capacity() <= 349_211 + TAG_LEN + 1 + 2,
            "{} bytes reserved",
            exact.capacity()
        );
        let unknown = server.recv().await.unwrap();
        assert!(unknown.capacity() >= MESSAGE_RESERVE.min(cfg.max_message));
        let short = server.recv_expecting(1000).await.unwrap();
        let absurd = server.recv_expecting(usize::MAX).await.unwrap();
        let msg = sender.await.unwrap();
        for got in [&exact, &unknown, &short, &absurd] {
            assert!(got == &msg);
        }
    }

    /// A thread seals its next message into the buffer its last one was
    /// sealed into, as long as that one is not larger than
    /// [`SEAL_SPARE_MAX`]; it keeps one buffer, never more.
    #[tokio::test(flavor = "current_thread")]
    async fn a_thread_reuses_its_sealing_buffer() {
        let cfg = SessionConfig::default();
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut client, mut server) = connected(a, b, &cfg).await;
        let spare = || {
            SEAL_SPARE.with(|s| {
                let v = s.take();
                let at = (v.as_ptr(), v.capacity());
                s.set(v);
                at
            })
        };
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(server.recv().await.unwrap().len());
            }
            got
        });
        client.send(&[1u8; 300_000]).await.unwrap();
        let (first, cap) = spare();
        assert!((300_000..=SEAL_SPARE_MAX).contains(&cap), "{cap}");
        client.send(&[2u8; 200_000]).await.unwrap();
        assert_eq!(spare(), (first, cap), "the same buffer again");
        // A larger message than a thread keeps: sent, not kept.
        client.send(&vec![3u8; 900_000]).await.unwrap();
        assert_eq!(spare(), (first, cap));
        client.send(&[4u8; 10]).await.unwrap();
        assert_eq!(spare(), (first, cap));
        // Told not to keep one, a thread keeps none.
        keep_seal_buffers(false);
        client.send(&[5u8; 100_000]).await.unwrap();
        keep_seal_buffers(true);
        assert_eq!(spare().1, 0, "a buffer was kept");
        assert_eq!(
            reader.await.unwrap(),
            [300_000, 200_000, 900_000, 10, 100_000]
        );
    }

    /// A stream that counts the reads that return data and returns at
    /// most `max_read` bytes from each.
    struct Trickle<S> {
        inner: S,
        max_read: usize,
        reads: Arc<AtomicUsize>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let max = self.max_read.min(buf.remaining());
            let mut part = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(max));
            let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut part);
            let n = part.filled().len();
            if n > 0 {
                self.reads.fetch_add(1, Ordering::Relaxed);
            }
            buf.advance(n);
            r
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Trickle<S> {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// The receiver reads each frame's body together with the next
    /// frame's length when it is there (one read per frame, not two), and
    /// still frames correctly when reads stop anywhere: in a length, in a
    /// body, one byte short of the next length.
    #[tokio::test]
    async fn frames_are_read_with_the_next_length() {
        let msgs: Vec<Vec<u8>> = [200_000usize, 5, 65_519, 131_000, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let frames: usize = msgs
            .iter()
            .map(|m| m.len().div_ceil(crate::noise::MAX_FRAGMENT).max(1))
            .sum();
        for max_read in [usize::MAX, 1, 3, 65_536, 65_537] {
            let (a, b) = tokio::io::duplex(4 << 20);
            let reads = Arc::new(AtomicUsize::new(0));
            let b = Trickle {
                inner: b,
                max_read: usize::MAX,
                reads: reads.clone(),
            };
            let (mut client, mut server) = connected(a, b, &SessionConfig::default()).await;
            server.stream.max_read = max_read;
            for m in &msgs {
                client.send(m).await.unwrap();
            }
            let before = reads.load(Ordering::Relaxed);
            for m in &msgs {
                assert!(&server.recv().await.unwrap() == m, "reads of {max_read}");
            }
            let n = reads.load(Ordering::Relaxed) - before;
            if max_read == usize::MAX {
                // Everything was there: the first length, then each frame
                // with the next one's length.
                assert_eq!(n, frames + 1);
            }
            drop(client);
            assert!(matches!(server.recv().await, Err(SessionError::Closed)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_hits_handshake_deadline() {
        let (ib, rb) = node(2);
        let (_client_end, server_end) = tokio::io::duplex(1024);
        let cfg = SessionConfig::default();
        let r = Session::accept(server_end, &ib, &rb, &cfg).await;
        assert!(matches!(r, Err(SessionError::HandshakeTimeout)));
    }

    #[tokio::test]
    async fn oversized_and_garbage_frames_are_errors() {
        let cfg = SessionConfig {
            max_message: 1000,
            ..SessionConfig::default()
        };
        let (a, b) = tokio::io::duplex(1 << 20);
        let (mut client, mut server) = connected(a, b, &cfg).await;
        assert!(matches!(
            client.send(&[0u8; 1001]).await,
            Err(SessionError::MessageTooLarge { .. })
        ));
        // Bypass the sender's check: garbage on the wire.
        client.stream.write_all(&[0, 20]).await.unwrap();
        client.stream.write_all(&[9u8; 20]).await.unwrap();
        assert!(matches!(server.recv().await, Err(SessionError::Decrypt)));
        client.stream.write_all(&[0, 0]).await.unwrap();
        assert!(matches!(
            server.recv().await,
            Err(SessionError::MalformedFrame)
        ));
        drop(client);
        assert!(matches!(server.recv().await, Err(SessionError::Closed)));
    }

    #[tokio::test]
    async fn oversized_handshake_frame_is_refused_without_reading_it() {
        let (ib, rb) = node(2);
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[0xff, 0xff]).await.unwrap();
        let r = Session::accept(b, &ib, &rb, &SessionConfig::default()).await;
        assert!(matches!(r, Err(SessionError::MalformedFrame)));
    }

    #[tokio::test]
    async fn closed_grids_refuse_unadmitted_peers_on_both_sides() {
        use crate::admission::{Admission, GridId};
        let grid_key = Identity::generate_with(&mut rng(50));
        let grid = GridId::of(&grid_key);
        let member = |seed: u64, admitted: bool| {
            let id = Identity::generate_with(&mut rng(seed));
            let mut r = record_for(&id, "127.0.0.1:9");
            if admitted {
                r.admission = Some(Box::new(Admission::issue(&grid_key, &id.node_id(), 0)));
            }
            let rec = r.sign(&id).unwrap();
            (id, rec)
        };
        let closed = SessionConfig {
            grid: Some(grid),
            ..SessionConfig::default()
        };
        let run = |client: (Identity, SignedRecord),
                   server: (Identity, SignedRecord),
                   ccfg: SessionConfig,
                   scfg: SessionConfig| async move {
            let (a, b) = tokio::io::duplex(1 << 16);
            let sid = server.1.node_id();
            let accept = tokio::spawn(async move {
                Session::accept(b, &server.0, &server.1, &scfg)
                    .await
                    .map(|_| ())
            });
            let c = Session::connect(a, &client.0, &client.1, sid, &ccfg)
                .await
                .map(|_| ());
            (c, accept.await.unwrap())
        };
        // Both admitted: a session.
        let (c, s) = run(
            member(1, true),
            member(2, true),
            closed.clone(),
            closed.clone(),
        )
        .await;
        assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");
        // An unadmitted client is refused by a closed server, which never
        // answers it.
        let (c, s) = run(
            member(3, false),
            member(4, true),
            SessionConfig::default(),
            closed.clone(),
        )
        .await;
        assert!(matches!(s, Err(SessionError::NotAdmitted(..))), "{s:?}");
        assert!(c.is_err());
        // A closed client refuses an unadmitted server.
        let (c, _) = run(
            member(5, true),
            member(6, false),
            closed.clone(),
            SessionConfig::default(),
        )
        .await;
        assert!(matches!(c, Err(SessionError::NotAdmitted(..))), "{c:?}");
        // A certificate from another grid key does not count.
        let other = Identity::generate_with(&mut rng(51));
        let id = Identity::generate_with(&mut rng(7));
        let mut r = record_for(&id, "127.0.0.1:9");
        r.admission = Some(Box::new(Admission::issue(&other, &id.node_id(), 0)));
        let rec = r.sign(&id).unwrap();
        let (_, s) = run((id, rec), member(8, true), closed.clone(), closed).await;
        assert!(matches!(s, Err(SessionError::NotAdmitted(..))), "{s:?}");
    }

    #[tokio::test]
    async fn garbage_handshake_is_refused() {
        let (ib, rb) = node(2);
        let (mut a, b) = tokio::io::duplex(1024);
        let cfg = SessionConfig::default();
        a.write_all(&[0, 100]).await.unwrap();
        a.write_all(&[1u8; 100]).await.unwrap();
        let r = Session::accept(b, &ib, &rb, &cfg).await;
        assert!(matches!(r, Err(SessionError::HandshakeFailed)));
    }
}
