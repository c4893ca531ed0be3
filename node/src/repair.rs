//! Automatic repair by the holders: the node's repair job and what it
//! reports.
//!
//! A storage node checks, every `repair_check_secs`, each file it holds a
//! share of: from its own share's extension block it knows the file's
//! verify capability (no key), asks the first servers of the file's
//! permuted list which shares they hold (checking each listed share's hash
//! list, so a server listing shares it lacks is not believed), and gives
//! what it found to the sans-IO planner
//! ([`grapevine_storage::repair::Planner`]): below the threshold (default
//! `happy`) for longer than the grace period, and this node the live holder
//! with the lowest permuted rank (or the ones before it not acting), it
//! repairs the file ([`grapevine_storage::client::repair`]), paced to
//! `repair_mib_per_s`. See `docs/durability.md`.
//!
//! [`RepairStats`](crate::repair_stats::RepairStats) is what the job has
//! done, read by `status`, the metrics and `grapevine repair`. One pass over
//! the held files every interval, checking those the [`CheckSchedule`]
//! says are due (a healthy file at every pass only by its first live
//! holder); repairs run one at a time. After each pass the planner's state
//! goes to `DIR/repair_state`
//! ([`crate::repair_state`]), and comes back at the next start: a restart
//! pauses each file's grace period rather than starting it over, and
//! restored files wait [`SETTLE_INTERVALS`] check intervals before any
//! repair, so the first checks after a start (the node's view of the grid
//! still filling) start none.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use grapevine_storage::chk::{verify_cap_of, Footer, FOOTER_LEN};
use grapevine_storage::client::{self, permuted_servers, Depth, RepairOptions, ServerRef};
use grapevine_storage::repair::{place, CheckSchedule, Decision, Observation, Planner};
use grapevine_storage::{StorageIndex, VerifyCap};

use crate::repair_stats::{RepairSettings, LAST_ERRORS};
use crate::state::NodeState;

/// Check intervals after a start before a file restored from
/// `DIR/repair_state` may be repaired.
pub const SETTLE_INTERVALS: u32 = 2;

/// Run the repair job of the node whose state is `state` until the task is
/// dropped, keeping the planner's state in `state_path` (if any) across
/// restarts. The first pass starts one interval after the node.
pub async fn run(state: Arc<NodeState>, settings: RepairSettings, state_path: Option<PathBuf>) {
    let saved = state_path
        .as_deref()
        .map(|p| crate::repair_state::load(p, state.clock.unix_ms(), settings.planner.grace))
        .unwrap_or_default();
    if !saved.is_empty() {
        tracing::info!(files = saved.len(), "repair state restored");
    }
    let settle = settings.interval.saturating_mul(SETTLE_INTERVALS);
    let mut planner = Planner::restore(settings.planner, saved, Instant::now(), settle);
    let mut schedule = CheckSchedule::new();
    // The first pass writes, replacing a file it did not restore.
    let mut wrote_some = true;
    for number in 0u64.. {
        tokio::time::sleep(settings.interval).await;
        pass(&state, &mut planner, &mut schedule, number, &settings).await;
        if let Some(p) = &state_path {
            // Written while there is something to keep, and once more
            // when there is nothing left.
            let now = planner.save(Instant::now());
            if !now.is_empty() || wrote_some {
                if let Err(e) = crate::repair_state::save(p, state.clock.unix_ms(), &now) {
                    state
                        .repair_stats
                        .error(format!("repair state not saved: {e}"));
                }
                wrote_some = !now.is_empty();
            }
        }
    }
}

/// The verify capability this node's own share of `si` implies, from the
/// share's extension block (no capability needed).
fn own_verify_cap(state: &NodeState, si: &StorageIndex) -> Option<VerifyCap> {
    let store = state.store();
    let shnum = *store.list(si).ok()?.first()?;
    let size = store.share_size(si, shnum).ok()?;
    let footer_at = size.checked_sub(FOOTER_LEN)?;
    let footer = store.read(si, shnum, footer_at, FOOTER_LEN).ok()?;
    let footer = Footer::parse(&footer, size).ok()?;
    let ueb = store
        .read(si, shnum, footer.ueb_offset, u64::from(footer.ueb_len))
        .ok()?;
    verify_cap_of(*si, &ueb).ok()
}

/// Pass `number`: check the held files the schedule says are due (those
/// below their threshold, and healthy ones by their first live holder,
/// less often by the others: [`CheckSchedule`]), repair those the planner
/// says to.
async fn pass(
    state: &Arc<NodeState>,
    planner: &mut Planner,
    schedule: &mut CheckSchedule,
    number: u64,
    settings: &RepairSettings,
) {
    let stats = &state.repair_stats;
    let servers = match state.storage_servers().await {
        Ok(s) => s,
        Err(e) => {
            stats.error(format!("no view of the grid: {e}"));
            return;
        }
    };
    let me = state.id();
    let (mut below, mut unrecoverable, mut waiting) = (0u64, 0u64, 0u64);
    let held = state.store().storage_indexes();
    let keep: HashSet<StorageIndex> = held.iter().copied().collect();
    planner.retain(|si| keep.contains(si));
    schedule.retain(|si| keep.contains(si));
    for si in held {
        // A file not due was healthy at its last check: nothing to count.
        if !schedule.due(&si, number) {
            continue;
        }
        let Some(cap) = own_verify_cap(state, &si) else {
            // No share of ours to learn the file from (gone, or not one
            // this release reads): nothing to plan.
            planner.forget(&si);
            continue;
        };
        // Enough to tell whether the file is below its threshold; a file
        // that is asks on (and finds every live holder's rank).
        let threshold = planner.threshold(cap.k, cap.n, state.params.happy);
        let results =
            match client::check_enough(state.pool(), &servers, &cap, Depth::Light, threshold).await
            {
                Ok(r) => r,
                Err(e) => {
                    stats.error(format!("check of {si} failed: {e}"));
                    continue;
                }
            };
        stats.files_checked.fetch_add(1, Relaxed);
        let order = permuted_servers(&si, &servers);
        let rank_of = |id: &str| order.iter().position(|s| s.id.to_string() == id);
        let Some(my_rank) = order.iter().position(|s| s.id == me) else {
            continue;
        };
        let mut holder_ranks: Vec<usize> = results
            .results
            .sharemap
            .values()
            .flatten()
            .filter_map(|id| rank_of(id))
            .collect();
        holder_ranks.sort_unstable();
        holder_ranks.dedup();
        let obs = Observation {
            good: u16::try_from(results.results.count_shares_good).unwrap_or(u16::MAX),
            k: cap.k,
            n: cap.n,
            happy: state.params.happy,
            my_rank,
            holder_ranks,
        };
        let decision = planner.observe(Instant::now(), si, &obs);
        let below_now = decision != Decision::Healthy;
        schedule.checked(si, number, below_now, place(my_rank, &obs.holder_ranks));
        match decision {
            Decision::Healthy => {}
            Decision::Unrecoverable => {
                below += 1;
                unrecoverable += 1;
            }
            Decision::Wait { .. } => {
                below += 1;
                waiting += 1;
            }
            Decision::Repair => {
                below += 1;
                repair_one(state, planner, settings, &servers, &cap, &obs).await;
            }
        }
    }
    stats.below_threshold.store(below, Relaxed);
    stats.unrecoverable.store(unrecoverable, Relaxed);
    stats.waiting.store(waiting, Relaxed);
    stats.passes.fetch_add(1, Relaxed);
}

async fn repair_one(
    state: &Arc<NodeState>,
    planner: &mut Planner,
    settings: &RepairSettings,
    servers: &[ServerRef],
    cap: &VerifyCap,
    obs: &Observation,
) {
    let stats = &state.repair_stats;
    stats.repairs_started.fetch_add(1, Relaxed);
    tracing::info!(si = %cap.si, good = obs.good, k = cap.k, n = cap.n, "repairing");
    let opts = RepairOptions {
        verify: false,
        rate: Some(settings.bytes_per_s.max(1)),
    };
    let healed = match client::repair(state.pool(), servers, cap, &opts).await {
        Ok(r) => {
            let rep = &r.repair_report;
            stats.bytes_read.fetch_add(rep.bytes_read, Relaxed);
            stats.bytes_written.fetch_add(rep.bytes_written, Relaxed);
            stats.minimum_read.fetch_add(rep.minimum_read, Relaxed);
            stats
                .shares_regenerated
                .fetch_add(rep.shares_regenerated.len() as u64, Relaxed);
            for e in rep.errors.iter().take(LAST_ERRORS) {
                stats.error(format!("repair of {}: {e}", cap.si));
            }
            let after = r.post_repair_results.results.count_shares_good;
            let healed = after >= usize::from(planner.threshold(cap.k, cap.n, obs.happy));
            tracing::info!(si = %cap.si, after, healed, regenerated = rep.shares_regenerated.len(), "repair done");
            healed
        }
        Err(e) => {
            stats.error(format!("repair of {} failed: {e}", cap.si));
            false
        }
    };
    if healed {
        stats.repairs_succeeded.fetch_add(1, Relaxed);
    }
    planner.repaired(Instant::now(), cap.si, healed);
}
