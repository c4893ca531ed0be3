//! Commands that talk to a running node: `members`, `status`, `whoami`,
//! `put`, `get`, `check`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use grapevine_membership::MemberState;
use grapevine_node::{control, Client, NodeDir, PutOptions};
use grapevine_storage::{Cap, Params};
use indicatif::{ProgressBar, ProgressStyle};

/// The node directory the command works through.
#[derive(Debug, clap::Args)]
pub struct NodeArg {
    /// Node directory of a running node (`grapevine run DIR`).
    #[arg(long, default_value = ".")]
    pub node: PathBuf,
}

impl NodeArg {
    fn dir(&self) -> NodeDir {
        NodeDir::new(&self.node)
    }
}

/// Arguments of `members`.
#[derive(Debug, clap::Args)]
pub struct MembersArgs {
    #[command(flatten)]
    node: NodeArg,
    /// Only members in this state.
    #[arg(long, value_parser = parse_state)]
    state: Option<MemberState>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn parse_state(s: &str) -> Result<MemberState, String> {
    match s {
        "alive" => Ok(MemberState::Alive),
        "suspect" => Ok(MemberState::Suspect),
        "dead" => Ok(MemberState::Dead),
        "left" => Ok(MemberState::Left),
        _ => Err(format!("unknown state {s:?}: alive, suspect, dead or left")),
    }
}

fn rt() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `grapevine members`.
///
/// # Errors
/// No node running.
pub fn members(a: &MembersArgs) -> Result<()> {
    let rows = rt()?.block_on(control::members(&a.node.dir()))?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.state_matches(a.state))
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<11} {:<16} {:<22} {:<8} {:>10} {:>19} {:>8}",
        "id", "nickname", "address", "state", "last heard", "capacity/free MiB", "version"
    );
    let mut rows = rows;
    rows.sort_by(|a, b| a.state.cmp(&b.state).then(a.nickname.cmp(&b.nickname)));
    for r in &rows {
        println!(
            "{:<11} {:<16} {:<22} {:<8} {:>9.1}s {:>19} {:>8}",
            r.short,
            r.nickname.clone().unwrap_or_default(),
            r.addr,
            r.state,
            r.last_heard_s,
            format!("{}/{}", r.capacity_mib, r.free_mib),
            r.version
        );
    }
    println!("{} members", rows.len());
    Ok(())
}

/// Arguments of `status` and `whoami`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    node: NodeArg,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// `grapevine status`.
///
/// # Errors
/// No node running.
pub fn status(a: &StatusArgs) -> Result<()> {
    let s = rt()?.block_on(control::status(&a.node.dir()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("node       {} ({})", s.id, s.nickname.unwrap_or_default());
        println!("uptime     {:.0} s", s.uptime_s);
        println!("records    {}", s.records);
        println!(
            "members    {} alive, {} suspect, {} dead, {} left",
            s.alive, s.suspect, s.dead, s.left
        );
        println!(
            "gossip     {} datagrams / {} bytes sent ({:.2}/s, {:.0} B/s), {} received",
            s.datagrams_sent,
            s.bytes_sent,
            s.datagrams_sent_per_s,
            s.bytes_sent_per_s,
            s.datagrams_received
        );
        println!(
            "sessions   {} open; {} storage requests, mean {:.2} ms",
            s.sessions_open, s.storage_requests, s.storage_request_mean_ms
        );
        println!("memory     {} KiB RSS", s.rss_bytes / 1024);
        println!(
            "storage    {} KiB stored, {} MiB available",
            s.storage_stored >> 10,
            s.storage_available >> 20
        );
    }
    Ok(())
}

/// `grapevine whoami`.
///
/// # Errors
/// No node running.
pub fn whoami(a: &StatusArgs) -> Result<()> {
    let w = rt()?.block_on(control::whoami(&a.node.dir()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
    } else {
        println!("{}", w.id);
    }
    Ok(())
}

fn bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Arguments of `put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// File to store.
    file: PathBuf,
    #[command(flatten)]
    node: NodeArg,
    /// Shares needed to read.
    #[arg(long, default_value_t = 3)]
    k: u16,
    /// Shares made.
    #[arg(long, default_value_t = 10)]
    n: u16,
    /// Distinct servers that must take shares.
    #[arg(long, default_value_t = 7)]
    happy: u16,
    /// Use a random key instead of the convergent one.
    #[arg(long)]
    random_key: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// `grapevine put FILE`.
///
/// # Errors
/// No node running, unreadable file, too few servers.
pub fn put(a: &PutArgs) -> Result<()> {
    rt()?.block_on(async {
        let client = Client::for_dir(&a.node.dir()).await?;
        let size = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
        let b = bar(size, a.json);
        let opts = PutOptions {
            params: Params {
                k: a.k,
                n: a.n,
                happy: a.happy,
            },
            random_key: a.random_key,
        };
        let up = client
            .put_file(&a.file, opts, &|done| b.set_position(done))
            .await?;
        b.finish_and_clear();
        if a.json {
            let placements: Vec<_> = up
                .placements
                .iter()
                .map(|(s, id)| serde_json::json!({"share": s, "server": id.to_string()}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"cap": up.cap.to_string(), "servers": up.servers, "placements": placements})
            );
        } else {
            println!("{}", up.cap);
        }
        Ok(())
    })
}

/// Arguments of `get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Read capability.
    cap: String,
    /// Where to write the file.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    node: NodeArg,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// `grapevine get CAP -o FILE`: the file appears only once it is complete
/// and verified.
///
/// # Errors
/// Bad capability, no node, not enough good shares.
pub fn get(a: &GetArgs) -> Result<()> {
    let cap: Cap = a.cap.parse()?;
    rt()?.block_on(async {
        let client = Client::for_dir(&a.node.dir()).await?;
        let size = match &cap {
            Cap::Chk(c) => c.size,
            Cap::Lit(d) => d.len() as u64,
        };
        let b = bar(size, a.json);
        let r = client
            .get_to_file(&cap, &a.output, &|done| b.set_position(done))
            .await;
        b.finish_and_clear();
        let rep = r?;
        for (shnum, server) in &rep.corrupt {
            eprintln!(
                "warning: share {shnum} on {} is corrupt and was skipped",
                server.short()
            );
        }
        if a.json {
            let corrupt: Vec<_> = rep
                .corrupt
                .iter()
                .map(|(s, id)| serde_json::json!({"share": s, "server": id.to_string()}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"bytes": rep.bytes, "corrupt": corrupt})
            );
        }
        Ok(())
    })
}

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Read capability.
    cap: String,
    /// Download and hash every share.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    node: NodeArg,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// `grapevine check CAP [--verify]`.
///
/// # Errors
/// Bad capability, no node; exits non-zero when fewer than k good shares.
pub fn check(a: &CheckArgs) -> Result<()> {
    let cap: Cap = a.cap.parse()?;
    rt()?.block_on(async {
        let client = Client::for_dir(&a.node.dir()).await?;
        let r = client.check(&cap, a.verify).await?;
        if a.json {
            let shares: Vec<_> = r
                .shares
                .iter()
                .map(|(s, id, ok)| serde_json::json!({"share": s, "server": id.to_string(), "verified": ok}))
                .collect();
            println!("{}", serde_json::json!({"k": r.k, "n": r.n, "good": r.distinct_good, "shares": shares}));
        } else {
            for (s, id, ok) in &r.shares {
                let v = match ok {
                    Some(true) => "ok",
                    Some(false) => "CORRUPT",
                    None => "present",
                };
                println!("share {s:>3} on {}  {v}", id.short());
            }
            println!("{} of {} shares good ({} needed)", r.distinct_good, r.n, r.k);
        }
        if matches!(cap, Cap::Chk(_)) && r.distinct_good < r.k as usize {
            bail!("not enough good shares to read the file");
        }
        Ok(())
    })
}
