//! Check results in Tahoe's JSON (`POST /uri/CAP?t=check&output=JSON`), and
//! with `repair=true` in Tahoe's check-and-repair JSON.
//!
//! The keys are Tahoe's `json_check_results` (`storage-index`, `summary`,
//! `results` with `count-happiness`, `count-shares-good`,
//! `count-shares-needed`, `count-shares-expected`, `count-good-share-hosts`,
//! `count-corrupt-shares`, `list-corrupt-shares`, `servers-responding`,
//! `sharemap`, `count-wrong-shares`, `count-recoverable-versions`,
//! `count-unrecoverable-versions`, `healthy`, `recoverable`); a literal
//! capability has only `healthy` (stored nowhere, always whole). Repair
//! does not exist yet: `repair=true` answers as Tahoe does when no repair
//! was attempted (`repair-attempted` false, `repair-successful` false,
//! post-repair results equal to the pre-repair ones).
//!
//! `servers-responding` lists the servers that hold shares of the file (the
//! storage client's check reports no others yet).
//!
//! Only [`check_json`]'s `results` read the storage client's
//! [`CheckReport`]: when the CLI's check report with Tahoe's keys (issue
//! 15.1) lands, `results` becomes its serialisation and the rest (summary
//! line, repair wrapper, literal files) stays as it is.

use std::collections::{BTreeMap, BTreeSet};

use grapevine_crypto::NodeId;
use grapevine_storage::client::CheckReport;
use grapevine_storage::Cap;
use serde_json::{json, Value};

/// Servers-of-happiness: the largest set of (server, share) pairs with no
/// server and no share twice, among the good shares `good` (a maximum
/// bipartite matching, by augmenting paths; a file has at most 256 shares).
pub fn happiness(good: &[(u16, NodeId)]) -> usize {
    let shares: Vec<u16> = good
        .iter()
        .map(|(s, _)| *s)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let servers: Vec<NodeId> = good
        .iter()
        .map(|(_, id)| *id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let adj: Vec<Vec<usize>> = shares
        .iter()
        .map(|sh| {
            good.iter()
                .filter(|(s, _)| s == sh)
                .filter_map(|(_, id)| servers.iter().position(|x| x == id))
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; servers.len()];
    fn augment(
        share: usize,
        adj: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &srv in &adj[share] {
            if seen[srv] {
                continue;
            }
            seen[srv] = true;
            if owner[srv].is_none_or(|other| augment(other, adj, seen, owner)) {
                owner[srv] = Some(share);
                return true;
            }
        }
        false
    }
    (0..shares.len())
        .filter(|&sh| augment(sh, &adj, &mut vec![false; servers.len()], &mut owner))
        .count()
}

/// Tahoe's `results` dictionary for `report` on `cap`'s storage index `si`.
fn results(si: &str, report: &CheckReport) -> Value {
    let good: Vec<(u16, NodeId)> = report
        .shares
        .iter()
        .filter(|(_, _, ok)| *ok != Some(false))
        .map(|(s, id, _)| (*s, *id))
        .collect();
    let mut sharemap: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (s, id) in &good {
        sharemap
            .entry(s.to_string())
            .or_default()
            .insert(id.to_string());
    }
    let corrupt: Vec<Value> = report
        .shares
        .iter()
        .filter(|(_, _, ok)| *ok == Some(false))
        .map(|(s, id, _)| json!([id.to_string(), si, s]))
        .collect();
    let responding: BTreeSet<String> = report
        .shares
        .iter()
        .map(|(_, id, _)| id.to_string())
        .collect();
    let hosts: BTreeSet<NodeId> = good.iter().map(|(_, id)| *id).collect();
    let distinct = sharemap.len();
    let recoverable = distinct >= report.k as usize;
    json!({
        "count-happiness": happiness(&good),
        "count-shares-good": distinct,
        "count-shares-needed": report.k,
        "count-shares-expected": report.n,
        "count-good-share-hosts": hosts.len(),
        "count-corrupt-shares": corrupt.len(),
        "list-corrupt-shares": corrupt,
        "servers-responding": responding,
        "sharemap": sharemap,
        "count-wrong-shares": 0,
        "count-recoverable-versions": u8::from(recoverable),
        "count-unrecoverable-versions": u8::from(!recoverable),
        "healthy": distinct >= report.n as usize,
        "recoverable": recoverable,
    })
}

/// The one-line summary Tahoe gives.
fn summary(report: &CheckReport) -> String {
    let good = report
        .shares
        .iter()
        .filter(|(_, _, ok)| *ok != Some(false))
        .map(|(s, _, _)| *s)
        .collect::<BTreeSet<_>>()
        .len();
    if good >= report.n as usize {
        "Healthy".into()
    } else {
        format!(
            "Not Healthy: {good} shares (enc {}-of-{})",
            report.k, report.n
        )
    }
}

/// Tahoe's check JSON for `report` on `cap`.
pub fn check_json(cap: &Cap, report: &CheckReport) -> Value {
    match cap {
        Cap::Lit(_) => json!({"storage-index": "", "results": {"healthy": true}}),
        Cap::Chk(c) => {
            let si = c.storage_index().to_string();
            json!({
                "storage-index": si,
                "summary": summary(report),
                "results": results(&si, report),
            })
        }
    }
}

/// Tahoe's check-and-repair JSON for `report` on `cap`, no repair attempted.
pub fn check_and_repair_json(cap: &Cap, report: &CheckReport) -> Value {
    match cap {
        Cap::Lit(_) => json!({"storage-index": "", "repair-attempted": false}),
        Cap::Chk(_) => {
            let pre = check_json(cap, report);
            json!({
                "storage-index": pre["storage-index"],
                "repair-attempted": false,
                "repair-successful": false,
                "pre-repair-results": pre,
                "post-repair-results": pre,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_storage::ReadCap;

    fn id(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    #[test]
    fn happiness_is_a_maximum_matching() {
        assert_eq!(happiness(&[]), 0);
        // Three shares all on one server: one.
        assert_eq!(happiness(&[(0, id(1)), (1, id(1)), (2, id(1))]), 1);
        // A greedy pick of (0, s1) first would block share 1; the matching
        // moves it.
        assert_eq!(happiness(&[(0, id(1)), (0, id(2)), (1, id(1))]), 2);
        assert_eq!(
            happiness(&[(0, id(1)), (1, id(2)), (2, id(3)), (2, id(1))]),
            3
        );
    }

    #[test]
    fn check_json_has_tahoes_keys_and_counts() {
        let cap = Cap::Chk(ReadCap {
            key: [1; 32],
            ueb_hash: [2; 32],
            k: 2,
            n: 4,
            size: 1000,
        });
        let report = CheckReport {
            shares: vec![
                (0, id(1), Some(true)),
                (1, id(2), Some(true)),
                (2, id(3), Some(false)),
                (1, id(3), Some(true)),
            ],
            distinct_good: 2,
            k: 2,
            n: 4,
        };
        let j = check_json(&cap, &report);
        let r = &j["results"];
        assert_eq!(j["summary"], "Not Healthy: 2 shares (enc 2-of-4)");
        assert_eq!(r["count-shares-good"], 2);
        assert_eq!(r["count-shares-needed"], 2);
        assert_eq!(r["count-shares-expected"], 4);
        assert_eq!(r["count-good-share-hosts"], 3);
        assert_eq!(r["count-happiness"], 2);
        assert_eq!(r["count-corrupt-shares"], 1);
        assert_eq!(r["list-corrupt-shares"][0][2], 2);
        assert_eq!(r["list-corrupt-shares"][0][1], j["storage-index"]);
        assert_eq!(r["sharemap"]["1"].as_array().unwrap().len(), 2);
        assert_eq!(r["servers-responding"].as_array().unwrap().len(), 3);
        assert_eq!(r["healthy"], false);
        assert_eq!(r["recoverable"], true);
        assert_eq!(r["count-recoverable-versions"], 1);
        let rj = check_and_repair_json(&cap, &report);
        assert_eq!(rj["repair-attempted"], false);
        assert_eq!(rj["repair-successful"], false);
        assert_eq!(rj["pre-repair-results"], rj["post-repair-results"]);
        assert_eq!(rj["pre-repair-results"]["results"], *r);
        let lit = Cap::Lit(b"x".to_vec());
        assert_eq!(
            check_json(&lit, &CheckReport::default()),
            json!({"storage-index": "", "results": {"healthy": true}})
        );
    }
}
