//! The node's own record over time: what it says about the node's free
//! space and addresses, and when it is re-signed.
//!
//! A record is what every node holds about every other, so a re-signed
//! record costs a signature check on every node of the grid. The node
//! therefore re-signs only when what it says has changed enough to matter
//! ([`republish_due`], pure): its free space moved by more than
//! [`free_floor_mib`] (64 MiB or 5% of the capacity offered, whichever is
//! larger), or its `advertise` host names now resolve to other addresses;
//! and never more often than `record_refresh_secs` (a minute by default).
//! [`keep`] is the thin task that looks every few seconds, re-signs when due
//! ([`publish`]: the sequence number from `DIR/last_seq`, see
//! [`crate::seq`]) and hands the record to membership and the node's shared
//! state; it also warns in the log when the node's clock is found off the
//! grid's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grapevine_crypto::SignedRecord;

use crate::addr::resolve_all;
use crate::config::Config;
use crate::error::NodeError;
use crate::membership::own_record;
use crate::state::NodeState;

/// How much the published free space must change before it is worth a
/// re-signed record: 64 MiB or 5% of the capacity, whichever is larger.
pub fn free_floor_mib(capacity_mib: u32) -> u32 {
    (capacity_mib / 20).max(64)
}

/// What the node's current record says, and when it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Free space it announces, MiB.
    pub free_mib: u32,
    /// Addresses it announces.
    pub addrs: Vec<SocketAddr>,
    /// When it was signed.
    pub at: Instant,
}

/// Whether the record should be re-signed at `now` to announce `free_mib`
/// and `addrs`: only if at least `min_interval` has passed since the last
/// signature, and then if the addresses differ or the free space moved by
/// more than [`free_floor_mib`] of `capacity_mib`.
pub fn republish_due(
    published: &Published,
    free_mib: u32,
    addrs: &[SocketAddr],
    capacity_mib: u32,
    now: Instant,
    min_interval: Duration,
) -> bool {
    if now.saturating_duration_since(published.at) < min_interval {
        return false;
    }
    addrs != published.addrs.as_slice()
        || published.free_mib.abs_diff(free_mib) > free_floor_mib(capacity_mib)
}

/// The addresses the record should carry: `advertise` resolved, or the
/// socket's own address if `advertise` is empty. A name that does not
/// resolve is left out (and reported); if none resolves, the error lists
/// them all.
///
/// # Errors
/// Every `advertise` entry failed to resolve.
pub async fn record_addrs(cfg: &Config, local: SocketAddr) -> Result<Vec<SocketAddr>, String> {
    if cfg.advertise.is_empty() {
        return Ok(vec![local]);
    }
    let (addrs, errors) = resolve_all(&cfg.advertise, local).await;
    for e in &errors {
        tracing::warn!("advertise: {e}");
    }
    if addrs.is_empty() {
        return Err(format!(
            "none of the `advertise` addresses resolves: {}",
            errors.join("; ")
        ));
    }
    Ok(addrs)
}

/// How often [`keep`] looks at the node's figures.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Keep the node's record current until the task is dropped: every few
/// seconds, measure free space and resolve `advertise`; when
/// [`republish_due`], sign a newer record and publish it.
pub async fn keep(state: Arc<NodeState>, cfg: Config, local: SocketAddr) {
    let rec = state.record();
    let mut published = Published {
        free_mib: rec.record().free_mib,
        addrs: rec.record().addrs.clone(),
        at: Instant::now(),
    };
    let min_interval = Duration::from_secs(cfg.record_refresh_secs);
    let mut clock_warned = false;
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        clock_warned = warn_of_clock(&state, clock_warned).await;
        let figures = state.storage_figures();
        let addrs = match record_addrs(&cfg, local).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("keeping the addresses last published: {e}");
                published.addrs.clone()
            }
        };
        let now = Instant::now();
        let free_mib = figures.free_mib();
        if !republish_due(
            &published,
            free_mib,
            &addrs,
            cfg.capacity_mib,
            now,
            min_interval,
        ) {
            continue;
        }
        match publish(&state, &cfg, addrs.clone(), free_mib).await {
            Ok(_) => {
                published = Published {
                    free_mib,
                    addrs,
                    at: now,
                };
            }
            Err(NodeError::Membership(_)) => return,
            Err(e) => {
                tracing::error!("cannot re-sign this node's record: {e}");
                published.at = now;
            }
        }
    }
}

/// Sign a newer record of this node (`cfg`'s settings, with `addrs` and
/// `free_mib`; the storage role only while the share server serves), its
/// sequence number above every number the node signed before
/// ([`crate::seq`], kept on disk first), and hand it to membership and the
/// node's shared state.
///
/// # Errors
/// The sequence number cannot be kept, the record cannot be signed (a
/// closed grid's admission expired), or membership has stopped
/// ([`NodeError::Membership`]).
pub async fn publish(
    state: &NodeState,
    cfg: &Config,
    addrs: Vec<SocketAddr>,
    free_mib: u32,
) -> Result<SignedRecord, NodeError> {
    // A node whose share server stopped for good keeps the storage role
    // out of its record.
    let mut signed_cfg = cfg.clone();
    if !state.storage_serving() {
        signed_cfg
            .roles
            .retain(|r| *r != crate::config::Role::Storage);
    }
    let seq = state.next_seq().await?;
    let rec = own_record(
        state.identity(),
        &signed_cfg,
        addrs.clone(),
        free_mib,
        seq,
        issue_time_ms(state).await,
    )?;
    tracing::info!(seq, free_mib, addrs = ?addrs, "publishing a re-signed record");
    state.set_record(rec.clone());
    state.membership().update_record(rec.clone()).await?;
    Ok(rec)
}

/// Log a warning when this node's clock is found further than
/// [`crate::state::CLOCK_WARN_SECS`] from the grid's (once, until it is
/// back within); whether it is off now.
async fn warn_of_clock(state: &NodeState, warned: bool) -> bool {
    let Some(o) = state
        .membership()
        .stats()
        .await
        .ok()
        .and_then(|s| s.clock_offset_s)
    else {
        return warned;
    };
    let off = o.unsigned_abs() > crate::state::CLOCK_WARN_SECS;
    if off && !warned {
        let way = if o > 0 { "behind" } else { "ahead of" };
        tracing::warn!(
            "this node's clock is {} s {way} the grid's (measured from members' clocks): set it right (NTP)",
            o.unsigned_abs()
        );
    }
    off
}

/// The time to sign a record at: this node's clock, or the grid's if
/// this node's is ahead of it by more than half the allowance (as the
/// membership core signs again itself; members hold back records issued
/// further ahead than the allowance).
async fn issue_time_ms(state: &NodeState) -> u64 {
    let own = state.clock().unix_ms();
    let half = grapevine_crypto::admission::CLOCK_ALLOWANCE_SECS / 2;
    match state
        .membership()
        .stats()
        .await
        .ok()
        .and_then(|s| s.clock_offset_s)
    {
        Some(o) if o < 0 && o.unsigned_abs() > half => {
            own.saturating_sub(o.unsigned_abs().saturating_mul(1000))
        }
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(last: u8) -> Vec<SocketAddr> {
        vec![SocketAddr::from(([10, 0, 0, last], 7946))]
    }

    #[test]
    fn the_floor_is_64_mib_or_five_percent() {
        assert_eq!(free_floor_mib(1), 64);
        assert_eq!(free_floor_mib(1280), 64);
        assert_eq!(free_floor_mib(10_240), 512);
        assert_eq!(free_floor_mib(u32::MAX), u32::MAX / 20);
    }

    #[test]
    fn re_signed_only_for_a_real_change_and_at_most_once_a_minute() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let p = Published {
            free_mib: 10_240,
            addrs: addrs(1),
            at: t0,
        };
        let due = |free, a: &[SocketAddr], after: u64| {
            republish_due(&p, free, a, 10_240, t0 + Duration::from_secs(after), minute)
        };
        // A change within the floor (512 MiB of 10 GiB) never re-signs.
        assert!(!due(10_240 - 512, &addrs(1), 3600));
        assert!(!due(10_240 + 100, &addrs(1), 3600));
        // A larger one does, but not within a minute of the last signature.
        assert!(!due(10_240 - 513, &addrs(1), 59));
        assert!(due(10_240 - 513, &addrs(1), 60));
        assert!(due(0, &addrs(1), 61));
        // New addresses (a dynamic DNS name moved) re-sign, after a minute.
        assert!(!due(10_240, &addrs(2), 30));
        assert!(due(10_240, &addrs(2), 60));
        // A clock that went backwards never re-signs early.
        let back = republish_due(&p, 0, &addrs(2), 10_240, t0, minute);
        assert!(!back);
    }

    #[tokio::test]
    async fn the_record_carries_advertise_resolved_or_the_socket_address() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut c = Config::new(local);
        assert_eq!(record_addrs(&c, local).await.unwrap(), vec![local]);
        c.advertise = vec![
            "localhost:7946".parse().unwrap(),
            "no-such-host.invalid:1".parse().unwrap(),
        ];
        let a = record_addrs(&c, local).await.unwrap();
        assert!(
            a.iter().all(|a| a.port() == 7946 && a.ip().is_loopback()),
            "{a:?}"
        );
        c.advertise = vec!["no-such-host.invalid:1".parse().unwrap()];
        let e = record_addrs(&c, local).await.unwrap_err();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }
}
