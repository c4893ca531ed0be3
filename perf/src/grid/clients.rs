//! The client nodes' tasks: each carries out the workload through its
//! node's [`Client`] (the node's own view of the grid and session pool),
//! one operation at a time, started on an open-loop schedule (exponential
//! gaps at `rate` per second; an operation that starts late records how
//! late), and at the end reads back its share of every file stored.
//!
//! Every operation is timed from the call into the node library to its
//! return (the node's member list is read afresh each time, as the CLI
//! does), under an overall deadline. The pool's contact log and its count
//! of sessions opened, taken before and after, say whether the operation
//! was warm or cold and how many handshakes it cost: exact, because a
//! client runs one operation at a time and nothing else uses its pool.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use grapevine_crypto::NodeId;
use grapevine_node::{Client, PutOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::grid::content::{seed_of, Compare, Generated};
use crate::grid::proto::{FileRecord, FromWorker, OpRecord};
use crate::grid::workload::{beyond_repair, classify, plan, Catalogue, File, Mix, OpKind, Planned};
use crate::worker::unix_ms;

/// Files a client remembers as its own most recent.
const RECENT: usize = 4;

/// What the clients are asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing (before the workload).
    Idle,
    /// The workload.
    Run,
    /// Read back every file once, then wait.
    Readback,
    /// Exit.
    Stop,
}

/// What a worker's clients share with each other and the worker.
#[derive(Debug)]
pub struct Shared {
    /// Every file stored, by any client.
    pub catalogue: Mutex<Catalogue>,
    /// Nodes down now, grid-wide.
    pub down: RwLock<HashSet<NodeId>>,
    /// Operations in progress.
    pub busy: AtomicUsize,
    /// Reports to the parent.
    pub out: mpsc::UnboundedSender<FromWorker>,
}

/// The workload's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Operations and sizes.
    pub mix: Mix,
    /// Operations per client per second.
    pub rate: f64,
    /// Chance a read is of one of the client's own recent files.
    pub reuse: f64,
    /// The run's seed.
    pub seed: u64,
    /// Deadline of one operation.
    pub op_timeout: Duration,
    /// Clients in the whole grid.
    pub clients: usize,
}

/// One client node's task.
#[derive(Debug)]
pub struct ClientTask {
    /// Client number (0..clients).
    pub ordinal: usize,
    /// The node's client.
    pub client: Client,
    /// Shared with the worker.
    pub shared: Arc<Shared>,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The phase, set by the worker.
    pub phase: watch::Receiver<Phase>,
}

struct Outcome {
    stored: Option<File>,
    shares_found: Option<usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A file as the protocol carries it.
pub fn to_record(f: &File) -> FileRecord {
    FileRecord {
        id: f.id,
        size: f.size,
        seed: f.seed,
        cap: f.cap.to_string(),
        k: f.k,
        placements: f
            .placements
            .iter()
            .map(|(n, s)| (*n, s.to_string()))
            .collect(),
    }
}

/// A file from the protocol.
///
/// # Errors
/// A malformed capability or node id.
pub fn from_record(r: &FileRecord) -> anyhow::Result<File> {
    Ok(File {
        id: r.id,
        size: r.size,
        seed: r.seed,
        cap: r
            .cap
            .parse()
            .map_err(|e| anyhow::anyhow!("capability of file {}: {e}", r.id))?,
        k: r.k,
        placements: r
            .placements
            .iter()
            .map(|(n, s)| Ok((*n, s.parse::<NodeId>()?)))
            .collect::<anyhow::Result<_>>()?,
    })
}

impl ClientTask {
    /// Run until told to stop.
    pub async fn run(mut self) {
        self.client.pool().record_contacts(true);
        let mut rng = SmallRng::seed_from_u64(
            self.settings.seed ^ (self.ordinal as u64).wrapping_mul(0x9e37_79b9),
        );
        let mut recent: VecDeque<File> = VecDeque::new();
        let mut counter = 0u32;
        let mut read_back = false;
        loop {
            let phase = *self.phase.borrow_and_update();
            match phase {
                Phase::Stop => return,
                Phase::Run => {
                    self.workload(&mut rng, &mut recent, &mut counter).await;
                    continue;
                }
                Phase::Readback if !read_back => {
                    self.readback().await;
                    read_back = true;
                }
                Phase::Idle | Phase::Readback => {}
            }
            if self.phase.changed().await.is_err() {
                return;
            }
        }
    }

    async fn workload(
        &mut self,
        rng: &mut SmallRng,
        recent: &mut VecDeque<File>,
        counter: &mut u32,
    ) {
        let mut next = Instant::now();
        loop {
            if *self.phase.borrow() != Phase::Run {
                return;
            }
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            next += Duration::from_secs_f64(-u.ln() / self.settings.rate);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                r = self.phase.changed() => {
                    if r.is_err() { return; }
                    continue;
                }
            }
            let lag = Instant::now().saturating_duration_since(next);
            let planned = {
                let cat = lock(&self.shared.catalogue);
                plan(rng, &self.settings.mix, self.settings.reuse, &cat, recent)
            };
            let (rec, stored) = self.execute(planned, lag, false, counter).await;
            if let Some(f) = stored {
                let _ = self.shared.out.send(FromWorker::Stored(to_record(&f)));
                recent.push_back(f);
                if recent.len() > RECENT {
                    recent.pop_front();
                }
            }
            let _ = self.shared.out.send(FromWorker::Op(rec));
        }
    }

    async fn readback(&mut self) {
        let mut files: Vec<File> = lock(&self.shared.catalogue).files().to_vec();
        files.sort_by_key(|f| f.id);
        let mine: Vec<File> = files
            .into_iter()
            .skip(self.ordinal)
            .step_by(self.settings.clients.max(1))
            .collect();
        let n = mine.len();
        let mut counter = 0;
        for f in mine {
            let (rec, _) = self
                .execute(Planned::Get(f), Duration::ZERO, true, &mut counter)
                .await;
            let _ = self.shared.out.send(FromWorker::Op(rec));
        }
        let _ = self.shared.out.send(FromWorker::ReadbackDone {
            client: self.ordinal,
            files: n,
        });
    }

    async fn execute(
        &self,
        planned: Planned,
        lag: Duration,
        readback: bool,
        counter: &mut u32,
    ) -> (OpRecord, Option<File>) {
        let pool = self.client.pool();
        let _ = pool.take_contacts();
        let opened = pool.sessions_opened();
        let (listed, in_datagrams) = (pool.listings_asked(), pool.datagram_listings_answered());
        let (op, size, file_id, beyond) = match &planned {
            Planned::Put { size } => {
                *counter += 1;
                let id = (self.ordinal as u64) << 32 | u64::from(*counter);
                (OpKind::Put, *size, id, false)
            }
            Planned::Get(f) | Planned::Check(f) => {
                let down = self.shared.down.read().unwrap_or_else(|p| p.into_inner());
                let op = if matches!(planned, Planned::Get(_)) {
                    OpKind::Get
                } else {
                    OpKind::Check
                };
                (op, f.size, f.id, beyond_repair(f, &down))
            }
        };
        let start_ms = unix_ms();
        self.shared.busy.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let result = tokio::time::timeout(self.settings.op_timeout, self.op(planned, file_id))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} s",
                    self.settings.op_timeout.as_secs()
                ))
            });
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        self.shared.busy.fetch_sub(1, Ordering::Relaxed);
        let (class, servers) = classify(&pool.take_contacts());
        let (ok, error, stored, shares_found) = match result {
            Ok(o) => (true, None, o.stored, o.shares_found),
            Err(e) => (false, Some(e), None, None),
        };
        let rec = OpRecord {
            client: self.ordinal,
            op: op.as_str().to_string(),
            size,
            file: file_id,
            start_ms,
            lag_ms: lag.as_secs_f64() * 1000.0,
            ms,
            class: class.as_str().to_string(),
            handshakes: pool.sessions_opened().saturating_sub(opened),
            listings: pool.listings_asked().saturating_sub(listed),
            datagram_listings: pool
                .datagram_listings_answered()
                .saturating_sub(in_datagrams),
            servers,
            ok,
            beyond_repair: beyond,
            readback,
            shares_found,
            error,
        };
        (rec, stored)
    }

    async fn op(&self, planned: Planned, id: u64) -> Result<Outcome, String> {
        let none = Outcome {
            stored: None,
            shares_found: None,
        };
        match planned {
            Planned::Put { size } => {
                let seed = seed_of(self.settings.seed, id);
                let opts = PutOptions::default();
                let up = self
                    .client
                    .put(
                        Generated::new(seed, size),
                        Some(Generated::new(seed, size)),
                        size,
                        opts,
                        &|_| {},
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome {
                    stored: Some(File {
                        id,
                        size,
                        seed,
                        cap: up.cap,
                        k: opts.params.k,
                        placements: up.placements,
                    }),
                    shares_found: None,
                })
            }
            Planned::Get(f) => {
                let mut out = Compare::new(f.seed, f.size);
                self.client
                    .get(&f.cap, &mut out, &|_| {})
                    .await
                    .map_err(|e| e.to_string())?;
                match out.problem() {
                    Some(p) => Err(p),
                    None => Ok(none),
                }
            }
            Planned::Check(f) => {
                let r = self
                    .client
                    .check(&f.cap, false)
                    .await
                    .map_err(|e| e.to_string())?;
                if r.results.count_shares_good < usize::from(f.k) {
                    return Err(format!(
                        "check found {} distinct shares, {} needed",
                        r.results.count_shares_good, f.k
                    ));
                }
                Ok(Outcome {
                    stored: None,
                    shares_found: Some(r.results.count_shares_good),
                })
            }
        }
    }
}
