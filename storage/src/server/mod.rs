//! The share server: [`ShareServer`] (in `handler`) is the synchronous core
//! that answers requests against a [`ShareStore`](crate::ShareStore),
//! tested without sockets; [`serve`] and [`run_listener`] (in `driver`) are
//! the thin tokio driver that runs it over authenticated sessions, within
//! [`ServerLimits`], and counts what it does in a per-server
//! [`ServerStats`]; [`AcceptBackoff`] is its accept loop's policy, sans-IO.
//! `listing` tells a handshake from a listing on an accepted
//! connection and answers the listing.
//! [`DatagramAnswerer`] (in `datagram`) answers listings asked in
//! datagrams, within bounds against forged sources.
//! [`run_scrub`] drives the store's background scrub at a bounded rate.

mod backoff;
mod datagram;
mod driver;
mod handler;
mod listing;
mod scrub;
mod stats;

pub use backoff::AcceptBackoff;
pub use datagram::{
    answer_on_socket, DatagramAnswerer, ANSWERS_BURST, ANSWERS_PER_SEC, IN_FLIGHT, NEW_KEYS_BURST,
    NEW_KEYS_PER_SEC,
};
pub use driver::{run_listener, serve, Drain, DrainHandle, ServerLimits};
pub use handler::{Answer, ShareServer, MAX_OPEN_PER_SESSION};
pub use scrub::{run_scrub, ScrubConfig};
pub use stats::ServerStats;
