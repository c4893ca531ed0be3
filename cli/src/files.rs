//! `grapevine put` and `get`: files on the grid, through a running node's
//! view of it (`check` is in `check`).
//!
//! Standard output carries what a script wants (the capability, the file's
//! bytes, JSON); what a person wants to know (what was stored where, what
//! was written, progress) goes to standard error, with a progress bar
//! whenever standard error is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use grapevine_node::config::budget_of_mib;
use grapevine_node::output::Target;
use grapevine_node::{Client, NodeDir, OpError, PutOptions};
use grapevine_storage::client::{ClientError, ReportVerdict, UploadReport};
use grapevine_storage::{Cap, MemoryBudget, Params};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exit::usage;
use crate::info::{plural, rt, NodeArg};

/// A progress bar on standard error if it is a terminal (whatever standard
/// output is), else none.
fn bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// The memory budget option of `put` and `get`.
#[derive(Debug, clap::Args)]
struct MemoryArg {
    /// MiB the transfer may hold in buffers (upload segments, read-ahead,
    /// requests in flight); 0: no bound (default: the node's
    /// `memory_budget_mib`, 8 unless set).
    #[arg(long, value_name = "MIB")]
    memory_budget: Option<u32>,
}

impl MemoryArg {
    fn budget(&self) -> Option<MemoryBudget> {
        self.memory_budget.map(budget_of_mib)
    }
}

/// Arguments of `put`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
FILE may be a regular file, read where it lies, or anything else that can be read: \
`-` or no FILE reads standard input, and pipes, /dev/stdin and <(...) work too. Input \
that is not a regular file is spooled to a private temporary file first (in TMPDIR, \
removed afterwards), with --random-key too: a share's size is announced to its server \
before any of it is sent, and a convergent key hashes the whole content first.

Without --k/--n/--happy, the node's config.toml decides (shares_needed, shares_total, \
shares_happy; 3, 10 and 7 by default).")]
pub struct PutArgs {
    /// File to store (`-` or none: standard input).
    file: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArg,
    /// Shares needed to read (default: the node's `shares_needed`).
    #[arg(long)]
    k: Option<u16>,
    /// Shares made (default: the node's `shares_total`).
    #[arg(long)]
    n: Option<u16>,
    /// Distinct servers that must take shares (default: the node's
    /// `shares_happy`).
    #[arg(long)]
    happy: Option<u16>,
    /// Use a random key instead of the convergent one.
    #[arg(long)]
    random_key: bool,
    #[command(flatten)]
    memory: MemoryArg,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// What to change when the grid has fewer servers than `happy`, for a grid
/// of `servers` storage servers.
fn advice(p: Params, servers: usize, dir: &NodeDir) -> String {
    let s = u16::try_from(servers.max(1)).unwrap_or(u16::MAX).min(256);
    let k = (s / 2).max(1).min(p.k);
    let happy = (k + 1).max(s.saturating_sub(1)).min(s);
    format!(
        "this node sees {}: ask for fewer, for example --k {k} --n {s} --happy {happy}, \
         or set shares_needed, shares_total and shares_happy in {} for every put",
        plural(servers, "storage server"),
        dir.config_path().display()
    )
}

/// `grapevine put [FILE]`.
///
/// # Errors
/// No node running, unreadable input, too few servers (with what to
/// change).
pub fn put(a: &PutArgs) -> Result<()> {
    let dir = a.node.dir();
    let config = dir.load_config()?;
    // Before the runtime's threads (see `malloc`).
    crate::malloc::tune(a.memory.budget().unwrap_or(config.memory_budget()));
    let d = config.params();
    let params = Params {
        k: a.k.unwrap_or(d.k),
        n: a.n.unwrap_or(d.n),
        happy: a.happy.unwrap_or(d.happy),
    };
    if params.validate().is_err() {
        usage!(
            "share parameters {params} cannot work: need 1 <= k <= n <= 256 and 1 <= happy <= n"
        );
    }
    let stdin = a
        .file
        .as_deref()
        .is_none_or(|f| f == std::path::Path::new("-"));
    if let Some(f) = a.file.as_deref().filter(|_| !stdin) {
        match std::fs::metadata(f) {
            Ok(m) if m.is_dir() => bail!("{} is a directory: put stores one file", f.display()),
            Ok(_) => {}
            Err(e) => bail!("{}: {e}", f.display()),
        }
    }
    rt()?.block_on(async {
        let client = Client::for_dir_with_memory(&dir, a.memory.budget()).await?;
        let servers = client.servers().await?.len();
        if servers < usize::from(params.happy) {
            bail!(
                "happy = {} needs {} but {}",
                params.happy,
                plural(usize::from(params.happy), "storage server"),
                advice(params, servers, &dir)
            );
        }
        let opts = PutOptions {
            params,
            random_key: a.random_key,
        };
        let size = match &a.file {
            Some(f) if !stdin => std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
            _ => 0,
        };
        let b = bar(size);
        let file = a.file.clone().filter(|_| !stdin);
        let shown = b.clone();
        let r = on_workers(&b, async move {
            let progress = |done| shown.set_position(done);
            match file {
                Some(f) => client.put_path(&f, opts, &progress).await,
                None => client.put_reader(tokio::io::stdin(), opts, &progress).await,
            }
        })
        .await?;
        b.finish_and_clear();
        let up = match r {
            Err(OpError::Storage(e @ ClientError::NotHappy { .. })) => {
                bail!("{e}: {}", advice(params, servers, &dir))
            }
            r => r?,
        };
        let what = match &a.file {
            Some(f) if !stdin => f.display().to_string(),
            _ => "standard input".into(),
        };
        eprintln!("{}", put_summary(&what, &up, params));
        if a.json {
            let shares = |v: &[(u16, grapevine_crypto::NodeId)]| -> Vec<serde_json::Value> {
                v.iter()
                    .map(|(s, id)| serde_json::json!({"share": s, "server": id.to_string()}))
                    .collect()
            };
            outln!(
                "{}",
                serde_json::json!({
                    "cap": up.cap.to_string(),
                    "servers": up.servers,
                    "happy": params.happy,
                    "placements": shares(&up.placements),
                    "already_held": shares(&up.already_held),
                    "lost": up.lost.iter().map(|(id, why)| serde_json::json!({"server": id.to_string(), "why": why})).collect::<Vec<_>>(),
                })
            );
        } else {
            outln!("{}", up.cap);
        }
        Ok(())
    })
}

/// Run a transfer as a task on the runtime's workers, as a node's gateway
/// does, rather than on the thread that waits for the command: there,
/// every hand-off between the transfer's driver and the tasks and threads
/// it feeds woke a third thread and took a core from them
/// (`grapevine-perf bench storage`, measured: docs/performance.md).
///
/// An interrupt (SIGINT, SIGTERM or SIGHUP) cancels the transfer and waits
/// until it is dropped, so that what it holds on disk (`put`'s spool of
/// standard input, `get`'s partial file) is removed, clears the progress
/// `bar` off the terminal and says so, then dies by the signal
/// ([`crate::signals::die_by`]): a parent sees the command killed by it,
/// and a shell loop of puts stops at Ctrl-C.
async fn on_workers<T: Send + 'static>(
    bar: &ProgressBar,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    use std::io::Write;
    use tokio::signal::unix::{signal, SignalKind};
    // Before the transfer starts, so that no signal finds it unwatched.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut task = tokio::spawn(work);
    let (name, number) = tokio::select! {
        // A transfer that has finished is not undone by a signal that
        // comes with it.
        biased;
        r = &mut task => {
            return r.map_err(|e| anyhow::anyhow!("the transfer's task failed: {e}"));
        }
        _ = int.recv() => ("an interrupt", libc::SIGINT),
        _ = term.recv() => ("SIGTERM", libc::SIGTERM),
        _ = hup.recv() => ("SIGHUP", libc::SIGHUP),
    };
    task.abort();
    // Its temporary files are removed as it is dropped; if it finished
    // meanwhile, its result stands.
    if let Ok(done) = task.await {
        return Ok(done);
    }
    // Standard error may be gone with the terminal (SIGHUP): no panic
    // (indicatif ignores a failed draw).
    bar.finish_and_clear();
    let _ = writeln!(
        std::io::stderr(),
        "grapevine: stopped by {name}; its temporary files are removed"
    );
    // Not through the runtime's shutdown: a read of standard input may be
    // blocked on a thread of its own for as long as the writer keeps the
    // pipe open.
    crate::signals::die_by(number)
}

/// What a put did, in a sentence.
fn put_summary(what: &str, up: &UploadReport, p: Params) -> String {
    match &up.cap {
        Cap::Lit(d) => format!(
            "stored {what} ({}) in the capability itself: nothing was sent to servers",
            plural(d.len(), "byte")
        ),
        Cap::Chk(c) => {
            let held = if up.already_held.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} of them already on the grid before this put",
                    up.already_held.len()
                )
            };
            let lost: String = up
                .lost
                .iter()
                .map(|(id, why)| {
                    format!(
                        "; server {} was lost during the put and its shares dropped ({why})",
                        id.short()
                    )
                })
                .collect();
            format!(
                "stored {what} ({}) as {} ({} needed to read) on {}: happiness {} of {} required{held}{lost}",
                plural(usize::try_from(c.size).unwrap_or(usize::MAX), "byte"),
                plural(up.placements.len(), "share"),
                c.k,
                plural(up.servers, "server"),
                up.servers,
                p.happy,
            )
        }
    }
}

/// Arguments of `get`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
-o FILE: a regular file or a new path is written through a temporary file beside it and \
renamed into place only once every block has verified (a failure leaves the old file and \
no partial one); a symlink is followed; a device or FIFO (-o /dev/null) is written into \
directly; a directory is refused. Without -o, or with -o -, the file goes to standard \
output: bytes already written there cannot be taken back, so a failure says the output is \
incomplete and exits 1.")]
pub struct GetArgs {
    /// Read capability.
    cap: String,
    /// Where to write the file (`-` or none: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArg,
    #[command(flatten)]
    memory: MemoryArg,
    /// JSON report on standard output (only with -o FILE).
    #[arg(long)]
    json: bool,
}

/// `grapevine get CAP [-o FILE]`.
///
/// # Errors
/// Bad capability or target, no node, not enough good shares, a failed
/// write (saying how much of a stream was written).
pub fn get(a: &GetArgs) -> Result<()> {
    let cap: Cap = a.cap.parse()?;
    let target = Target::for_path(a.output.as_deref().unwrap_or(std::path::Path::new("-")))?;
    if a.json && target == Target::Stdout {
        usage!("--json needs -o FILE: standard output carries the file");
    }
    // Before the runtime's threads (see `malloc`); a directory without a
    // configuration fails below, in `Client::for_dir_with_memory`.
    let budget = a
        .memory
        .budget()
        .or_else(|| a.node.dir().load_config().ok().map(|c| c.memory_budget()));
    crate::malloc::tune(budget.unwrap_or(MemoryBudget::UNBOUNDED));
    rt()?.block_on(async {
        let client = Client::for_dir_with_memory(&a.node.dir(), a.memory.budget()).await?;
        let size = match &cap {
            Cap::Chk(c) => c.size,
            Cap::Lit(d) => d.len() as u64,
        };
        let b = bar(size);
        let (cap, to, shown) = (cap.clone(), target.clone(), b.clone());
        let r = on_workers(&b, async move {
            client
                .get_to(&cap, &to, &|done| shown.set_position(done))
                .await
        })
        .await?;
        b.finish_and_clear();
        let rep = r?;
        for (shnum, server, verdict) in &rep.reported {
            eprintln!(
                "warning: share {shnum} on server {} is corrupt and was skipped; {}",
                server.short(),
                told(*verdict)
            );
        }
        eprintln!(
            "wrote {} to {}{}",
            plural(usize::try_from(rep.bytes).unwrap_or(usize::MAX), "byte"),
            target.name(),
            if target.is_stream() {
                ""
            } else {
                " (verified)"
            }
        );
        if a.json {
            let corrupt: Vec<_> = rep
                .reported
                .iter()
                .map(|(s, id, v)| {
                    serde_json::json!({"share": s, "server": id.to_string(), "server_said": told(*v)})
                })
                .collect();
            outln!(
                "{}",
                serde_json::json!({"bytes": rep.bytes, "to": target.name(), "corrupt": corrupt})
            );
        }
        Ok(())
    })
}

/// What a corrupt share's server did when told, in words.
fn told(verdict: Option<ReportVerdict>) -> &'static str {
    match verdict {
        Some(ReportVerdict::Quarantined) => "its server checked it and quarantined it",
        Some(ReportVerdict::Kept) => {
            "its server checked it, found it intact and kept it (it does not match this capability)"
        }
        None => "the report to its server did not get through",
    }
}
