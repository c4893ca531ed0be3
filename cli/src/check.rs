//! `grapevine check CAP [--verify] [--repair]`: a file's health in
//! Tahoe's check-result keys, and with `--repair` its missing and corrupt
//! shares regenerated (Tahoe's check-and-repair keys). Takes a read
//! capability or a verify capability.

use std::process::ExitCode;

use anyhow::Result;
use grapevine_node::Client;
use grapevine_storage::client::{CheckResults, RepairOptions};
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
            let rep = &r.repair_report;
            if !r.repair_attempted {
                outln!("repair not attempted: the file is healthy");
            } else {
                outln!(
                    "repair {}: {} shares regenerated ({}), {} bytes read, {} written",
                    if r.repair_successful {
                        "successful"
                    } else {
                        "FAILED"
                    },
                    rep.shares_regenerated.len(),
                    rep.shares_regenerated
                        .iter()
                        .map(|(s, on)| format!("{s} on {}", short(on)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    rep.bytes_read,
                    rep.bytes_written
                );
                for e in &rep.errors {
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
