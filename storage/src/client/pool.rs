//! The client's session pool: sessions to storage servers opened on demand,
//! reused while they are fresh, closed when idle, and capped.
//!
//! A client in a 1000-node grid holds sessions only to the servers it is
//! using (about `n` for an upload, a few more for a download), never to the
//! whole grid. [`SessionPool::get`] hands out an idle session to the server
//! if there is one, or opens a new one under the cap: when the cap is
//! reached it first closes the longest-idle session, then waits (up to
//! [`PoolConfig::wait`]) for one to come back, then fails with
//! [`ClientError::PoolExhausted`] rather than hang. [`SessionPool::put_back`]
//! returns a healthy session for reuse; a session that failed, or still has
//! requests in flight, is closed instead. Idle sessions older than
//! [`PoolConfig::idle_timeout`] are closed on every call, and by
//! [`SessionPool::close_idle`].
//!
//! For harnesses that classify operations as warm or cold, a pool can also
//! log which servers it was asked for and whether it held a session to
//! each already ([`SessionPool::record_contacts`],
//! [`SessionPool::take_contacts`]); the log is off, and costs nothing, by
//! default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use grapevine_crypto::identity::NodeId;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::budget::MemoryBudget;
use crate::client::conn::{ClientIdentity, Conn, ServerRef, DEFAULT_REQUEST_TIMEOUT};
use crate::client::datagram::DatagramListings;
use crate::client::listing::Answered;
use crate::error::ClientError;
use crate::latency::{Latencies, Snapshot};
use crate::protocol::{Reply, Request};
use crate::types::StorageIndex;

/// Limits of a [`SessionPool`].
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Sessions open at once, in use or idle.
    pub max_sessions: usize,
    /// An idle session is closed after this long.
    pub idle_timeout: Duration,
    /// How long [`SessionPool::get`] waits for a free slot at the cap.
    pub wait: Duration,
    /// How long a request on the pool's sessions may take, from being sent
    /// to being answered.
    pub request_timeout: Duration,
    /// What the operations over the pool's sessions may hold in memory
    /// (upload segments, read-ahead, requests in flight per session).
    pub memory: MemoryBudget,
    /// Ask for listings in datagrams first (`client::datagram`), else
    /// over TCP only.
    pub datagram_listings: bool,
    /// A download whose writer has waited this long for its reader gives
    /// its sessions back until the write completes (the client's `park`
    /// module), so slow readers cannot hold the pool.
    pub park_after: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_sessions: 64,
            idle_timeout: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            memory: MemoryBudget::UNBOUNDED,
            datagram_listings: true,
            park_after: Duration::from_secs(5),
        }
    }
}

/// Contacts a pool's log keeps at most between two takes.
const MAX_CONTACTS: usize = 4096;

/// Sessions to storage servers, opened on demand under a cap.
#[derive(Debug)]
pub struct SessionPool {
    me: ClientIdentity,
    cfg: PoolConfig,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<(Conn, Instant)>>,
    returned: tokio::sync::Notify,
    opened: AtomicU64,
    listings: AtomicU64,
    datagrams: DatagramListings,
    listing_times: ListingTimes,
    /// The contact log, while one is kept.
    contacts: Mutex<Option<Vec<Contact>>>,
}

/// Listing round trips by the way they were asked.
#[derive(Debug, Default)]
struct ListingTimes {
    datagram: Latencies,
    tcp: Latencies,
    session: Latencies,
}

/// A pool's listing round trips (from asking to the answer opened), by
/// the way they were asked: answered in a datagram, over a TCP connection
/// of their own, or on a session (one held, or one opened for it: its
/// handshake not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListingTimesSnapshot {
    /// Answered in a datagram.
    pub datagram: Snapshot,
    /// Answered over a TCP connection of their own.
    pub tcp: Snapshot,
    /// Answered on a session.
    pub session: Snapshot,
}

impl ListingTimesSnapshot {
    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &ListingTimesSnapshot) {
        self.datagram.add(&other.datagram);
        self.tcp.add(&other.tcp);
        self.session.add(&other.session);
    }

    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &ListingTimesSnapshot) -> ListingTimesSnapshot {
        ListingTimesSnapshot {
            datagram: self.datagram.since(&earlier.datagram),
            tcp: self.tcp.since(&earlier.tcp),
            session: self.session.since(&earlier.session),
        }
    }
}

/// One request of the pool for a session, as the contact log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// The server asked for.
    pub server: NodeId,
    /// Whether an idle session to it was reused (else one was opened, or
    /// an attempt to open one was made).
    pub reused: bool,
}

impl SessionPool {
    /// A pool of sessions opened as `me`.
    pub fn new(me: ClientIdentity, cfg: PoolConfig) -> Self {
        let cfg = PoolConfig {
            max_sessions: cfg.max_sessions.max(1),
            ..cfg
        };
        SessionPool {
            me,
            slots: Arc::new(Semaphore::new(cfg.max_sessions)),
            cfg,
            idle: Mutex::new(Vec::new()),
            returned: tokio::sync::Notify::new(),
            opened: AtomicU64::new(0),
            listings: AtomicU64::new(0),
            datagrams: DatagramListings::default(),
            listing_times: ListingTimes::default(),
            contacts: Mutex::new(None),
        }
    }

    /// Who the pool's sessions authenticate as.
    pub fn identity(&self) -> &ClientIdentity {
        &self.me
    }

    /// The pool's limits.
    pub fn config(&self) -> PoolConfig {
        self.cfg
    }

    /// Whether a read of a `k`-of-n file can hold what it needs at once: a
    /// session to each of `k` servers. One that cannot would take every
    /// slot and wait for the rest, a slot's wait time per share, starving
    /// every other operation of this client meanwhile; it fails at once
    /// instead, and so does an upload of a file this client could not
    /// read back.
    ///
    /// # Errors
    /// [`ClientError::TooFewSessions`].
    pub fn holds_at_once(&self, k: u16) -> Result<(), ClientError> {
        if usize::from(k) > self.cfg.max_sessions {
            return Err(ClientError::TooFewSessions {
                need: k,
                sessions: self.cfg.max_sessions,
            });
        }
        Ok(())
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<(Conn, Instant)>> {
        // A panic while holding the lock cannot leave the list inconsistent
        // (pushes and removes only), so a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session to `server`: an idle one if the pool has it, else a new one.
    ///
    /// # Errors
    /// [`ClientError::Session`] if the server cannot be reached or
    /// authenticated; [`ClientError::PoolExhausted`] if the pool stays at its
    /// cap with every session in use for [`PoolConfig::wait`].
    pub async fn get(&self, server: ServerRef) -> Result<Conn, ClientError> {
        self.get_inner(server, true).await
    }

    /// A new session to `server`, never an idle one.
    ///
    /// # Errors
    /// As [`SessionPool::get`].
    pub async fn get_fresh(&self, server: ServerRef) -> Result<Conn, ClientError> {
        self.get_inner(server, false).await
    }

    /// Send `req` on `conn` and wait for its answer. If `conn` came from
    /// the idle list and its session turns out dead before answering
    /// anything (the server closed it while it sat idle: servers idle
    /// sessions out), `conn` is replaced by a fresh session and the request
    /// sent once more, so a server is not skipped for a whole operation
    /// because of a stale session.
    ///
    /// # Errors
    /// As [`Conn::call`], and [`SessionPool::get_fresh`] for the retry.
    pub async fn call(&self, conn: &mut Conn, req: Request) -> Result<Reply<Bytes>, ClientError> {
        let maybe_stale = conn.reused;
        match conn.call(req.clone()).await {
            Err(e @ ClientError::Session(..)) if maybe_stale => {
                tracing::debug!("idle session failed ({e}); retrying on a fresh one");
                conn.release_slot();
                *conn = self.get_fresh(conn.server()).await?;
                conn.call(req).await
            }
            r => r,
        }
    }

    async fn get_inner(&self, server: ServerRef, reuse: bool) -> Result<Conn, ClientError> {
        self.close_idle();
        let deadline = Instant::now() + self.cfg.wait;
        let permit = loop {
            let reused = if reuse {
                let mut idle = self.idle_list();
                idle.iter()
                    .position(|(c, _)| c.server().id == server.id)
                    .map(|i| idle.swap_remove(i).0)
            } else {
                None
            };
            if let Some(mut c) = reused {
                c.reused = true;
                self.log_contact(server, true);
                return Ok(c);
            }
            if let Ok(p) = self.slots.clone().try_acquire_owned() {
                break p;
            }
            // At the cap: close the longest-idle session to make room.
            let oldest = {
                let mut idle = self.idle_list();
                let i = (0..idle.len()).min_by_key(|&i| idle[i].1);
                i.map(|i| idle.swap_remove(i).0)
            };
            if oldest.is_some() {
                continue;
            }
            // Every session is in use: wait for one to be closed or put
            // back, up to the deadline.
            tokio::select! {
                p = self.slots.clone().acquire_owned() => {
                    break p.map_err(|_| ClientError::PoolExhausted(self.cfg.max_sessions))?;
                }
                _ = self.returned.notified() => continue,
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ClientError::PoolExhausted(self.cfg.max_sessions));
                }
            }
        };
        self.log_contact(server, false);
        let conn = Conn::open(&self.me, server)
            .await?
            .with_slot(permit)
            .with_request_timeout(self.cfg.request_timeout)
            .with_max_in_flight(self.cfg.memory.in_flight());
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Which shares of `si` `server` holds, by its own account: over an
    /// idle session if the pool holds one, else, where `listing` allows it
    /// and the grid is open, in a listing without a session
    /// ([`crate::listing`]), else over a new session. For callers that
    /// need nothing else of the server (a check without reads); the
    /// contact log counts a listing like a session opened.
    ///
    /// # Errors
    /// As [`SessionPool::get`] and [`Conn::call`]; for a listing, a
    /// server unreachable, past the handshake deadline or answering out of
    /// protocol.
    pub(crate) async fn list(
        &self,
        server: ServerRef,
        si: StorageIndex,
        listing: bool,
    ) -> Result<Vec<(u16, u64)>, ClientError> {
        let held = self
            .idle_list()
            .iter()
            .any(|(c, _)| c.server().id == server.id);
        if listing && !held && self.me.session.grid.is_none() {
            self.log_contact(server, false);
            self.listings.fetch_add(1, Ordering::Relaxed);
            let datagrams = self.cfg.datagram_listings.then_some(&self.datagrams);
            let asked = Instant::now();
            match crate::client::listing::ask(&self.me, datagrams, server, si).await {
                Ok((v, how)) => {
                    let times = match how {
                        Answered::Datagram => &self.listing_times.datagram,
                        Answered::Tcp => &self.listing_times.tcp,
                    };
                    times.record(asked.elapsed());
                    return Ok(v);
                }
                // A server that took the connection and closed it
                // unanswered answers no listings (a release before them,
                // during a rolling upgrade): ask it over a session.
                Err(e) if crate::client::listing::refused(&e) => {
                    tracing::debug!(server = %server.id.short(), "no listing ({e}); asking over a session");
                }
                Err(e) => return Err(e),
            }
        }
        let mut c = self.get(server).await?;
        let asked = Instant::now();
        let r = self.call(&mut c, Request::List { si }).await;
        if r.is_ok() {
            self.listing_times.session.record(asked.elapsed());
        }
        self.put_back(c);
        match r? {
            Reply::Shares(v) => Ok(v),
            Reply::Error { code, message } => Err(ClientError::Server {
                server: server.id.short(),
                code,
                message,
            }),
            _ => Err(ClientError::Protocol(
                server.id.short(),
                "answered a list with something else".into(),
            )),
        }
    }

    /// Return a session for reuse. One that failed or has unanswered
    /// requests is closed instead.
    pub fn put_back(&self, conn: Conn) {
        if conn.is_reusable() {
            self.idle_list().push((conn, Instant::now()));
        } else {
            drop(conn);
        }
        self.returned.notify_one();
        self.close_idle();
    }

    /// Close sessions idle for longer than the idle timeout. Returns how
    /// many were closed.
    pub fn close_idle(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<Conn> = {
            let mut idle = self.idle_list();
            let mut out = Vec::new();
            let mut i = 0;
            while i < idle.len() {
                if now.duration_since(idle[i].1) >= self.cfg.idle_timeout {
                    out.push(idle.swap_remove(i).0);
                } else {
                    i += 1;
                }
            }
            out
        };
        expired.len()
    }

    /// Sessions open now (in use or idle).
    pub fn open_sessions(&self) -> usize {
        self.cfg.max_sessions - self.slots.available_permits()
    }

    /// Idle sessions held now.
    pub fn idle_sessions(&self) -> usize {
        self.idle_list().len()
    }

    /// Sessions opened over the pool's life (reuse keeps this low).
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Listings asked for instead of opening sessions, over the
    /// pool's life.
    pub fn listings_asked(&self) -> u64 {
        self.listings.load(Ordering::Relaxed)
    }

    /// Listings answered in datagrams (of [`SessionPool::listings_asked`]).
    pub fn datagram_listings_answered(&self) -> u64 {
        self.datagrams.answered()
    }

    /// How long the pool's listings took to answer, by the way they were
    /// asked (see [`ListingTimesSnapshot`]).
    pub fn listing_times(&self) -> ListingTimesSnapshot {
        ListingTimesSnapshot {
            datagram: self.listing_times.datagram.snapshot(),
            tcp: self.listing_times.tcp.snapshot(),
            session: self.listing_times.session.snapshot(),
        }
    }

    fn contact_log(&self) -> std::sync::MutexGuard<'_, Option<Vec<Contact>>> {
        self.contacts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_contact(&self, server: ServerRef, reused: bool) {
        if let Some(log) = self.contact_log().as_mut() {
            // Bounded: a harness takes the log after every operation; one
            // that never does loses the oldest entries, not memory.
            if log.len() >= MAX_CONTACTS {
                log.remove(0);
            }
            log.push(Contact {
                server: server.id,
                reused,
            });
        }
    }

    /// Keep (`on`) or stop keeping a log of the servers sessions are asked
    /// for, for a harness to classify each operation by whether the pool
    /// already held sessions to the servers it used. Stopping drops the log.
    pub fn record_contacts(&self, on: bool) {
        *self.contact_log() = on.then(Vec::new);
    }

    /// The contact log since it was last taken (empty if none is kept).
    pub fn take_contacts(&self) -> Vec<Contact> {
        self.contact_log()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::identity::Identity;
    use grapevine_crypto::noise::SessionConfig;
    use grapevine_crypto::record::LocationRecord;

    async fn server(dir: &std::path::Path) -> ServerRef {
        let id = Arc::new(Identity::generate());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
        let store = crate::store::ShareStore::open(dir, 0).unwrap();
        tokio::spawn(crate::server::run_listener(
            listener,
            id.clone(),
            rec,
            store,
            crate::server::ServerLimits::default(),
            Arc::new(crate::server::ServerStats::default()),
            crate::server::Drain::never(),
        ));
        ServerRef {
            id: id.node_id(),
            addr,
        }
    }

    fn pool() -> SessionPool {
        let me = Arc::new(Identity::generate());
        let record = LocationRecord::new(&me, vec!["127.0.0.1:1".parse().unwrap()])
            .sign(&me)
            .unwrap();
        let ci = ClientIdentity {
            identity: me,
            record,
            session: SessionConfig::default(),
        };
        SessionPool::new(ci, PoolConfig::default())
    }

    /// The contact log says, for every session asked for, whether the pool
    /// held one already; it is kept only when asked for and emptied by
    /// each take.
    #[tokio::test]
    async fn the_contact_log_tells_reused_sessions_from_opened_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(dir.path()).await;
        let p = pool();
        let c = p.get(s).await.unwrap();
        p.put_back(c);
        assert!(p.take_contacts().is_empty(), "no log unless asked for");

        p.record_contacts(true);
        let c = p.get(s).await.unwrap();
        p.put_back(c);
        let c = p.get(s).await.unwrap();
        // A second session to the same server while the first is in use.
        let c2 = p.get(s).await.unwrap();
        p.put_back(c);
        p.put_back(c2);
        let want = |reused| Contact {
            server: s.id,
            reused,
        };
        assert_eq!(p.take_contacts(), vec![want(true), want(true), want(false)]);
        assert!(p.take_contacts().is_empty(), "taking empties the log");

        // An unreachable server is logged as not held.
        let gone = ServerRef {
            id: Identity::generate().node_id(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        assert!(p.get(gone).await.is_err());
        assert_eq!(
            p.take_contacts(),
            vec![Contact {
                server: gone.id,
                reused: false
            }]
        );

        p.record_contacts(false);
        let c = p.get(s).await.unwrap();
        p.put_back(c);
        assert!(p.take_contacts().is_empty(), "logging stopped");
    }
}
