//! `grapevine init` and `grapevine run`: arguments, the process's runtime
//! and signals, over `grapevine_node`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

use crate::exit::usage;
use grapevine_node::config::PeerAddr;
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::error::InitError;
use grapevine_node::{control, Node, NodeDir, Options};

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Node directory to create.
    pub dir: PathBuf,
    /// Listen address (UDP gossip and TCP sessions).
    #[arg(long, default_value = "127.0.0.1:7946")]
    pub listen: SocketAddr,
    /// Address others reach this node at, IP:PORT or HOST:PORT, if not
    /// --listen (required with an unspecified one, such as 0.0.0.0;
    /// repeatable).
    #[arg(long)]
    pub advertise: Vec<PeerAddr>,
    /// Seed to join through, IP:PORT or HOST:PORT (repeatable).
    #[arg(long)]
    pub seed: Vec<PeerAddr>,
    /// Nickname.
    #[arg(long)]
    pub nickname: Option<String>,
    /// Storage offered, MiB.
    #[arg(long, default_value_t = 10 * 1024)]
    pub capacity_mib: u32,
    /// The web gateway's address (default: port 3456, or the next free one,
    /// on the listen address if it is a loopback one, else on 127.0.0.1).
    #[arg(long)]
    pub gateway: Option<SocketAddr>,
    /// No web gateway.
    #[arg(long, conflicts_with = "gateway")]
    pub no_gateway: bool,
}

/// `grapevine init DIR`.
///
/// # Errors
/// If the directory holds a node already or cannot be written; bad usage
/// (exit 2) if `run` would refuse the configuration asked for. Nothing is
/// left behind by a failure.
pub fn init(a: &InitArgs) -> Result<()> {
    let d = NodeDir::new(&a.dir);
    let gateway = match (a.gateway, a.no_gateway) {
        (Some(g), _) => Some(g),
        (None, true) => None,
        (None, false) => Some(dir::free_gateway_addr(&d, a.listen).ok_or_else(|| {
            anyhow::anyhow!(
                "no free port for the web gateway from port {}: pass --gateway ADDR or --no-gateway",
                dir::GATEWAY_PORT
            )
        })?),
    };
    let id = match dir::init(
        &d,
        &InitOptions {
            listen: a.listen,
            advertise: a.advertise.clone(),
            seeds: a.seed.clone(),
            nickname: a.nickname.clone(),
            capacity_mib: a.capacity_mib,
            gateway,
        },
    ) {
        Err(e @ InitError::Config { .. }) => usage!("{e}"),
        r => r?,
    };
    outln!("created node {id} in {}", a.dir.display());
    if let Some(g) = gateway {
        outln!("web gateway at http://{g}/ (while the node runs)");
    }
    Ok(())
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Node directory.
    pub dir: PathBuf,
}

/// `grapevine run DIR`: run the node until SIGTERM or SIGINT, then leave
/// the grid gracefully. Gossip and control run on a two-thread runtime,
/// storage on a runtime of its own.
///
/// # Errors
/// Bad configuration, sockets that cannot be bound.
pub fn run(a: &RunArgs) -> Result<()> {
    let dir = NodeDir::new(&a.dir);
    let cfg = dir.load_config();
    // Before the runtimes' threads (see `malloc`).
    if let Ok(c) = &cfg {
        crate::malloc::tune(c.memory_budget());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => {
                control::remove_stale(&dir).await;
                return Err(e.into());
            }
        };
        let drain = cfg.drain_secs;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let node = Node::start(cfg, &dir, Options::process()).await?;
        eprintln!(
            "grapevine node {} running: {}",
            node.id().short(),
            node.listening().join(", ")
        );
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("stopping: storage sessions get up to {drain} s to finish their uploads, then the node leaves the grid");
        node.leave(std::time::Duration::from_secs(5)).await?;
        eprintln!("left the grid");
        Ok(())
    })
}
