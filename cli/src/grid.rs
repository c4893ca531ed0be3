//! `grapevine grid`: closed grids. `grid new` makes a grid key; `grid admit`
//! signs an admission certificate for a node id, to go in that node's
//! config.toml (`grid` and `admission`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use grapevine_crypto::{Admission, GridId, Identity, NodeId};

/// The longest `--days` a certificate is given: a hundred years, far
/// inside what a timestamp and a date printer can hold.
const MAX_DAYS: u64 = 36_500;

/// `grapevine grid ...`.
#[derive(Debug, clap::Subcommand)]
pub enum GridCmd {
    /// Create a grid key (kept by the grid's operator, mode 0600) and print
    /// the grid id every node is configured with.
    New {
        /// Where to write the grid key.
        key: PathBuf,
    },
    /// Sign an admission certificate for a node (its id from `grapevine
    /// whoami`) and print it.
    Admit {
        /// The grid key file.
        #[arg(long)]
        key: PathBuf,
        /// The node's id.
        node: String,
        /// Days until the certificate expires, 1 to 36500 (never, if
        /// absent).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DAYS))]
        days: Option<u64>,
    },
}

/// Run a `grid` subcommand.
///
/// # Errors
/// Existing or unreadable key files, bad node ids.
pub fn run(cmd: &GridCmd) -> Result<()> {
    match cmd {
        GridCmd::New { key } => {
            if key.exists() {
                bail!("{} exists; refusing to overwrite a grid key", key.display());
            }
            let k = Identity::generate();
            k.save(key)
                .with_context(|| format!("writing {}", key.display()))?;
            outln!("grid = \"{}\"", GridId::of(&k));
        }
        GridCmd::Admit { key, node, days } => {
            let k = Identity::load(key).with_context(|| format!("reading {}", key.display()))?;
            let id: NodeId = node.parse().map_err(|e| {
                anyhow::anyhow!("{node:?} is not a node id (`grapevine whoami` prints one): {e}")
            })?;
            let expires = match days {
                None => 0,
                Some(d) => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs()
                    .saturating_add(d.saturating_mul(86_400)),
            };
            outln!("grid = \"{}\"", GridId::of(&k));
            outln!("admission = \"{}\"", Admission::issue(&k, &id, expires));
            let until = match expires {
                0 => "never expires".to_string(),
                t => format!(
                    "expires {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)
                    )
                ),
            };
            eprintln!(
                "admitted {id}; the certificate {until}. Append the two lines above to that node's config.toml and restart it."
            );
        }
    }
    Ok(())
}
