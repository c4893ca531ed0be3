//! The session slots a download holds, given back while its client reads
//! nothing.
//!
//! Every grid operation of the gateway first takes the slots it may need
//! (`min(n, client_sessions)`) of a semaphore as large as the node's
//! session pool, all at once ([`Ctx::grid_slots`]), so that every operation
//! that starts can get its sessions. A download whose client stops taking
//! data parks in the storage client after the pool's `park_after`: its
//! sessions are closed (`grapevine_storage::client`'s `park`). Its slots go
//! back too, at the same moment ([`ChannelWriter`]), or a handful of
//! clients that open downloads and read nothing would still hold every
//! slot, and every other request of the gateway would wait for them and
//! get 503. When its client reads again the download takes its slots back,
//! all at once, before it writes on (and then takes its sessions again).
//!
//! [`Ctx::grid_slots`]: crate::gateway::context::Ctx::grid_slots
//! [`ChannelWriter`]: crate::gateway::stream::ChannelWriter

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

type Taking = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Slots of the gateway's semaphore held by one download.
pub struct HeldSlots {
    sem: Arc<Semaphore>,
    want: u32,
    permit: Option<OwnedSemaphorePermit>,
    taking: Option<Taking>,
}

impl fmt::Debug for HeldSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldSlots")
            .field("want", &self.want)
            .field("held", &self.held())
            .finish()
    }
}

impl HeldSlots {
    /// `permit`, taken from `sem`.
    pub fn new(sem: Arc<Semaphore>, permit: OwnedSemaphorePermit) -> Self {
        HeldSlots {
            sem,
            want: u32::try_from(permit.num_permits()).unwrap_or(u32::MAX),
            permit: Some(permit),
            taking: None,
        }
    }

    /// Whether the slots are held now.
    pub fn held(&self) -> bool {
        self.permit.is_some()
    }

    /// Give the slots back until [`HeldSlots::poll_take`].
    pub fn give_back(&mut self) {
        self.permit = None;
    }

    /// Take the slots back (all at once, in turn with every other
    /// operation waiting for slots); ready at once if they are held.
    pub fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        let (sem, want) = (&self.sem, self.want);
        let taking = self
            .taking
            .get_or_insert_with(|| Box::pin(sem.clone().acquire_many_owned(want)));
        match taking.as_mut().poll(cx) {
            Poll::Ready(Ok(p)) => {
                self.permit = Some(p);
                self.taking = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(io::Error::other(
                "the gateway's session slots are closed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}
