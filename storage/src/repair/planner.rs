//! The repair planner: when a server should repair a file it holds a share
//! of. A pure state machine on a clock it is given (`now` in every call);
//! the node's repair job feeds it what each check found and acts on its
//! [`Decision`]s.
//!
//! * **Threshold.** A file needs repair when its distinct good shares are
//!   below a threshold: configured between `k` and `n`, `happy` by default
//!   (a file with fewer than `happy` good shares has lost what its upload
//!   promised). Below `k` nothing can be done: [`Decision::Unrecoverable`].
//! * **Grace.** It must stay below for longer than the grace period before
//!   anyone repairs it: a server rebooting or cut off for a while comes
//!   back with its shares, and its absence starts no repair. Any check
//!   that finds the file at or above the threshold resets the clock.
//! * **Responsibility.** Every live holder checks, but only the holder with
//!   the lowest permuted rank (the permuted list of the file's storage
//!   index, which every node computes alike) repairs at the end of the
//!   grace period. The holder `p` places behind it waits `p` takeover
//!   periods more: if the first is alive but not repairing (stuck, failing,
//!   overloaded) the next takes over; if the first has left, it is no
//!   longer a live holder and the next is first.
//! * **Backoff.** A repair that leaves the file below the threshold (a
//!   lying server, too few servers to place on) is retried after a backoff
//!   that doubles up to a cap, so a file that cannot be healed costs a
//!   bounded effort and never a loop.
//!
//! State is kept only for files below their threshold, so the planner's
//! memory is bounded by the shares its server holds.
//!
//! **Restarts.** [`Planner::save`] gives that state as durations (how long
//! each file has been seen below, how long until its next attempt), which
//! the node keeps on disk; [`Planner::restore`] takes it back at the next
//! start. The time the server was down counts for nothing (its clock for a
//! file pauses): a responsible server that restarts often resumes its grace
//! period instead of starting it over every time, and nothing becomes due
//! merely because the server was away. Restored files are not repaired
//! before a settling time after the start either, so the first checks,
//! made while the server's view of the grid is still filling, start no
//! storm of repairs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::types::StorageIndex;

/// The planner's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannerConfig {
    /// How long a file must stay below its threshold before a repair.
    pub grace: Duration,
    /// Distinct good shares below which a file is repaired, clamped to
    /// `k..=n`; `None`: the file's `happy`.
    pub threshold: Option<u16>,
    /// Extra wait per place a holder stands behind the first live holder.
    pub takeover: Duration,
    /// First wait after a repair that did not heal the file.
    pub backoff_min: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
}

impl Default for PlannerConfig {
    /// An hour of grace, `happy` as threshold, 15 minutes per place of
    /// takeover, backoff from 10 minutes to a day.
    fn default() -> Self {
        PlannerConfig {
            grace: Duration::from_secs(3600),
            threshold: None,
            takeover: Duration::from_secs(900),
            backoff_min: Duration::from_secs(600),
            backoff_max: Duration::from_secs(86_400),
        }
    }
}

/// What one check of a file found, from one holder's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Distinct good shares found.
    pub good: u16,
    /// Shares needed to read.
    pub k: u16,
    /// Shares made.
    pub n: u16,
    /// The default threshold (the grid's `happy`).
    pub happy: u16,
    /// This server's rank in the file's permuted list.
    pub my_rank: usize,
    /// Ranks of the live holders found (servers that answered and hold a
    /// share), this server included.
    pub holder_ranks: Vec<usize>,
}

/// What to do about a file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// At or above the threshold: nothing to do.
    Healthy,
    /// Fewer than `k` good shares: nothing repair can do.
    Unrecoverable,
    /// Below the threshold; check again at `until` (grace, takeover or
    /// backoff not over).
    Wait {
        /// When a repair may be due.
        until: Instant,
    },
    /// Repair now, then report with [`Planner::repaired`].
    Repair,
}

#[derive(Debug, Clone, Copy)]
struct FileState {
    below_since: Instant,
    failures: u32,
    retry_at: Option<Instant>,
}

/// One file's planner state as kept across a restart: durations, since
/// one process's clock means nothing to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// The file.
    pub si: StorageIndex,
    /// How long this server has seen the file below its threshold.
    pub below_for: Duration,
    /// Repairs of it that did not heal it.
    pub failures: u32,
    /// Time left before the next attempt after a failed one.
    pub retry_in: Option<Duration>,
}

/// Per-file repair decisions; see the module documentation.
#[derive(Debug, Clone)]
pub struct Planner {
    cfg: PlannerConfig,
    files: HashMap<StorageIndex, FileState>,
    /// No repair before this (the settling time after a restore).
    not_before: Option<Instant>,
}

impl Planner {
    /// A planner with `cfg`.
    pub fn new(cfg: PlannerConfig) -> Self {
        Planner {
            cfg,
            files: HashMap::new(),
            not_before: None,
        }
    }

    /// A planner with `cfg` that resumes `saved` (from [`Planner::save`]
    /// before a restart) at `now`: each file's time below its threshold
    /// goes on from where it was (the time the server was down does not
    /// count), and no file is repaired before `now + settle`.
    pub fn restore(
        cfg: PlannerConfig,
        saved: impl IntoIterator<Item = Saved>,
        now: Instant,
        settle: Duration,
    ) -> Self {
        let mut p = Planner::new(cfg);
        for s in saved {
            let below_since = earlier(now, s.below_for);
            p.files.insert(
                s.si,
                FileState {
                    below_since,
                    failures: s.failures,
                    // A saved wait is never longer than the longest
                    // backoff (a damaged file could say a century).
                    retry_at: s.retry_in.map(|d| later(now, d.min(p.cfg.backoff_max))),
                },
            );
        }
        p.not_before = Some(later(now, settle));
        p
    }

    /// The state of the files below their threshold at `now`, to
    /// [`Planner::restore`] after a restart.
    pub fn save(&self, now: Instant) -> Vec<Saved> {
        let mut out: Vec<Saved> = self
            .files
            .iter()
            .map(|(si, st)| Saved {
                si: *si,
                below_for: now.saturating_duration_since(st.below_since),
                failures: st.failures,
                retry_in: st.retry_at.map(|r| r.saturating_duration_since(now)),
            })
            .collect();
        out.sort_unstable_by_key(|s| s.si);
        out
    }

    /// Keep only the files `keep` says this server still holds shares of.
    pub fn retain(&mut self, mut keep: impl FnMut(&StorageIndex) -> bool) {
        self.files.retain(|si, _| keep(si));
    }

    /// The threshold for a file of `k`, `n`, `happy`.
    pub fn threshold(&self, k: u16, n: u16, happy: u16) -> u16 {
        self.cfg.threshold.unwrap_or(happy).clamp(k, n.max(k))
    }

    /// A check of `si` at `now` found `obs`: what to do.
    pub fn observe(&mut self, now: Instant, si: StorageIndex, obs: &Observation) -> Decision {
        if obs.good >= self.threshold(obs.k, obs.n, obs.happy) {
            self.files.remove(&si);
            return Decision::Healthy;
        }
        if obs.good < obs.k {
            // Keep the clock: the file may come back above k.
            self.files.entry(si).or_insert(FileState {
                below_since: now,
                failures: 0,
                retry_at: None,
            });
            return Decision::Unrecoverable;
        }
        let st = *self.files.entry(si).or_insert(FileState {
            below_since: now,
            failures: 0,
            retry_at: None,
        });
        // Live holders ranked before this server.
        let place = super::schedule::place(obs.my_rank, &obs.holder_ranks);
        let wait = self.cfg.grace.saturating_add(
            self.cfg
                .takeover
                .saturating_mul(place.min(u32::MAX as usize) as u32),
        );
        let mut due = later(st.below_since, wait);
        if let Some(r) = st.retry_at {
            due = due.max(r);
        }
        if let Some(nb) = self.not_before {
            due = due.max(nb);
        }
        if now >= due {
            Decision::Repair
        } else {
            Decision::Wait { until: due }
        }
    }

    /// A repair of `si` ended at `now`; `healed`: the file was at or above
    /// its threshold afterwards.
    pub fn repaired(&mut self, now: Instant, si: StorageIndex, healed: bool) {
        if healed {
            self.files.remove(&si);
            return;
        }
        let cfg = self.cfg;
        if let Some(st) = self.files.get_mut(&si) {
            st.failures = st.failures.saturating_add(1);
            let factor = 1u32 << (st.failures - 1).min(20);
            let wait = cfg.backoff_min.saturating_mul(factor).min(cfg.backoff_max);
            st.retry_at = Some(later(now, wait));
        }
    }

    /// This server holds no share of `si` any more.
    pub fn forget(&mut self, si: &StorageIndex) {
        self.files.remove(si);
    }

    /// Files known below their threshold (waiting, backing off or
    /// unrecoverable).
    pub fn below_threshold(&self) -> usize {
        self.files.len()
    }
}

/// The longest wait the planner counts: settings beyond it (a century)
/// mean "not in this process's life" without overflowing a clock.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `d` after `t`, at most [`FOREVER`].
fn later(t: Instant, d: Duration) -> Instant {
    let d = d.min(FOREVER);
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(t)
}

/// `d` before `t`, or as far back as the clock goes.
fn earlier(t: Instant, d: Duration) -> Instant {
    let mut d = d.min(FOREVER);
    loop {
        if let Some(e) = t.checked_sub(d) {
            return e;
        }
        if d.is_zero() {
            return t;
        }
        d /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI: StorageIndex = StorageIndex([4; 16]);
    const MIN: Duration = Duration::from_secs(60);

    fn cfg() -> PlannerConfig {
        PlannerConfig {
            grace: 10 * MIN,
            threshold: None,
            takeover: 5 * MIN,
            backoff_min: 2 * MIN,
            backoff_max: 7 * MIN,
        }
    }

    /// 3-of-10, happy 7: `good` shares, this server at `me`, live holders
    /// at `holders`.
    fn obs(good: u16, me: usize, holders: &[usize]) -> Observation {
        Observation {
            good,
            k: 3,
            n: 10,
            happy: 7,
            my_rank: me,
            holder_ranks: holders.to_vec(),
        }
    }

    #[test]
    fn the_threshold_is_happy_by_default_and_stays_between_k_and_n() {
        let p = Planner::new(cfg());
        assert_eq!(p.threshold(3, 10, 7), 7);
        for (set, want) in [(Some(5), 5), (Some(1), 3), (Some(40), 10)] {
            let p = Planner::new(PlannerConfig {
                threshold: set,
                ..cfg()
            });
            assert_eq!(p.threshold(3, 10, 7), want, "{set:?}");
        }
        let mut p = Planner::new(cfg());
        let t0 = Instant::now();
        assert_eq!(p.observe(t0, SI, &obs(7, 0, &[0])), Decision::Healthy);
        assert!(matches!(
            p.observe(t0, SI, &obs(6, 0, &[0])),
            Decision::Wait { .. }
        ));
        assert_eq!(p.observe(t0, SI, &obs(2, 0, &[0])), Decision::Unrecoverable);
    }

    /// Below the threshold for less than the grace period: no repair; a
    /// check that finds the file whole again (a server back from a
    /// restart) resets the clock.
    #[test]
    fn grace_a_short_absence_starts_no_repair() {
        let mut p = Planner::new(cfg());
        let t0 = Instant::now();
        let at = |m: u32| t0 + MIN * m;
        assert_eq!(
            p.observe(at(0), SI, &obs(6, 0, &[0, 3])),
            Decision::Wait { until: at(10) }
        );
        assert!(matches!(
            p.observe(at(9), SI, &obs(6, 0, &[0, 3])),
            Decision::Wait { .. }
        ));
        // The server is back at minute 9: healthy, clock reset.
        assert_eq!(p.observe(at(9), SI, &obs(7, 0, &[0, 3])), Decision::Healthy);
        assert_eq!(p.below_threshold(), 0);
        // Gone again at 15: the grace period starts over.
        assert_eq!(
            p.observe(at(15), SI, &obs(6, 0, &[0, 3])),
            Decision::Wait { until: at(25) }
        );
        assert!(matches!(
            p.observe(at(24), SI, &obs(6, 0, &[0])),
            Decision::Wait { .. }
        ));
        assert_eq!(p.observe(at(25), SI, &obs(6, 0, &[0])), Decision::Repair);
    }

    /// Of the live holders, the one with the lowest permuted rank repairs
    /// when the grace period ends; the others wait their place in line.
    #[test]
    fn the_lowest_ranked_live_holder_is_responsible() {
        let t0 = Instant::now();
        let at = |m: u32| t0 + MIN * m;
        let holders = [2, 4, 9];
        let mut first = Planner::new(cfg());
        let mut second = Planner::new(cfg());
        let mut third = Planner::new(cfg());
        first.observe(at(0), SI, &obs(5, 2, &holders));
        second.observe(at(0), SI, &obs(5, 4, &holders));
        third.observe(at(0), SI, &obs(5, 9, &holders));
        assert_eq!(
            first.observe(at(10), SI, &obs(5, 2, &holders)),
            Decision::Repair
        );
        assert_eq!(
            second.observe(at(10), SI, &obs(5, 4, &holders)),
            Decision::Wait { until: at(15) }
        );
        assert_eq!(
            third.observe(at(10), SI, &obs(5, 9, &holders)),
            Decision::Wait { until: at(20) }
        );
        // The first repaired: the others see a healthy file and stand down.
        first.repaired(at(11), SI, true);
        assert_eq!(
            second.observe(at(12), SI, &obs(10, 4, &holders)),
            Decision::Healthy
        );
        assert_eq!(
            third.observe(at(12), SI, &obs(10, 9, &holders)),
            Decision::Healthy
        );
        assert_eq!(second.below_threshold() + third.below_threshold(), 0);
    }

    /// The first holder alive but not repairing: the next takes over one
    /// takeover period later; the first gone for good: the next is first
    /// and repairs at the end of the grace period.
    #[test]
    fn takeover_when_the_responsible_holder_stops() {
        let t0 = Instant::now();
        let at = |m: u32| t0 + MIN * m;
        let mut second = Planner::new(cfg());
        second.observe(at(0), SI, &obs(5, 4, &[2, 4]));
        assert!(matches!(
            second.observe(at(12), SI, &obs(5, 4, &[2, 4])),
            Decision::Wait { .. }
        ));
        // Still below at 15 (the first did nothing): take over.
        assert_eq!(
            second.observe(at(15), SI, &obs(5, 4, &[2, 4])),
            Decision::Repair
        );
        // The first left: at the end of the grace period the second is
        // responsible.
        let mut second = Planner::new(cfg());
        second.observe(at(0), SI, &obs(5, 4, &[2, 4]));
        assert_eq!(
            second.observe(at(10), SI, &obs(4, 4, &[4])),
            Decision::Repair
        );
    }

    /// A repair that did not heal the file is retried after a backoff
    /// that doubles up to its cap; a healing one clears the file.
    #[test]
    fn backoff_after_failed_repairs_doubles_to_a_cap() {
        let t0 = Instant::now();
        let at = |m: u32| t0 + MIN * m;
        let mut p = Planner::new(cfg());
        let o = obs(5, 0, &[0]);
        p.observe(at(0), SI, &o);
        assert_eq!(p.observe(at(10), SI, &o), Decision::Repair);
        p.repaired(at(10), SI, false);
        assert_eq!(p.observe(at(11), SI, &o), Decision::Wait { until: at(12) });
        assert_eq!(p.observe(at(12), SI, &o), Decision::Repair);
        p.repaired(at(12), SI, false);
        assert_eq!(p.observe(at(13), SI, &o), Decision::Wait { until: at(16) });
        p.repaired(at(16), SI, false);
        // 8 minutes capped at 7.
        assert_eq!(p.observe(at(17), SI, &o), Decision::Wait { until: at(23) });
        for i in 0..100 {
            p.repaired(at(30 + i), SI, false);
        }
        assert_eq!(
            p.observe(at(130), SI, &o),
            Decision::Wait { until: at(136) }
        );
        p.repaired(at(136), SI, true);
        assert_eq!(p.below_threshold(), 0);
        // Forgetting a file drops its state.
        p.observe(at(200), SI, &o);
        p.forget(&SI);
        assert_eq!(p.below_threshold(), 0);
    }

    /// A restart neither starts the grace period over nor makes anything
    /// due at boot: the time seen below goes on from where it was (the
    /// time down does not count), backoffs are kept, and nothing is
    /// repaired before the settling time.
    #[test]
    fn a_saved_wait_longer_than_the_longest_backoff_is_cut_to_it() {
        let t0 = Instant::now();
        let saved = Saved {
            si: SI,
            below_for: 60 * MIN,
            failures: u32::MAX,
            retry_in: Some(Duration::MAX),
        };
        let mut q = Planner::restore(cfg(), [saved], t0, MIN);
        // Retried after the longest backoff (7 minutes), not a year on.
        assert_eq!(
            q.observe(t0 + MIN, SI, &obs(5, 0, &[0])),
            Decision::Wait {
                until: t0 + 7 * MIN
            }
        );
        assert_eq!(
            q.observe(t0 + 7 * MIN, SI, &obs(5, 0, &[0])),
            Decision::Repair
        );
    }

    #[test]
    fn a_restart_resumes_the_grace_and_starts_no_storm() {
        let t0 = Instant::now();
        let at = |m: u32| t0 + MIN * m;
        let other = StorageIndex([5; 16]);
        let failing = StorageIndex([6; 16]);
        let mut p = Planner::new(cfg());
        // SI below since minute 0; `other` since minute 0 too but it is
        // not this server's turn until minute 20 (third in line).
        p.observe(at(0), SI, &obs(6, 0, &[0]));
        p.observe(at(0), other, &obs(6, 9, &[2, 4, 9]));
        p.observe(at(0), failing, &obs(5, 0, &[0]));
        assert_eq!(
            p.observe(at(10), failing, &obs(5, 0, &[0])),
            Decision::Repair
        );
        p.repaired(at(10), failing, false);
        p.observe(at(14), other, &obs(6, 9, &[2, 4, 9]));
        let saved = p.save(at(14));
        assert_eq!(saved.len(), 3);
        // Down half an hour; back at minute 44, settling for one minute.
        let mut q = Planner::restore(cfg(), saved.clone(), at(44), MIN);
        assert_eq!(q.below_threshold(), 3);
        assert_eq!(q.save(at(44)), saved, "the time down counts for nothing");
        // SI had 14 minutes below (grace 10): due, but not before settling.
        assert_eq!(
            q.observe(at(44), SI, &obs(6, 0, &[0])),
            Decision::Wait { until: at(45) }
        );
        assert_eq!(q.observe(at(45), SI, &obs(6, 0, &[0])), Decision::Repair);
        // `other`: 14 of its 20 minutes seen; 6 more after the restart.
        assert_eq!(
            q.observe(at(44), other, &obs(6, 9, &[2, 4, 9])),
            Decision::Wait { until: at(50) }
        );
        // The failed one keeps its backoff (2 minutes from minute 10, of
        // which 4 had passed: retry due at once, after settling).
        assert_eq!(
            q.observe(at(44), failing, &obs(5, 0, &[0])),
            Decision::Wait { until: at(45) }
        );
        q.repaired(at(45), failing, false);
        assert_eq!(
            q.observe(at(46), failing, &obs(5, 0, &[0])),
            Decision::Wait { until: at(49) },
            "second failure: 4 minutes"
        );
        // A fresh file after the restart gets the whole grace period.
        let fresh = StorageIndex([7; 16]);
        assert_eq!(
            q.observe(at(44), fresh, &obs(6, 0, &[0])),
            Decision::Wait { until: at(54) }
        );
        // Files no longer held are dropped.
        q.retain(|si| *si != other);
        assert_eq!(q.below_threshold(), 3);
        // Durations from a damaged file cannot overflow the clock.
        let mut r = Planner::restore(
            cfg(),
            [Saved {
                si: SI,
                below_for: Duration::MAX,
                failures: u32::MAX,
                retry_in: Some(Duration::MAX),
            }],
            at(0),
            Duration::MAX,
        );
        assert!(matches!(
            r.observe(at(1), SI, &obs(6, 0, &[0])),
            Decision::Wait { .. }
        ));
        r.repaired(at(1), SI, false);
    }

    /// Values from peers cannot overflow the planner: huge ranks, a
    /// grace period at the edge of time.
    #[test]
    fn extreme_values_do_not_panic() {
        let mut p = Planner::new(PlannerConfig {
            grace: Duration::MAX,
            takeover: Duration::MAX,
            backoff_min: Duration::MAX,
            backoff_max: Duration::MAX,
            threshold: Some(u16::MAX),
        });
        let t0 = Instant::now();
        let o = Observation {
            good: 1,
            k: 1,
            n: 256,
            happy: 0,
            my_rank: usize::MAX,
            holder_ranks: vec![0; 10_000],
        };
        assert!(matches!(p.observe(t0, SI, &o), Decision::Wait { .. }));
        p.repaired(t0, SI, false);
        assert!(matches!(p.observe(t0, SI, &o), Decision::Wait { .. }));
    }
}
