//! A node's directory, configuration and run loop, and the control socket
//! through which the CLI talks to a running node.
//!
//! ```text
//! DIR/identity.key        ed25519 seed, mode 0600
//! DIR/convergence.secret  32 random bytes (hex), mode 0600
//! DIR/config.toml         commented configuration
//! DIR/storage/            the share store
//! DIR/control.sock        Unix control socket, mode 0600, while running
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use grapevine_crypto::{Identity, LocationRecord, SessionConfig, SignedRecord};
use grapevine_membership::driver::{spawn, MembershipHandle, NodeConfig as GossipConfig};
use grapevine_membership::{Config, MemberState};
use grapevine_storage::server::counters as sc;
use grapevine_storage::ShareStore;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket, UnixListener, UnixStream};

/// The node's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Human-readable name (16 bytes at most).
    #[serde(default)]
    pub nickname: Option<String>,
    /// Address for UDP gossip and TCP sessions (the same port).
    pub listen: SocketAddr,
    /// Addresses others should use, if not `listen`.
    #[serde(default)]
    pub advertise: Vec<SocketAddr>,
    /// Nodes to join through.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// Storage offered, MiB.
    #[serde(default = "default_capacity")]
    pub capacity_mib: u32,
    /// Free space never used for shares, MiB.
    #[serde(default = "default_reserve")]
    pub reserve_mib: u64,
    /// Roles: "storage" and/or "client".
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// Serve Prometheus text metrics at http://ADDR/metrics (off if absent).
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

impl FileConfig {
    /// The closed grid and this node's admission, if configured.
    ///
    /// # Errors
    /// A malformed grid id or certificate, or one without the other.
    pub fn closed_grid(
        &self,
    ) -> Result<Option<(grapevine_crypto::GridId, grapevine_crypto::Admission)>> {
        match (&self.grid, &self.admission) {
            (None, None) => Ok(None),
            (Some(g), Some(a)) => Ok(Some((
                g.parse()
                    .map_err(|e| anyhow::anyhow!("`grid` is not a grid id: {e}"))?,
                a.parse().map_err(|e| anyhow::anyhow!("`admission`: {e}"))?,
            ))),
            (Some(_), None) => {
                bail!("`grid` is set but `admission` is not: get one with `grapevine grid admit`")
            }
            (None, Some(_)) => bail!("`admission` is set but `grid` is not"),
        }
    }

    /// Session settings for this node's grid.
    ///
    /// # Errors
    /// As [`FileConfig::closed_grid`].
    pub fn session_config(&self) -> Result<SessionConfig> {
        Ok(SessionConfig {
            grid: self.closed_grid()?.map(|(g, _)| g),
            ..SessionConfig::default()
        })
    }
}

fn default_capacity() -> u32 {
    10 * 1024
}
fn default_reserve() -> u64 {
    1024
}
fn default_roles() -> Vec<String> {
    vec!["storage".into(), "client".into()]
}

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Node directory to create.
    pub dir: PathBuf,
    /// Listen address (UDP gossip and TCP sessions).
    #[arg(long, default_value = "127.0.0.1:7946")]
    pub listen: SocketAddr,
    /// Seed to join through (repeatable).
    #[arg(long)]
    pub seed: Vec<SocketAddr>,
    /// Nickname.
    #[arg(long)]
    pub nickname: Option<String>,
    /// Storage offered, MiB.
    #[arg(long, default_value_t = 10 * 1024)]
    pub capacity_mib: u32,
}

fn private_write(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// `grapevine init DIR`.
///
/// # Errors
/// If the directory holds a node already or cannot be written.
pub fn init(a: &InitArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let key = a.dir.join("identity.key");
    if key.exists() {
        bail!(
            "{} already holds a node (identity.key exists)",
            a.dir.display()
        );
    }
    if let Some(n) = &a.nickname {
        if n.len() > grapevine_crypto::record::MAX_NICKNAME_LEN {
            bail!(
                "nickname {n:?} is longer than {} bytes",
                grapevine_crypto::record::MAX_NICKNAME_LEN
            );
        }
    }
    let ident = Identity::generate();
    ident.save(&key)?;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    private_write(
        &a.dir.join("convergence.secret"),
        data_encoding::HEXLOWER.encode(&secret).as_bytes(),
    )?;
    let seeds = a
        .seed
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let nick = a
        .nickname
        .as_ref()
        .map(|n| format!("nickname = \"{n}\""))
        .unwrap_or_else(|| "# nickname = \"my-node\"".into());
    let text = format!(
        "# grapevine node configuration\n\
         \n\
         # A name shown in member tables (16 bytes at most).\n\
         {nick}\n\
         \n\
         # Where this node listens: UDP for gossip and TCP for sessions, same port.\n\
         listen = \"{listen}\"\n\
         \n\
         # Addresses other nodes should use to reach this one, if not `listen`\n\
         # (required when listening on 0.0.0.0).\n\
         advertise = []\n\
         \n\
         # Nodes to join the grid through. Empty for the first node of a grid.\n\
         seeds = [{seeds}]\n\
         \n\
         # Storage offered to the grid, and free space never used, in MiB.\n\
         capacity_mib = {cap}\n\
         reserve_mib = 1024\n\
         \n\
         # \"storage\" serves shares; \"client\" uploads and downloads.\n\
         roles = [\"storage\", \"client\"]\n\
         \n\
         # Prometheus text metrics at http://ADDR/metrics. Keep it on localhost\n\
         # unless a firewall guards the port.\n\
         # metrics = \"127.0.0.1:9464\"\n\
         \n\
         # A closed grid: only nodes with an admission certificate from the\n\
         # grid key are members, and sessions from others are refused. Both\n\
         # lines come from `grapevine grid admit --key GRID.KEY NODE_ID`.\n\
         # grid = \"...\"\n\
         # admission = \"gv:adm:...\"\n\
         \n\
         # Client sessions (put, get, check): at most this many open at once,\n\
         # each closed after this many idle seconds.\n\
         # client_sessions = 64\n\
         # client_idle_secs = 30\n\
         \n\
         # Storage handshakes in progress at once; more are refused.\n\
         # max_handshakes = 256\n",
        listen = a.listen,
        cap = a.capacity_mib,
    );
    private_write(&a.dir.join("config.toml"), text.as_bytes())?;
    println!("created node {} in {}", ident.node_id(), a.dir.display());
    Ok(())
}

/// Load and check `DIR/config.toml`; errors name the file, line and key.
///
/// # Errors
/// Unreadable or invalid configuration.
pub fn load_config(dir: &Path) -> Result<FileConfig> {
    let path = dir.join("config.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: FileConfig = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].lines().count().max(1))
            .unwrap_or(0);
        let key = text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| format!(" key `{}`:", k.trim()))
            .unwrap_or_default();
        anyhow::anyhow!("{}:{line}:{key} {}", path.display(), e.message())
    })?;
    if cfg.advertise.is_empty() && cfg.listen.ip().is_unspecified() {
        bail!(
            "{}: `listen` is {} but `advertise` is empty: say where others can reach this node",
            path.display(),
            cfg.listen
        );
    }
    for s in &cfg.seeds {
        if s.port() == 0 || s.ip().is_unspecified() {
            bail!(
                "{}: seed {s} is not an address a node can be reached at",
                path.display()
            );
        }
    }
    cfg.closed_grid()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for r in &cfg.roles {
        if r != "storage" && r != "client" {
            bail!(
                "{}: unknown role {r:?} in `roles` (use \"storage\" and/or \"client\")",
                path.display()
            );
        }
    }
    Ok(cfg)
}

/// A control request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Control {
    /// This node's id and record.
    Whoami,
    /// Every member as this node sees it.
    Members,
    /// This node's figures.
    Status,
}

/// A member row, as the CLI prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRow {
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
    /// Capacity MiB.
    pub capacity_mib: u32,
    /// Free MiB.
    pub free_mib: u32,
    /// Software version.
    pub version: String,
    /// Signed record, hex.
    pub record: String,
    /// Whether it serves storage.
    pub storage: bool,
}

/// `status` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    /// Records refused for want of a valid admission (closed grids).
    pub records_unadmitted: u64,
    /// Datagrams dropped past their source's rate.
    pub datagrams_rate_limited: u64,
    /// Datagrams dropped because their source is not a member (closed grids).
    pub datagrams_from_outsiders: u64,
    /// Node id.
    pub id: String,
    /// Nickname.
    pub nickname: Option<String>,
    /// Seconds running.
    pub uptime_s: f64,
    /// Records held.
    pub records: u64,
    /// Members per state.
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
    /// Bytes available for shares.
    pub storage_available: u64,
    /// Bytes of shares stored.
    pub storage_stored: u64,
}

/// `whoami` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoamiReply {
    /// Node id.
    pub id: String,
    /// Signed record, hex.
    pub record: String,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Node directory.
    pub dir: PathBuf,
}

/// `grapevine run DIR`: run the node until SIGTERM or SIGINT, then leave
/// the grid gracefully.
///
/// # Errors
/// Bad configuration, sockets that cannot be bound.
pub fn run(a: &RunArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_node(&a.dir))
}

async fn run_node(dir: &Path) -> Result<()> {
    let cfg = load_config(dir)?;
    let ident = Arc::new(Identity::load(&dir.join("identity.key"))?);
    let store = ShareStore::open(&dir.join("storage"), cfg.reserve_mib << 20)?;
    let udp = UdpSocket::bind(cfg.listen)
        .await
        .with_context(|| format!("binding UDP {}", cfg.listen))?;
    let local = udp.local_addr()?;
    let tcp = TcpListener::bind(local)
        .await
        .with_context(|| format!("binding TCP {local}"))?;
    let addrs = if cfg.advertise.is_empty() {
        vec![local]
    } else {
        cfg.advertise.clone()
    };
    let mut rec = LocationRecord::new(&ident, addrs);
    rec.nickname = cfg.nickname.clone();
    rec.capacity_mib = cfg.capacity_mib;
    rec.free_mib = ((store.available()? >> 20) as u32).min(cfg.capacity_mib);
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    rec.seq = unix_ms;
    rec.issued_at = unix_ms / 1000;
    rec.roles = cfg.roles.iter().fold(0, |r, s| {
        r | if s == "storage" {
            grapevine_crypto::record::ROLE_STORAGE
        } else {
            grapevine_crypto::record::ROLE_CLIENT
        }
    });
    let closed = cfg.closed_grid()?;
    if let Some((grid, admission)) = &closed {
        admission
            .verify(grid, &ident.node_id(), rec.issued_at)
            .map_err(|e| {
                anyhow::anyhow!(
                    "this node ({}) is not admitted to grid {grid}: {e}",
                    ident.node_id()
                )
            })?;
        rec.admission = Some(Box::new(*admission));
    }
    let record = rec.sign(&ident)?;
    let handle = spawn(
        udp,
        GossipConfig {
            identity: ident.clone(),
            record: record.clone(),
            seeds: cfg.seeds.clone(),
            swim: Config {
                grid: closed.map(|(g, _)| g),
                ..Config::new_lan()
            },
            state_sink: None,
        },
    )?;
    if cfg.roles.iter().any(|r| r == "storage") {
        // Storage sessions do their reads and writes on their own tasks, so
        // they get a runtime of their own: a slow disk may delay them, never
        // gossip.
        let tcp = tcp.into_std()?;
        let (ident, record, store, session) = (
            ident.clone(),
            record.clone(),
            store.clone(),
            cfg.session_config()?,
        );
        let handshakes = cfg.max_handshakes;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("storage")
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("storage".into())
            .spawn(move || {
                let r = rt.block_on(async move {
                    let tcp = TcpListener::from_std(tcp)?;
                    grapevine_storage::server::run_listener(
                        tcp, ident, record, store, session, handshakes,
                    )
                    .await
                });
                if let Err(e) = r {
                    tracing::error!("storage listener stopped: {e}");
                }
            })?;
    }
    let sock_path = dir.join("control.sock");
    let _ = std::fs::remove_file(&sock_path);
    let control = UnixListener::bind(&sock_path)
        .with_context(|| format!("binding {}", sock_path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        record: record.clone(),
        started: Instant::now(),
        store: store.clone(),
        nickname: cfg.nickname.clone(),
    });
    if let Some(m) = cfg.metrics {
        let l = TcpListener::bind(m)
            .await
            .with_context(|| format!("binding metrics {m}"))?;
        tokio::spawn(serve_metrics(l, ctx.clone()));
    }
    tracing::info!(id = %ident.node_id(), %local, seeds = ?cfg.seeds, "node running");
    eprintln!(
        "grapevine node {} listening on {local} (control: {})",
        ident.node_id().short(),
        sock_path.display()
    );
    let started = Instant::now();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        record,
        started,
        store,
        nickname: cfg.nickname.clone(),
    });
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            c = control.accept() => {
                if let Ok((stream, _)) = c {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_control(stream, &ctx).await {
                            tracing::debug!("control connection: {e}");
                        }
                    });
                }
            }
        }
    }
    eprintln!("leaving the grid");
    let _ = tokio::time::timeout(Duration::from_secs(5), handle.leave()).await;
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

/// The metrics text (Prometheus exposition format 0.0.4).
fn metrics_text(ctx: &Ctx) -> String {
    use std::fmt::Write;
    let c = ctx.handle.counters();
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# HELP grapevine_members Members of the grid by state, as this node sees them."
    );
    let _ = writeln!(t, "# TYPE grapevine_members gauge");
    for (state, v) in [
        ("alive", &c.alive),
        ("suspect", &c.suspect),
        ("dead", &c.dead),
        ("left", &c.left),
    ] {
        let _ = writeln!(t, "grapevine_members{{state=\"{state}\"}} {}", ld(v));
    }
    let gauges = [
        (
            "grapevine_sessions_open",
            "Storage sessions open.",
            ld(&sc::SESSIONS_OPEN),
        ),
        (
            "grapevine_records",
            "Signed location records held.",
            ld(&c.records),
        ),
        (
            "grapevine_rss_bytes",
            "Resident memory of this process.",
            crate::procfs::rss_bytes(),
        ),
        (
            "grapevine_storage_stored_bytes",
            "Bytes of shares stored.",
            ctx.store.stored_bytes(),
        ),
        (
            "grapevine_storage_available_bytes",
            "Bytes available for new shares.",
            ctx.store.available().unwrap_or(0),
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let counters = [
        (
            "grapevine_datagrams_sent_total",
            "Gossip datagrams sent.",
            ld(&c.datagrams_sent),
        ),
        (
            "grapevine_bytes_sent_total",
            "Gossip bytes sent.",
            ld(&c.bytes_sent),
        ),
        (
            "grapevine_datagrams_received_total",
            "Gossip datagrams received.",
            ld(&c.datagrams_received),
        ),
        (
            "grapevine_bytes_received_total",
            "Gossip bytes received.",
            ld(&c.bytes_received),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let _ = writeln!(
        t,
        "# HELP grapevine_storage_request_seconds Time to answer storage requests.\n# TYPE grapevine_storage_request_seconds summary\ngrapevine_storage_request_seconds_sum {:.6}\ngrapevine_storage_request_seconds_count {}",
        ld(&sc::REQUEST_MICROS) as f64 / 1e6,
        ld(&sc::REQUESTS)
    );
    let _ = writeln!(
        t,
        "# HELP grapevine_uptime_seconds Seconds since start.\n# TYPE grapevine_uptime_seconds gauge\ngrapevine_uptime_seconds {:.0}",
        ctx.started.elapsed().as_secs_f64()
    );
    t
}

async fn serve_metrics(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read the request head (bounded in size and time).
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    let r = tokio::io::AsyncReadExt::read(&mut s, &mut buf[n..])
                        .await
                        .ok()?;
                    if r == 0 {
                        return None;
                    }
                    n += r;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        return Some(());
                    }
                }
                None
            })
            .await;
            let (status, body) = match head {
                Ok(Some(())) if buf.starts_with(b"GET /metrics ") => ("200 OK", metrics_text(&ctx)),
                Ok(Some(())) => ("404 Not Found", "not found\n".to_string()),
                _ => return,
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

struct Ctx {
    handle: MembershipHandle,
    record: SignedRecord,
    started: Instant,
    store: ShareStore,
    nickname: Option<String>,
}

fn row(m: &grapevine_membership::MemberView, now: Instant) -> MemberRow {
    let r = m.record.as_ref().map(|r| r.record());
    MemberRow {
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
        storage: r.is_some_and(|r| r.roles & grapevine_crypto::record::ROLE_STORAGE != 0),
    }
}

async fn serve_control(stream: UnixStream, ctx: &Ctx) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        // Read at most 4 KiB per request line, so a client cannot make the
        // node buffer without bound.
        let mut buf = Vec::new();
        let n = (&mut r).take(4097).read_until(b'\n', &mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if n > 4096 {
            bail!("control request too long");
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        let reply = match serde_json::from_str::<Control>(line) {
            Ok(Control::Whoami) => serde_json::to_string(&WhoamiReply {
                id: ctx.handle.id().to_string(),
                record: data_encoding::HEXLOWER.encode(ctx.record.bytes()),
            })?,
            Ok(Control::Members) => {
                let now = tokio::time::Instant::now().into_std();
                let rows: Vec<MemberRow> = ctx
                    .handle
                    .members()
                    .await?
                    .iter()
                    .map(|m| row(m, now))
                    .collect();
                serde_json::to_string(&rows)?
            }
            Ok(Control::Status) => {
                let up = ctx.started.elapsed().as_secs_f64().max(1.0);
                let c = ctx.handle.counters();
                let st = ctx.handle.stats().await?;
                let ld =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                serde_json::to_string(&StatusReply {
                    records_unadmitted: st.records.unadmitted,
                    datagrams_rate_limited: st.rate_limited,
                    datagrams_from_outsiders: st.from_outsiders,
                    id: ctx.handle.id().to_string(),
                    nickname: ctx.nickname.clone(),
                    uptime_s: ctx.started.elapsed().as_secs_f64(),
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
                    sessions_open: ld(&sc::SESSIONS_OPEN),
                    storage_requests: ld(&sc::REQUESTS),
                    storage_request_mean_ms: ld(&sc::REQUEST_MICROS) as f64
                        / 1000.0
                        / (ld(&sc::REQUESTS).max(1) as f64),
                    rss_bytes: crate::procfs::rss_bytes(),
                    storage_available: ctx.store.available().unwrap_or(0),
                    storage_stored: ctx.store.stored_bytes(),
                })?
            }
            Err(e) => serde_json::to_string(&serde_json::json!({ "error": e.to_string() }))?,
        };
        w.write_all(reply.as_bytes()).await?;
        w.write_all(b"\n").await?;
    }
}

/// Send one control request to the node in `dir` and return its JSON reply.
///
/// # Errors
/// If no node is running there.
pub async fn ask(dir: &Path, req: &Control) -> Result<String> {
    let path = dir.join("control.sock");
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no node running in {} (could not connect to {})",
            dir.display(),
            path.display()
        )
    })?;
    let (r, mut w) = stream.into_split();
    w.write_all(serde_json::to_string(req)?.as_bytes()).await?;
    w.write_all(b"\n").await?;
    let mut lines = BufReader::new(r).lines();
    let line = lines
        .next_line()
        .await?
        .context("node closed the control connection")?;
    if line.starts_with("{\"error\"") {
        bail!("node refused the request: {line}");
    }
    Ok(line)
}

/// Members of the grid as the node in `dir` sees them.
///
/// # Errors
/// If no node is running there.
pub async fn members(dir: &Path) -> Result<Vec<MemberRow>> {
    Ok(serde_json::from_str(&ask(dir, &Control::Members).await?)?)
}

/// Whether `state` is one of the states a `--state` filter names.
pub fn state_matches(row: &MemberRow, filter: Option<MemberState>) -> bool {
    filter.is_none_or(|f| row.state == f.to_string())
}
