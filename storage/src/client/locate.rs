//! Locate: which servers hold which shares of a storage index, asking as
//! few servers as the permuted list allows.
//!
//! A server's answer is a claim, not a fact: only share numbers below the
//! file's `n` are kept, each once per server, so a lying server can neither
//! make a check count shares the file cannot have (nor stop the search
//! early with them) nor fill the client's memory with a long list. What a
//! server claims to hold is proven only when its blocks are read and
//! checked against the capability (download, `check --verify`).

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
            out.extend(plausible(&v, n).map(|(shnum, size)| Located {
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

/// The entries of one server's answer a file of `n` shares can have: share
/// numbers below `n`, the first entry of each, in share order. Anything
/// else is logged and dropped.
fn plausible(answer: &[(u16, u64)], n: u16) -> impl Iterator<Item = (u16, u64)> {
    let mut by_shnum = std::collections::BTreeMap::new();
    for &(shnum, size) in answer {
        if shnum < n {
            by_shnum.entry(shnum).or_insert(size);
        }
    }
    if by_shnum.len() != answer.len() {
        tracing::warn!(
            listed = answer.len(),
            kept = by_shnum.len(),
            n,
            "a server listed share numbers this file cannot have, or one share twice"
        );
    }
    by_shnum.into_iter()
}

#[cfg(test)]
mod tests {
    use super::plausible;

    #[test]
    fn only_share_numbers_below_n_are_kept_each_once() {
        let answer = [(9, 10), (10, 10), (3, 7), (3, 8), (u16::MAX, 1), (0, 5)];
        let kept: Vec<_> = plausible(&answer, 10).collect();
        assert_eq!(kept, vec![(0, 5), (3, 7), (9, 10)]);
        assert_eq!(plausible(&[(0, 1); 1000], 10).count(), 1);
        assert_eq!(plausible(&[(5, 1)], 0).count(), 0);
    }
}
