//! The tokio driver: one task per node that owns its UDP socket and its
//! [`Swim`] core, and `select!`s over the socket, the core's next timer and
//! commands from [`MembershipHandle`]s. It is the only place that reads
//! clocks and the OS's entropy: the core's RNG is seeded from the OS (peers
//! cannot predict its probe order or hash keys), and the wall clock is
//! passed in whenever timers run.
//!
//! A node that keeps the last number it signed on disk (so its next run
//! signs above it whatever its clock says) gets each new one through
//! [`RunOptions::on_signed`] before anything signed with it is sent; a
//! restarting node hands in the records of the members it knew
//! ([`RunOptions::known`], its peer cache) and rejoins through them as
//! well as through its seeds.
//!
//! Datagrams are read before timers, so an ack that has arrived is handled
//! before the timer that would count it missing; but at most
//! [`TIMER_BATCH`] in a row while a timer is due, so an endless stream of
//! datagrams (within rate limits, from many addresses) cannot starve the
//! probe, suspicion and sync timers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use grapevine_crypto::{Identity, NodeId, SignedRecord};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::MembershipError;
use crate::swim::{Config, Event, MemberState, MemberView, Stats, Swim};
use crate::wire::MAX_DATAGRAM;

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's identity.
    pub identity: Arc<Identity>,
    /// Its signed record (its addresses must include the socket's).
    pub record: SignedRecord,
    /// Seeds to join through (empty for the first node of a grid).
    pub seeds: Vec<SocketAddr>,
    /// Protocol tunables.
    pub swim: Config,
    /// Where to also send (observer, event) for every state change, for
    /// harnesses that watch many nodes at once.
    pub state_sink: Option<mpsc::UnboundedSender<(NodeId, Event)>>,
}

/// Figures a node keeps current for cheap polling (no round trip to the
/// node's task).
#[derive(Debug, Default)]
pub struct Counters {
    /// Records held (including its own).
    pub records: AtomicU64,
    /// Other members alive.
    pub alive: AtomicU64,
    /// Other members suspect.
    pub suspect: AtomicU64,
    /// Other members dead.
    pub dead: AtomicU64,
    /// Other members that left.
    pub left: AtomicU64,
    /// Datagrams sent.
    pub datagrams_sent: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Datagrams received.
    pub datagrams_received: AtomicU64,
    /// Bytes received.
    pub bytes_received: AtomicU64,
    /// Largest datagram sent.
    pub max_datagram: AtomicU64,
    /// Datagrams that could not be sent.
    pub send_errors: AtomicU64,
    /// Cookies issued (each a datagram of its own).
    pub cookies_issued: AtomicU64,
    /// Probes started (one per probe period with a member to probe: the
    /// configured period unless stretched by local health or round trips).
    pub probes: AtomicU64,
    /// Datagrams handed to the [`Passthrough`].
    pub passed_through: AtomicU64,
    /// Datagrams for the [`Passthrough`] it did not take (too many at once).
    pub passthrough_dropped: AtomicU64,
}

/// Called with the highest sequence number or incarnation the core has
/// just signed, before anything signed with it is sent (see
/// [`RunOptions::on_signed`]).
pub type SignedHook = Arc<dyn Fn(u64) -> std::io::Result<()> + Send + Sync>;

/// How a node runs beyond what it is ([`NodeConfig`]): its clock, what it
/// remembers from a previous run, and who keeps what it signs.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Added to the system's wall clock, milliseconds (0 in production; a
    /// test runs a node whose clock is behind or ahead with it).
    pub clock_skew_ms: i64,
    /// Records of members known from a previous run (the peer cache), each
    /// verified by the caller: they become members, and the node joins
    /// through up to eight of them besides its seeds ([`Swim::rejoin_via`]).
    pub known: Vec<SignedRecord>,
    /// Called (on the blocking pool) with each new highest number the core
    /// signs (a record signed again above a previous life's, a refutation)
    /// and awaited before the datagrams that carry it are sent, so a node
    /// can keep it durably. An error is logged; the datagrams go all the
    /// same (the node would otherwise be declared dead), and a later run
    /// that signs lower is made to sign above by the grid (its previous
    /// record comes back to it).
    pub on_signed: Option<SignedHook>,
    /// Where datagrams of another protocol sharing the node's socket go
    /// (see [`Passthrough`]); without it they are handed to the core,
    /// which drops them.
    pub passthrough: Option<Passthrough>,
}

/// Takes a datagram of another protocol from the driver (see
/// [`Passthrough`]): called on the driver's task with the datagram, its
/// source and when it was read. It must not wait. Returns whether it took
/// the datagram (false: dropped, and counted as such).
pub type PassthroughSink = Arc<dyn Fn(&[u8], SocketAddr, std::time::Instant) -> bool + Send + Sync>;

/// Datagrams of another protocol on the node's socket: those starting
/// with `first_byte` (never a membership datagram's: those start with
/// the wire version, [`crate::wire::WIRE_VERSION`]) are given to `sink` as
/// they are read, instead of to the core. The sink never makes the driver
/// wait (it takes the datagram or drops it, counted in
/// [`Counters::passed_through`] and [`Counters::passthrough_dropped`]).
/// Answers go out through [`MembershipHandle::socket`].
#[derive(Clone)]
pub struct Passthrough {
    /// The first byte of the other protocol's datagrams.
    pub first_byte: u8,
    /// What takes them.
    pub sink: PassthroughSink,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("first_byte", &self.first_byte)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("clock_skew_ms", &self.clock_skew_ms)
            .field("known", &self.known.len())
            .field("on_signed", &self.on_signed.is_some())
            .field("passthrough", &self.passthrough)
            .finish()
    }
}

enum Command {
    Members(oneshot::Sender<Vec<MemberView>>),
    Stats(oneshot::Sender<Stats>),
    States(Vec<NodeId>, oneshot::Sender<Vec<Option<MemberState>>>),
    UpdateRecord(SignedRecord),
    SetSeeds(Vec<SocketAddr>),
    Leave(oneshot::Sender<()>),
}

/// A handle to a running node. Dropping every handle stops the node
/// abruptly (as a crash would); [`MembershipHandle::leave`] stops it
/// gracefully.
#[derive(Debug, Clone)]
pub struct MembershipHandle {
    id: NodeId,
    local_addr: SocketAddr,
    cmds: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    events: broadcast::Sender<Event>,
    own: watch::Receiver<SignedRecord>,
    socket: Arc<UdpSocket>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl MembershipHandle {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The socket address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's socket, for a protocol sharing it ([`Passthrough`]) to
    /// send its answers from the address its queries came to.
    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// The node's own record as the membership core holds it now: the one
    /// it was started or updated with, or one the core signed itself (above
    /// a copy of a previous life's record, or at the grid's time).
    pub fn own_record(&self) -> SignedRecord {
        self.own.borrow().clone()
    }

    /// Figures kept current by the node.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// A stream of membership events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(f(tx))
            .await
            .map_err(|_| MembershipError::Stopped)?;
        rx.await.map_err(|_| MembershipError::Stopped)
    }

    /// Every other member as this node sees it.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node has stopped.
    pub async fn members(&self) -> Result<Vec<MemberView>, MembershipError> {
        self.ask(Command::Members).await
    }

    /// Traffic and decision counters.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node has stopped.
    pub async fn stats(&self) -> Result<Stats, MembershipError> {
        self.ask(Command::Stats).await
    }

    /// The state of each of `ids` as this node sees it.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node has stopped.
    pub async fn states(
        &self,
        ids: Vec<NodeId>,
    ) -> Result<Vec<Option<MemberState>>, MembershipError> {
        self.ask(|tx| Command::States(ids, tx)).await
    }

    /// Publish a newer version of this node's record.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node has stopped.
    pub async fn update_record(&self, record: SignedRecord) -> Result<(), MembershipError> {
        self.cmds
            .send(Command::UpdateRecord(record))
            .await
            .map_err(|_| MembershipError::Stopped)
    }

    /// Replace the seeds the node joins through (host names resolved by the
    /// caller); a node that knows no one yet joins through them at once.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node has stopped.
    pub async fn set_seeds(&self, seeds: Vec<SocketAddr>) -> Result<(), MembershipError> {
        self.cmds
            .send(Command::SetSeeds(seeds))
            .await
            .map_err(|_| MembershipError::Stopped)
    }

    /// Leave the grid gracefully: tell members, then stop the node.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node had already stopped.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        self.ask(Command::Leave).await
    }
}

/// Datagrams handled in a row, at most, while a timer is due.
pub const TIMER_BATCH: u32 = 64;

/// The wall clock in milliseconds since the Unix epoch, `skew_ms` added
/// (saturating at both ends).
#[allow(clippy::disallowed_methods)] // the driver is where clocks are read
pub fn unix_ms(skew_ms: i64) -> u64 {
    let sys = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let t = i128::try_from(sys)
        .unwrap_or(i128::MAX)
        .saturating_add(i128::from(skew_ms));
    u64::try_from(t.max(0)).unwrap_or(u64::MAX)
}

/// Start a node on `socket`, its core's RNG seeded from the OS; it runs
/// until [`MembershipHandle::leave`] or until every handle is dropped.
///
/// # Errors
/// [`MembershipError::Io`] if the socket has no local address.
pub fn spawn(socket: UdpSocket, cfg: NodeConfig) -> Result<MembershipHandle, MembershipError> {
    spawn_with(socket, cfg, RunOptions::default())
}

/// [`spawn`], with a clock skew, a peer cache and a keeper of signed
/// numbers ([`RunOptions`]).
///
/// # Errors
/// [`MembershipError::Io`] if the socket has no local address.
pub fn spawn_with(
    socket: UdpSocket,
    cfg: NodeConfig,
    run: RunOptions,
) -> Result<MembershipHandle, MembershipError> {
    let local_addr = socket.local_addr()?;
    let socket = Arc::new(socket);
    let id = cfg.identity.node_id();
    let now = self::now();
    #[allow(clippy::disallowed_methods)] // the driver seeds the core from the OS
    let rng = SmallRng::from_entropy();
    let (own_tx, own) = watch::channel(cfg.record.clone());
    let mut swim = Swim::new(cfg.identity, cfg.record, cfg.seeds, cfg.swim, rng, now);
    swim.set_wall_clock(now, unix_ms(run.clock_skew_ms));
    if !run.known.is_empty() {
        swim.rejoin_via(run.known, now);
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let counters = Arc::new(Counters::default());
    let (events, _) = broadcast::channel(256);
    let handle = MembershipHandle {
        id,
        local_addr,
        cmds: cmd_tx,
        counters: counters.clone(),
        events: events.clone(),
        own,
        socket: socket.clone(),
    };
    let driver = Driver {
        socket,
        swim,
        cmds: cmd_rx,
        counters,
        events,
        sink: cfg.state_sink,
        skew_ms: run.clock_skew_ms,
        on_signed: run.on_signed,
        own: own_tx,
        passthrough: run.passthrough,
    };
    tokio::spawn(driver.run());
    Ok(handle)
}

struct Driver {
    socket: Arc<UdpSocket>,
    swim: Swim,
    cmds: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    events: broadcast::Sender<Event>,
    sink: Option<mpsc::UnboundedSender<(NodeId, Event)>>,
    skew_ms: i64,
    on_signed: Option<SignedHook>,
    own: watch::Sender<SignedRecord>,
    passthrough: Option<Passthrough>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    async fn flush(&mut self) {
        // What was just signed is kept before anything carrying it goes.
        let signed = self.swim.poll_signed();
        if let (Some(n), Some(hook)) = (signed, self.on_signed.clone()) {
            match tokio::task::spawn_blocking(move || hook(n)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("cannot keep the number just signed ({n}): {e}")
                }
                Err(e) => tracing::error!("keeping the number just signed ({n}): {e}"),
            }
        }
        while let Some((to, bytes)) = self.swim.poll_transmit() {
            if let Err(e) = self.socket.send_to(&bytes, to).await {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%to, "send failed: {e}");
            }
        }
        let me = self.swim.id();
        if signed.is_some() {
            if let Some(rec) = self.swim.records().get(&me) {
                if rec.seq() != self.own.borrow().seq() {
                    self.own.send_replace(rec.clone());
                }
            }
        }
        while let Some(e) = self.swim.poll_event() {
            if let (Some(sink), Event::StateChanged { .. }) = (&self.sink, &e) {
                let _ = sink.send((me, e.clone()));
            }
            let _ = self.events.send(e);
        }
        let st = self.swim.stats();
        let c = &self.counters;
        let (alive, suspect, dead, left) = self.swim.state_counts();
        c.records
            .store(self.swim.records().len() as u64, Ordering::Relaxed);
        c.alive.store(alive as u64, Ordering::Relaxed);
        c.suspect.store(suspect as u64, Ordering::Relaxed);
        c.dead.store(dead as u64, Ordering::Relaxed);
        c.left.store(left as u64, Ordering::Relaxed);
        c.datagrams_sent.store(st.datagrams_sent, Ordering::Relaxed);
        c.bytes_sent.store(st.bytes_sent, Ordering::Relaxed);
        c.datagrams_received
            .store(st.datagrams_received, Ordering::Relaxed);
        c.bytes_received.store(st.bytes_received, Ordering::Relaxed);
        c.max_datagram
            .store(st.max_datagram as u64, Ordering::Relaxed);
        c.cookies_issued.store(st.cookies_issued, Ordering::Relaxed);
        c.probes.store(st.probes, Ordering::Relaxed);
    }

    fn handle_timeout(&mut self) {
        let now = now();
        self.swim.set_wall_clock(now, unix_ms(self.skew_ms));
        self.swim.handle_timeout(now);
    }

    /// Hand a datagram to the [`Passthrough`] its first byte names, else
    /// to the core.
    fn handle_datagram(&mut self, from: SocketAddr, d: &[u8]) {
        if let Some(p) = &self.passthrough {
            if d.first() == Some(&p.first_byte) {
                let counter = if (p.sink)(d, from, now()) {
                    &self.counters.passed_through
                } else {
                    &self.counters.passthrough_dropped
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.swim.handle_datagram(now(), from, d);
    }

    async fn run(mut self) {
        let mut buf = [0u8; MAX_DATAGRAM + 100];
        // Datagrams handled since timers last ran.
        let mut in_a_row = 0u32;
        loop {
            self.flush().await;
            let due = self.swim.poll_timeout();
            if in_a_row >= TIMER_BATCH && now() >= due {
                // The socket has kept us busy past a due timer: run it
                // before reading on.
                self.handle_timeout();
                in_a_row = 0;
                continue;
            }
            let deadline = tokio::time::Instant::from_std(due);
            // Biased: commands, then the socket, then timers. A datagram
            // already waiting (an ack) is handled before a timer that would
            // count it as missing, so a node starved of CPU does not accuse
            // peers that answered in time; the batch bound above keeps a
            // stream of datagrams from delaying timers for longer than
            // TIMER_BATCH datagrams take.
            tokio::select! {
                biased;
                cmd = self.cmds.recv() => match cmd {
                    None => return,
                    Some(Command::Members(tx)) => { let _ = tx.send(self.swim.members()); }
                    Some(Command::Stats(tx)) => { let _ = tx.send(self.swim.stats()); }
                    Some(Command::States(ids, tx)) => {
                        let _ = tx.send(ids.iter().map(|id| self.swim.state_of(id)).collect());
                    }
                    Some(Command::UpdateRecord(r)) => self.swim.update_record(r, now()),
                    Some(Command::SetSeeds(s)) => self.swim.set_seeds(s, now()),
                    Some(Command::Leave(tx)) => {
                        self.swim.leave(now());
                        self.flush().await;
                        let _ = tx.send(());
                        return;
                    }
                },
                r = self.socket.recv_from(&mut buf) => {
                    in_a_row = in_a_row.saturating_add(1);
                    match r {
                        Ok((n, from)) => self.handle_datagram(from, &buf[..n]),
                        Err(e) => tracing::debug!("recv failed: {e}"),
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.handle_timeout();
                    in_a_row = 0;
                }
            }
        }
    }
}

/// Bind `addr` (port 0 picks one), sign a record for it and start a node
/// (see [`spawn`]). The record's sequence number is the current Unix time in
/// milliseconds, so a restarted node's record replaces its previous one.
///
/// # Errors
/// Socket or record errors.
pub async fn start_local(
    addr: SocketAddr,
    identity: Arc<Identity>,
    nickname: Option<String>,
    seeds: Vec<SocketAddr>,
    swim: Config,
    state_sink: Option<mpsc::UnboundedSender<(NodeId, Event)>>,
) -> Result<MembershipHandle, MembershipError> {
    let socket = UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let mut rec = grapevine_crypto::LocationRecord::new(&identity, vec![local]);
    let unix_ms = unix_ms(0).max(1);
    rec.seq = unix_ms;
    rec.issued_at = unix_ms / 1000;
    rec.nickname = nickname;
    let record = rec.sign(&identity)?;
    spawn(
        socket,
        NodeConfig {
            identity,
            record,
            seeds,
            swim,
            state_sink,
        },
    )
}
