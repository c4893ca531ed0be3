//! Check: which servers hold which shares of a file, and with `verify`,
//! whether every block of every share matches the capability; reported as
//! [`CheckResults`] (Tahoe's check-result keys, see `health`). Corrupt
//! shares are reported to their servers, which check them themselves.

use grapevine_crypto::identity::NodeId;

use crate::cap::Cap;
use crate::chk::Decoder;
use crate::client::conn::{Conn, ServerRef, MAX_IN_FLIGHT};
use crate::client::download::{open_source, report_all};
use crate::client::health::{CheckResults, CorruptReport, Found};
use crate::client::locate::locate;
use crate::client::pool::SessionPool;
use crate::error::ClientError;
use crate::protocol::{ErrorCode, Request};
use crate::types::StorageIndex;

/// Report which servers hold which shares; with `verify`, download and check
/// every share against the capability.
///
/// # Errors
/// None today (a file with no shares anywhere is a report, not an error);
/// the `Result` leaves room for failures of the check itself.
pub async fn check(
    pool: &SessionPool,
    servers: &[ServerRef],
    cap: &Cap,
    verify: bool,
) -> Result<CheckResults, ClientError> {
    let cap = match cap {
        Cap::Lit(d) => return Ok(CheckResults::literal(d.len())),
        Cap::Chk(c) => c,
    };
    let si = cap.storage_index();
    let found = locate(pool, servers, si, cap.k, cap.n).await;
    let mut shares: Vec<Found> = Vec::new();
    for loc in found.shares {
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
                    continue;
                }
            }
        } else {
            None
        };
        shares.push((loc.shnum, loc.server.id, ok));
    }
    let mut results = CheckResults::of(&si, cap.k, cap.n, found.asked, &found.responding, &shares);
    // Tell the servers of corrupt shares; each checks its share itself.
    let corrupt: Vec<(u16, NodeId)> = shares
        .iter()
        .filter(|s| s.2 == Some(false))
        .map(|s| (s.0, s.1))
        .collect();
    results.corrupt_share_reports = report_all(pool, servers, si, &corrupt)
        .await
        .into_iter()
        .map(|(share, server, verdict)| CorruptReport::new(share, server, verdict))
        .collect();
    Ok(results)
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
