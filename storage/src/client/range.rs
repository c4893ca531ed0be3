//! Ranged download: bytes `start..start + len` of a file, reading only the
//! segments that hold them.
//!
//! The shares are found and opened as for a whole download (footer, UEB
//! and hash list of `k` shares, each checked against the capability); then
//! only the blocks of the segments the range touches are read, up to
//! [`READ_AHEAD`](crate::client::READ_AHEAD) segments ahead (fewer under the
//! pool's memory budget),
//! each checked against its share's hash list before decoding
//! ([`Decoder::decode_segment_at`]), and the range's part of each decoded
//! segment is written. A 1 MiB range costs about two segments' blocks per
//! share (one if it is aligned) plus each share's metadata, whatever the
//! file's size. The hash of the whole ciphertext is not checked (it needs
//! every segment); every block is, so a server cannot change a byte of the
//! range unnoticed. Shares that fail or turn out corrupt are replaced, as in
//! a whole download.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::cap::Cap;
use crate::chk::Decoder;
use crate::client::conn::ServerRef;
use crate::client::download::{fill_sources, DownloadReport, Source};
use crate::client::locate::ShareFinder;
use crate::client::park::{park_sources, resume_all, write_or_park};
use crate::client::pool::SessionPool;
use crate::client::report::report_all;
use crate::error::{ClientError, CodecError};
use crate::protocol::Request;

/// Write bytes `start..start + len` of the file `cap` names to `out`
/// (clamped to the file's end: a range past it writes nothing), verifying
/// every block read. Returns the bytes written.
///
/// # Errors
/// [`CodecError::NotEnoughShares`] when fewer than k good shares are
/// reachable; session and I/O errors. Bytes already written stay written.
pub async fn download_range<W: AsyncWrite + Unpin>(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &Cap,
    start: u64,
    len: u64,
    out: &mut W,
) -> Result<DownloadReport, ClientError> {
    let cap = match cap {
        Cap::Lit(d) => {
            let size = d.len() as u64;
            let (a, b) = (start.min(size), start.saturating_add(len).min(size));
            out.write_all(&d[a as usize..b as usize]).await?;
            out.flush().await?;
            return Ok(DownloadReport {
                bytes: b - a,
                ..DownloadReport::default()
            });
        }
        Cap::Chk(c) => c,
    };
    let end = start.saturating_add(len).min(cap.size);
    let mut report = DownloadReport::default();
    if start >= end {
        return Ok(report);
    }
    pool.holds_at_once(cap.k)?;
    let si = cap.storage_index();
    let k = cap.k as usize;
    // As in `download`: the first k servers first, more when they run
    // out; one source per share number is taken.
    let mut pending = ShareFinder::start(pool, servers, si, cap.k, cap.n).await;
    let mut dec: Option<Decoder> = None;
    let mut sources: Vec<Source> = Vec::new();
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
    let sessions = pool.config().max_sessions;
    let Some(first) = dec.as_ref() else {
        report.busy += pending.findings().busy;
        return Err(report.busy_or(report.none_opened(k), sessions));
    };
    let ueb = first.ueb().clone();
    let (first_seg, last_seg) = (start / ueb.segment_size, (end - 1) / ueb.segment_size);
    let ahead = pool.config().memory.read_ahead_for(ueb.segment_size);
    let park_after = pool.config().park_after;
    let mut seg = first_seg;
    let mut asked = first_seg;
    while seg <= last_seg {
        if sources.len() < k {
            report.busy += pending.findings().busy;
            let e = CodecError::NotEnoughShares {
                have: sources.len(),
                need: k,
            };
            return Err(report.busy_or(e.into(), sessions));
        }
        let mut failed: Vec<(u16, bool)> = Vec::new();
        // The sources are read in step: as deep as the farthest one's link
        // needs (`Conn::depth`), no deeper.
        let depth = sources
            .iter()
            .map(|s| s.conn.depth() as u64)
            .max()
            .unwrap_or(1);
        while asked <= last_seg && asked < seg + ahead.min(depth) {
            for s in sources.iter_mut() {
                let r = s
                    .conn
                    .send(Request::Read {
                        si,
                        shnum: s.shnum,
                        offset: ueb.block_offset(asked),
                        len: ueb.block_len(asked) as u32,
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(shnum = s.shnum, "read failed: {e}");
                    failed.push((s.shnum, false));
                }
            }
            asked += 1;
        }
        let mut blocks = Vec::with_capacity(k);
        if failed.is_empty() {
            for s in sources.iter_mut() {
                match s.conn.recv_data(ueb.block_len(seg)).await {
                    Ok(b) => blocks.push((s.shnum, b)),
                    Err(e) => {
                        tracing::warn!(shnum = s.shnum, "read failed: {e}");
                        failed.push((s.shnum, false));
                    }
                }
            }
        }
        if failed.is_empty() {
            let d = dec.take().expect("the decoder is home between segments");
            let (d, r) = tokio::task::spawn_blocking(move || {
                let r = d.decode_segment_at(seg, blocks);
                (d, r)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            dec = Some(d);
            match r? {
                Ok(plain) => {
                    let seg_start = seg * ueb.segment_size;
                    let a = start.saturating_sub(seg_start) as usize;
                    let b = (end - seg_start).min(plain.len() as u64) as usize;
                    // A reader that stops taking data does not hold the
                    // sessions meanwhile (`park`).
                    let parked =
                        write_or_park(out, &plain[a..b], park_after, || park_sources(&mut sources))
                            .await?;
                    report.bytes += (b - a) as u64;
                    seg += 1;
                    // (None to read again after the range's last segment.)
                    if let Some(parked) = parked.filter(|_| seg <= last_seg) {
                        let resumed = resume_all(pool, parked, &mut report).await;
                        sources.extend(resumed.into_iter().map(|r| r.source));
                        // What was asked ahead went with the sessions.
                        asked = seg;
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
                    }
                    continue;
                }
                Err(bad) => failed.extend(bad.into_iter().map(|b| (b, true))),
            }
        }
        // Drop the failed shares, settle what is in flight on the others,
        // open replacements and ask again from this segment.
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
            &mut dec,
            &mut report,
        )
        .await;
        asked = seg;
    }
    // Answers asked ahead past the range's end are not wanted: settle them
    // so the sessions can be reused.
    for mut s in sources {
        let mut ok = true;
        while s.conn.in_flight() > 0 && ok {
            ok = s.conn.recv().await.is_ok();
        }
        pool.put_back(s.conn);
    }
    out.flush().await?;
    if !report.corrupt.is_empty() {
        report.reported = report_all(pool, servers, si, &report.corrupt).await;
    }
    Ok(report)
}
