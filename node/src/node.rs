//! The runtime: start a node from its configuration and directory, keep its
//! tasks, stop it gracefully or abruptly.
//!
//! [`Node::start`] binds (or takes, [`Sockets`]) the node's UDP and TCP
//! sockets on one port, opens the share store, resolves `advertise` and the
//! seeds (host names allowed), signs the node's record, starts gossip, the
//! share server (on the runtime [`StorageRuntime`] says), the tasks that
//! keep the record current ([`crate::record::keep`]) and resolve the seeds
//! again while joining ([`membership::resolve_seeds`]), the HTTP server
//! and the control socket (each optional, [`Options`]; the control socket
//! last, so a start that fails never leaves one behind, nor takes over
//! the socket of a node already running in the directory), and returns a
//! [`Node`] holding them.
//!
//! The record's sequence number comes from `DIR/last_seq` ([`crate::seq`]:
//! above every number the node signed, whatever its clock says), and
//! membership rejoins through the peer cache `DIR/peers` ([`crate::peers`],
//! kept current by its own task and saved once more on leaving) as well as
//! through the seeds.
//!
//! [`Node::leave`] drains storage (no new sessions; uploads in progress
//! get `drain_secs` to finish their shares), tells the grid and stops
//! everything; dropping a [`Node`] stops everything with no goodbye, as a
//! crash would (what churn tests want). [`run`] is the whole life of a node
//! in the shape of mini-redis's `server::run(listener, shutdown)`: start,
//! wait for `shutdown`, leave.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use grapevine_crypto::record::{local_features, FEATURE_AES_GCM};
use grapevine_crypto::NodeId;
use grapevine_membership::driver::{Passthrough, RunOptions};
use grapevine_membership::Event;
use grapevine_storage::client::ClientIdentity;
use grapevine_storage::listing_datagram;
use grapevine_storage::store::{ScrubStats, StoreConfig};
use grapevine_storage::{ServerStats, SessionPool, ShareStore};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::config::{Config, Role};
use crate::dir::NodeDir;
use crate::error::{ConfigError, NodeError};
use crate::record::record_addrs;
use crate::seq::{SeqFile, WallClock};
use crate::state::{NodeState, StorageFigures};
use crate::storage::{DatagramInbox, ListingDoor, ServerParts, StorageRuntime, StorageServer};
use crate::{control, gateway, http, membership, peers, record};

/// A node's UDP (gossip) and TCP (sessions) sockets, bound to one address.
#[derive(Debug)]
pub struct Sockets {
    /// Gossip.
    pub udp: UdpSocket,
    /// Storage sessions.
    pub tcp: TcpListener,
}

impl Sockets {
    /// Bind UDP at `addr` (port 0 picks one), then TCP at the same address.
    ///
    /// With port 0 the kernel picks UDP's port, and that port may be some
    /// TCP connection's local port at that moment (both draw on the same
    /// ephemeral range): then another pair is tried, a bounded number of
    /// times.
    ///
    /// # Errors
    /// [`NodeError::Bind`] naming the address.
    pub async fn bind(addr: SocketAddr) -> Result<Sockets, NodeError> {
        const TRIES_ON_ANY_PORT: usize = 50;
        let mut tries = 0;
        loop {
            tries += 1;
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(NodeError::bind("UDP", addr))?;
            let local = udp.local_addr().map_err(NodeError::bind("UDP", addr))?;
            match TcpListener::bind(local).await {
                Ok(tcp) => return Ok(Sockets { udp, tcp }),
                Err(e)
                    if addr.port() == 0
                        && e.kind() == std::io::ErrorKind::AddrInUse
                        && tries < TRIES_ON_ANY_PORT => {}
                Err(e) => return Err(NodeError::bind("TCP", local)(e)),
            }
        }
    }
}

/// How the embedder wants a node run.
#[derive(Debug, Default)]
pub struct Options {
    /// Sockets already bound (else `listen` from the configuration is bound).
    pub sockets: Option<Sockets>,
    /// Where storage sessions run.
    pub storage_runtime: StorageRuntime,
    /// Serve the control socket (`DIR/control.sock`).
    pub control: bool,
    /// Serve HTTP: metrics at the configuration's `metrics` address and the
    /// web gateway at its `gateway` address, each if set.
    pub http: bool,
    /// Receives (observer, event) for every membership state change.
    pub state_sink: Option<mpsc::UnboundedSender<(NodeId, Event)>>,
    /// Raise the process's soft limit on open files to its hard limit at
    /// start (a node that is its own process; a storage server holds a
    /// descriptor per session).
    pub raise_fd_limit: bool,
    /// The wall clock the node reads (the system's unless a test skews it).
    pub clock: WallClock,
}

impl Options {
    /// A node that is its own process (`grapevine run`): storage on a
    /// runtime of its own, control socket and HTTP on.
    pub fn process() -> Options {
        Options {
            control: true,
            http: true,
            raise_fd_limit: true,
            ..Options::default()
        }
    }

    /// One of many nodes in a process: everything on the caller's runtime,
    /// no control socket, no HTTP server.
    pub fn in_process() -> Options {
        Options {
            storage_runtime: StorageRuntime::Current,
            ..Options::default()
        }
    }
}

/// Aborts its task when dropped.
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running node. Dropping it stops every part at once, with no goodbye
/// to the grid (a crash); [`Node::leave`] says goodbye first.
#[derive(Debug)]
pub struct Node {
    state: Arc<NodeState>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    gateway_addr: Option<SocketAddr>,
    control_path: Option<PathBuf>,
    storage: Option<StorageServer>,
    tasks: Vec<Task>,
    drain: Duration,
    /// The peer cache, saved once more on leaving.
    peers_path: Option<PathBuf>,
}

impl Node {
    /// Start the node in `dir` with `config`.
    ///
    /// # Errors
    /// An invalid configuration, an unreadable identity or store, sockets
    /// that cannot be bound, a closed grid that does not admit this node.
    /// Whatever had started is stopped again.
    pub async fn start(config: Config, dir: &NodeDir, opts: Options) -> Result<Node, NodeError> {
        let control = opts.control;
        let r = Node::start_inner(config, dir, opts).await;
        if r.is_err() && control {
            control::remove_stale(dir).await;
        }
        r
    }

    async fn start_inner(config: Config, dir: &NodeDir, opts: Options) -> Result<Node, NodeError> {
        config.validate(&dir.config_path())?;
        if opts.raise_fd_limit {
            match rlimit::increase_nofile_limit(u64::MAX) {
                Ok(n) => tracing::info!("open file limit: {n}"),
                Err(e) => tracing::warn!("could not raise the open file limit: {e}"),
            }
        }
        let identity = Arc::new(dir.load_identity()?);
        let convergence = dir.convergence_secret()?;
        // The store enforces the capacity the node offers the grid.
        let store = ShareStore::open_with(
            &dir.storage_path(),
            StoreConfig {
                reserve: config.reserve_mib << 20,
                capacity: Some(u64::from(config.capacity_mib) << 20),
                writeback: config.memory_budget().bytes().map(|b| (b / 2).max(1 << 20)),
            },
        )?;
        let sockets = match opts.sockets {
            Some(s) => s,
            None => Sockets::bind(config.listen).await?,
        };
        // Every listener the node serves is bound before it announces
        // itself: one that cannot be (a port in use, a node already
        // running here) fails the start before any peer hears of the node,
        // which would otherwise be seen alive, then dead for a day.
        let gateway = match (opts.http, config.gateway) {
            (true, Some(addr)) => Some(
                gateway::Gateway::listen(gateway::GatewaySettings::from_config(&config, addr), dir)
                    .await?,
            ),
            _ => None,
        };
        // The gateway serves /metrics too: one server when both share an
        // address.
        let metrics = match (
            opts.http,
            config.metrics.filter(|m| Some(*m) != config.gateway),
        ) {
            (true, Some(addr)) => Some(http::bind(addr).await?),
            _ => None,
        };
        let control = match opts.control {
            true => Some((
                dir.control_path(),
                control::bind(&dir.control_path()).await?,
            )),
            false => None,
        };
        let local_addr = sockets
            .udp
            .local_addr()
            .map_err(NodeError::io("reading the UDP socket's address"))?;
        let addrs =
            record_addrs(&config, local_addr)
                .await
                .map_err(|message| ConfigError::Invalid {
                    path: dir.config_path(),
                    message,
                })?;
        let figures = StorageFigures::of(&store, config.capacity_mib);
        let clock = opts.clock;
        let seqs = Arc::new(SeqFile::open(dir.seq_path()).map_err(NodeError::io(format!(
            "reading {}",
            dir.seq_path().display()
        )))?);
        let seq = seqs.next(clock.unix_ms()).map_err(NodeError::io(format!(
            "writing {}",
            dir.seq_path().display()
        )))?;
        let record = membership::own_record(
            &identity,
            &config,
            addrs,
            figures.free_mib(),
            seq,
            clock.unix_ms(),
        )?;
        tracing::info!(
            "session ciphers: {}",
            if local_features() & FEATURE_AES_GCM != 0 {
                "AES-256-GCM with peers that offer it too, ChaCha20-Poly1305 with the others"
            } else {
                "ChaCha20-Poly1305 (AES-256-GCM not offered)"
            }
        );
        let seeds = membership::seed_addrs(&config.seeds, local_addr).await;
        let known = peers::load(&dir.peers_path(), &identity.node_id());
        if !known.is_empty() {
            tracing::info!(
                peers = known.len(),
                "rejoining through the peer cache as well as the seeds"
            );
        }
        let keeper = seqs.clone();
        // Listings asked in datagrams come to the gossip socket: handed to
        // the share server, if this node is one in an open grid (a closed
        // grid's servers answer no listings).
        let (passthrough, door) =
            if config.has_role(Role::Storage) && config.session_config().grid.is_none() {
                let door = ListingDoor::default();
                let taker = door.clone();
                let p = Passthrough {
                    first_byte: listing_datagram::QUERY_BYTE,
                    sink: Arc::new(move |d, from, read| taker.take(d, from, read)),
                };
                (Some(p), Some(door))
            } else {
                (None, None)
            };
        let run = RunOptions {
            clock_skew_ms: clock.skew_ms,
            known,
            on_signed: Some(Arc::new(move |n| keeper.note(n))),
            passthrough,
        };
        let gossip = membership::start(
            sockets.udp,
            identity.clone(),
            record.clone(),
            seeds.clone(),
            &config,
            opts.state_sink,
            run,
        )?;
        let me = ClientIdentity {
            identity: identity.clone(),
            record: record.clone(),
            session: config.session_config(),
        };
        let storage_stats = Arc::new(ServerStats::default());
        let scrub_stats = Arc::new(ScrubStats::default());
        let state = Arc::new(NodeState {
            identity: identity.clone(),
            membership: gossip,
            record: RwLock::new(record.clone()),
            started: Instant::now(),
            store: store.clone(),
            storage_stats: storage_stats.clone(),
            scrub_stats: scrub_stats.clone(),
            repair_stats: Arc::default(),
            storage_serving: AtomicBool::new(false),
            nickname: config.nickname.clone(),
            pool: Arc::new(SessionPool::new(me, config.pool_config())),
            convergence,
            capacity_mib: config.capacity_mib,
            params: config.params(),
            seqs,
            clock,
        });
        let mut node = Node {
            state: state.clone(),
            local_addr,
            http_addr: None,
            gateway_addr: None,
            control_path: None,
            storage: None,
            tasks: Vec::new(),
            drain: Duration::from_secs(config.drain_secs),
            peers_path: None,
        };
        node.tasks.push(Task(tokio::spawn(membership::resolve_seeds(
            state.membership().clone(),
            config.seeds.clone(),
            seeds,
        ))));
        node.tasks
            .push(Task(tokio::spawn(close_idle_sessions(state.pool.clone()))));
        node.tasks.push(Task(tokio::spawn(record::keep(
            state.clone(),
            config.clone(),
            local_addr,
        ))));
        node.peers_path = Some(dir.peers_path());
        node.tasks.push(Task(tokio::spawn(peers::keep(
            state.clone(),
            dir.peers_path(),
        ))));
        if config.has_role(Role::Storage) {
            let parts = ServerParts {
                identity,
                record,
                store,
                limits: config.server_limits(),
                stats: storage_stats,
                scrub: config.scrub_config(),
                scrub_stats,
            };
            let datagrams = door.map(|door| DatagramInbox {
                door,
                socket: state.membership().socket().clone(),
            });
            let mut server =
                StorageServer::start(sockets.tcp, parts, datagrams, &opts.storage_runtime)?;
            state.storage_serving.store(true, Ordering::Relaxed);
            if let Some(stopped) = server.take_stopped() {
                let (state, config) = (state.clone(), config.clone());
                node.tasks.push(Task(tokio::spawn(async move {
                    // Only a listener that failed says why; a drained one
                    // (the node is leaving) says nothing.
                    if let Ok(why) = stopped.await {
                        withdraw_storage_role(&state, &config, &why).await;
                    }
                })));
            }
            node.storage = Some(server);
            let repair = config.repair_settings();
            if repair.enabled {
                node.tasks.push(Task(tokio::spawn(crate::repair::run(
                    state.clone(),
                    repair,
                    Some(dir.repair_state_path()),
                ))));
            }
        }
        if let Some(gw) = gateway {
            let gw = gw.serving(state.clone());
            node.gateway_addr = Some(gw.local_addr());
            node.tasks.push(Task(tokio::spawn(gw.serve())));
        }
        if let Some(listener) = metrics {
            node.http_addr = listener.local_addr().ok();
            node.tasks.push(Task(tokio::spawn(http::serve(
                listener,
                http::router(state.clone()),
            ))));
        }
        if let Some((path, listener)) = control {
            node.control_path = Some(path);
            node.tasks
                .push(Task(tokio::spawn(control::serve(listener, state.clone()))));
        }
        tracing::info!(
            id = %node.id(),
            "node running: {}",
            node.listening().join(", ")
        );
        Ok(node)
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.state.id()
    }

    /// The address its sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where its HTTP server listens, if it serves one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Every address and socket the node listens on, as sentences' parts:
    /// gossip, storage, metrics, control.
    pub fn listening(&self) -> Vec<String> {
        let mut v = vec![format!("gossip udp/{}", self.local_addr)];
        if self.storage.is_some() {
            v.push(format!("storage sessions tcp/{}", self.local_addr));
        }
        if let Some(g) = self.gateway_addr {
            v.push(format!("web gateway http://{g}/"));
        }
        if let Some(h) = self.http_addr {
            v.push(format!("metrics http://{h}/metrics"));
        }
        if let Some(c) = &self.control_path {
            v.push(format!("control {}", c.display()));
        }
        let rec = self.state.record();
        let announced: Vec<String> = rec.record().addrs.iter().map(|a| a.to_string()).collect();
        if announced != [self.local_addr.to_string()] {
            v.push(format!("announced as {}", announced.join(" ")));
        }
        v
    }

    /// Where its web gateway listens, if it serves one.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway_addr
    }

    /// Its control socket, if it serves one.
    pub fn control_path(&self) -> Option<&std::path::Path> {
        self.control_path.as_deref()
    }

    /// Its shared state.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// A client (put, get, check) that works through this node's view of
    /// the grid and its session pool.
    pub fn client(&self) -> Client {
        Client::of_node(self.state.clone())
    }

    /// Leave the grid gracefully: drain storage (sessions writing shares
    /// get `drain_secs` to finish them, others are closed), tell members
    /// (waiting at most `within` for the goodbye to go out), then stop
    /// every part.
    ///
    /// # Errors
    /// [`NodeError::Membership`] if membership had already stopped (the
    /// node is stopped all the same).
    pub async fn leave(mut self, within: Duration) -> Result<(), NodeError> {
        if let Some(s) = self.storage.as_mut() {
            s.drain(self.drain).await;
        }
        // The members seen last, for the next run to rejoin through.
        if let Some(p) = self.peers_path.take() {
            let _ = tokio::time::timeout(within, peers::save_current(&self.state, &p, Vec::new()))
                .await;
        }
        self.stop_serving();
        let r = tokio::time::timeout(within, self.state.membership().leave()).await;
        match r {
            Ok(r) => Ok(r?),
            Err(_) => {
                tracing::warn!("leave not confirmed within {within:?}");
                Ok(())
            }
        }
    }

    fn stop_serving(&mut self) {
        self.tasks.clear();
        if let Some(mut s) = self.storage.take() {
            s.stop();
        }
        if let Some(p) = self.control_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_serving();
    }
}

/// Close the pool's sessions idle past its timeout, every half timeout:
/// the pool closes them itself only when it is used, and a node whose
/// client has gone quiet would otherwise hold its sessions (and the
/// servers' memory for them) for good.
async fn close_idle_sessions(pool: Arc<SessionPool>) {
    let every = (pool.config().idle_timeout / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let closed = pool.close_idle();
        if closed > 0 {
            tracing::debug!(closed, "closed idle client sessions");
        }
    }
}

/// The share server's listener stopped for good: re-sign the node's record
/// without the storage role and publish it, so clients stop placing shares
/// on a node that cannot take them.
async fn withdraw_storage_role(state: &NodeState, config: &Config, why: &str) {
    state.storage_serving.store(false, Ordering::Relaxed);
    tracing::error!("storage listener stopped ({why}); withdrawing the storage role");
    let old = state.record();
    let addrs = old.record().addrs.clone();
    let free_mib = state.storage_figures().free_mib();
    if let Err(e) = record::publish(state, config, addrs, free_mib).await {
        tracing::warn!("could not publish the record without storage: {e}");
    }
}

/// Run the node in `dir` until `shutdown` completes, then leave the grid
/// (draining storage, then waiting at most five seconds for the goodbye to
/// go out).
///
/// # Errors
/// As [`Node::start`].
pub async fn run(
    config: Config,
    dir: &NodeDir,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let node = Node::start(config, dir, opts).await?;
    shutdown.await;
    node.leave(Duration::from_secs(5)).await
}
