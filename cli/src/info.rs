//! `grapevine members`, `status` and `whoami`: what a node knows, printed
//! for people (every figure the JSON has) or as JSON.

use std::path::PathBuf;

use anyhow::Result;
use grapevine_membership::MemberState;
use grapevine_node::{control, NodeDir, StatusReport};

/// The node directory the command works through.
#[derive(Debug, clap::Args)]
pub struct NodeArg {
    /// Node directory (`grapevine init DIR`; running, for most commands).
    #[arg(long, default_value = ".")]
    pub node: PathBuf,
}

impl NodeArg {
    /// The node directory.
    pub fn dir(&self) -> NodeDir {
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

/// A small runtime for one command.
pub fn rt() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `n thing` or `n things`.
pub fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// `grapevine members`: this node first (marked `*`), then the others by
/// state and nickname.
///
/// # Errors
/// No node running.
pub fn members(a: &MembersArgs) -> Result<()> {
    let rows = rt()?.block_on(control::members(&a.node.dir()))?;
    let mut rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.state_matches(a.state))
        .collect();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    outln!(
        "  {:<11} {:<16} {:<22} {:<8} {:>10} {:>12} {:>9} {:>8}",
        "id",
        "nickname",
        "address",
        "state",
        "last heard",
        "capacity MiB",
        "free MiB",
        "version"
    );
    rows.sort_by(|a, b| {
        b.this_node
            .cmp(&a.this_node)
            .then(a.state.cmp(&b.state))
            .then(a.nickname.cmp(&b.nickname))
    });
    for r in &rows {
        outln!(
            "{} {:<11} {:<16} {:<22} {:<8} {:>9.1}s {:>12} {:>9} {:>8}",
            if r.this_node { "*" } else { " " },
            r.short,
            r.nickname.clone().unwrap_or_default(),
            r.addr,
            r.state,
            r.last_heard_s,
            r.capacity_mib,
            r.free_mib,
            r.version
        );
    }
    let me = if rows.iter().any(|r| r.this_node) {
        " (* this node)"
    } else {
        ""
    };
    outln!("{}{me}", plural(rows.len(), "member"));
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

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Every figure of `s`, for people.
pub fn status_text(s: &StatusReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<11}{v}\n"));
    line(
        "node",
        format!("{} ({})", s.id, s.nickname.clone().unwrap_or_default()),
    );
    line("uptime", format!("{:.0} s", s.uptime_s));
    line("records", s.records.to_string());
    line(
        "members",
        format!(
            "{} alive, {} suspect, {} dead, {} left (besides this node)",
            s.alive, s.suspect, s.dead, s.left
        ),
    );
    line(
        "gossip",
        format!(
            "{} datagrams / {} bytes sent ({:.2}/s, {:.0} B/s), {} received",
            s.datagrams_sent,
            s.bytes_sent,
            s.datagrams_sent_per_s,
            s.bytes_sent_per_s,
            s.datagrams_received
        ),
    );
    line(
        "dropped",
        format!(
            "{} datagrams over their source's rate, {} from outside a closed grid, {} records not admitted",
            s.datagrams_rate_limited, s.datagrams_from_outsiders, s.records_unadmitted
        ),
    );
    line(
        "identity",
        if s.identity_clashes == 0 {
            "no other process seen with this node's identity".to_string()
        } else {
            format!(
                "ANOTHER PROCESS HAS THIS NODE'S IDENTITY: seen signing above it {} (a copied node directory? its address is in this node's log)",
                plural(usize::try_from(s.identity_clashes).unwrap_or(usize::MAX), "time")
            )
        },
    );
    line(
        "sessions",
        format!(
            "{} open; {} storage requests, mean {:.2} ms; {}",
            s.sessions_open,
            s.storage_requests,
            s.storage_request_mean_ms,
            if s.sessions_offer_aes_gcm {
                "AES-256-GCM offered (used with peers that offer it too)"
            } else {
                "ChaCha20-Poly1305 only (AES-256-GCM not offered)"
            }
        ),
    );
    line("memory", format!("{} KiB RSS", s.rss_bytes / 1024));
    line(
        "storage",
        format!(
            "{} offered, {} used, {} free to offer (published: {} MiB)",
            mib(s.storage_capacity),
            mib(s.storage_used),
            mib(s.storage_free),
            s.published_free_mib
        ),
    );
    line(
        "disk",
        format!(
            "{} free, {} kept in reserve",
            mib(s.storage_disk_free),
            mib(s.storage_reserve)
        ),
    );
    line(
        "server",
        format!(
            "{}; {} accept errors retried, {} sessions closed by a deadline",
            if s.storage_serving {
                "serving shares"
            } else {
                "not serving shares"
            },
            s.storage_accept_errors,
            s.storage_sessions_timed_out
        ),
    );
    line(
        "listings",
        format!(
            "{} answered without a session, {} of them in datagrams; {} datagrams not answered",
            s.storage_listings, s.storage_datagram_listings, s.storage_datagrams_refused
        ),
    );
    line(
        "scrub",
        format!(
            "{} passes, {} shares and {} bytes checked, {} corrupt found; {} bytes into this pass",
            s.scrub_passes,
            s.scrub_shares_checked,
            s.scrub_bytes_checked,
            s.scrub_corrupt_found,
            s.scrub_pass_bytes
        ),
    );
    line("clock", clock_text(s.clock_offset_s, s.clock_peers));
    let r = &s.repair;
    line(
        "repair",
        format!(
            "{} file checks, {} below threshold ({} waiting); {} repairs started, {} healed, \
             {} shares regenerated; {} bytes read, {} written",
            r.repair_files_checked,
            r.repair_below_threshold,
            r.repair_queue,
            r.repair_started,
            r.repair_succeeded,
            r.repair_shares_regenerated,
            r.repair_bytes_read,
            r.repair_bytes_written
        ),
    );
    out
}

/// The node's clock against the grid's, with a warning past
/// [`grapevine_node::state::CLOCK_WARN_SECS`].
fn clock_text(offset: Option<i64>, peers: u64) -> String {
    let Some(o) = offset else {
        return "offset from the grid's clock not measured yet (no member's clock sampled)".into();
    };
    let mut t =
        format!("the grid's clock is {o:+} s from this node's (median of {peers} members' clocks)");
    if o.unsigned_abs() > grapevine_node::state::CLOCK_WARN_SECS {
        let way = if o > 0 { "behind" } else { "ahead of" };
        t.push_str(&format!(
            "; WARNING: this node's clock is {} s {way} the grid's: set it right (NTP)",
            o.unsigned_abs()
        ));
    }
    t
}

/// `grapevine status`.
///
/// # Errors
/// No node running.
pub fn status(a: &StatusArgs) -> Result<()> {
    let s = rt()?.block_on(control::status(&a.node.dir()))?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        outln!("{}", status_text(&s).trim_end());
    }
    Ok(())
}

/// `grapevine whoami`: from the running node, or from the directory's
/// identity key if the node is not running (no record then: a record is
/// signed at start).
///
/// # Errors
/// Not a node directory.
pub fn whoami(a: &StatusArgs) -> Result<()> {
    let dir = a.node.dir();
    let w = match rt()?.block_on(control::whoami(&dir)) {
        Ok(w) => w,
        Err(control_err) => {
            let id = dir.node_id().map_err(|e| {
                anyhow::anyhow!(
                    "{}: no node running there ({control_err}) and no identity to read: {e}",
                    dir.path().display()
                )
            })?;
            grapevine_node::Whoami {
                id: id.to_string(),
                record: None,
            }
        }
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&w)?);
    } else {
        outln!("{}", w.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_line_warns_only_past_the_threshold() {
        let warn = grapevine_node::state::CLOCK_WARN_SECS as i64;
        assert!(clock_text(None, 0).contains("not measured yet"));
        let fine = clock_text(Some(-warn), 5);
        assert!(
            fine.contains("-30 s") && !fine.contains("WARNING"),
            "{fine}"
        );
        let ahead = clock_text(Some(-86_400), 5);
        assert!(ahead.contains("86400 s ahead of the grid's"), "{ahead}");
        let behind = clock_text(Some(warn + 1), 5);
        assert!(behind.contains("31 s behind the grid's"), "{behind}");
    }

    /// The human status shows every figure its JSON has: each JSON value
    /// (set to a distinct number) appears in the text.
    #[test]
    fn human_status_shows_every_json_figure() {
        let mut v = serde_json::json!({});
        let keys = [
            "records_unadmitted",
            "datagrams_rate_limited",
            "datagrams_from_outsiders",
            "records",
            "alive",
            "suspect",
            "dead",
            "left",
            "datagrams_sent",
            "bytes_sent",
            "datagrams_received",
            "sessions_open",
            "storage_requests",
            "published_free_mib",
            "storage_accept_errors",
            "storage_sessions_timed_out",
            "scrub_passes",
            "scrub_shares_checked",
            "scrub_bytes_checked",
            "scrub_corrupt_found",
            "scrub_pass_bytes",
            "clock_offset_s",
            "clock_peers",
            "repair_files_checked",
            "repair_below_threshold",
            "repair_queue",
            "repair_started",
            "repair_succeeded",
            "repair_shares_regenerated",
            "repair_bytes_read",
            "repair_bytes_written",
            "storage_listings",
            "storage_datagram_listings",
            "storage_datagrams_refused",
            "identity_clashes",
        ];
        for (i, k) in keys.iter().enumerate() {
            v[*k] = serde_json::json!(1000 + i as u64);
        }
        v["id"] = "abc".into();
        v["nickname"] = "n1".into();
        for k in [
            "uptime_s",
            "datagrams_sent_per_s",
            "bytes_sent_per_s",
            "storage_request_mean_ms",
        ] {
            v[k] = serde_json::json!(0.0);
        }
        v["rss_bytes"] = serde_json::json!(2000u64 * 1024);
        v["storage_serving"] = true.into();
        v["sessions_offer_aes_gcm"] = true.into();
        for (i, k) in [
            "storage_capacity",
            "storage_used",
            "storage_disk_free",
            "storage_reserve",
            "storage_free",
        ]
        .iter()
        .enumerate()
        {
            v[*k] = serde_json::json!((3000 + i as u64) << 20);
        }
        let s: StatusReport = serde_json::from_value(v.clone()).expect("every field set");
        let text = status_text(&s);
        for (i, _) in keys.iter().enumerate() {
            assert!(
                text.contains(&(1000 + i).to_string()),
                "{}: {text}",
                keys[i]
            );
        }
        for i in 0..5 {
            assert!(text.contains(&format!("{}.0 MiB", 3000 + i)), "{i}: {text}");
        }
        assert!(text.contains("2000 KiB"), "{text}");
        assert!(text.contains("serving shares"), "{text}");
        assert!(text.contains("AES-256-GCM offered"), "{text}");
        assert!(
            text.contains("WARNING: this node's clock is 1021 s behind"),
            "{text}"
        );
        let fields = v.as_object().unwrap().len();
        let round: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(
            round.as_object().unwrap().len(),
            fields,
            "a field not in this test"
        );
    }
}
