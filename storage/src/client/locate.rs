//! Locate: which servers hold which shares of a storage index, asking as
//! few servers as the permuted list allows.
//!
//! A check needs every share counted, so [`locate`] asks the first `n`
//! servers at once (and more while shares are missing). A read needs only
//! `k` good shares, and an upload that found the first `n` servers up put
//! share `i` on the `i`-th, so the primary shares (the plaintext's own
//! blocks, which need no erasure decoding) sit on the first `k`: a
//! [`ShareFinder`] asks those first and widens to [`locate`]'s search only
//! when what they listed runs out (a server down or lying, a share
//! corrupt). A read from a client holding no sessions then opens `k`
//! sessions instead of `n`: each is a Noise handshake, about a millisecond
//! of CPU on both sides, which on a fast network is most of a small read.
//!
//! A server's answer is a claim, not a fact: only share numbers below the
//! file's `n` are kept, each once per server, so a lying server can neither
//! make a check count shares the file cannot have (nor stop the search
//! early with them) nor fill the client's memory with a long list. What a
//! server claims to hold is proven only when its blocks are read and
//! checked against the capability (download, `check --verify`).

use std::collections::VecDeque;

use grapevine_crypto::identity::NodeId;

use crate::client::conn::ServerRef;
use crate::client::place::permuted_servers;
use crate::client::pool::SessionPool;
use crate::error::ClientError;
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
    /// Servers not asked after all: every session of the pool was in use.
    pub busy: usize,
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
    let order = permuted_servers(&si, servers);
    let search = Search {
        k,
        n,
        enough: n,
        known: &[],
        asked_before: 0,
        max_asked: usize::MAX,
    };
    locate_in(pool, &order, si, search, Asking::Sessions).await
}

/// Where a search for shares stands before asking `order` (a tail of a
/// file's permuted list): a search that goes on past an earlier one counts
/// what that one found, so it stops by the same rule ([`Search::done`])
/// rather than starting over and walking the rest of the grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Search<'a> {
    /// Shares needed.
    pub(crate) k: u16,
    /// Shares made.
    pub(crate) n: u16,
    /// Distinct shares that end the search (`n` unless the caller needs
    /// to know only whether a file has that many, as the repair job does).
    pub(crate) enough: u16,
    /// Share numbers already found (and believed) by the earlier search.
    pub(crate) known: &'a [u16],
    /// Servers the earlier search asked.
    pub(crate) asked_before: usize,
    /// Servers to ask at most, the earlier ones included.
    pub(crate) max_asked: usize,
}

impl Search<'_> {
    /// Whether a search that has found `distinct` share numbers (the
    /// known ones included) after asking `asked` servers in all stops.
    pub(crate) fn done(&self, distinct: usize, asked: usize) -> bool {
        let (k, n) = (usize::from(self.k), usize::from(self.n));
        let enough = usize::from(self.enough.min(self.n));
        distinct >= enough || (distinct >= k && asked >= 2 * n) || asked >= self.max_asked
    }
}

/// How a search asks servers for their lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asking {
    /// Over sessions, opened where the pool holds none: for callers that
    /// read from the servers next (downloads, verifying checks, repair).
    Sessions,
    /// Over idle sessions where the pool holds one, else in signed
    /// listings ([`crate::listing`]), opening no session: for a check that
    /// only counts shares.
    Listings,
}

/// [`locate`] over `order` (already in permuted order), going on from
/// `search`, asking as `asking` says.
pub(crate) async fn locate_in(
    pool: &SessionPool,
    order: &[ServerRef],
    si: StorageIndex,
    search: Search<'_>,
    asking: Asking,
) -> Findings {
    let n = search.n;
    let mut out: Vec<Located> = Vec::new();
    let mut responding = Vec::new();
    let mut order = order.iter().copied();
    let mut asked = 0usize;
    let mut busy = 0usize;
    let batch_size = usize::from(n).max(1);
    loop {
        let distinct = {
            let mut v: Vec<u16> = out.iter().map(|l| l.shnum).collect();
            v.extend_from_slice(search.known);
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        let total = search.asked_before.saturating_add(asked);
        if search.done(distinct, total) {
            break;
        }
        let room = search.max_asked.saturating_sub(total).min(batch_size);
        let batch: Vec<ServerRef> = order.by_ref().take(room).collect();
        if batch.is_empty() {
            break;
        }
        asked += batch.len();
        let listing = asking == Asking::Listings;
        let answers = futures::future::join_all(batch.into_iter().map(|s| async move {
            let r = pool.list(s, si, listing).await;
            if let Err(e) = &r {
                tracing::debug!(server = %s.id.short(), "no list: {e}");
            }
            (s, r)
        }))
        .await;
        for (s, r) in answers {
            let v = match r {
                Ok(v) => v,
                Err(ClientError::PoolExhausted(_)) => {
                    busy += 1;
                    continue;
                }
                Err(_) => continue,
            };
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
        busy,
    }
}

/// A read's search for shares, widened only when needed: the first `k`
/// servers in permuted order are asked when it starts; [`ShareFinder::next`]
/// hands out what they listed (primary shares first) and, once that runs
/// out, goes on with [`locate`]'s search from the next server, counting
/// what was found already.
pub(crate) struct ShareFinder<'p> {
    pool: &'p SessionPool,
    order: Vec<ServerRef>,
    si: StorageIndex,
    k: u16,
    n: u16,
    /// Everything found so far, and whom it asked.
    found: Findings,
    /// Candidates not yet handed out.
    queue: VecDeque<Located>,
    /// Whether the wide search has run.
    widened: bool,
}

impl<'p> ShareFinder<'p> {
    /// Ask the first `k` servers of `si`'s permuted list which shares
    /// they hold.
    pub(crate) async fn start(
        pool: &'p SessionPool,
        servers: &[ServerRef],
        si: StorageIndex,
        k: u16,
        n: u16,
    ) -> ShareFinder<'p> {
        let mut f = ShareFinder {
            pool,
            order: permuted_servers(&si, servers),
            si,
            k,
            n,
            found: Findings::default(),
            queue: VecDeque::new(),
            widened: false,
        };
        let first = Search {
            k,
            n,
            enough: k,
            known: &[],
            asked_before: 0,
            max_asked: usize::from(k).max(1),
        };
        f.search(first).await;
        f
    }

    /// Ask `search`'s servers from the top of the permuted list, queueing
    /// every (server, share) not found before.
    async fn search(&mut self, search: Search<'_>) {
        let more = locate_in(self.pool, &self.order, self.si, search, Asking::Sessions).await;
        self.found.asked = self.found.asked.max(more.asked);
        self.found.busy = self.found.busy.max(more.busy);
        for id in more.responding {
            if !self.found.responding.contains(&id) {
                self.found.responding.push(id);
            }
        }
        let mut new: Vec<Located> = more
            .shares
            .into_iter()
            .filter(|l| !self.found.shares.contains(l))
            .collect();
        // First servers first, primary shares before the others. Every
        // server listing a share number stays a candidate for it: a server
        // that lists shares it lacks must not hide their real holders (the
        // reader takes one source per share number).
        let k = self.k;
        new.sort_by_key(|l| l.shnum >= k);
        self.found.shares.extend(new.iter().copied());
        self.queue.extend(new);
    }

    /// The next share to try, searching further when the ones found so far
    /// are used up; `None` when the search is over. The wider search is
    /// [`locate`]'s, from the top of the list (the first `k` servers answer
    /// again, on the sessions just opened): what the first servers listed
    /// is not counted, as a server lying about its shares must not end the
    /// search for their real holders.
    pub(crate) async fn next(&mut self) -> Option<Located> {
        loop {
            if let Some(l) = self.queue.pop_front() {
                return Some(l);
            }
            if self.widened {
                return None;
            }
            self.widened = true;
            let wide = Search {
                k: self.k,
                n: self.n,
                enough: self.n,
                known: &[],
                asked_before: 0,
                max_asked: usize::MAX,
            };
            self.search(wide).await;
        }
    }

    /// What the search found and whom it asked, so far.
    pub(crate) fn findings(&self) -> &Findings {
        &self.found
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
    use super::{plausible, Search};

    /// A search that goes on from an earlier one counts what that one
    /// found: a file missing a share (9 of 10 found among the first 20
    /// servers) stops there, rather than the second search finding none
    /// of its own and asking the rest of the grid.
    #[test]
    fn a_search_that_goes_on_counts_what_was_found_before() {
        let known: Vec<u16> = (0..9).collect();
        let on = Search {
            k: 3,
            n: 10,
            enough: 10,
            known: &known,
            asked_before: 20,
            max_asked: 40,
        };
        assert!(on.done(9, 20), "k found, 2n asked: done");
        assert!(!on.done(2, 19));
        assert!(on.done(10, 10), "every share found");
        assert!(on.done(0, 40), "the cap");
        let fresh = Search {
            known: &[],
            asked_before: 0,
            max_asked: usize::MAX,
            ..on
        };
        assert!(!fresh.done(2, 1000), "below k a fresh search goes on");
        assert!(fresh.done(3, 20));
        let seven = Search { enough: 7, ..fresh };
        assert!(seven.done(7, 10), "enough found: done");
        assert!(!seven.done(6, 10));
        let more = Search {
            enough: 11,
            ..fresh
        };
        assert!(more.done(10, 10), "never past n");
    }

    #[test]
    fn only_share_numbers_below_n_are_kept_each_once() {
        let answer = [(9, 10), (10, 10), (3, 7), (3, 8), (u16::MAX, 1), (0, 5)];
        let kept: Vec<_> = plausible(&answer, 10).collect();
        assert_eq!(kept, vec![(0, 5), (3, 7), (9, 10)]);
        assert_eq!(plausible(&[(0, 1); 1000], 10).count(), 1);
        assert_eq!(plausible(&[(5, 1)], 0).count(), 0);
    }
}
