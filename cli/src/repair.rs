//! `grapevine check --repair`, `grapevine verify-cap` and `grapevine
//! repair`: repairing a file by hand, the capability a repairer needs, and
//! what a node's automatic repair job has done.

use std::process::ExitCode;

use anyhow::{bail, Result};
use grapevine_node::{control, Client, NodeDir};
use grapevine_storage::client::{CheckResults, RepairOptions};
use grapevine_storage::{Cap, VerifyCap};

use crate::exit;
use crate::files::print_check;
use crate::info::{rt, NodeArg};

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
                        .map(|(s, on)| format!("{s} on {}", crate::files::short(on)))
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

/// Arguments of `verify-cap`.
#[derive(Debug, clap::Args)]
pub struct VerifyCapArgs {
    /// Read capability (`gv:chk:...`).
    cap: String,
}

/// `grapevine verify-cap CAP`: print the verify capability of a read
/// capability (enough to check, verify and repair; not to read).
///
/// # Errors
/// Not a CHK read capability.
pub fn verify_cap(a: &VerifyCapArgs) -> Result<()> {
    match a.cap.parse::<Cap>()? {
        Cap::Chk(c) => outln!("{}", c.verify_cap()),
        Cap::Lit(_) => bail!(
            "a literal capability (gv:lit:...) holds its file itself: there are no shares to verify or repair"
        ),
    }
    Ok(())
}

/// Arguments of `repair`.
#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    #[command(flatten)]
    node: NodeArg,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// `grapevine repair`: what the running node's repair job has done.
///
/// # Errors
/// No node running.
pub fn report(a: &RepairArgs) -> Result<()> {
    let dir: NodeDir = a.node.dir();
    let r = rt()?.block_on(control::repair(&dir))?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    outln!(
        "{} passes; {} file checks; {} files below threshold ({} waiting, {} unrecoverable)",
        r.passes,
        r.files_checked,
        r.below_threshold,
        r.queue,
        r.unrecoverable
    );
    outln!(
        "{} repairs started, {} healed; {} shares regenerated; {} bytes read, {} written",
        r.repairs_started,
        r.repairs_succeeded,
        r.shares_regenerated,
        r.bytes_read,
        r.bytes_written
    );
    if r.last_errors.is_empty() {
        outln!("no errors");
    } else {
        outln!("last errors:");
        for e in &r.last_errors {
            outln!("  {e}");
        }
    }
    Ok(())
}
