//! One session to one storage server, carrying pipelined requests, each
//! with a deadline.
//!
//! A [`Conn`] keeps up to [`MAX_IN_FLIGHT`] requests outstanding (the
//! server answers in order), so a server is never idle waiting for the
//! client's next request. Every request has a deadline
//! ([`DEFAULT_REQUEST_TIMEOUT`] unless the pool says otherwise): sending it
//! must finish, and its answer must arrive, within that time of its being
//! sent. A server that stalls costs the operation one deadline and its
//! session (marked broken, never reused), never a hang.
//!
//! # How deep to pipeline
//!
//! How many writes a put's writer keeps outstanding, and how many blocks a
//! get's receiver holds (requested, decoding or waiting to be written),
//! follows the link ([`Conn::depth`]): each connection keeps the shortest
//! round trip of the last half-minute to minute (its handshake, then every
//! answer to a request sent while nothing else was outstanding: see
//! `round_trip.rs` for why those and why a window), and keeps
//! [`SHORT_LINK_DEPTH`] requests outstanding on a link of under a
//! millisecond, one more per millisecond beyond, up to the budget's
//! [`Conn::max_in_flight`]. On a short link two are enough to keep a server
//! busy (the next request is there before the current answer has left),
//! and every request more only waits in socket buffers, where the bytes go
//! cold: measured on loopback (docs/performance.md), eight outstanding
//! instead of two cost a put about 0.5 s more kernel time per GiB. On a
//! long link the requests in flight are what keeps the pipe full, so a
//! 50 ms link gets the budget's eight.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grapevine_crypto::error::SessionError;
use grapevine_crypto::identity::{Identity, NodeId};
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::placement::Placed;
use grapevine_crypto::record::SignedRecord;
use grapevine_crypto::session::Session;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::round_trip::RoundTrip;
use crate::error::ClientError;
use crate::protocol::{
    decode_borrowed, encode, write_header, Reply, Request, RequestMsg, ResponseMsg,
    DATA_HEADER_MAX, MAX_MESSAGE, MAX_READ, PROTOCOL_VERSION,
};
use crate::types::StorageIndex;

/// Requests a connection keeps outstanding before it waits for an answer,
/// unless the pool's memory budget says fewer ([`Conn::max_in_flight`]).
pub use crate::budget::MAX_IN_FLIGHT;
/// How long a request may take, from being sent to being answered, unless
/// the pool's [`PoolConfig::request_timeout`](crate::PoolConfig) says
/// otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests kept outstanding on a link whose round trip is under a
/// millisecond (see the module docs).
pub const SHORT_LINK_DEPTH: usize = 2;

/// Requests to keep outstanding on a link whose round trip is `rtt`:
/// [`SHORT_LINK_DEPTH`] under a millisecond, one more per millisecond
/// beyond, at most `max` (and at least 1). Nothing measured yet: `max`.
pub fn pipeline_depth(rtt: Option<Duration>, max: usize) -> usize {
    let max = max.max(1);
    let Some(rtt) = rtt else {
        return max;
    };
    let extra = usize::try_from(rtt.as_millis()).unwrap_or(usize::MAX);
    SHORT_LINK_DEPTH.saturating_add(extra).min(max)
}

/// A storage server as membership knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRef {
    /// Its node id (and so its session key).
    pub id: NodeId,
    /// Where its sessions listen.
    pub addr: SocketAddr,
}

impl Placed for ServerRef {
    fn node_id(&self) -> NodeId {
        self.id
    }
}

/// Who the client is, for opening sessions.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Its identity.
    pub identity: Arc<Identity>,
    /// Its signed record (presented in handshakes).
    pub record: SignedRecord,
    /// Session settings.
    pub session: SessionConfig,
}

/// One session to one server, carrying pipelined requests.
#[derive(Debug)]
pub struct Conn {
    server: ServerRef,
    session: Session<TcpStream>,
    next_id: u32,
    /// Outstanding requests, oldest first.
    in_flight: VecDeque<Outstanding>,
    request_timeout: Duration,
    max_in_flight: usize,
    /// The round trip of late: the handshake's, then the answers' to
    /// requests sent alone.
    round_trip: RoundTrip,
    broken: bool,
    /// Handed out by the pool from its idle list, and nothing answered on
    /// it since: if it fails now, the server probably closed it while it
    /// was idle (see `SessionPool::call`).
    pub(crate) reused: bool,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A request sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    id: u32,
    sent: Instant,
    /// When its answer must have arrived.
    deadline: Instant,
    /// Nothing else was outstanding when it was sent: its answer's time is
    /// the link's round trip, not a wait behind other requests.
    alone: bool,
}

impl Conn {
    /// Open a session to `server` (outside any pool), its requests
    /// answered within [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// # Errors
    /// [`ClientError::Session`] if it cannot be reached or authenticated.
    pub async fn open(me: &ClientIdentity, server: ServerRef) -> Result<Self, ClientError> {
        let err = |e| ClientError::Session(server.id.short(), e);
        let opening = Instant::now();
        let stream = tokio::time::timeout(
            me.session.handshake_timeout,
            TcpStream::connect(server.addr),
        )
        .await
        .map_err(|_| err(SessionError::HandshakeTimeout))?
        .map_err(|e| err(SessionError::Io(e)))?;
        let _ = stream.set_nodelay(true);
        // A storage session carries storage messages only: nothing larger
        // than the protocol's largest is accepted from the server.
        let cfg = SessionConfig {
            max_message: MAX_MESSAGE,
            ..me.session.clone()
        };
        let (session, _) = Session::connect(stream, &me.identity, &me.record, server.id, &cfg)
            .await
            .map_err(err)?;
        Ok(Conn {
            server,
            session,
            next_id: 1,
            in_flight: VecDeque::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: MAX_IN_FLIGHT,
            // The connection and the handshake: at least a round trip.
            round_trip: RoundTrip::new(opening.elapsed(), Instant::now()),
            broken: false,
            reused: false,
            _slot: None,
        })
    }

    /// Attach a pool slot, released when the connection is dropped.
    pub(crate) fn with_slot(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }

    /// Give the pool slot back now (the session is dead and about to be
    /// replaced).
    pub(crate) fn release_slot(&mut self) {
        self._slot = None;
    }

    /// Answer every request within `timeout` of sending it.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Keep at most `n` requests outstanding (at least 1) where the
    /// client pipelines them.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Requests the client keeps outstanding on this session at most
    /// ([`MAX_IN_FLIGHT`] unless the pool's memory budget says fewer).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// This session's round trip of late: the shortest of the last one to
    /// two [`ROUND_TRIP_WINDOW`](super::ROUND_TRIP_WINDOW)s among its
    /// opening (the connection and the handshake) and the answers to
    /// requests sent while nothing else was outstanding, from sending the
    /// request to its answer.
    pub fn round_trip(&self) -> Duration {
        self.round_trip.estimate()
    }

    /// Windows of `window` for the round trip (tests).
    #[cfg(test)]
    pub(crate) fn with_round_trip_window(mut self, window: Duration) -> Self {
        self.round_trip = self.round_trip.with_window(window);
        self
    }

    /// Requests to keep outstanding where the client pipelines them: as
    /// [`pipeline_depth`] says for this link, at most
    /// [`Conn::max_in_flight`].
    pub fn depth(&self) -> usize {
        pipeline_depth(Some(self.round_trip()), self.max_in_flight)
    }

    /// The server this connection talks to.
    pub fn server(&self) -> ServerRef {
        self.server
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the session can be reused: nothing failed and nothing is
    /// outstanding.
    pub fn is_reusable(&self) -> bool {
        !self.broken && self.in_flight.is_empty()
    }

    /// Whether a request on it failed (a deadline passed, the session
    /// broke, the server spoke out of protocol): every further request
    /// fails at once, never waiting a second deadline.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Broken(self.server.id.short()));
        }
        Ok(())
    }

    fn session_err(&mut self, e: SessionError) -> ClientError {
        self.broken = true;
        ClientError::Session(self.server.id.short(), e)
    }

    fn timed_out(&mut self) -> ClientError {
        // The session may be mid-message: it can never be used again.
        self.broken = true;
        tracing::warn!(server = %self.server.id.short(), "request deadline passed");
        ClientError::Timeout(self.server.id.short())
    }

    async fn send_parts(&mut self, id: u32, parts: &[&[u8]]) -> Result<(), ClientError> {
        self.check_usable()?;
        let sent = Instant::now();
        let deadline = sent + self.request_timeout;
        match tokio::time::timeout_at(deadline, self.session.send_parts(parts)).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(self.session_err(e)),
            Ok(Ok(())) => {}
        }
        self.in_flight.push_back(Outstanding {
            id,
            sent,
            deadline,
            alone: self.in_flight.is_empty(),
        });
        Ok(())
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        // Id 0 is the server's answer to a message it could not read at all.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Send a request without waiting for its answer.
    ///
    /// # Errors
    /// [`ClientError::Session`], or [`ClientError::Timeout`] if the server
    /// does not take it within the deadline.
    pub async fn send(&mut self, req: Request) -> Result<(), ClientError> {
        let id = self.take_id();
        self.send_parts(id, &[&encode(&RequestMsg::new(id, req))])
            .await
    }

    /// Send a write of `data` (at most [`MAX_WRITE`](crate::protocol::MAX_WRITE)
    /// bytes) without copying it into a request first, and without waiting
    /// for its answer.
    ///
    /// # Errors
    /// As [`Conn::send`].
    pub async fn send_write(
        &mut self,
        si: StorageIndex,
        shnum: u16,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let id = self.take_id();
        let head = write_header(id, si, shnum, offset, data.len());
        self.send_parts(id, &[&head, data]).await
    }

    /// Receive the answer to the oldest outstanding request.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] past its deadline; [`ClientError::Session`];
    /// [`ClientError::Protocol`] (an answer when nothing was asked, to
    /// another request, in a newer protocol version, or of a kind this
    /// release does not know); [`ClientError::Server`] for an error reply.
    pub async fn recv(&mut self) -> Result<Reply<Bytes>, ClientError> {
        self.recv_expecting(0).await
    }

    /// [`Conn::recv`] of an answer expected to be about `expect` bytes on
    /// the wire (a hint for the receive buffer's size:
    /// [`Session::recv_expecting`](grapevine_crypto::session::Session::recv_expecting)).
    async fn recv_expecting(&mut self, expect: usize) -> Result<Reply<Bytes>, ClientError> {
        self.check_usable()?;
        let name = self.server.id.short();
        let Some(&Outstanding {
            id,
            sent,
            deadline,
            alone,
        }) = self.in_flight.front()
        else {
            return Err(ClientError::Protocol(name, "no request outstanding".into()));
        };
        let recv = self.session.recv_expecting(expect);
        let bytes = match tokio::time::timeout_at(deadline, recv).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(self.session_err(e)),
            Ok(Ok(b)) => b,
        };
        self.in_flight.pop_front();
        if alone {
            let now = Instant::now();
            self.round_trip.observe(now - sent, now);
        }
        // Read bytes stay where they arrived: the reply refers to them by
        // range, then shares the message buffer.
        let base = bytes.as_ptr() as usize;
        let resp = match decode_borrowed::<ResponseMsg<&[u8]>>(&bytes) {
            Ok(r) => ResponseMsg {
                version: r.version,
                id: r.id,
                reply: r.reply.map_data(|d| (d.as_ptr() as usize - base, d.len())),
            },
            Err(e) => {
                self.broken = true;
                return Err(ClientError::Protocol(name, e));
            }
        };
        if resp.id != id || resp.version > PROTOCOL_VERSION {
            self.broken = true;
            return Err(ClientError::Protocol(
                name,
                format!(
                    "response id {} version {} for request {id} version {PROTOCOL_VERSION}",
                    resp.id, resp.version
                ),
            ));
        }
        self.reused = false;
        let bytes = Bytes::from(bytes);
        match resp.reply.map_data(|(at, len)| bytes.slice(at..at + len)) {
            Reply::Error { code, message } => Err(ClientError::Server {
                server: name,
                code,
                message,
            }),
            r => Ok(r),
        }
    }

    /// Send a request and wait for its answer (after any outstanding ones).
    ///
    /// # Errors
    /// As [`Conn::send`] and [`Conn::recv`].
    pub async fn call(&mut self, req: Request) -> Result<Reply<Bytes>, ClientError> {
        self.send(req).await?;
        while self.in_flight.len() > 1 {
            self.recv().await?;
        }
        self.recv().await
    }

    /// Receive the answer to an outstanding read of `len` bytes.
    pub(crate) async fn recv_data(&mut self, len: u64) -> Result<Bytes, ClientError> {
        // The data and the reply's few bytes of framing (version, id, kind,
        // length).
        let expect = usize::try_from(len).map_or(0, |l| l.saturating_add(DATA_HEADER_MAX));
        match self.recv_expecting(expect).await? {
            Reply::Data(d) if d.len() as u64 == len => Ok(d),
            other => {
                self.broken = true;
                Err(ClientError::Protocol(
                    self.server.id.short(),
                    format!("expected {len} bytes, got {}", describe(&other)),
                ))
            }
        }
    }

    /// Receive the answer to an outstanding write or close.
    pub(crate) async fn recv_ok(&mut self) -> Result<(), ClientError> {
        match self.recv().await? {
            Reply::Ok => Ok(()),
            other => {
                self.broken = true;
                Err(ClientError::Protocol(
                    self.server.id.short(),
                    describe(&other),
                ))
            }
        }
    }

    /// Read `len` bytes of a share from `offset`, all chunks pipelined.
    pub(crate) async fn read(
        &mut self,
        si: StorageIndex,
        shnum: u16,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        // A server states sizes; never pre-allocate more than one read's
        // worth on its word.
        let mut out = Vec::with_capacity(len.min(MAX_READ as u64) as usize);
        let mut asked = 0u64;
        let mut chunks = VecDeque::new();
        while (out.len() as u64) < len {
            while asked < len && self.in_flight.len() < self.depth() {
                let chunk = (len - asked).min(MAX_READ as u64) as u32;
                let at = offset.checked_add(asked).ok_or_else(|| {
                    ClientError::Protocol(self.server.id.short(), "read past 2^64".into())
                })?;
                self.send(Request::Read {
                    si,
                    shnum,
                    offset: at,
                    len: chunk,
                })
                .await?;
                chunks.push_back(chunk as u64);
                asked += chunk as u64;
            }
            let chunk = chunks.pop_front().expect("a read is outstanding");
            out.extend_from_slice(&self.recv_data(chunk).await?);
        }
        Ok(out)
    }
}

/// A short description of a reply (never its payload).
fn describe(r: &Reply<Bytes>) -> String {
    match r {
        Reply::Data(d) => format!("{} bytes of data", d.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::{decode, ErrorCode};
    use grapevine_crypto::record::LocationRecord;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use tokio::net::TcpListener;

    /// A client identity for tests.
    pub(crate) fn me() -> ClientIdentity {
        let identity = Arc::new(Identity::generate());
        let record = LocationRecord::new(&identity, vec!["127.0.0.1:1".parse().unwrap()])
            .sign(&identity)
            .unwrap();
        ClientIdentity {
            identity,
            record,
            session: SessionConfig::default(),
        }
    }

    /// A hand-driven server: it completes the handshake, then gives each
    /// request it receives to `answer`, which says what to send back (or
    /// nothing: the request is never answered).
    pub(crate) async fn scripted_server(
        answer: impl Fn(RequestMsg) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> ServerRef {
        scripted_server_behind(Duration::ZERO, answer).await
    }

    /// [`scripted_server`] at the far end of a link of `delay`: it waits
    /// that long before its handshake answers and before each answer.
    pub(crate) async fn scripted_server_behind(
        delay: Duration,
        answer: impl Fn(RequestMsg) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> ServerRef {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        scripted_server_delayed(Arc::new(AtomicU64::new(micros)), answer).await
    }

    /// [`scripted_server_behind`] a link whose delay, in microseconds, is
    /// whatever `delay` holds when the handshake or a request arrives (a
    /// test changes it: a link that slows).
    pub(crate) async fn scripted_server_delayed(
        delay: Arc<AtomicU64>,
        answer: impl Fn(RequestMsg) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> ServerRef {
        let delay_now = move || Duration::from_micros(delay.load(Relaxed));
        let id = Arc::new(Identity::generate());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = LocationRecord::new(&id, vec![addr]).sign(&id).unwrap();
        let server = ServerRef {
            id: id.node_id(),
            addr,
        };
        tokio::spawn(async move {
            let answer = Arc::new(answer);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (id, rec, answer) = (id.clone(), rec.clone(), answer.clone());
                let delay_now = delay_now.clone();
                tokio::spawn(async move {
                    let cfg = SessionConfig::default();
                    tokio::time::sleep(delay_now()).await;
                    let Ok((mut s, _)) = Session::accept(stream, &id, &rec, &cfg).await else {
                        return;
                    };
                    while let Ok(m) = s.recv().await {
                        let req: RequestMsg = decode(&m).expect("a request");
                        tokio::time::sleep(delay_now()).await;
                        if let Some(out) = answer(req) {
                            if s.send(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    /// Guard against a hang: a test whose client never returns fails.
    pub(crate) async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("the client hung instead of failing")
    }

    /// Two requests outstanding on a link under a millisecond, one more per
    /// millisecond of round trip, up to the budget's; the budget's before
    /// anything was measured.
    #[test]
    fn the_depth_follows_the_round_trip() {
        let ms = Duration::from_millis;
        assert_eq!(pipeline_depth(Some(Duration::from_micros(80)), 8), 2);
        assert_eq!(pipeline_depth(Some(Duration::from_micros(999)), 8), 2);
        assert_eq!(pipeline_depth(Some(ms(1)), 8), 3);
        assert_eq!(pipeline_depth(Some(ms(4)), 8), 6);
        assert_eq!(pipeline_depth(Some(ms(50)), 8), 8);
        assert_eq!(pipeline_depth(Some(Duration::MAX), 8), 8);
        assert_eq!(pipeline_depth(None, 8), 8);
        // A small budget's depth is its own, however long the link.
        assert_eq!(pipeline_depth(Some(ms(50)), 2), 2);
        assert_eq!(pipeline_depth(Some(Duration::ZERO), 1), 1);
        assert_eq!(pipeline_depth(None, 0), 1);
    }

    /// A connection's round trip starts at its opening: across a 20 ms
    /// link that is at least 20 ms and the session pipelines as deep as
    /// the budget allows; a nearer server's answers bring it down to what
    /// an answer took.
    #[tokio::test]
    async fn a_connection_measures_its_round_trip() {
        let ok = |r: RequestMsg| Some(encode(&ResponseMsg::new(1, r.id, Reply::<Vec<u8>>::Ok)));
        let far = scripted_server_behind(Duration::from_millis(20), ok).await;
        let mut c = bounded(Conn::open(&me(), far)).await.unwrap();
        assert!(c.round_trip() >= Duration::from_millis(20));
        assert!(matches!(
            bounded(c.call(Request::Version)).await,
            Ok(Reply::Ok)
        ));
        assert!(c.round_trip() >= Duration::from_millis(20));
        assert_eq!(c.depth(), MAX_IN_FLIGHT);
        let c = c.with_max_in_flight(3);
        assert_eq!(c.depth(), 3, "never deeper than the budget");

        let near = scripted_server(ok).await;
        let mut c = bounded(Conn::open(&me(), near)).await.unwrap();
        let opened = c.round_trip();
        let start = Instant::now();
        assert!(matches!(
            bounded(c.call(Request::Version)).await,
            Ok(Reply::Ok)
        ));
        let took = start.elapsed();
        let now = c.round_trip();
        assert!(now <= opened && now <= took, "{now:?} {opened:?} {took:?}");
        assert_eq!(c.depth(), pipeline_depth(Some(now), MAX_IN_FLIGHT));
    }

    fn answer_ok(r: RequestMsg) -> Option<Vec<u8>> {
        Some(encode(&ResponseMsg::new(1, r.id, Reply::<Vec<u8>>::Ok)))
    }

    /// A pooled session whose link slows from loopback to 20 ms deepens
    /// its pipeline within two windows of the round trip (50 ms here), not
    /// never: the shortest round trip of its life would keep it as shallow
    /// as the fast link wanted.
    #[tokio::test]
    async fn the_depth_follows_a_link_that_slows() {
        let delay = Arc::new(AtomicU64::new(0));
        let server = scripted_server_delayed(delay.clone(), answer_ok).await;
        let c = bounded(Conn::open(&me(), server)).await.unwrap();
        let mut c = c.with_round_trip_window(Duration::from_millis(50));
        assert!(matches!(
            bounded(c.call(Request::Version)).await,
            Ok(Reply::Ok)
        ));
        let fast = c.round_trip();
        delay.store(20_000, Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.round_trip() < Duration::from_millis(20) && Instant::now() < deadline {
            assert!(matches!(
                bounded(c.call(Request::Version)).await,
                Ok(Reply::Ok)
            ));
        }
        let slow = c.round_trip();
        assert!(slow >= Duration::from_millis(20), "{fast:?} then {slow:?}");
        assert_eq!(c.depth(), pipeline_depth(Some(slow), MAX_IN_FLIGHT));
        assert!(c.depth() > pipeline_depth(Some(fast), MAX_IN_FLIGHT));
    }

    /// Answers to pipelined requests are not round trips: they also waited
    /// behind the requests before them. A stream that keeps four requests
    /// outstanding through many windows, each answer 5 ms after the one
    /// before (so 20 ms after it was sent), leaves the round trip where the
    /// stream's first request (sent alone) put it; counting the others
    /// would deepen the pipeline and lengthen the wait in turn.
    #[tokio::test]
    async fn answers_that_waited_behind_others_are_not_round_trips() {
        let server = scripted_server_behind(Duration::from_millis(5), answer_ok).await;
        let c = bounded(Conn::open(&me(), server)).await.unwrap();
        let mut c = c.with_round_trip_window(Duration::from_millis(30));
        for _ in 0..4 {
            c.send(Request::Version).await.unwrap();
        }
        // The first was sent alone: its answer counts.
        bounded(c.recv()).await.unwrap();
        let alone = c.round_trip();
        c.send(Request::Version).await.unwrap();
        // 40 answers at 5 ms each: 200 ms, several windows.
        for _ in 0..40 {
            bounded(c.recv()).await.unwrap();
            assert_eq!(
                c.round_trip(),
                alone,
                "a queued answer became the round trip"
            );
            c.send(Request::Version).await.unwrap();
        }
        for _ in 0..4 {
            bounded(c.recv()).await.unwrap();
        }
        assert_eq!(c.round_trip(), alone);
    }

    /// A server that takes requests and never answers costs one deadline,
    /// and the session is not reused.
    #[tokio::test]
    async fn a_request_never_answered_fails_at_its_deadline() {
        let silent = scripted_server(|_| None).await;
        let mut c = Conn::open(&me(), silent)
            .await
            .unwrap()
            .with_request_timeout(Duration::from_millis(300));
        let r = bounded(c.call(Request::Version)).await;
        assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
        assert!(!c.is_reusable());
        // Pipelined requests each have their own deadline, from their
        // own sending.
        let mut c = Conn::open(&me(), silent)
            .await
            .unwrap()
            .with_request_timeout(Duration::from_millis(300));
        let before_sending = Instant::now();
        for _ in 0..3 {
            c.send(Request::Version).await.unwrap();
        }
        assert!(matches!(
            bounded(c.recv()).await,
            Err(ClientError::Timeout(_))
        ));
        assert!(before_sending.elapsed() >= Duration::from_millis(300));
    }

    /// What a client does with replies it does not expect: an error code
    /// from a newer server is a failed request (the session goes on); a
    /// reply in a newer version, of an unknown kind or to another request
    /// is a protocol error, and the session is dropped.
    #[tokio::test]
    async fn unknown_codes_fail_the_request_and_out_of_protocol_replies_the_session() {
        let reply = |r: RequestMsg, version: u8, kind: Option<u8>| {
            let mut out = encode(&ResponseMsg::new(
                version,
                r.id,
                match r.req {
                    Request::Version => Reply::<Vec<u8>>::Error {
                        code: ErrorCode::Unknown(99),
                        message: "newer".into(),
                    },
                    _ => Reply::Ok,
                },
            ));
            if let Some(k) = kind {
                out.truncate(2);
                out.push(k);
            }
            Some(out)
        };
        let newer_code = scripted_server(move |r| reply(r, 1, None)).await;
        let mut c = Conn::open(&me(), newer_code).await.unwrap();
        assert!(matches!(
            bounded(c.call(Request::Version)).await,
            Err(ClientError::Server {
                code: ErrorCode::Unknown(99),
                ..
            })
        ));
        assert!(c.is_reusable());
        assert!(matches!(
            bounded(c.call(Request::List {
                si: StorageIndex([0; 16])
            }))
            .await,
            Ok(Reply::Ok)
        ));
        for (version, kind) in [(2, None), (1, Some(9))] {
            let s = scripted_server(move |r| reply(r, version, kind)).await;
            let mut c = Conn::open(&me(), s).await.unwrap();
            let r = bounded(c.call(Request::List {
                si: StorageIndex([0; 16]),
            }))
            .await;
            assert!(matches!(r, Err(ClientError::Protocol(..))), "{r:?}");
            assert!(!c.is_reusable());
        }
        let wrong_id =
            scripted_server(|r| Some(encode(&ResponseMsg::new(1, r.id + 1, Reply::<Vec<u8>>::Ok))))
                .await;
        let mut c = Conn::open(&me(), wrong_id).await.unwrap();
        let r = bounded(c.call(Request::Version)).await;
        assert!(matches!(r, Err(ClientError::Protocol(..))), "{r:?}");
    }
}
