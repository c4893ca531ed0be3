//! What a share server has done ([`ServerStats`]), counted where it is
//! done (the listener, the sessions, the datagram answerer) and read by
//! status and metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::latency::{Latencies, Snapshot};

/// What one storage server has done, for status and metrics: each server
/// (each listener) has its own, shared (`Arc`) between the listener that
/// counts and whoever reports.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) sessions_open: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) listings: AtomicU64,
    pub(crate) datagram_listings: AtomicU64,
    pub(crate) datagrams_refused: AtomicU64,
    pub(crate) request_micros: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) sessions_timed_out: AtomicU64,
    pub(crate) requests_waiting: AtomicU64,
    pub(crate) requests_waited: AtomicU64,
    pub(crate) answers_stalled: AtomicU64,
    pub(crate) datagram_listing_times: Latencies,
    pub(crate) datagram_handover_times: Latencies,
    pub(crate) session_listing_times: Latencies,
    pub(crate) tcp_listing_times: Latencies,
}

impl ServerStats {
    /// Storage sessions open now.
    pub fn sessions_open(&self) -> u64 {
        self.sessions_open.load(Relaxed)
    }

    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Listings answered without a session (counted in
    /// [`ServerStats::requests`] too), over TCP or in datagrams.
    pub fn listings(&self) -> u64 {
        self.listings.load(Relaxed)
    }

    /// Count a listing answered (over TCP, or in a datagram), worked on
    /// since `started` and asked at `arrived` (a connection accepted, or a
    /// datagram read from the node's socket): a request, a listing, and
    /// its times.
    pub(crate) fn count_listing(&self, started: Instant, arrived: Instant, in_datagram: bool) {
        self.requests.fetch_add(1, Relaxed);
        self.listings.fetch_add(1, Relaxed);
        let times = if in_datagram {
            self.datagram_listings.fetch_add(1, Relaxed);
            &self.datagram_listing_times
        } else {
            &self.tcp_listing_times
        };
        times.record(arrived.elapsed());
        self.request_micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    }

    /// Listings answered in datagrams (counted in
    /// [`ServerStats::listings`] too).
    pub fn datagram_listings(&self) -> u64 {
        self.datagram_listings.load(Relaxed)
    }

    /// Datagrams handed to the server as listing queries and not answered:
    /// malformed or unpadded, over the server's bounds, or with an answer
    /// longer than the query ([`crate::server::DatagramAnswerer`]).
    pub fn datagrams_refused(&self) -> u64 {
        self.datagrams_refused.load(Relaxed)
    }

    /// Total time spent answering requests (decoding, the store's work,
    /// encoding; not sending), in microseconds.
    pub fn request_micros(&self) -> u64 {
        self.request_micros.load(Relaxed)
    }

    /// Accepts that failed (and were retried after a pause).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Relaxed)
    }

    /// Sessions closed for idling, stalling a message, or not taking an
    /// answer.
    pub fn sessions_timed_out(&self) -> u64 {
        self.sessions_timed_out.load(Relaxed)
    }

    /// Requests received and waiting now for their turn
    /// ([`crate::server::ServerLimits::max_requests`] are being answered).
    pub fn requests_waiting(&self) -> u64 {
        self.requests_waiting.load(Relaxed)
    }

    /// Requests that had to wait for their turn, over the server's life.
    pub fn requests_waited(&self) -> u64 {
        self.requests_waited.load(Relaxed)
    }

    /// Answers not taken within [`crate::server::ServerLimits::turn_hold`], which gave
    /// their turn back, over the server's life.
    pub fn answers_stalled(&self) -> u64 {
        self.answers_stalled.load(Relaxed)
    }

    /// Listings answered in datagrams: from the node's socket reading the
    /// query to the answer sent.
    pub fn datagram_listing_times(&self) -> Snapshot {
        self.datagram_listing_times.snapshot()
    }

    /// Of [`ServerStats::datagram_listing_times`], the part before the
    /// answer's work began: from the socket's read to a blocking thread
    /// taking it up.
    pub fn datagram_handover_times(&self) -> Snapshot {
        self.datagram_handover_times.snapshot()
    }

    /// Listings asked on a session: from the request read to the answer
    /// sent.
    pub fn session_listing_times(&self) -> Snapshot {
        self.session_listing_times.snapshot()
    }

    /// Listings asked over a TCP connection of their own: from the
    /// connection accepted to the answer written.
    pub fn tcp_listing_times(&self) -> Snapshot {
        self.tcp_listing_times.snapshot()
    }
}
