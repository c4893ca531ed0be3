//! A node's configuration: the schema of `config.toml`, its defaults, and
//! loading with errors that name the file, the line and the key.
//!
//! Everything a running node needs from its configuration is checked at
//! load ([`load`]): a `listen` of `0.0.0.0` needs `advertise`, seeds must be
//! reachable addresses (`IP:PORT` or `HOST:PORT`, see [`PeerAddr`]), a
//! closed grid needs both its id and this node's certificate (and both must
//! parse), and settings that would make the node useless (no client
//! sessions, no storage handshakes, storage offered with no capacity,
//! impossible share parameters) are refused. A [`Config`] built in code (as
//! the in-process harnesses do, from [`Config::new`]) goes through the same
//! checks in [`Config::validate`] when the node starts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use grapevine_crypto::{Admission, GridId, SessionConfig};
use grapevine_storage::server::{ScrubConfig, ServerLimits};
use grapevine_storage::{MemoryBudget, Params, PoolConfig};
use serde::{Deserialize, Serialize};

pub use crate::addr::PeerAddr;
use crate::error::ConfigError;

/// What a node does for the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves shares from its store.
    Storage,
    /// Uploads and downloads (put, get, check).
    Client,
}

/// The node's configuration (`config.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Human-readable name (16 bytes at most).
    #[serde(default)]
    pub nickname: Option<String>,
    /// Address for UDP gossip and TCP sessions (the same port).
    pub listen: SocketAddr,
    /// Addresses others should use, if not `listen` (host names are
    /// resolved at start and about once a minute after).
    #[serde(default)]
    pub advertise: Vec<PeerAddr>,
    /// Nodes to join through (host names are resolved at start and again on
    /// each join retry).
    #[serde(default)]
    pub seeds: Vec<PeerAddr>,
    /// Storage offered, MiB.
    #[serde(default = "default_capacity")]
    pub capacity_mib: u32,
    /// Free space never used for shares, MiB.
    #[serde(default = "default_reserve")]
    pub reserve_mib: u64,
    /// Roles: storage and/or client.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off if absent).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// A closed grid's id (from `grapevine grid new`): only admitted nodes
    /// are members, and sessions from others are refused.
    #[serde(default)]
    pub grid: Option<String>,
    /// This node's admission certificate (from `grapevine grid admit`).
    #[serde(default)]
    pub admission: Option<String>,
    /// Sessions a client (put, get, check) keeps open at once.
    #[serde(default = "default_client_sessions")]
    pub client_sessions: usize,
    /// Seconds an idle client session stays open.
    #[serde(default = "default_client_idle_secs")]
    pub client_idle_secs: u64,
    /// Storage handshakes in progress at once (more are refused).
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// Seconds a stopping node gives uploads in progress to finish before
    /// it closes their sessions and leaves.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// Seconds between re-signings of the node's record at most (to publish
    /// its free space or new addresses): every re-signed record costs every
    /// node of the grid a signature check.
    #[serde(default = "default_record_refresh_secs")]
    pub record_refresh_secs: u64,
    /// Shares needed to read a file (k), for uploads not told otherwise.
    #[serde(default = "default_needed")]
    pub shares_needed: u16,
    /// Shares made (n), for uploads not told otherwise.
    #[serde(default = "default_total")]
    pub shares_total: u16,
    /// Distinct servers that must take shares for an upload to succeed,
    /// for uploads not told otherwise.
    #[serde(default = "default_happy")]
    pub shares_happy: u16,
    /// Serve the web gateway (Tahoe-style web API and the welcome page) at
    /// http://ADDR/ (off if absent).
    #[serde(default)]
    pub gateway: Option<SocketAddr>,
    /// Host names the gateway answers to besides IP addresses and
    /// `localhost` (a DNS name, or a reverse proxy's), any port.
    #[serde(default)]
    pub gateway_hosts: Vec<String>,
    /// Largest upload the gateway takes, MiB.
    #[serde(default = "default_gateway_max_upload_mib")]
    pub gateway_max_upload_mib: u64,
    /// Storage sessions served at once (more wait in the backlog).
    #[serde(default = "default_max_storage_sessions")]
    pub max_storage_sessions: usize,
    /// Seconds a storage session may idle (or, holding shares open, not
    /// write) before the server closes it and frees its reservations.
    #[serde(default = "default_storage_idle_secs")]
    pub storage_idle_secs: u64,
    /// Seconds a storage request may take: a client's deadline for each
    /// answer, a server's for the peer to take one.
    #[serde(default = "default_request_secs")]
    pub request_secs: u64,
    /// MiB per second the background scrub reads (0: no scrub).
    #[serde(default = "default_scrub_mib_per_s")]
    pub scrub_mib_per_s: u32,
    /// Hours between the end of one scrub pass and the start of the next.
    #[serde(default = "default_scrub_interval_hours")]
    pub scrub_interval_hours: u64,
    /// Whether this node checks the files it holds shares of and repairs
    /// them (see docs/durability.md).
    #[serde(default = "default_repair")]
    pub repair: bool,
    /// Seconds between two checks of every held file.
    #[serde(default = "default_repair_check_secs")]
    pub repair_check_secs: u64,
    /// Seconds a file must stay below its threshold before it is repaired
    /// (a restart or a short partition starts no repair).
    #[serde(default = "default_repair_grace_secs")]
    pub repair_grace_secs: u64,
    /// Extra seconds a holder waits per live holder ranked before it, so
    /// the first repairs and the others take over only if it does not.
    #[serde(default = "default_repair_takeover_secs")]
    pub repair_takeover_secs: u64,
    /// Distinct good shares below which a file is repaired, between k and
    /// n (0: the file's `shares_happy`).
    #[serde(default)]
    pub repair_threshold: u16,
    /// MiB per second repair reads and writes at most.
    #[serde(default = "default_repair_mib_per_s")]
    pub repair_mib_per_s: u32,
    /// MiB the data path may hold, on each side: the share server's
    /// requests answered at once, and every put, get, check and repair
    /// made through this node (the CLI's too, unless `--memory-budget`
    /// says otherwise): segments in the upload pipeline, read-ahead,
    /// requests in flight per session. 0: no bound. See
    /// [`MemoryBudget`] and docs/operator.md ("Small boards").
    #[serde(default = "default_memory_budget_mib")]
    pub memory_budget_mib: u32,
}

/// The default [`Config::memory_budget_mib`]: sized for a small board
/// running the node and the CLI together in 16 MiB.
pub const DEFAULT_MEMORY_BUDGET_MIB: u32 = 8;

fn default_memory_budget_mib() -> u32 {
    DEFAULT_MEMORY_BUDGET_MIB
}

fn default_repair() -> bool {
    true
}
fn default_repair_check_secs() -> u64 {
    3600
}
fn default_repair_grace_secs() -> u64 {
    4 * 3600
}
fn default_repair_takeover_secs() -> u64 {
    3600
}
fn default_repair_mib_per_s() -> u32 {
    4
}

fn default_needed() -> u16 {
    Params::default().k
}
fn default_total() -> u16 {
    Params::default().n
}
fn default_happy() -> u16 {
    Params::default().happy
}
fn default_drain_secs() -> u64 {
    5
}
fn default_record_refresh_secs() -> u64 {
    60
}
fn default_gateway_max_upload_mib() -> u64 {
    16 * 1024
}
fn default_max_storage_sessions() -> usize {
    1024
}
fn default_storage_idle_secs() -> u64 {
    60
}
fn default_request_secs() -> u64 {
    30
}
fn default_scrub_mib_per_s() -> u32 {
    8
}
fn default_scrub_interval_hours() -> u64 {
    7 * 24
}

fn default_client_sessions() -> usize {
    64
}
fn default_client_idle_secs() -> u64 {
    30
}
fn default_max_handshakes() -> usize {
    256
}
fn default_capacity() -> u32 {
    10 * 1024
}
fn default_reserve() -> u64 {
    1024
}
fn default_roles() -> Vec<Role> {
    vec![Role::Storage, Role::Client]
}

impl Config {
    /// The defaults, listening on `listen`: both roles, 10 GiB offered,
    /// 1 GiB reserve, no seeds, no metrics, no gateway, open grid.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            nickname: None,
            listen,
            advertise: Vec::new(),
            seeds: Vec::new(),
            capacity_mib: default_capacity(),
            reserve_mib: default_reserve(),
            roles: default_roles(),
            metrics: None,
            grid: None,
            admission: None,
            client_sessions: default_client_sessions(),
            client_idle_secs: default_client_idle_secs(),
            max_handshakes: default_max_handshakes(),
            drain_secs: default_drain_secs(),
            record_refresh_secs: default_record_refresh_secs(),
            shares_needed: default_needed(),
            shares_total: default_total(),
            shares_happy: default_happy(),
            gateway: None,
            gateway_hosts: Vec::new(),
            gateway_max_upload_mib: default_gateway_max_upload_mib(),
            max_storage_sessions: default_max_storage_sessions(),
            storage_idle_secs: default_storage_idle_secs(),
            request_secs: default_request_secs(),
            scrub_mib_per_s: default_scrub_mib_per_s(),
            scrub_interval_hours: default_scrub_interval_hours(),
            repair: default_repair(),
            repair_check_secs: default_repair_check_secs(),
            repair_grace_secs: default_repair_grace_secs(),
            repair_takeover_secs: default_repair_takeover_secs(),
            repair_threshold: 0,
            repair_mib_per_s: default_repair_mib_per_s(),
            memory_budget_mib: default_memory_budget_mib(),
        }
    }

    /// The data path's memory budget (`memory_budget_mib`; 0 is no bound).
    pub fn memory_budget(&self) -> MemoryBudget {
        budget_of_mib(self.memory_budget_mib)
    }

    /// The share parameters uploads use unless told otherwise.
    pub fn params(&self) -> Params {
        Params {
            k: self.shares_needed,
            n: self.shares_total,
            happy: self.shares_happy,
        }
    }

    /// Whether the node has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The closed grid and this node's admission, if configured.
    ///
    /// # Errors
    /// A malformed grid id or certificate, or one without the other (the
    /// message names the key; [`load`] adds the file).
    pub fn closed_grid(&self) -> Result<Option<(GridId, Admission)>, String> {
        match (&self.grid, &self.admission) {
            (None, None) => Ok(None),
            (Some(g), Some(a)) => Ok(Some((
                g.parse()
                    .map_err(|e| format!("`grid` is not a grid id: {e}"))?,
                a.parse().map_err(|e| format!("`admission`: {e}"))?,
            ))),
            (Some(_), None) => Err(
                "`grid` is set but `admission` is not: get one with `grapevine grid admit`".into(),
            ),
            (None, Some(_)) => Err("`admission` is set but `grid` is not".into()),
        }
    }

    /// Session settings for this node's grid (the closed grid's id, if any).
    /// Call on a validated configuration; an unparseable grid id counts as
    /// an open grid here.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            grid: self.closed_grid().ok().flatten().map(|(g, _)| g),
            ..SessionConfig::default()
        }
    }

    /// The client session pool's limits.
    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            max_sessions: self.client_sessions,
            idle_timeout: Duration::from_secs(self.client_idle_secs),
            request_timeout: Duration::from_secs(self.request_secs),
            memory: self.memory_budget(),
            ..PoolConfig::default()
        }
    }

    /// The share server's limits: sessions, handshakes, deadlines.
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            session: self.session_config(),
            max_handshakes: self.max_handshakes,
            max_sessions: self.max_storage_sessions,
            idle_timeout: Duration::from_secs(self.storage_idle_secs),
            request_timeout: Duration::from_secs(self.request_secs),
            max_requests: self.memory_budget().server_requests(),
            ..ServerLimits::default()
        }
    }

    /// The background scrub's pace.
    pub fn scrub_config(&self) -> ScrubConfig {
        ScrubConfig {
            bytes_per_s: u64::from(self.scrub_mib_per_s) << 20,
            interval: Duration::from_secs(self.scrub_interval_hours.saturating_mul(3600)),
        }
    }

    /// The repair job's settings: the planner's backoff runs from one
    /// check interval to a day.
    pub fn repair_settings(&self) -> crate::repair_stats::RepairSettings {
        let interval = Duration::from_secs(self.repair_check_secs.max(1));
        crate::repair_stats::RepairSettings {
            enabled: self.repair,
            interval,
            planner: grapevine_storage::repair::PlannerConfig {
                grace: Duration::from_secs(self.repair_grace_secs),
                threshold: (self.repair_threshold > 0).then_some(self.repair_threshold),
                takeover: Duration::from_secs(self.repair_takeover_secs),
                backoff_min: interval,
                backoff_max: Duration::from_secs(86_400).max(interval),
            },
            bytes_per_s: (u64::from(self.repair_mib_per_s) << 20).max(1),
        }
    }

    /// Check what the schema cannot: addresses, the closed grid, the
    /// nickname. `path` names the file in messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.advertise.is_empty() && self.listen.ip().is_unspecified() {
            return Err(invalid(format!(
                "`listen` is {} but `advertise` is empty: say where others can reach this node",
                self.listen
            )));
        }
        let unreachable =
            |a: &PeerAddr| a.port() == 0 || a.ip().is_some_and(|a| a.ip().is_unspecified());
        for s in &self.seeds {
            if unreachable(s) {
                return Err(invalid(format!(
                    "seed {s} is not an address a node can be reached at"
                )));
            }
        }
        for a in &self.advertise {
            if unreachable(a) {
                return Err(invalid(format!(
                    "`advertise` {a} is not an address a node can be reached at"
                )));
            }
        }
        if self.client_sessions == 0 {
            return Err(invalid(
                "`client_sessions` is 0: put, get and check could open no session; the default is 64".into(),
            ));
        }
        if self.repair && (self.repair_check_secs == 0 || self.repair_mib_per_s == 0) {
            return Err(invalid(
                "`repair_check_secs` and `repair_mib_per_s` must be above 0 while `repair` is on; \
                 the defaults are 3600 and 4, and `repair = false` turns repair off"
                    .into(),
            ));
        }
        if self.max_handshakes == 0 {
            return Err(invalid(
                "`max_handshakes` is 0: the node would refuse every storage session; the default is 256".into(),
            ));
        }
        if self.capacity_mib == 0 && self.has_role(Role::Storage) {
            return Err(invalid(
                "`capacity_mib` is 0 but `roles` includes \"storage\": offer some space, or remove the storage role".into(),
            ));
        }
        if self.record_refresh_secs == 0 {
            return Err(invalid(
                "`record_refresh_secs` is 0: the node would re-sign its record without pause; the default is 60".into(),
            ));
        }
        let p = self.params();
        if p.validate().is_err() {
            return Err(invalid(format!(
                "`shares_needed` = {}, `shares_total` = {}, `shares_happy` = {} cannot work: \
                 need 1 <= shares_needed <= shares_total <= 256 and 1 <= shares_happy <= shares_total",
                p.k, p.n, p.happy
            )));
        }
        if let Some(n) = &self.nickname {
            if n.len() > grapevine_crypto::record::MAX_NICKNAME_LEN {
                return Err(invalid(format!(
                    "`nickname` {n:?} is longer than {} bytes",
                    grapevine_crypto::record::MAX_NICKNAME_LEN
                )));
            }
        }
        for h in &self.gateway_hosts {
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') {
                return Err(invalid(format!(
                    "`gateway_hosts` entry {h:?} is not a host name (no port, scheme or path)"
                )));
            }
        }
        for (key, v) in [
            ("max_storage_sessions", self.max_storage_sessions as u64),
            ("storage_idle_secs", self.storage_idle_secs),
            ("request_secs", self.request_secs),
        ] {
            if v == 0 {
                return Err(invalid(format!("`{key}` is 0: it must be at least 1")));
            }
        }
        self.closed_grid().map_err(invalid)?;
        Ok(())
    }
}

/// A memory budget of `mib` MiB, 0 meaning no bound (the configuration
/// key's and the CLI option's reading).
pub fn budget_of_mib(mib: u32) -> MemoryBudget {
    match mib {
        0 => MemoryBudget::UNBOUNDED,
        m => MemoryBudget::mib(u64::from(m)),
    }
}

/// Parse `text` as the contents of `path`; errors name the file, the line
/// and (where the line has one) the key.
///
/// # Errors
/// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let cfg: Config = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map(|before| before.matches('\n').count() + 1)
            .unwrap_or(0);
        let key = text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| format!(" key `{}`:", k.trim()))
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            key,
            message: e.message().to_string(),
        }
    })?;
    cfg.validate(path)?;
    Ok(cfg)
}

/// Load and check the configuration file at `path`.
///
/// # Errors
/// [`ConfigError`] naming the file, line and key.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/n/config.toml")
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = parse(p(), "listen = \"127.0.0.1:7946\"\n").unwrap();
        assert_eq!(c.capacity_mib, 10240);
        assert_eq!(c.roles, vec![Role::Storage, Role::Client]);
        assert_eq!(c.pool_config().max_sessions, 64);
        assert_eq!(c.pool_config().request_timeout, Duration::from_secs(30));
        let l = c.server_limits();
        assert_eq!((l.max_sessions, l.max_handshakes), (1024, 256));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.scrub_config().bytes_per_s, 8 << 20);
        assert!(c.session_config().grid.is_none());
        assert!(c.gateway.is_none(), "the gateway is off unless configured");
        assert_eq!(c.gateway_max_upload_mib, 16384);
        let r = c.repair_settings();
        assert!(r.enabled);
        assert_eq!(r.interval, Duration::from_secs(3600));
        assert_eq!(r.planner.grace, Duration::from_secs(4 * 3600));
        assert_eq!(r.planner.threshold, None, "the file's happy");
        assert_eq!(r.bytes_per_s, 4 << 20);
        assert_eq!(c.memory_budget(), MemoryBudget::mib(8));
        assert_eq!(c.pool_config().memory, MemoryBudget::mib(8));
        assert_eq!(l.max_requests, 3);
        let c = parse(p(), "listen = \"127.0.0.1:7946\"\nmemory_budget_mib = 0\n").unwrap();
        assert_eq!(c.pool_config().memory, MemoryBudget::UNBOUNDED);
        assert_eq!(c.server_limits().max_requests, usize::MAX);
        let c = parse(p(), "listen = \"127.0.0.1:7946\"\nrepair_threshold = 5\n").unwrap();
        assert_eq!(c.repair_settings().planner.threshold, Some(5));
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let e = parse(
            p(),
            "listen = \"127.0.0.1:7946\"\n\ncapacity_mib = \"lots\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/n/config.toml:3: key `capacity_mib`: invalid type"),
            "{e}"
        );
        let e = parse(p(), "listen = \"127.0.0.1:7946\"\nroles = [\"cache\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2: key `roles`:"), "{e}");
        let e = parse(p(), "listen = \"127.0.0.1:7946\"\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        // A key at the start of its line (an unknown one appended to the
        // commented file) is named with its own line, not the one above.
        let e = parse(p(), "listen = \"127.0.0.1:7946\"\n# a = 1\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/n/config.toml:3: key `bogus`: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn seeds_and_advertise_take_host_names_and_share_parameters_have_defaults() {
        let c = parse(
            p(),
            "listen = \"0.0.0.0:7946\"\nadvertise = [\"me.dyn.example:7946\"]\nseeds = [\"10.0.0.1:7946\", \"seed.example.org:7946\"]\nshares_needed = 2\n",
        )
        .unwrap();
        assert_eq!(c.seeds[1].to_string(), "seed.example.org:7946");
        assert!(c.seeds[0].ip().is_some());
        assert_eq!(c.advertise[0].to_string(), "me.dyn.example:7946");
        assert_eq!(
            c.params(),
            Params {
                k: 2,
                n: 10,
                happy: 7
            }
        );
        let e = parse(p(), "listen = \"127.0.0.1:7946\"\nseeds = [\"seed\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2: key `seeds`:") && e.contains("HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn unusable_settings_are_refused_with_the_setting_named() {
        for (text, want) in [
            (
                "listen = \"127.0.0.1:7946\"\nclient_sessions = 0\n",
                "`client_sessions` is 0",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nmax_handshakes = 0\n",
                "`max_handshakes` is 0",
            ),
            (
                "listen = \"127.0.0.1:7946\"\ncapacity_mib = 0\n",
                "`capacity_mib` is 0",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nshares_needed = 0\n",
                "`shares_needed` = 0, `shares_total` = 10, `shares_happy` = 7 cannot work",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nshares_happy = 11\n",
                "`shares_happy` = 11 cannot work",
            ),
            (
                "listen = \"0.0.0.0:7946\"\nadvertise = [\"0.0.0.0:7946\"]\n",
                "`advertise` 0.0.0.0:7946",
            ),
            ("listen = \"0.0.0.0:7946\"\n", "`advertise` is empty"),
            (
                "listen = \"127.0.0.1:7946\"\nseeds = [\"0.0.0.0:0\"]\n",
                "seed 0.0.0.0:0",
            ),
            (
                "listen = \"127.0.0.1:7946\"\ngrid = \"x\"\n",
                "`admission` is not",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nadmission = \"gv:adm:x\"\n",
                "`grid` is not",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nnickname = \"a-very-long-nickname\"\n",
                "longer than 16 bytes",
            ),
            (
                "listen = \"127.0.0.1:7946\"\ngateway_hosts = [\"nas.example:3456\"]\n",
                "`gateway_hosts` entry \"nas.example:3456\"",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nstorage_idle_secs = 0\n",
                "`storage_idle_secs` is 0",
            ),
            (
                "listen = \"127.0.0.1:7946\"\nrepair_check_secs = 0\n",
                "`repair_check_secs` and `repair_mib_per_s` must be above 0",
            ),
        ] {
            let e = parse(p(), text).unwrap_err().to_string();
            assert!(e.starts_with("/n/config.toml: ") && e.contains(want), "{e}");
        }
    }
}
