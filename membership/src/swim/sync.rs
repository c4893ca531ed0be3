//! Anti-entropy: what gossip missed is found in the next round.
//!
//! Two sets are summarised by XOR digests over 256 buckets (the first byte
//! of the node id): the records held ([`crate::store::RecordStore`]) and the
//! signed facts held ([`crate::facts::FactSet`]: signed `Alive` above a
//! record, signed `Left`). Every `sync_interval` (plus jitter) a node sends
//! a random live member both roots. Where a root differs, the member answers
//! with its bucket hashes; the node lists its entries in up to
//! `sync_max_buckets` differing buckets; the member sends what the node
//! lacks (up to `sync_max_records`) and asks for what it lacks itself.
//! While buckets differ, the next round follows after `sync_fast_interval`.
//!
//! | step | records | facts |
//! | --- | --- | --- |
//! | roots | `SyncDigests` (both; `SyncDigest` from older nodes) | |
//! | bucket hashes | `SyncBuckets` | `FactBuckets` |
//! | entries | `SyncHave` (prefix, seq) | `FactHave` (prefix, incarnation, left) |
//! | wanted | `SyncWant` | `FactWant` |
//! | sent | `SyncRecords` | `SyncFacts` |
//!
//! So a node that missed every gossip of a leave learns it in its next
//! round with any member that holds it. Unsigned opinions are in neither
//! set: they cannot make digests differ, and they are never pulled.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grapevine_crypto::NodeId;
use rand::Rng;

use super::{HashMap, Swim, TimerKey};
use crate::facts::Fact;
use crate::wire::{
    reads_facts, BucketEntries, FactEntries, Message, Update, BUCKETS, HEADER_BUDGET, MAX_DATAGRAM,
};

/// Datagrams of entries sent in answer to one set of bucket hashes, at most.
const MAX_HAVE_DATAGRAMS: usize = 16;
/// Wire size of a record entry (prefix, seq) at most, and of a fact entry.
const RECORD_ENTRY: usize = 17;
const FACT_ENTRY: usize = 18;

/// Split `items` into groups that each fit one datagram (by `cost`), at
/// most `max` groups; what does not fit is left out.
fn pack<T>(items: Vec<T>, cost: impl Fn(&T) -> usize, max: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut batch = Vec::new();
    let mut size = HEADER_BUDGET;
    for item in items {
        let c = cost(&item);
        if size + c > MAX_DATAGRAM && !batch.is_empty() {
            out.push(std::mem::take(&mut batch));
            size = HEADER_BUDGET;
            if out.len() >= max {
                return out;
            }
        }
        size += c;
        batch.push(item);
    }
    if !batch.is_empty() && out.len() < max {
        out.push(batch);
    }
    out
}

/// Entries of each bucket, split where a bucket does not fit one datagram;
/// a bucket without entries is listed empty (so the other side sends all
/// it holds there).
fn chunked<E: Clone, B>(
    buckets: Vec<(u8, Vec<E>)>,
    entry: usize,
    make: impl Fn(u8, Vec<E>) -> B,
) -> Vec<(usize, B)> {
    let per = ((MAX_DATAGRAM - HEADER_BUDGET - 8) / entry).max(1);
    let mut out = Vec::new();
    for (b, entries) in buckets {
        if entries.is_empty() {
            out.push((4, make(b, Vec::new())));
        }
        for chunk in entries.chunks(per) {
            out.push((4 + chunk.len() * entry, make(b, chunk.to_vec())));
        }
    }
    out
}

impl Swim {
    /// Buckets whose hashes differ from `theirs`, from a random start, at
    /// most `sync_max_buckets`; `None` if `theirs` is not a full set.
    fn differing(&mut self, mine: &[u32], theirs: &[u32]) -> Option<Vec<u8>> {
        if theirs.len() != BUCKETS {
            self.stats.malformed += 1;
            return None;
        }
        let start = self.rng.gen_range(0..BUCKETS);
        Some(
            (0..BUCKETS)
                .map(|i| (start + i) % BUCKETS)
                .filter(|&b| mine[b] != theirs[b])
                .map(|b| b as u8)
                .take(self.cfg.sync_max_buckets)
                .collect(),
        )
    }

    /// Start a round with `to` (member `peer`, if known): both roots in
    /// one datagram to a release that reads facts, the record root alone
    /// (as before facts) to any other.
    pub(super) fn send_digests(&mut self, to: SocketAddr, peer: Option<NodeId>, now: Instant) {
        self.last_digests = Some((to, now, self.held.get(&to)));
        let (root, count) = (self.store.root(), self.store.len() as u32);
        let facts = peer
            .and_then(|id| self.store.get(&id))
            .is_some_and(|r| reads_facts(&r.record().software));
        let msg = if facts {
            Message::SyncDigests {
                from: self.me,
                root,
                count,
                fact_root: self.facts.root(),
            }
        } else {
            Message::SyncDigest {
                from: self.me,
                root,
                count,
            }
        };
        self.send(to, &msg);
    }

    /// An anti-entropy round with a random live member (or, before any
    /// record has arrived, the first seed).
    pub(super) fn on_sync(&mut self, now: Instant) {
        let jitter = self
            .rng
            .gen_range(0..=self.cfg.sync_interval.as_millis() as u64 / 4);
        self.timers.set(
            TimerKey::Sync,
            now + self.cfg.sync_interval + Duration::from_millis(jitter),
        );
        if let Some((id, addr)) = self.members.random_live(1, None, &mut self.rng).pop() {
            self.send_digests(addr, Some(id), now);
        } else if !self.joined {
            if let Some(seed) = self.seeds.first().copied() {
                self.send_digests(seed, None, now);
            }
        }
    }

    pub(super) fn on_sync_digest(&mut self, from: SocketAddr, root: u64) {
        if root != self.store.root() {
            let hashes = self.store.bucket_hashes();
            self.send(
                from,
                &Message::SyncBuckets {
                    from: self.me,
                    hashes,
                },
            );
        }
    }

    pub(super) fn on_sync_buckets(&mut self, to: SocketAddr, theirs: &[u32], now: Instant) {
        let mine = self.store.bucket_hashes();
        let Some(differing) = self.differing(&mine, theirs) else {
            return;
        };
        if differing.is_empty() {
            return;
        }
        // Rounds follow soon while we differ (each is capped, so this stays
        // cheap even while everyone differs during a join storm).
        self.timers
            .set_earlier(TimerKey::Sync, now + self.cfg.sync_fast_interval);
        let buckets = differing
            .into_iter()
            .map(|b| (b, self.store.bucket_entries(b)))
            .collect();
        let items = chunked(buckets, RECORD_ENTRY, |bucket, entries| BucketEntries {
            bucket,
            entries,
        });
        for group in pack(items, |(c, _)| *c, MAX_HAVE_DATAGRAMS) {
            let buckets = group.into_iter().map(|(_, b)| b).collect();
            self.send(
                to,
                &Message::SyncHave {
                    from: self.me,
                    buckets,
                },
            );
        }
    }

    pub(super) fn on_sync_have(&mut self, to: SocketAddr, buckets: Vec<BucketEntries>) {
        let mut theirs: HashMap<[u8; 8], u64> = HashMap::with_hasher(self.hasher);
        let mut listed: Vec<u8> = Vec::new();
        for b in &buckets {
            if !listed.contains(&b.bucket) {
                listed.push(b.bucket);
            }
            for (p, seq) in &b.entries {
                theirs.insert(*p, *seq);
            }
        }
        let mut push = Vec::new();
        for b in listed {
            for (p, seq) in self.store.bucket_entries(b) {
                let newer = theirs.get(&p).is_none_or(|their| *their < seq);
                if newer && push.len() < self.cfg.sync_max_records {
                    if let Some(r) = self.store.get_by_prefix(&p) {
                        push.push(r.bytes().to_vec());
                    }
                }
            }
        }
        let want: Vec<[u8; 8]> = theirs
            .into_iter()
            .filter(|(p, seq)| self.store.get_by_prefix(p).is_none_or(|r| r.seq() < *seq))
            .map(|(p, _)| p)
            .collect();
        self.send_records(to, push);
        for chunk in want.chunks(70) {
            self.send(
                to,
                &Message::SyncWant {
                    from: self.me,
                    prefixes: chunk.to_vec(),
                },
            );
        }
    }

    pub(super) fn on_sync_want(&mut self, to: SocketAddr, prefixes: &[[u8; 8]]) {
        let recs: Vec<Vec<u8>> = prefixes
            .iter()
            .take(self.cfg.sync_max_records)
            .filter_map(|p| self.store.get_by_prefix(p).map(|r| r.bytes().to_vec()))
            .collect();
        self.send_records(to, recs);
    }

    fn send_records(&mut self, to: SocketAddr, records: Vec<Vec<u8>>) {
        for records in pack(records, |r| r.len() + 3, usize::MAX) {
            self.send(
                to,
                &Message::SyncRecords {
                    from: self.me,
                    records,
                },
            );
        }
    }

    pub(super) fn on_fact_digest(&mut self, from: SocketAddr, root: u64) {
        // Sent by nodes that sync facts, as part of `SyncDigests`.
        if root != self.facts.root() {
            let hashes = self.facts.bucket_hashes();
            self.send(
                from,
                &Message::FactBuckets {
                    from: self.me,
                    hashes,
                },
            );
        }
    }

    pub(super) fn on_fact_buckets(&mut self, to: SocketAddr, theirs: &[u32], now: Instant) {
        let mine = self.facts.bucket_hashes();
        let Some(differing) = self.differing(&mine, theirs) else {
            return;
        };
        if differing.is_empty() {
            return;
        }
        self.timers
            .set_earlier(TimerKey::Sync, now + self.cfg.sync_fast_interval);
        let buckets = differing
            .into_iter()
            .map(|b| (b, self.facts.bucket_entries(b)))
            .collect();
        let items = chunked(buckets, FACT_ENTRY, |bucket, entries| FactEntries {
            bucket,
            entries,
        });
        for group in pack(items, |(c, _)| *c, MAX_HAVE_DATAGRAMS) {
            let buckets = group.into_iter().map(|(_, b)| b).collect();
            self.send(
                to,
                &Message::FactHave {
                    from: self.me,
                    buckets,
                },
            );
        }
    }

    pub(super) fn on_fact_have(&mut self, to: SocketAddr, buckets: Vec<FactEntries>) {
        let mut theirs: HashMap<[u8; 8], (u64, bool)> = HashMap::with_hasher(self.hasher);
        let mut listed: Vec<u8> = Vec::new();
        for b in &buckets {
            if !listed.contains(&b.bucket) {
                listed.push(b.bucket);
            }
            for (p, inc, left) in &b.entries {
                theirs.insert(*p, (*inc, *left));
            }
        }
        let mut push = Vec::new();
        for b in listed {
            for (p, inc, left) in self.facts.bucket_entries(b) {
                let newer = theirs.get(&p).is_none_or(|their| *their < (inc, left));
                if newer && push.len() < self.cfg.sync_max_records {
                    if let Some((id, f)) = self.facts.get_by_prefix(&p) {
                        push.push(f.update(id));
                    }
                }
            }
        }
        // Wanted: facts about members whose records are held, that
        // outrank both the fact and the record held here.
        let want: Vec<[u8; 8]> = theirs
            .into_iter()
            .filter(|(p, rank)| {
                let Some(r) = self.store.get_by_prefix(p) else {
                    return false;
                };
                let id = r.node_id();
                *rank > (r.seq(), false) && self.facts.get(&id).is_none_or(|f| f.rank() < *rank)
            })
            .map(|(p, _)| p)
            .collect();
        self.send_facts(to, push);
        for chunk in want.chunks(70) {
            self.send(
                to,
                &Message::FactWant {
                    from: self.me,
                    prefixes: chunk.to_vec(),
                },
            );
        }
    }

    pub(super) fn on_fact_want(&mut self, to: SocketAddr, prefixes: &[[u8; 8]]) {
        let facts: Vec<Update> = prefixes
            .iter()
            .take(self.cfg.sync_max_records)
            .filter_map(|p| self.facts.get_by_prefix(p).map(|(id, f)| f.update(id)))
            .collect();
        self.send_facts(to, facts);
    }

    fn send_facts(&mut self, to: SocketAddr, facts: Vec<Update>) {
        for updates in pack(facts, |u| u.encoded_len() + 2, usize::MAX) {
            self.send(
                to,
                &Message::SyncFacts {
                    from: self.me,
                    updates,
                },
            );
        }
    }

    /// Facts pulled by anti-entropy: applied like gossiped ones, not
    /// spread again (everyone syncs).
    pub(super) fn on_sync_facts(&mut self, updates: Vec<Update>, now: Instant) {
        for u in updates.iter().take(self.cfg.sync_max_records) {
            if let Some((id, fact)) = Fact::of_update(u) {
                let before = self.facts.get(&id).copied();
                self.apply_fact(id, fact, now, false);
                if self.facts.get(&id).copied() != before {
                    self.stats.facts_synced += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::testing::{converged, Net};
    use crate::swim::MemberState;

    fn is_gossip_of_left(m: &Message) -> bool {
        let updates = match m {
            Message::Ping { updates, .. }
            | Message::Ack { updates, .. }
            | Message::Gossip { updates, .. } => updates,
            _ => return false,
        };
        updates.iter().any(|u| matches!(u, Update::Left { .. }))
    }

    #[test]
    fn pack_fills_datagrams_and_stops_at_the_cap() {
        let groups = pack(vec![500usize; 10], |c| *c, usize::MAX);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![2; 5]);
        let capped = pack(vec![500usize; 10], |c| *c, 2);
        assert_eq!(capped.len(), 2);
        assert!(pack(Vec::<usize>::new(), |c| *c, 3).is_empty());
    }

    #[test]
    fn records_missed_by_gossip_arrive_by_anti_entropy() {
        let mut net = Net::new(6);
        converged(&mut net);
        // Gossip is lost entirely; only anti-entropy runs.
        net.drop_if(|_, _, m| {
            matches!(
                m,
                Message::Gossip { .. } | Message::Ping { .. } | Message::Ack { .. }
            )
        });
        let id2 = net.id(2);
        let rec = net.record(2, 3_000_000);
        let now = net.now();
        net.node_mut(2).update_record(rec, now);
        assert!(net.run_until(Duration::from_secs(30), |n| {
            (0..6).all(|i| n.node(i).records().get(&id2).unwrap().seq() == 3_000_000)
        }));
    }

    #[test]
    fn a_node_that_missed_every_gossip_of_a_leave_learns_it_in_the_next_rounds() {
        let mut net = Net::new(8);
        converged(&mut net);
        let leaver = net.id(3);
        // Nodes 5 and 6 never see a leave in gossip (nor a proof answered
        // to an accusation): only anti-entropy can tell them.
        net.drop_if(|_, to, m| (to == 5 || to == 6) && is_gossip_of_left(m));
        net.leave(3);
        assert!(net.run_until(Duration::from_secs(2), |n| {
            [0, 1, 2, 4, 7]
                .iter()
                .all(|&i| n.node(i).state_of(&leaver) == Some(MemberState::Left))
        }));
        assert_eq!(net.node(5).state_of(&leaver), Some(MemberState::Alive));
        // A round is sync_interval plus up to a quarter of jitter: 3.75 s.
        // Two rounds are enough for each of them to sync with a member
        // holding the leave (every live member does).
        let start = net.now();
        assert!(
            net.run_until(Duration::from_millis(2 * 3750 + 100), |n| {
                [5, 6]
                    .iter()
                    .all(|&i| n.node(i).state_of(&leaver) == Some(MemberState::Left))
            }),
            "the leave is pulled by anti-entropy"
        );
        assert!(net.now() - start <= Duration::from_millis(7600));
        assert!(net.node(5).stats().facts_synced + net.node(6).stats().facts_synced >= 2);
        let root = net.node(0).facts().root();
        assert!((0..8)
            .filter(|&i| i != 3)
            .all(|i| net.node(i).facts().root() == root));
    }

    #[test]
    fn a_peer_of_an_older_release_gets_only_the_kinds_it_reads() {
        let mut net = Net::new(4);
        converged(&mut net);
        // Node 3's record now names a release from before facts.
        let rec = net.record_of_release(3, 5_000_000, "0.1.0");
        let now = net.now();
        net.node_mut(3).update_record(rec, now);
        let id3 = net.id(3);
        assert!(net.run_until(Duration::from_secs(10), |n| {
            (0..3).all(|i| n.node(i).records().get(&id3).unwrap().seq() == 5_000_000)
        }));
        let marks: Vec<usize> = (0..3).map(|i| net.sent_by(i).count()).collect();
        net.run_for(Duration::from_secs(40));
        let to = |n: &Net, peer: SocketAddr| -> Vec<Message> {
            (0..3)
                .flat_map(|i| n.sent_by(i).skip(marks[i]))
                .filter(|(a, _)| *a == peer)
                .map(|(_, m)| m.clone())
                .collect()
        };
        let old = to(&net, net.addr(3));
        assert!(old.iter().any(|m| matches!(m, Message::SyncDigest { .. })));
        assert!(
            old.iter().all(|m| m.encode().unwrap()[1] <= 10),
            "only kinds 0 to 10 to a release before 0.2.0"
        );
        // And no header (nor cookie), which only 0.3.0 and later read: the
        // bytes sent are the messages' own.
        let sent_bytes: usize = (0..3)
            .map(|i| net.bytes_to(i, net.addr(3), marks[i]).0)
            .sum();
        let own_bytes: usize = old.iter().map(|m| m.encode().unwrap().len()).sum();
        assert_eq!(sent_bytes, own_bytes, "no header to a release before 0.3.0");
        // Between nodes of this release every datagram has one.
        let (b1, _) = net.bytes_to(0, net.addr(1), marks[0]);
        let own1: usize = net
            .sent_by(0)
            .skip(marks[0])
            .filter(|(a, _)| *a == net.addr(1))
            .map(|(_, m)| m.encode().unwrap().len())
            .sum();
        assert!(b1 > own1);
        // The others still run fact anti-entropy among themselves.
        let new = to(&net, net.addr(1));
        assert!(new.iter().any(|m| matches!(m, Message::SyncDigests { .. })));
        // Its own rounds (the old digest) are answered in kinds it reads,
        // but, as it cannot echo a cookie, with at most three times the
        // bytes: the bucket hashes (1.3 KB) do not fit a 44-byte digest's
        // answer. It still gets records: by our rounds with it and by
        // gossip.
        let sent = net.sent_by(0).count();
        let digest = Message::SyncDigest {
            from: id3,
            root: 0,
            count: 0,
        };
        let capped = net.node(0).stats().answers_capped;
        net.inject(0, net.addr(3), &digest);
        let answers: Vec<_> = net.sent_by(0).skip(sent).map(|(_, m)| m.clone()).collect();
        assert!(answers.is_empty(), "{answers:?}");
        assert_eq!(net.node(0).stats().answers_capped, capped + 1);
        let rec = net.record(1, 6_000_000);
        let now = net.now();
        net.node_mut(1).update_record(rec, now);
        let id1 = net.id(1);
        assert!(net.run_until(Duration::from_secs(60), |n| {
            n.node(3).records().get(&id1).map(|r| r.seq()) == Some(6_000_000)
        }));
    }

    #[test]
    fn opinions_never_enter_digests() {
        let mut net = Net::new(4);
        converged(&mut net);
        let (roots, facts) = (net.node(0).records().root(), net.node(0).facts().root());
        // Node 0 suspects, then declares dead, node 3 (which is down):
        // neither digest moves.
        net.down(3);
        assert!(net.run_until(Duration::from_secs(60), |n| {
            n.node(0).state_of(&n.id(3)) == Some(MemberState::Dead)
        }));
        assert_eq!(net.node(0).records().root(), roots);
        assert_eq!(net.node(0).facts().root(), facts);
        assert!(net.node(0).facts().is_empty());
        // An unsigned accusation at any incarnation is no fact either.
        net.inject(
            1,
            net.addr(0),
            &Message::SyncFacts {
                from: net.id(0),
                updates: vec![Update::Dead {
                    id: net.id(2),
                    incarnation: 99,
                }],
            },
        );
        assert!(net.node(1).facts().is_empty());
        assert_eq!(net.node(1).state_of(&net.id(2)), Some(MemberState::Alive));
    }
}
