//! The storage client: upload, download and check over sessions.
//!
//! Servers are given as [`ServerRef`]s (node id and address, from
//! membership); the client orders them by the permuted list for the file's
//! storage index, so uploader and downloader agree on where to look. Each
//! server gets one session ([`Conn`]), opened on demand and dropped when the
//! operation ends.

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
use crate::protocol::{
    decode, encode, ErrorCode, Reply, Request, RequestMsg, ResponseMsg, MAX_READ, MAX_WRITE,
};
use crate::store::StorageIndex;

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

/// One session to one server, with request ids.
#[derive(Debug)]
pub struct Conn {
    server: ServerRef,
    session: Session<TcpStream>,
    next_id: u32,
}

impl Conn {
    /// Open a session to `server`.
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
        })
    }

    /// The server this connection talks to.
    pub fn server(&self) -> ServerRef {
        self.server
    }

    /// Send a request and wait for its answer.
    ///
    /// # Errors
    /// [`ClientError::Session`], [`ClientError::Protocol`] or
    /// [`ClientError::Server`] for an error reply.
    pub async fn call(&mut self, req: Request) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let name = self.server.id.short();
        self.session
            .send(&encode(&RequestMsg { id, req }))
            .await
            .map_err(|e| ClientError::Session(name.clone(), e))?;
        let bytes = self
            .session
            .recv()
            .await
            .map_err(|e| ClientError::Session(name.clone(), e))?;
        let resp: ResponseMsg =
            decode(&bytes).map_err(|e| ClientError::Protocol(name.clone(), e))?;
        if resp.id != id {
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
        let mut at = offset;
        while (out.len() as u64) < len {
            let chunk = (len - out.len() as u64).min(MAX_READ as u64) as u32;
            match self
                .call(Request::Read {
                    si,
                    shnum,
                    offset: at,
                    len: chunk,
                })
                .await?
            {
                Reply::Data(d) if d.len() == chunk as usize => out.extend_from_slice(&d),
                other => {
                    return Err(ClientError::Protocol(
                        self.server.id.short(),
                        format!("{other:?}"),
                    ))
                }
            }
            at += chunk as u64;
        }
        Ok(out)
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
/// # Errors
/// [`ClientError::NotHappy`] if fewer than `params.happy` distinct servers
/// took shares; I/O, session and codec errors.
pub async fn upload<R, H>(
    me: &ClientIdentity,
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
    let share_size = enc.share_size();
    let order = permuted_servers(&si, servers);

    // Place shares: share i goes to the i-th server in permuted order that
    // is reachable and accepts it; with fewer servers than shares, servers
    // take more than one.
    let mut conns: Vec<Conn> = Vec::new();
    for s in &order {
        match Conn::open(me, *s).await {
            Ok(c) => conns.push(c),
            Err(e) => tracing::warn!("skipping server: {e}"),
        }
    }
    if conns.is_empty() {
        return Err(ClientError::NotHappy {
            got: 0,
            happy: params.happy as usize,
        });
    }
    let mut placement: Vec<(u16, usize)> = Vec::new();
    let mut next = 0usize;
    for shnum in 0..params.n {
        let mut placed = false;
        for attempt in 0..conns.len() {
            let c = (next + attempt) % conns.len();
            match conns[c]
                .call(Request::Allocate {
                    si,
                    shnum,
                    size: share_size,
                })
                .await
            {
                Ok(_) => {
                    placement.push((shnum, c));
                    next = c + 1;
                    placed = true;
                    break;
                }
                Err(e) => tracing::warn!(shnum, "allocation refused: {e}"),
            }
        }
        if !placed {
            tracing::warn!(shnum, "no server took this share");
        }
    }
    let distinct = {
        let mut v: Vec<usize> = placement.iter().map(|p| p.1).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    if distinct < params.happy as usize {
        return Err(ClientError::NotHappy {
            got: distinct,
            happy: params.happy as usize,
        });
    }

    // Stream segments; each connection writes its shares' blocks, all
    // connections in parallel, while the next segment is encoded on the
    // blocking pool.
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
        write_blocks(&mut conns, &placement, si, offset, &blocks).await?;
        offset += blen;
        done += seg_len(seg) as u64;
        progress(done);
    }
    let enc = enc_back.expect("encoder returned after the last segment");
    let (trailers, cap) = enc.finish()?;
    write_blocks(&mut conns, &placement, si, offset, &trailers).await?;
    let mut futs = Vec::new();
    for (ci, c) in conns.iter_mut().enumerate() {
        let mine = shares_on(&placement, ci);
        futs.push(async move {
            for shnum in mine {
                c.call(Request::Close { si, shnum }).await?;
            }
            Ok::<(), ClientError>(())
        });
    }
    for r in futures::future::join_all(futs).await {
        r?;
    }
    let placements = placement
        .iter()
        .map(|(s, c)| (*s, conns[*c].server.id))
        .collect();
    Ok(UploadReport {
        cap: Cap::Chk(cap),
        placements,
        servers: distinct,
    })
}

/// Share numbers placed on connection `ci`.
fn shares_on(placement: &[(u16, usize)], ci: usize) -> Vec<u16> {
    placement
        .iter()
        .filter(|p| p.1 == ci)
        .map(|p| p.0)
        .collect()
}

async fn write_blocks(
    conns: &mut [Conn],
    placement: &[(u16, usize)],
    si: StorageIndex,
    offset: u64,
    blocks: &[Vec<u8>],
) -> Result<(), ClientError> {
    let mut futs = Vec::new();
    for (ci, c) in conns.iter_mut().enumerate() {
        let mine = shares_on(placement, ci);
        if mine.is_empty() {
            continue;
        }
        futs.push(async move {
            for shnum in mine {
                let block = &blocks[shnum as usize];
                for (i, chunk) in block.chunks(MAX_WRITE).enumerate() {
                    let at = offset + (i * MAX_WRITE) as u64;
                    c.call(Request::Write {
                        si,
                        shnum,
                        offset: at,
                        data: chunk.to_vec(),
                    })
                    .await?;
                }
            }
            Ok::<(), ClientError>(())
        });
    }
    for r in futures::future::join_all(futs).await {
        r?;
    }
    Ok(())
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

/// Ask servers (in permuted order) which shares of `si` they hold.
pub async fn locate(me: &ClientIdentity, servers: &[ServerRef], si: StorageIndex) -> Vec<Located> {
    let mut out = Vec::new();
    for s in permuted_servers(&si, servers) {
        let Ok(mut c) = Conn::open(me, s).await else {
            continue;
        };
        if let Ok(Reply::Shares(v)) = c.call(Request::List { si }).await {
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
    me: &ClientIdentity,
    loc: &Located,
    si: StorageIndex,
    dec: &mut Option<Decoder>,
    cap: &ReadCap,
) -> Result<Source, ClientError> {
    let mut conn = Conn::open(me, loc.server).await?;
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
    Ok(Source {
        conn,
        shnum: loc.shnum,
    })
}

/// Open shares from `pending` until `k` are usable; corrupt ones are
/// reported, unreachable ones skipped.
async fn fill_sources(
    me: &ClientIdentity,
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
        match open_source(me, &loc, si, dec, cap).await {
            Ok(s) => sources.push(s),
            Err(ClientError::Codec(CodecError::CorruptShare(n))) => {
                report.corrupt.push((n, loc.server.id))
            }
            Err(e) => tracing::warn!(shnum = loc.shnum, "share unusable: {e}"),
        }
    }
}

/// Download the file of `cap` into `out`, verifying everything. Survives the
/// loss of up to n-k servers; corrupt shares are skipped and reported.
///
/// # Errors
/// [`CodecError::NotEnoughShares`] when fewer than k good shares are
/// reachable; session and I/O errors.
pub async fn download<W: AsyncWrite + Unpin>(
    me: &ClientIdentity,
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
    let mut candidates = locate(me, servers, si).await;
    // Prefer distinct share numbers, first servers first.
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|l| seen.insert(l.shnum));
    let mut report = DownloadReport::default();
    let mut dec: Option<Decoder> = None;
    let mut sources: Vec<Source> = Vec::new();
    let mut pending = candidates.into_iter();
    fill_sources(
        me,
        cap,
        k,
        &mut pending,
        &mut sources,
        &mut dec,
        &mut report,
    )
    .await;
    let Some(mut decoder) = dec else {
        return Err(CodecError::NotEnoughShares { have: 0, need: k }.into());
    };
    let segments = decoder.ueb().segments();
    let mut seg = 0;
    while seg < segments {
        if sources.len() < k {
            return Err(CodecError::NotEnoughShares {
                have: sources.len(),
                need: k,
            }
            .into());
        }
        let off = decoder.ueb().block_offset(seg);
        let len = decoder.ueb().block_len(seg);
        let reads = sources.iter_mut().map(|s| async move {
            let r = s.conn.read(si, s.shnum, off, len).await;
            (s.shnum, r)
        });
        let results = futures::future::join_all(reads).await;
        let mut blocks = Vec::new();
        let mut bad = Vec::new();
        for (shnum, r) in results {
            match r {
                Ok(b) if decoder.check_block(shnum, seg, &b).is_ok() => blocks.push((shnum, b)),
                Ok(_) => bad.push((shnum, true)),
                Err(e) => {
                    tracing::warn!(shnum, "read failed: {e}");
                    bad.push((shnum, false));
                }
            }
        }
        if !bad.is_empty() {
            for (shnum, corrupt) in bad {
                if let Some(pos) = sources.iter().position(|s| s.shnum == shnum) {
                    let s = sources.remove(pos);
                    if corrupt {
                        report.corrupt.push((shnum, s.conn.server.id));
                    }
                }
            }
            // Replace them and retry this segment.
            let mut fresh: Option<Decoder> = Some(decoder);
            fill_sources(
                me,
                cap,
                k,
                &mut pending,
                &mut sources,
                &mut fresh,
                &mut report,
            )
            .await;
            decoder = fresh.expect("decoder kept");
            continue;
        }
        let plain = decoder.decode_segment(blocks)?;
        out.write_all(&plain).await?;
        report.bytes += plain.len() as u64;
        progress(report.bytes);
        seg += 1;
    }
    out.flush().await?;
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
    me: &ClientIdentity,
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
    let found = locate(me, servers, si).await;
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
                let mut src = open_source(me, &loc, si, &mut dec, cap).await?;
                let d = dec.as_ref().expect("decoder");
                for seg in 0..d.ueb().segments() {
                    let b = src
                        .conn
                        .read(
                            si,
                            loc.shnum,
                            d.ueb().block_offset(seg),
                            d.ueb().block_len(seg),
                        )
                        .await?;
                    d.check_block(loc.shnum, seg, &b)?;
                }
                Ok::<(), ClientError>(())
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
