//! Test and benchmark hooks, compiled only with the `test-util` feature:
//! a share server on a loopback address in one call, answering listings
//! in datagrams on a UDP socket at its address as a node's gossip socket
//! does.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use grapevine_crypto::identity::{Identity, NodeId};
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::record::LocationRecord;

use crate::server::{
    answer_on_socket, run_listener, DatagramAnswerer, Drain, ServerLimits, ServerStats,
};
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
    let (udp, listener) = bind_pair(ip).await?;
    let addr = listener.local_addr()?;
    let mut rec = LocationRecord::new(&ident, vec![addr]);
    rec.nickname = nickname;
    let rec = rec.sign(&ident)?;
    let store = ShareStore::open(store_dir, 0)?;
    let id = ident.node_id();
    let stats = Arc::new(ServerStats::default());
    let answerer = DatagramAnswerer::new(ident.clone(), store.clone(), stats.clone(), udp);
    let listen = run_listener(
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
    );
    let task = tokio::spawn(async move {
        // The datagram answerer ends with the listener's task (aborted
        // with it).
        let datagrams = tokio::spawn(answer_on_socket(answerer));
        let _stop = AbortOnDrop(datagrams);
        listen.await
    });
    Ok(LocalServer {
        id,
        addr,
        stats,
        task,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A UDP socket and a TCP listener on the same free port of `ip` (UDP's
/// port, picked first, may be in use for TCP: then another is tried).
async fn bind_pair(
    ip: IpAddr,
) -> std::io::Result<(Arc<tokio::net::UdpSocket>, tokio::net::TcpListener)> {
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = tokio::net::UdpSocket::bind((ip, 0)).await?;
        match tokio::net::TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((Arc::new(udp), tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {}
            Err(e) => return Err(e),
        }
    }
}
