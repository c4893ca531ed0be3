//! Parking: a download whose reader stops taking data gives its sessions
//! back to the pool.
//!
//! A download holds `k` of its pool's sessions while it runs. When whoever
//! it writes to stops reading (an HTTP client that opened a download and
//! went quiet, a pager on standard output), the write waits, and the
//! sessions waited with it: a handful of such readers held every slot of
//! the pool, starving every other download, upload and check of the node
//! until the gateway's stall deadline ended them, and could start again.
//!
//! So a write that has waited [`PoolConfig::park_after`] *parks* the
//! download: its sessions are closed at once (their slots free for anyone;
//! the reads they had in flight are dropped) and what it needs to go on is
//! kept: each share's server, number, block checker, read-ahead permits
//! and the first segment it has not delivered ([`Parked`]). When the write
//! completes, the download takes sessions from the pool again, waiting
//! like any other operation ([`Parked::resume`]), and asks again for what
//! was in flight; blocks already received (checked) stay. A parked
//! download holds memory (its blocks, within the budget, and the writer's
//! buffer) but no sessions. A writer that takes data, however slowly,
//! never parks: the wait starts again with every piece it takes.
//!
//! [`PoolConfig::park_after`]: crate::client::PoolConfig::park_after

use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::chk::BlockChecker;
use crate::client::conn::ServerRef;
use crate::client::download_report::DownloadReport;
use crate::client::pool::SessionPool;
use crate::client::receive::{Permits, Source};
use crate::error::ClientError;

/// What a parked share needs to be read again.
pub(crate) struct Parked {
    /// Its server.
    pub(crate) server: ServerRef,
    /// Its number.
    pub(crate) shnum: u16,
    /// Its block hashes (accepted when it was first opened).
    pub(crate) checker: BlockChecker,
    /// The first segment it has not delivered (a whole download's; a
    /// ranged one asks again from the segment it is at).
    pub(crate) from: u64,
    /// Its read-ahead permits (blocks it delivered still hold some).
    pub(crate) permits: Option<Permits>,
}

impl Parked {
    /// A session to the share's server again, from the pool.
    async fn resume(self, pool: &SessionPool) -> Result<Resumed, ClientError> {
        let conn = pool.get(self.server).await?;
        Ok(Resumed {
            source: Source {
                conn,
                shnum: self.shnum,
                checker: self.checker,
            },
            from: self.from,
            permits: self.permits,
        })
    }
}

/// A parked share read again: its new session, where it goes on, its
/// permits.
pub(crate) struct Resumed {
    pub(crate) source: Source,
    pub(crate) from: u64,
    pub(crate) permits: Option<Permits>,
}

/// Take sessions for the `parked` shares again. A share whose server
/// cannot be reached now is left out (and counted in `report`: unusable,
/// and busy if the pool had no session free); the download replaces it
/// as it replaces any share that fails.
pub(crate) async fn resume_all(
    pool: &SessionPool,
    parked: Vec<Parked>,
    report: &mut DownloadReport,
) -> Vec<Resumed> {
    let mut out = Vec::with_capacity(parked.len());
    for share in parked {
        let shnum = share.shnum;
        match share.resume(pool).await {
            Ok(r) => out.push(r),
            Err(e) => {
                report.unusable += 1;
                report.busy += usize::from(matches!(e, ClientError::PoolExhausted(_)));
                tracing::warn!(shnum, "share not read again after parking: {e}");
            }
        }
    }
    out
}

/// Close the sessions of `sources` (a ranged download's, which reads its
/// shares in step: the reads they had in flight are dropped) and say
/// what is needed to read them again.
pub(crate) fn park_sources(sources: &mut Vec<Source>) -> Vec<Parked> {
    sources
        .drain(..)
        .map(|s| Parked {
            server: s.conn.server(),
            shnum: s.shnum,
            checker: s.checker,
            from: 0,
            permits: None,
        })
        .collect()
}

/// Write all of `buf` to `out`. If the writer makes no progress for
/// `after` (takes none of it: its reader is not reading), call `park`
/// (which gives the download's sessions up) and wait for the write; what
/// `park` returned comes back, to resume from. A reader that is slow but
/// reads resets the wait with every piece it takes.
pub(crate) async fn write_or_park<W, T>(
    out: &mut W,
    buf: &[u8],
    after: Duration,
    park: impl FnOnce() -> T,
) -> io::Result<Option<T>>
where
    W: AsyncWrite + Unpin,
{
    let mut park = Some(park);
    let mut parked = None;
    let mut rest = buf;
    while !rest.is_empty() {
        // `write` is cancel-safe: when the timer wins, nothing was written.
        let n = match park.take() {
            Some(p) => tokio::select! {
                biased;
                n = out.write(rest) => {
                    park = Some(p);
                    n?
                }
                () = tokio::time::sleep(after) => {
                    parked = Some(p());
                    tracing::debug!("the download's reader is slow: its sessions are given back");
                    continue;
                }
            },
            None => out.write(rest).await?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
    }
    Ok(parked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A write that finishes in time never parks; one whose reader waits
    /// parks once, then finishes.
    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_parks_once_and_then_finishes() {
        let (mut w, mut r) = tokio::io::duplex(8);
        let fast = write_or_park(&mut w, b"1234", Duration::from_secs(5), || "parked")
            .await
            .unwrap();
        assert_eq!(fast, None);
        let mut four = [0u8; 4];
        r.read_exact(&mut four).await.unwrap();
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let mut all = Vec::new();
            r.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut calls = 0;
        let slow = write_or_park(&mut w, &[7u8; 64], Duration::from_secs(5), || {
            calls += 1;
            "parked"
        })
        .await
        .unwrap();
        assert_eq!(slow, Some("parked"));
        assert_eq!(calls, 1);
        drop(w);
        assert_eq!(reader.await.unwrap(), vec![7u8; 64]);
    }

    /// A reader that is slow but takes something within every `after`
    /// never makes the write park, however long the whole write takes.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_reads_never_parks() {
        let (mut w, mut r) = tokio::io::duplex(8);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut byte = [0u8; 1];
            while r.read(&mut byte).await.unwrap() == 1 {
                all.push(byte[0]);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            all
        });
        let parked = write_or_park(&mut w, &[5u8; 64], Duration::from_secs(5), || "parked")
            .await
            .unwrap();
        assert_eq!(parked, None, "parked a reader that reads");
        drop(w);
        assert_eq!(reader.await.unwrap(), vec![5u8; 64]);
    }
}
