//! The share server: [`ShareServer`] (in `handler`) is the synchronous core
//! that answers requests against a [`ShareStore`](crate::ShareStore),
//! tested without sockets; [`serve`] and [`run_listener`] (in `driver`) are
//! the thin tokio driver that runs it over authenticated sessions and
//! counts what it does in a per-server [`ServerStats`].

mod driver;
mod handler;

pub use driver::{run_listener, serve, ServerStats};
pub use handler::{Answer, ShareServer, MAX_OPEN_PER_SESSION};
