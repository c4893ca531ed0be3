//! The node directory: what `grapevine init` creates and a node runs from.
//!
//! ```text
//! DIR/identity.key        ed25519 seed, mode 0600
//! DIR/convergence.secret  32 random bytes (hex), mode 0600
//! DIR/config.toml         commented configuration
//! DIR/api_auth_token      the gateway's API token, mode 0600
//! DIR/storage/            the share store
//! DIR/tmp/                uploads to the gateway, spooled (emptied at start)
//! DIR/last_seq            the last sequence number signed (see `seq`)
//! DIR/peers               the peer cache (see `peers`)
//! DIR/control.sock        Unix control socket, mode 0600, while running
//! ```
//!
//! [`NodeDir`] names these paths and loads what is in them; [`init`] makes
//! a new directory (the store's `storage/` included) without ever
//! overwriting an existing identity, and [`free_gateway_addr`] picks a
//! gateway port no other node on the host uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use grapevine_crypto::{Identity, NodeId};

use crate::config::{self, Config, PeerAddr};
use crate::error::{ConfigError, InitError, NodeError};

/// A node directory (which may not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir {
    root: PathBuf,
}

impl NodeDir {
    /// The node directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodeDir { root: root.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `identity.key`.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// `convergence.secret`.
    pub fn secret_path(&self) -> PathBuf {
        self.root.join("convergence.secret")
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `storage/`, the share store.
    pub fn storage_path(&self) -> PathBuf {
        self.root.join("storage")
    }

    /// `api_auth_token`: the gateway's API token.
    pub fn api_token_path(&self) -> PathBuf {
        self.root.join("api_auth_token")
    }

    /// `last_seq`: the last sequence number this node signed.
    pub fn seq_path(&self) -> PathBuf {
        self.root.join("last_seq")
    }

    /// `peers`: the peer cache.
    pub fn peers_path(&self) -> PathBuf {
        self.root.join("peers")
    }

    /// `repair_state`: the repair job's memory across restarts.
    pub fn repair_state_path(&self) -> PathBuf {
        self.root.join("repair_state")
    }

    /// `tmp/`: uploads to the gateway, spooled.
    pub fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The gateway's API token: read from `api_auth_token`, or made (mode
    /// 0600) if the directory has none (a node made before the gateway).
    ///
    /// # Errors
    /// [`NodeError::Secret`] if it cannot be read, written or is empty.
    pub fn api_token(&self) -> Result<String, NodeError> {
        let path = self.api_token_path();
        let bad = |message: String| NodeError::Secret {
            path: path.clone(),
            message,
        };
        if !path.exists() {
            match private_write(&path, new_token().as_bytes(), &mut Vec::new()) {
                Ok(()) => {}
                // Another process made it first: read theirs.
                Err(InitError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        let text = read_private(&path).map_err(bad)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(bad("empty".to_string()));
        }
        Ok(token.to_string())
    }

    /// `control.sock`, while a node runs here.
    pub fn control_path(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// Load and check `config.toml`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and key.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        config::load(&self.config_path())
    }

    /// The node's id, read from its identity key (the node need not run).
    ///
    /// # Errors
    /// As [`NodeDir::load_identity`].
    pub fn node_id(&self) -> Result<NodeId, NodeError> {
        Ok(self.load_identity()?.node_id())
    }

    /// Load the node's identity.
    ///
    /// # Errors
    /// A missing, malformed or group-readable key file.
    pub fn load_identity(&self) -> Result<Identity, NodeError> {
        Ok(Identity::load(&self.identity_path())?)
    }

    /// The convergence secret (keys convergent uploads).
    ///
    /// # Errors
    /// [`NodeError::Secret`] if it is missing or not 32 bytes of hex.
    pub fn convergence_secret(&self) -> Result<[u8; 32], NodeError> {
        let path = self.secret_path();
        let bad = |message: String| NodeError::Secret {
            path: path.clone(),
            message,
        };
        let text = read_private(&path).map_err(bad)?;
        let bytes = data_encoding::HEXLOWER
            .decode(text.trim().as_bytes())
            .map_err(|e| bad(format!("not hex: {e}")))?;
        bytes
            .try_into()
            .map_err(|_| bad("not 32 bytes".to_string()))
    }
}

/// Read a secret file, refusing it if its group or others have any
/// permission (as identity keys are): a secret others could read is not
/// one, and a node should not go on as if it were.
fn read_private(path: &Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "group or others may use it (mode {mode:04o}); `chmod 600 {}` if nobody else has read it, else make a new one",
                path.display()
            ));
        }
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// What `init` writes into a new node's configuration.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Listen address (UDP gossip and TCP sessions).
    pub listen: SocketAddr,
    /// Addresses others use to reach the node, if not `listen` (required
    /// with an unspecified `listen`, such as 0.0.0.0).
    pub advertise: Vec<PeerAddr>,
    /// Seeds to join through (addresses or host names).
    pub seeds: Vec<PeerAddr>,
    /// Nickname.
    pub nickname: Option<String>,
    /// Storage offered, MiB.
    pub capacity_mib: u32,
    /// The web gateway's address (none: no gateway).
    pub gateway: Option<SocketAddr>,
}

/// A new API token: 32 random bytes, base32.
fn new_token() -> String {
    let mut t = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut t);
    data_encoding::BASE32_NOPAD.encode(&t).to_ascii_lowercase()
}

/// Tahoe's web port: the first port [`free_gateway_addr`] tries.
pub const GATEWAY_PORT: u16 = 3456;

/// A gateway address on localhost for a new node at `dir` listening on
/// `listen`: on `listen`'s IP if that is a loopback address (so nodes on
/// 127.0.0.2, 127.0.0.3, ... each have their own), else on 127.0.0.1; port
/// [`GATEWAY_PORT`], or the next one that nothing listens on now and that no
/// node directory beside `dir` has in its configuration (so nodes made one
/// after another in one parent directory, before any runs, do not collide).
/// None if the hundred ports from 3456 are all taken.
pub fn free_gateway_addr(dir: &NodeDir, listen: SocketAddr) -> Option<SocketAddr> {
    let ip = if listen.ip().is_loopback() {
        listen.ip()
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    };
    let claimed: Vec<SocketAddr> = dir
        .path()
        .parent()
        .and_then(|p| std::fs::read_dir(p).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path() != dir.path())
        .filter_map(|e| std::fs::read_to_string(e.path().join("config.toml")).ok())
        .filter_map(|t| t.parse::<toml::Table>().ok())
        .filter_map(|t| t.get("gateway")?.as_str()?.parse::<SocketAddr>().ok())
        .collect();
    (GATEWAY_PORT..GATEWAY_PORT + 100)
        .map(|p| SocketAddr::new(ip, p))
        .filter(|a| !claimed.contains(a))
        .find(|a| std::net::TcpListener::bind(a).is_ok())
}

/// Write a new file at `path`, mode 0600, never over an existing one; once
/// it is made, `made` has it.
fn private_write(path: &Path, contents: &[u8], made: &mut Vec<PathBuf>) -> Result<(), InitError> {
    use std::io::Write;
    let io = |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(io)?;
    made.push(path.to_path_buf());
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// What [`init`] has made so far, removed when dropped unless kept: each
/// file and directory it made in the node directory, then the topmost
/// directory it created, if the node directory was not there before (with
/// everything in it).
#[derive(Debug)]
struct Made {
    /// The topmost directory made, if the node directory was not there.
    top: Option<PathBuf>,
    /// What was made inside the node directory.
    inside: Vec<PathBuf>,
    kept: bool,
}

impl Made {
    /// Make the directory `dir` (and its missing parents).
    fn dir(dir: &Path) -> Result<Made, InitError> {
        // Not there: not even a dangling symlink (which is not ours).
        let absent = |p: &&Path| !p.as_os_str().is_empty() && p.symlink_metadata().is_err();
        let made = Made {
            top: dir
                .ancestors()
                .take_while(absent)
                .last()
                .map(Path::to_path_buf),
            inside: Vec::new(),
            kept: false,
        };
        std::fs::create_dir_all(dir).map_err(|source| InitError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(made)
    }

    /// `path`, inside the node directory, was made.
    fn add(&mut self, path: &Path) {
        self.inside.push(path.to_path_buf());
    }

    /// Keep what was made.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for p in self.inside.iter().rev() {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
        if let Some(top) = &self.top {
            let _ = std::fs::remove_dir_all(top);
        }
    }
}

/// Create a node directory at `dir`: a new identity, a convergence secret,
/// the gateway's API token and a commented `config.toml`. Returns the new
/// node's id.
///
/// The configuration is checked first, by the same check a node runs at
/// start ([`config::parse`]): `init` never writes one `run` would refuse.
///
/// # Errors
/// [`InitError::Exists`] if `dir` holds a node already, and
/// [`InitError::Config`] if a node would refuse the configuration (nothing
/// is changed); I/O errors, after which what `init` made is removed again
/// (the directories it created, or what it wrote into one that was there).
pub fn init(dir: &NodeDir, opts: &InitOptions) -> Result<NodeId, InitError> {
    let key = dir.identity_path();
    if key.exists() {
        return Err(InitError::Exists(dir.path().to_path_buf()));
    }
    let text = config_text(opts);
    config::parse(&dir.config_path(), &text).map_err(|e| InitError::Config {
        dir: dir.path().to_path_buf(),
        message: match e {
            ConfigError::Invalid { message, .. } => message,
            e => e.to_string(),
        },
    })?;
    let mut made = Made::dir(dir.path())?;
    let ident = Identity::generate();
    // identity.key was not there a moment ago: if it is there now, it is
    // this save's.
    made.add(&key);
    ident.save(&key)?;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    private_write(
        &dir.secret_path(),
        data_encoding::HEXLOWER.encode(&secret).as_bytes(),
        &mut made.inside,
    )?;
    private_write(
        &dir.api_token_path(),
        new_token().as_bytes(),
        &mut made.inside,
    )?;
    private_write(&dir.config_path(), text.as_bytes(), &mut made.inside)?;
    let storage = dir.storage_path();
    if !storage.is_dir() {
        std::fs::create_dir(&storage).map_err(|source| InitError::Io {
            path: storage.clone(),
            source,
        })?;
        made.add(&storage);
    }
    made.keep();
    Ok(ident.node_id())
}

/// The commented `config.toml` for `opts`.
pub fn config_text(opts: &InitOptions) -> String {
    let list = |v: &[PeerAddr]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (seeds, advertise) = (list(&opts.seeds), list(&opts.advertise));
    // A TOML string, escaped: a nickname may hold quotes.
    let nick = opts
        .nickname
        .as_ref()
        .map(|n| format!("nickname = {}", toml::Value::from(n.as_str())))
        .unwrap_or_else(|| "# nickname = \"my-node\"".into());
    let gateway = match opts.gateway {
        Some(a) => format!("gateway = \"{a}\""),
        None => "# gateway = \"127.0.0.1:3456\"".into(),
    };
    format!(
        "# grapevine node configuration\n\
         \n\
         # A name shown in member tables (16 bytes at most).\n\
         {nick}\n\
         \n\
         # Where this node listens: UDP for gossip and TCP for sessions, same port.\n\
         listen = \"{listen}\"\n\
         \n\
         # Addresses other nodes should use to reach this one, if not `listen`\n\
         # (required when listening on 0.0.0.0); IP:PORT or HOST:PORT.\n\
         advertise = [{advertise}]\n\
         \n\
         # Nodes to join through, IP:PORT or HOST:PORT; none for a grid's first node.\n\
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
         # The web gateway: Tahoe-style web API and a page that shows the grid,\n\
         # at http://ADDR/. Off if absent. Beyond localhost, uploads need the\n\
         # token in api_auth_token; name the host names it answers to (besides\n\
         # IP addresses and localhost) in gateway_hosts.\n\
         {gateway}\n\
         # gateway_hosts = [\"nas.example.org\"]\n\
         # gateway_max_upload_mib = 16384\n\
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
         # max_handshakes = 256\n\
         \n\
         # Share parameters for `put` without --k/--n/--happy: shares needed to\n\
         # read (k), shares made (n), distinct servers that must take them.\n\
         # shares_needed = 3\n\
         # shares_total = 10\n\
         # shares_happy = 7\n\
         \n\
         # On SIGTERM, seconds given to uploads in progress before leaving.\n\
         # drain_secs = 5\n\
         \n\
         # The node re-signs its record (free space, addresses) at most this\n\
         # often; each re-signed record costs every node a signature check.\n\
         # record_refresh_secs = 60\n\
         \n\
         # Storage sessions served at once; more wait in the backlog.\n\
         # max_storage_sessions = 1024\n\
         \n\
         # MiB the data path may hold on each side (docs/operator.md, \"Small\n\
         # boards\"): requests the share server answers at once, and each put or\n\
         # get (the CLI's too, unless --memory-budget): segments in the upload\n\
         # pipeline, read-ahead, requests in flight per session. 0: no bound.\n\
         # memory_budget_mib = 8\n\
         \n\
         # A storage session idle this long (or holding shares open without\n\
         # writing them) is closed and its reserved space freed; a request's\n\
         # answer must come (or be taken) within request_secs.\n\
         # storage_idle_secs = 60\n\
         # request_secs = 30\n\
         \n\
         # The background scrub re-reads every share at this rate (0: off),\n\
         # and starts a new pass this many hours after the last one ended.\n\
         # scrub_mib_per_s = 8\n\
         # scrub_interval_hours = 168\n\
         \n\
         # Repair (docs/durability.md): every repair_check_secs the node checks\n\
         # the files it holds shares of; one below repair_threshold distinct good\n\
         # shares (0: shares_happy) for longer than repair_grace_secs is repaired\n\
         # by its first live holder in permuted order (the next after\n\
         # repair_takeover_secs more), at repair_mib_per_s.\n\
         # repair = true\n\
         # repair_check_secs = 3600\n\
         # repair_grace_secs = 14400\n\
         # repair_takeover_secs = 3600\n\
         # repair_threshold = 0\n\
         # repair_mib_per_s = 4\n",
        listen = opts.listen,
        cap = opts.capacity_mib,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> InitOptions {
        InitOptions {
            listen: "127.0.0.1:7946".parse().unwrap(),
            advertise: Vec::new(),
            seeds: vec![
                "127.0.0.2:7946".parse().unwrap(),
                "seed.example.org:7946".parse().unwrap(),
            ],
            nickname: Some("n1".into()),
            capacity_mib: 100,
            gateway: Some("127.0.0.1:3999".parse().unwrap()),
        }
    }

    #[test]
    fn init_writes_a_loadable_node_and_never_overwrites_one() {
        let t = tempfile::tempdir().unwrap();
        let d = NodeDir::new(t.path().join("n"));
        let id = init(&d, &opts()).unwrap();
        assert_eq!(d.load_identity().unwrap().node_id(), id);
        let c = d.load_config().unwrap();
        assert_eq!(c.capacity_mib, 100);
        assert_eq!(c.seeds, opts().seeds);
        assert_eq!(c.nickname.as_deref(), Some("n1"));
        assert_eq!(d.convergence_secret().unwrap().len(), 32);
        assert!(
            d.storage_path().is_dir(),
            "init makes the store's directory"
        );
        assert_eq!(d.node_id().unwrap(), id);
        assert_eq!(c.gateway, opts().gateway);
        let token = d.api_token().unwrap();
        assert!(token.len() >= 52, "{token}");
        let key = std::fs::read(d.identity_path()).unwrap();
        assert!(matches!(init(&d, &opts()), Err(InitError::Exists(_))));
        assert_eq!(std::fs::read(d.identity_path()).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [
                d.identity_path(),
                d.secret_path(),
                d.config_path(),
                d.api_token_path(),
            ] {
                let mode = std::fs::metadata(&f).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f:?}");
            }
        }
    }

    #[test]
    fn a_missing_api_token_is_made_private_once() {
        let t = tempfile::tempdir().unwrap();
        let d = NodeDir::new(t.path());
        let a = d.api_token().unwrap();
        assert_eq!(d.api_token().unwrap(), a, "made once, then read");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.api_token_path()).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        std::fs::write(d.api_token_path(), "\n").unwrap();
        assert!(d.api_token().is_err(), "an empty token is refused");
    }

    /// The convergence secret and the API token, like the identity key,
    /// are refused when group or others may read them.
    #[cfg(unix)]
    #[test]
    fn secrets_others_may_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = NodeDir::new(t.path().join("n"));
        init(&d, &opts()).unwrap();
        assert!(d.convergence_secret().is_ok() && d.api_token().is_ok());
        for f in [d.secret_path(), d.api_token_path()] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = match f == d.secret_path() {
                true => d.convergence_secret().map(|_| ()),
                false => d.api_token().map(|_| ()),
            }
            .expect_err("a 0644 secret is refused")
            .to_string();
            assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(d.convergence_secret().is_ok() && d.api_token().is_ok());
    }

    #[test]
    fn gateway_ports_skip_those_in_use_and_those_of_sibling_nodes() {
        let t = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let a = NodeDir::new(t.path().join("a"));
        let first = free_gateway_addr(&a, listen).unwrap();
        assert!(first.ip().is_loopback() && first.port() >= GATEWAY_PORT);
        let mut o = opts();
        o.gateway = Some(first);
        init(&a, &o).unwrap();
        // A sibling made before `a` runs gets another port.
        let b = NodeDir::new(t.path().join("b"));
        let second = free_gateway_addr(&b, listen).unwrap();
        assert_ne!(second.port(), first.port());
        // A port something listens on is skipped too (if another process
        // took it meanwhile, it is in use all the same).
        let busy = std::net::TcpListener::bind(second);
        let third = free_gateway_addr(&b, listen).unwrap();
        assert!(third.port() != second.port() && third.port() != first.port());
        drop(busy);
        // A node on another loopback address has its own; one on a real
        // interface's address still gets one on localhost only.
        let other = free_gateway_addr(&b, "127.0.44.1:7946".parse().unwrap()).unwrap();
        assert_eq!(other.ip().to_string(), "127.0.44.1");
        let lan = free_gateway_addr(&b, "10.0.0.5:7946".parse().unwrap()).unwrap();
        assert_eq!(lan.ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn what_a_node_would_refuse_is_refused_before_anything_is_written() {
        let t = tempfile::tempdir().unwrap();
        let d = NodeDir::new(t.path().join("n"));
        let mut o = opts();
        o.nickname = Some("x".repeat(17));
        let e = init(&d, &o).unwrap_err();
        assert!(
            matches!(&e, InitError::Config { message, .. } if message.contains("longer than 16 bytes")),
            "{e}"
        );
        let mut o = opts();
        o.listen = "0.0.0.0:7946".parse().unwrap();
        let e = init(&d, &o).unwrap_err().to_string();
        assert!(e.contains("`advertise` is empty"), "{e}");
        assert!(!d.path().exists());
        // With `advertise`, and a nickname TOML must escape.
        o.advertise = vec!["node.example.org:7946".parse().unwrap()];
        o.nickname = Some("a \"b\"\\".into());
        init(&d, &o).unwrap();
        let c = d.load_config().unwrap();
        assert_eq!(c.advertise, o.advertise);
        assert_eq!(c.nickname, o.nickname);
    }

    #[test]
    fn a_failed_init_removes_what_it_made_and_only_that() {
        let t = tempfile::tempdir().unwrap();
        // Made: the topmost new directory goes, with all in it.
        let d = NodeDir::new(t.path().join("a").join("n"));
        let mut made = Made::dir(d.path()).unwrap();
        private_write(&d.secret_path(), b"x", &mut made.inside).unwrap();
        drop(made);
        assert!(!t.path().join("a").exists());
        // There before: only what was written into it goes.
        let d = NodeDir::new(t.path());
        std::fs::write(d.config_path(), b"mine").unwrap();
        let mut made = Made::dir(d.path()).unwrap();
        assert!(made.top.is_none());
        private_write(&d.secret_path(), b"x", &mut made.inside).unwrap();
        assert!(private_write(&d.config_path(), b"x", &mut made.inside).is_err());
        drop(made);
        assert!(!d.secret_path().exists());
        assert_eq!(std::fs::read(d.config_path()).unwrap(), b"mine");
        // Kept: stays.
        let mut made = Made::dir(d.path()).unwrap();
        private_write(&d.secret_path(), b"x", &mut made.inside).unwrap();
        made.keep();
        assert!(d.secret_path().exists());
    }
}
