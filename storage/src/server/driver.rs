//! The share server's tokio driver: [`run_listener`] accepts sessions and
//! [`serve`] runs a [`ShareServer`] over each, counting into the server's
//! own [`ServerStats`].
//!
//! What bounds a peer (mini-redis's server is the model: a connection
//! semaphore, accept with backoff):
//!
//! * **Sessions**: at most [`ServerLimits::max_sessions`] at once. The
//!   accept loop takes a slot before it accepts, so a full server leaves
//!   new connections in the kernel's backlog instead of taking them.
//!   Handshakes in progress are capped apart ([`ServerLimits::max_handshakes`]);
//!   each has the session's handshake deadline.
//! * **Accept errors** (running out of file descriptors is enough) back off
//!   and retry ([`AcceptBackoff`]); only an error that says the socket itself
//!   is gone ends the loop.
//! * **Time**: a session that brings no request for
//!   [`ServerLimits::idle_timeout`] is closed, and so is one that holds
//!   shares open for writing but neither allocates, writes, closes nor
//!   aborts for that long: space reserved for its shares dies with it, so a
//!   silent peer cannot hold a disk's space. A request must arrive whole
//!   within that time too (a peer sending a byte a second is cut off), and
//!   its answer must be taken by the peer within
//!   [`ServerLimits::request_timeout`].
//! * **Memory**: a message is at most the protocol's largest
//!   ([`MAX_MESSAGE`]: a 1 MiB write and its header); anything larger ends
//!   the session before it is buffered. At most
//!   [`ServerLimits::max_requests`] requests are answered at once over all
//!   sessions (from the node's memory budget,
//!   [`MemoryBudget::server_requests`](crate::MemoryBudget::server_requests)):
//!   a request beyond it waits, holding only its message, until one is
//!   answered; meanwhile its session is not read, so TCP holds its peer
//!   back. An answer (a read of up to 1 MiB) is made only once its request's
//!   turn has come, and the turn is held until the answer is sent, so a
//!   peer that does not take its answers holds a turn for up to
//!   [`ServerLimits::request_timeout`]: with a small budget, a few such
//!   peers slow the others down instead of running the node out of memory.
//!
//! A listener stops in two ways. Dropping (aborting) its task ends every
//! session at once, as a crash would. [`DrainHandle::start`] drains it
//! instead, as a node does on SIGTERM: the listener stops accepting,
//! sessions with no share open for writing close after the request they
//! are answering, sessions writing shares go on until those shares are
//! closed, and after the grace period whatever remains is cut. Uploads in
//! progress so finish (or lose this server cleanly) instead of meeting a
//! connection reset.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grapevine_crypto::error::SessionError;
use grapevine_crypto::identity::Identity;
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::record::SignedRecord;
use grapevine_crypto::session::Session;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore, SemaphorePermit};

use crate::protocol::{peek_kind, MAX_MESSAGE};
use crate::server::backoff::AcceptBackoff;
use crate::server::handler::ShareServer;
use crate::server::listing::{self, Opening};
use crate::server::stats::ServerStats;
use crate::store::ShareStore;

/// What bounds the server's peers (see the module docs).
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Session settings (handshake deadline, closed grid). The message cap
    /// is always the protocol's, [`MAX_MESSAGE`].
    pub session: SessionConfig,
    /// Handshakes in progress at once (more are refused).
    pub max_handshakes: usize,
    /// Sessions open at once (more wait in the backlog).
    pub max_sessions: usize,
    /// A session idle (or, holding open shares, not writing) this long is
    /// closed.
    pub idle_timeout: Duration,
    /// An answer the peer does not take within this long ends the session.
    pub request_timeout: Duration,
    /// Requests answered at once over all sessions (more wait their turn).
    pub max_requests: usize,
    /// An answer not taken within this long gives its turn back (see
    /// [`crate::server`]'s turns).
    pub turn_hold: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            session: SessionConfig::default(),
            max_handshakes: 256,
            max_sessions: 1024,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_requests: usize::MAX,
            turn_hold: Duration::from_secs(2),
        }
    }
}

/// The listener's side of a drain request: whether one was made, and with
/// what grace period. Made by [`DrainHandle::new`].
#[derive(Debug, Clone)]
pub struct Drain(watch::Receiver<Option<Duration>>);

/// Starts a drain of the listener given its [`Drain`].
#[derive(Debug)]
pub struct DrainHandle(watch::Sender<Option<Duration>>);

impl DrainHandle {
    /// A handle and the [`Drain`] to give [`run_listener`].
    pub fn new() -> (DrainHandle, Drain) {
        let (tx, rx) = watch::channel(None);
        (DrainHandle(tx), Drain(rx))
    }

    /// Start draining: stop accepting, close idle sessions, give sessions
    /// writing shares at most `grace` to finish them.
    pub fn start(&self, grace: Duration) {
        self.0.send_replace(Some(grace));
    }
}

impl Drain {
    /// A drain that never starts (the listener runs until dropped).
    pub fn never() -> Drain {
        DrainHandle::new().1
    }

    /// Whether a drain has started.
    pub fn is_started(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Wait until a drain starts; its grace period.
    async fn started(&mut self) -> Duration {
        loop {
            if let Some(grace) = *self.0.borrow_and_update() {
                return grace;
            }
            if self.0.changed().await.is_err() {
                // The handle is gone: no drain will ever start.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Counts a session as open until it is dropped, even by an abort.
struct OpenSession<'a>(&'a ServerStats);

impl<'a> OpenSession<'a> {
    fn new(stats: &'a ServerStats) -> Self {
        stats.sessions_open.fetch_add(1, Relaxed);
        OpenSession(stats)
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0.sessions_open.fetch_sub(1, Relaxed);
    }
}

/// Whether a request of kind `kind` is progress on the shares a session
/// writes (allocate, write, close, abort).
fn is_write_progress(kind: Option<u32>) -> bool {
    matches!(kind, Some(1..=4))
}

/// The kind of a list request (see [`crate::protocol::Request`]).
const LIST: u32 = 5;

/// Serve storage requests on an established session until the peer closes
/// it or a deadline of `limits` passes, counting into `stats`. Unfinished
/// shares are discarded (their space released) when it ends.
/// Once `drain` has started, the session ends as soon as it has no share
/// open for writing (after answering the request in hand).
///
/// Reads and writes (at most 1 MiB each, in the page cache as a rule) are
/// done on the session's own task: handing each to the blocking pool cost
/// more than the I/O (a third of upload throughput, measured). Everything
/// that can take long (allocating, the fsyncs of a close, listing, hashing
/// a whole share) goes to the blocking pool. A node therefore runs its
/// storage listener on a runtime of its own (see `grapevine run`), so a
/// slow disk can delay storage sessions but never gossip.
///
/// # Errors
/// Session errors other than a clean close; [`SessionError::Io`] of kind
/// `TimedOut` when a deadline ends the session.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    session: Session<S>,
    store: ShareStore,
    stats: &ServerStats,
    limits: &ServerLimits,
    drain: Drain,
) -> Result<(), SessionError> {
    let turns = Turns::new(limits);
    serve_in_turn(session, store, stats, limits, drain, &turns).await
}

/// [`serve`], taking a turn from `turns` (shared by the listener's
/// sessions) for each request, from before it is handled until its answer
/// is sent.
async fn serve_in_turn<S: AsyncRead + AsyncWrite + Unpin>(
    mut session: Session<S>,
    store: ShareStore,
    stats: &ServerStats,
    limits: &ServerLimits,
    mut drain: Drain,
    turns: &Turns,
) -> Result<(), SessionError> {
    let _open = OpenSession::new(stats);
    let mut server = Some(ShareServer::new(store));
    let timed_out = |what: &str| {
        stats.sessions_timed_out.fetch_add(1, Relaxed);
        SessionError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            what.to_string(),
        ))
    };
    let mut progress = tokio::time::Instant::now();
    loop {
        let writing = server.as_ref().is_some_and(ShareServer::is_writing);
        if drain.is_started() && !writing {
            return Ok(());
        }
        let deadline = progress + limits.idle_timeout;
        let received = tokio::select! {
            biased;
            r = tokio::time::timeout_at(deadline, session.recv()) => r,
            _ = drain.started(), if !writing => return Ok(()),
        };
        let read_at = Instant::now();
        let msg = match received {
            Err(_) => return Err(timed_out("session idle, or a request stalled")),
            Ok(Ok(m)) => m,
            Ok(Err(SessionError::Closed)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        let mut srv = server
            .take()
            .expect("server state present between requests");
        // A session holding shares open must keep writing them; one that
        // holds none only has to keep asking.
        if srv.open_shares() == 0 || is_write_progress(peek_kind(&msg)) {
            progress = tokio::time::Instant::now();
        }
        let turn = turns.take(stats).await;
        let started = Instant::now();
        let listing = peek_kind(&msg) == Some(LIST);
        let (srv, out) = if ShareServer::is_quick(&msg) {
            let out = srv.handle_bytes(&msg);
            (srv, out)
        } else {
            tokio::task::spawn_blocking(move || {
                let out = srv.handle_bytes(&msg);
                (srv, out)
            })
            .await
            .map_err(|e| SessionError::Io(std::io::Error::other(e)))?
        };
        server = Some(srv);
        stats.requests.fetch_add(1, Relaxed);
        stats
            .request_micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let parts: [&[u8]; 2] = [&out.head, &out.data];
        match turns
            .send(session.send_parts(&parts), turn, limits, stats)
            .await
        {
            Ok(()) if listing => stats.session_listing_times.record(read_at.elapsed()),
            Ok(()) => {}
            Err(Unsent::TimedOut) => return Err(timed_out("the peer did not take an answer")),
            Err(Unsent::TooManyStalled) => {
                return Err(timed_out(
                    "the peer was slow to take an answer while others were too",
                ))
            }
            Err(Unsent::Session(e)) => return Err(e),
        }
        drop(out);
    }
}

/// Accept sessions on `listener` and serve storage on each, within
/// `limits`, until the listener fails for good or `drain` has run its
/// course; the sessions end with it. What the sessions do is counted in
/// `stats`. On a drain, the listener is closed at once and the sessions get
/// the drain's grace period to finish the shares they are writing.
///
/// # Errors
/// An accept error that says the listening socket is unusable (see
/// [`AcceptBackoff`]); every other accept error is retried after a pause.
pub async fn run_listener(
    listener: TcpListener,
    identity: Arc<Identity>,
    record: SignedRecord,
    store: ShareStore,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    mut drain: Drain,
) -> std::io::Result<()> {
    let limits = Arc::new(ServerLimits {
        session: SessionConfig {
            max_message: MAX_MESSAGE,
            ..limits.session.clone()
        },
        ..limits
    });
    let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.max_handshakes.max(1)));
    let turns = Arc::new(Turns::new(&limits));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_sessions.max(1)));
    let mut backoff = AcceptBackoff::default();
    // Sessions live in this set: when the listener's task ends (or is
    // aborted), its sessions end with it.
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        // A slot first, then accept: at the cap, connections wait in the
        // kernel's backlog rather than in this process.
        let (slot, accepted) = tokio::select! {
            a = async {
                let slot = slots.clone().acquire_owned().await.map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>((slot, listener.accept().await))
            } => a?,
            grace = drain.started() => {
                drop(listener);
                tracing::info!(sessions = sessions.len(), ?grace, "storage draining");
                let all_done = async { while sessions.join_next().await.is_some() {} };
                if tokio::time::timeout(grace, all_done).await.is_err() {
                    tracing::warn!(
                        sessions = sessions.len(),
                        "storage sessions still writing after {grace:?}: closing them"
                    );
                }
                // Dropping the set aborts what is left.
                return Ok(());
            }
        };
        let (stream, from): (_, SocketAddr) = match accepted {
            Ok(c) => {
                backoff.reset();
                c
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Relaxed);
                let Some(pause) = backoff.on_error(&e) else {
                    tracing::error!("storage listener failed for good: {e}");
                    return Err(e);
                };
                tracing::warn!("storage accept failed ({e}); retrying in {pause:?}");
                drop(slot);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%from, "refusing connection: too many handshakes in progress");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (identity, record, store, limits, stats, drain, turns) = (
            identity.clone(),
            record.clone(),
            store.clone(),
            limits.clone(),
            stats.clone(),
            drain.clone(),
            turns.clone(),
        );
        sessions.spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let opened = Box::pin(listing::open(
                stream,
                &identity,
                &record,
                &store,
                &limits.session,
            ))
            .await;
            drop(permit);
            match opened {
                Ok(Opening::Session(session, peer)) => {
                    tracing::debug!(peer = %peer.node_id().short(), "storage session");
                    let served =
                        serve_in_turn(session, store, &stats, &limits, drain, &turns).await;
                    if let Err(e) = served {
                        tracing::debug!(%from, "storage session ended: {e}");
                    }
                }
                Ok(Opening::Listed) => stats.count_listing(started, started, false),
                Err(e) => tracing::debug!(%from, "{e}"),
            }
        });
    }
}

/// Turns: how many requests a share server answers at once, and what a
/// peer that does not take its answers can hold.
///
/// A request is answered only with a turn in hand, from before it is
/// handled until its answer is sent ([`ServerLimits::max_requests`] turns
/// over all sessions, from the node's memory budget), so answers held in
/// memory are bounded. A peer that asks and then does not read holds its
/// turn while its answer waits in full socket buffers; with a small
/// budget (three turns at the default 8 MiB) three such peers would hold
/// every turn and stall every other peer for
/// [`ServerLimits::request_timeout`], again and again. So an answer not
/// taken within [`ServerLimits::turn_hold`] gives its turn back and waits
/// among the *stalled* answers, at most as many as there are turns (memory
/// stays bounded: twice the turns' worth); a peer slow to take its answer
/// when that many are stalled already has its session closed. A slow but
/// honest peer (a small board on a slow link) keeps its session as long as
/// few peers are that slow at once; a peer that never reads is cut off
/// after `request_timeout` at the latest, and can never hold the turns
/// others need for longer than `turn_hold`.
#[derive(Debug)]
pub(crate) struct Turns {
    turns: Semaphore,
    stalled: Semaphore,
}

/// Why an answer was not sent.
#[derive(Debug)]
pub(crate) enum Unsent {
    /// The peer did not take it within the request timeout.
    TimedOut,
    /// The peer was slow to take it and as many answers as there are turns
    /// were stalled already.
    TooManyStalled,
    /// The session failed.
    Session(grapevine_crypto::SessionError),
}

impl Turns {
    /// `limits.max_requests` turns, and as many places for stalled answers.
    pub fn new(limits: &ServerLimits) -> Self {
        let n = limits.max_requests.clamp(1, Semaphore::MAX_PERMITS);
        Turns {
            turns: Semaphore::new(n),
            stalled: Semaphore::new(n),
        }
    }

    /// A turn, waiting (counted in `stats`) if every turn is taken.
    pub async fn take(&self, stats: &ServerStats) -> SemaphorePermit<'_> {
        if let Ok(t) = self.turns.try_acquire() {
            return t;
        }
        stats.requests_waiting.fetch_add(1, Relaxed);
        stats.requests_waited.fetch_add(1, Relaxed);
        let t = self.turns.acquire().await;
        stats.requests_waiting.fetch_sub(1, Relaxed);
        t.expect("the semaphore is never closed")
    }

    /// Send an answer with `send`, holding `turn` for at most
    /// `limits.turn_hold` (see [`Turns`]).
    pub async fn send<F>(
        &self,
        send: F,
        turn: SemaphorePermit<'_>,
        limits: &ServerLimits,
        stats: &ServerStats,
    ) -> Result<(), Unsent>
    where
        F: std::future::Future<Output = Result<(), grapevine_crypto::SessionError>>,
    {
        tokio::pin!(send);
        let hold = limits.turn_hold.min(limits.request_timeout);
        if let Ok(r) = tokio::time::timeout(hold, &mut send).await {
            return r.map_err(Unsent::Session);
        }
        let Ok(place) = self.stalled.try_acquire() else {
            return Err(Unsent::TooManyStalled);
        };
        drop(turn);
        stats.answers_stalled.fetch_add(1, Relaxed);
        let r = tokio::time::timeout(limits.request_timeout.saturating_sub(hold), send).await;
        drop(place);
        match r {
            Err(_) => Err(Unsent::TimedOut),
            Ok(r) => r.map_err(Unsent::Session),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode, Reply, Request, RequestMsg, ResponseMsg};
    use grapevine_crypto::record::LocationRecord;

    async fn server(dir: &std::path::Path) -> (SocketAddr, SignedRecord, Arc<ServerStats>) {
        let (a, r, s, _, _) = draining_server(dir).await;
        (a, r, s)
    }

    type Listening = (
        SocketAddr,
        SignedRecord,
        Arc<ServerStats>,
        DrainHandle,
        tokio::task::JoinHandle<std::io::Result<()>>,
    );

    async fn draining_server(dir: &std::path::Path) -> Listening {
        let id = Arc::new(Identity::generate());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
        let stats = Arc::new(ServerStats::default());
        let store = ShareStore::open(dir, 0).unwrap();
        let (handle, drain) = DrainHandle::new();
        let task = tokio::spawn(run_listener(
            listener,
            id,
            rec.clone(),
            store,
            ServerLimits {
                max_handshakes: 4,
                ..ServerLimits::default()
            },
            stats.clone(),
            drain,
        ));
        (addr, rec, stats, handle, task)
    }

    async fn connect(addr: SocketAddr, rec: &SignedRecord) -> Session<tokio::net::TcpStream> {
        let me = Identity::generate();
        let my_rec = LocationRecord::new(&me, vec!["127.0.0.1:1".parse().unwrap()])
            .sign(&me)
            .unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        Session::connect(
            stream,
            &me,
            &my_rec,
            rec.node_id(),
            &SessionConfig::default(),
        )
        .await
        .unwrap()
        .0
    }

    async fn call(s: &mut Session<tokio::net::TcpStream>, id: u32, req: Request) -> Reply {
        s.send(&encode(&RequestMsg::new(id, req))).await.unwrap();
        let r: ResponseMsg = decode(&s.recv().await.unwrap()).unwrap();
        r.reply
    }

    const SI: crate::types::StorageIndex = crate::types::StorageIndex([9; 16]);

    /// A drain (SIGTERM on a node) closes the listener and idle sessions at
    /// once, lets a session writing a share finish it, then closes that
    /// session too and ends the listener: the upload is not reset.
    #[tokio::test]
    async fn a_drain_lets_shares_being_written_finish_and_closes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, rec, _stats, handle, task) = draining_server(dir.path()).await;
        let mut writer = connect(addr, &rec).await;
        let mut idle = connect(addr, &rec).await;
        let alloc = Request::Allocate {
            si: SI,
            shnum: 0,
            size: 10,
        };
        assert!(matches!(call(&mut writer, 1, alloc).await, Reply::Ok));
        let write = |offset: u64| Request::Write {
            si: SI,
            shnum: 0,
            offset,
            data: vec![7u8; 5],
        };
        assert!(matches!(call(&mut writer, 2, write(0)).await, Reply::Ok));
        assert!(matches!(
            call(&mut idle, 1, Request::Version).await,
            Reply::Version { .. }
        ));
        handle.start(Duration::from_secs(60));
        // The idle session is closed by the server.
        assert!(idle.recv().await.is_err(), "idle session closed");
        // No new session is accepted.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The writing session finishes its share, then is closed.
        assert!(matches!(call(&mut writer, 3, write(5)).await, Reply::Ok));
        let close = Request::Close { si: SI, shnum: 0 };
        assert!(matches!(call(&mut writer, 4, close).await, Reply::Ok));
        assert!(
            writer.recv().await.is_err(),
            "writing session closed once done"
        );
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("listener ends after the drain")
            .unwrap()
            .unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        assert_eq!(store.read(&SI, 0, 0, 10).unwrap(), vec![7u8; 10]);
    }

    /// A drain is bounded: a session that never finishes its share is cut
    /// after the grace period, and its partial share is not kept.
    #[tokio::test]
    async fn a_drain_cuts_a_stalled_writer_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, rec, stats, handle, task) = draining_server(dir.path()).await;
        let mut writer = connect(addr, &rec).await;
        let alloc = Request::Allocate {
            si: SI,
            shnum: 1,
            size: 10,
        };
        assert!(matches!(call(&mut writer, 1, alloc).await, Reply::Ok));
        handle.start(Duration::from_millis(300));
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the drain is bounded")
            .unwrap()
            .unwrap();
        assert!(writer.recv().await.is_err());
        until("the session is counted closed", || {
            stats.sessions_open() == 0
        })
        .await;
        let store = ShareStore::open(dir.path(), 0).unwrap();
        assert!(store.list(&SI).unwrap().is_empty());
    }

    /// Issue 25: at most `max_requests` requests are answered at once over
    /// all sessions. A session whose answers are not taken holds its turn
    /// (its answer waits in full socket buffers); another session's request
    /// then waits, counted, and is answered once the first reads on.
    #[tokio::test]
    async fn requests_beyond_the_budget_wait_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, rec, stats) = one_turn_server(dir.path(), Duration::from_secs(60)).await;
        let mut hog = connect(addr, &rec).await;
        let mut other = connect(addr, &rec).await;
        // 64 MiB asked for and none of it taken: more than socket buffers
        // hold, so the server's send stalls with the turn in hand.
        const READS: u32 = 64;
        ask_for_reads(&mut hog, READS).await;
        // Until the hog's session stalls, the other's requests may find the
        // turn free between two of its requests: ask until one waits.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for id in 1.. {
            assert!(tokio::time::Instant::now() < deadline, "no request waited");
            let version = Request::<Vec<u8>>::Version;
            other
                .send(&encode(&RequestMsg::new(id, version)))
                .await
                .unwrap();
            tokio::select! {
                m = other.recv() => {
                    let r: ResponseMsg = decode(&m.unwrap()).unwrap();
                    assert!(matches!(r.reply, Reply::Version { .. }));
                }
                _ = until("a request waits its turn", || stats.requests_waiting() == 1) => break,
            }
        }
        // The hog takes its answers: the other request gets its turn.
        let reader = tokio::spawn(async move {
            for _ in 0..READS {
                let r: ResponseMsg = decode(&hog.recv().await.unwrap()).unwrap();
                assert!(matches!(r.reply, Reply::Data(ref d) if d.len() == 1 << 20));
            }
        });
        let r: ResponseMsg = decode(&other.recv().await.unwrap()).unwrap();
        assert!(matches!(r.reply, Reply::Version { .. }));
        reader.await.unwrap();
        assert_eq!(stats.requests_waiting(), 0);
        assert!(stats.requests_waited() >= 1);
    }

    /// Issue 25's turns against peers that ask and never read: with one
    /// turn, a hog's stalled answer gives the turn back after `turn_hold`
    /// (so another peer is answered while the hog still reads nothing),
    /// and a second hog, slow while the first one's answer is stalled, is
    /// cut off. (Before, the hog held the only turn for the request
    /// timeout: 30 s by default, for every other peer.)
    #[tokio::test]
    async fn peers_that_do_not_read_their_answers_cannot_hold_the_turns() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, rec, stats) = one_turn_server(dir.path(), Duration::from_millis(200)).await;
        // 64 MiB asked for and none of it taken, by two hogs in turn.
        let hog = |n: u32| {
            let rec = rec.clone();
            async move {
                let mut s = connect(addr, &rec).await;
                ask_for_reads(&mut s, n).await;
                s
            }
        };
        let _first = hog(64).await;
        until("the first hog's answer stalls", || {
            stats.answers_stalled() >= 1
        })
        .await;
        let mut second = hog(64).await;
        until("the second hog is cut off", || {
            stats.sessions_timed_out() >= 1
        })
        .await;
        // Reading on, the second hog finds its session closed after the
        // answers the kernel held.
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            while second.recv().await.is_ok() {}
        })
        .await;
        assert!(ended.is_ok(), "the second hog's session was not closed");
        // Another peer is answered though the first hog still reads nothing.
        let mut other = connect(addr, &rec).await;
        let version = Request::<Vec<u8>>::Version;
        other
            .send(&encode(&RequestMsg::new(1, version)))
            .await
            .unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(20), other.recv()).await;
        let r: ResponseMsg = decode(&answered.expect("answered").unwrap()).unwrap();
        assert!(matches!(r.reply, Reply::Version { .. }));
    }

    /// A listener with one turn, `turn_hold` and a 60 s request deadline,
    /// serving a 1 MiB share 0 of `SI` (the server task runs until the
    /// test's runtime ends).
    /// Ask `n` reads of 1 MiB (numbered from 1) on `s` without taking
    /// any answer.
    async fn ask_for_reads(s: &mut Session<tokio::net::TcpStream>, n: u32) {
        for id in 1..=n {
            let read = Request::<Vec<u8>>::Read {
                si: SI,
                shnum: 0,
                offset: 0,
                len: 1 << 20,
            };
            s.send(&encode(&RequestMsg::new(id, read))).await.unwrap();
        }
    }

    async fn one_turn_server(
        dir: &std::path::Path,
        turn_hold: Duration,
    ) -> (SocketAddr, SignedRecord, Arc<ServerStats>) {
        let store = ShareStore::open(dir, 0).unwrap();
        let mut w = store.allocate(&SI, 0, 1 << 20).unwrap();
        w.write_at(0, &vec![5u8; 1 << 20]).unwrap();
        w.close().unwrap();
        let id = Arc::new(Identity::generate());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
        let stats = Arc::new(ServerStats::default());
        let limits = ServerLimits {
            max_requests: 1,
            turn_hold,
            request_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        };
        tokio::spawn(run_listener(
            listener,
            id,
            rec.clone(),
            store,
            limits,
            stats.clone(),
            Drain::never(),
        ));
        (addr, rec, stats)
    }

    /// Wait (up to a deadline) until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Two servers in one process count apart: what a client does with one
    /// shows in its stats only (process-wide counters would count both).
    #[tokio::test]
    async fn each_server_counts_its_own_sessions_and_requests() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (addr_a, rec_a, a) = server(da.path()).await;
        let (_, _, b) = server(db.path()).await;
        let me = Identity::generate();
        let my_rec = LocationRecord::new(&me, vec!["127.0.0.1:1".parse().unwrap()])
            .sign(&me)
            .unwrap();
        let stream = tokio::net::TcpStream::connect(addr_a).await.unwrap();
        let (mut s, _) = Session::connect(
            stream,
            &me,
            &my_rec,
            rec_a.node_id(),
            &SessionConfig::default(),
        )
        .await
        .unwrap();
        for id in 1..=3 {
            s.send(&encode(&RequestMsg::new(id, Request::<Vec<u8>>::Version)))
                .await
                .unwrap();
            let r: ResponseMsg = decode(&s.recv().await.unwrap()).unwrap();
            assert!(matches!(r.reply, Reply::Version { .. }));
        }
        // Counted before each answer is sent: exact once answered.
        assert_eq!(a.requests(), 3);
        until("the session is counted open", || a.sessions_open() == 1).await;
        assert_eq!((b.requests(), b.sessions_open()), (0, 0));
        drop(s);
        until("the session is counted closed", || a.sessions_open() == 0).await;
        assert_eq!(a.requests(), 3);
    }
}
