//! Upload: encode a file segment by segment and write each share to its
//! server, pipelined.
//!
//! Shares are placed first ([`crate::client`]'s placement: the permuted
//! list, one share per server while there are enough, servers-of-happiness).
//! Then one task per server writes its shares' blocks, fed with encoded
//! segments through a bounded queue, while one task encodes the segments
//! ahead of them (up to [`ENCODE_AHEAD`]); a server lost
//! mid-upload loses its shares, and the upload still succeeds if `happy`
//! distinct servers hold shares at the end.
//!
//! Memory: every segment takes a ticket from the pool's memory budget
//! ([`MemoryBudget::upload_segments`](crate::MemoryBudget::upload_segments))
//! when it is read and gives it back when the last writer has sent its
//! blocks, so the plaintext and blocks held at once never exceed the
//! budget's segments: with no ticket free, the driver stops reading ahead
//! and waits for the writers (the upload slows down rather than grows).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grapevine_crypto::identity::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cap::{Cap, LIT_MAX};
use crate::chk::{convergent_key, Encoder, SEGMENT_SIZE};
use crate::client::conn::{Conn, ServerRef};
use crate::client::place::{place_shares, shares_on, Placed};
use crate::client::pool::SessionPool;

use crate::error::ClientError;
use crate::protocol::{Request, MAX_WRITE};
use crate::types::{storage_index, Params, StorageIndex};

/// Encoded segments queued for each server's upload task.
const UPLOAD_QUEUE: usize = 2;
/// Segments read and handed to the encoder ahead of the one being fed to
/// the writers (each holds a segment's plaintext, then its blocks).
const ENCODE_AHEAD: usize = 3;

/// Where an upload put each share.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// The capability to read the file.
    pub cap: Cap,
    /// (share number, server) for each share the file has on the grid now:
    /// written by this upload or already held.
    pub placements: Vec<(u16, NodeId)>,
    /// (share number, server) of the shares servers already held (a
    /// convergent re-upload of a stored file writes none of these again).
    pub already_held: Vec<(u16, NodeId)>,
    /// Distinct servers holding shares.
    pub servers: usize,
    /// Servers lost during the upload (their shares were dropped; the
    /// upload went on without them), with why.
    pub lost: Vec<(NodeId, String)>,
    /// Where the upload's time went (for benchmarks and logs).
    pub waits: UploadWaits,
}

/// Where an upload's time went: its driver hands segments to the encoder
/// (a task of its own) and encoded blocks to the servers' writers
/// (through bounded queues). An encoder busy all the time with a driver
/// waiting for it means encoding bounds the upload; a driver waiting on
/// full queues means the writers and servers do.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UploadWaits {
    /// Time the encoder spent encoding segments.
    pub encoding: Duration,
    /// Time the driver waited for an encoded segment.
    pub for_encoder: Duration,
    /// Time the driver waited for room in the writers' queues.
    pub for_writers: Duration,
    /// Most segments held at once (read and not yet sent by every
    /// writer): at most the memory budget's
    /// [`upload_segments`](crate::MemoryBudget::upload_segments).
    pub peak_segments: usize,
}

/// Segments held now and at most, counted by their tickets.
#[derive(Debug, Default)]
struct Held {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// A segment's hold on the upload's memory budget, from its reading until
/// every writer has sent its blocks (dropped with the last of them).
#[derive(Debug)]
struct Ticket {
    _permit: OwnedSemaphorePermit,
    held: Arc<Held>,
}

impl Ticket {
    fn new(permit: OwnedSemaphorePermit, held: &Arc<Held>) -> Ticket {
        let now = held.now.fetch_add(1, Ordering::Relaxed) + 1;
        held.peak.fetch_max(now, Ordering::Relaxed);
        Ticket {
            _permit: permit,
            held: held.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.held.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One segment's blocks (or the trailers), shared by the writers; the
/// segment's ticket goes back when the last writer drops them, and its
/// blocks to the encoder's spares, to be filled with a later segment.
#[derive(Debug)]
struct Coded {
    blocks: Vec<Vec<u8>>,
    _ticket: Option<Ticket>,
    spares: Option<Arc<Spares>>,
}

/// Block buffers the writers are done with, for the encoder to fill again
/// (a fresh set per segment was mapped by the allocator and faulted in
/// page by page: more than half of a put's page faults). There are never
/// more sets than segments held at once, which the tickets bound, so the
/// spares add nothing to the upload's memory bound.
#[derive(Debug, Default)]
struct Spares(std::sync::Mutex<Vec<Vec<Vec<u8>>>>);

impl Spares {
    fn take(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .map(|mut v| v.pop().unwrap_or_default())
            .unwrap_or_default()
    }

    fn give(&self, blocks: Vec<Vec<u8>>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(blocks);
        }
    }
}

impl Drop for Coded {
    fn drop(&mut self) {
        if let Some(spares) = &self.spares {
            spares.give(std::mem::take(&mut self.blocks));
        }
    }
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
    if size <= LIT_MAX as u64 {
        let mut d = vec![0u8; size as usize];
        read_full(&mut input, &mut d).await?;
        return Ok(UploadReport {
            cap: Cap::Lit(d),
            placements: vec![],
            already_held: vec![],
            servers: 0,
            lost: vec![],
            waits: UploadWaits::default(),
        });
    }
    // A file this client could not read back is not stored.
    pool.holds_at_once(params.k)?;
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
    let enc =
        Encoder::new(key, params, size)?.with_small_tables(pool.config().memory.small_tables());
    let si = storage_index(&key);
    let Placed {
        conns,
        placement,
        existing,
    } = place_shares(pool, servers, si, params, enc.share_size()).await?;

    // One task per server writes its shares' blocks, pipelined; segments
    // reach the tasks through bounded queues while the next segment is
    // encoded by a task of its own.
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
        let chunk = pool.config().memory.write_chunk();
        writers.push((
            ci,
            tx,
            tokio::spawn(write_shares(conn, si, shares, rx, chunk)),
        ));
    }
    let happy = params.happy as usize;
    // Servers that already hold shares and have nothing to write count
    // towards happiness without a writer (a re-upload of a stored file may
    // have no writer at all).
    let kept_servers = distinct_servers(&kept);
    let segments = enc.segments();
    let seg_len = |seg: u64| (size - seg * SEGMENT_SIZE).min(SEGMENT_SIZE) as usize;
    // The encoder runs as one task for the whole upload, fed segments
    // through a bounded queue and handing their blocks back through
    // another, so it works up to ENCODE_AHEAD segments ahead of the
    // writers. (Handing it one segment at a time, lockstep with feeding the
    // writers, left it idle while the driver waited for room in the
    // writers' queues, and the writers idle while it encoded: measured, the
    // driver waited about as long for each as the whole encoding took.) A
    // task, not a blocking thread: a thread of its own was a third thread
    // on two cores, woken and put to sleep for every segment, and the put
    // kept 1.89-1.93 cores busy where as a task it keeps 1.97-1.99, with a
    // fifth of the context switches (paired sets of `bench storage`,
    // docs/performance.md). It holds a worker for one segment's encoding
    // at a time (about 1.5 ms here) between awaits; with the small tables
    // (several times slower) each segment goes to a blocking thread
    // instead (below).
    // Segment buffers go round: read into, encoded (into the blocks), handed back.
    let (plain_tx, mut plain_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, Ticket)>(ENCODE_AHEAD);
    let (coded_tx, mut coded_rx) = tokio::sync::mpsc::channel(ENCODE_AHEAD);
    let spares = Arc::new(Spares::default());
    let encoder_spares = spares.clone();
    // With the small tables (a budget under 32 MiB: a small board) a
    // segment's encoding takes several times longer, so each goes to a
    // blocking thread rather than hold a worker that the node's gossip and
    // share serving need.
    let long = pool.config().memory.small_tables();
    let encoder = tokio::spawn(async move {
        let mut enc = enc;
        let mut busy = Duration::ZERO;
        while let Some((buf, ticket)) = plain_rx.recv().await {
            let t = Instant::now();
            let mut blocks = encoder_spares.take();
            let (blocks, buf) = if long {
                let done = tokio::task::spawn_blocking(move || {
                    let r = enc.encode_segment_into(&buf, &mut blocks);
                    (enc, r.map(|()| blocks), buf)
                })
                .await;
                match done {
                    Ok((e, blocks, buf)) => {
                        enc = e;
                        (blocks, buf)
                    }
                    // A panic while encoding (a bug) ends this task as it
                    // would have here: the upload fails.
                    Err(e) => match e.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        Err(e) => panic!("the encoding was cancelled: {e}"),
                    },
                }
            } else {
                let r = enc.encode_segment_into(&buf, &mut blocks);
                (r.map(|()| blocks), buf)
            };
            busy += t.elapsed();
            let failed = blocks.is_err();
            if coded_tx.send((blocks, buf, ticket)).await.is_err() || failed {
                break;
            }
        }
        (enc, busy)
    });
    // The memory budget's segments, as tickets.
    let tickets = Arc::new(Semaphore::new(pool.config().memory.upload_segments(params)));
    let held = Arc::new(Held::default());
    let mut waits = UploadWaits::default();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let (mut offset, mut done, mut queued) = (0u64, 0u64, 0u64);
    let mut live = writers.len() + kept_servers;
    for seg in 0..segments {
        // Keep the encoder's queue full: up to ENCODE_AHEAD segments read
        // and not yet taken back encoded, each with a ticket. Ahead of the
        // segment next in line, only while tickets are free; for that
        // segment, wait for the writers to give one back.
        while queued < segments && queued - seg < ENCODE_AHEAD as u64 {
            let permit = if queued > seg {
                match tickets.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            } else {
                let t = Instant::now();
                let p = tickets.clone().acquire_owned().await;
                waits.for_writers += t.elapsed();
                p.map_err(|e| std::io::Error::other(e.to_string()))?
            };
            let ticket = Ticket::new(permit, &held);
            let mut buf = spare.pop().unwrap_or_default();
            buf.resize(seg_len(queued), 0);
            read_full(&mut input, &mut buf).await?;
            if plain_tx.send((buf, ticket)).await.is_err() {
                break; // the encoder failed: its error is next in line
            }
            queued += 1;
        }
        let t = Instant::now();
        let coded = coded_rx.recv().await;
        waits.for_encoder += t.elapsed();
        let Some((blocks, buf, ticket)) = coded else {
            let e = encoder.await.map(|_| "ended early").unwrap_or("panicked");
            return Err(std::io::Error::other(format!("the encoder {e}")).into());
        };
        spare.push(buf);
        let blocks = blocks?;
        let blen = blocks[0].len() as u64;
        let coded = Arc::new(Coded {
            blocks,
            _ticket: Some(ticket),
            spares: Some(spares.clone()),
        });
        let t = Instant::now();
        live = feed_writers(&writers, offset, coded).await + kept_servers;
        waits.for_writers += t.elapsed();
        if live < happy {
            break;
        }
        offset += blen;
        done += seg_len(seg) as u64;
        progress(done);
    }
    waits.peak_segments = held.peak.load(Ordering::Relaxed);
    drop(plain_tx);
    if live >= happy {
        let (enc, busy) = encoder
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        waits.encoding = busy;
        let (trailers, cap) = enc.finish()?;
        let trailers = Arc::new(Coded {
            blocks: trailers,
            _ticket: None,
            spares: None,
        });
        feed_writers(&writers, offset, trailers).await;
        return finish_upload(
            pool,
            writers,
            &placement,
            &existing,
            kept,
            happy,
            Some(Cap::Chk(cap)),
        )
        .await
        .map(|r| UploadReport { waits, ..r });
    }
    finish_upload(pool, writers, &placement, &existing, kept, happy, None).await
}

/// A server's upload task: its session index, its queue and its handle.
type Writer = (
    usize,
    tokio::sync::mpsc::Sender<(u64, Arc<Coded>)>,
    tokio::task::JoinHandle<(Conn, Result<(), ClientError>)>,
);

/// Give every live writer the blocks at `offset`; returns how many distinct
/// servers are still writing.
async fn feed_writers(writers: &[Writer], offset: u64, blocks: Arc<Coded>) -> usize {
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
    let mut servers = distinct_servers(&kept);
    let mut already_held = kept.clone();
    let mut placements = kept;
    let mut first_err = None;
    let mut lost = Vec::new();
    for (ci, tx, task) in writers {
        drop(tx);
        let (conn, r) = task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        match r {
            Ok(()) => {
                let mut mine = shares_on(placement, ci);
                let held = shares_on(existing, ci);
                already_held.extend(held.iter().map(|&s| (s, conn.server().id)));
                mine.extend(held);
                servers += 1;
                placements.extend(mine.into_iter().map(|s| (s, conn.server().id)));
            }
            Err(e) => {
                tracing::warn!(server = %conn.server().id.short(), "server lost during upload: {e}");
                lost.push((conn.server().id, e.to_string()));
                first_err.get_or_insert(e);
            }
        }
        pool.put_back(conn);
    }
    match cap {
        Some(cap) if servers >= happy => {
            placements.sort_unstable_by_key(|p| p.0);
            already_held.sort_unstable_by_key(|p| p.0);
            Ok(UploadReport {
                cap,
                placements,
                already_held,
                servers,
                lost,
                waits: UploadWaits::default(),
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

/// Distinct servers among `shares`.
fn distinct_servers(shares: &[(u16, NodeId)]) -> usize {
    let mut ids: Vec<NodeId> = shares.iter().map(|k| k.1).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// A server's upload task: write `shares`' blocks as they arrive, keeping
/// the session's [`Conn::depth`] writes outstanding (as many as its link
/// needs, at most [`Conn::max_in_flight`]), then
/// close the shares. Each segment's blocks are dropped as soon as they are
/// sent (their ticket goes back with the last writer's).
async fn write_shares(
    mut conn: Conn,
    si: StorageIndex,
    shares: Vec<u16>,
    mut rx: tokio::sync::mpsc::Receiver<(u64, Arc<Coded>)>,
    chunk: usize,
) -> (Conn, Result<(), ClientError>) {
    let chunk = chunk.clamp(1, MAX_WRITE);
    let r = async {
        while let Some((offset, blocks)) = rx.recv().await {
            for &shnum in &shares {
                let block = &blocks.blocks[shnum as usize];
                for (i, data) in block.chunks(chunk).enumerate() {
                    while conn.in_flight() >= conn.depth() {
                        conn.recv_ok().await?;
                    }
                    let at = offset + (i * chunk) as u64;
                    conn.send_write(si, shnum, at, data).await?;
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
