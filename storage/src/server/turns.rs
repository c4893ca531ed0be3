//! Turns: how many requests a share server answers at once, and what a
//! peer that does not take its answers can hold.
//!
//! A request is answered only with a turn in hand, from before it is
//! handled until its answer is sent ([`ServerLimits::max_requests`] turns
//! over all sessions, from the node's memory budget), so answers held in
//! memory are bounded. A peer that asks and then does not read holds its
//! turn while its answer waits in full socket buffers; with a small
//! budget (three turns at the default 8 MiB) three such peers would hold
//! every turn and stall every other peer for
//! [`ServerLimits::request_timeout`], again and again. So an answer not
//! taken within [`ServerLimits::turn_hold`] gives its turn back and waits
//! among the *stalled* answers, at most as many as there are turns (memory
//! stays bounded: twice the turns' worth); a peer slow to take its answer
//! when that many are stalled already has its session closed. A slow but
//! honest peer (a small board on a slow link) keeps its session as long as
//! few peers are that slow at once; a peer that never reads is cut off
//! after `request_timeout` at the latest, and can never hold the turns
//! others need for longer than `turn_hold`.

use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::server::driver::{ServerLimits, ServerStats};

/// The turns of one listener's sessions (see the module docs).
#[derive(Debug)]
pub(crate) struct Turns {
    turns: Semaphore,
    stalled: Semaphore,
}

/// Why an answer was not sent.
#[derive(Debug)]
pub(crate) enum Unsent {
    /// The peer did not take it within the request timeout.
    TimedOut,
    /// The peer was slow to take it and as many answers as there are turns
    /// were stalled already.
    TooManyStalled,
    /// The session failed.
    Session(grapevine_crypto::SessionError),
}

impl Turns {
    /// `limits.max_requests` turns, and as many places for stalled answers.
    pub fn new(limits: &ServerLimits) -> Self {
        let n = limits.max_requests.clamp(1, Semaphore::MAX_PERMITS);
        Turns {
            turns: Semaphore::new(n),
            stalled: Semaphore::new(n),
        }
    }

    /// A turn, waiting (counted in `stats`) if every turn is taken.
    pub async fn take(&self, stats: &ServerStats) -> SemaphorePermit<'_> {
        if let Ok(t) = self.turns.try_acquire() {
            return t;
        }
        stats.requests_waiting.fetch_add(1, Relaxed);
        stats.requests_waited.fetch_add(1, Relaxed);
        let t = self.turns.acquire().await;
        stats.requests_waiting.fetch_sub(1, Relaxed);
        t.expect("the semaphore is never closed")
    }

    /// Send an answer with `send`, holding `turn` for at most
    /// `limits.turn_hold` (see the module docs).
    pub async fn send<F>(
        &self,
        send: F,
        turn: SemaphorePermit<'_>,
        limits: &ServerLimits,
        stats: &ServerStats,
    ) -> Result<(), Unsent>
    where
        F: std::future::Future<Output = Result<(), grapevine_crypto::SessionError>>,
    {
        tokio::pin!(send);
        let hold = limits.turn_hold.min(limits.request_timeout);
        if let Ok(r) = tokio::time::timeout(hold, &mut send).await {
            return r.map_err(Unsent::Session);
        }
        let Ok(place) = self.stalled.try_acquire() else {
            return Err(Unsent::TooManyStalled);
        };
        drop(turn);
        stats.answers_stalled.fetch_add(1, Relaxed);
        let r = tokio::time::timeout(limits.request_timeout.saturating_sub(hold), send).await;
        drop(place);
        match r {
            Err(_) => Err(Unsent::TimedOut),
            Ok(r) => r.map_err(Unsent::Session),
        }
    }
}
