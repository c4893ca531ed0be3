//! The storage client: upload, download and check over sessions.
//!
//! Servers are given as [`ServerRef`]s (node id and address, from
//! membership); the client orders them by the permuted list for the file's
//! storage index, so uploader and downloader agree on where to look, and
//! talks only to as many of them as it needs. Sessions come from a
//! [`SessionPool`] (opened on demand, reused, capped, closed when idle).
//!
//! Requests are pipelined: a [`Conn`] keeps up to [`MAX_IN_FLIGHT`]
//! requests outstanding (the server answers in order), so a server is never
//! idle waiting for the client's next request. An upload runs one task per
//! server fed with encoded segments through a bounded channel; a download
//! keeps [`READ_AHEAD`] segments requested on each share while the previous
//! segment is checked and decoded on the blocking pool.

use std::collections::VecDeque;

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

use grapevine_crypto::placement::permutation_key;
use grapevine_crypto::{Identity, NodeId, Session, SessionConfig, SessionError, SignedRecord};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cap::{Cap, ReadCap, LIT_MAX};
use crate::chk::{
    convergent_key, storage_index, Decoder, Encoder, Footer, Params, FOOTER_LEN, SEGMENT_SIZE,
};
use crate::error::CodecError;
use crate::pool::SessionPool;
use crate::protocol::{
    decode_borrowed, encode, write_header, ErrorCode, Reply, Request, RequestMsg, ResponseMsg,
    MAX_READ, MAX_WRITE,
};
use crate::store::StorageIndex;

/// Requests a connection keeps outstanding before it waits for an answer.
pub const MAX_IN_FLIGHT: usize = 8;
/// Segments a download keeps requested ahead of the one it is decoding.
pub const READ_AHEAD: u64 = 4;
/// Encoded segments queued for each server's upload task.
const UPLOAD_QUEUE: usize = 2;

/// A storage server as membership knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRef {
    /// Its node id (and so its session key).
    pub id: NodeId,
    /// Where its sessions listen.
    pub addr: SocketAddr,
}

/// Errors of client operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A session failed.
    #[error("session to {0}: {1}")]
    Session(String, SessionError),
    /// A server refused a request.
    #[error("server {server}: {code:?}: {message}")]
    Server {
        /// The server.
        server: String,
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// A server answered with something unexpected.
    #[error("server {0} answered out of protocol: {1}")]
    Protocol(String, String),
    /// Encoding or verification failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Fewer distinct servers than `happy` took shares; the upload failed.
    #[error("only {got} distinct servers accepted shares, {happy} needed")]
    NotHappy {
        /// Servers that hold shares.
        got: usize,
        /// Servers needed.
        happy: usize,
    },
    /// Every session of the pool stayed in use for the pool's wait time.
    #[error("all {0} sessions of the pool are in use")]
    PoolExhausted(usize),
    /// Local file I/O.
    #[error("local i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Who the client is, for opening sessions.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Its identity.
    pub identity: Arc<Identity>,
    /// Its signed record (presented in handshakes).
    pub record: SignedRecord,
    /// Session settings.
    pub session: SessionConfig,
}

/// One session to one server, carrying pipelined requests.
#[derive(Debug)]
pub struct Conn {
    server: ServerRef,
    session: Session<TcpStream>,
    next_id: u32,
    in_flight: VecDeque<u32>,
    broken: bool,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Conn {
    /// Open a session to `server` (outside any pool).
    ///
    /// # Errors
    /// [`ClientError::Session`] if it cannot be reached or authenticated.
    pub async fn open(me: &ClientIdentity, server: ServerRef) -> Result<Self, ClientError> {
        let err = |e| ClientError::Session(server.id.short(), e);
        let stream = tokio::time::timeout(
            me.session.handshake_timeout,
            TcpStream::connect(server.addr),
        )
        .await
        .map_err(|_| err(SessionError::HandshakeTimeout))?
        .map_err(|e| err(SessionError::Io(e)))?;
        let _ = stream.set_nodelay(true);
        let (session, _) =
            Session::connect(stream, &me.identity, &me.record, server.id, &me.session)
                .await
                .map_err(err)?;
        Ok(Conn {
            server,
            session,
            next_id: 1,
            in_flight: VecDeque::new(),
            broken: false,
            _slot: None,
        })
    }

    /// Attach a pool slot, released when the connection is dropped.
    pub(crate) fn with_slot(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }

    /// The server this connection talks to.
    pub fn server(&self) -> ServerRef {
        self.server
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the session can be reused: nothing failed and nothing is
    /// outstanding.
    pub fn is_reusable(&self) -> bool {
        !self.broken && self.in_flight.is_empty()
    }

    fn session_err(&mut self, e: SessionError) -> ClientError {
        self.broken = true;
        ClientError::Session(self.server.id.short(), e)
    }

    async fn send_parts(&mut self, id: u32, parts: &[&[u8]]) -> Result<(), ClientError> {
        if let Err(e) = self.session.send_parts(parts).await {
            return Err(self.session_err(e));
        }
        self.in_flight.push_back(id);
        Ok(())
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Send a request without waiting for its answer.
    ///
    /// # Errors
    /// [`ClientError::Session`].
    pub async fn send(&mut self, req: Request) -> Result<(), ClientError> {
        let id = self.take_id();
        self.send_parts(id, &[&encode(&RequestMsg { id, req })])
            .await
    }

    /// Send a write of `data` (at most [`MAX_WRITE`] bytes) without copying
    /// it into a request first, and without waiting for its answer.
    ///
    /// # Errors
    /// [`ClientError::Session`].
    pub async fn send_write(
        &mut self,
        si: StorageIndex,
        shnum: u16,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let id = self.take_id();
        let head = write_header(id, si, shnum, offset, data.len());
        self.send_parts(id, &[&head, data]).await
    }

    /// Receive the answer to the oldest outstanding request.
    ///
    /// # Errors
    /// [`ClientError::Session`], [`ClientError::Protocol`] (including an
    /// answer when nothing was asked) or [`ClientError::Server`] for an
    /// error reply.
    pub async fn recv(&mut self) -> Result<Reply<Bytes>, ClientError> {
        let name = self.server.id.short();
        let Some(&id) = self.in_flight.front() else {
            return Err(ClientError::Protocol(name, "no request outstanding".into()));
        };
        let bytes = match self.session.recv().await {
            Ok(b) => b,
            Err(e) => return Err(self.session_err(e)),
        };
        self.in_flight.pop_front();
        // Read bytes stay where they arrived: the reply refers to them by
        // range, then shares the message buffer.
        let base = bytes.as_ptr() as usize;
        let resp = match decode_borrowed::<ResponseMsg<&[u8]>>(&bytes) {
            Ok(r) => ResponseMsg {
                id: r.id,
                reply: r.reply.map_data(|d| (d.as_ptr() as usize - base, d.len())),
            },
            Err(e) => {
                self.broken = true;
                return Err(ClientError::Protocol(name, e));
            }
        };
        let bytes = Bytes::from(bytes);
        let resp = ResponseMsg {
            id: resp.id,
            reply: resp.reply.map_data(|(at, len)| bytes.slice(at..at + len)),
        };
        if resp.id != id {
            self.broken = true;
            return Err(ClientError::Protocol(
                name,
                format!("response id {} for request {id}", resp.id),
            ));
        }
        match resp.reply {
            Reply::Error { code, message } => Err(ClientError::Server {
                server: name,
                code,
                message,
            }),
            r => Ok(r),
        }
    }

    /// Send a request and wait for its answer (after any outstanding ones).
    ///
    /// # Errors
    /// As [`Conn::send`] and [`Conn::recv`].
    pub async fn call(&mut self, req: Request) -> Result<Reply<Bytes>, ClientError> {
        self.send(req).await?;
        while self.in_flight.len() > 1 {
            self.recv().await?;
        }
        self.recv().await
    }

    /// Receive the answer to an outstanding read of `len` bytes.
    async fn recv_data(&mut self, len: u64) -> Result<Bytes, ClientError> {
        match self.recv().await? {
            Reply::Data(d) if d.len() as u64 == len => Ok(d),
            other => {
                self.broken = true;
                Err(ClientError::Protocol(
                    self.server.id.short(),
                    format!("expected {len} bytes, got {}", describe(&other)),
                ))
            }
        }
    }

    /// Receive the answer to an outstanding write or close.
    async fn recv_ok(&mut self) -> Result<(), ClientError> {
        match self.recv().await? {
            Reply::Ok => Ok(()),
            other => {
                self.broken = true;
                Err(ClientError::Protocol(
                    self.server.id.short(),
                    describe(&other),
                ))
            }
        }
    }

    /// Read `len` bytes of a share from `offset`, all chunks pipelined.
    async fn read(
        &mut self,
        si: StorageIndex,
        shnum: u16,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        // A server states sizes; never pre-allocate more than one read's
        // worth on its word.
        let mut out = Vec::with_capacity(len.min(MAX_READ as u64) as usize);
        let mut asked = 0u64;
        let mut chunks = VecDeque::new();
        while (out.len() as u64) < len {
            while asked < len && self.in_flight.len() < MAX_IN_FLIGHT {
                let chunk = (len - asked).min(MAX_READ as u64) as u32;
                self.send(Request::Read {
                    si,
                    shnum,
                    offset: offset + asked,
                    len: chunk,
                })
                .await?;
                chunks.push_back(chunk as u64);
                asked += chunk as u64;
            }
            let chunk = chunks.pop_front().expect("a read is outstanding");
            out.extend_from_slice(&self.recv_data(chunk).await?);
        }
        Ok(out)
    }
}

/// A short description of a reply (never its payload).
fn describe(r: &Reply<Bytes>) -> String {
    match r {
        Reply::Data(d) => format!("{} bytes of data", d.len()),
        other => format!("{other:?}"),
    }
}

/// Servers in permuted-list order for `si`.
pub fn permuted_servers(si: &StorageIndex, servers: &[ServerRef]) -> Vec<ServerRef> {
    let mut keyed: Vec<([u8; 32], ServerRef)> = servers
        .iter()
        .map(|s| (permutation_key(&si.0, &s.id), *s))
        .collect();
    keyed.sort_by_key(|a| a.0);
    keyed.dedup_by(|a, b| a.1.id == b.1.id);
    keyed.into_iter().map(|(_, s)| s).collect()
}

/// Where an upload put each share.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// The capability to read the file.
    pub cap: Cap,
    /// (share number, server) for each share placed.
    pub placements: Vec<(u16, NodeId)>,
    /// Distinct servers holding shares.
    pub servers: usize,
}

/// How the file's key is chosen.
#[derive(Debug, Clone, Copy)]
pub enum KeyMode {
    /// A fresh random key.
    Random,
    /// Convergent, keyed with the client's convergence secret.
    Convergent([u8; 32]),
}

async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), ClientError> {
    r.read_exact(buf).await?;
    Ok(())
}

/// What to upload and how.
#[derive(Debug)]
pub struct UploadRequest<R, H> {
    /// Erasure-coding parameters.
    pub params: Params,
    /// How the key is chosen.
    pub mode: KeyMode,
    /// File size in bytes.
    pub size: u64,
    /// The file's bytes.
    pub input: R,
    /// The same bytes again, read first to derive a convergent key (only
    /// for [`KeyMode::Convergent`]).
    pub hash_input: Option<H>,
}

/// Upload a file to `servers`.
///
/// Shares go to the first servers in permuted order that are reachable and
/// accept them (one each while there are enough servers). A server that
/// fails during the upload loses its shares; the upload still succeeds if
/// at least `params.happy` distinct servers hold shares at the end.
///
/// # Errors
/// [`ClientError::NotHappy`] if fewer than `params.happy` distinct servers
/// took shares; I/O, session and codec errors.
pub async fn upload<R, H>(
    pool: &SessionPool,
    servers: &[ServerRef],
    req: UploadRequest<R, H>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<UploadReport, ClientError>
where
    R: AsyncRead + Unpin,
    H: AsyncRead + Unpin,
{
    let UploadRequest {
        params,
        mode,
        size,
        mut input,
        hash_input,
    } = req;
    params.validate()?;
    if size as usize <= LIT_MAX {
        let mut d = vec![0u8; size as usize];
        read_full(&mut input, &mut d).await?;
        return Ok(UploadReport {
            cap: Cap::Lit(d),
            placements: vec![],
            servers: 0,
        });
    }
    let key = match mode {
        KeyMode::Random => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| std::io::Error::other(e.to_string()))?;
            k
        }
        KeyMode::Convergent(secret) => {
            let mut h = hash_input
                .ok_or_else(|| std::io::Error::other("convergent mode needs the input twice"))?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = h.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            convergent_key(&secret, &params, hasher.finalize().as_bytes())
        }
    };
    let enc = Encoder::new(key, params, size)?;
    let si = storage_index(&key);
    let Placed {
        conns,
        placement,
        existing,
    } = place_shares(pool, servers, si, params, enc.share_size()).await?;

    // One task per server writes its shares' blocks, pipelined; segments
    // reach the tasks through bounded queues while the next segment is
    // encoded on the blocking pool.
    let mut writers = Vec::new();
    let mut kept = Vec::new();
    for (ci, conn) in conns.into_iter().enumerate() {
        let shares = shares_on(&placement, ci);
        if shares.is_empty() {
            let held = shares_on(&existing, ci);
            kept.extend(held.into_iter().map(|s| (s, conn.server().id)));
            pool.put_back(conn);
            continue;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_QUEUE);
        writers.push((ci, tx, tokio::spawn(write_shares(conn, si, shares, rx))));
    }
    let happy = params.happy as usize;
    let segments = enc.segments();
    let encode_next = |mut enc: Encoder, mut buf: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let blocks = enc.encode_segment(&mut buf);
            (enc, blocks)
        })
    };
    let seg_len = |seg: u64| (size - seg * SEGMENT_SIZE).min(SEGMENT_SIZE) as usize;
    let mut buf = vec![0u8; seg_len(0)];
    read_full(&mut input, &mut buf).await?;
    let mut next = Some(encode_next(enc, buf));
    let mut offset = 0u64;
    let mut done = 0u64;
    let mut enc_back = None;
    let mut live = writers.len();
    for seg in 0..segments {
        let (e, blocks) = next
            .take()
            .expect("an encode is in flight")
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let blocks = blocks?;
        if seg + 1 < segments {
            let mut buf = vec![0u8; seg_len(seg + 1)];
            read_full(&mut input, &mut buf).await?;
            next = Some(encode_next(e, buf));
        } else {
            enc_back = Some(e);
        }
        let blen = blocks[0].len() as u64;
        live = feed_writers(&writers, offset, Arc::new(blocks)).await;
        if live < happy {
            break;
        }
        offset += blen;
        done += seg_len(seg) as u64;
        progress(done);
    }
    if live >= happy {
        let enc = enc_back.expect("encoder returned after the last segment");
        let (trailers, cap) = enc.finish()?;
        feed_writers(&writers, offset, Arc::new(trailers)).await;
        return finish_upload(
            pool,
            writers,
            &placement,
            &existing,
            kept,
            happy,
            Some(Cap::Chk(cap)),
        )
        .await;
    }
    finish_upload(pool, writers, &placement, &existing, kept, happy, None).await
}

/// A server's upload task: its session index, its queue and its handle.
type Writer = (
    usize,
    tokio::sync::mpsc::Sender<(u64, Arc<Vec<Vec<u8>>>)>,
    tokio::task::JoinHandle<(Conn, Result<(), ClientError>)>,
);

/// Give every live writer the blocks at `offset`; returns how many distinct
/// servers are still writing.
async fn feed_writers(writers: &[Writer], offset: u64, blocks: Arc<Vec<Vec<u8>>>) -> usize {
    let mut live = 0;
    for (_, tx, _) in writers {
        if tx.send((offset, blocks.clone())).await.is_ok() {
            live += 1;
        }
    }
    live
}

/// Close the writers' queues, collect their results and return their
/// sessions to the pool. `cap` is `None` if the upload was cut short.
async fn finish_upload(
    pool: &SessionPool,
    writers: Vec<Writer>,
    placement: &[(u16, usize)],
    existing: &[(u16, usize)],
    kept: Vec<(u16, NodeId)>,
    happy: usize,
    cap: Option<Cap>,
) -> Result<UploadReport, ClientError> {
    // Servers that already held shares and were given nothing to write.
    let mut servers = {
        let mut ids: Vec<NodeId> = kept.iter().map(|k| k.1).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let mut placements = kept;
    let mut first_err = None;
    for (ci, tx, task) in writers {
        drop(tx);
        let (conn, r) = task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        match r {
            Ok(()) => {
                let mut mine = shares_on(placement, ci);
                mine.extend(shares_on(existing, ci));
                servers += 1;
                placements.extend(mine.into_iter().map(|s| (s, conn.server().id)));
            }
            Err(e) => {
                tracing::warn!(server = %conn.server().id.short(), "server lost during upload: {e}");
                first_err.get_or_insert(e);
            }
        }
        pool.put_back(conn);
    }
    match cap {
        Some(cap) if servers >= happy => {
            placements.sort_unstable_by_key(|p| p.0);
            Ok(UploadReport {
                cap,
                placements,
                servers,
            })
        }
        _ => {
            if let Some(e) = first_err {
                tracing::warn!("upload failed after losing servers; first failure: {e}");
            }
            Err(ClientError::NotHappy {
                got: servers,
                happy,
            })
        }
    }
}

/// A server's upload task: write `shares`' blocks as they arrive, keeping
/// up to [`MAX_IN_FLIGHT`] writes outstanding, then close the shares.
async fn write_shares(
    mut conn: Conn,
    si: StorageIndex,
    shares: Vec<u16>,
    mut rx: tokio::sync::mpsc::Receiver<(u64, Arc<Vec<Vec<u8>>>)>,
) -> (Conn, Result<(), ClientError>) {
    let r = async {
        while let Some((offset, blocks)) = rx.recv().await {
            for &shnum in &shares {
                let block = &blocks[shnum as usize];
                for (i, chunk) in block.chunks(MAX_WRITE).enumerate() {
                    while conn.in_flight() >= MAX_IN_FLIGHT {
                        conn.recv_ok().await?;
                    }
                    let at = offset + (i * MAX_WRITE) as u64;
                    conn.send_write(si, shnum, at, chunk).await?;
                }
            }
        }
        for &shnum in &shares {
            conn.send(Request::Close { si, shnum }).await?;
        }
        while conn.in_flight() > 0 {
            conn.recv_ok().await?;
        }
        Ok(())
    }
    .await;
    (conn, r)
}

/// Open sessions to the first servers in permuted order and allocate the
/// shares on them.
async fn place_shares(
    pool: &SessionPool,
    servers: &[ServerRef],
    si: StorageIndex,
    params: Params,
    share_size: u64,
) -> Result<Placed, ClientError> {
    let n = params.n as usize;
    let mut order = permuted_servers(&si, servers).into_iter();
    let mut conns: Vec<Conn> = Vec::new();
    // Open up to n sessions, a batch at a time, skipping unreachable servers.
    while conns.len() < n {
        let batch: Vec<ServerRef> = order.by_ref().take(n - conns.len()).collect();
        if batch.is_empty() {
            break;
        }
        for r in futures::future::join_all(batch.into_iter().map(|s| pool.get(s))).await {
            match r {
                Ok(c) => conns.push(c),
                Err(e) => tracing::warn!("skipping server: {e}"),
            }
        }
    }
    // Share i goes to the next session (round robin) that accepts it. A
    // server out of space is not asked again; when every session has been
    // tried for a share, the next server in permuted order is. A server
    // that already holds the share (a convergent re-upload) keeps it.
    let mut full = vec![false; conns.len()];
    let mut placement: Vec<(u16, usize)> = Vec::new();
    let mut existing: Vec<(u16, usize)> = Vec::new();
    let mut next = 0usize;
    for shnum in 0..params.n {
        let mut tried = vec![false; conns.len()];
        loop {
            let candidate = (0..conns.len())
                .map(|a| (next + a) % conns.len())
                .find(|&c| !full[c] && !tried[c]);
            let c = match candidate {
                Some(c) => c,
                None => match open_next(pool, &mut order).await {
                    Some(conn) => {
                        conns.push(conn);
                        full.push(false);
                        tried.push(false);
                        conns.len() - 1
                    }
                    None => {
                        tracing::warn!(shnum, "no server took this share");
                        break;
                    }
                },
            };
            tried[c] = true;
            let r = conns[c]
                .call(Request::Allocate {
                    si,
                    shnum,
                    size: share_size,
                })
                .await;
            match r {
                Ok(_) => {
                    placement.push((shnum, c));
                    next = c + 1;
                    break;
                }
                Err(ClientError::Server {
                    code: ErrorCode::AlreadyExists,
                    ..
                }) => {
                    existing.push((shnum, c));
                    next = c + 1;
                    break;
                }
                Err(e) => {
                    tracing::warn!(shnum, "allocation refused: {e}");
                    if matches!(
                        e,
                        ClientError::Server {
                            code: ErrorCode::NoSpace,
                            ..
                        }
                    ) {
                        full[c] = true;
                    }
                }
            }
        }
    }
    let distinct = (0..conns.len())
        .filter(|&c| placement.iter().chain(&existing).any(|p| p.1 == c))
        .count();
    if distinct < params.happy as usize {
        for c in conns {
            pool.put_back(c);
        }
        return Err(ClientError::NotHappy {
            got: distinct,
            happy: params.happy as usize,
        });
    }
    Ok(Placed {
        conns,
        placement,
        existing,
    })
}

/// Where [`place_shares`] put the shares.
struct Placed {
    /// Sessions opened, by index.
    conns: Vec<Conn>,
    /// (share number, session index) of each share to write.
    placement: Vec<(u16, usize)>,
    /// (share number, session index) of shares the server already held.
    existing: Vec<(u16, usize)>,
}

/// A session to the next reachable server of `order`.
async fn open_next(
    pool: &SessionPool,
    order: &mut impl Iterator<Item = ServerRef>,
) -> Option<Conn> {
    for s in order.by_ref() {
        match pool.get(s).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!("skipping server: {e}"),
        }
    }
    None
}

/// Share numbers placed on connection `ci`.
fn shares_on(placement: &[(u16, usize)], ci: usize) -> Vec<u16> {
    placement
        .iter()
        .filter(|p| p.1 == ci)
        .map(|p| p.0)
        .collect()
}

/// A share found on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Share number.
    pub shnum: u16,
    /// Its size.
    pub size: u64,
    /// The server.
    pub server: ServerRef,
}

/// Ask servers, in permuted order and `n` at a time, which shares of `si`
/// they hold. Stops once all `n` share numbers are found, or once at least
/// `k` are found and `2n` servers have been asked (shares live on the first
/// servers in permuted order unless some were down at upload time), so a
/// client in a large grid asks only a few servers.
pub async fn locate(
    pool: &SessionPool,
    servers: &[ServerRef],
    si: StorageIndex,
    k: u16,
    n: u16,
) -> Vec<Located> {
    let mut out: Vec<Located> = Vec::new();
    let mut order = permuted_servers(&si, servers).into_iter();
    let mut asked = 0usize;
    let batch_size = (n as usize).max(1);
    loop {
        let distinct = {
            let mut v: Vec<u16> = out.iter().map(|l| l.shnum).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        if distinct >= n as usize || (distinct >= k as usize && asked >= 2 * n as usize) {
            break;
        }
        let batch: Vec<ServerRef> = order.by_ref().take(batch_size).collect();
        if batch.is_empty() {
            break;
        }
        asked += batch.len();
        let answers = futures::future::join_all(batch.into_iter().map(|s| async move {
            let mut c = pool.get(s).await.ok()?;
            let r = c.call(Request::List { si }).await;
            pool.put_back(c);
            match r {
                Ok(Reply::Shares(v)) => Some((s, v)),
                _ => None,
            }
        }))
        .await;
        for (s, v) in answers.into_iter().flatten() {
            out.extend(v.into_iter().map(|(shnum, size)| Located {
                shnum,
                size,
                server: s,
            }));
        }
    }
    out
}

/// What a download did.
#[derive(Debug, Clone, Default)]
pub struct DownloadReport {
    /// Bytes written.
    pub bytes: u64,
    /// Shares skipped as corrupt.
    pub corrupt: Vec<(u16, NodeId)>,
}

struct Source {
    conn: Conn,
    shnum: u16,
}

async fn open_source(
    pool: &SessionPool,
    loc: &Located,
    si: StorageIndex,
    dec: &mut Option<Decoder>,
    cap: &ReadCap,
) -> Result<Source, ClientError> {
    let mut conn = pool.get(loc.server).await?;
    let r = read_share_meta(&mut conn, loc, si, dec, cap).await;
    match r {
        Ok(()) => Ok(Source {
            conn,
            shnum: loc.shnum,
        }),
        Err(e) => {
            pool.put_back(conn);
            Err(e)
        }
    }
}

/// Read a share's footer, the UEB (once per download) and its hash list,
/// checking each against the capability.
async fn read_share_meta(
    conn: &mut Conn,
    loc: &Located,
    si: StorageIndex,
    dec: &mut Option<Decoder>,
    cap: &ReadCap,
) -> Result<(), ClientError> {
    if loc.size < FOOTER_LEN {
        return Err(CodecError::CorruptShare(loc.shnum).into());
    }
    let footer_bytes = conn
        .read(si, loc.shnum, loc.size - FOOTER_LEN, FOOTER_LEN)
        .await?;
    let footer =
        Footer::parse(&footer_bytes, loc.size).map_err(|_| CodecError::CorruptShare(loc.shnum))?;
    if dec.is_none() {
        let ueb = conn
            .read(si, loc.shnum, footer.ueb_offset, footer.ueb_len as u64)
            .await?;
        *dec = Some(Decoder::new(cap.clone(), &ueb)?);
    }
    let d = dec.as_mut().expect("decoder set");
    // The verified UEB says how long the hash list must be: check the
    // server's footer against it before reading anything it points at.
    if footer.ueb_offset - footer.hashes_offset != 32 * d.ueb().segments()
        || footer.hashes_offset != d.ueb().blocks_len()
    {
        return Err(CodecError::CorruptShare(loc.shnum).into());
    }
    let hashes = conn
        .read(
            si,
            loc.shnum,
            footer.hashes_offset,
            footer.ueb_offset - footer.hashes_offset,
        )
        .await?;
    d.add_hashes(loc.shnum, &hashes)?;
    Ok(())
}

/// Open shares from `pending` until `k` are usable; corrupt ones are
/// reported, unreachable ones skipped.
async fn fill_sources(
    pool: &SessionPool,
    cap: &ReadCap,
    k: usize,
    pending: &mut std::vec::IntoIter<Located>,
    sources: &mut Vec<Source>,
    dec: &mut Option<Decoder>,
    report: &mut DownloadReport,
) {
    let si = cap.storage_index();
    while sources.len() < k {
        let Some(loc) = pending.next() else { break };
        match open_source(pool, &loc, si, dec, cap).await {
            Ok(s) => sources.push(s),
            Err(ClientError::Codec(CodecError::CorruptShare(n))) => {
                report.corrupt.push((n, loc.server.id))
            }
            Err(e) => tracing::warn!(shnum = loc.shnum, "share unusable: {e}"),
        }
    }
}

/// The result of checking and decoding one segment on the blocking pool.
enum Decoded {
    /// The plaintext.
    Plain(Vec<u8>),
    /// Shares whose block failed its hash.
    Corrupt(Vec<u16>),
}

/// Download the file of `cap` into `out`, verifying everything. Survives the
/// loss of up to n-k servers; corrupt shares are skipped and reported.
///
/// # Errors
/// [`CodecError::NotEnoughShares`] when fewer than k good shares are
/// reachable; session and I/O errors.
pub async fn download<W: AsyncWrite + Unpin>(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &Cap,
    out: &mut W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DownloadReport, ClientError> {
    let cap = match cap {
        Cap::Lit(d) => {
            out.write_all(d).await?;
            return Ok(DownloadReport {
                bytes: d.len() as u64,
                corrupt: vec![],
            });
        }
        Cap::Chk(c) => c,
    };
    let si = cap.storage_index();
    let k = cap.k as usize;
    let mut candidates = locate(pool, servers, si, cap.k, cap.n).await;
    // One server per share number, first servers first; primary shares
    // (numbers below k, the plaintext's own blocks) before the others, as
    // they need no erasure decoding.
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|l| seen.insert(l.shnum));
    candidates.sort_by_key(|l| l.shnum >= cap.k);
    let mut report = DownloadReport::default();
    let mut dec: Option<Decoder> = None;
    let mut sources: Vec<Source> = Vec::new();
    let mut pending = candidates.into_iter();
    fill_sources(
        pool,
        cap,
        k,
        &mut pending,
        &mut sources,
        &mut dec,
        &mut report,
    )
    .await;
    let Some(decoder) = dec else {
        return Err(CodecError::NotEnoughShares { have: 0, need: k }.into());
    };
    let ueb = decoder.ueb().clone();
    let segments = ueb.segments();
    let mut decoder = Some(decoder);
    // Segment being received; next segment to request; the decode in
    // progress (of segment `seg - 1`).
    let mut seg = 0u64;
    let mut asked = 0u64;
    let mut decoding: Option<tokio::task::JoinHandle<(Decoder, Result<Decoded, CodecError>)>> =
        None;
    loop {
        let mut failed: Vec<(u16, bool)> = Vec::new();
        let mut blocks = Vec::new();
        if seg < segments {
            if sources.len() < k {
                if let Some(h) = decoding.take() {
                    // Finish what was decoded before giving up.
                    let (_, r) = h.await.map_err(|e| std::io::Error::other(e.to_string()))?;
                    if let Decoded::Plain(p) = r? {
                        out.write_all(&p).await?;
                    }
                }
                return Err(CodecError::NotEnoughShares {
                    have: sources.len(),
                    need: k,
                }
                .into());
            }
            while asked < segments && asked < seg + READ_AHEAD {
                for s in sources.iter_mut() {
                    let (off, len) = (ueb.block_offset(asked), ueb.block_len(asked));
                    let r = s
                        .conn
                        .send(Request::Read {
                            si,
                            shnum: s.shnum,
                            offset: off,
                            len: len as u32,
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(shnum = s.shnum, "read failed: {e}");
                        failed.push((s.shnum, false));
                    }
                }
                asked += 1;
            }
            if failed.is_empty() {
                // One task per share, so the shares' blocks are received and
                // decrypted on all cores.
                let len = ueb.block_len(seg);
                let reads: Vec<_> = sources
                    .drain(..)
                    .map(|mut s| {
                        tokio::spawn(async move {
                            let r = s.conn.recv_data(len).await;
                            (s, r)
                        })
                    })
                    .collect();
                for h in reads {
                    let (s, r) = h.await.map_err(|e| std::io::Error::other(e.to_string()))?;
                    match r {
                        Ok(b) => blocks.push((s.shnum, b)),
                        Err(e) => {
                            tracing::warn!(shnum = s.shnum, "read failed: {e}");
                            failed.push((s.shnum, false));
                        }
                    }
                    sources.push(s);
                }
            }
        }
        // Take the previous segment's result while this one was arriving.
        let mut redo = None;
        if let Some(h) = decoding.take() {
            let (d, r) = h.await.map_err(|e| std::io::Error::other(e.to_string()))?;
            decoder = Some(d);
            match r? {
                Decoded::Plain(p) => {
                    out.write_all(&p).await?;
                    report.bytes += p.len() as u64;
                    progress(report.bytes);
                }
                Decoded::Corrupt(bad) => {
                    failed.extend(bad.into_iter().map(|b| (b, true)));
                    redo = Some(seg - 1);
                }
            }
        }
        if !failed.is_empty() {
            // Drop the failed shares, settle what is in flight on the
            // others, open replacements and resume at the first segment
            // not yet written.
            for (shnum, corrupt) in failed {
                if let Some(pos) = sources.iter().position(|s| s.shnum == shnum) {
                    let s = sources.remove(pos);
                    if corrupt {
                        report.corrupt.push((shnum, s.conn.server().id));
                    }
                }
            }
            let mut kept = Vec::new();
            for mut s in sources.drain(..) {
                let mut ok = true;
                while s.conn.in_flight() > 0 {
                    if s.conn.recv().await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    kept.push(s);
                }
            }
            sources = kept;
            fill_sources(
                pool,
                cap,
                k,
                &mut pending,
                &mut sources,
                &mut decoder,
                &mut report,
            )
            .await;
            seg = redo.unwrap_or(seg);
            asked = seg;
            continue;
        }
        if seg >= segments {
            break;
        }
        let mut d = decoder.take().expect("decoder is home between segments");
        decoding = Some(tokio::task::spawn_blocking(move || {
            let r = d.decode_segment_or_name_corrupt(blocks).map(|r| match r {
                Ok(plain) => Decoded::Plain(plain),
                Err(bad) => Decoded::Corrupt(bad),
            });
            (d, r)
        }));
        seg += 1;
    }
    out.flush().await?;
    for s in sources {
        pool.put_back(s.conn);
    }
    Ok(report)
}

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Shares found: (share number, server, verified: None if not asked).
    pub shares: Vec<(u16, NodeId, Option<bool>)>,
    /// Distinct good share numbers.
    pub distinct_good: usize,
    /// Shares needed to read.
    pub k: u16,
    /// Shares made.
    pub n: u16,
}

/// Report which servers hold which shares; with `verify`, download and check
/// every share against the capability.
///
/// # Errors
/// Only for literal capabilities (nothing to check is not an error: it
/// reports zero shares).
pub async fn check(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &Cap,
    verify: bool,
) -> Result<CheckReport, ClientError> {
    let Cap::Chk(cap) = cap else {
        return Ok(CheckReport {
            shares: vec![],
            distinct_good: 0,
            k: 0,
            n: 0,
        });
    };
    let si = cap.storage_index();
    let found = locate(pool, servers, si, cap.k, cap.n).await;
    let mut report = CheckReport {
        k: cap.k,
        n: cap.n,
        ..Default::default()
    };
    let mut good = std::collections::HashSet::new();
    for loc in found {
        let ok = if verify {
            let mut dec = None;
            let r = async {
                let mut src = open_source(pool, &loc, si, &mut dec, cap).await?;
                let d = dec.as_ref().expect("decoder");
                let r = verify_blocks(&mut src.conn, si, loc.shnum, d).await;
                pool.put_back(src.conn);
                r
            }
            .await;
            Some(r.is_ok())
        } else {
            None
        };
        if ok != Some(false) {
            good.insert(loc.shnum);
        }
        report.shares.push((loc.shnum, loc.server.id, ok));
    }
    report.distinct_good = good.len();
    Ok(report)
}

/// Read every block of one share, pipelined, and check each against `d`.
async fn verify_blocks(
    conn: &mut Conn,
    si: StorageIndex,
    shnum: u16,
    d: &Decoder,
) -> Result<(), ClientError> {
    let segments = d.ueb().segments();
    let mut asked = 0;
    for seg in 0..segments {
        while asked < segments && conn.in_flight() < MAX_IN_FLIGHT {
            conn.send(Request::Read {
                si,
                shnum,
                offset: d.ueb().block_offset(asked),
                len: d.ueb().block_len(asked) as u32,
            })
            .await?;
            asked += 1;
        }
        let b = conn.recv_data(d.ueb().block_len(seg)).await?;
        d.check_block(shnum, seg, &b)?;
    }
    Ok(())
}

/// Read a whole stream into a Vec (small helper for tests and tools).
///
/// # Errors
/// I/O errors.
pub async fn read_all<R: AsyncRead + Unpin>(mut r: R) -> Result<Vec<u8>, ClientError> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).await?;
    Ok(v)
}

/// The client's default parameters.
pub fn default_params() -> Params {
    Params::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_order_matches_membership_selection() {
        let servers: Vec<ServerRef> = (0..20u8)
            .map(|i| ServerRef {
                id: NodeId([i; 32]),
                addr: "127.0.0.1:1".parse().unwrap(),
            })
            .collect();
        let si = StorageIndex([3; 16]);
        let a = permuted_servers(&si, &servers);
        let mut rev = servers.clone();
        rev.reverse();
        assert_eq!(a, permuted_servers(&si, &rev));
    }
}
