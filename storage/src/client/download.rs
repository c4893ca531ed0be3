//! Download: find a file's shares, read `k` of them block by block
//! (pipelined, [`READ_AHEAD`] segments ahead), check every block against
//! the capability and decode, replacing shares that fail or turn out
//! corrupt on the way. Each corrupt share found is reported to its server
//! ([`report_corrupt`]), which checks it itself and quarantines it only if
//! it really is bad.
//!
//! # The pipeline
//!
//! Three kinds of work, each on its own and joined by queues:
//!
//! * a **receiver per share** (`receive`): it keeps its session busy with
//!   block reads, up to the memory budget's
//!   [`read_ahead`](crate::MemoryBudget::read_ahead) of its blocks held at
//!   once (asked, queued, being decoded, or decoded and not yet written;
//!   for the file's own segment size), drains the session as the
//!   answers come, so blocks never wait in socket buffers for the rest of
//!   the download, and checks each block against its share's hash list
//!   ([`BlockChecker`](crate::chk::BlockChecker)) as it arrives. The sessions' decryption and the
//!   block checks run on the runtime's workers, one share beside another;
//! * **decoding** (`decoding`): each segment decoded as a task of its own
//!   as soon as `k` of its blocks are in, up to `DECODE_AHEAD` at once, on
//!   whichever worker is free: restores missing originals, hashes the
//!   ciphertext (a subtree of the whole file's hash), decrypts;
//! * the **coordinator** (this module's loop): it files each block under
//!   its segment as it arrives, starts a segment's decoding when its
//!   blocks are in, takes the decoded segments in order (the
//!   [`Decoder`] merges their hashes and checks the whole after the last),
//!   writes the plaintext, and replaces shares.
//!
//! Why: the pipeline before this one waited for every share's block of a
//! segment before asking for the next, so blocks waited in socket buffers
//! while the driver waited for the decoder, and one slow share held up the
//! others. Now each part waits only for what it needs next
//! ([`DownloadWaits::for_blocks`]).
//!
//! What bounds a get now: the CPU work itself, not waits between stages
//! (figures in docs/performance.md, "Put and get").
//!
//! # What stays guaranteed
//!
//! * Every block is checked against the capability before it is decoded
//!   (by its receiver; the decoder takes only
//!   [`CheckedBlock`](crate::chk::CheckedBlock)s, which
//!   nothing else makes), and the whole ciphertext's hash after the last
//!   segment.
//! * Memory follows the pool's budget: a receiver holds at most
//!   `read_ahead` of its share's blocks (a permit per block, released when
//!   the segment is written: its plaintext lies in its blocks' buffers),
//!   so the segments decoding, and those decoded and waiting for an
//!   earlier one, count against it. `peak_ahead` in the report is
//!   the most a receiver held.
//! * A share that fails (a read error, a deadline) or whose block turns out
//!   corrupt is dropped (the blocks it delivered were checked, and stay);
//!   the first segment that the blocks held and the live receivers can no
//!   longer bring to `k` distinct shares (`starved`) gets the next
//!   candidates whose share numbers it lacks, read from that segment on,
//!   and so on for any later one; the other receivers go on meanwhile. No
//!   segment is left waiting for a share number it already has (a second
//!   copy of a failed share), and a download that runs out of candidates
//!   fails rather than waits. Corrupt shares are reported to their servers
//!   ([`report_all`](crate::client::report)), on success and on failure alike.
//! * Primary shares (numbers below `k`, on the first `k` servers of the
//!   permuted list) are preferred: they need no erasure decoding, and the
//!   share finder hands them out first (`ShareFinder`).
//! * A download dropped mid-way aborts its receivers (`Receivers`) and the
//!   decodings not yet started.
//! * A download whose writer waits on a slow reader gives its sessions back
//!   while it waits ([`park`](crate::client::park)), and reads each share
//!   on from where it stopped once the write completes.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::cap::{Cap, ReadCap};
use crate::chk::{Decoder, Footer, FOOTER_LEN};
use crate::client::conn::{Conn, ServerRef};
use crate::client::decoding::{Decoding, Ready, DECODE_AHEAD};
use crate::client::locate::{Located, ShareFinder};
use crate::client::park::{resume_all, write_or_park};
use crate::client::pool::SessionPool;
use crate::client::receive::Arrival;
pub(crate) use crate::client::receive::Source;
use crate::client::receivers::{park, take_arrival, Crew, HeldBlocks, Live, Receivers};
use crate::client::report::report_all;
use crate::error::{ClientError, CodecError};
use crate::types::StorageIndex;

/// Segments a download keeps requested ahead of the one it is decoding,
/// unless the pool's memory budget says fewer
/// ([`MemoryBudget::read_ahead`](crate::MemoryBudget::read_ahead)).
pub const READ_AHEAD: u64 = crate::budget::MAX_READ_AHEAD;

pub use crate::client::download_report::{DownloadReport, DownloadWaits};

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
        Ok(()) => match dec.as_ref().and_then(|d| d.checker(loc.shnum)) {
            Some(checker) => Ok(Source {
                conn,
                shnum: loc.shnum,
                checker,
            }),
            // Not reached: the share's hash list was just accepted.
            None => {
                pool.put_back(conn);
                Err(CodecError::CorruptShare(loc.shnum).into())
            }
        },
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
    let mut opened = Vec::new();
    let in_use: Vec<u16> = sources.iter().map(|s| s.shnum).collect();
    open_more(pool, cap, k, &in_use, pending, &mut opened, dec, report).await;
    sources.extend(opened);
}

/// Open shares `pending` finds into `opened` until `in_use` and `opened`
/// hold `k` share numbers between them, skipping numbers already held;
/// corrupt ones are reported, unreachable ones skipped.
#[allow(clippy::too_many_arguments)]
async fn open_more(
    pool: &SessionPool,
    cap: &ReadCap,
    k: usize,
    in_use: &[u16],
    pending: &mut ShareFinder<'_>,
    opened: &mut Vec<Source>,
    dec: &mut Option<Decoder>,
    report: &mut DownloadReport,
) {
    let si = cap.storage_index();
    while in_use.len() + opened.len() < k {
        let Some(loc) = pending.next().await else {
            break;
        };
        if in_use.contains(&loc.shnum) || opened.iter().any(|s| s.shnum == loc.shnum) {
            continue;
        }
        match open_source(pool, &loc, si, dec, cap).await {
            Ok(s) => opened.push(s),
            // A share that fails the capability's checks, wherever it
            // fails (its footer, its extension block, its hash list), is
            // corrupt: skipped and reported to its server, which checks it
            // itself before it quarantines anything.
            // A share of a newer format is not corrupt: this release
            // cannot read it.
            Err(ClientError::Codec(e @ CodecError::UnsupportedVersion { .. })) => {
                report.unusable += 1;
                tracing::warn!(shnum = loc.shnum, "share unusable: {e}");
            }
            Err(ClientError::Codec(e)) => {
                if matches!(e, CodecError::UebMismatch) {
                    report.unmatched += 1;
                }
                report.corrupt.push((loc.shnum, loc.server.id));
            }
            Err(e) => {
                report.unusable += 1;
                report.busy += usize::from(matches!(e, ClientError::PoolExhausted(_)));
                tracing::warn!(shnum = loc.shnum, "share unusable: {e}");
            }
        }
    }
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
    let r = download_chk(pool, servers, cap, out, progress, &mut report)
        .await
        .map_err(|e| report.busy_or(e, pool.config().max_sessions));
    // A mistyped capability is no news for the servers.
    let mistyped = r.is_err() && report.cap_mismatch();
    if !report.corrupt.is_empty() && !mistyped {
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
    pool.holds_at_once(cap.k)?;
    let si = cap.storage_index();
    let k = cap.k as usize;
    // The first k servers first (they hold the primary shares), more only
    // when those run out.
    let mut pending = ShareFinder::start(pool, servers, si, cap.k, cap.n).await;
    let mut decoder: Option<Decoder> = None;
    let mut opened: Vec<Source> = Vec::new();
    open_more(
        pool,
        cap,
        k,
        &[],
        &mut pending,
        &mut opened,
        &mut decoder,
        report,
    )
    .await;
    let Some(ueb) = decoder.as_ref().map(|d| d.ueb().clone()) else {
        let found = pending.findings();
        report.busy += found.busy;
        if found.shares.is_empty() {
            return Err(ClientError::NoShares {
                asked: found.asked,
                responding: found.responding.len(),
            });
        }
        return Err(report.none_opened(k));
    };
    let segments = ueb.segments();
    let ahead = pool.config().memory.read_ahead_for(ueb.segment_size);
    let park_after = pool.config().park_after;
    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let mut crew = Crew::new(si, ueb.clone(), ahead, tx);
    let mut live = Receivers(Vec::new());
    // Blocks received and not yet being decoded, by segment, each share's
    // once (a dropped share's stay: they were checked).
    let mut held = HeldBlocks::new();
    // The next segment to write; the next to start decoding.
    let (mut next, mut queued) = (0u64, 0u64);
    let mut decoding = Decoding::new(
        decoder
            .as_ref()
            .map(Decoder::segment_decoder)
            .ok_or(CodecError::NotEnoughShares { have: 0, need: k })?,
    );
    // Whether a share failed (or the download starts): look for a segment
    // the shares at hand cannot complete.
    let mut check = true;
    while next < segments {
        // Where the shares opened now start.
        let mut from = next;
        if check {
            check = false;
            if let Some((s, in_use)) = starved(&live.0, &held, queued, segments, k) {
                // Replace failed shares (the decoder checks their hash
                // lists) with shares whose numbers segment `s` lacks, read
                // from `s` on: the blocks the failed ones delivered were
                // checked, and stay. The others' receivers and the
                // segments decoding go on meanwhile.
                open_more(
                    pool,
                    cap,
                    k,
                    &in_use,
                    &mut pending,
                    &mut opened,
                    &mut decoder,
                    report,
                )
                .await;
                if in_use.len() + opened.len() < k {
                    report.busy += pending.findings().busy;
                    return Err(CodecError::NotEnoughShares {
                        have: in_use.len() + opened.len(),
                        need: k,
                    }
                    .into());
                }
                from = s;
                // A later segment may lack shares too: look again once
                // these run.
                check = true;
            }
        }
        for src in opened.drain(..) {
            crew.start(&mut live, src, from, None);
        }
        // Start every segment whose blocks are in, up to DECODE_AHEAD.
        while queued < segments
            && queued - next < DECODE_AHEAD
            && held.get(&queued).is_some_and(|b| b.len() >= k)
        {
            let blocks = held.remove(&queued).unwrap_or_default();
            decoding.start(queued, blocks);
            queued += 1;
        }
        let idle = decoding.is_empty().then(Instant::now);
        tokio::select! {
            biased;
            d = decoding.next(), if !decoding.is_empty() => {
                let dec = decoder.as_mut().ok_or(CodecError::NotEnoughShares { have: 0, need: k })?;
                // The segment's permits go back once it is written.
                let Ready { segment, _permits } = d?;
                for p in dec.accept(segment)? {
                    // A reader that stops taking data does not hold the
                    // sessions meanwhile (`park`).
                    let parked = write_or_park(out, &p, park_after, || {
                        park(&mut live, &mut rx, &mut held, queued, segments, report)
                    })
                    .await?;
                    report.bytes += p.len() as u64;
                    if let Some(parked) = parked {
                        for r in resume_all(pool, parked, report).await {
                            crew.start(&mut live, r.source, r.from, r.permits);
                        }
                        // A share may have failed, or not come back.
                        check = true;
                    }
                }
                drop(_permits);
                progress(report.bytes);
                next += 1;
            }
            a = rx.recv() => {
                let a = a.expect("the download keeps a sender");
                if take_arrival(a, &mut live, &mut held, queued, report) {
                    check = true;
                }
            }
        }
        if let Some(t) = idle {
            decoding.times.for_blocks += t.elapsed();
        }
    }
    let t = decoding.times;
    report.waits.decoding += t.decoding;
    report.waits.for_blocks += t.for_blocks;
    report.waits.for_decoder += t.queued;
    for s in opened {
        pool.put_back(s.conn);
    }
    report.waits.peak_ahead = crew.peak.load(Ordering::Relaxed);
    out.flush().await?;
    // Every block asked was received: the receivers end on their own and
    // give their sessions back. (A receiver still waiting for a permit,
    // which no block will free now, sees the queue closed and ends too.)
    drop(crew);
    drop(rx);
    for l in live.0.iter_mut() {
        if let Ok(Some(src)) = (&mut l.task).await {
            pool.put_back(src.conn);
        }
    }
    Ok(())
}

/// The first segment from `from` on (the first not yet decoding) that the
/// blocks `held` and the `live` receivers cannot bring to `k` distinct
/// shares, and the share numbers it will have. A receiver delivers every
/// segment from its `delivered` on; the scan stops at the first segment
/// past every receiver's `delivered` and every held block, which stands
/// for all those after it. (Replacing a
/// failed share by any share number not in use could pick one whose blocks
/// for the segments in between were already delivered by another failed
/// share: those segments would never complete, and the download would
/// wait for ever.)
fn starved(
    live: &[Live],
    held: &HeldBlocks,
    from: u64,
    segments: u64,
    k: usize,
) -> Option<(u64, Vec<u16>)> {
    // Past this, no block is held and every receiver delivers: the
    // segment has what the live receivers' share numbers give.
    let last = live
        .iter()
        .map(|l| l.delivered)
        .chain(held.keys().next_back().map(|&s| s + 1))
        .max()
        .unwrap_or(from)
        .max(from)
        .min(segments.checked_sub(1)?);
    (from..=last).find_map(|s| {
        let mut have: Vec<u16> = held
            .get(&s)
            .map(|b| b.iter().map(|h| h.block.shnum()).collect())
            .unwrap_or_default();
        for l in live {
            if l.delivered <= s && !have.contains(&l.shnum) {
                have.push(l.shnum);
            }
        }
        (have.len() < k).then_some((s, have))
    })
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
