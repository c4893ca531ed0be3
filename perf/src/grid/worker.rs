//! One worker process of `grapevine-perf grid` (`grid-worker`, hidden): a
//! share of the grid's nodes, each a real node of the node library
//! ([`Node::start`] with [`Options::in_process`]: membership, a share
//! server with its own store in its own directory, a session pool; no
//! control socket, no HTTP), and the client tasks of the client nodes among
//! them.
//!
//! Jobs run on runtimes of their own, one thread each, so the kernel's
//! per-thread counters say what each costs ([`crate::grid::cpu`]): gossip
//! (every node's membership task), storage (every share server and its
//! sessions) and client (the workload). The main thread is the harness: it
//! starts nodes, takes commands ([`ToWorker`]) from stdin, counts verdicts
//! from every node's membership events, and every half-second reports
//! figures ([`WorkerStatus`]) read from the nodes' counters and stats.
//!
//! A crash drops the [`Node`] (its tasks end, no goodbye; the directory and
//! its store stay); a leave is [`Node::leave`]; a return starts the node
//! again from its directory at the same address.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use grapevine_crypto::NodeId;
use grapevine_membership::{Event, MemberState};
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{procfs, Config, Node, NodeDir, Options, StorageRuntime};
use grapevine_storage::client::ListingTimesSnapshot;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

use crate::grid::clients::{from_record, ClientTask, Phase, Settings, Shared};
use crate::grid::cpu;
use crate::grid::lives::Totals;
use crate::grid::proto::{send, Detect, FromWorker, ToWorker, WorkerStatus};
use crate::grid::verdicts::{DeadVerdict, Returns};
use crate::grid::workload::{Catalogue, Mix};
use crate::worker::unix_ms;

/// Arguments of the hidden worker.
#[derive(Debug, clap::Args)]
pub struct GridWorkerArgs {
    /// First node index.
    #[arg(long)]
    pub first: usize,
    /// Nodes in this worker.
    #[arg(long)]
    pub count: usize,
    /// Nodes in the grid.
    #[arg(long)]
    pub total: usize,
    /// Milliseconds between this worker's node starts.
    #[arg(long)]
    pub interval_ms: u64,
    /// Directory holding every node's directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Port every node listens on (each on its own address).
    #[arg(long)]
    pub port: u16,
    /// Client nodes in this worker: INDEX:CLIENT_NUMBER,...
    #[arg(long, default_value = "")]
    pub clients: String,
    /// Client nodes in the grid.
    #[arg(long)]
    pub clients_total: usize,
    /// Operations per client per second.
    #[arg(long)]
    pub rate: f64,
    /// Operation weights.
    #[arg(long)]
    pub ops: String,
    /// Size weights.
    #[arg(long)]
    pub sizes: String,
    /// Chance a read is of the client's own recent files.
    #[arg(long)]
    pub reuse: f64,
    /// The run's seed.
    #[arg(long)]
    pub run_seed: u64,
    /// Storage each node offers, MiB.
    #[arg(long)]
    pub capacity_mib: u32,
    /// Deadline of one operation, seconds.
    #[arg(long)]
    pub op_timeout_secs: u64,
}

/// Node `i`'s address: 127.10.x.y, its own.
pub fn addr_of(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 10, (i / 250) as u8, (i % 250 + 1) as u8], port))
}

fn runtime(name: &str) -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        // Blocking threads live for the run, so their CPU time stays
        // readable per thread.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()?)
}

#[derive(Debug)]
struct Slot {
    idx: usize,
    dir: NodeDir,
    id: Option<NodeId>,
    node: Option<Node>,
    client: Option<usize>,
    client_task: bool,
    /// The node's earlier lives.
    past: Totals,
}

struct Worker {
    args: GridWorkerArgs,
    gossip: Runtime,
    storage: Runtime,
    client_rt: Runtime,
    slots: Vec<Slot>,
    started: usize,
    last_start_ms: u64,
    shared: Arc<Shared>,
    out_rx: mpsc::UnboundedReceiver<FromWorker>,
    phase: watch::Sender<Phase>,
    settings: Arc<Settings>,
    sink_tx: mpsc::UnboundedSender<(NodeId, Event)>,
    sink_rx: Option<mpsc::UnboundedReceiver<(NodeId, Event)>>,
    status: WorkerStatus,
    detect: Option<Detect>,
    detect_ids: Vec<NodeId>,
    detect_seen: HashSet<usize>,
    index_of: HashMap<NodeId, usize>,
    ids_sent: bool,
    returns: Returns,
}

/// Run a worker until told to quit.
///
/// # Errors
/// Bad arguments, runtimes that cannot be built, a first node start that
/// fails, stdout closed.
pub fn main(args: GridWorkerArgs) -> Result<()> {
    let harness = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let w = Worker::new(args)?;
    harness.block_on(w.run())
}

fn parse_clients(s: &str) -> Result<HashMap<usize, usize>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (i, c) = p.split_once(':').context("--clients: INDEX:NUMBER")?;
            Ok((i.parse()?, c.parse()?))
        })
        .collect()
}

impl Worker {
    fn new(args: GridWorkerArgs) -> Result<Worker> {
        let clients = parse_clients(&args.clients)?;
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (sink_tx, sink_rx) = mpsc::unbounded_channel();
        let settings = Arc::new(Settings {
            mix: Mix::parse(&args.ops, &args.sizes)?,
            rate: args.rate,
            reuse: args.reuse,
            seed: args.run_seed,
            op_timeout: Duration::from_secs(args.op_timeout_secs),
            clients: args.clients_total,
        });
        let slots = (args.first..args.first + args.count)
            .map(|idx| Slot {
                idx,
                dir: NodeDir::new(args.dir.join(format!("node-{idx}"))),
                id: None,
                node: None,
                client: clients.get(&idx).copied(),
                client_task: false,
                past: Totals::default(),
            })
            .collect();
        Ok(Worker {
            gossip: runtime("gv-gossip")?,
            storage: runtime("gv-storage")?,
            client_rt: runtime("gv-client")?,
            slots,
            started: 0,
            last_start_ms: 0,
            shared: Arc::new(Shared {
                catalogue: Mutex::new(Catalogue::default()),
                down: RwLock::new(HashSet::new()),
                busy: Default::default(),
                out: out_tx,
            }),
            out_rx,
            phase: watch::channel(Phase::Idle).0,
            settings,
            sink_tx,
            sink_rx: Some(sink_rx),
            status: WorkerStatus {
                nodes: args.count,
                ..WorkerStatus::default()
            },
            detect: None,
            detect_ids: Vec::new(),
            detect_seen: HashSet::new(),
            index_of: HashMap::new(),
            returns: Returns::default(),
            ids_sent: false,
            args,
        })
    }

    /// Start (or start again) the node in slot `s`, retrying its address
    /// for a few seconds (the previous life's sockets may still be closing).
    async fn start_node(&mut self, s: usize) -> Result<()> {
        let idx = self.slots[s].idx;
        let d = self.slots[s].dir.clone();
        let addr = addr_of(idx, self.args.port);
        let mut cfg = Config::new(addr);
        cfg.nickname = Some(format!("g{idx}"));
        cfg.reserve_mib = 0;
        cfg.capacity_mib = self.args.capacity_mib;
        if idx != 0 {
            cfg.seeds = vec![grapevine_node::addr::PeerAddr::Ip(addr_of(
                0,
                self.args.port,
            ))];
        }
        let sink = self.sink_tx.clone();
        let storage = self.storage.handle().clone();
        let capacity_mib = self.args.capacity_mib;
        let started = self.gossip.spawn(async move {
            if !d.identity_path().exists() {
                let d2 = d.clone();
                tokio::task::spawn_blocking(move || {
                    dir::init(
                        &d2,
                        &InitOptions {
                            listen: addr,
                            advertise: Vec::new(),
                            seeds: vec![],
                            nickname: None,
                            capacity_mib,
                            gateway: None,
                        },
                    )
                })
                .await??;
            }
            let mut last = None;
            for _ in 0..40 {
                let opts = Options {
                    storage_runtime: StorageRuntime::Shared(storage.clone()),
                    state_sink: Some(sink.clone()),
                    ..Options::in_process()
                };
                match Node::start(cfg.clone(), &d, opts).await {
                    Ok(n) => return Ok(n),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(anyhow::anyhow!(
                "{}",
                last.map(|e| e.to_string()).unwrap_or_default()
            ))
        });
        let node = started
            .await?
            .with_context(|| format!("starting node {idx} at {addr}"))?;
        let id = node.id();
        self.index_of.insert(id, idx);
        let slot = &mut self.slots[s];
        if slot.id.is_none() {
            self.started += 1;
            self.last_start_ms = unix_ms();
        }
        slot.id = Some(id);
        if let (Some(ordinal), false) = (slot.client, slot.client_task) {
            slot.client_task = true;
            let task = ClientTask {
                ordinal,
                client: node.client(),
                shared: self.shared.clone(),
                settings: self.settings.clone(),
                phase: self.phase.subscribe(),
            };
            self.client_rt.spawn(task.run());
        }
        slot.node = Some(node);
        Ok(())
    }

    fn slot_of(&self, idx: usize) -> Option<usize> {
        idx.checked_sub(self.args.first)
            .filter(|s| *s < self.slots.len())
    }

    fn take_down(&mut self, idx: usize, leave: bool) {
        let Some(s) = self.slot_of(idx) else { return };
        let Some(node) = self.slots[s].node.take() else {
            return;
        };
        self.slots[s].past.add_node(&node);
        if leave {
            self.gossip.spawn(async move {
                if let Err(e) = node.leave(Duration::from_secs(5)).await {
                    tracing::warn!("leave: {e}");
                }
            });
        } else {
            drop(node);
        }
    }

    async fn command(&mut self, cmd: ToWorker) -> Result<bool> {
        match cmd {
            ToWorker::Files { files } => {
                let mut cat = self
                    .shared
                    .catalogue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for f in &files {
                    cat.add(from_record(f)?);
                }
            }
            ToWorker::Churn {
                crash,
                leave,
                back,
                down,
                detect,
                at_ms,
            } => {
                let down: HashSet<NodeId> = down.iter().filter_map(|d| d.parse().ok()).collect();
                {
                    let mut held = self.shared.down.write().unwrap_or_else(|p| p.into_inner());
                    self.returns.step(&held, &down, at_ms);
                    *held = down;
                }
                for i in crash {
                    self.take_down(i, false);
                }
                for i in leave {
                    self.take_down(i, true);
                }
                for i in back {
                    if let Some(s) = self.slot_of(i) {
                        if let Err(e) = self.start_node(s).await {
                            tracing::error!("{e:#}");
                            self.status.start_failures += 1;
                        }
                    }
                }
                if let Some(d) = detect {
                    self.detect_ids = d
                        .dead
                        .iter()
                        .chain(&d.left)
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    self.detect_seen.clear();
                    self.detect = Some(d);
                }
            }
            ToWorker::Workload { on } => {
                let _ = self.phase.send(if on { Phase::Run } else { Phase::Idle });
            }
            ToWorker::Readback => {
                let _ = self.phase.send(Phase::Readback);
            }
            ToWorker::Quit => return Ok(false),
        }
        Ok(true)
    }

    fn verdict(&mut self, observer: NodeId, e: Event) {
        let Event::StateChanged {
            id,
            to,
            incarnation,
            ..
        } = e
        else {
            return;
        };
        match to {
            MemberState::Dead => {
                self.status.dead_verdicts += 1;
                let down = self.shared.down.read().unwrap_or_else(|p| p.into_inner());
                let verdict = self.returns.classify(&down, &id, incarnation);
                if verdict == DeadVerdict::EndedLife {
                    self.status.dead_on_ended_lives += 1;
                }
                if verdict == DeadVerdict::False {
                    self.status.false_dead += 1;
                    if self.status.false_dead_examples.len() < 10 {
                        let obs = self.index_of.get(&observer).copied().unwrap_or(usize::MAX);
                        self.status.false_dead_examples.push((obs, id.to_string()));
                    }
                }
            }
            MemberState::Suspect => self.status.suspects += 1,
            _ => {}
        }
    }

    async fn tick(&mut self) -> Result<()> {
        let down = self
            .shared
            .down
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let expect_alive = (self.args.total.saturating_sub(down + 1)) as u64;
        let st = &mut self.status;
        st.started = self.started;
        st.last_start_ms = self.last_start_ms;
        let (mut full, mut all_alive, mut running) = (0, 0, 0);
        let (mut amin, mut amax, mut asum) = (u64::MAX, 0, 0);
        let mut short = Vec::new();
        let mut t = Totals::default();
        let (mut ss, mut ssmax, mut ps, mut psmax, mut popened) = (0, 0, 0, 0, 0);
        let mut client_listings = ListingTimesSnapshot::default();
        for slot in &self.slots {
            t.add(&slot.past);
            let Some(node) = &slot.node else { continue };
            running += 1;
            t.add_node(node);
            let c = node.state().membership().counters();
            if c.records.load(Relaxed) as usize >= self.args.total {
                full += 1;
            }
            let alive = c.alive.load(Relaxed);
            if alive == expect_alive {
                all_alive += 1;
            } else if short.len() < 5 {
                short.push((slot.idx, alive, expect_alive));
            }
            amin = amin.min(alive);
            amax = amax.max(alive);
            asum += alive;
            let open = node.state().storage_stats().sessions_open();
            ss += open;
            ssmax = ssmax.max(open);
            if slot.client.is_some() {
                let pool = node.state().pool();
                let o = pool.open_sessions() as u64;
                ps += o;
                psmax = psmax.max(o);
                popened += pool.sessions_opened();
                client_listings.add(&pool.listing_times());
            }
        }
        st.running = running;
        st.full = full;
        st.all_alive = all_alive;
        st.alive_min = if running == 0 { 0 } else { amin };
        st.alive_max = amax;
        st.alive_sum = asum;
        st.short_of_alive = short;
        st.dg_sent = t.dg_sent;
        st.bytes_sent = t.bytes_sent;
        st.dg_recv = t.dg_recv;
        st.server_sessions = ss;
        st.server_sessions_max = ssmax;
        st.pool_sessions = ps;
        st.pool_sessions_max = psmax;
        st.pool_opened = popened;
        st.server_listing_times = t.listings;
        st.client_listing_times = client_listings;
        st.ops_in_flight = self.shared.busy.load(Relaxed);
        st.rss = procfs::rss_bytes();
        st.cpu = procfs::cpu_seconds();
        st.cpu_jobs = cpu::by_job(st.cpu);
        self.detect_tick().await;
        send(
            &mut std::io::stdout().lock(),
            &FromWorker::Status(Box::new(self.status.clone())),
        )?;
        if !self.ids_sent && self.started == self.slots.len() {
            let ids = self
                .slots
                .iter()
                .filter_map(|s| Some((s.idx, s.id?.to_string())))
                .collect();
            send(&mut std::io::stdout().lock(), &FromWorker::Ids { ids })?;
            self.ids_sent = true;
        }
        Ok(())
    }

    /// Count the running nodes that see the last churn step's nodes as
    /// they are (crashed: dead; left: left). A node that has seen it once
    /// is not asked again.
    async fn detect_tick(&mut self) {
        let Some(d) = &self.detect else { return };
        let (dead_n, left_n) = (d.dead.len(), d.left.len());
        let want: Vec<MemberState> = std::iter::repeat_n(MemberState::Dead, dead_n)
            .chain(std::iter::repeat_n(MemberState::Left, left_n))
            .collect();
        for slot in &self.slots {
            let Some(node) = &slot.node else { continue };
            if self.detect_seen.contains(&slot.idx) {
                continue;
            }
            let m = node.state().membership();
            let c = m.counters();
            if (c.dead.load(Relaxed) as usize) < dead_n || (c.left.load(Relaxed) as usize) < left_n
            {
                continue;
            }
            let states = m.states(self.detect_ids.clone()).await.unwrap_or_default();
            if states.len() == want.len() && states.iter().zip(&want).all(|(s, w)| *s == Some(*w)) {
                self.detect_seen.insert(slot.idx);
            }
        }
        self.status.detect_generation = d.generation;
        self.status.detect_seen = self
            .slots
            .iter()
            .filter(|s| s.node.is_some() && self.detect_seen.contains(&s.idx))
            .count();
    }

    async fn run(mut self) -> Result<()> {
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<String>(64);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if cmd_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        let mut sink_rx = self.sink_rx.take().context("worker run twice")?;
        let mut next_start = tokio::time::Instant::now();
        let mut to_start = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_start), if to_start < self.slots.len() => {
                    self.start_node(to_start).await?;
                    to_start += 1;
                    next_start += Duration::from_millis(self.args.interval_ms);
                    if to_start == 1 {
                        // The first node (the seed in worker 0) is up:
                        // say so at once.
                        self.tick().await?;
                    }
                }
                Some((obs, e)) = sink_rx.recv() => self.verdict(obs, e),
                Some(msg) = self.out_rx.recv() => send(&mut std::io::stdout().lock(), &msg)?,
                cmd = cmd_rx.recv() => {
                    let Some(line) = cmd else { break };
                    match serde_json::from_str::<ToWorker>(&line) {
                        Ok(c) => if !self.command(c).await? { break },
                        Err(e) => tracing::warn!("bad command {line:?}: {e}"),
                    }
                }
                _ = tick.tick() => self.tick().await?,
            }
        }
        let _ = self.phase.send(Phase::Stop);
        for s in &mut self.slots {
            s.node = None;
        }
        let Worker {
            gossip,
            storage,
            client_rt,
            ..
        } = self;
        for rt in [gossip, storage, client_rt] {
            rt.shutdown_background();
        }
        Ok(())
    }
}
