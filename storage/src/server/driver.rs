//! The share server's tokio driver: [`run_listener`] accepts sessions and
//! [`serve`] runs a [`ShareServer`] over each, counting into the server's
//! own [`ServerStats`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use grapevine_crypto::error::SessionError;
use grapevine_crypto::identity::Identity;
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::record::SignedRecord;
use grapevine_crypto::session::Session;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::server::handler::ShareServer;
use crate::store::ShareStore;

/// What one storage server has done, for status and metrics: each server
/// (each listener) has its own, shared (`Arc`) between the listener that
/// counts and whoever reports.
#[derive(Debug, Default)]
pub struct ServerStats {
    sessions_open: AtomicU64,
    requests: AtomicU64,
    request_micros: AtomicU64,
}

impl ServerStats {
    /// Storage sessions open now.
    pub fn sessions_open(&self) -> u64 {
        self.sessions_open.load(Relaxed)
    }

    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Total time spent answering requests (decoding, the store's work,
    /// encoding; not sending), in microseconds.
    pub fn request_micros(&self) -> u64 {
        self.request_micros.load(Relaxed)
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

/// Serve storage requests on an established session until the peer closes
/// it, counting into `stats`. Unfinished shares are discarded when it ends.
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
/// Session errors other than a clean close.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut session: Session<S>,
    store: ShareStore,
    stats: &ServerStats,
) -> Result<(), SessionError> {
    let _open = OpenSession::new(stats);
    let mut server = Some(ShareServer::new(store));
    loop {
        let msg = match session.recv().await {
            Ok(m) => m,
            Err(SessionError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut srv = server
            .take()
            .expect("server state present between requests");
        let started = Instant::now();
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
        session.send_parts(&[&out.head, &out.data]).await?;
    }
}

/// Accept sessions on `listener` and serve storage on each until the
/// listener fails; the sessions end with it. At most `max_handshakes`
/// handshakes run at once (a peer that connects and stalls holds one slot
/// until the handshake deadline). What the sessions do is counted in
/// `stats`.
///
/// # Errors
/// The listener's accept error.
pub async fn run_listener(
    listener: TcpListener,
    identity: Arc<Identity>,
    record: SignedRecord,
    store: ShareStore,
    cfg: SessionConfig,
    max_handshakes: usize,
    stats: Arc<ServerStats>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_handshakes.max(1)));
    // Sessions live in this set: when the listener's task ends (or is
    // aborted), its sessions end with it.
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let (stream, from): (_, SocketAddr) = listener.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "refusing connection: too many handshakes in progress");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (identity, record, store, cfg, stats) = (
            identity.clone(),
            record.clone(),
            store.clone(),
            cfg.clone(),
            stats.clone(),
        );
        sessions.spawn(async move {
            let accepted = Box::pin(Session::accept(stream, &identity, &record, &cfg)).await;
            drop(permit);
            match accepted {
                Ok((session, peer)) => {
                    tracing::debug!(peer = %peer.node_id().short(), "storage session");
                    if let Err(e) = serve(session, store, &stats).await {
                        tracing::debug!(%from, "storage session ended: {e}");
                    }
                }
                Err(e) => tracing::debug!(%from, "handshake failed: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode, Reply, Request, RequestMsg, ResponseMsg};
    use grapevine_crypto::record::LocationRecord;

    async fn server(dir: &std::path::Path) -> (SocketAddr, SignedRecord, Arc<ServerStats>) {
        let id = Arc::new(Identity::generate());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
        let stats = Arc::new(ServerStats::default());
        let store = ShareStore::open(dir, 0).unwrap();
        tokio::spawn(run_listener(
            listener,
            id,
            rec.clone(),
            store,
            SessionConfig::default(),
            4,
            stats.clone(),
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
