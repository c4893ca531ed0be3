//! Test and benchmark hooks, compiled only with the `test-util` feature:
//! a share server on a loopback address in one call.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use grapevine_crypto::identity::{Identity, NodeId};
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::record::LocationRecord;

use crate::server::{run_listener, Drain, ServerLimits, ServerStats};
use crate::store::ShareStore;

/// A share server started by [`spawn_local`].
#[derive(Debug)]
pub struct LocalServer {
    /// Its node id (and so its session key).
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has done.
    pub stats: Arc<ServerStats>,
    /// Its accept loop; abort it (and await it) to take the server down.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Start a share server with a fresh identity on `ip` (any free port),
/// storing shares under `store_dir`. For local grids: benchmarks and tests.
///
/// # Errors
/// Socket, store or record errors.
pub async fn spawn_local(
    ip: IpAddr,
    store_dir: &Path,
    nickname: Option<String>,
) -> Result<LocalServer, Box<dyn std::error::Error + Send + Sync>> {
    let ident = Arc::new(Identity::generate());
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    let mut rec = LocationRecord::new(&ident, vec![addr]);
    rec.nickname = nickname;
    let rec = rec.sign(&ident)?;
    let store = ShareStore::open(store_dir, 0)?;
    let id = ident.node_id();
    let stats = Arc::new(ServerStats::default());
    let task = tokio::spawn(run_listener(
        listener,
        ident,
        rec,
        store,
        ServerLimits {
            session: SessionConfig::default(),
            max_handshakes: 64,
            ..ServerLimits::default()
        },
        stats.clone(),
        Drain::never(),
    ));
    Ok(LocalServer {
        id,
        addr,
        stats,
        task,
    })
}
