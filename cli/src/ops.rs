//! Commands that talk to a running node: `members`, `status`, `whoami`,
//! `put`, `get`, `check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use grapevine_crypto::{Identity, NodeId, SignedRecord};
use grapevine_membership::MemberState;
use grapevine_storage::client::{self, ClientIdentity, KeyMode, ServerRef, UploadRequest};
use grapevine_storage::{Cap, Params};
use grapevine_storage::{PoolConfig, SessionPool};
use indicatif::{ProgressBar, ProgressStyle};

use crate::node::{self, Control, StatusReply, WhoamiReply};

/// The node directory the command works through.
#[derive(Debug, clap::Args)]
pub struct NodeArg {
    /// Node directory of a running node (`grapevine run DIR`).
    #[arg(long, default_value = ".")]
    pub node: PathBuf,
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
    let rows = rt()?.block_on(node::members(&a.node.node))?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| node::state_matches(r, a.state))
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
    let s: StatusReply =
        serde_json::from_str(&rt()?.block_on(node::ask(&a.node.node, &Control::Status))?)?;
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
    let w: WhoamiReply =
        serde_json::from_str(&rt()?.block_on(node::ask(&a.node.node, &Control::Whoami))?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
    } else {
        println!("{}", w.id);
    }
    Ok(())
}

/// The client identity and the storage servers the node in `dir` knows.
async fn grid(dir: &Path) -> Result<(SessionPool, Vec<ServerRef>)> {
    let ident = Arc::new(Identity::load(&dir.join("identity.key"))?);
    let w: WhoamiReply = serde_json::from_str(&node::ask(dir, &Control::Whoami).await?)?;
    let record = SignedRecord::decode(&data_encoding::HEXLOWER.decode(w.record.as_bytes())?)?;
    let mut servers = vec![ServerRef {
        id: record.node_id(),
        addr: record.record().addrs[0],
    }];
    for m in node::members(dir).await? {
        if m.state == "alive" && m.storage {
            let id: NodeId = m.id.parse()?;
            let rec = SignedRecord::decode(&data_encoding::HEXLOWER.decode(m.record.as_bytes())?)?;
            servers.push(ServerRef {
                id,
                addr: rec.record().addrs[0],
            });
        }
    }
    let cfg = node::load_config(dir)?;
    let me = ClientIdentity {
        identity: ident,
        record,
        session: cfg.session_config()?,
    };
    let pool = PoolConfig {
        max_sessions: cfg.client_sessions,
        idle_timeout: std::time::Duration::from_secs(cfg.client_idle_secs),
        ..PoolConfig::default()
    };
    Ok((SessionPool::new(me, pool), servers))
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
        let (pool, servers) = grid(&a.node.node).await?;
        let size = std::fs::metadata(&a.file).with_context(|| format!("reading {}", a.file.display()))?.len();
        let mode = if a.random_key {
            KeyMode::Random
        } else {
            let text = std::fs::read_to_string(a.node.node.join("convergence.secret"))?;
            let s = data_encoding::HEXLOWER.decode(text.trim().as_bytes())?;
            KeyMode::Convergent(s.try_into().map_err(|_| anyhow::anyhow!("convergence.secret is not 32 bytes"))?)
        };
        let input = tokio::fs::File::open(&a.file).await?;
        let hash_input = Some(tokio::fs::File::open(&a.file).await?);
        let b = bar(size, a.json);
        let req = UploadRequest { params: Params { k: a.k, n: a.n, happy: a.happy }, mode, size, input, hash_input };
        let up = client::upload(&pool, &servers, req, &|done| b.set_position(done)).await?;
        b.finish_and_clear();
        if a.json {
            let placements: Vec<_> = up.placements.iter().map(|(s, id)| serde_json::json!({"share": s, "server": id.to_string()})).collect();
            println!("{}", serde_json::json!({"cap": up.cap.to_string(), "servers": up.servers, "placements": placements}));
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
        let (pool, servers) = grid(&a.node.node).await?;
        let parent = a
            .output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = parent.join(format!(
            ".{}.partial",
            a.output
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("grapevine")
        ));
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        let size = match &cap {
            Cap::Chk(c) => c.size,
            Cap::Lit(d) => d.len() as u64,
        };
        let b = bar(size, a.json);
        let r = client::download(&pool, &servers, &cap, &mut f, &|done| b.set_position(done)).await;
        b.finish_and_clear();
        let rep = match r {
            Ok(rep) => rep,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        f.sync_all().await?;
        std::fs::rename(&tmp, &a.output)?;
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
        let (pool, servers) = grid(&a.node.node).await?;
        let r = client::check(&pool, &servers, &cap, a.verify).await?;
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
