//! `grapevine check CAP [--verify] [--repair]`: a file's health in
//! Tahoe's check-result keys, and with `--repair` its missing and corrupt
//! shares regenerated (Tahoe's check-and-repair keys). Takes a read
//! capability or a verify capability.

use std::process::ExitCode;

use anyhow::Result;
use grapevine_node::Client;
use grapevine_storage::client::{CheckResults, RepairOptions, RepairReport, RepairResults};
use grapevine_storage::{Cap, VerifyCap};

use crate::exit;
use crate::info::{plural, rt, NodeArg};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reports with Tahoe-LAFS's check-result keys (count-shares-good, count-shares-needed, \
count-shares-expected, count-good-share-hosts, list-corrupt-shares, servers-responding, \
healthy, sharemap). Exit codes: 0 healthy (all N shares good), 3 not healthy (fewer than \
N good shares, still readable), 4 corrupt shares found (still readable), 5 unrecoverable \
(fewer than k good shares, or none at all), 1 the check could not run.")]
pub struct CheckArgs {
    /// Read capability (`gv:chk:...`) or verify capability
    /// (`gv:chk-verify:...`, from `grapevine verify-cap`).
    cap: String,
    /// Download and verify every block of every share (else: count shares).
    #[arg(long)]
    verify: bool,
    /// Regenerate missing and corrupt shares onto the next servers in
    /// permuted order (Tahoe's repair keys; a verify capability is enough).
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    node: NodeArg,
    /// JSON output (Tahoe's keys).
    #[arg(long)]
    json: bool,
}

/// A node id's first ten characters, as member tables show it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// `grapevine check CAP [--verify] [--repair]`: exit code from the
/// verdict (after repair, the post-repair verdict).
///
/// # Errors
/// Bad capability, no node.
pub fn check(a: &CheckArgs) -> Result<ExitCode> {
    let cap = CheckCap::parse(&a.cap)?;
    if a.repair {
        return check_and_repair(&cap, a.verify, a.json, &a.node);
    }
    rt()?.block_on(async {
        let client = Client::for_dir(&a.node.dir()).await?;
        let r = cap.check(&client, a.verify).await?;
        if a.json {
            outln!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print_check(&r, a.verify)?;
        }
        Ok(ExitCode::from(exit::of_verdict(r.verdict())))
    })
}

/// A check's report for a person.
///
/// # Errors
/// Standard output is closed.
pub(crate) fn print_check(r: &CheckResults, verified: bool) -> Result<()> {
    let res = &r.results;
    outln!("{}", r.summary);
    if !r.storage_index.is_empty() {
        outln!("storage index {}", r.storage_index);
        for (share, servers) in &res.sharemap {
            let short: Vec<&str> = servers.iter().map(|s| short(s)).collect();
            outln!(
                "  share {share:>3} on {}{}",
                short.join(" "),
                if verified { "  verified" } else { "" }
            );
        }
        for (server, _, share) in &res.list_corrupt_shares {
            let said = r
                .corrupt_share_reports
                .iter()
                .find(|c| c.share == *share && &c.server == server)
                .map(|c| format!(" (reported to its server: {})", c.verdict))
                .unwrap_or_default();
            outln!("  share {share:>3} on {}  CORRUPT{said}", short(server));
        }
        outln!(
            "{} good of {} expected, {} needed; {}; happiness {}; {} responding",
            res.count_shares_good,
            res.count_shares_expected,
            res.count_shares_needed,
            plural(res.count_good_share_hosts, "good share host"),
            res.count_happiness,
            plural(res.servers_responding.len(), "server")
        );
    }
    Ok(())
}

/// What an attempted repair did, as a sentence (with why, when it failed
/// or regenerated nothing), and the errors it met that the sentence does
/// not give.
pub(crate) fn repair_outcome(r: &RepairResults) -> (String, Vec<&str>) {
    outcome(r.repair_successful, &r.repair_report)
}

/// [`repair_outcome`] of a repair that succeeded or not, with `rep`.
fn outcome(successful: bool, rep: &RepairReport) -> (String, Vec<&str>) {
    let mut errors = rep.errors.iter().map(String::as_str);
    let done = match rep.shares_regenerated.len() {
        0 => "no shares were regenerated".to_string(),
        n => format!(
            "{} regenerated ({}), {} bytes read, {} written",
            plural(n, "share"),
            rep.shares_regenerated
                .iter()
                .map(|(s, on)| format!("{s} on {}", short(on)))
                .collect::<Vec<_>>()
                .join(", "),
            rep.bytes_read,
            rep.bytes_written
        ),
    };
    let line = match (successful, rep.shares_regenerated.is_empty()) {
        (true, false) => format!("repair successful: {done}"),
        (true, true) => format!("repair successful: {done}, but the file is healthy now"),
        (false, regenerated_none) => {
            let why = errors
                .next()
                .unwrap_or("the file is still not healthy afterwards");
            match regenerated_none {
                true => format!("repair FAILED: {done}: {why}"),
                false => format!("repair FAILED: {done}, but {why}"),
            }
        }
    };
    (line, errors.collect())
}

/// A capability `check` takes: a read capability or a verify capability.
#[derive(Debug, Clone)]
pub enum CheckCap {
    /// `gv:chk:...` or `gv:lit:...`.
    Read(Cap),
    /// `gv:chk-verify:...`.
    Verify(VerifyCap),
}

impl CheckCap {
    /// Parse either kind.
    ///
    /// # Errors
    /// Neither a read nor a verify capability.
    pub fn parse(s: &str) -> Result<Self> {
        if s.trim().starts_with("gv:chk-verify:") {
            Ok(CheckCap::Verify(s.parse()?))
        } else {
            Ok(CheckCap::Read(s.parse()?))
        }
    }

    /// Check the file through `client`.
    ///
    /// # Errors
    /// The node cannot be asked.
    pub async fn check(&self, client: &Client, verify: bool) -> Result<CheckResults> {
        Ok(match self {
            CheckCap::Read(c) => client.check(c, verify).await?,
            CheckCap::Verify(v) => client.check_verify_cap(v, verify).await?,
        })
    }

    /// The verify capability (`None` for a literal, which has no shares).
    fn verify_cap(&self) -> Option<VerifyCap> {
        match self {
            CheckCap::Read(Cap::Chk(c)) => Some(c.verify_cap()),
            CheckCap::Read(Cap::Lit(_)) => None,
            CheckCap::Verify(v) => Some(*v),
        }
    }
}

/// `check CAP --repair`: Tahoe's check-and-repair report; the exit code is
/// the post-repair verdict's.
///
/// # Errors
/// No node; the node cannot be asked.
pub fn check_and_repair(
    cap: &CheckCap,
    verify: bool,
    json: bool,
    node: &NodeArg,
) -> Result<ExitCode> {
    let Some(vcap) = cap.verify_cap() else {
        outln!("healthy: a literal capability holds its bytes itself; nothing to repair");
        return Ok(ExitCode::SUCCESS);
    };
    rt()?.block_on(async {
        let client = Client::for_dir(&node.dir()).await?;
        let opts = RepairOptions { verify, rate: None };
        let r = client.repair(&vcap, &opts).await?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            outln!("before repair:");
            print_check(&r.pre_repair_results, verify)?;
            if !r.repair_attempted {
                outln!("repair not attempted: the file is healthy");
            } else {
                let (line, more) = repair_outcome(&r);
                outln!("{line}");
                for e in more {
                    outln!("  {e}");
                }
                outln!("after repair:");
                print_check(&r.post_repair_results, verify)?;
            }
        }
        Ok(ExitCode::from(exit::of_verdict(
            r.post_repair_results.verdict(),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repair_outcome_is_a_sentence_that_says_why() {
        let mut rep = RepairReport {
            errors: vec!["unrecoverable: 1 distinct good share found, 2 needed".into()],
            ..RepairReport::default()
        };
        assert_eq!(
            outcome(false, &rep),
            (
                "repair FAILED: no shares were regenerated: unrecoverable: 1 distinct good share found, 2 needed".to_string(),
                vec![]
            )
        );
        rep.errors.clear();
        assert_eq!(
            outcome(false, &rep).0,
            "repair FAILED: no shares were regenerated: the file is still not healthy afterwards"
        );
        assert_eq!(
            outcome(true, &rep).0,
            "repair successful: no shares were regenerated, but the file is healthy now"
        );
        rep.shares_regenerated = vec![(3, "abcdefghijklmnop".into())];
        rep.bytes_read = 10;
        rep.bytes_written = 5;
        rep.errors = vec!["server x refused".into(), "server y refused".into()];
        assert_eq!(
            outcome(false, &rep),
            (
                "repair FAILED: 1 share regenerated (3 on abcdefghij), 10 bytes read, 5 written, \
                 but server x refused"
                    .to_string(),
                vec!["server y refused"]
            )
        );
        assert_eq!(
            outcome(true, &rep).0,
            "repair successful: 1 share regenerated (3 on abcdefghij), 10 bytes read, 5 written"
        );
    }
}
