//! Tunables of the membership core, with presets (as foca's
//! `Config::new_lan`). Public fields: set what differs, take the rest from a
//! preset (`Config { grid: Some(g), ..Config::new_lan() }`).

use std::time::Duration;

/// Tunables of the membership core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between probes.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: usize,
    /// Suspicion timeout = `suspicion_mult * max(1, log10(N)) * probe_interval`
    /// (times the local health factor).
    pub suspicion_mult: f64,
    /// Time between push-gossip rounds while updates are queued.
    pub gossip_interval: Duration,
    /// Members pushed to per gossip round.
    pub gossip_fanout: usize,
    /// Each state update is sent `retransmit_mult * ceil(log10(N+1))` times.
    pub retransmit_mult: u32,
    /// Each record is pushed this many times by each node that accepts it;
    /// anti-entropy delivers it to whoever the push missed. Records are
    /// large and every node must verify each once, so they are pushed less
    /// than the small state updates.
    pub record_retransmits: u32,
    /// Time between anti-entropy rounds when in sync.
    pub sync_interval: Duration,
    /// Time between anti-entropy rounds while differences remain.
    pub sync_fast_interval: Duration,
    /// Records pushed in answer to one anti-entropy request, at most.
    pub sync_max_records: usize,
    /// Differing buckets listed in one anti-entropy round, at most.
    pub sync_max_buckets: usize,
    /// First join retry delay; doubles up to `join_retry_max`.
    pub join_retry_initial: Duration,
    /// Longest join retry delay.
    pub join_retry_max: Duration,
    /// Highest local health score (timeouts stretch up to `1 + max` times).
    pub max_local_health: u32,
    /// Time between pings to a random member believed dead, so that a
    /// member wrongly declared dead (a healed partition) hears it and
    /// refutes.
    pub reconnect_interval: Duration,
    /// Datagrams a second accepted from one source address (0: no limit);
    /// more are dropped before they are parsed.
    pub max_datagrams_per_source: u32,
    /// Burst of datagrams allowed from one source address.
    pub datagram_burst: u32,
    /// A closed grid: records without a valid admission certificate for
    /// this grid key are ignored, so their nodes never become members.
    pub grid: Option<grapevine_crypto::GridId>,
    /// How far clocks may disagree: a record issued further ahead of the
    /// grid's time (measured from peers' clocks) is held back, and an
    /// admission certificate counts as expired only this long after its
    /// expiry (the same allowance where a node checks its own certificate
    /// and where members check it).
    pub clock_allowance: Duration,
    /// A member declared dead is forgotten after this long (a tombstone
    /// is kept as long again).
    pub dead_expiry: Duration,
    /// A member that left is forgotten after this long (a tombstone is
    /// kept as long again); until then it is pinged now and then, in case
    /// it came back.
    pub left_expiry: Duration,
    /// Most members held (see `swim::expire` for what happens at the cap).
    pub max_members: usize,
}

impl Config {
    /// Defaults for a LAN or a single host.
    pub fn new_lan() -> Self {
        Config {
            probe_interval: Duration::from_millis(1000),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 3,
            suspicion_mult: 2.5,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            retransmit_mult: 3,
            record_retransmits: 2,
            sync_interval: Duration::from_secs(3),
            sync_fast_interval: Duration::from_millis(500),
            sync_max_records: 96,
            sync_max_buckets: 32,
            join_retry_initial: Duration::from_millis(500),
            join_retry_max: Duration::from_secs(30),
            max_local_health: 8,
            reconnect_interval: Duration::from_secs(10),
            max_datagrams_per_source: 200,
            datagram_burst: 400,
            grid: None,
            clock_allowance: Duration::from_secs(grapevine_crypto::admission::CLOCK_ALLOWANCE_SECS),
            dead_expiry: Duration::from_secs(24 * 3600),
            left_expiry: Duration::from_secs(3600),
            max_members: 16_384,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new_lan()
    }
}
