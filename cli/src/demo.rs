//! `grapevine demo`: a local grid end to end, on loopback, in one process.
//!
//! Starts real nodes (UDP gossip sockets on 127.4.0.x), waits until every
//! node holds every signed record, prints the member table, opens a Noise
//! session from one node to another knowing only its record, kills a node
//! and shows the grid detecting it, and has another leave gracefully.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use grapevine_crypto::{Identity, LocationRecord, Session, SessionConfig};
use grapevine_membership::driver::{start_local, MembershipHandle};
use grapevine_membership::select::permuted;
use grapevine_membership::{Config, MemberState, MemberView};
use tokio::net::{TcpListener, TcpStream};

/// Arguments of `grapevine demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes in the demo grid.
    #[arg(long, default_value_t = 24)]
    pub nodes: usize,
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(start.elapsed())
}

/// Print a member table.
pub fn print_members(members: &[MemberView]) {
    println!(
        "  {:<11} {:<10} {:<22} {:<8} {:>5} {:>8}",
        "id", "nickname", "address", "state", "inc", "version"
    );
    let mut rows: Vec<&MemberView> = members.iter().collect();
    rows.sort_by_key(|m| m.record.as_ref().and_then(|r| r.record().nickname.clone()));
    for m in rows {
        let (nick, ver) = m
            .record
            .as_ref()
            .map(|r| {
                (
                    r.record().nickname.clone().unwrap_or_default(),
                    r.record().software.clone(),
                )
            })
            .unwrap_or_default();
        println!(
            "  {:<11} {:<10} {:<22} {:<8} {:>5} {:>8}",
            m.id.short(),
            nick,
            m.addr.to_string(),
            m.state.to_string(),
            m.incarnation % 100_000,
            ver
        );
    }
}

/// Run the demo.
///
/// # Errors
/// Fails if a step does not complete in time.
pub fn run(args: &DemoArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(demo(args.nodes.max(4)))
}

async fn demo(n: usize) -> Result<()> {
    println!("grapevine demo: {n} nodes on 127.4.0.x, gossip over UDP, sessions over Noise/TCP\n");
    let mut ids = Vec::new();
    let mut nodes: Vec<Option<MembershipHandle>> = Vec::new();
    let first_id = Arc::new(Identity::generate());
    let first = start_local(
        addr(0),
        first_id.clone(),
        Some("node-00".into()),
        vec![],
        Config::new_lan(),
        None,
    )
    .await?;
    let seed = first.local_addr();
    ids.push(first_id);
    nodes.push(Some(first));
    for i in 1..n {
        let id = Arc::new(Identity::generate());
        let h = start_local(
            addr(i),
            id.clone(),
            Some(format!("node-{i:02}")),
            vec![seed],
            Config::new_lan(),
            None,
        )
        .await
        .with_context(|| format!("starting node {i}"))?;
        ids.push(id);
        nodes.push(Some(h));
    }
    println!("1. started {n} nodes; each knows only the seed {seed}");
    let took = wait_until("every record everywhere", Duration::from_secs(60), || {
        let all = nodes
            .iter()
            .flatten()
            .all(|h| h.counters().records.load(Ordering::Relaxed) as usize == n);
        async move { all }
    })
    .await?;
    println!(
        "2. every node holds all {n} signed, verified location records after {:.1} s\n",
        took.as_secs_f64()
    );
    let viewer = nodes[0].clone().context("node 0")?;
    print_members(&viewer.members().await?);

    // A session opened from a record alone: node 1 dials node 2 at the
    // address in node 2's record, authenticating with node 2's key.
    let members = viewer.members().await?;
    let target = members
        .iter()
        .find(|m| {
            m.record
                .as_ref()
                .is_some_and(|r| r.record().nickname.as_deref() == Some("node-02"))
        })
        .context("node-02 in view")?;
    let target_rec = target.record.clone().context("record")?;
    let listener = TcpListener::bind("127.4.0.3:0").await?;
    let listen_addr = listener.local_addr()?;
    let server_ident = ids[2].clone();
    let server_rec = LocationRecord::new(&server_ident, vec![listen_addr]).sign(&server_ident)?;
    let cfg = SessionConfig::default();
    let server = tokio::spawn({
        let cfg = cfg.clone();
        async move {
            let (s, _) = listener.accept().await?;
            let (mut sess, peer) = Session::accept(s, &server_ident, &server_rec, &cfg).await?;
            let msg = sess.recv().await?;
            let reply = format!(
                "hello {}, you sent {} bytes",
                peer.record().nickname.clone().unwrap_or_default(),
                msg.len()
            );
            sess.send(reply.as_bytes()).await?;
            anyhow::Ok(())
        }
    });
    let client_ident = ids[1].clone();
    let client_rec = LocationRecord::new(&client_ident, vec!["127.4.0.2:1".parse()?]);
    let mut client_rec = client_rec;
    client_rec.nickname = Some("node-01".into());
    let client_rec = client_rec.sign(&client_ident)?;
    let stream = TcpStream::connect(listen_addr).await?;
    let (mut sess, _) = Session::connect(
        stream,
        &client_ident,
        &client_rec,
        target_rec.node_id(),
        &cfg,
    )
    .await?;
    sess.send(&vec![42u8; 100_000]).await?;
    let reply = String::from_utf8(sess.recv().await?)?;
    server.await??;
    println!(
        "\n3. node-01 opened a Noise_IK session to {} knowing only its record: {reply:?}",
        target.id.short()
    );

    // Where would a file's shares go? The permuted list, the same for all.
    let servers: Vec<_> = members.iter().map(|m| m.id).chain([viewer.id()]).collect();
    let order = permuted(b"example storage index", servers);
    println!(
        "4. permuted list for storage index \"example storage index\": first 10 servers {}",
        order
            .iter()
            .take(10)
            .map(|s| s.short()[..6].to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Crash one node, watch everyone notice.
    let victim = nodes[n / 2].take().context("victim")?;
    let vid = victim.id();
    drop(victim);
    let live: Vec<MembershipHandle> = nodes.iter().flatten().cloned().collect();
    let took = wait_until(
        "the crashed node seen dead by all",
        Duration::from_secs(60),
        || {
            let live = live.clone();
            async move {
                for h in &live {
                    if h.states(vec![vid]).await.ok().and_then(|v| v[0]) != Some(MemberState::Dead)
                    {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await?;
    println!(
        "5. crashed {}: all {} survivors marked it dead after {:.1} s",
        vid.short(),
        live.len(),
        took.as_secs_f64()
    );

    // Leave gracefully.
    let leaver = nodes[n / 2 + 1].take().context("leaver")?;
    let lid = leaver.id();
    leaver.leave().await?;
    let live: Vec<MembershipHandle> = nodes.iter().flatten().cloned().collect();
    let took = wait_until("the leave seen by all", Duration::from_secs(30), || {
        let live = live.clone();
        async move {
            for h in &live {
                if h.states(vec![lid]).await.ok().and_then(|v| v[0]) != Some(MemberState::Left) {
                    return false;
                }
            }
            true
        }
    })
    .await?;
    println!(
        "6. {} left gracefully: seen as left by all after {:.1} s\n",
        lid.short(),
        took.as_secs_f64()
    );
    print_members(&viewer.members().await?);
    let st = viewer.stats().await?;
    println!(
        "\nnode-00 sent {} datagrams ({} bytes, largest {} B), accepted {} records, dropped {} duplicates",
        st.datagrams_sent, st.bytes_sent, st.max_datagram, st.records.accepted, st.records.duplicate
    );
    println!("demo complete");
    Ok(())
}
