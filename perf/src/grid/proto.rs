//! The protocol between `grapevine-perf grid` and its worker processes
//! (`grapevine-perf grid-worker`, hidden): one JSON object per line, commands
//! on the worker's stdin ([`ToWorker`]) and reports on its stdout
//! ([`FromWorker`]). Node ids travel as their text form.
//!
//! The parent is the only one that knows the whole grid: it relays every
//! stored file to every worker (so any client can read any file), decides
//! the churn and tells every worker which nodes are down (so each can tell
//! a true "dead" verdict from a false one, and an operation on a file that
//! lost more than n-k shares from a failed one).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use grapevine_storage::client::ListingTimesSnapshot;
use grapevine_storage::latency::Snapshot;
use grapevine_storage::server::ServerStats;
use serde::{Deserialize, Serialize};

/// A command to a worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ToWorker {
    /// Files stored (by any client): every worker's clients may read them.
    Files {
        /// The files.
        files: Vec<FileRecord>,
    },
    /// Take nodes down, bring them back; `down` is every node down after
    /// this step, grid-wide.
    Churn {
        /// Node indices to crash (those in this worker act).
        crash: Vec<usize>,
        /// Node indices to leave gracefully.
        leave: Vec<usize>,
        /// Node indices to start again from their directories.
        back: Vec<usize>,
        /// Ids of every node down after this step.
        down: Vec<String>,
        /// What survivors should come to see, if this step took nodes down.
        detect: Option<Detect>,
        /// The wall clock (Unix milliseconds) when the step was made, before
        /// any node of it started (see [`crate::grid::verdicts`]).
        at_ms: u64,
    },
    /// Start or stop the clients' workload.
    Workload {
        /// Run (true) or stop (false).
        on: bool,
    },
    /// Each client reads back its part of every file stored.
    Readback,
    /// Stop every node and exit.
    Quit,
}

/// What every survivor should see after a churn step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Detect {
    /// Which step.
    pub generation: u64,
    /// Crashed nodes: seen dead.
    pub dead: Vec<String>,
    /// Nodes that left: seen left.
    pub left: Vec<String>,
}

/// A stored file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// Client number << 32 | the client's counter.
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Its content's seed ([`crate::grid::content`]).
    pub seed: u64,
    /// The read capability.
    pub cap: String,
    /// Shares needed to read it.
    pub k: u16,
    /// (share number, server id) of every share placed.
    pub placements: Vec<(u16, String)>,
}

/// A report from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FromWorker {
    /// Figures, every half-second.
    Status(Box<WorkerStatus>),
    /// The ids of this worker's nodes, once all have started.
    Ids {
        /// (node index, node id).
        ids: Vec<(usize, String)>,
    },
    /// One operation done.
    Op(OpRecord),
    /// A put succeeded: the file, for the parent to relay.
    Stored(FileRecord),
    /// A client finished reading back its part of the files.
    ReadbackDone {
        /// Client number.
        client: usize,
        /// Files it read.
        files: usize,
    },
}

/// A worker's figures, each over its own nodes (counters of crashed nodes
/// are kept, so traffic totals never go backwards).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Nodes this worker runs.
    pub nodes: usize,
    /// Nodes started at least once.
    pub started: usize,
    /// Nodes running now.
    pub running: usize,
    /// Unix ms of the last first start.
    pub last_start_ms: u64,
    /// Running nodes holding every node's record.
    pub full: usize,
    /// Running nodes that see every node that is up as alive.
    pub all_alive: usize,
    /// Fewest other members alive seen by a running node.
    pub alive_min: u64,
    /// Most other members alive seen by a running node.
    pub alive_max: u64,
    /// Sum over running nodes of the members each sees alive.
    pub alive_sum: u64,
    /// Up to five running nodes that do not see every other running node
    /// alive: (node index, members it sees alive, how many it should).
    #[serde(default)]
    pub short_of_alive: Vec<(usize, u64, u64)>,
    /// Process RSS, bytes.
    pub rss: u64,
    /// Process CPU seconds.
    pub cpu: f64,
    /// CPU seconds by job (thread name): gossip, storage, client, harness.
    pub cpu_jobs: BTreeMap<String, f64>,
    /// Gossip datagrams sent.
    pub dg_sent: u64,
    /// Gossip bytes sent.
    pub bytes_sent: u64,
    /// Gossip datagrams received.
    pub dg_recv: u64,
    /// Storage sessions open now, summed over this worker's servers.
    pub server_sessions: u64,
    /// The most storage sessions open at one server now.
    pub server_sessions_max: u64,
    /// Client pools' sessions open now, summed.
    pub pool_sessions: u64,
    /// The most sessions open in one client pool now.
    pub pool_sessions_max: u64,
    /// Sessions the client pools have opened, ever.
    pub pool_opened: u64,
    /// Dead verdicts about nodes that were up, in the life the verdict
    /// named.
    pub false_dead: u64,
    /// Dead verdicts about a life of a node that had ended, reached after
    /// the node came back (see [`crate::grid::verdicts`]).
    pub dead_on_ended_lives: u64,
    /// Dead verdicts, all.
    pub dead_verdicts: u64,
    /// Suspect verdicts (refuted ones included).
    pub suspects: u64,
    /// A few of the false dead verdicts: (observer index, subject id).
    pub false_dead_examples: Vec<(usize, String)>,
    /// The churn step `detect_seen` refers to.
    pub detect_generation: u64,
    /// Running nodes that see that step's crashed nodes dead and its
    /// leavers left.
    pub detect_seen: usize,
    /// Operations in progress.
    pub ops_in_flight: usize,
    /// Node starts (first or again) that failed.
    pub start_failures: u64,
    /// How long this worker's share servers took to answer listings, by
    /// the way they were asked (earlier lives of nodes included).
    #[serde(default)]
    pub server_listing_times: ServerListingTimes,
    /// How long this worker's clients waited for listings, by the way
    /// they were asked.
    #[serde(default)]
    pub client_listing_times: ListingTimesSnapshot,
}

/// Listing times share servers measured (see `ServerStats`), added up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerListingTimes {
    /// In datagrams: from the node's socket reading the query to the
    /// answer sent.
    pub datagram: Snapshot,
    /// Of those, the part before the share server took the query.
    pub handover: Snapshot,
    /// On sessions: from the request read to the answer sent.
    pub session: Snapshot,
    /// Over TCP connections of their own: from the accept to the answer.
    pub tcp: Snapshot,
}

impl ServerListingTimes {
    /// One server's.
    pub fn of(stats: &ServerStats) -> Self {
        ServerListingTimes {
            datagram: stats.datagram_listing_times(),
            handover: stats.datagram_handover_times(),
            session: stats.session_listing_times(),
            tcp: stats.tcp_listing_times(),
        }
    }

    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &ServerListingTimes) {
        self.datagram.add(&other.datagram);
        self.handover.add(&other.handover);
        self.session.add(&other.session);
        self.tcp.add(&other.tcp);
    }

    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &ServerListingTimes) -> ServerListingTimes {
        ServerListingTimes {
            datagram: self.datagram.since(&earlier.datagram),
            handover: self.handover.since(&earlier.handover),
            session: self.session.since(&earlier.session),
            tcp: self.tcp.since(&earlier.tcp),
        }
    }
}

/// One operation, as the client saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpRecord {
    /// Client number.
    pub client: usize,
    /// "put", "get" or "check".
    pub op: String,
    /// File size.
    pub size: u64,
    /// File id.
    pub file: u64,
    /// Unix ms when it started.
    pub start_ms: u64,
    /// How late it started against its schedule, ms.
    pub lag_ms: f64,
    /// How long it took, ms.
    pub ms: f64,
    /// "warm", "cold", "mixed" or "none" (see `workload::Class`).
    pub class: String,
    /// Sessions opened for it.
    pub handshakes: u64,
    /// Listings asked for it (servers asked without a session).
    #[serde(default)]
    pub listings: u64,
    /// Of which answered in datagrams.
    #[serde(default)]
    pub datagram_listings: u64,
    /// Distinct servers it asked for sessions.
    pub servers: usize,
    /// Whether it succeeded (a get returned exactly the file).
    pub ok: bool,
    /// The file had fewer than k shares on servers that were up.
    pub beyond_repair: bool,
    /// Part of the final read-back, not of the workload.
    pub readback: bool,
    /// Distinct good shares a check found.
    pub shares_found: Option<usize>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Write one line of JSON to `out`.
///
/// # Errors
/// Serialisation or I/O errors.
pub fn send<T: Serialize>(out: &mut impl Write, msg: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, msg)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Listing times of all the workers whose statuses are given, added up.
pub fn listing_times<'a>(
    statuses: impl Iterator<Item = &'a WorkerStatus>,
) -> (ListingTimesSnapshot, ServerListingTimes) {
    let (mut client, mut server) = (
        ListingTimesSnapshot::default(),
        ServerListingTimes::default(),
    );
    for s in statuses {
        client.add(&s.client_listing_times);
        server.add(&s.server_listing_times);
    }
    (client, server)
}

/// Every operation, one JSON object a line (for analysis beyond the
/// report).
pub fn write_ops(path: &std::path::Path, ops: &[OpRecord]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for o in ops {
        serde_json::to_writer(&mut out, o)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_reports_are_one_json_line_each() {
        let cmds = vec![
            ToWorker::Churn {
                crash: vec![3],
                leave: vec![],
                back: vec![9],
                down: vec!["ab".into()],
                detect: Some(Detect {
                    generation: 2,
                    dead: vec!["ab".into()],
                    left: vec![],
                }),
                at_ms: 1_700_000_000_000,
            },
            ToWorker::Workload { on: true },
            ToWorker::Readback,
            ToWorker::Quit,
        ];
        for c in cmds {
            let mut buf = Vec::new();
            send(&mut buf, &c).unwrap();
            assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
            let back: ToWorker = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back, c);
        }
        let mut buf = Vec::new();
        send(
            &mut buf,
            &FromWorker::ReadbackDone {
                client: 1,
                files: 2,
            },
        )
        .unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.contains("\"kind\":\"readback_done\""), "{s}");
        assert!(serde_json::from_str::<ToWorker>("{\"cmd\":\"reboot\"}").is_err());
    }
}
