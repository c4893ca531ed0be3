//! A storage grid on loopback in this process: share servers, each with
//! its own identity, TCP listener and on-disk store
//! ([`grapevine_storage::testing::spawn_local`]), and a client's session
//! pool to reach them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::client::{ClientIdentity, ServerRef};
use grapevine_storage::{PoolConfig, ServerStats, SessionPool};
use tokio::task::JoinHandle;

/// A running share server.
pub struct Server {
    /// How a client refers to it.
    pub r: ServerRef,
    /// Its store's directory.
    pub dir: tempfile::TempDir,
    /// What it has done.
    pub stats: Arc<ServerStats>,
    /// Its accept loop, until [`stop`]ped.
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A share server nicknamed `name` on `ip` (any free port), storing in a
/// fresh directory.
pub async fn start_server(ip: [u8; 4], name: String) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let srv = grapevine_storage::testing::spawn_local(ip.into(), dir.path(), Some(name))
        .await
        .unwrap();
    Server {
        r: ServerRef {
            id: srv.id,
            addr: srv.addr,
        },
        dir,
        stats: srv.stats,
        task: Some(srv.task),
    }
}

/// `n` share servers on `ip`, nicknamed `{prefix}0` on.
pub async fn servers(ip: [u8; 4], prefix: &str, n: usize) -> Vec<Server> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(start_server(ip, format!("{prefix}{i}")).await);
    }
    v
}

/// How a client refers to `servers`.
pub fn refs(servers: &[Server]) -> Vec<ServerRef> {
    servers.iter().map(|s| s.r).collect()
}

/// Take a server down for good (its listener is gone when this returns).
pub async fn stop(s: &mut Server) {
    if let Some(t) = s.task.take() {
        t.abort();
        let _ = t.await;
    }
}

/// A client with a fresh identity whose record names `addr`.
pub fn client_identity(addr: &str) -> ClientIdentity {
    let identity = Arc::new(Identity::generate());
    let record = LocationRecord::new(&identity, vec![addr.parse().unwrap()])
        .sign(&identity)
        .unwrap();
    ClientIdentity {
        identity,
        record,
        session: SessionConfig::default(),
    }
}

/// A session pool, with the default settings, of a client as
/// [`client_identity`] makes.
pub fn pool(addr: &str) -> SessionPool {
    SessionPool::new(client_identity(addr), PoolConfig::default())
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
