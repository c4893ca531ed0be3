//! What every handler of one gateway shares: the node's state and a client
//! through it, the settings, the request checks, the operations registry,
//! the spool directory for uploads, the metrics registry, and the session
//! slots grid operations take.
//!
//! Session slots: the node's client pool holds at most `client_sessions`
//! sessions, and a grid operation on a k-of-n file may hold up to n at once
//! (locate asks n servers together). If operations took their sessions one
//! by one, many at once could each hold some and wait for the rest until
//! the pool's wait ran out, and fail together. So each operation first takes
//! `min(n, client_sessions)` slots of a semaphore as large as the pool, all
//! at once; the others wait (at most [`GatewaySettings::busy_wait`], then
//! 503), and every operation that starts can finish. On a gateway others
//! reach, a client address holds at most half of them; a download gives
//! its slots back while its client reads nothing ([`crate::gateway::slots`]).

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::client::Client;
use crate::gateway::error::GatewayError;
use crate::gateway::guard::Guard;
use crate::gateway::ops::Operations;
use crate::gateway::settings::GatewaySettings;
use crate::gateway::slots::{HeldSlots, Slots, CLIENT};
use crate::metrics;
use crate::state::NodeState;

/// One gateway's shared parts.
#[derive(Debug)]
pub struct Ctx {
    /// The node.
    pub state: Arc<NodeState>,
    /// Puts, gets and checks through the node.
    pub client: Client,
    /// Settings.
    pub settings: GatewaySettings,
    /// Request checks.
    pub guard: Guard,
    /// Operations in progress, counters.
    pub ops: Arc<Operations>,
    /// Where uploads are spooled.
    pub spool: PathBuf,
    /// The node's metrics.
    pub registry: Registry,
    slots: Slots,
}

impl Ctx {
    /// The parts of a gateway for the node `state`, spooling into `spool`,
    /// with `token` as its API token.
    pub fn new(
        state: Arc<NodeState>,
        settings: GatewaySettings,
        spool: PathBuf,
        token: &str,
    ) -> Self {
        let guard = Guard::new(
            settings.addr.port(),
            settings.hosts.clone(),
            !settings.loopback_only(),
            token,
        );
        let slots = Slots::new(
            state.pool().config().max_sessions,
            !settings.loopback_only(),
        );
        Ctx {
            client: Client::of_node(state.clone()),
            registry: metrics::registry(state.clone()),
            state,
            settings,
            guard,
            ops: Arc::new(Operations::default()),
            spool,
            slots,
        }
    }

    /// Take the session slots an operation on a file of `n` shares needs
    /// ([`Slots::take`]; on a gateway others reach, within the share of the
    /// client the current connection is from).
    ///
    /// # Errors
    /// [`GatewayError::Busy`] if they stay taken for the busy wait.
    pub async fn grid_slots(&self, n: u16) -> Result<HeldSlots, GatewayError> {
        let client = CLIENT.try_with(|c| *c).ok();
        tokio::time::timeout(self.settings.busy_wait, self.slots.take(n, client))
            .await
            .map_err(|_| {
                GatewayError::Busy(format!(
                    "no storage session slots came free within {:?}",
                    self.settings.busy_wait
                ))
            })?
            .map_err(|_| GatewayError::Internal("the session slots are closed".into()))
    }
}
