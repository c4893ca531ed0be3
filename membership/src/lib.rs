//! Membership of a grapevine grid: who is in it, where they are, whether
//! they are alive, without a full mesh of connections.
//!
//! Every node holds every other node's signed
//! [`LocationRecord`](grapevine_crypto::LocationRecord). Records spread by
//! gossip over UDP and are verified before they are stored or passed on; a
//! periodic anti-entropy exchange of compact digests repairs whatever gossip
//! missed. Failure detection is SWIM with Lifeguard-style local health.
//!
//! * [`swim::Swim`]: the sans-IO core; drive it with datagrams and time.
//!   Split by job (members, probes, gossip, anti-entropy, records,
//!   join/leave, admission); see its module docs.
//! * [`config::Config`]: the protocol's tunables.
//! * [`timers::Timers`]: the one deadline heap every wait of the core uses.
//! * [`store::RecordStore`]: verified records and their digests.
//! * [`facts::FactSet`]: signed alive/left facts and their digests.
//! * [`cookie`]: stateless address cookies (answers to unproven addresses
//!   are at most three times the request).
//! * [`clock::GridClock`]: the grid's time, measured from peers' headers.
//! * [`tombstone::Tombstones`]: what is kept of forgotten members.
//! * [`wire`]: the datagram codec (at most 1400 bytes).
//! * [`driver`]: the thin tokio driver (one task and one UDP socket a node).
//! * [`select`]: server selection by the permuted list.
//! * [`sim`]: a many-node simulation on a virtual clock.
//!
//! The core is pure and deterministic: it never reads a clock or the OS's
//! randomness (time, the wall clock and a seeded RNG are inputs; the
//! crate's `clippy.toml` forbids the calls), so a simulation with the same
//! seed gives the same run.
//!
//! Why our own SWIM core rather than `foca`: measured at 1000 nodes, foca's
//! member list is a `Vec` searched linearly on every update, its custom
//! broadcasts are sent a fixed number of times with no repair, and its join
//! announce is never retried; see `docs/membership.md`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use grapevine_crypto::{Identity, LocationRecord};
//! use grapevine_membership::swim::{Config, Swim};
//! use rand::SeedableRng;
//!
//! let id = Arc::new(Identity::generate());
//! let rec = LocationRecord::new(&id, vec!["127.0.0.1:7946".parse().unwrap()]).sign(&id).unwrap();
//! let now = Instant::now();
//! let mut node = Swim::new(id, rec, vec!["127.0.0.1:7947".parse().unwrap()], Config::new_lan(),
//!                          rand::rngs::SmallRng::seed_from_u64(1), now);
//! // Joining: the first thing it does is ask the seed to let it in.
//! let (to, datagram) = node.poll_transmit().unwrap();
//! assert_eq!(to.port(), 7947);
//! assert!(datagram.len() <= 1400);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broadcast;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod driver;
pub mod error;
pub mod facts;
pub mod ratelimit;
pub mod select;
pub mod sim;
pub mod store;
pub mod swim;
#[cfg(test)]
mod testing;
pub mod timers;
pub mod tombstone;
pub mod wire;

pub use error::{MembershipError, WireError};
pub use swim::{Config, Event, MemberState, MemberView, Swim};
