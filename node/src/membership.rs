//! The node's membership: its own signed record, made from the
//! configuration ([`own_record`], pure), the gossip task started on the
//! node's UDP socket ([`start`]), and the seeds' host names resolved again
//! on each join retry ([`resolve_seeds`]).
//!
//! The record carries the addresses others should use (`advertise`
//! resolved, or the socket's own address), capacity and free space, roles,
//! the nickname, and in a closed grid the node's admission certificate,
//! which is checked here so that a node whose certificate does not admit it
//! refuses to start rather than gossip records every member would refuse.
//!
//! Membership's core is sans-IO and takes socket addresses only: seeds
//! given as host names are resolved here, in the node's driver layer, at
//! start and then on the core's own join schedule (0.5 s doubling to 30 s)
//! until the node knows another member, and handed in with
//! `MembershipHandle::set_seeds` whenever they resolve differently.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::record::{local_features, ROLE_CLIENT, ROLE_STORAGE};
use grapevine_crypto::{Identity, LocationRecord, NodeId, SignedRecord};
use grapevine_membership::driver::{spawn_with, MembershipHandle, NodeConfig, RunOptions};
use grapevine_membership::Event;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::addr::{resolve_all, PeerAddr};
use crate::config::{Config, Role};
use crate::error::{ConfigError, NodeError};

/// This node's record: `addrs` are the addresses it announces
/// (`advertise` resolved, or the socket's own), `free_mib` the space it can
/// still take (capped by the capacity offered), `seq` its sequence number
/// (above every number this node signed before, see [`crate::seq`]) and
/// `unix_ms` the time it is signed (its issue time, in seconds).
///
/// # Errors
/// [`NodeError::NotAdmitted`] if a closed grid's certificate does not admit
/// this node at `unix_ms`; [`NodeError::Record`] if the record is invalid.
pub fn own_record(
    identity: &Identity,
    cfg: &Config,
    addrs: Vec<SocketAddr>,
    free_mib: u32,
    seq: u64,
    unix_ms: u64,
) -> Result<SignedRecord, NodeError> {
    let mut rec = LocationRecord::new(identity, addrs);
    rec.nickname = cfg.nickname.clone();
    rec.capacity_mib = cfg.capacity_mib;
    rec.free_mib = free_mib.min(cfg.capacity_mib);
    rec.seq = seq;
    rec.issued_at = unix_ms / 1000;
    // The roles the operator configured, and the features of this process
    // (`local_features`, which `LocationRecord::new` put there).
    rec.roles = cfg.roles.iter().fold(local_features(), |r, role| {
        r | match role {
            Role::Storage => ROLE_STORAGE,
            Role::Client => ROLE_CLIENT,
        }
    });
    let closed = cfg.closed_grid().map_err(|message| ConfigError::Invalid {
        path: "config".into(),
        message,
    })?;
    if let Some((grid, admission)) = closed {
        admission
            .verify(&grid, &identity.node_id(), rec.issued_at)
            .map_err(|source| NodeError::NotAdmitted {
                node: identity.node_id(),
                grid,
                source,
            })?;
        rec.admission = Some(Box::new(admission));
    }
    Ok(rec.sign(identity)?)
}

/// Start gossip on `udp` with `record`, joining through `seeds` (the
/// configured ones, resolved) and the peer cache's records (`run.known`);
/// `run` also carries the clock's skew and the keeper of the numbers the
/// core signs. `sink` receives (observer, event) for every state change,
/// for harnesses that watch many nodes.
///
/// # Errors
/// [`NodeError::Membership`] if the socket cannot be used.
pub fn start(
    udp: UdpSocket,
    identity: Arc<Identity>,
    record: SignedRecord,
    seeds: Vec<SocketAddr>,
    cfg: &Config,
    sink: Option<mpsc::UnboundedSender<(NodeId, Event)>>,
    run: RunOptions,
) -> Result<MembershipHandle, NodeError> {
    let swim = grapevine_membership::Config {
        grid: cfg.session_config().grid,
        ..grapevine_membership::Config::new_lan()
    };
    // The driver seeds the core's RNG from the OS.
    Ok(spawn_with(
        udp,
        NodeConfig {
            identity,
            record,
            seeds,
            swim,
            state_sink: sink,
        },
        run,
    )?)
}

/// The seeds resolved now, for a socket bound at `local`; names that do
/// not resolve are logged and left out (they are tried again on each join
/// retry).
pub async fn seed_addrs(seeds: &[PeerAddr], local: SocketAddr) -> Vec<SocketAddr> {
    let (addrs, errors) = resolve_all(seeds, local).await;
    for e in errors {
        tracing::warn!("seed {e}; trying again on the next join retry");
    }
    addrs
}

/// First delay between resolutions of the seeds' names, and the longest:
/// the core's join retry schedule.
const RESOLVE_FIRST: Duration = Duration::from_millis(500);
const RESOLVE_MAX: Duration = Duration::from_secs(30);

/// While the node knows no other member, resolve the seeds' host names
/// again on the join retry schedule and hand membership the addresses
/// whenever they change. `current` is what membership was started with.
/// Returns once the node knows another member (or membership stopped).
pub async fn resolve_seeds(
    handle: MembershipHandle,
    seeds: Vec<PeerAddr>,
    mut current: Vec<SocketAddr>,
) {
    let local = handle.local_addr();
    if seeds.iter().all(|s| s.ip().is_some()) {
        return;
    }
    let mut delay = RESOLVE_FIRST;
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RESOLVE_MAX);
        if handle.counters().records.load(Ordering::Relaxed) > 1 {
            return;
        }
        let now = seed_addrs(&seeds, local).await;
        if now != current && !now.is_empty() {
            tracing::info!(seeds = ?now, "seed names resolve to new addresses");
            if handle.set_seeds(now.clone()).await.is_err() {
                return;
            }
            current = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_crypto::Admission;

    fn cfg() -> Config {
        Config::new("127.0.0.1:7946".parse().unwrap())
    }

    #[test]
    fn the_record_says_what_the_config_says() {
        let i = Identity::generate();
        let mut c = cfg();
        c.nickname = Some("n".into());
        c.capacity_mib = 100;
        c.roles = vec![Role::Storage];
        let local = "127.0.0.1:5000".parse().unwrap();
        let r = own_record(&i, &c, vec![local], 500, 7, 1_700_000_000_123).unwrap();
        let rec = r.record();
        assert_eq!(rec.addrs, vec![local]);
        assert_eq!(rec.free_mib, 100, "free space is capped by capacity");
        assert_eq!(rec.roles, ROLE_STORAGE | local_features());
        assert_eq!(rec.seq, 7, "the number given, not the clock");
        assert_eq!(rec.issued_at, 1_700_000_000);
        let r = own_record(&i, &c, vec![local], 7, 1, 1).unwrap();
        assert_eq!(r.record().free_mib, 7);
    }

    #[test]
    fn a_certificate_for_another_node_or_expired_refuses_to_start() {
        let grid_key = Identity::generate();
        let me = Identity::generate();
        let other = Identity::generate();
        let mut c = cfg();
        c.grid = Some(grapevine_crypto::GridId::of(&grid_key).to_string());
        c.admission = Some(Admission::issue(&grid_key, &other.node_id(), 0).to_string());
        let e = own_record(&me, &c, vec![c.listen], 0, 1, 1_000_000).unwrap_err();
        assert!(e.to_string().contains("cannot join grid"), "{e}");
        assert!(e.to_string().contains("made for another node id"), "{e}");
        c.admission = Some(Admission::issue(&grid_key, &me.node_id(), 500).to_string());
        let e = own_record(&me, &c, vec![c.listen], 0, 1, 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expired on 1970-01-01T00:08:20Z (it is now 1970-01-01T00:16:40Z)"),
            "{e}"
        );
        c.admission = Some(Admission::issue(&grid_key, &me.node_id(), 0).to_string());
        let r = own_record(&me, &c, vec![c.listen], 0, 1, 1_000_000).unwrap();
        assert!(r.record().admission.is_some());
    }
}
