//! A client's side of listings in datagrams
//! ([`crate::listing_datagram`] has the format and why).
//!
//! A pool sends its queries from one UDP socket per address family, bound
//! on first use to any port; a task reads the answers and hands each to
//! the query its nonce names (a datagram naming no query out is dropped;
//! one that names a query but does not open under the server's pair key
//! is dropped by that query, which waits on). What [`DatagramListings`]
//! keeps is bounded: a pending entry per query out (removed when its
//! asker stops waiting, however it stops), and at most [`QUIET_KEPT`]
//! servers that left a query unanswered recently.
//!
//! A query can go unanswered (datagrams are lost; a server of a release
//! before datagram listings, or behind a firewall that drops UDP, says
//! nothing): `client::listing` asks over TCP once [`DatagramListings::grace`]
//! has passed, taking whichever answer comes first, and a server whose
//! TCP answer came first is asked over TCP only for [`QUIET_FOR`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use grapevine_crypto::identity::NodeId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, OnceCell};

use crate::client::conn::{ClientIdentity, ServerRef};
use crate::listing::{Query, NONCE_LEN};
use crate::listing_datagram::{answer_nonce, open_answer_datagram, QUERY_DATAGRAM_LEN};
use crate::types::StorageIndex;

/// A server that left a query unanswered (its TCP answer came first) is
/// asked over TCP only, for this long.
pub const QUIET_FOR: Duration = Duration::from_secs(60);
/// Servers remembered as quiet, at most.
pub const QUIET_KEPT: usize = 1024;
/// The wait before asking over TCP as well, at least ...
pub const MIN_GRACE: Duration = Duration::from_millis(20);
/// ... and at most.
pub const MAX_GRACE: Duration = Duration::from_secs(1);
/// Answer datagrams waiting for one query, at most (more are dropped).
const WAITING_PER_QUERY: usize = 4;

type Pending = Arc<Mutex<HashMap<[u8; NONCE_LEN], mpsc::Sender<Vec<u8>>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing kept under these locks has an invariant a panic could break.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One socket and the queries out on it.
#[derive(Debug)]
struct Endpoint {
    socket: Arc<UdpSocket>,
    pending: Pending,
    reader: tokio::task::AbortHandle,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Endpoint {
    async fn bind(any: SocketAddr) -> Option<Endpoint> {
        let socket = match UdpSocket::bind(any).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(%any, "no socket for listings in datagrams ({e}): asking over TCP");
                return None;
            }
        };
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_answers(socket.clone(), pending.clone())).abort_handle();
        Some(Endpoint {
            socket,
            pending,
            reader,
        })
    }
}

/// Hand each answer datagram to the query it names.
async fn read_answers(socket: Arc<UdpSocket>, pending: Pending) {
    let mut buf = vec![0u8; QUERY_DATAGRAM_LEN + 1];
    loop {
        let n = match socket.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::debug!("listing datagram socket: {e}");
                continue;
            }
        };
        let Some(nonce) = answer_nonce(&buf[..n]) else {
            continue;
        };
        if let Some(tx) = lock(&pending).get(&nonce) {
            let _ = tx.try_send(buf[..n].to_vec());
        }
    }
}

/// A query out: answers to it arrive here; dropping it forgets the query.
#[derive(Debug)]
pub(crate) struct Waiter {
    nonce: [u8; NONCE_LEN],
    query: Query,
    server: ServerRef,
    pending: Pending,
    answers: mpsc::Receiver<Vec<u8>>,
    sent: Instant,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.nonce);
    }
}

impl Waiter {
    /// The first answer that opens as the server's for this query; waits
    /// for ever if none comes (the caller bounds it).
    pub(crate) async fn answer(&mut self, me: &ClientIdentity) -> Vec<(u16, u64)> {
        loop {
            let Some(d) = self.answers.recv().await else {
                return std::future::pending().await;
            };
            match open_answer_datagram(&me.identity, &self.server.id, &self.query, &d) {
                Ok(v) => return v,
                Err(e) => {
                    tracing::warn!(server = %self.server.id.short(), "listing datagram refused: {e}")
                }
            }
        }
    }

    /// How long since the query went.
    pub(crate) fn elapsed(&self) -> Duration {
        self.sent.elapsed()
    }
}

/// A pool's listings in datagrams (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct DatagramListings {
    v4: OnceCell<Option<Endpoint>>,
    v6: OnceCell<Option<Endpoint>>,
    quiet: Mutex<HashMap<NodeId, Instant>>,
    /// Smoothed round trip of answered queries, microseconds (0: none yet).
    srtt_micros: AtomicU64,
    answered: AtomicU64,
}

impl DatagramListings {
    async fn endpoint(&self, to: SocketAddr) -> Option<&Endpoint> {
        let (cell, any): (_, SocketAddr) = if to.is_ipv4() {
            (&self.v4, "0.0.0.0:0".parse().expect("an address"))
        } else {
            (&self.v6, "[::]:0".parse().expect("an address"))
        };
        cell.get_or_init(|| Endpoint::bind(any)).await.as_ref()
    }

    fn is_quiet(&self, server: &NodeId) -> bool {
        let mut quiet = lock(&self.quiet);
        match quiet.get(server) {
            Some(since) if since.elapsed() < QUIET_FOR => true,
            Some(_) => {
                quiet.remove(server);
                false
            }
            None => false,
        }
    }

    /// Ask `server` over TCP only, for [`QUIET_FOR`].
    pub(crate) fn mark_quiet(&self, server: NodeId) {
        let mut quiet = lock(&self.quiet);
        if quiet.len() >= QUIET_KEPT {
            quiet.retain(|_, since| since.elapsed() < QUIET_FOR);
            if quiet.len() >= QUIET_KEPT {
                quiet.clear();
            }
        }
        quiet.insert(server, Instant::now());
    }

    /// Send `me`'s query about `si` to `server`, unless it is quiet or no
    /// socket can be had; the waiter gets its answers.
    pub(crate) async fn send(
        &self,
        me: &ClientIdentity,
        server: ServerRef,
        si: StorageIndex,
    ) -> Option<Waiter> {
        if self.is_quiet(&server.id) {
            return None;
        }
        let ep = self.endpoint(server.addr).await?;
        let query = Query::new(si, me.identity.node_id());
        let (tx, answers) = mpsc::channel(WAITING_PER_QUERY);
        lock(&ep.pending).insert(query.nonce, tx);
        let waiter = Waiter {
            nonce: query.nonce,
            query,
            server,
            pending: ep.pending.clone(),
            answers,
            sent: Instant::now(),
        };
        match ep.socket.send_to(&query.to_datagram(), server.addr).await {
            Ok(_) => Some(waiter),
            Err(e) => {
                tracing::debug!(server = %server.id.short(), "listing datagram not sent: {e}");
                None
            }
        }
    }

    /// How long to wait for an answer before asking over TCP as well:
    /// three smoothed round trips, within [`MIN_GRACE`] and [`MAX_GRACE`].
    pub(crate) fn grace(&self) -> Duration {
        let srtt = Duration::from_micros(self.srtt_micros.load(Relaxed));
        (srtt * 3).clamp(MIN_GRACE, MAX_GRACE)
    }

    /// Count an answer that took `rtt`.
    pub(crate) fn note_answered(&self, rtt: Duration) {
        self.answered.fetch_add(1, Relaxed);
        let sample = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let old = self.srtt_micros.load(Relaxed);
        // An exponentially weighted mean (1/8 of each sample, as TCP's).
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.srtt_micros.store(new, Relaxed);
    }

    /// Listings answered in datagrams.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Relaxed)
    }

    /// Queries out now (for tests: bounded by the askers waiting).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        [&self.v4, &self.v6]
            .iter()
            .filter_map(|c| c.get().and_then(Option::as_ref))
            .map(|ep| lock(&ep.pending).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::conn::tests::me as client;
    use crate::listing_datagram::answer_datagram;
    use grapevine_crypto::identity::Identity;

    /// An answer datagram naming the query but not made by the server
    /// (anyone who saw the query could send one) is dropped and the query
    /// waits on for the server's; a query no longer waited for is
    /// forgotten.
    #[tokio::test]
    async fn a_forged_answer_does_not_end_the_wait() {
        let me = client();
        let server = Identity::generate();
        let forger = Identity::generate();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = ServerRef {
            id: server.node_id(),
            addr: sock.local_addr().unwrap(),
        };
        let d = DatagramListings::default();
        let si = StorageIndex([9; crate::types::SI_LEN]);
        let mut waiter = d.send(&me, to, si).await.expect("sent");
        assert_eq!(d.pending(), 1);
        let mut buf = [0u8; 2048];
        let (n, from) = sock.recv_from(&mut buf).await.unwrap();
        let q = Query::from_datagram(&buf[..n]).unwrap();
        let shares = [(2u16, 77u64)];
        let forged = answer_datagram(&forger, &q, n, &[(0, 1)]).unwrap().unwrap();
        let real = answer_datagram(&server, &q, n, &shares).unwrap().unwrap();
        sock.send_to(&forged, from).await.unwrap();
        sock.send_to(&real, from).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), waiter.answer(&me))
            .await
            .expect("the real answer");
        assert_eq!(got, shares.to_vec());
        drop(waiter);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_grace_follows_the_round_trip_within_bounds() {
        let d = DatagramListings::default();
        assert_eq!(d.grace(), MIN_GRACE, "nothing measured yet");
        d.note_answered(Duration::from_millis(100));
        assert_eq!(d.grace(), Duration::from_millis(300));
        for _ in 0..100 {
            d.note_answered(Duration::from_millis(1));
        }
        assert_eq!(d.grace(), MIN_GRACE);
        for _ in 0..100 {
            d.note_answered(Duration::from_secs(5));
        }
        assert_eq!(d.grace(), MAX_GRACE);
        assert_eq!(d.answered(), 201);
    }

    #[test]
    fn quiet_servers_are_remembered_for_a_while_and_bounded() {
        let d = DatagramListings::default();
        let a = NodeId([1; 32]);
        assert!(!d.is_quiet(&a));
        d.mark_quiet(a);
        assert!(d.is_quiet(&a));
        for i in 0..QUIET_KEPT * 2 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            id[31] = 2;
            d.mark_quiet(NodeId(id));
            assert!(lock(&d.quiet).len() <= QUIET_KEPT);
        }
    }
}
