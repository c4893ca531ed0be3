//! The churn plan: which nodes crash, which leave gracefully, and when each
//! comes back. Pure (time and a seeded RNG are inputs), so a test drives it
//! through hours in microseconds; the harness polls it and turns each
//! [`Step`] into commands to the workers.
//!
//! Every `every` (30 s by default) `pct`% of the nodes (at least one) crash
//! and `leaves` more leave gracefully; each returns `return_after` (60 s)
//! later, from its own directory. Victims are drawn from the eligible nodes
//! that are up (the seed and the client nodes are never eligible: the grid
//! must stay joinable and the workload must keep running). After
//! [`ChurnPlanner::stop`], no node goes down any more, but those down
//! still return on schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// How the grid churns.
#[derive(Debug, Clone, Copy)]
pub struct ChurnConfig {
    /// Time between steps.
    pub every: Duration,
    /// Nodes crashed per step (already worked out from the percentage).
    pub crashes: usize,
    /// Nodes leaving gracefully per step.
    pub leaves: usize,
    /// How long a node stays down.
    pub return_after: Duration,
}

impl ChurnConfig {
    /// `pct`% of `nodes` crash per step (at least one if `pct` > 0), and a
    /// fifth as many (at least one) leave.
    pub fn from_pct(nodes: usize, pct: f64, every: Duration, return_after: Duration) -> Self {
        let crashes = if pct > 0.0 {
            ((nodes as f64 * pct / 100.0).round() as usize).max(1)
        } else {
            0
        };
        ChurnConfig {
            every,
            crashes,
            leaves: crashes.div_ceil(5),
            return_after,
        }
    }
}

/// How a node went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// Crashed: tasks dropped, no goodbye, store kept.
    Crash,
    /// Left gracefully.
    Leave,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Nodes to crash.
    pub crash: Vec<usize>,
    /// Nodes to leave.
    pub leave: Vec<usize>,
    /// Nodes to bring back (from their directory).
    pub back: Vec<usize>,
}

impl Step {
    /// Whether anything goes down in this step.
    pub fn takes_down(&self) -> bool {
        !self.crash.is_empty() || !self.leave.is_empty()
    }
}

/// The churn schedule.
#[derive(Debug)]
pub struct ChurnPlanner {
    cfg: ChurnConfig,
    eligible: Vec<usize>,
    /// Down nodes: how, and when they return.
    down: BTreeMap<usize, (Down, Duration)>,
    next_step: Duration,
    stopped: bool,
    rng: SmallRng,
}

impl ChurnPlanner {
    /// A plan over the `eligible` nodes; the first step is at `every`.
    pub fn new(cfg: ChurnConfig, eligible: Vec<usize>, seed: u64) -> Self {
        ChurnPlanner {
            cfg,
            eligible,
            down: BTreeMap::new(),
            next_step: cfg.every,
            stopped: cfg.crashes + cfg.leaves == 0 || cfg.every.is_zero(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Everything due at `t` (time since the plan started), if anything.
    pub fn poll(&mut self, t: Duration) -> Option<Step> {
        let mut step = Step::default();
        let back: Vec<usize> = self
            .down
            .iter()
            .filter(|(_, (_, at))| *at <= t)
            .map(|(i, _)| *i)
            .collect();
        for i in &back {
            self.down.remove(i);
        }
        step.back = back;
        if !self.stopped && t >= self.next_step {
            let mut up: Vec<usize> = self
                .eligible
                .iter()
                .copied()
                .filter(|i| !self.down.contains_key(i) && !step.back.contains(i))
                .collect();
            up.shuffle(&mut self.rng);
            let returns = t + self.cfg.return_after;
            for (kind, count) in [
                (Down::Crash, self.cfg.crashes),
                (Down::Leave, self.cfg.leaves),
            ] {
                for _ in 0..count {
                    let Some(i) = up.pop() else { break };
                    self.down.insert(i, (kind, returns));
                    match kind {
                        Down::Crash => step.crash.push(i),
                        Down::Leave => step.leave.push(i),
                    }
                }
            }
            step.crash.sort_unstable();
            step.leave.sort_unstable();
            // Steps keep their rhythm even when polled late.
            while self.next_step <= t {
                self.next_step += self.cfg.every;
            }
        }
        (step != Step::default()).then_some(step)
    }

    /// No node goes down any more; those down return on schedule.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// When the next thing is due, if anything is.
    pub fn next_due(&self) -> Option<Duration> {
        let ret = self.down.values().map(|(_, at)| *at).min();
        let step = (!self.stopped).then_some(self.next_step);
        match (ret, step) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The nodes down now, and how.
    pub fn down(&self) -> impl Iterator<Item = (usize, Down)> + '_ {
        self.down.iter().map(|(i, (d, _))| (*i, *d))
    }

    /// Whether every node is up.
    pub fn all_up(&self) -> bool {
        self.down.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn plan(nodes: usize, pct: f64) -> ChurnPlanner {
        let cfg = ChurnConfig::from_pct(nodes, pct, 30 * S, 60 * S);
        // Node 0 (the seed) and 1..=4 (clients) are never eligible.
        ChurnPlanner::new(cfg, (5..nodes).collect(), 1)
    }

    #[test]
    fn one_percent_of_a_thousand_is_ten_crashes_and_two_leaves() {
        let c = ChurnConfig::from_pct(1000, 1.0, 30 * S, 60 * S);
        assert_eq!((c.crashes, c.leaves), (10, 2));
        let c = ChurnConfig::from_pct(100, 1.0, 30 * S, 60 * S);
        assert_eq!((c.crashes, c.leaves), (1, 1));
        let c = ChurnConfig::from_pct(1000, 0.0, 30 * S, 60 * S);
        assert_eq!((c.crashes, c.leaves), (0, 0));
    }

    #[test]
    fn nodes_go_down_every_step_and_return_after_their_time() {
        let mut p = plan(1000, 1.0);
        assert_eq!(p.poll(29 * S), None);
        assert_eq!(p.next_due(), Some(30 * S));
        let first = p.poll(30 * S).unwrap();
        assert_eq!((first.crash.len(), first.leave.len()), (10, 2));
        assert!(first.back.is_empty());
        let second = p.poll(60 * S).unwrap();
        assert_eq!((second.crash.len(), second.leave.len()), (10, 2));
        assert_eq!(p.down().count(), 24);
        // At 90 s the first step's nodes return and a third step runs;
        // the returning nodes are not picked again in the same step.
        let third = p.poll(90 * S).unwrap();
        let mut back = third.back.clone();
        let mut want: Vec<usize> = first.crash.iter().chain(&first.leave).copied().collect();
        back.sort_unstable();
        want.sort_unstable();
        assert_eq!(back, want);
        for i in third.crash.iter().chain(&third.leave) {
            assert!(!back.contains(i) && !second.crash.contains(i) && !second.leave.contains(i));
        }
        assert_eq!(p.down().count(), 24);
    }

    #[test]
    fn excluded_nodes_are_never_chosen_and_down_nodes_never_twice() {
        let mut p = plan(40, 10.0);
        let mut t = Duration::ZERO;
        let mut down = std::collections::HashSet::new();
        while t < 3600 * S {
            t += S;
            if let Some(s) = p.poll(t) {
                for i in &s.back {
                    assert!(down.remove(i), "{i} returned without being down");
                }
                for i in s.crash.iter().chain(&s.leave) {
                    assert!(*i >= 5, "the seed or a client was taken down");
                    assert!(down.insert(*i), "{i} taken down twice");
                }
            }
            assert_eq!(down.len(), p.down().count());
        }
    }

    #[test]
    fn after_stop_nobody_goes_down_and_everybody_returns() {
        let mut p = plan(100, 5.0);
        p.poll(30 * S).unwrap();
        p.stop();
        assert_eq!(p.next_due(), Some(90 * S));
        assert_eq!(p.poll(60 * S), None, "no step after stop");
        let s = p.poll(90 * S).unwrap();
        assert_eq!(s.back.len(), 6);
        assert!(p.all_up());
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn more_victims_than_nodes_takes_what_there_is() {
        let cfg = ChurnConfig {
            every: S,
            crashes: 50,
            leaves: 50,
            return_after: 10 * S,
        };
        let mut p = ChurnPlanner::new(cfg, vec![1, 2, 3], 9);
        let s = p.poll(S).unwrap();
        assert_eq!(s.crash.len() + s.leave.len(), 3);
        assert_eq!(p.poll(2 * S), None, "nobody left to take down");
    }
}
