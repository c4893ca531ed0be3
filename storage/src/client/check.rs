//! Check: which servers hold which shares of a file, and with `verify`,
//! whether every block of every share matches the capability.

use std::collections::HashSet;

use grapevine_crypto::identity::NodeId;

use crate::cap::Cap;
use crate::chk::Decoder;
use crate::client::conn::{Conn, ServerRef, MAX_IN_FLIGHT};
use crate::client::download::open_source;
use crate::client::locate::locate;
use crate::client::pool::SessionPool;
use crate::error::ClientError;
use crate::protocol::Request;
use crate::types::StorageIndex;

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
    let mut good = HashSet::new();
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
