//! The share server: [`ShareServer::handle`] answers one request against a
//! [`ShareStore`] (synchronous, testable without sockets); [`serve`] is the
//! thin driver that runs it over an authenticated session, doing file I/O on
//! tokio's blocking pool.

use std::collections::HashMap;

use grapevine_crypto::{Session, SessionError};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::StoreError;
use crate::protocol::{
    data_header, decode_borrowed, encode, ErrorCode, Reply, Request, RequestMsg, ResponseMsg,
    MAX_READ, MAX_WRITE, PROTOCOL_VERSION,
};
use crate::store::{ShareStore, ShareWriter, StorageIndex};

/// Process-wide counters of the storage server, for status and metrics.
pub mod counters {
    use std::sync::atomic::AtomicU64;
    /// Storage sessions open now.
    pub static SESSIONS_OPEN: AtomicU64 = AtomicU64::new(0);
    /// Requests answered.
    pub static REQUESTS: AtomicU64 = AtomicU64::new(0);
    /// Total time spent answering requests, microseconds.
    pub static REQUEST_MICROS: AtomicU64 = AtomicU64::new(0);
}

/// Shares one session may have open for writing at once.
pub const MAX_OPEN_PER_SESSION: usize = 64;

/// Per-session server state: the shares this session is writing. Dropping
/// it (the session ended) discards unfinished shares.
#[derive(Debug)]
pub struct ShareServer {
    store: ShareStore,
    open: HashMap<(StorageIndex, u16), ShareWriter>,
}

fn error(code: ErrorCode, message: impl ToString) -> Reply {
    Reply::Error {
        code,
        message: message.to_string(),
    }
}

fn from_store(e: StoreError) -> Reply {
    let code = match &e {
        StoreError::NoSpace { .. } | StoreError::DiskFull(_) => ErrorCode::NoSpace,
        StoreError::AlreadyExists => ErrorCode::AlreadyExists,
        StoreError::NotFound => ErrorCode::NotFound,
        StoreError::OutOfRange => ErrorCode::OutOfRange,
        StoreError::BeyondAllocation | StoreError::NotSequential { .. } => ErrorCode::BadWrite,
        StoreError::Incomplete { .. } => ErrorCode::Incomplete,
        StoreError::Corrupt => ErrorCode::Corrupt,
        StoreError::BadShareNumber(_) | StoreError::TooLarge(_) => ErrorCode::BadRequest,
        _ => ErrorCode::Io,
    };
    error(code, e)
}

impl ShareServer {
    /// Serve `store`.
    pub fn new(store: ShareStore) -> Self {
        ShareServer {
            store,
            open: HashMap::new(),
        }
    }

    /// Answer one request.
    pub fn handle(&mut self, req: Request) -> Reply {
        self.answer(req)
    }

    /// Answer one request whose write bytes, if any, are held as `D`
    /// (borrowed from the received message, on the serving path).
    pub fn answer<D: AsRef<[u8]>>(&mut self, req: Request<D>) -> Reply {
        match req {
            Request::Version => match self.store.available() {
                Ok(available) => Reply::Version {
                    protocol: PROTOCOL_VERSION,
                    max_write: MAX_WRITE as u32,
                    available,
                },
                Err(e) => from_store(e),
            },
            Request::Allocate { si, shnum, size } => {
                if self.open.len() >= MAX_OPEN_PER_SESSION {
                    return error(
                        ErrorCode::TooManyOpen,
                        "too many shares open on this session",
                    );
                }
                if self.open.contains_key(&(si, shnum)) {
                    return error(ErrorCode::AlreadyExists, "share already being written");
                }
                match self.store.allocate(&si, shnum, size) {
                    Ok(w) => {
                        self.open.insert((si, shnum), w);
                        Reply::Ok
                    }
                    Err(e) => from_store(e),
                }
            }
            Request::Write {
                si,
                shnum,
                offset,
                data,
            } => {
                let data = data.as_ref();
                if data.len() > MAX_WRITE {
                    return error(ErrorCode::BadRequest, "write too large");
                }
                let Some(w) = self.open.get_mut(&(si, shnum)) else {
                    return error(
                        ErrorCode::NotAllocated,
                        "share not allocated on this session",
                    );
                };
                match w.write_at(offset, data) {
                    Ok(()) => Reply::Ok,
                    Err(e) => from_store(e),
                }
            }
            Request::Close { si, shnum } => {
                let Some(w) = self.open.remove(&(si, shnum)) else {
                    return error(
                        ErrorCode::NotAllocated,
                        "share not allocated on this session",
                    );
                };
                match w.close() {
                    Ok(()) => Reply::Ok,
                    Err(e) => from_store(e),
                }
            }
            Request::Abort { si, shnum } => {
                self.open.remove(&(si, shnum));
                Reply::Ok
            }
            Request::List { si } => {
                let shares = match self.store.list(&si) {
                    Ok(s) => s,
                    Err(e) => return from_store(e),
                };
                let mut out = Vec::with_capacity(shares.len());
                for n in shares {
                    if let Ok(size) = self.store.share_size(&si, n) {
                        out.push((n, size));
                    }
                }
                Reply::Shares(out)
            }
            Request::Read {
                si,
                shnum,
                offset,
                len,
            } => {
                if len > MAX_READ {
                    return error(ErrorCode::BadRequest, "read too large");
                }
                match self.store.read(&si, shnum, offset, len as u64) {
                    Ok(d) => Reply::Data(d),
                    Err(e) => from_store(e),
                }
            }
            Request::Verify { si, shnum } => match self.store.verify(&si, shnum) {
                Ok(()) => Reply::Ok,
                Err(e) => from_store(e),
            },
        }
    }

    /// Decode a request message (a write's bytes are used where they lie
    /// in `bytes`), answer it, and encode the response.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Answer {
        let (id, reply) = match decode_borrowed::<RequestMsg<&[u8]>>(bytes) {
            Ok(m) => (m.id, self.answer(m.req)),
            Err(e) => (0, error(ErrorCode::BadRequest, e)),
        };
        match reply {
            Reply::Data(data) => Answer {
                head: data_header(id, data.len()),
                data,
            },
            reply => Answer {
                head: encode(&ResponseMsg { id, reply }),
                data: Vec::new(),
            },
        }
    }
}

/// An encoded response: `head`, then `data` (the bytes of a read, sent as
/// they were read rather than copied into the encoding).
#[derive(Debug)]
pub struct Answer {
    /// The encoded response, or a read's header.
    pub head: Vec<u8>,
    /// A read's bytes (empty otherwise).
    pub data: Vec<u8>,
}

impl Answer {
    /// The whole encoded response in one buffer (for tests and tools).
    pub fn joined(mut self) -> Vec<u8> {
        self.head.extend_from_slice(&self.data);
        self.head
    }
}

/// Serve storage requests on an established session until the peer closes
/// it. Unfinished shares are discarded when it ends.
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
) -> Result<(), SessionError> {
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
        let started = std::time::Instant::now();
        let quick = matches!(
            decode_borrowed::<RequestMsg<&[u8]>>(&msg).map(|m| m.req),
            Ok(Request::Write { .. } | Request::Read { .. })
        );
        let (srv, out) = if quick {
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
        session.send_parts(&[&out.head, &out.data]).await?;
        use std::sync::atomic::Ordering::Relaxed;
        counters::REQUESTS.fetch_add(1, Relaxed);
        counters::REQUEST_MICROS.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    }
}

/// A share server started by [`spawn_local`].
#[derive(Debug)]
pub struct LocalServer {
    /// Its node id (and so its session key).
    pub id: grapevine_crypto::NodeId,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its accept loop; abort it (and await it) to take the server down.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Start a share server with a fresh identity on `ip` (any free port),
/// storing shares under `store_dir`. For local grids: benchmarks and tests.
///
/// # Errors
/// Socket, store or record errors.
pub async fn spawn_local(
    ip: std::net::IpAddr,
    store_dir: &std::path::Path,
    nickname: Option<String>,
) -> Result<LocalServer, Box<dyn std::error::Error + Send + Sync>> {
    let ident = std::sync::Arc::new(grapevine_crypto::Identity::generate());
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    let mut rec = grapevine_crypto::LocationRecord::new(&ident, vec![addr]);
    rec.nickname = nickname;
    let rec = rec.sign(&ident)?;
    let store = ShareStore::open(store_dir, 0)?;
    let id = ident.node_id();
    let task = tokio::spawn(run_listener(
        listener,
        ident,
        rec,
        store,
        grapevine_crypto::SessionConfig::default(),
        64,
    ));
    Ok(LocalServer { id, addr, task })
}

/// Accept sessions on `listener` and serve storage on each until the
/// listener fails; the sessions end with it. At most `max_handshakes` handshakes run at once (a peer
/// that connects and stalls holds one slot until the handshake deadline).
///
/// # Errors
/// The listener's accept error.
pub async fn run_listener(
    listener: tokio::net::TcpListener,
    identity: std::sync::Arc<grapevine_crypto::Identity>,
    record: grapevine_crypto::SignedRecord,
    store: ShareStore,
    cfg: grapevine_crypto::SessionConfig,
    max_handshakes: usize,
) -> std::io::Result<()> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_handshakes.max(1)));
    // Sessions live in this set: when the listener's task ends (or is
    // aborted), its sessions end with it.
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let (stream, from) = listener.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "refusing connection: too many handshakes in progress");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (identity, record, store, cfg) =
            (identity.clone(), record.clone(), store.clone(), cfg.clone());
        sessions.spawn(async move {
            let accepted = Box::pin(Session::accept(stream, &identity, &record, &cfg)).await;
            drop(permit);
            match accepted {
                Ok((session, peer)) => {
                    use std::sync::atomic::Ordering::Relaxed;
                    tracing::debug!(peer = %peer.node_id().short(), "storage session");
                    /// Counts the session as open until it is dropped, even
                    /// by an abort.
                    struct OpenSession;
                    impl Drop for OpenSession {
                        fn drop(&mut self) {
                            counters::SESSIONS_OPEN.fetch_sub(1, Relaxed);
                        }
                    }
                    counters::SESSIONS_OPEN.fetch_add(1, Relaxed);
                    let _open = OpenSession;
                    let r = serve(session, store).await;
                    if let Err(e) = r {
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

    fn si() -> StorageIndex {
        StorageIndex([5; 16])
    }

    #[test]
    fn allocate_write_close_list_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        assert_eq!(
            s.handle(Request::Allocate {
                si: si(),
                shnum: 1,
                size: 4
            }),
            Reply::Ok
        );
        assert_eq!(
            s.handle(Request::Write {
                si: si(),
                shnum: 1,
                offset: 0,
                data: b"abcd".to_vec()
            }),
            Reply::Ok
        );
        assert_eq!(s.handle(Request::Close { si: si(), shnum: 1 }), Reply::Ok);
        assert_eq!(
            s.handle(Request::List { si: si() }),
            Reply::Shares(vec![(1, 4)])
        );
        assert_eq!(
            s.handle(Request::Read {
                si: si(),
                shnum: 1,
                offset: 1,
                len: 2
            }),
            Reply::Data(b"bc".to_vec())
        );
        assert_eq!(s.handle(Request::Verify { si: si(), shnum: 1 }), Reply::Ok);
    }

    #[test]
    fn client_cannot_write_more_than_announced_or_unallocated() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        assert!(matches!(
            s.handle(Request::Write {
                si: si(),
                shnum: 0,
                offset: 0,
                data: vec![1]
            }),
            Reply::Error {
                code: ErrorCode::NotAllocated,
                ..
            }
        ));
        s.handle(Request::Allocate {
            si: si(),
            shnum: 0,
            size: 2,
        });
        assert!(matches!(
            s.handle(Request::Write {
                si: si(),
                shnum: 0,
                offset: 0,
                data: vec![1, 2, 3]
            }),
            Reply::Error {
                code: ErrorCode::BadWrite,
                ..
            }
        ));
        assert!(matches!(
            s.handle(Request::Close { si: si(), shnum: 0 }),
            Reply::Error {
                code: ErrorCode::Incomplete,
                ..
            }
        ));
        assert!(matches!(
            s.handle(Request::Read {
                si: si(),
                shnum: 0,
                offset: 0,
                len: MAX_READ + 1
            }),
            Reply::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        for n in 0..MAX_OPEN_PER_SESSION as u16 {
            s.handle(Request::Allocate {
                si: si(),
                shnum: 100 + n,
                size: 1,
            });
        }
        assert!(matches!(
            s.handle(Request::Allocate {
                si: si(),
                shnum: 1,
                size: 1
            }),
            Reply::Error {
                code: ErrorCode::TooManyOpen,
                ..
            }
        ));
    }

    #[test]
    fn garbage_request_gets_bad_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ShareServer::new(ShareStore::open(dir.path(), 0).unwrap());
        let out: ResponseMsg =
            crate::protocol::decode(&s.handle_bytes(b"\xff\xff\xff").joined()).unwrap();
        assert!(matches!(
            out.reply,
            Reply::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
    }

    #[test]
    fn dropped_session_discards_unfinished_shares() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        let mut s = ShareServer::new(store.clone());
        s.handle(Request::Allocate {
            si: si(),
            shnum: 2,
            size: 4,
        });
        s.handle(Request::Write {
            si: si(),
            shnum: 2,
            offset: 0,
            data: b"ab".to_vec(),
        });
        drop(s);
        assert!(store.list(&si()).unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("incoming"))
                .unwrap()
                .count(),
            0
        );
    }
}
