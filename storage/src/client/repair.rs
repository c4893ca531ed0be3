//! Repair: regenerate a file's missing and corrupt shares onto the next
//! servers in permuted order, from a verify capability (no key, so the
//! repairer never holds plaintext), reported in Tahoe's keys.
//!
//! 1. Check the file: each listed share's extension block and hash list
//!    are checked against the capability ([`Depth::Light`]), or every block
//!    with `verify` ([`Depth::Full`]): the *pre-repair results*. A server
//!    that listed a share it could not serve intact is a *suspect*.
//! 2. If fewer than `n` distinct good shares were found (and at least `k`),
//!    open `k` of them, checking each one's extension block against the
//!    capability and its hash list against the block, and regenerate the
//!    first segment's missing blocks (so sources that serve corrupt blocks
//!    are found before anything is placed).
//! 3. Place the missing share numbers on the first servers in permuted
//!    order that hold no share of the file (then, if there are too few, on
//!    those that do), never on a suspect, each allocating the share's size
//!    as the verified block gives it.
//! 4. Segment by segment, read the `k` blocks, check each against its
//!    hash, regenerate the missing blocks (Reed-Solomon over ciphertext) and
//!    write them. A source that fails or serves a corrupt block is dropped
//!    for the next good share; each is tried once, so a lying server costs
//!    one attempt, never a loop.
//! 5. Close each new share only if its blocks' Merkle root is the one the
//!    extension block records for its number ([`Verifier::trailer`]);
//!    otherwise abort it. Repair never deletes anything: it only adds.
//! 6. Check again: the *post-repair results*; the repair succeeded if the
//!    file is healthy afterwards.
//!
//! Reads and writes can be paced ([`RepairOptions::rate`]); the bytes
//! read and written are counted in the report.

use std::collections::BTreeSet;
use std::time::Instant;

use grapevine_crypto::identity::NodeId;
use serde::{Deserialize, Serialize};

use crate::cap::VerifyCap;
use crate::chk::{NewShare, Verifier};
use crate::client::check::{inspect, Depth};
use crate::client::conn::{Conn, ServerRef};
use crate::client::health::CheckResults;
use crate::client::locate::Located;
use crate::client::place::permuted_servers;
use crate::client::pool::SessionPool;
use crate::client::verified::{open_verified, VerifiedSource};
use crate::error::{ClientError, CodecError};
use crate::protocol::{Request, MAX_WRITE};
use crate::store::RateLimit;

/// How to repair.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Verify every block of every share before and after (else each
    /// listed share's hash list is checked, [`Depth::Light`]; the blocks
    /// repair reads are always checked one by one).
    pub verify: bool,
    /// Pace repair's reads and writes to this many bytes a second.
    pub rate: Option<u64>,
}

/// A check-and-repair's report, in Tahoe's keys
/// (`t=check&repair=true&output=JSON`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepairResults {
    /// The storage index in base32.
    pub storage_index: String,
    /// Whether a repair was attempted (the file was not healthy).
    pub repair_attempted: bool,
    /// Whether a repair was attempted and the file was healthy afterwards.
    pub repair_successful: bool,
    /// The check before repair.
    pub pre_repair_results: CheckResults,
    /// The check after repair (the same as before when none was attempted).
    pub post_repair_results: CheckResults,
    /// What the repair did (not one of Tahoe's keys).
    pub repair_report: RepairReport,
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepairReport {
    /// (share number, server) of each share regenerated and closed.
    pub shares_regenerated: Vec<(u16, String)>,
    /// Bytes read from servers by the checks and the repair.
    pub bytes_read: u64,
    /// Bytes of regenerated shares written.
    pub bytes_written: u64,
    /// The least any repair of these shares reads: `k` blocks per segment
    /// (the file's ciphertext, padded), when shares were regenerated.
    /// `bytes-read` over it is the repair's read amplification.
    #[serde(default)]
    pub minimum_read: u64,
    /// What went wrong on the way (a source dropped, a server refusing).
    pub errors: Vec<String>,
}

/// Check the file `cap` names and regenerate its missing and corrupt
/// shares; see the module documentation.
///
/// # Errors
/// [`ClientError::PoolExhausted`] when the pool was too busy for the
/// check before (then nothing is regenerated: the check could not look)
/// or after (then shares may have been regenerated, and the next check
/// tells); other failures are in the report (`repair-successful` false
/// and `errors`).
pub async fn repair(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &VerifyCap,
    opts: &RepairOptions,
) -> Result<RepairResults, ClientError> {
    let depth = if opts.verify {
        Depth::Full
    } else {
        Depth::Light
    };
    let pre = inspect(pool, servers, cap, depth).await?;
    let mut report = RepairReport {
        bytes_read: pre.bytes_read,
        ..RepairReport::default()
    };
    let good: BTreeSet<u16> = pre.usable.iter().map(|l| l.shnum).collect();
    let missing: Vec<u16> = (0..cap.n).filter(|s| !good.contains(s)).collect();
    if missing.is_empty() {
        return Ok(RepairResults {
            storage_index: cap.si.to_string(),
            repair_attempted: false,
            repair_successful: false,
            post_repair_results: pre.results.clone(),
            pre_repair_results: pre.results,
            repair_report: report,
        });
    }
    if good.len() < cap.k as usize {
        let found = match good.len() {
            1 => "1 distinct good share".to_string(),
            g => format!("{g} distinct good shares"),
        };
        report
            .errors
            .push(format!("unrecoverable: {found} found, {} needed", cap.k));
    } else {
        let job = Job {
            pool,
            servers,
            cap,
            suspects: pre.suspects.iter().copied().collect(),
        };
        if let Err(e) = job
            .regenerate(&pre.usable, &missing, opts, &mut report)
            .await
        {
            report.errors.push(e.to_string());
        }
    }
    let post = inspect(pool, servers, cap, depth).await?;
    report.bytes_read = report.bytes_read.saturating_add(post.bytes_read);
    Ok(RepairResults {
        storage_index: cap.si.to_string(),
        repair_attempted: true,
        repair_successful: post.results.results.healthy,
        pre_repair_results: pre.results,
        post_repair_results: post.results,
        repair_report: report,
    })
}

/// A server taking regenerated shares.
struct Target {
    conn: Conn,
    shares: Vec<NewShare>,
}

/// One repair's context.
struct Job<'a> {
    pool: &'a SessionPool,
    servers: &'a [ServerRef],
    cap: &'a VerifyCap,
    /// Servers caught lying or serving corrupt data: no new shares.
    suspects: BTreeSet<NodeId>,
}

/// The sources being read and the candidates left.
struct Sources {
    open: Vec<VerifiedSource>,
    pending: std::vec::IntoIter<Located>,
    v: Option<Verifier>,
}

impl Job<'_> {
    /// Regenerate `missing` from the `usable` shares (at least `k`
    /// distinct) onto the next servers in permuted order.
    async fn regenerate(
        mut self,
        usable: &[Located],
        missing: &[u16],
        opts: &RepairOptions,
        report: &mut RepairReport,
    ) -> Result<(), ClientError> {
        self.pool.holds_at_once(self.cap.k)?;
        let k = self.cap.k as usize;
        // One candidate per share number, in permuted order of servers.
        let mut seen = BTreeSet::new();
        let candidates: Vec<Located> = usable
            .iter()
            .filter(|l| seen.insert(l.shnum))
            .copied()
            .collect();
        let mut src = Sources {
            open: Vec::new(),
            pending: candidates.into_iter(),
            v: None,
        };
        self.fill(&mut src, report).await;
        if src.v.is_none() || src.open.len() < k {
            let have = src.open.len();
            self.put_back(src.open.into_iter().map(|s| s.conn));
            return Err(CodecError::NotEnoughShares { have, need: k }.into());
        }
        // The first segment before placing anything: sources serving
        // corrupt blocks are found (and their servers suspected) first.
        let first = match self.read_segment(&mut src, 0, missing, report).await {
            Ok(b) => b,
            Err(e) => {
                self.put_back(src.open.into_iter().map(|s| s.conn));
                return Err(e);
            }
        };
        let holders: BTreeSet<NodeId> = usable.iter().map(|l| l.server.id).collect();
        let ver = src.v.as_ref().expect("verifier");
        let mut targets = self.place(ver, &holders, missing, report).await;
        if targets.is_empty() {
            self.put_back(src.open.into_iter().map(|s| s.conn));
            return Err(ClientError::NotHappy { got: 0, happy: 1 });
        }
        let segments = ver.ueb().segments();
        let mut pace = opts.rate.map(RateLimit::new);
        let mut first = Some((missing.to_vec(), first));
        let r = async {
            for seg in 0..segments {
                let (want, blocks) = match first.take() {
                    Some(f) => f,
                    None => {
                        let want: Vec<u16> = targets
                            .iter()
                            .flat_map(|t| t.shares.iter().map(NewShare::shnum))
                            .collect();
                        if want.is_empty() {
                            break;
                        }
                        let b = self.read_segment(&mut src, seg, &want, report).await?;
                        (want, b)
                    }
                };
                let offset = src.v.as_ref().expect("verifier").ueb().block_offset(seg);
                let written = self
                    .write_segment(&mut targets, &want, &blocks, offset, report)
                    .await;
                if targets.is_empty() {
                    break;
                }
                if let Some(p) = pace.as_mut() {
                    let read = (blocks.first().map_or(0, Vec::len) as u64).saturating_mul(k as u64);
                    let until = p.after(read.saturating_add(written), Instant::now());
                    tokio::time::sleep_until(until.into()).await;
                }
            }
            Ok::<(), ClientError>(())
        }
        .await;
        self.put_back(src.open.into_iter().map(|s| s.conn));
        let ver = src.v.as_ref().expect("verifier");
        let closed = report.shares_regenerated.len();
        for t in targets {
            self.finish(t, ver, r.is_ok(), report).await;
        }
        if report.shares_regenerated.len() > closed {
            report.minimum_read = ver.ueb().blocks_len().saturating_mul(k as u64);
        }
        report.shares_regenerated.sort();
        r
    }

    /// Write one segment's blocks to every target; a target that fails is
    /// dropped (its shares are never closed). Returns the bytes written.
    async fn write_segment(
        &self,
        targets: &mut Vec<Target>,
        want: &[u16],
        blocks: &[Vec<u8>],
        offset: u64,
        report: &mut RepairReport,
    ) -> u64 {
        let mut written = 0u64;
        let mut kept = Vec::new();
        for mut t in targets.drain(..) {
            let mut failed = None;
            for share in t.shares.iter_mut() {
                let Some(at) = want.iter().position(|&w| w == share.shnum()) else {
                    continue;
                };
                share.push_block(&blocks[at]);
                let chunk = self.pool.config().memory.write_chunk();
                let to = (share.shnum(), offset);
                match write(&mut t.conn, self.cap, to, &blocks[at], chunk).await {
                    Ok(()) => written = written.saturating_add(blocks[at].len() as u64),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => kept.push(t),
                Some(e) => {
                    report.errors.push(format!(
                        "{} dropped as a target: {e}",
                        t.conn.server().id.short()
                    ));
                    self.pool.put_back(t.conn);
                }
            }
        }
        *targets = kept;
        report.bytes_written = report.bytes_written.saturating_add(written);
        written
    }

    /// Close each of `t`'s shares if `ok` and it is exactly the share the
    /// UEB records; abort it otherwise.
    async fn finish(&self, mut t: Target, ver: &Verifier, ok: bool, report: &mut RepairReport) {
        let server = t.conn.server().id;
        let si = self.cap.si;
        for share in &t.shares {
            let shnum = share.shnum();
            let trailer = match ver.trailer(share) {
                Ok(trailer) if ok => Some(trailer),
                Ok(_) => None,
                Err(e) => {
                    report.errors.push(format!("share {shnum} not closed: {e}"));
                    None
                }
            };
            let Some(trailer) = trailer else {
                let _ = t.conn.send(Request::Abort { si, shnum }).await;
                let _ = drain(&mut t.conn).await;
                continue;
            };
            let at = ver.ueb().blocks_len();
            let w = async {
                let chunk = self.pool.config().memory.write_chunk();
                write(&mut t.conn, self.cap, (shnum, at), &trailer, chunk).await?;
                t.conn.send(Request::Close { si, shnum }).await?;
                drain(&mut t.conn).await
            }
            .await;
            match w {
                Ok(()) => {
                    report.bytes_written =
                        report.bytes_written.saturating_add(trailer.len() as u64);
                    report.shares_regenerated.push((shnum, server.to_string()));
                }
                Err(e) => report
                    .errors
                    .push(format!("share {shnum} on {}: {e}", server.short())),
            }
        }
        self.pool.put_back(t.conn);
    }

    fn put_back(&self, conns: impl Iterator<Item = Conn>) {
        for c in conns {
            self.pool.put_back(c);
        }
    }

    /// Open candidates until `k` sources are usable; a candidate that
    /// fails makes its server a suspect.
    async fn fill(&mut self, src: &mut Sources, report: &mut RepairReport) {
        while src.open.len() < self.cap.k as usize {
            let Some(loc) = src.pending.next() else { break };
            let mut read = 0;
            match open_verified(self.pool, &loc, self.cap, &mut src.v, &mut read).await {
                Ok(s) => src.open.push(s),
                Err(e) => {
                    self.suspects.insert(loc.server.id);
                    report.errors.push(format!(
                        "share {} on {} not used: {e}",
                        loc.shnum,
                        loc.server.id.short()
                    ));
                }
            }
            report.bytes_read = report.bytes_read.saturating_add(read);
        }
    }

    /// The blocks of `want` for segment `seg`: read a block from each
    /// source, check it, regenerate. A source that fails or serves a
    /// corrupt block is replaced by the next candidate (its server becomes
    /// a suspect) and the segment read again; each candidate is opened
    /// once, so this ends.
    async fn read_segment(
        &mut self,
        src: &mut Sources,
        seg: u64,
        want: &[u16],
        report: &mut RepairReport,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let k = self.cap.k as usize;
        let si = self.cap.si;
        loop {
            if src.open.len() < k {
                return Err(CodecError::NotEnoughShares {
                    have: src.open.len(),
                    need: k,
                }
                .into());
            }
            let ver = src.v.as_ref().expect("verifier");
            let (off, len) = (ver.ueb().block_offset(seg), ver.ueb().block_len(seg));
            let mut blocks = Vec::new();
            let mut failed = Vec::new();
            for s in src.open.iter_mut() {
                let read = Request::Read {
                    si,
                    shnum: s.shnum,
                    offset: off,
                    len: len as u32,
                };
                let r = match s.conn.send(read).await {
                    Ok(()) => s.conn.recv_data(len).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(b) => {
                        report.bytes_read = report.bytes_read.saturating_add(b.len() as u64);
                        blocks.push((s.shnum, b));
                    }
                    Err(e) => {
                        report
                            .errors
                            .push(format!("share {} read failed: {e}", s.shnum));
                        failed.push(s.shnum);
                    }
                }
            }
            if failed.is_empty() {
                match ver.regenerate(seg, &blocks, want)? {
                    Ok(out) => return Ok(out),
                    Err(bad) => {
                        for b in &bad {
                            report
                                .errors
                                .push(format!("share {b} served a corrupt block of segment {seg}"));
                        }
                        failed = bad;
                    }
                }
            }
            // Drop the failed sources for good and open replacements.
            let (gone, kept): (Vec<_>, Vec<_>) =
                src.open.drain(..).partition(|s| failed.contains(&s.shnum));
            src.open = kept;
            for s in gone {
                self.suspects.insert(s.conn.server().id);
                self.pool.put_back(s.conn);
            }
            self.fill(src, report).await;
        }
    }

    /// Allocate `missing` shares on the next servers in permuted order:
    /// one each on servers holding no good share of the file first, then
    /// on the holders; never on a suspect. A server that refuses (full, or
    /// it already has that share number) is passed over for that share.
    /// Shares left over go round the servers already taking one.
    async fn place(
        &self,
        ver: &Verifier,
        holders: &BTreeSet<NodeId>,
        missing: &[u16],
        report: &mut RepairReport,
    ) -> Vec<Target> {
        let si = self.cap.si;
        let order: Vec<ServerRef> = permuted_servers(&si, self.servers)
            .into_iter()
            .filter(|s| !self.suspects.contains(&s.id))
            .collect();
        let (fresh, held): (Vec<ServerRef>, Vec<ServerRef>) =
            order.into_iter().partition(|s| !holders.contains(&s.id));
        let size = ver.share_size();
        let mut targets: Vec<Target> = Vec::new();
        let mut todo: Vec<u16> = missing.to_vec();
        for s in fresh.into_iter().chain(held) {
            if todo.is_empty() {
                break;
            }
            let mut conn = match self.pool.get(s).await {
                Ok(c) => c,
                Err(e) => {
                    report
                        .errors
                        .push(format!("{} unreachable: {e}", s.id.short()));
                    continue;
                }
            };
            let mut placed = None;
            for (i, &shnum) in todo.iter().enumerate() {
                let alloc = Request::Allocate { si, shnum, size };
                match self.pool.call(&mut conn, alloc).await {
                    Ok(_) => {
                        placed = Some(i);
                        break;
                    }
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{} refused share {shnum}: {e}", s.id.short()));
                        if conn.is_broken() {
                            break;
                        }
                    }
                }
            }
            match placed {
                Some(i) => {
                    let shnum = todo.remove(i);
                    targets.push(Target {
                        conn,
                        shares: vec![ver.new_share(shnum)],
                    });
                }
                None => self.pool.put_back(conn),
            }
        }
        let mut t = 0usize;
        while !todo.is_empty() && !targets.is_empty() {
            let shnum = todo.remove(0);
            let count = targets.len();
            for _ in 0..count {
                let target = &mut targets[t % count];
                t = t.wrapping_add(1);
                if target.conn.is_broken() {
                    continue;
                }
                let alloc = Request::Allocate { si, shnum, size };
                if self.pool.call(&mut target.conn, alloc).await.is_ok() {
                    target.shares.push(ver.new_share(shnum));
                    break;
                }
            }
        }
        targets
    }
}

/// Write `data` at `offset` of share `shnum`, pipelined, in requests of at
/// most `chunk` bytes (the memory budget's
/// [`write_chunk`](crate::MemoryBudget::write_chunk), as an upload's: each
/// request is sealed into a buffer of its own while it is sent).
async fn write(
    conn: &mut Conn,
    cap: &VerifyCap,
    (shnum, offset): (u16, u64),
    data: &[u8],
    chunk: usize,
) -> Result<(), ClientError> {
    let chunk = chunk.clamp(1, MAX_WRITE);
    for (i, piece) in data.chunks(chunk).enumerate() {
        while conn.in_flight() >= conn.depth() {
            conn.recv_ok().await?;
        }
        let at = offset.saturating_add((i * chunk) as u64);
        conn.send_write(cap.si, shnum, at, piece).await?;
    }
    Ok(())
}

/// Wait for every outstanding answer.
async fn drain(conn: &mut Conn) -> Result<(), ClientError> {
    while conn.in_flight() > 0 {
        conn.recv_ok().await?;
    }
    Ok(())
}
