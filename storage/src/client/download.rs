//! Download: find a file's shares, read `k` of them block by block
//! (pipelined, [`READ_AHEAD`] segments ahead), check every block against
//! the capability and decode, replacing shares that fail or turn out
//! corrupt on the way. Each corrupt share found is reported to its server
//! ([`report_corrupt`]), which checks it itself and quarantines it only if
//! it really is bad.

use std::time::{Duration, Instant};

use grapevine_crypto::identity::NodeId;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::cap::{Cap, ReadCap};
use crate::chk::{Decoder, Footer, FOOTER_LEN};
use crate::client::conn::{Conn, ServerRef};
use crate::client::locate::{Located, ShareFinder};
use crate::client::pool::SessionPool;
use crate::client::report::report_corrupt;
use crate::error::{ClientError, CodecError};
use crate::protocol::Request;
use crate::types::{ReportVerdict, StorageIndex};

/// Segments a download keeps requested ahead of the one it is decoding,
/// unless the pool's memory budget says fewer
/// ([`MemoryBudget::read_ahead`](crate::MemoryBudget::read_ahead)).
pub const READ_AHEAD: u64 = crate::budget::MAX_READ_AHEAD;

/// What a download did.
#[derive(Debug, Clone, Default)]
pub struct DownloadReport {
    /// Bytes written.
    pub bytes: u64,
    /// Shares skipped as corrupt.
    pub corrupt: Vec<(u16, NodeId)>,
    /// What each corrupt share's server did when told (`None`: the report
    /// did not reach it).
    pub reported: Vec<(u16, NodeId, Option<ReportVerdict>)>,
    /// Where the download's time went (for benchmarks and logs).
    pub waits: DownloadWaits,
}

/// Where a download's time went: its driver receives each segment's
/// blocks (one task per share) while the previous segment is checked and
/// decoded on the blocking pool. A decoder busy all the time means decoding
/// bounds the download; a driver waiting for blocks means the servers and
/// sessions do.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DownloadWaits {
    /// Time the decoder spent checking and decoding segments.
    pub decoding: Duration,
    /// Time the driver waited for a segment's blocks.
    pub for_blocks: Duration,
    /// Time the driver waited for a decoded segment.
    pub for_decoder: Duration,
    /// Most segments requested at once (at most the memory budget's
    /// [`read_ahead`](crate::MemoryBudget::read_ahead)).
    pub peak_ahead: u64,
}

/// Tell the servers of `corrupt` shares of `si` (looked up in `servers`)
/// that they are corrupt; what each did.
pub(crate) async fn report_all(
    pool: &SessionPool,
    servers: &[ServerRef],
    si: StorageIndex,
    corrupt: &[(u16, NodeId)],
) -> Vec<(u16, NodeId, Option<ReportVerdict>)> {
    let mut out = Vec::new();
    for &(shnum, id) in corrupt {
        let verdict = match servers.iter().find(|s| s.id == id) {
            Some(&server) => match report_corrupt(pool, server, si, shnum).await {
                Ok(v) => {
                    tracing::info!(shnum, server = %id.short(), ?v, "reported a corrupt share");
                    Some(v)
                }
                Err(e) => {
                    tracing::warn!(shnum, server = %id.short(), "reporting a corrupt share: {e}");
                    None
                }
            },
            None => None,
        };
        out.push((shnum, id, verdict));
    }
    out
}

/// The per-share read tasks of one segment, aborted when dropped: a
/// download cancelled (its future dropped) while it waits on them leaves
/// none running, holding its session and pool slot until a deadline.
struct AbortOnDrop<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

pub(crate) struct Source {
    pub(crate) conn: Conn,
    pub(crate) shnum: u16,
}

pub(crate) async fn open_source(
    pool: &SessionPool,
    loc: &Located,
    si: StorageIndex,
    dec: &mut Option<Decoder>,
    cap: &ReadCap,
) -> Result<Source, ClientError> {
    // The budget's engine for the shares' decoding, whatever reads them
    // (a whole download, a range).
    let small = pool.config().memory.small_tables();
    let mut conn = pool.get(loc.server).await?;
    let mut r = read_share_meta(&mut conn, loc, si, dec, cap, small).await;
    if conn.reused && matches!(r, Err(ClientError::Session(..))) {
        // An idle session the server had closed: once more on a fresh one.
        pool.put_back(conn);
        conn = pool.get_fresh(loc.server).await?;
        r = read_share_meta(&mut conn, loc, si, dec, cap, small).await;
    }
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
    small: bool,
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
        *dec = Some(Decoder::new(cap.clone(), &ueb)?.with_small_tables(small));
    }
    let d = dec.as_mut().expect("decoder set");
    // The verified UEB says how long the hash list must be: check the
    // server's footer against it before reading anything it points at.
    if footer.ueb_offset - footer.hashes_offset != d.ueb().hashes_len()
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

/// Open shares `pending` finds until `k` are usable; corrupt ones are
/// reported, unreachable ones skipped.
pub(crate) async fn fill_sources(
    pool: &SessionPool,
    cap: &ReadCap,
    k: usize,
    pending: &mut ShareFinder<'_>,
    sources: &mut Vec<Source>,
    dec: &mut Option<Decoder>,
    report: &mut DownloadReport,
) {
    let si = cap.storage_index();
    while sources.len() < k {
        let Some(loc) = pending.next().await else {
            break;
        };
        if sources.iter().any(|s| s.shnum == loc.shnum) {
            continue;
        }
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
/// loss of up to n-k servers; corrupt shares are skipped, listed in the
/// report and reported to their servers (on success and on failure alike).
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
                ..DownloadReport::default()
            });
        }
        Cap::Chk(c) => c,
    };
    let mut report = DownloadReport::default();
    let r = download_chk(pool, servers, cap, out, progress, &mut report).await;
    if !report.corrupt.is_empty() {
        report.reported = report_all(pool, servers, cap.storage_index(), &report.corrupt).await;
    }
    r.map(|()| report)
}

async fn download_chk<W: AsyncWrite + Unpin>(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &ReadCap,
    out: &mut W,
    progress: &(dyn Fn(u64) + Sync),
    report: &mut DownloadReport,
) -> Result<(), ClientError> {
    let si = cap.storage_index();
    let k = cap.k as usize;
    // The first k servers first (they hold the primary shares), more only
    // when those run out.
    let mut pending = ShareFinder::start(pool, servers, si, cap.k, cap.n).await;
    let mut dec: Option<Decoder> = None;
    let mut sources: Vec<Source> = Vec::new();
    fill_sources(pool, cap, k, &mut pending, &mut sources, &mut dec, report).await;
    let Some(decoder) = dec else {
        let found = pending.findings();
        if found.shares.is_empty() {
            return Err(ClientError::NoShares {
                asked: found.asked,
                responding: found.responding.len(),
            });
        }
        return Err(CodecError::NotEnoughShares { have: 0, need: k }.into());
    };
    let decoder = decoder.with_small_tables(pool.config().memory.small_tables());
    let ueb = decoder.ueb().clone();
    let segments = ueb.segments();
    let ahead = pool.config().memory.read_ahead();
    let mut decoder = Some(decoder);
    // Segment being received; next segment to request; the decode in
    // progress (of segment `seg - 1`).
    let mut seg = 0u64;
    let mut asked = 0u64;
    type Decoding = (Decoder, Result<Decoded, CodecError>, Duration);
    let mut decoding: Option<tokio::task::JoinHandle<Decoding>> = None;
    loop {
        let mut failed: Vec<(u16, bool)> = Vec::new();
        let mut blocks = Vec::new();
        if seg < segments {
            if sources.len() < k {
                if let Some(h) = decoding.take() {
                    // Finish what was decoded before giving up.
                    let (_, r, _) = h.await.map_err(|e| std::io::Error::other(e.to_string()))?;
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
            while asked < segments && asked < seg + ahead {
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
            report.waits.peak_ahead = report.waits.peak_ahead.max(asked - seg);
            if failed.is_empty() {
                // One task per share, so the shares' blocks are received and
                // decrypted on all cores.
                let len = ueb.block_len(seg);
                let mut reads = AbortOnDrop(
                    sources
                        .drain(..)
                        .map(|mut s| {
                            tokio::spawn(async move {
                                let r = s.conn.recv_data(len).await;
                                (s, r)
                            })
                        })
                        .collect(),
                );
                let t = Instant::now();
                for h in reads.0.iter_mut() {
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
                report.waits.for_blocks += t.elapsed();
            }
        }
        // Take the previous segment's result while this one was arriving.
        let mut redo = None;
        if let Some(h) = decoding.take() {
            let t = Instant::now();
            let (d, r, took) = h.await.map_err(|e| std::io::Error::other(e.to_string()))?;
            report.waits.for_decoder += t.elapsed();
            report.waits.decoding += took;
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
                report,
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
            let t = Instant::now();
            let r = d.decode_segment_or_name_corrupt(blocks).map(|r| match r {
                Ok(plain) => Decoded::Plain(plain),
                Err(bad) => Decoded::Corrupt(bad),
            });
            (d, r, t.elapsed())
        }));
        seg += 1;
    }
    out.flush().await?;
    for s in sources {
        pool.put_back(s.conn);
    }
    Ok(())
}
