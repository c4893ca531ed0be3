//! Report: tell a server that a share it served is corrupt.
//!
//! A reader that finds a share's blocks or hashes do not match the
//! capability calls [`report_corrupt`]. The server does not take its word:
//! it checks the share itself (at-rest checksum and the share's own hash
//! tree, `ShareStore::report_corrupt`) and quarantines it only if that
//! fails, so a hostile reader cannot have good shares removed. A share can
//! also be consistent on the server and still wrong for the capability (a
//! hostile uploader can write a consistent share of garbage): the server
//! keeps it, and readers go on skipping it.

use grapevine_crypto::NodeId;

use crate::client::conn::ServerRef;
use crate::client::pool::SessionPool;
use crate::error::ClientError;
use crate::protocol::{ErrorCode, Reply, Request};
use crate::types::{ReportVerdict, StorageIndex};

/// Tell `server` that its share `shnum` of `si` is corrupt, and return what
/// it did after checking the share itself.
///
/// # Errors
/// [`ClientError::Server`] with [`ErrorCode::NotFound`] if the server has
/// no such share (any more), [`ErrorCode::Unsupported`] from a server of
/// an older release; session and timeout errors.
pub async fn report_corrupt(
    pool: &SessionPool,
    server: ServerRef,
    si: StorageIndex,
    shnum: u16,
) -> Result<ReportVerdict, ClientError> {
    let mut conn = pool.get(server).await?;
    let r = pool
        .call(&mut conn, Request::ReportCorrupt { si, shnum })
        .await;
    pool.put_back(conn);
    match r {
        Ok(Reply::Ok) => Ok(ReportVerdict::Kept),
        Err(ClientError::Server {
            code: ErrorCode::Corrupt,
            ..
        }) => Ok(ReportVerdict::Quarantined),
        Ok(other) => Err(ClientError::Protocol(
            server.id.short(),
            format!("unexpected answer to a report: {other:?}"),
        )),
        Err(e) => Err(e),
    }
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
