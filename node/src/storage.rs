//! The node's share server: its TCP listener served by
//! `grapevine_storage::server::run_listener` within the configured limits,
//! and the store's background scrub, on the runtime the embedder chooses
//! ([`StorageRuntime`]). When the listener stops for good (an accept error
//! that says the socket is gone; every other one is retried), the server
//! says so ([`StorageServer::take_stopped`]) and the node withdraws the
//! storage role from its record.
//!
//! A node run as its own process (`grapevine run`) gives storage a runtime
//! of its own, so that sessions stalled on a slow disk delay other storage
//! sessions but never gossip or control. A harness running many nodes in
//! one process shares one runtime among them instead (a runtime per node
//! would be a thread pool per node).
//!
//! Listings asked in datagrams come to the node's gossip socket, whose
//! task hands them by their first byte to the server's answerer
//! ([`ListingDoor`]) as it reads them; the answerer answers each from a
//! blocking thread of the storage runtime, from that socket.
//!
//! [`StorageServer::drain`] is how a node stops serving on SIGTERM: no new
//! sessions, idle ones closed, uploads in progress given a grace period
//! to finish their shares (see `grapevine_storage::server::DrainHandle`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grapevine_crypto::{Identity, SignedRecord};
use grapevine_storage::server::{
    run_scrub, DatagramAnswerer, DrainHandle, ScrubConfig, ServerLimits,
};
use grapevine_storage::store::ScrubStats;
use grapevine_storage::{ServerStats, ShareStore};
use tokio::net::{TcpListener, UdpSocket};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::NodeError;

/// Where a node's storage sessions run.
#[derive(Debug, Clone)]
pub enum StorageRuntime {
    /// A multi-thread runtime of the node's own with this many threads.
    Dedicated {
        /// Worker threads.
        threads: usize,
    },
    /// The runtime the node is started on.
    Current,
    /// A runtime the embedder shares among nodes.
    Shared(Handle),
}

impl Default for StorageRuntime {
    /// A runtime of the node's own with two threads.
    fn default() -> Self {
        StorageRuntime::Dedicated { threads: 2 }
    }
}

/// A running share server; stopping it (or dropping it) ends its listener
/// and every session.
#[derive(Debug)]
pub struct StorageServer {
    task: JoinHandle<std::io::Result<()>>,
    scrub: JoinHandle<()>,
    datagrams: Option<ListingDoor>,
    runtime: Option<Runtime>,
    drain: DrainHandle,
    stopped: Option<oneshot::Receiver<String>>,
}

/// Where the gossip task hands listing queries (the membership driver's
/// `Passthrough` calls [`ListingDoor::take`]): the share server's
/// answerer once it has started, none before or after (queries then
/// dropped: their clients ask over TCP).
#[derive(Debug, Clone, Default)]
pub struct ListingDoor(Arc<Mutex<Option<Arc<DatagramAnswerer>>>>);

impl ListingDoor {
    /// Hand a query over (never waits); false if it was dropped.
    pub fn take(&self, d: &[u8], from: SocketAddr, read: std::time::Instant) -> bool {
        let answerer = self.lock().clone();
        answerer.is_some_and(|a| a.take(d, from, read))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<DatagramAnswerer>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, a: DatagramAnswerer) {
        *self.lock() = Some(Arc::new(a));
    }

    fn close(&self) {
        *self.lock() = None;
    }
}

/// Listing queries handed over by the gossip socket, and that socket, to
/// answer from.
#[derive(Debug)]
pub struct DatagramInbox {
    /// Where the gossip task hands them.
    pub door: ListingDoor,
    /// The gossip socket.
    pub socket: Arc<UdpSocket>,
}

/// What the share server serves with.
#[derive(Debug, Clone)]
pub struct ServerParts {
    /// The node's identity (its session key).
    pub identity: Arc<Identity>,
    /// The node's record (presented in handshakes).
    pub record: SignedRecord,
    /// The share store.
    pub store: ShareStore,
    /// Sessions, handshakes, deadlines (and the closed grid, if any).
    pub limits: ServerLimits,
    /// Where the server counts what it does (the node's status and
    /// metrics read it).
    pub stats: Arc<ServerStats>,
    /// The background scrub's pace.
    pub scrub: ScrubConfig,
    /// Where the scrub counts what it does.
    pub scrub_stats: Arc<ScrubStats>,
}

impl StorageServer {
    /// Serve storage on `listener` on the runtime `rt` says.
    ///
    /// # Errors
    /// [`NodeError::Io`] if a dedicated runtime cannot be built or the
    /// listener cannot be moved to it.
    pub fn start(
        listener: TcpListener,
        parts: ServerParts,
        datagrams: Option<DatagramInbox>,
        rt: &StorageRuntime,
    ) -> Result<StorageServer, NodeError> {
        let (handle, runtime) = match rt {
            StorageRuntime::Current => (Handle::current(), None),
            StorageRuntime::Shared(h) => (h.clone(), None),
            StorageRuntime::Dedicated { threads } => {
                let r = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads((*threads).max(1))
                    .thread_name("storage")
                    .enable_all()
                    .build()
                    .map_err(NodeError::io("building the storage runtime"))?;
                (r.handle().clone(), Some(r))
            }
        };
        // A listener is registered with the reactor of the runtime it was
        // made on: move it to the storage runtime's.
        let std_listener = listener
            .into_std()
            .map_err(NodeError::io("moving the storage listener"))?;
        let (drain, drain_rx) = DrainHandle::new();
        let (tell, stopped) = oneshot::channel();
        let scrub = handle.spawn(run_scrub(
            parts.store.clone(),
            parts.scrub_stats,
            parts.scrub,
        ));
        let datagrams = datagrams.map(|d| {
            d.door.open(DatagramAnswerer::on(
                parts.identity.clone(),
                parts.store.clone(),
                parts.stats.clone(),
                d.socket,
                handle.clone(),
            ));
            d.door
        });
        let task = handle.spawn(async move {
            let listener = TcpListener::from_std(std_listener)?;
            let r = grapevine_storage::server::run_listener(
                listener,
                parts.identity,
                parts.record,
                parts.store,
                parts.limits,
                parts.stats,
                drain_rx,
            )
            .await;
            match &r {
                // Drained: the node is stopping, nothing to withdraw.
                Ok(()) => tracing::info!("storage listener drained"),
                Err(e) => {
                    tracing::error!("storage listener stopped: {e}");
                    let _ = tell.send(e.to_string());
                }
            }
            r
        });
        Ok(StorageServer {
            task,
            scrub,
            datagrams,
            runtime,
            stopped: Some(stopped),
            drain,
        })
    }

    /// Drain, then stop: accept no new session, close idle ones, give
    /// sessions writing shares at most `grace` to finish them; returns when
    /// the listener has ended (or a little after `grace` at most).
    pub async fn drain(&mut self, grace: Duration) {
        self.drain.start(grace);
        let margin = Duration::from_secs(1);
        if tokio::time::timeout(grace + margin, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("storage did not drain within {grace:?}");
        }
        self.stop();
    }

    /// Resolves (once) when the listener has failed for good, with the
    /// reason; an error (the sender dropped) means it drained, panicked or
    /// was stopped.
    pub fn take_stopped(&mut self) -> Option<oneshot::Receiver<String>> {
        self.stopped.take()
    }

    /// Stop the listener and every session.
    pub fn stop(&mut self) {
        self.task.abort();
        self.scrub.abort();
        if let Some(d) = &self.datagrams {
            d.close();
        }
        if let Some(rt) = self.runtime.take() {
            // Never blocks: safe inside an async context.
            rt.shutdown_background();
        }
    }
}

impl Drop for StorageServer {
    fn drop(&mut self) {
        self.stop();
    }
}
