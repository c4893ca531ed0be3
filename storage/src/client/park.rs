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
//! buffer) but no sessions. A fast writer never parks: the timer only
//! runs while a write waits.
//!
//! [`PoolConfig::park_after`]: crate::client::PoolConfig::park_after

use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::chk::BlockChecker;
use crate::client::conn::ServerRef;
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
    pub(crate) async fn resume(self, pool: &SessionPool) -> Result<Source, ClientError> {
        let conn = pool.get(self.server).await?;
        Ok(Source {
            conn,
            shnum: self.shnum,
            checker: self.checker,
        })
    }
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

/// Write all of `buf` to `out`. If that has not finished after `after`,
/// call `park` (which gives the download's sessions up) and wait for the
/// write; what `park` returned comes back, to resume from.
pub(crate) async fn write_or_park<W, T>(
    out: &mut W,
    buf: &[u8],
    after: Duration,
    park: impl FnOnce() -> T,
) -> io::Result<Option<T>>
where
    W: AsyncWrite + Unpin,
{
    let write = out.write_all(buf);
    tokio::pin!(write);
    tokio::select! {
        biased;
        r = &mut write => return r.map(|()| None),
        () = tokio::time::sleep(after) => {}
    }
    let parked = park();
    tracing::debug!("the download's reader is slow: its sessions are given back");
    write.await?;
    Ok(Some(parked))
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
}
