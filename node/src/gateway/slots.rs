//! The gateway's session slots: how many grid operations run at once, a
//! client's share of them, and a download giving its slots back while its
//! client reads nothing.
//!
//! Every grid operation first takes the slots it may need
//! (`min(n, client_sessions)`) of a semaphore as large as the node's
//! session pool, all at once ([`Slots::take`]), so that every operation
//! that starts can get its sessions. Slots are given in turn.
//!
//! **A client's share.** On a gateway others reach (not loopback-only),
//! a client address (an IPv6 client's /64) may hold at most half of the
//! slots at once: one client opening many operations waits for its own,
//! and the others' go on. (On a loopback-only gateway every client is
//! this host.) The address is the connection's ([`CLIENT`], set by the
//! accept loop): behind a reverse proxy on another host every client is
//! the proxy, and shares half of the slots; two addresses can still take
//! them all.
//!
//! **Silent readers.** A download whose client stops taking data parks in
//! the storage client after the pool's `park_after`: its sessions are
//! closed (`grapevine_storage::client`'s `park`). Its slots go back too,
//! at the same moment ([`ChannelWriter`]), or a handful of clients that
//! open downloads and read nothing would still hold every slot, and every
//! other request would wait for them and get 503. When its client reads
//! again, the download takes its slots back before it writes on (and then
//! takes its sessions again).
//!
//! [`ChannelWriter`]: crate::gateway::stream::ChannelWriter

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    /// The address of the client whose connection the current task serves
    /// (set by the gateway's accept loop around each connection).
    pub static CLIENT: IpAddr;
}

/// The gateway's slots.
#[derive(Debug)]
pub struct Slots {
    all: Arc<Semaphore>,
    count: usize,
    /// Each client address's share, while it holds or waits for slots;
    /// `None` on a loopback-only gateway.
    clients: Option<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl Slots {
    /// `count` slots (at least one); with `shared`, a client address holds
    /// at most half of them.
    pub fn new(count: usize, shared: bool) -> Self {
        let count = count.max(1);
        Slots {
            all: Arc::new(Semaphore::new(count)),
            count,
            clients: shared.then(|| Mutex::new(HashMap::new())),
        }
    }

    /// Slots free now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.all.available_permits()
    }

    /// How many slots a client address may hold at once.
    fn share(&self) -> usize {
        (self.count / 2).max(1)
    }

    /// The share of `client`, made if it has none. An IPv6 client is its
    /// /64 (what one subscriber is given).
    fn client_share(&self, client: IpAddr) -> Option<Arc<Semaphore>> {
        let clients = self.clients.as_ref()?;
        let client = match client {
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !u128::from(u64::MAX))),
            },
            v4 => v4,
        };
        let mut map = clients.lock().unwrap_or_else(|e| e.into_inner());
        // Shares nobody holds or waits for are forgotten (a permit, or a
        // wait for one, holds its semaphore).
        map.retain(|_, s| Arc::strong_count(s) > 1);
        let share = self.share();
        Some(
            map.entry(client)
                .or_insert_with(|| Arc::new(Semaphore::new(share)))
                .clone(),
        )
    }

    /// Take the slots an operation on a file of `n` shares needs, for
    /// `client`: its share's first, then the gateway's.
    ///
    /// # Errors
    /// If the semaphores are closed (they are not, while the gateway runs).
    pub async fn take(&self, n: u16, client: Option<IpAddr>) -> Result<HeldSlots, AcquireError> {
        let want = (n as usize).clamp(1, self.count);
        let mut parts = Vec::new();
        if let Some(share) = client.and_then(|c| self.client_share(c)) {
            parts.push((share, want.min(self.share())));
        }
        parts.push((self.all.clone(), want));
        let mut held = HeldSlots {
            parts: Vec::new(),
            taking: None,
        };
        for (sem, want) in parts {
            let want = u32::try_from(want).unwrap_or(u32::MAX);
            let permit = sem.clone().acquire_many_owned(want).await?;
            held.parts.push(Part {
                sem,
                want,
                permit: Some(permit),
            });
        }
        Ok(held)
    }
}

type Taking = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Permits of one semaphore.
struct Part {
    sem: Arc<Semaphore>,
    want: u32,
    permit: Option<OwnedSemaphorePermit>,
}

/// The slots one operation holds (its client's share's and the
/// gateway's), released when dropped.
pub struct HeldSlots {
    parts: Vec<Part>,
    /// The part being taken back, and its wait.
    taking: Option<(usize, Taking)>,
}

impl fmt::Debug for HeldSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldSlots")
            .field("parts", &self.parts.len())
            .field("held", &self.held())
            .finish()
    }
}

impl HeldSlots {
    /// Whether the slots are held now.
    pub fn held(&self) -> bool {
        self.parts.iter().all(|p| p.permit.is_some())
    }

    /// Give the slots back until [`HeldSlots::poll_take`].
    pub fn give_back(&mut self) {
        self.taking = None;
        for p in &mut self.parts {
            p.permit = None;
        }
    }

    /// Take the slots back, in the order they were first taken (in turn
    /// with every other operation waiting for slots); ready at once if
    /// they are held.
    pub fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(i) = self.parts.iter().position(|p| p.permit.is_none()) {
            let part = &self.parts[i];
            let taking = match &mut self.taking {
                Some((j, t)) if *j == i => t,
                _ => {
                    let t: Taking = Box::pin(part.sem.clone().acquire_many_owned(part.want));
                    &mut self.taking.insert((i, t)).1
                }
            };
            match taking.as_mut().poll(cx) {
                Poll::Ready(Ok(p)) => {
                    self.parts[i].permit = Some(p);
                    self.taking = None;
                }
                Poll::Ready(Err(_)) => {
                    return Poll::Ready(Err(io::Error::other(
                        "the gateway's session slots are closed",
                    )))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// On a shared gateway one client address holds at most half of the
    /// slots: its next operation waits for its own, another client's does
    /// not. On a loopback-only one, a client may take them all.
    #[tokio::test(start_paused = true)]
    async fn a_client_holds_at_most_half_of_a_shared_gateways_slots() {
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let slots = Slots::new(20, true);
        let first = slots.take(10, Some(a)).await.unwrap();
        let wait = Duration::from_secs(5);
        let second = tokio::time::timeout(wait, slots.take(10, Some(a))).await;
        assert!(second.is_err(), "a client took more than half");
        let other = tokio::time::timeout(wait, slots.take(10, Some(b))).await;
        let other = other.expect("another client waits for the first");
        drop(first);
        let again = tokio::time::timeout(wait, slots.take(10, Some(a))).await;
        assert!(again.is_ok(), "its own slots came back");
        drop(other);
        // Shares nobody holds are forgotten.
        drop(again);
        let _ = slots.take(1, Some(b)).await.unwrap();
        {
            let map = slots.clients.as_ref().unwrap().lock().unwrap();
            assert_eq!(map.len(), 1);
        }

        let local = Slots::new(20, false);
        let one = local.take(10, Some(a)).await.unwrap();
        let two = tokio::time::timeout(wait, local.take(10, Some(a))).await;
        assert!(two.is_ok() && one.held());
    }

    /// Slots given back are taken again in order, waiting while another
    /// operation holds them.
    #[tokio::test(start_paused = true)]
    async fn slots_given_back_are_taken_again() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slots = Slots::new(20, true);
        let mut held = slots.take(10, Some(a)).await.unwrap();
        held.give_back();
        assert!(!held.held());
        let other = slots.take(10, Some(a)).await.unwrap();
        {
            let mut retake = std::pin::pin!(std::future::poll_fn(|cx| held.poll_take(cx)));
            let waited = tokio::time::timeout(Duration::from_secs(5), retake.as_mut()).await;
            assert!(waited.is_err(), "took them back while another held them");
            drop(other);
            retake.await.unwrap();
        }
        assert!(held.held());
    }

    /// Two addresses of one IPv6 /64 are one client.
    #[tokio::test(start_paused = true)]
    async fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let slots = Slots::new(20, true);
        let _first = slots.take(10, Some(a)).await.unwrap();
        let wait = Duration::from_secs(5);
        assert!(tokio::time::timeout(wait, slots.take(10, Some(b)))
            .await
            .is_err());
        assert!(tokio::time::timeout(wait, slots.take(10, Some(c)))
            .await
            .is_ok());
    }
}
