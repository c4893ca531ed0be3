//! What a node reports about itself over its control socket (and the
//! gateway's pages): its figures (`grapevine status`), its repair job's
//! (`grapevine repair`) and its id and record (`grapevine whoami`). Plain
//! data, serialized as JSON; [`crate::state::NodeState`] fills them in.

use serde::{Deserialize, Serialize};

/// A node's figures (`grapevine status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Records refused for want of a valid admission (closed grids).
    pub records_unadmitted: u64,
    /// Datagrams dropped past their source's rate.
    pub datagrams_rate_limited: u64,
    /// Datagrams dropped because their source is not a member (closed grids).
    pub datagrams_from_outsiders: u64,
    /// Times another process with this node's identity (a copied node
    /// directory) was seen signing above it.
    #[serde(default)]
    pub identity_clashes: u64,
    /// Node id.
    pub id: String,
    /// Nickname.
    pub nickname: Option<String>,
    /// Seconds running.
    pub uptime_s: f64,
    /// Records held.
    pub records: u64,
    /// Alive members.
    pub alive: u64,
    /// Suspect members.
    pub suspect: u64,
    /// Dead members.
    pub dead: u64,
    /// Members that left.
    pub left: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Gossip datagrams sent per second since start.
    pub datagrams_sent_per_s: f64,
    /// Gossip bytes sent per second since start.
    pub bytes_sent_per_s: f64,
    /// Storage sessions open now.
    pub sessions_open: u64,
    /// Storage requests answered.
    pub storage_requests: u64,
    /// Mean storage request time, milliseconds.
    pub storage_request_mean_ms: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Capacity offered to the grid, bytes.
    pub storage_capacity: u64,
    /// Bytes of shares stored.
    pub storage_used: u64,
    /// Free bytes on the store's filesystem.
    pub storage_disk_free: u64,
    /// Free bytes never used for shares.
    pub storage_reserve: u64,
    /// Bytes the node can still take (the lesser of capacity left and disk
    /// free above the reserve).
    pub storage_free: u64,
    /// Free space this node's record announces, MiB (re-published when it
    /// moves by more than 64 MiB or 5% of the capacity, at most once a
    /// minute).
    pub published_free_mib: u32,
    /// Whether the share server is listening (the record advertises the
    /// storage role only then).
    #[serde(default)]
    pub storage_serving: bool,
    /// Whether this node's record offers AES-256-GCM sessions.
    #[serde(default)]
    pub sessions_offer_aes_gcm: bool,
    /// Storage accepts that failed and were retried.
    #[serde(default)]
    pub storage_accept_errors: u64,
    /// Storage sessions closed by a deadline (idle, stalled, not reading).
    #[serde(default)]
    pub storage_sessions_timed_out: u64,
    /// Listings answered without a session.
    #[serde(default)]
    pub storage_listings: u64,
    /// Of which in datagrams.
    #[serde(default)]
    pub storage_datagram_listings: u64,
    /// Listing datagrams not answered (malformed, over bounds).
    #[serde(default)]
    pub storage_datagrams_refused: u64,
    /// Scrub passes over the store completed.
    #[serde(default)]
    pub scrub_passes: u64,
    /// Shares the scrub checked.
    #[serde(default)]
    pub scrub_shares_checked: u64,
    /// Bytes the scrub read.
    #[serde(default)]
    pub scrub_bytes_checked: u64,
    /// Corrupt shares the scrub found and quarantined.
    #[serde(default)]
    pub scrub_corrupt_found: u64,
    /// Bytes read in the scrub pass under way (of `storage_used`).
    #[serde(default)]
    pub scrub_pass_bytes: u64,
    /// The grid's clock minus this node's, seconds, measured from the
    /// clocks of up to 63 members (their median); none before any.
    #[serde(default)]
    pub clock_offset_s: Option<i64>,
    /// Members whose clocks `clock_offset_s` is the median of.
    #[serde(default)]
    pub clock_peers: u64,
    /// What the repair job has done (`repair_*` keys).
    #[serde(flatten)]
    pub repair: RepairFigures,
}

/// The repair job's figures in `status` (`grapevine repair` shows them with
/// the last errors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairFigures {
    /// Files checked by the repair job.
    #[serde(default)]
    pub repair_files_checked: u64,
    /// Files below their repair threshold at the last pass.
    #[serde(default)]
    pub repair_below_threshold: u64,
    /// Files waiting (grace, another holder, backoff) at the last pass.
    #[serde(default)]
    pub repair_queue: u64,
    /// Repairs started by this node.
    #[serde(default)]
    pub repair_started: u64,
    /// Repairs that healed their file.
    #[serde(default)]
    pub repair_succeeded: u64,
    /// Shares regenerated.
    #[serde(default)]
    pub repair_shares_regenerated: u64,
    /// Bytes repair read.
    #[serde(default)]
    pub repair_bytes_read: u64,
    /// Bytes repair wrote.
    #[serde(default)]
    pub repair_bytes_written: u64,
}

impl From<crate::repair_stats::RepairStatus> for RepairFigures {
    fn from(s: crate::repair_stats::RepairStatus) -> Self {
        RepairFigures {
            repair_files_checked: s.files_checked,
            repair_below_threshold: s.below_threshold,
            repair_queue: s.queue,
            repair_started: s.repairs_started,
            repair_succeeded: s.repairs_succeeded,
            repair_shares_regenerated: s.shares_regenerated,
            repair_bytes_read: s.bytes_read,
            repair_bytes_written: s.bytes_written,
        }
    }
}

/// A node's id and signed record (`grapevine whoami`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Whoami {
    /// Node id.
    pub id: String,
    /// Signed record, hex (none when the node is not running: its record is
    /// signed at start).
    pub record: Option<String>,
}
