//! The queue of updates waiting to be piggybacked: each is sent a bounded
//! number of times, fewest-sent first and newest first among equals; a newer
//! update about the same node replaces the older one.

use std::collections::BTreeMap;

use grapevine_crypto::NodeId;
use hashbrown::HashMap;

use crate::wire::Update;

/// What an update is about: one slot per node for its state, one for its
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// Alive/Suspect/Dead/Left of a node.
    State(NodeId),
    /// A node's record.
    Record(NodeId),
}

#[derive(Debug)]
struct Item {
    update: Update,
    len: usize,
    sent: u32,
    order: u64,
}

/// Updates waiting to be sent.
#[derive(Debug, Default)]
pub struct Broadcasts {
    items: HashMap<Key, Item>,
    queue: BTreeMap<(u32, u64), Key>,
    counter: u64,
}

impl Broadcasts {
    /// Queue `update` under `key`, replacing what was there.
    pub fn push(&mut self, key: Key, update: Update) {
        if let Some(old) = self.items.remove(&key) {
            self.queue.remove(&(old.sent, old.order));
        }
        self.counter += 1;
        // Newest first among equally-sent: invert the counter.
        let order = u64::MAX - self.counter;
        let len = update.encoded_len();
        self.queue.insert((0, order), key);
        self.items.insert(
            key,
            Item {
                update,
                len,
                sent: 0,
                order,
            },
        );
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of updates waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The update queued under `key`, if any.
    pub fn get(&self, key: &Key) -> Option<&Update> {
        self.items.get(key).map(|i| &i.update)
    }

    /// Take updates fitting in `budget` bytes, counting one transmission for
    /// each; state updates sent `limit` times and records sent
    /// `record_limit` times are dropped from the queue.
    pub fn take(&mut self, mut budget: usize, limit: u32, record_limit: u32) -> Vec<Update> {
        let mut chosen = Vec::new();
        for (&(sent, order), key) in self.queue.iter() {
            if budget < 8 {
                break;
            }
            let item = &self.items[key];
            if item.len + 2 <= budget {
                budget -= item.len + 2;
                chosen.push((sent, order, *key));
            }
            if chosen.len() >= 64 {
                break;
            }
        }
        let mut out = Vec::with_capacity(chosen.len());
        for (sent, order, key) in chosen {
            self.queue.remove(&(sent, order));
            let item = self.items.get_mut(&key).expect("queued keys have items");
            item.sent += 1;
            out.push(item.update.clone());
            let lim = match key {
                Key::State(_) => limit,
                Key::Record(_) => record_limit,
            };
            if item.sent >= lim {
                self.items.remove(&key);
            } else {
                self.queue.insert((item.sent, order), key);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn sends_each_update_limit_times_then_drops_it() {
        let mut b = Broadcasts::default();
        b.push(
            Key::State(id(1)),
            Update::Dead {
                id: id(1),
                incarnation: 1,
            },
        );
        for _ in 0..3 {
            assert_eq!(b.take(1400, 3, 3).len(), 1);
        }
        assert!(b.take(1400, 3, 3).is_empty());
        assert!(b.is_empty());
    }

    #[test]
    fn newer_update_replaces_older_for_same_key() {
        let mut b = Broadcasts::default();
        b.push(
            Key::State(id(1)),
            Update::Suspect {
                id: id(1),
                incarnation: 1,
            },
        );
        b.push(
            Key::State(id(1)),
            Update::Dead {
                id: id(1),
                incarnation: 1,
            },
        );
        let t = b.take(1400, 5, 5);
        assert_eq!(
            t,
            vec![Update::Dead {
                id: id(1),
                incarnation: 1
            }]
        );
    }

    #[test]
    fn respects_budget_and_prefers_least_sent() {
        let mut b = Broadcasts::default();
        for i in 0..20u8 {
            b.push(Key::Record(id(i)), Update::Record(vec![i; 170]));
        }
        let first = b.take(1400, 10, 10);
        assert!(first.len() >= 6 && first.len() <= 8, "{}", first.len());
        let total: usize = first.iter().map(|u| u.encoded_len() + 2).sum();
        assert!(total <= 1400);
        // The next take prefers the never-sent ones.
        let second = b.take(1400, 10, 10);
        for u in &second {
            assert!(!first.contains(u));
        }
    }
}
