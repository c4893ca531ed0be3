//! A worker node's counters over all its lives: a crash drops the node and
//! the counters it kept, so a worker adds each life's to the node's past
//! ([`Totals::add_node`] as it goes down) and reports the past plus the
//! running life, so totals never go backwards.

use std::sync::atomic::Ordering::Relaxed;

use grapevine_node::Node;

use crate::grid::proto::ServerListingTimes;

/// Gossip traffic and listing times, added up over lives or nodes.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Gossip datagrams sent.
    pub dg_sent: u64,
    /// Gossip bytes sent.
    pub bytes_sent: u64,
    /// Gossip datagrams received.
    pub dg_recv: u64,
    /// Listing times of the share server.
    pub listings: ServerListingTimes,
}

impl Totals {
    /// Add what `node` has counted in its life so far.
    pub fn add_node(&mut self, node: &Node) {
        let c = node.state().membership().counters();
        self.dg_sent += c.datagrams_sent.load(Relaxed);
        self.bytes_sent += c.bytes_sent.load(Relaxed);
        self.dg_recv += c.datagrams_received.load(Relaxed);
        self.listings
            .add(&ServerListingTimes::of(node.state().storage_stats()));
    }

    /// Add `other`'s totals.
    pub fn add(&mut self, other: &Totals) {
        self.dg_sent += other.dg_sent;
        self.bytes_sent += other.bytes_sent;
        self.dg_recv += other.dg_recv;
        self.listings.add(&other.listings);
    }
}
