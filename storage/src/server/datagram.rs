//! Answering listings in datagrams ([`crate::listing_datagram`] has the
//! format and why). A node's gossip task hands query datagrams over by
//! their first byte, calling [`DatagramAnswerer::take`] as it reads them;
//! a share server with a UDP socket of its own (tests, benchmarks) reads
//! them itself ([`answer_on_socket`]).
//!
//! `take` never waits: it checks the query and its bounds and hands the
//! answer's work (reading the directory, sealing, sending) to the blocking
//! pool of the runtime the answerer was made on, whose thread sends the
//! answer itself. A query goes from the socket's read to a blocking
//! thread with no task between (each task woken on the way was a wait in
//! its runtime's queue, measured at a fifth of a millisecond at the median
//! in a thousand-node grid), as a listing on a session goes from its
//! session's task to the blocking pool.
//!
//! Each query is answered within bounds, because a datagram's source
//! address is not proved and anyone can send them:
//!
//! * an answer is never longer than its query (no amplification);
//! * at most [`IN_FLIGHT`] queries are being answered at once (each reads
//!   a directory on the blocking pool), and at most [`ANSWERS_PER_SEC`] a
//!   second (bursts of [`ANSWERS_BURST`]); more are dropped, not queued;
//! * a query from a client id this server holds no pair key with costs an
//!   X25519 product: at most [`NEW_KEYS_PER_SEC`] of those a second (with
//!   a burst of [`NEW_KEYS_BURST`]) are answered; more are dropped;
//! * a closed grid's server answers none (a query does not prove who
//!   asks).
//!
//! A dropped query costs its client the wait before it asks over TCP,
//! which has its own bounds (the accept loop's); nothing is queued.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use grapevine_crypto::identity::Identity;
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::listing::Query;
use crate::listing_datagram::{answer_datagram, MAX_QUERY_DATAGRAM_LEN};
use crate::server::handler::list_shares;
use crate::server::stats::ServerStats;
use crate::store::ShareStore;

/// Queries answered at once, at most.
pub const IN_FLIGHT: usize = 64;
/// New pair keys derived for datagram queries per second, at most.
pub const NEW_KEYS_PER_SEC: u32 = 200;
/// ... with this many at once.
pub const NEW_KEYS_BURST: u32 = 1000;
/// Queries answered per second, at most (a busy server's clients ask the
/// rest over TCP) ...
pub const ANSWERS_PER_SEC: u32 = 2000;
/// ... with this many at once.
pub const ANSWERS_BURST: u32 = 2000;

/// How long an answer waits for room in a full socket buffer, at most.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A token bucket (sans-IO: the caller says when).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_sec: u32,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Full at `now`: `burst` tokens, refilled at `per_sec`.
    pub(crate) fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            per_sec,
            burst,
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Take one token if there is one at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let gained =
            now.saturating_duration_since(self.last).as_secs_f64() * f64::from(self.per_sec);
        self.tokens = (self.tokens + gained).min(f64::from(self.burst));
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The rate limits of a [`DatagramAnswerer`].
#[derive(Debug)]
struct Buckets {
    answers: TokenBucket,
    new_keys: TokenBucket,
}

/// Answers query datagrams for one share server (see the module docs).
#[derive(Debug)]
pub struct DatagramAnswerer {
    identity: Arc<Identity>,
    store: ShareStore,
    stats: Arc<ServerStats>,
    socket: Arc<UdpSocket>,
    in_flight: Arc<Semaphore>,
    buckets: Mutex<Buckets>,
    runtime: Handle,
}

impl DatagramAnswerer {
    /// Answer from `socket` as `identity`, from `store`, counting into
    /// `stats`, on the blocking pool of the runtime this is called on.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(
        identity: Arc<Identity>,
        store: ShareStore,
        stats: Arc<ServerStats>,
        socket: Arc<UdpSocket>,
    ) -> Self {
        Self::on(identity, store, stats, socket, Handle::current())
    }

    /// As [`DatagramAnswerer::new`], on the blocking pool of `runtime`.
    pub fn on(
        identity: Arc<Identity>,
        store: ShareStore,
        stats: Arc<ServerStats>,
        socket: Arc<UdpSocket>,
        runtime: Handle,
    ) -> Self {
        let now = Instant::now();
        DatagramAnswerer {
            identity,
            store,
            stats,
            socket,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            buckets: Mutex::new(Buckets {
                answers: TokenBucket::new(ANSWERS_PER_SEC, ANSWERS_BURST, now),
                new_keys: TokenBucket::new(NEW_KEYS_PER_SEC, NEW_KEYS_BURST, now),
            }),
            runtime,
        }
    }

    fn refuse(&self, from: SocketAddr, why: &str) {
        self.stats.datagrams_refused.fetch_add(1, Relaxed);
        tracing::debug!(%from, "listing datagram not answered: {why}");
    }

    /// Answer datagram `d` from `from`, read from the socket at
    /// `received`, if it is a query within bounds: checked here, answered
    /// from a blocking thread (see the module docs). Never waits. False
    /// if it was dropped for too many queries at once (the caller's to
    /// count), true otherwise (answered, or refused and counted).
    pub fn take(&self, d: &[u8], from: SocketAddr, received: Instant) -> bool {
        let q = match Query::from_datagram(d) {
            Ok(q) => q,
            Err(e) => {
                self.refuse(from, &e.to_string());
                return true;
            }
        };
        let now = Instant::now();
        {
            let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            if !b.answers.take(now) {
                self.refuse(from, "too many queries a second");
                return true;
            }
            if !self.identity.has_pair_key(&q.client) && !b.new_keys.take(now) {
                self.refuse(from, "too many new clients");
                return true;
            }
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.refuse(from, "too many queries at once");
            return false;
        };
        let (identity, store, stats, socket, runtime) = (
            self.identity.clone(),
            self.store.clone(),
            self.stats.clone(),
            self.socket.clone(),
            self.runtime.clone(),
        );
        let query_len = d.len();
        // Not awaited: the blocking thread sends the answer itself.
        drop(self.runtime.spawn_blocking(move || {
            let _permit = permit;
            let started = Instant::now();
            stats.datagram_handover_times.record(received.elapsed());
            // A client id that is no key gets no answer: refused before
            // any directory is read (the key, once derived, is
            // remembered; deriving it is this thread's work, not the
            // caller's).
            if identity.pair_key(&q.client).is_err() {
                stats.datagrams_refused.fetch_add(1, Relaxed);
                return tracing::debug!(%from, "listing datagram not answered: the client id is no key");
            }
            let shares = match list_shares(&store, &q.si) {
                Ok(s) => s,
                Err(e) => return tracing::debug!("listing for a datagram failed: {e}"),
            };
            let out = match answer_datagram(&identity, &q, query_len, &shares) {
                Ok(Some(out)) => out,
                Ok(None) => {
                    stats.datagrams_refused.fetch_add(1, Relaxed);
                    return tracing::debug!(%from, "listing answer longer than its query: not sent");
                }
                Err(e) => return tracing::debug!("listing for a datagram failed: {e}"),
            };
            let sent = match socket.try_send_to(&out, from) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The socket's buffer is full: wait for room, on this
                    // thread (which is the blocking pool's), for a while
                    // (the client asks over TCP after its grace anyway).
                    let send = tokio::time::timeout(SEND_WAIT, socket.send_to(&out, from));
                    runtime
                        .block_on(send)
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                }
                r => r,
            };
            match sent {
                Ok(_) => stats.count_listing(started, received, true),
                Err(e) => tracing::debug!(%from, "listing answer not sent: {e}"),
            }
        }));
        true
    }
}

/// Read query datagrams from the answerer's own socket and answer them,
/// until the task is dropped.
pub async fn answer_on_socket(answerer: DatagramAnswerer) {
    let socket = answerer.socket.clone();
    let mut buf = vec![0u8; MAX_QUERY_DATAGRAM_LEN + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                answerer.take(&buf[..n], from, Instant::now());
            }
            Err(e) => tracing::debug!("listing socket: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::QUERY_LEN;
    use crate::listing_datagram::{answer_nonce, open_answer_datagram};
    use crate::types::{StorageIndex, SI_LEN};
    use grapevine_crypto::identity::NodeId;
    use std::time::Duration;

    /// An answerer on a socket of its own at 127.0.0.1, over an empty
    /// store (kept while the directory guard lives).
    async fn answerer() -> (
        DatagramAnswerer,
        Arc<Identity>,
        Arc<ServerStats>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        let server = Arc::new(Identity::generate());
        let stats = Arc::new(ServerStats::default());
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let a = DatagramAnswerer::new(server.clone(), store, stats.clone(), socket);
        (a, server, stats, dir)
    }

    /// Only a padded query from a client id that is a key is answered;
    /// the others are counted and dropped, and the answer opens as the
    /// server's.
    #[tokio::test]
    async fn only_padded_queries_from_real_keys_are_answered() {
        let (answerer, server, stats, _dir) = answerer().await;
        let at = answerer.socket.local_addr().unwrap();
        let task = tokio::spawn(answer_on_socket(answerer));
        let client = Identity::generate();
        let me = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let si = StorageIndex([3; SI_LEN]);
        let unpadded = Query::new(si, client.node_id()).to_datagram();
        me.send_to(&unpadded[..1 + QUERY_LEN], at).await.unwrap();
        // The identity point: a weak key, whose pair key anyone knows.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak = Query::new(si, NodeId(weak)).to_datagram();
        me.send_to(&weak, at).await.unwrap();
        let good = Query::new(si, client.node_id());
        me.send_to(&good.to_datagram(), at).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), me.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(answer_nonce(&buf[..n]), Some(good.nonce));
        assert!(n <= crate::listing_datagram::QUERY_DATAGRAM_LEN);
        assert_eq!(
            open_answer_datagram(&client, &server.node_id(), &good, &buf[..n]),
            Ok(vec![])
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while (stats.datagram_listings() < 1 || stats.datagrams_refused() < 2)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(stats.datagram_listings(), 1);
        assert_eq!(stats.datagrams_refused(), 2, "the unpadded and the weak");
        assert_eq!(server.pair_keys_kept(), 1, "no key kept for the weak id");
        task.abort();
    }

    /// A handed-over query is timed from when the node's socket read it,
    /// not from when the server took it: the wait in the hand-over is
    /// counted, apart and in the whole.
    #[tokio::test]
    async fn a_handed_over_query_is_timed_from_its_read() {
        let (answerer, _server, stats, _dir) = answerer().await;
        let client = Identity::generate();
        let me = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = Query::new(StorageIndex([3; SI_LEN]), client.node_id());
        let read = Instant::now() - Duration::from_millis(40);
        assert!(answerer.take(&q.to_datagram(), me.local_addr().unwrap(), read));
        let mut buf = [0u8; 2048];
        tokio::time::timeout(Duration::from_secs(10), me.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.datagram_listing_times().total() < 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (whole, handover) = (
            stats.datagram_listing_times(),
            stats.datagram_handover_times(),
        );
        assert_eq!((whole.total(), handover.total()), (1, 1));
        assert!(whole.sum_micros >= 40_000, "{}", whole.sum_micros);
        assert!(handover.sum_micros >= 40_000, "{}", handover.sum_micros);
        assert!(whole.sum_micros >= handover.sum_micros);
        assert_eq!(stats.tcp_listing_times().total(), 0);
        assert_eq!(stats.session_listing_times().total(), 0);
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(NEW_KEYS_PER_SEC, NEW_KEYS_BURST, t0);
        for _ in 0..NEW_KEYS_BURST {
            assert!(b.take(t0));
        }
        assert!(!b.take(t0), "the burst is spent");
        // 200 a second: one every 5 ms.
        assert!(!b.take(t0 + Duration::from_millis(4)));
        assert!(b.take(t0 + Duration::from_millis(6)));
        assert!(!b.take(t0 + Duration::from_millis(6)));
        // A long quiet refills to the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        let taken = (0..NEW_KEYS_BURST + 10).filter(|_| b.take(later)).count();
        assert_eq!(taken, NEW_KEYS_BURST as usize);
        // A clock going back takes nothing and gives nothing.
        assert!(!b.take(t0));
        // Each bucket keeps its own figures.
        let mut a = TokenBucket::new(ANSWERS_PER_SEC, ANSWERS_BURST, t0);
        let taken = (0..ANSWERS_BURST + 5).filter(|_| a.take(t0)).count();
        assert_eq!(taken, ANSWERS_BURST as usize);
        assert!(a.take(t0 + Duration::from_millis(1)), "2,000 a second");
    }
}
