//! Check: which servers hold which shares of a file, and with `verify`,
//! whether every block of every share matches the capability; reported as
//! [`CheckResults`] (Tahoe's check-result keys, see `health`). Corrupt
//! shares are reported to their servers, which check them themselves.
//!
//! A check needs no key: it works from the file's verify capability
//! ([`check_verify_cap`]); [`check`] takes any capability and reduces it.

use std::collections::BTreeSet;

use grapevine_crypto::identity::NodeId;

use crate::cap::{Cap, VerifyCap};
use crate::chk::Verifier;
use crate::client::conn::{Conn, ServerRef};
use crate::client::health::{CheckResults, CorruptReport, Found};
use crate::client::locate::{locate_in, Asking, Located, Search};
use crate::client::place::permuted_servers;
use crate::client::pool::SessionPool;
use crate::client::report::report_all;
use crate::client::verified::open_verified;
use crate::error::ClientError;
use crate::protocol::{ErrorCode, Request};
use crate::types::StorageIndex;

/// Report which servers hold which shares; with `verify`, download and check
/// every share against the capability.
///
/// # Errors
/// [`ClientError::PoolExhausted`] when every session of the pool stayed in
/// use and the check could not look where it had to (a file with no
/// shares anywhere is a report, not an error).
pub async fn check(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &Cap,
    verify: bool,
) -> Result<CheckResults, ClientError> {
    match cap {
        Cap::Lit(d) => Ok(CheckResults::literal(d.len())),
        Cap::Chk(c) => check_verify_cap(pool, servers, &c.verify_cap(), verify).await,
    }
}

/// [`check`] with a verify capability: the same report, without the key.
///
/// # Errors
/// As [`check`].
pub async fn check_verify_cap(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &VerifyCap,
    verify: bool,
) -> Result<CheckResults, ClientError> {
    let depth = if verify { Depth::Full } else { Depth::List };
    check_depth(pool, servers, cap, depth).await
}

/// [`check_verify_cap`] looking at each share as closely as `depth` says.
///
/// # Errors
/// As [`check`].
pub async fn check_depth(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &VerifyCap,
    depth: Depth,
) -> Result<CheckResults, ClientError> {
    Ok(inspect_until(pool, servers, cap, depth, cap.n)
        .await?
        .results)
}

/// [`check_depth`] that stops looking once `enough` distinct good shares
/// are found (taken between `k` and `n`): the report then counts at least `enough` good
/// shares if the file has them, not necessarily all. For a caller that
/// needs only to know whether a file is below a threshold: the repair job
/// of a holder, whose checks of healthy files would otherwise ask the next
/// `n` servers of the permuted list for every file missing a single share.
///
/// # Errors
/// As [`check`].
pub async fn check_enough(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &VerifyCap,
    depth: Depth,
    enough: u16,
) -> Result<CheckResults, ClientError> {
    Ok(inspect_until(pool, servers, cap, depth, enough)
        .await?
        .results)
}

/// How closely a check looks at each share a server lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Believe the servers' lists (`check` without `--verify`).
    List,
    /// Read each listed share's footer, extension block and hash list and
    /// check them against the capability (a few KiB a share): a server
    /// listing shares it lacks, or of another file, is caught. What repair
    /// uses by default.
    Light,
    /// Also read and check every block (`check --verify`).
    Full,
}

/// What a check found, with the shares behind the report.
#[derive(Debug)]
pub(crate) struct Inspection {
    /// The report.
    pub(crate) results: CheckResults,
    /// Shares not found corrupt (verified if the check verified), in
    /// permuted order of their servers.
    pub(crate) usable: Vec<Located>,
    /// Bytes read to verify.
    pub(crate) bytes_read: u64,
    /// Servers caught listing a share they could not serve intact: a
    /// repair puts no new share on them.
    pub(crate) suspects: Vec<NodeId>,
}

/// Locate the shares of `cap` and, with `verify`, check each one.
///
/// # Errors
/// [`ClientError::PoolExhausted`] when the pool was too busy to ask a
/// server or open a share and fewer good shares than looked for were
/// found: the check could not look, and its report would call a file
/// short of shares it may well have (a repair would then regenerate
/// shares that exist, or call the file unrecoverable).
pub(crate) async fn inspect(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &VerifyCap,
    depth: Depth,
) -> Result<Inspection, ClientError> {
    inspect_until(pool, servers, cap, depth, cap.n).await
}

/// [`inspect`], looking no further once `enough` distinct good shares are
/// found.
async fn inspect_until(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &VerifyCap,
    depth: Depth,
    enough: u16,
) -> Result<Inspection, ClientError> {
    let enough = enough.max(cap.k).min(cap.n);
    // Servers not asked, or shares not opened, for want of a session.
    let mut busy = 0usize;
    let si = cap.si;
    let order = permuted_servers(&si, servers);
    let mut shares: Vec<Found> = Vec::new();
    let mut usable: Vec<Located> = Vec::new();
    let mut v: Option<Verifier> = None;
    let mut bytes_read = 0u64;
    let mut suspects = Vec::new();
    let (mut asked, mut responding) = (0usize, Vec::new());
    // Servers are asked in permuted order, `n` at a time (`locate`). A
    // server listing shares it lacks can make `locate` stop early; when
    // shares are checked, the search goes on past the servers asked, by
    // `locate`'s own rule counting only the shares that checked out, up to
    // 4n servers. (Going on with a fresh search instead, which counted
    // none of the shares already found, walked the whole rest of the grid
    // for every file missing a single share.)
    loop {
        let known: Vec<u16> = usable.iter().map(|l| l.shnum).collect();
        let search = Search {
            k: cap.k,
            n: cap.n,
            enough,
            known: &known,
            asked_before: asked,
            max_asked: if asked == 0 {
                usize::MAX
            } else {
                4 * usize::from(cap.n)
            },
        };
        // A check that reads nothing from the servers asks them for
        // listings where it holds no session (no handshake each).
        let asking = if depth == Depth::List {
            Asking::Listings
        } else {
            Asking::Sessions
        };
        let found = locate_in(pool, &order[asked..], si, search, asking).await;
        asked += found.asked;
        busy += found.busy;
        responding.extend(found.responding.iter().copied());
        for loc in found.shares {
            let ok = if depth != Depth::List {
                let r = async {
                    let mut src = open_verified(pool, &loc, cap, &mut v, &mut bytes_read).await?;
                    let ver = v.as_ref().expect("verifier");
                    let r = if depth == Depth::Full {
                        verify_blocks(&mut src.conn, si, loc.shnum, ver, &mut bytes_read).await
                    } else {
                        Ok(())
                    };
                    pool.put_back(src.conn);
                    r
                }
                .await;
                match r {
                    Ok(()) => Some(true),
                    // Only a share that fails its hashes is corrupt; a server
                    // that cannot be reached or read proves nothing.
                    Err(
                        ClientError::Codec(_)
                        | ClientError::Server {
                            code: ErrorCode::Corrupt,
                            ..
                        },
                    ) => Some(false),
                    Err(e) => {
                        tracing::warn!(shnum = loc.shnum, server = %loc.server.id.short(), "share not verified: {e}");
                        busy += usize::from(matches!(e, ClientError::PoolExhausted(_)));
                        // Listed, then not there: the server's list was false.
                        if matches!(
                            e,
                            ClientError::Server {
                                code: ErrorCode::NotFound | ErrorCode::OutOfRange,
                                ..
                            }
                        ) {
                            suspects.push(loc.server.id);
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            shares.push((loc.shnum, loc.server.id, ok));
            if ok != Some(false) {
                usable.push(loc);
            }
        }
        let distinct: BTreeSet<u16> = usable.iter().map(|l| l.shnum).collect();
        if depth == Depth::List
            || found.asked == 0
            || distinct.len() >= usize::from(enough)
            || asked >= order.len()
            || asked >= 4 * usize::from(cap.n)
        {
            break;
        }
    }
    let good: BTreeSet<u16> = usable.iter().map(|l| l.shnum).collect();
    if busy > 0 && good.len() < usize::from(enough) {
        return Err(ClientError::PoolExhausted(pool.config().max_sessions));
    }
    let mut results = CheckResults::of(&si, cap.k, cap.n, asked, &responding, &shares);
    // Tell the servers of corrupt shares; each checks its share itself.
    let corrupt: Vec<(u16, NodeId)> = shares
        .iter()
        .filter(|s| s.2 == Some(false))
        .map(|s| (s.0, s.1))
        .collect();
    suspects.extend(corrupt.iter().map(|c| c.1));
    results.corrupt_share_reports = report_all(pool, servers, si, &corrupt)
        .await
        .into_iter()
        .map(|(share, server, verdict)| CorruptReport::new(share, server, verdict))
        .collect();
    suspects.sort_unstable();
    suspects.dedup();
    Ok(Inspection {
        results,
        usable,
        bytes_read,
        suspects,
    })
}

/// Read every block of one share, pipelined, and check each against `v`.
async fn verify_blocks(
    conn: &mut Conn,
    si: StorageIndex,
    shnum: u16,
    v: &Verifier,
    read: &mut u64,
) -> Result<(), ClientError> {
    let ueb = v.ueb();
    let segments = ueb.segments();
    let mut asked = 0;
    for seg in 0..segments {
        while asked < segments && conn.in_flight() < conn.depth() {
            conn.send(Request::Read {
                si,
                shnum,
                offset: ueb.block_offset(asked),
                len: ueb.block_len(asked) as u32,
            })
            .await?;
            asked += 1;
        }
        let b = conn.recv_data(ueb.block_len(seg)).await?;
        *read = read.saturating_add(b.len() as u64);
        v.check_block(shnum, seg, &b)?;
    }
    Ok(())
}
