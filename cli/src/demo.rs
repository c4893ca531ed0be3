//! `grapevine demo`: the grid's job end to end, with real nodes on
//! loopback in one process (the node library, `Options::in_process`).
//!
//! It starts nodes on 127.4.0.x that know only a seed, waits until every
//! node holds every signed record, stores a file from one node and shows
//! where its shares went, reads it back through another node, crashes as
//! many share holders as the code allows (n - k) and reads it again,
//! checks the file (Tahoe's health report: readable, not healthy) and
//! repairs it with its verify capability, shows the grid seeing the crashed nodes dead and one
//! node leaving gracefully, and ends with the figures it measured.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use grapevine_membership::MemberState;
use grapevine_node::dir::{self, InitOptions};
use grapevine_node::{Config, Node, NodeDir, Options, PutOptions};
use grapevine_storage::client::RepairOptions;
use grapevine_storage::{Cap, Params};

/// Arguments of `grapevine demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes in the demo grid, 5 to 1000.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(5..=1000))]
    pub nodes: u16,
    /// Size of the demo file, MiB (1 to 1024).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub file_mib: u16,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 4, (i / 250) as u8, (i % 250 + 1) as u8], 0))
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(start.elapsed())
}

fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-6)
}

/// Run the demo.
///
/// # Errors
/// A step that fails or does not complete in time.
pub fn run(args: &DemoArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(demo(usize::from(args.nodes), usize::from(args.file_mib)))
}

struct Demo {
    nodes: Vec<Option<Node>>,
    names: Vec<String>,
}

impl Demo {
    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes[i]
            .as_ref()
            .with_context(|| format!("node {i} is down"))
    }

    fn name_of(&self, id: &grapevine_crypto::NodeId) -> String {
        self.nodes
            .iter()
            .zip(&self.names)
            .find(|(n, _)| n.as_ref().is_some_and(|n| n.id() == *id))
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| id.short())
    }

    async fn all_see(&self, ids: &[grapevine_crypto::NodeId], state: MemberState) -> bool {
        for n in self.nodes.iter().flatten() {
            match n.state().membership().states(ids.to_vec()).await {
                Ok(v) if v.iter().all(|s| *s == Some(state)) => {}
                _ => return false,
            }
        }
        true
    }
}

async fn start(n: usize, root: &std::path::Path) -> Result<Demo> {
    let mut demo = Demo {
        nodes: Vec::new(),
        names: Vec::new(),
    };
    let mut seed = None;
    for i in 0..n {
        let name = format!("node-{i:02}");
        let d = NodeDir::new(root.join(&name));
        dir::init(
            &d,
            &InitOptions {
                listen: addr(i),
                advertise: Vec::new(),
                seeds: vec![],
                nickname: Some(name.clone()),
                capacity_mib: 1024,
                gateway: None,
            },
        )?;
        let mut cfg = Config::new(addr(i));
        cfg.nickname = Some(name.clone());
        cfg.capacity_mib = 1024;
        cfg.reserve_mib = 0;
        cfg.seeds = seed.into_iter().map(Into::into).collect();
        let node = Node::start(cfg, &d, Options::in_process())
            .await
            .with_context(|| format!("starting {name}"))?;
        seed.get_or_insert(node.local_addr());
        demo.nodes.push(Some(node));
        demo.names.push(name);
    }
    Ok(demo)
}

async fn demo(n: usize, file_mib: usize) -> Result<()> {
    let root = tempfile::tempdir()?;
    outln!(
        "grapevine demo: {n} nodes on 127.4.0.x in this process (gossip over UDP, storage \
         sessions over Noise/TCP), stores under {}\n",
        root.path().display()
    );
    let mut demo = start(n, root.path()).await?;
    outln!("1. started {n} nodes; each knew only the seed, node-00");
    let converged = wait_until("every record everywhere", Duration::from_secs(60), || {
        let all = demo.nodes.iter().flatten().all(|x| {
            x.state()
                .membership()
                .counters()
                .records
                .load(std::sync::atomic::Ordering::Relaxed) as usize
                == n
        });
        async move { all }
    })
    .await?;
    let servers = wait_until(
        "every node a storage server",
        Duration::from_secs(30),
        || {
            let c = demo.nodes[0].as_ref().map(|x| x.client());
            async move {
                match c {
                    Some(c) => c.servers().await.map(|s| s.len() == n).unwrap_or(false),
                    None => false,
                }
            }
        },
    )
    .await?;
    outln!(
        "2. every node holds all {n} signed, verified location records after {:.1} s",
        (converged + servers).as_secs_f64()
    );

    // Store a file from node-00.
    let total = n.min(10) as u16;
    let params = Params {
        k: 3,
        n: total,
        happy: total.min(7),
    };
    let size = file_mib << 20;
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let t = Instant::now();
    let up = demo
        .node(0)?
        .client()
        .put_bytes(
            &data,
            PutOptions {
                params,
                random_key: false,
            },
        )
        .await?;
    let put_took = t.elapsed();
    outln!(
        "3. node-00 stored a file of {file_mib} MiB, {}-of-{} (happy {}), in {:.2} s ({:.0} MB/s): encrypted, \
         erasure-coded, one share per server in permuted order:",
        params.k,
        params.n,
        params.happy,
        put_took.as_secs_f64(),
        mb_per_s(size, put_took)
    );
    outln!("   {}", up.cap);
    for (shnum, server) in &up.placements {
        outln!("   share {shnum:>2} on {}", demo.name_of(server));
    }

    // Read it back through the last node.
    let reader = n - 1;
    let reader_name = demo.names[reader].clone();
    let t = Instant::now();
    let back = demo.node(reader)?.client().get_bytes(&up.cap).await?;
    let get_took = t.elapsed();
    if back != data {
        bail!("{reader_name} read back different bytes");
    }
    outln!(
        "4. {reader_name} read it back in {:.2} s ({:.0} MB/s): {} bytes, identical, every block verified",
        get_took.as_secs_f64(),
        mb_per_s(size, get_took),
        back.len()
    );

    // Crash n - k share holders (not the reader).
    let reader_id = demo.node(reader)?.id();
    let victims: Vec<grapevine_crypto::NodeId> = up
        .placements
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| *s != reader_id)
        .take(usize::from(params.n - params.k))
        .collect();
    let mut names = Vec::new();
    for v in &victims {
        names.push(demo.name_of(v));
        for slot in demo.nodes.iter_mut() {
            if slot.as_ref().is_some_and(|x| x.id() == *v) {
                // Dropped without a goodbye: a crash.
                drop(slot.take());
            }
        }
    }
    let crashed_at = Instant::now();
    outln!(
        "5. crashed {} of the {} share holders: {}",
        victims.len(),
        params.n,
        names.join(" ")
    );
    let t = Instant::now();
    let back = demo.node(reader)?.client().get_bytes(&up.cap).await?;
    let degraded_took = t.elapsed();
    if back != data {
        bail!("{reader_name} read back different bytes after the crashes");
    }
    outln!(
        "6. {reader_name} read it again from the {} shares left in {:.2} s ({:.0} MB/s): identical",
        params.k,
        degraded_took.as_secs_f64(),
        mb_per_s(size, degraded_took)
    );
    let report = demo.node(reader)?.client().check(&up.cap, true).await?;
    outln!("7. check --verify from {reader_name}: {}", report.summary);
    outln!(
        "   count-shares-good {}, count-shares-needed {}, count-shares-expected {}, healthy {}; \
         `grapevine check` exits 3 for this (readable, not healthy).",
        report.results.count_shares_good,
        report.results.count_shares_needed,
        report.results.count_shares_expected,
        report.results.healthy
    );
    // Repair by hand, with the verify capability only (the holders would
    // do it themselves after their grace period; see docs/durability.md).
    let Cap::Chk(read) = &up.cap else {
        bail!("the demo file is stored in its capability")
    };
    let t = Instant::now();
    let opts = RepairOptions::default();
    let r = demo
        .node(reader)?
        .client()
        .repair(&read.verify_cap(), &opts)
        .await?;
    let (outcome, more) = crate::check::repair_outcome(&r);
    outln!(
        "   check --repair from {reader_name} with the verify capability (gv:chk-verify:..., \
         no key), onto the live servers in {:.2} s: {outcome}; now {}",
        t.elapsed().as_secs_f64(),
        r.post_repair_results.summary
    );
    for e in more {
        outln!("     {e}");
    }
    // The grid notices.
    wait_until(
        "the crashed nodes seen dead by all",
        Duration::from_secs(60),
        || demo.all_see(&victims, MemberState::Dead),
    )
    .await?;
    let detect = crashed_at.elapsed();
    outln!(
        "8. every survivor saw the {} crashed nodes dead {:.1} s after the crash (SWIM probes and suspicion)",
        victims.len(),
        detect.as_secs_f64()
    );
    let leaver = (1..n)
        .find(|&i| i != reader && demo.nodes[i].is_some())
        .context("a node to leave")?;
    let node = demo.nodes[leaver].take().context("leaver")?;
    let lid = node.id();
    node.leave(Duration::from_secs(5)).await?;
    let lids = [lid];
    let left = wait_until("the leave seen by all", Duration::from_secs(30), || {
        demo.all_see(&lids, MemberState::Left)
    })
    .await?;
    outln!(
        "9. {} left gracefully (a signed goodbye): seen as left by all after {:.1} s",
        demo.names[leaver],
        left.as_secs_f64()
    );
    outln!(
        "\nfigures: convergence {:.1} s; put {:.0} MB/s; get {:.0} MB/s; get with {} of {} servers \
         crashed {:.0} MB/s; crash detection {:.1} s; leave seen {:.1} s",
        (converged + servers).as_secs_f64(),
        mb_per_s(size, put_took),
        mb_per_s(size, get_took),
        victims.len(),
        params.n,
        mb_per_s(size, degraded_took),
        detect.as_secs_f64(),
        left.as_secs_f64()
    );
    outln!("demo complete");
    Ok(())
}
