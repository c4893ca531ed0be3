//! The check report: one serde type, [`CheckResults`], with Tahoe-LAFS's
//! check-result keys (its web API's `t=check&output=JSON`), used by the
//! CLI's `check --json` now and by the HTTP gateway and repair later.
//!
//! ```json
//! {"storage-index": "...", "summary": "...",
//!  "results": {"healthy": false, "count-shares-good": 3, "count-shares-needed": 3,
//!              "count-shares-expected": 10, "count-good-share-hosts": 3,
//!              "count-happiness": 3, "count-corrupt-shares": 1,
//!              "list-corrupt-shares": [["SERVER", "SI", 4]],
//!              "servers-responding": ["SERVER", ...], "sharemap": {"0": ["SERVER"]},
//!              "count-recoverable-versions": 1, "count-unrecoverable-versions": 0,
//!              "count-wrong-shares": 0}}
//! ```
//!
//! As in Tahoe, a file is *healthy* when all `N` distinct shares are good,
//! and *recoverable* when at least `k` are; corrupt shares are listed (and
//! reported to their servers) but do not make a file with `N` good shares
//! unhealthy. A literal capability holds the file itself: always healthy,
//! with no shares. Server ids are node ids (base32). [`CheckResults::verdict`]
//! orders the outcomes for exit codes.

use std::collections::{BTreeMap, BTreeSet};

use grapevine_crypto::identity::NodeId;
use serde::{Deserialize, Serialize};

use crate::types::{ReportVerdict, StorageIndex};

/// A check's report, in Tahoe's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckResults {
    /// The storage index in base32 (empty for a literal capability).
    pub storage_index: String,
    /// One line a person reads.
    pub summary: String,
    /// The figures.
    pub results: CheckCounts,
    /// What each corrupt share's server did when the checker told it (not
    /// one of Tahoe's keys; absent when nothing was corrupt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt_share_reports: Vec<CorruptReport>,
}

/// A corrupt share reported to its server, and what the server did after
/// checking it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CorruptReport {
    /// The server (node id, base32).
    pub server: String,
    /// The share number.
    pub share: u16,
    /// "quarantined", "kept" (the server found it intact), or
    /// "not reported" (the report did not reach the server).
    pub verdict: String,
}

impl CorruptReport {
    /// The entry for a report of `share` on `server` that ended in
    /// `verdict`.
    pub fn new(share: u16, server: NodeId, verdict: Option<ReportVerdict>) -> Self {
        CorruptReport {
            server: server.to_string(),
            share,
            verdict: match verdict {
                Some(ReportVerdict::Quarantined) => "quarantined",
                Some(ReportVerdict::Kept) => "kept",
                None => "not reported",
            }
            .to_string(),
        }
    }
}

/// The figures of a check (Tahoe's `results` dictionary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckCounts {
    /// Every share (`N`) is there and good.
    pub healthy: bool,
    /// Distinct good shares found.
    pub count_shares_good: usize,
    /// `k`: shares needed to read the file.
    pub count_shares_needed: u16,
    /// `N`: shares made.
    pub count_shares_expected: u16,
    /// Distinct servers holding at least one good share.
    pub count_good_share_hosts: usize,
    /// Servers-of-happiness of the good shares: the most shares that sit on
    /// distinct servers, one each.
    pub count_happiness: usize,
    /// Shares that failed verification.
    pub count_corrupt_shares: usize,
    /// (server, storage index, share number) of each corrupt share.
    pub list_corrupt_shares: Vec<(String, String, u16)>,
    /// Servers that answered the query for shares.
    pub servers_responding: Vec<String>,
    /// Share number (as a string) to the servers holding it good.
    pub sharemap: BTreeMap<String, Vec<String>>,
    /// 1 if the file can be read (`k` good shares), else 0.
    pub count_recoverable_versions: u32,
    /// 1 if shares were found but too few to read the file, else 0.
    pub count_unrecoverable_versions: u32,
    /// Always 0 for immutable files (Tahoe counts other versions of
    /// mutable ones here).
    pub count_wrong_shares: usize,
}

/// What a check found, worst first: the order exit codes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Fewer than `k` good shares: the file cannot be read.
    Unrecoverable,
    /// Corrupt shares were found (the file can still be read).
    Corrupt,
    /// Fewer than `N` good shares (the file can still be read).
    Unhealthy,
    /// All `N` shares are good.
    Healthy,
}

/// One share a check found: (share number, server, verified: `None` if
/// not verified, else whether it is intact).
pub type Found = (u16, NodeId, Option<bool>);

impl CheckResults {
    /// The report for a literal capability (the file is in it).
    pub fn literal(len: usize) -> CheckResults {
        CheckResults {
            storage_index: String::new(),
            summary: format!(
                "healthy: a literal capability holds its {len} bytes itself, no shares"
            ),
            results: CheckCounts {
                healthy: true,
                count_shares_good: 0,
                count_shares_needed: 0,
                count_shares_expected: 0,
                count_good_share_hosts: 0,
                count_happiness: 0,
                count_corrupt_shares: 0,
                list_corrupt_shares: vec![],
                servers_responding: vec![],
                sharemap: BTreeMap::new(),
                count_recoverable_versions: 1,
                count_unrecoverable_versions: 0,
                count_wrong_shares: 0,
            },
            corrupt_share_reports: vec![],
        }
    }

    /// The report for what a check of `si` (`k`-of-`n`) found: `shares`
    /// from the servers that answered (`responding`), `asked` servers in
    /// all.
    pub fn of(
        si: &StorageIndex,
        k: u16,
        n: u16,
        asked: usize,
        responding: &[NodeId],
        shares: &[Found],
    ) -> CheckResults {
        let mut sharemap: BTreeMap<u16, BTreeSet<NodeId>> = BTreeMap::new();
        let mut corrupt = Vec::new();
        for &(shnum, server, ok) in shares {
            if ok == Some(false) {
                corrupt.push((server.to_string(), si.to_string(), shnum));
            } else {
                sharemap.entry(shnum).or_default().insert(server);
            }
        }
        let good = sharemap.len();
        let hosts: BTreeSet<NodeId> = sharemap.values().flatten().copied().collect();
        let happiness = happiness(&sharemap);
        let recoverable = good >= usize::from(k);
        let healthy = good >= usize::from(n);
        let found_any = !shares.is_empty();
        let summary = if !found_any {
            format!(
                "no share of this file was found: {} of the {asked} servers asked answered, and none \
                 holds any; it is not stored on this grid, or every server that held it is gone",
                responding.len()
            )
        } else {
            let state = if healthy {
                "healthy"
            } else if recoverable {
                "not healthy"
            } else {
                "unrecoverable"
            };
            let servers = match hosts.len() {
                1 => "1 server".to_string(),
                h => format!("{h} servers"),
            };
            let mut s =
                format!("{state}: {good} of {n} shares good ({k} needed to read) on {servers}");
            if !corrupt.is_empty() {
                s.push_str(&format!("; {} corrupt", corrupt.len()));
            }
            s
        };
        CheckResults {
            storage_index: si.to_string(),
            summary,
            results: CheckCounts {
                healthy,
                count_shares_good: good,
                count_shares_needed: k,
                count_shares_expected: n,
                count_good_share_hosts: hosts.len(),
                count_happiness: happiness,
                count_corrupt_shares: corrupt.len(),
                list_corrupt_shares: corrupt,
                servers_responding: responding.iter().map(|s| s.to_string()).collect(),
                sharemap: sharemap
                    .into_iter()
                    .map(|(sh, servers)| {
                        (
                            sh.to_string(),
                            servers.iter().map(|s| s.to_string()).collect(),
                        )
                    })
                    .collect(),
                count_recoverable_versions: u32::from(recoverable),
                count_unrecoverable_versions: u32::from(found_any && !recoverable),
                count_wrong_shares: 0,
            },
            corrupt_share_reports: vec![],
        }
    }

    /// The worst thing the check found.
    pub fn verdict(&self) -> Verdict {
        let r = &self.results;
        if r.count_recoverable_versions == 0 {
            Verdict::Unrecoverable
        } else if r.count_corrupt_shares > 0 {
            Verdict::Corrupt
        } else if !r.healthy {
            Verdict::Unhealthy
        } else {
            Verdict::Healthy
        }
    }
}

/// Servers-of-happiness: the size of a maximum matching between share
/// numbers and the servers holding them (augmenting paths; at most 256
/// shares).
fn happiness(sharemap: &BTreeMap<u16, BTreeSet<NodeId>>) -> usize {
    let shares: Vec<Vec<NodeId>> = sharemap
        .values()
        .map(|s| s.iter().copied().collect())
        .collect();
    let mut owner: BTreeMap<NodeId, usize> = BTreeMap::new();
    fn augment(
        i: usize,
        shares: &[Vec<NodeId>],
        owner: &mut BTreeMap<NodeId, usize>,
        seen: &mut BTreeSet<NodeId>,
    ) -> bool {
        for &s in &shares[i] {
            if !seen.insert(s) {
                continue;
            }
            let free = match owner.get(&s).copied() {
                None => true,
                Some(j) => augment(j, shares, owner, seen),
            };
            if free {
                owner.insert(s, i);
                return true;
            }
        }
        false
    }
    (0..shares.len())
        .filter(|&i| augment(i, &shares, &mut owner, &mut BTreeSet::new()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    const SI: StorageIndex = StorageIndex([1; 16]);

    #[test]
    fn a_full_file_is_healthy_and_the_keys_are_tahoes() {
        let shares: Vec<Found> = (0..4).map(|s| (s, id(s as u8), Some(true))).collect();
        let r = CheckResults::of(&SI, 2, 4, 4, &[id(0), id(1), id(2), id(3)], &shares);
        assert_eq!(r.verdict(), Verdict::Healthy);
        assert_eq!(r.results.count_happiness, 4);
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "count-shares-good",
            "count-shares-needed",
            "count-shares-expected",
            "count-good-share-hosts",
            "list-corrupt-shares",
            "servers-responding",
            "healthy",
            "sharemap",
        ] {
            assert!(json["results"].get(key).is_some(), "{key}: {json}");
        }
        assert_eq!(json["results"]["count-shares-good"], 4);
        assert_eq!(json["storage-index"], SI.to_string());
        assert_eq!(json["results"]["sharemap"]["3"][0], id(3).to_string());
        let back: CheckResults = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn missing_corrupt_and_unrecoverable_are_told_apart() {
        let responding = [id(0), id(1), id(2)];
        let missing: Vec<Found> = (0..3).map(|s| (s, id(s as u8), None)).collect();
        let r = CheckResults::of(&SI, 2, 4, 4, &responding, &missing);
        assert_eq!(r.verdict(), Verdict::Unhealthy);
        assert!(
            r.summary.starts_with("not healthy: 3 of 4 shares good"),
            "{}",
            r.summary
        );
        let mut corrupt = missing.clone();
        corrupt[2].2 = Some(false);
        let r = CheckResults::of(&SI, 2, 4, 4, &responding, &corrupt);
        assert_eq!(r.verdict(), Verdict::Corrupt);
        assert_eq!(
            r.results.list_corrupt_shares,
            vec![(id(2).to_string(), SI.to_string(), 2)]
        );
        assert_eq!(r.results.count_shares_good, 2);
        corrupt[1].2 = Some(false);
        let r = CheckResults::of(&SI, 2, 4, 4, &responding, &corrupt);
        assert_eq!(r.verdict(), Verdict::Unrecoverable);
        assert_eq!(r.results.count_unrecoverable_versions, 1);
        assert!(Verdict::Unrecoverable < Verdict::Corrupt);
    }

    #[test]
    fn a_file_with_no_shares_anywhere_says_so() {
        let r = CheckResults::of(&SI, 2, 4, 6, &[id(0), id(1)], &[]);
        assert_eq!(r.verdict(), Verdict::Unrecoverable);
        assert!(
            r.summary.starts_with("no share of this file was found"),
            "{}",
            r.summary
        );
        assert!(r.summary.contains("2 of the 6 servers"), "{}", r.summary);
        assert_eq!(r.results.count_unrecoverable_versions, 0);
        assert!(CheckResults::literal(5).results.healthy);
    }

    /// "on 1 server", not "on 1 servers".
    #[test]
    fn a_summary_counts_one_server_in_the_singular() {
        let one: Vec<Found> = vec![(0, id(0), None), (1, id(0), None)];
        let r = CheckResults::of(&SI, 2, 4, 4, &[id(0)], &one);
        assert!(r.summary.ends_with("on 1 server"), "{}", r.summary);
        let two: Vec<Found> = vec![(0, id(0), None), (1, id(1), None)];
        let r = CheckResults::of(&SI, 2, 4, 4, &[id(0), id(1)], &two);
        assert!(r.summary.ends_with("on 2 servers"), "{}", r.summary);
    }

    #[test]
    fn happiness_counts_shares_on_distinct_servers() {
        // Four shares, all on one server: happiness 1; duplicates that let a
        // matching move shares apart count.
        let one: Vec<Found> = (0..4).map(|s| (s, id(9), None)).collect();
        assert_eq!(
            CheckResults::of(&SI, 1, 4, 1, &[id(9)], &one)
                .results
                .count_happiness,
            1
        );
        let shares = vec![
            (0, id(1), None),
            (0, id(2), None),
            (1, id(1), None),
            (2, id(3), None),
        ];
        let r = CheckResults::of(&SI, 1, 3, 3, &[id(1), id(2), id(3)], &shares);
        assert_eq!(r.results.count_happiness, 3);
        assert_eq!(r.results.count_good_share_hosts, 3);
    }
}
