//! `grapevine verify-cap` and `grapevine repair`: the capability a
//! repairer needs, and what a node's automatic repair job has done
//! (repairing one file by hand is `check --repair`, in `check`).

use anyhow::{bail, Result};
use grapevine_node::{control, NodeDir};
use grapevine_storage::Cap;

use crate::info::{rt, NodeArg};

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
