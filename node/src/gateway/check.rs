//! Check results in Tahoe's JSON (`POST /uri/CAP?t=check&output=JSON`), and
//! with `repair=true` in Tahoe's check-and-repair JSON.
//!
//! The report is the storage client's [`CheckResults`], the one schema the
//! CLI's `check --json` prints too (Tahoe's `json_check_results` keys:
//! `storage-index`, `summary`, `results` with `count-happiness`,
//! `count-shares-good`, `count-shares-needed`, `count-shares-expected`,
//! `count-good-share-hosts`, `count-corrupt-shares`, `list-corrupt-shares`,
//! `servers-responding`, `sharemap`, `count-wrong-shares`,
//! `count-recoverable-versions`, `count-unrecoverable-versions`, `healthy`).
//! The gateway adds what Tahoe's web API has beside them: `recoverable` in
//! `results`, and Tahoe's one-line `summary` ("Healthy", "Not Healthy: 2
//! shares (enc 3-of-10)"). A literal capability has only `healthy` (stored
//! nowhere, always whole). With `repair=true` the file is repaired
//! (`grapevine_storage::client::repair`) and the answer has Tahoe's
//! `repair-attempted`, `repair-successful`, `pre-repair-results` and
//! `post-repair-results`, each result in the check JSON above.

use grapevine_storage::client::{CheckResults, RepairResults};
use grapevine_storage::Cap;
use serde_json::{json, Value};

/// Tahoe's one-line summary for `r`.
fn summary(r: &CheckResults) -> String {
    let c = &r.results;
    if c.healthy {
        "Healthy".into()
    } else {
        format!(
            "Not Healthy: {} shares (enc {}-of-{})",
            c.count_shares_good, c.count_shares_needed, c.count_shares_expected
        )
    }
}

/// Tahoe's check JSON for `report` on `cap`.
pub fn check_json(cap: &Cap, report: &CheckResults) -> Value {
    match cap {
        Cap::Lit(_) => json!({"storage-index": "", "results": {"healthy": true}}),
        Cap::Chk(_) => {
            let mut j = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
            j["summary"] = Value::String(summary(report));
            j["results"]["recoverable"] =
                Value::Bool(report.results.count_recoverable_versions > 0);
            j
        }
    }
}

/// Tahoe's check-and-repair JSON for the repair `r` of `cap`, with what
/// the repair did (`repair-report`, not one of Tahoe's keys).
pub fn repair_json(cap: &Cap, r: &RepairResults) -> Value {
    json!({
        "storage-index": r.storage_index,
        "repair-attempted": r.repair_attempted,
        "repair-successful": r.repair_successful,
        "pre-repair-results": check_json(cap, &r.pre_repair_results),
        "post-repair-results": check_json(cap, &r.post_repair_results),
        "repair-report": r.repair_report,
    })
}

/// Tahoe's check-and-repair JSON for `report` on `cap`, no repair attempted.
pub fn check_and_repair_json(cap: &Cap, report: &CheckResults) -> Value {
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
    use grapevine_crypto::NodeId;
    use grapevine_storage::ReadCap;

    fn id(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    #[test]
    fn check_json_has_tahoes_keys_and_counts() {
        let rc = ReadCap {
            key: [1; 32],
            ueb_hash: [2; 32],
            k: 2,
            n: 4,
            size: 1000,
        };
        let si = rc.storage_index();
        let cap = Cap::Chk(rc);
        let responding = [id(1), id(2), id(3)];
        let report = CheckResults::of(
            &si,
            2,
            4,
            3,
            &responding,
            &[
                (0, id(1), Some(true)),
                (1, id(2), Some(true)),
                (2, id(3), Some(false)),
                (1, id(3), Some(true)),
            ],
        );
        let j = check_json(&cap, &report);
        let r = &j["results"];
        assert_eq!(j["summary"], "Not Healthy: 2 shares (enc 2-of-4)");
        assert_eq!(j["storage-index"], si.to_string());
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
            check_json(&lit, &CheckResults::literal(1)),
            json!({"storage-index": "", "results": {"healthy": true}})
        );
    }
}
