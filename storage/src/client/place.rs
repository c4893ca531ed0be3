//! Placement: the permuted list of servers for a storage index, and which
//! of them take which share of an upload.

use grapevine_crypto::placement::permuted;

use crate::client::conn::{Conn, ServerRef};
use crate::client::pool::SessionPool;
use crate::error::ClientError;
use crate::protocol::{ErrorCode, Request};
use crate::types::{Params, StorageIndex};

/// Servers in permuted-list order for `si`: the one order membership and
/// storage share ([`grapevine_crypto::placement::permuted`]), so uploader
/// and downloader agree on where to look.
pub fn permuted_servers(si: &StorageIndex, servers: &[ServerRef]) -> Vec<ServerRef> {
    permuted(&si.0, servers.iter().copied())
}

/// Open sessions to the first servers in permuted order and allocate the
/// shares on them.
pub(crate) async fn place_shares(
    pool: &SessionPool,
    servers: &[ServerRef],
    si: StorageIndex,
    params: Params,
    share_size: u64,
) -> Result<Placed, ClientError> {
    let n = params.n as usize;
    let mut order = permuted_servers(&si, servers).into_iter();
    let mut conns: Vec<Conn> = Vec::new();
    // Open up to n sessions, a batch at a time, skipping unreachable servers.
    while conns.len() < n {
        let batch: Vec<ServerRef> = order.by_ref().take(n - conns.len()).collect();
        if batch.is_empty() {
            break;
        }
        for r in futures::future::join_all(batch.into_iter().map(|s| pool.get(s))).await {
            match r {
                Ok(c) => conns.push(c),
                Err(e) => tracing::warn!("skipping server: {e}"),
            }
        }
    }
    // Share i goes to the next session (round robin) that accepts it. A
    // server out of space is not asked again; when every session has been
    // tried for a share, the next server in permuted order is. A server
    // that already holds the share (a convergent re-upload) keeps it.
    let mut full = vec![false; conns.len()];
    let mut placement: Vec<(u16, usize)> = Vec::new();
    let mut existing: Vec<(u16, usize)> = Vec::new();
    let mut next = 0usize;
    for shnum in 0..params.n {
        let mut tried = vec![false; conns.len()];
        loop {
            // A session that failed (a deadline passed, say) is not asked
            // again: it would fail at once anyway.
            let candidate = (0..conns.len())
                .map(|a| (next + a) % conns.len())
                .find(|&c| !full[c] && !tried[c] && !conns[c].is_broken());
            let c = match candidate {
                Some(c) => c,
                None => match open_next(pool, &mut order).await {
                    Some(conn) => {
                        conns.push(conn);
                        full.push(false);
                        tried.push(false);
                        conns.len() - 1
                    }
                    None => {
                        tracing::warn!(shnum, "no server took this share");
                        break;
                    }
                },
            };
            tried[c] = true;
            let r = pool
                .call(
                    &mut conns[c],
                    Request::Allocate {
                        si,
                        shnum,
                        size: share_size,
                    },
                )
                .await;
            match r {
                Ok(_) => {
                    placement.push((shnum, c));
                    next = c + 1;
                    break;
                }
                Err(ClientError::Server {
                    code: ErrorCode::AlreadyExists,
                    ..
                }) => {
                    existing.push((shnum, c));
                    next = c + 1;
                    break;
                }
                Err(e) => {
                    tracing::warn!(shnum, "allocation refused: {e}");
                    if matches!(
                        e,
                        ClientError::Server {
                            code: ErrorCode::NoSpace,
                            ..
                        }
                    ) {
                        full[c] = true;
                    }
                }
            }
        }
    }
    let distinct = (0..conns.len())
        .filter(|&c| placement.iter().chain(&existing).any(|p| p.1 == c))
        .count();
    if distinct < params.happy as usize {
        for c in conns {
            pool.put_back(c);
        }
        return Err(ClientError::NotHappy {
            got: distinct,
            happy: params.happy as usize,
        });
    }
    Ok(Placed {
        conns,
        placement,
        existing,
    })
}

/// Where [`place_shares`] put the shares.
pub(crate) struct Placed {
    /// Sessions opened, by index.
    pub(crate) conns: Vec<Conn>,
    /// (share number, session index) of each share to write.
    pub(crate) placement: Vec<(u16, usize)>,
    /// (share number, session index) of shares the server already held.
    pub(crate) existing: Vec<(u16, usize)>,
}

/// A session to the next reachable server of `order`.
async fn open_next(
    pool: &SessionPool,
    order: &mut impl Iterator<Item = ServerRef>,
) -> Option<Conn> {
    for s in order.by_ref() {
        match pool.get(s).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!("skipping server: {e}"),
        }
    }
    None
}

/// Share numbers placed on connection `ci`.
pub(crate) fn shares_on(placement: &[(u16, usize)], ci: usize) -> Vec<u16> {
    placement
        .iter()
        .filter(|p| p.1 == ci)
        .map(|p| p.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::identity::NodeId;

    /// Storage's order is the permuted list itself: the output for fixed
    /// inputs is pinned (the same order `grapevine_crypto::placement` and
    /// membership's selection pin), whatever order the servers are given
    /// in and whatever their addresses.
    #[test]
    fn permuted_servers_is_the_pinned_permuted_list() {
        let servers: Vec<ServerRef> = (0..10u8)
            .map(|i| ServerRef {
                id: NodeId([i; 32]),
                addr: format!("127.0.0.{}:1", i + 1).parse().unwrap(),
            })
            .collect();
        let si = StorageIndex([3; 16]);
        let order: Vec<u8> = permuted_servers(&si, &servers)
            .iter()
            .map(|s| s.id.0[0])
            .collect();
        assert_eq!(order, [5, 4, 0, 1, 2, 8, 6, 9, 7, 3]);
        let mut rev = servers.clone();
        rev.reverse();
        assert_eq!(permuted_servers(&si, &rev), permuted_servers(&si, &servers));
        // Each server keeps its own address.
        for s in permuted_servers(&si, &servers) {
            assert_eq!(
                s.addr.ip().to_string(),
                format!("127.0.0.{}", s.id.0[0] + 1)
            );
        }
    }
}
