//! Which dead verdicts are false.
//!
//! A verdict that a node is dead is true while the harness has the node
//! down. One about a node that is up is false, unless it is about a life
//! of the node that ended: a node that crashed and came back runs at a
//! higher incarnation (a node's incarnation is its record's sequence
//! number, at least the wall clock in milliseconds when it started, see
//! `grapevine_node`'s `seq`), and an observer that had not yet heard of the
//! crash may reach its verdict on the old incarnation just after the
//! return. That verdict is right about the life it names, and the observer
//! takes the node back as soon as it hears of the new one; it is counted
//! apart. The harness stamps each churn step with the wall clock before any
//! node of it starts, so an incarnation below the stamp of the node's last
//! return belongs to an earlier life, and one at or above it to the
//! current one.

use std::collections::{HashMap, HashSet};

use grapevine_crypto::NodeId;

/// What a dead verdict says, set against what the harness did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadVerdict {
    /// The node is down.
    True,
    /// The node is up again; the verdict is about the life before.
    EndedLife,
    /// The node is up, in the life the verdict is about.
    False,
}

/// When each node last came back, in wall-clock milliseconds.
#[derive(Debug, Default)]
pub struct Returns {
    at_ms: HashMap<NodeId, u64>,
}

impl Returns {
    /// A churn step stamped `at_ms` changed the set of nodes down from
    /// `before` to `after`: those no longer down came back then.
    pub fn step(&mut self, before: &HashSet<NodeId>, after: &HashSet<NodeId>, at_ms: u64) {
        for id in before.difference(after) {
            self.at_ms.insert(*id, at_ms);
        }
    }

    /// A verdict that `id` is dead at `incarnation`, with `down` the nodes
    /// the harness has down now.
    pub fn classify(&self, down: &HashSet<NodeId>, id: &NodeId, incarnation: u64) -> DeadVerdict {
        if down.contains(id) {
            DeadVerdict::True
        } else if self.at_ms.get(id).is_some_and(|&t| incarnation < t) {
            DeadVerdict::EndedLife
        } else {
            DeadVerdict::False
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn a_verdict_is_false_only_about_a_life_that_is_running() {
        let (a, b) = (id(1), id(2));
        let mut r = Returns::default();
        let none = HashSet::new();
        // Never down: any verdict is false.
        assert_eq!(r.classify(&none, &a, 5), DeadVerdict::False);
        // Down: true.
        let down: HashSet<NodeId> = [a].into();
        r.step(&none, &down, 1_000);
        assert_eq!(r.classify(&down, &a, 5), DeadVerdict::True);
        assert_eq!(r.classify(&down, &b, 5), DeadVerdict::False);
        // Back at 2,000: a verdict on a life begun before is about the
        // ended one; one on the life begun at or after the return is false.
        r.step(&down, &none, 2_000);
        assert_eq!(r.classify(&none, &a, 1_500), DeadVerdict::EndedLife);
        assert_eq!(r.classify(&none, &a, 1_999), DeadVerdict::EndedLife);
        assert_eq!(r.classify(&none, &a, 2_000), DeadVerdict::False);
        assert_eq!(r.classify(&none, &a, 2_001), DeadVerdict::False);
        assert_eq!(r.classify(&none, &b, 1_500), DeadVerdict::False);
    }
}
