//! The node's membership: its own signed record, made from the
//! configuration ([`own_record`], pure), and the gossip task started on the
//! node's UDP socket ([`start`]).
//!
//! The record carries the addresses others should use (`advertise`, or the
//! socket's own address), capacity and free space, roles, the nickname, and
//! in a closed grid the node's admission certificate, which is checked here
//! so that a node whose certificate does not admit it refuses to start
//! rather than gossip records every member would refuse.

use std::net::SocketAddr;
use std::sync::Arc;

use grapevine_crypto::record::{ROLE_CLIENT, ROLE_STORAGE};
use grapevine_crypto::{Identity, LocationRecord, NodeId, SignedRecord};
use grapevine_membership::driver::{spawn, MembershipHandle, NodeConfig};
use grapevine_membership::Event;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::{Config, Role};
use crate::error::{ConfigError, NodeError};

/// This node's record: `local` is the socket address (used when
/// `advertise` is empty), `available` the store's free bytes, `unix_ms` the
/// time (its sequence number, so a restarted node's record replaces the
/// previous one, and its issue time in seconds).
///
/// # Errors
/// [`NodeError::NotAdmitted`] if a closed grid's certificate does not admit
/// this node at `unix_ms`; [`NodeError::Record`] if the record is invalid.
pub fn own_record(
    identity: &Identity,
    cfg: &Config,
    local: SocketAddr,
    available: u64,
    unix_ms: u64,
) -> Result<SignedRecord, NodeError> {
    let addrs = if cfg.advertise.is_empty() {
        vec![local]
    } else {
        cfg.advertise.clone()
    };
    let mut rec = LocationRecord::new(identity, addrs);
    rec.nickname = cfg.nickname.clone();
    rec.capacity_mib = cfg.capacity_mib;
    rec.free_mib = u32::try_from(available >> 20)
        .unwrap_or(u32::MAX)
        .min(cfg.capacity_mib);
    rec.seq = unix_ms;
    rec.issued_at = unix_ms / 1000;
    rec.roles = cfg.roles.iter().fold(0, |r, role| {
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

/// Start gossip on `udp` with `record`, joining through the configured
/// seeds. `sink` receives (observer, event) for every state change, for
/// harnesses that watch many nodes.
///
/// # Errors
/// [`NodeError::Membership`] if the socket cannot be used.
pub fn start(
    udp: UdpSocket,
    identity: Arc<Identity>,
    record: SignedRecord,
    cfg: &Config,
    sink: Option<mpsc::UnboundedSender<(NodeId, Event)>>,
) -> Result<MembershipHandle, NodeError> {
    let swim = grapevine_membership::Config {
        grid: cfg.session_config().grid,
        ..grapevine_membership::Config::new_lan()
    };
    // The driver seeds the core's RNG from the OS.
    Ok(spawn(
        udp,
        NodeConfig {
            identity,
            record,
            seeds: cfg.seeds.clone(),
            swim,
            state_sink: sink,
        },
    )?)
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
        let r = own_record(&i, &c, local, 500 << 20, 1_700_000_000_123).unwrap();
        let rec = r.record();
        assert_eq!(rec.addrs, vec![local]);
        assert_eq!(rec.free_mib, 100, "free space is capped by capacity");
        assert_eq!(rec.roles, ROLE_STORAGE);
        assert_eq!(rec.seq, 1_700_000_000_123);
        assert_eq!(rec.issued_at, 1_700_000_000);
        c.advertise = vec!["10.0.0.1:7946".parse().unwrap()];
        let r = own_record(&i, &c, local, 0, 1).unwrap();
        assert_eq!(r.record().addrs, c.advertise);
    }

    #[test]
    fn a_certificate_for_another_node_or_expired_refuses_to_start() {
        let grid_key = Identity::generate();
        let me = Identity::generate();
        let other = Identity::generate();
        let mut c = cfg();
        c.grid = Some(grapevine_crypto::GridId::of(&grid_key).to_string());
        c.admission = Some(Admission::issue(&grid_key, &other.node_id(), 0).to_string());
        let e = own_record(&me, &c, c.listen, 0, 1_000_000).unwrap_err();
        assert!(e.to_string().contains("is not admitted to grid"), "{e}");
        c.admission = Some(Admission::issue(&grid_key, &me.node_id(), 500).to_string());
        assert!(
            own_record(&me, &c, c.listen, 0, 1_000_000).is_err(),
            "expired"
        );
        c.admission = Some(Admission::issue(&grid_key, &me.node_id(), 0).to_string());
        let r = own_record(&me, &c, c.listen, 0, 1_000_000).unwrap();
        assert!(r.record().admission.is_some());
    }
}
