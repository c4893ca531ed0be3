//! Counters of a node's traffic and decisions ([`Stats`]).

use crate::store::StoreStats;

/// Counters of this node's traffic and decisions.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Largest datagram sent.
    pub max_datagram: usize,
    /// Datagrams that failed to decode.
    pub malformed: u64,
    /// Datagrams of a message kind this node does not know (sent by a
    /// newer version), dropped.
    pub unknown_kinds: u64,
    /// Datagrams dropped unread because their source exceeded its rate.
    pub rate_limited: u64,
    /// Closed grids: datagrams dropped because their source is not a member.
    pub from_outsiders: u64,
    /// Liveness updates with bad signatures.
    pub forged_liveness: u64,
    /// Unsigned accusations (`Suspect`, `Dead`) ignored because they name
    /// an incarnation the member never signed (as far as this node knows).
    pub accusations_ignored: u64,
    /// Answers not sent (or cut short) because they would have been more
    /// than three times the bytes of a request that echoed no cookie.
    pub answers_capped: u64,
    /// Cookies this node issued.
    pub cookies_issued: u64,
    /// Relayed probes refused: the target is not a live member whose
    /// address has answered.
    pub relays_refused: u64,
    /// Acks refused: their sequence number was of a probe or relay of
    /// this node, but they named another member or came from an address
    /// the ping did not go to (forged).
    pub acks_refused: u64,
    /// Probes this node started (one per probe period with a member to
    /// probe).
    pub probes: u64,
    /// Bare pings sent to validate a new address.
    pub validations: u64,
    /// Members this node declared dead.
    pub declared_dead: u64,
    /// Times this node refuted a suspicion of itself.
    pub refutations: u64,
    /// Times this node signed its record again above a copy of a previous
    /// life's (or to correct its issue time to the grid's clock).
    pub resigned: u64,
    /// Newer records of this node's own id signed no earlier than its own
    /// latest: another process answering it with this identity (once, it
    /// may be a previous life's record signed ahead).
    pub own_signed_since: u64,
    /// Of those, the ones that came within [`TWIN_WINDOW`] of another: two
    /// processes running with one identity (a copied node directory),
    /// signing above each other and taking turns in every member table.
    ///
    /// [`TWIN_WINDOW`]: crate::swim::TWIN_WINDOW
    pub identity_clashes: u64,
    /// Members held dead or departed that spoke again and were offered
    /// this node's record (a `Join`) and a sync: a restart found.
    pub rediscoveries: u64,
    /// Signed facts (alive, left) learned by anti-entropy rather than
    /// gossip.
    pub facts_synced: u64,
    /// Dead and departed members forgotten (a tombstone kept).
    pub expired: u64,
    /// Members forgotten to make room for new ones (the member cap).
    pub evicted: u64,
    /// Timers handled late enough to mean this node is starved of CPU.
    pub late_timers: u64,
    /// Probes left inconclusive because this node was starved.
    pub inconclusive_probes: u64,
    /// Record store counters.
    pub records: StoreStats,
    /// Current local health score.
    pub local_health: u32,
    /// The direct probe's timeout now, milliseconds (the configured one,
    /// stretched by local health and measured round trips).
    pub probe_timeout_ms: u64,
    /// The grid's clock minus this node's, seconds, as measured from
    /// peers (none before any sample).
    pub clock_offset_s: Option<i64>,
    /// Members whose clocks that figure is the median of.
    pub clock_peers: usize,
}
