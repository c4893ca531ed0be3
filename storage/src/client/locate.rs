//! Locate: which servers hold which shares of a storage index, asking as
//! few servers as the permuted list allows.

use grapevine_crypto::identity::NodeId;

use crate::client::conn::ServerRef;
use crate::client::place::permuted_servers;
use crate::client::pool::SessionPool;
use crate::protocol::{Reply, Request};
use crate::types::StorageIndex;

/// A share found on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Share number.
    pub shnum: u16,
    /// Its size.
    pub size: u64,
    /// The server.
    pub server: ServerRef,
}

/// What [`locate`] found, and whom it asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Shares found.
    pub shares: Vec<Located>,
    /// Servers asked.
    pub asked: usize,
    /// Servers that answered (with shares or without).
    pub responding: Vec<NodeId>,
}

/// What of a server's answer to `List` can be true of a file of `n`
/// shares: share numbers below `n`, each once, so at most `n` entries. A
/// lying server could otherwise inflate a check's counts (and a repair
/// planner's), end a search early or cost a verifier thousands of reads.
fn plausible(mut listed: Vec<(u16, u64)>, n: u16) -> Vec<(u16, u64)> {
    listed.retain(|&(shnum, _)| shnum < n);
    listed.sort_unstable_by_key(|l| l.0);
    listed.dedup_by_key(|l| l.0);
    listed
}

/// Ask servers, in permuted order and `n` at a time, which shares of `si`
/// they hold. Stops once all `n` share numbers are found, or once at least
/// `k` are found and `2n` servers have been asked (shares live on the first
/// servers in permuted order unless some were down at upload time), so a
/// client in a large grid asks only a few servers.
pub async fn locate(
    pool: &SessionPool,
    servers: &[ServerRef],
    si: StorageIndex,
    k: u16,
    n: u16,
) -> Findings {
    let mut out: Vec<Located> = Vec::new();
    let mut responding = Vec::new();
    let mut order = permuted_servers(&si, servers).into_iter();
    let mut asked = 0usize;
    let batch_size = (n as usize).max(1);
    loop {
        let distinct = {
            let mut v: Vec<u16> = out.iter().map(|l| l.shnum).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        if distinct >= n as usize || (distinct >= k as usize && asked >= 2 * n as usize) {
            break;
        }
        let batch: Vec<ServerRef> = order.by_ref().take(batch_size).collect();
        if batch.is_empty() {
            break;
        }
        asked += batch.len();
        let answers = futures::future::join_all(batch.into_iter().map(|s| async move {
            let mut c = pool.get(s).await.ok()?;
            let r = pool.call(&mut c, Request::List { si }).await;
            pool.put_back(c);
            match r {
                Ok(Reply::Shares(v)) => Some((s, v)),
                _ => None,
            }
        }))
        .await;
        for (s, v) in answers.into_iter().flatten() {
            responding.push(s.id);
            out.extend(plausible(v, n).into_iter().map(|(shnum, size)| Located {
                shnum,
                size,
                server: s,
            }));
        }
    }
    Findings {
        shares: out,
        asked,
        responding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server listing share numbers a file does not have, or one share
    /// many times, is believed only for what can be true.
    #[test]
    fn a_servers_list_is_kept_to_what_the_file_can_have() {
        let listed = vec![(3, 10), (3, 10), (9, 10), (10, 10), (u16::MAX, 1), (0, 5)];
        assert_eq!(plausible(listed, 10), vec![(0, 5), (3, 10), (9, 10)]);
        let many: Vec<(u16, u64)> = (0..5000).map(|i| ((i % 300) as u16, 1)).collect();
        assert_eq!(plausible(many, 10).len(), 10);
    }
}
