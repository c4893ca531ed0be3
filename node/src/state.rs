//! The running node's shared state, and the reports made from it.
//!
//! [`NodeState`] is what the parts of a running node that only *read*
//! share: the control socket, the metrics endpoint, client operations
//! through the node and (later) the HTTP gateway and repair jobs. It holds
//! handles (membership, share store, client session pool), never the tasks
//! that own them, so a reader imports this module and not the runtime that
//! starts and stops the node (as mini-redis keeps its `Db` apart from its
//! `server`). The reports ([`StatusReport`], [`MemberRow`], [`Whoami`]) are
//! plain serde values: the control protocol sends them as JSON lines and the
//! CLI prints them.
//!
//! Storage-server figures (sessions open, requests answered) are the node's
//! own share server's [`ServerStats`]: with several nodes in one process,
//! each reports its own. Space is reported as [`StorageFigures`]: the
//! capacity offered, the bytes used, the disk's free space and the reserve
//! kept apart, and the space the node can still take (what its record
//! publishes, see [`crate::record`]) derived from them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use grapevine_crypto::record::{FEATURE_AES_GCM, ROLE_STORAGE};
use grapevine_crypto::{Identity, NodeId, SignedRecord};
use grapevine_membership::driver::MembershipHandle;
use grapevine_membership::{MemberState, MemberView, MembershipError};
use grapevine_storage::client::ServerRef;
use grapevine_storage::store::ScrubStats;
use grapevine_storage::{ServerStats, SessionPool, ShareStore};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::procfs;
use crate::seq::{SeqFile, WallClock};

/// A node whose clock is further than this from the grid's (as measured
/// from its peers' clocks) is warned: `status` says so, and the node logs
/// it. Membership itself allows an hour
/// ([`grapevine_crypto::admission::CLOCK_ALLOWANCE_SECS`]).
pub const CLOCK_WARN_SECS: u64 = 30;

/// What the parts of a running node share. Cheap to read; built by
/// [`crate::Node::start`].
pub struct NodeState {
    pub(crate) identity: Arc<Identity>,
    pub(crate) membership: MembershipHandle,
    pub(crate) record: RwLock<SignedRecord>,
    pub(crate) started: Instant,
    pub(crate) store: ShareStore,
    pub(crate) storage_stats: Arc<ServerStats>,
    pub(crate) scrub_stats: Arc<ScrubStats>,
    /// What the repair job has done.
    pub(crate) repair_stats: Arc<crate::repair_stats::RepairStats>,
    /// Whether the share server's listener is alive: the record advertises
    /// the storage role only while it is (every re-signing of the record
    /// must drop the role when this is false).
    pub(crate) storage_serving: AtomicBool,
    pub(crate) nickname: Option<String>,
    pub(crate) pool: Arc<SessionPool>,
    pub(crate) convergence: [u8; 32],
    pub(crate) capacity_mib: u32,
    pub(crate) params: grapevine_storage::Params,
    /// The last sequence number signed, on disk ([`crate::seq`]).
    pub(crate) seqs: Arc<SeqFile>,
    /// The wall clock (skewed only in tests).
    pub(crate) clock: WallClock,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("id", &self.id())
            .field("nickname", &self.nickname)
            .finish_non_exhaustive()
    }
}

impl NodeState {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.membership.id()
    }

    /// The node's identity (for sessions it opens as a client).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The node's current signed record: the newer of the one this node
    /// last signed and the one its membership core holds (which the core
    /// signs again itself above a copy of a previous life's record, or at
    /// the grid's time).
    pub fn record(&self) -> SignedRecord {
        let ours = self
            .record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let core = self.membership.own_record();
        if core.seq() > ours.seq() {
            core
        } else {
            ours
        }
    }

    /// Replace the node's record (after re-signing it).
    pub(crate) fn set_record(&self, rec: SignedRecord) {
        *self.record.write().unwrap_or_else(|p| p.into_inner()) = rec;
    }

    /// The wall clock this node reads.
    pub fn clock(&self) -> WallClock {
        self.clock
    }

    /// The sequence number for the node's next record: above every
    /// number it signed before, the clock's time if that is higher; kept
    /// on disk before it is returned ([`SeqFile::next`]).
    ///
    /// # Errors
    /// [`NodeError::Io`] if it cannot be kept.
    pub async fn next_seq(&self) -> Result<u64, NodeError> {
        let (seqs, now) = (self.seqs.clone(), self.clock.unix_ms());
        tokio::task::spawn_blocking(move || seqs.next(now))
            .await
            .map_err(|e| NodeError::Io {
                what: "keeping the last sequence number".into(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(NodeError::io("keeping the last sequence number"))
    }

    /// The node's space figures now (the store's running counters and one
    /// free-space query of its filesystem).
    pub fn storage_figures(&self) -> StorageFigures {
        StorageFigures::of(&self.store, self.capacity_mib)
    }

    /// The node's membership handle.
    pub fn membership(&self) -> &MembershipHandle {
        &self.membership
    }

    /// What the node's share server has done (zero if it serves no
    /// storage).
    pub fn storage_stats(&self) -> &ServerStats {
        &self.storage_stats
    }

    /// What the store's background scrub has done.
    pub fn scrub_stats(&self) -> &ScrubStats {
        &self.scrub_stats
    }

    /// What the repair job has done.
    pub fn repair_stats(&self) -> &crate::repair_stats::RepairStats {
        &self.repair_stats
    }

    /// Whether the node's share server is listening (false if the node
    /// serves no storage, or its listener failed for good).
    pub fn storage_serving(&self) -> bool {
        self.storage_serving.load(Ordering::Relaxed)
    }

    /// The node's share store.
    pub fn store(&self) -> &ShareStore {
        &self.store
    }

    /// The node's client session pool (put, get and check through this
    /// node share it).
    pub fn pool(&self) -> &Arc<SessionPool> {
        &self.pool
    }

    /// The node's nickname.
    pub fn nickname(&self) -> Option<&str> {
        self.nickname.as_deref()
    }

    /// Seconds since the node started.
    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub(crate) fn convergence_secret(&self) -> [u8; 32] {
        self.convergence
    }

    /// The node's id and record.
    pub fn whoami(&self) -> Whoami {
        Whoami {
            id: self.id().to_string(),
            record: Some(data_encoding::HEXLOWER.encode(self.record().bytes())),
        }
    }

    /// This node (first, marked [`MemberRow::this_node`]) and every other
    /// member as this node sees it.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node's membership has stopped.
    pub async fn member_rows(&self) -> Result<Vec<MemberRow>, MembershipError> {
        let now = tokio::time::Instant::now().into_std();
        let others = self.membership.members().await?;
        let mut rows = Vec::with_capacity(others.len() + 1);
        rows.push(MemberRow::own(&self.record()));
        rows.extend(others.iter().map(|m| MemberRow::of(m, now)));
        Ok(rows)
    }

    /// The storage servers a client of this node uses: itself (if it
    /// serves storage) and every alive member whose record says it does.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node's membership has stopped.
    pub async fn storage_servers(&self) -> Result<Vec<ServerRef>, MembershipError> {
        let members = self.membership.members().await?;
        let own = self.record();
        let alive = members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .filter_map(|m| m.record.as_ref());
        Ok(storage_servers(std::iter::once(&own).chain(alive)))
    }

    /// This node's figures.
    ///
    /// # Errors
    /// [`MembershipError::Stopped`] if the node's membership has stopped.
    pub async fn status(&self) -> Result<StatusReport, MembershipError> {
        let st = self.membership.stats().await?;
        let c = self.membership.counters();
        let up = self.uptime_s().max(1.0);
        let requests = self.storage_stats.requests();
        let space = self.storage_figures();
        Ok(StatusReport {
            records_unadmitted: st.records.unadmitted,
            identity_clashes: st.identity_clashes,
            datagrams_rate_limited: st.rate_limited,
            datagrams_from_outsiders: st.from_outsiders,
            id: self.id().to_string(),
            nickname: self.nickname.clone(),
            uptime_s: self.uptime_s(),
            records: ld(&c.records),
            alive: ld(&c.alive),
            suspect: ld(&c.suspect),
            dead: ld(&c.dead),
            left: ld(&c.left),
            datagrams_sent: ld(&c.datagrams_sent),
            bytes_sent: ld(&c.bytes_sent),
            datagrams_received: ld(&c.datagrams_received),
            datagrams_sent_per_s: ld(&c.datagrams_sent) as f64 / up,
            bytes_sent_per_s: ld(&c.bytes_sent) as f64 / up,
            sessions_open: self.storage_stats.sessions_open(),
            storage_requests: requests,
            storage_request_mean_ms: self.storage_stats.request_micros() as f64
                / 1000.0
                / (requests.max(1) as f64),
            rss_bytes: procfs::rss_bytes(),
            storage_capacity: space.capacity,
            storage_used: space.used,
            storage_disk_free: space.disk_free,
            storage_reserve: space.reserve,
            storage_free: space.free,
            published_free_mib: self.record().record().free_mib,
            storage_serving: self.storage_serving(),
            sessions_offer_aes_gcm: self.record().record().roles & FEATURE_AES_GCM != 0,
            storage_accept_errors: self.storage_stats.accept_errors(),
            storage_sessions_timed_out: self.storage_stats.sessions_timed_out(),
            storage_listings: self.storage_stats.listings(),
            storage_datagram_listings: self.storage_stats.datagram_listings(),
            storage_datagrams_refused: self.storage_stats.datagrams_refused(),
            scrub_passes: self.scrub_stats.passes(),
            scrub_shares_checked: self.scrub_stats.shares_checked(),
            scrub_bytes_checked: self.scrub_stats.bytes_checked(),
            scrub_corrupt_found: self.scrub_stats.corrupt_found(),
            scrub_pass_bytes: self.scrub_stats.pass_bytes(),
            clock_offset_s: st.clock_offset_s,
            clock_peers: st.clock_peers as u64,
            repair: self.repair_stats.status().into(),
        })
    }
}

/// A node's storage space, each figure apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageFigures {
    /// Capacity offered to the grid, bytes.
    pub capacity: u64,
    /// Bytes of shares stored.
    pub used: u64,
    /// Bytes promised to shares being written.
    pub reserved: u64,
    /// Free bytes on the store's filesystem.
    pub disk_free: u64,
    /// Free bytes never used for shares.
    pub reserve: u64,
    /// Bytes a new share may take now: the lesser of what is left of the
    /// capacity and of the disk above the reserve (the store enforces it).
    pub free: u64,
}

impl StorageFigures {
    /// The figures of `store`, offering `capacity_mib`.
    pub fn of(store: &ShareStore, capacity_mib: u32) -> StorageFigures {
        let offered = u64::from(capacity_mib) << 20;
        match store.space() {
            Ok(s) => StorageFigures {
                capacity: s.capacity.unwrap_or(offered),
                used: s.used,
                reserved: s.reserved,
                disk_free: s.disk_free,
                reserve: s.reserve,
                free: s.available,
            },
            Err(e) => {
                tracing::warn!("cannot measure the store's space: {e}");
                StorageFigures {
                    capacity: offered,
                    used: store.stored_bytes(),
                    ..StorageFigures::default()
                }
            }
        }
    }

    /// [`StorageFigures::free`] in MiB, as a record carries it.
    pub fn free_mib(&self) -> u32 {
        u32::try_from(self.free >> 20).unwrap_or(u32::MAX)
    }
}

pub(crate) fn ld(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The storage servers among `records` (those whose roles include storage),
/// each at its first address, without duplicates.
pub fn storage_servers<'a>(records: impl IntoIterator<Item = &'a SignedRecord>) -> Vec<ServerRef> {
    let mut out: Vec<ServerRef> = Vec::new();
    for r in records {
        let rec = r.record();
        if rec.roles & ROLE_STORAGE == 0 {
            continue;
        }
        let Some(addr) = rec.addrs.first() else {
            continue;
        };
        let id = r.node_id();
        if out.iter().all(|s| s.id != id) {
            out.push(ServerRef { id, addr: *addr });
        }
    }
    out
}

/// A member as a node sees it, as the CLI prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRow {
    /// Whether this row is the node answering (JSON `"self"`).
    #[serde(rename = "self", default)]
    pub this_node: bool,
    /// Full node id.
    pub id: String,
    /// Short id.
    pub short: String,
    /// Nickname.
    pub nickname: Option<String>,
    /// First address.
    pub addr: String,
    /// alive / suspect / dead / left.
    pub state: String,
    /// Seconds since last heard directly.
    pub last_heard_s: f64,
    /// Capacity offered, MiB (from its record).
    pub capacity_mib: u32,
    /// Space it can still take, MiB, as its record last published it.
    pub free_mib: u32,
    /// Software version.
    pub version: String,
    /// Signed record, hex.
    pub record: String,
    /// Whether it serves storage.
    pub storage: bool,
}

impl MemberRow {
    /// The row for `m`, with `last_heard_s` measured at `now`.
    pub fn of(m: &MemberView, now: Instant) -> MemberRow {
        let r = m.record.as_ref().map(|r| r.record());
        MemberRow {
            this_node: false,
            id: m.id.to_string(),
            short: m.id.short(),
            nickname: r.and_then(|r| r.nickname.clone()),
            addr: m.addr.to_string(),
            state: m.state.to_string(),
            last_heard_s: now.saturating_duration_since(m.last_heard).as_secs_f64(),
            capacity_mib: r.map(|r| r.capacity_mib).unwrap_or(0),
            free_mib: r.map(|r| r.free_mib).unwrap_or(0),
            version: r.map(|r| r.software.clone()).unwrap_or_default(),
            record: m
                .record
                .as_ref()
                .map(|r| data_encoding::HEXLOWER.encode(r.bytes()))
                .unwrap_or_default(),
            storage: r.is_some_and(|r| r.roles & ROLE_STORAGE != 0),
        }
    }

    /// The row of the node itself, from its own record.
    pub fn own(rec: &SignedRecord) -> MemberRow {
        let r = rec.record();
        MemberRow {
            this_node: true,
            id: rec.node_id().to_string(),
            short: rec.node_id().short(),
            nickname: r.nickname.clone(),
            addr: r.addrs.first().map(|a| a.to_string()).unwrap_or_default(),
            state: MemberState::Alive.to_string(),
            last_heard_s: 0.0,
            capacity_mib: r.capacity_mib,
            free_mib: r.free_mib,
            version: r.software.clone(),
            record: data_encoding::HEXLOWER.encode(rec.bytes()),
            storage: r.roles & ROLE_STORAGE != 0,
        }
    }

    /// Whether the row's state is the one `filter` names (any, if none).
    pub fn state_matches(&self, filter: Option<MemberState>) -> bool {
        filter.is_none_or(|f| self.state == f.to_string())
    }
}

pub use crate::reports::{RepairFigures, StatusReport, Whoami};

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::LocationRecord;

    fn rec(roles: u8, port: u16) -> SignedRecord {
        let i = Identity::generate();
        let mut r = LocationRecord::new(&i, vec![([127, 0, 0, 1], port).into()]);
        r.roles = roles;
        r.sign(&i).unwrap()
    }

    #[test]
    fn space_figures_come_from_the_store_and_free_is_what_it_would_take() {
        let t = tempfile::tempdir().unwrap();
        let store = ShareStore::open_with(
            t.path(),
            grapevine_storage::store::StoreConfig {
                reserve: 0,
                capacity: Some(100 << 20),
                writeback: None,
            },
        )
        .unwrap();
        let si = grapevine_storage::StorageIndex([3; 16]);
        let mut w = store.allocate(&si, 0, 1 << 20).unwrap();
        w.write_at(0, &vec![1u8; 1 << 20]).unwrap();
        w.close().unwrap();
        let f = StorageFigures::of(&store, 100);
        assert_eq!(f.capacity, 100 << 20);
        assert!(f.used >= 1 << 20, "{f:?}");
        assert!(f.disk_free > 0);
        assert!(f.free <= (100 << 20) - (1 << 20), "{f:?}");
        assert_eq!(f.free_mib(), u32::try_from(f.free >> 20).unwrap());
    }

    #[test]
    fn the_own_row_is_marked_and_says_what_the_record_says() {
        let r = rec(ROLE_STORAGE, 9);
        let row = MemberRow::own(&r);
        assert!(row.this_node && row.storage);
        assert_eq!(row.state, "alive");
        assert_eq!(row.addr, "127.0.0.1:9");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["self"], true);
    }

    #[test]
    fn only_storage_members_are_servers_each_once() {
        let s = rec(ROLE_STORAGE, 1);
        let c = rec(grapevine_crypto::record::ROLE_CLIENT, 2);
        let both = rec(ROLE_STORAGE | grapevine_crypto::record::ROLE_CLIENT, 3);
        let servers = storage_servers([&s, &c, &both, &s]);
        let ids: Vec<_> = servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![s.node_id(), both.node_id()]);
        assert_eq!(servers[1].addr.port(), 3);
    }
}
