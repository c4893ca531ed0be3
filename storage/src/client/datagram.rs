//! A client's side of listings in datagrams
//! ([`crate::listing_datagram`] has the format and why).
//!
//! Each query goes from a UDP socket of its own, bound to any port and
//! connected to the server's address, and the asker reads its answer from
//! it itself: no task stands between the socket and the asker (a task
//! woken on the way is a wait in its runtime's queue), the kernel drops
//! datagrams from any other address, and a server with no UDP socket at
//! that port says so at once (the kernel's "port unreachable": the asker
//! goes to TCP without waiting). Dropping the [`Waiter`] closes the
//! socket, so what a pool keeps for queries is what its askers hold; of
//! its own it keeps a smoothed round trip and at most [`QUIET_KEPT`]
//! servers that left a query unanswered recently.
//!
//! A query can go unanswered (datagrams are lost; a server of a release
//! before datagram listings, or behind a firewall that drops UDP, or one
//! that answers from another address than the one dialled, says nothing):
//! `client::listing` asks over TCP once [`DatagramListings::grace`] has
//! passed, taking whichever answer comes first, and a server whose TCP
//! answer came first is asked over TCP only for [`QUIET_FOR`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use grapevine_crypto::identity::NodeId;
use tokio::net::UdpSocket;

use crate::client::conn::{ClientIdentity, ServerRef};
use crate::listing::Query;
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
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing kept under these locks has an invariant a panic could break.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A query out, on its own socket (see the module docs); dropping it
/// closes the socket.
#[derive(Debug)]
pub(crate) struct Waiter {
    socket: UdpSocket,
    query: Query,
    server: ServerRef,
    sent: Instant,
}

impl Waiter {
    /// The first answer that opens as the server's for this query; waits
    /// for ever if none comes (the caller bounds it); `None` at once if
    /// none can come (the server's host says no socket takes UDP at that
    /// port, or the socket fails).
    pub(crate) async fn answer(&mut self, me: &ClientIdentity) -> Option<Vec<(u16, u64)>> {
        let mut buf = vec![0u8; QUERY_DATAGRAM_LEN + 1];
        loop {
            let n = match self.socket.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(server = %self.server.id.short(), "no listing datagram: {e}");
                    return None;
                }
            };
            let d = &buf[..n];
            if answer_nonce(d) != Some(self.query.nonce) {
                continue;
            }
            match open_answer_datagram(&me.identity, &self.server.id, &self.query, d) {
                Ok(v) => return Some(v),
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
    quiet: Mutex<HashMap<NodeId, Instant>>,
    /// Smoothed round trip of answered queries, microseconds (0: none yet).
    srtt_micros: AtomicU64,
    answered: AtomicU64,
}

impl DatagramListings {
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

    /// Send `me`'s query about `si` to `server` from a socket of its own,
    /// unless the server is quiet or no socket can be had.
    pub(crate) async fn send(
        &self,
        me: &ClientIdentity,
        server: ServerRef,
        si: StorageIndex,
    ) -> Option<Waiter> {
        if self.is_quiet(&server.id) {
            return None;
        }
        let any: SocketAddr = if server.addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let query = Query::new(si, me.identity.node_id());
        let sent = Instant::now();
        // Bound, connected and sent on the std socket, then handed to
        // tokio for the answer: tokio sends on a new socket only once its
        // event loop has seen the socket writable, a turn of that loop a
        // fresh socket would wait for (under load, most of a round trip).
        let opened = (|| {
            let socket = std::net::UdpSocket::bind(any)?;
            socket.connect(server.addr)?;
            socket.set_nonblocking(true)?;
            socket.send(&query.to_datagram())?;
            UdpSocket::from_std(socket)
        })();
        match opened {
            Ok(socket) => Some(Waiter {
                socket,
                query,
                server,
                sent,
            }),
            Err(e) => {
                tracing::debug!(server = %server.id.short(), "listing datagram not sent ({e}): asking over TCP");
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::conn::tests::me as client;
    use crate::listing_datagram::answer_datagram;
    use grapevine_crypto::identity::Identity;

    /// An answer datagram naming the query but not made by the server
    /// (anyone who saw the query could send one, from the server's
    /// address) is dropped and the query waits on for the server's.
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
        assert_eq!(got, Some(shares.to_vec()));
    }

    /// A server whose host takes no UDP at its port answers no query: the
    /// asker learns it at once, not after a grace.
    #[tokio::test]
    async fn no_socket_at_the_server_ends_the_wait_at_once() {
        let me = client();
        let gone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = ServerRef {
            id: Identity::generate().node_id(),
            addr: gone.local_addr().unwrap(),
        };
        drop(gone);
        let d = DatagramListings::default();
        let mut waiter = d
            .send(&me, to, StorageIndex([9; crate::types::SI_LEN]))
            .await
            .expect("sent");
        let got = tokio::time::timeout(Duration::from_secs(10), waiter.answer(&me)).await;
        assert_eq!(got, Ok(None));
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
