//! Real nodes on real UDP sockets (127.1.x.y), one process: records
//! converge everywhere, a killed node is detected by all, a leaving node is
//! seen to leave, and nobody alive is declared dead.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::{Identity, NodeId};
use grapevine_membership::driver::{start_local, MembershipHandle};
use grapevine_membership::{Config, Event, MemberState};
use tokio::sync::mpsc;

fn addr(net: u8, i: usize) -> SocketAddr {
    SocketAddr::from(([127, net, (i / 250) as u8, (i % 250 + 1) as u8], 0))
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn grid(
    net: u8,
    n: usize,
) -> (
    Vec<Option<MembershipHandle>>,
    mpsc::UnboundedReceiver<(NodeId, Event)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    let first = start_local(
        addr(net, 0),
        Arc::new(Identity::generate()),
        Some("n0".into()),
        vec![],
        Config::new_lan(),
        Some(tx.clone()),
    )
    .await
    .expect("first node");
    let seed = first.local_addr();
    nodes.push(Some(first));
    for i in 1..n {
        let h = start_local(
            addr(net, i),
            Arc::new(Identity::generate()),
            Some(format!("n{i}")),
            vec![seed],
            Config::new_lan(),
            Some(tx.clone()),
        )
        .await
        .expect("node");
        nodes.push(Some(h));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (nodes, rx)
}

/// Wait until every node in `nodes` sees `id` in `state`.
async fn wait_all_see(nodes: &[MembershipHandle], id: NodeId, state: MemberState, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut all = true;
        for h in nodes {
            if h.states(vec![id]).await.expect("running")[0] != Some(state) {
                all = false;
                break;
            }
        }
        if all {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} not seen as {state} by all",
            id.short()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn false_deaths(
    rx: &mut mpsc::UnboundedReceiver<(NodeId, Event)>,
    killed: &HashSet<NodeId>,
) -> usize {
    let mut n = 0;
    while let Ok((_, e)) = rx.try_recv() {
        if let Event::StateChanged {
            id,
            to: MemberState::Dead,
            ..
        } = e
        {
            if !killed.contains(&id) {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_nodes_converge_and_detect_a_killed_node() {
    let n = 100;
    let (mut nodes, mut events) = grid(1, n).await;
    wait_for("all records everywhere", Duration::from_secs(90), || {
        nodes
            .iter()
            .flatten()
            .all(|h| h.counters().records.load(Ordering::Relaxed) as usize == n)
    })
    .await;
    for h in nodes.iter().flatten() {
        assert!(h.counters().max_datagram.load(Ordering::Relaxed) <= 1400);
    }

    let victim = nodes[37].take().expect("running");
    let vid = victim.id();
    drop(victim); // its task stops: a crash, no goodbye
    let alive: Vec<MembershipHandle> = nodes.iter().flatten().cloned().collect();
    wait_all_see(&alive, vid, MemberState::Dead, 60).await;
    let killed: HashSet<NodeId> = [vid].into_iter().collect();
    assert_eq!(
        false_deaths(&mut events, &killed),
        0,
        "a live node was declared dead"
    );

    // A graceful leave is seen as such.
    let leaver = nodes[50].take().expect("running");
    let lid = leaver.id();
    leaver.leave().await.expect("leave");
    let alive: Vec<MembershipHandle> = nodes.iter().flatten().cloned().collect();
    wait_all_see(&alive, lid, MemberState::Left, 30).await;
    // Every view holds the signed record of every node, verified.
    let members = alive[0].members().await.expect("running");
    assert_eq!(members.len(), n - 1);
    assert!(members.iter().all(|m| m.record.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_and_harmless() {
    let (nodes, _events) = grid(2, 3).await;
    wait_for("3 records", Duration::from_secs(30), || {
        nodes
            .iter()
            .flatten()
            .all(|h| h.counters().records.load(Ordering::Relaxed) == 3)
    })
    .await;
    let target = nodes[1].as_ref().unwrap();
    let sock = tokio::net::UdpSocket::bind("127.2.9.9:0").await.unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i * 7 % 1500)).map(|b| (b ^ i) as u8).collect();
        sock.send_to(&junk, target.local_addr()).await.unwrap();
        if i % 20 == 0 {
            // Let the node drain its socket: this is a malformed-input test,
            // not a flood test.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // A forged record (valid structure, wrong signature) inside a gossip
    // datagram is rejected and not stored.
    let id = Identity::generate();
    let rec = grapevine_crypto::LocationRecord::new(&id, vec!["127.2.9.9:1".parse().unwrap()])
        .sign(&id)
        .unwrap();
    let mut forged = rec.bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let msg = grapevine_membership::wire::Message::Gossip {
        from: id.node_id(),
        updates: vec![grapevine_membership::wire::Update::Record(forged)],
    };
    sock.send_to(&msg.encode().unwrap(), target.local_addr())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = target.stats().await.unwrap();
        if st.records.rejected >= 1 && st.malformed >= 150 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "forged record not rejected: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(target.counters().records.load(Ordering::Relaxed), 3);
    assert!(target
        .members()
        .await
        .unwrap()
        .iter()
        .all(|m| m.id != id.node_id()));
}

/// Datagrams a flood keeps waiting in the target's socket: enough (some
/// tens of milliseconds of the target's work) that the socket is never
/// empty while the target works, even when the flooding thread is not
/// scheduled for a while; few enough for the target's 4 MiB receive buffer
/// that nothing else is dropped.
const FLOOD_BACKLOG: u64 = 3000;
/// The flooded node's socket receive buffer.
const FLOOD_RCVBUF: usize = 4 << 20;
/// Polite flooders, each sending at most 100 pings a second (half the
/// per-source limit): up to 200,000 a second in all, every one decoded and
/// answered, which costs the target more than it costs the flooder to send,
/// so the target's socket is never empty.
const POLITE: usize = 2000;
/// Greedy flooders, sending one datagram in eight and whatever the polite
/// ones may not (far over the per-source limit).
const GREEDY: usize = 4;

#[derive(Debug, Default)]
struct FloodReport {
    polite: u64,
    greedy: u64,
}

/// Flood `target` from [`POLITE`] + [`GREEDY`] addresses on 127.3.x.y until
/// `stop`, keeping about [`FLOOD_BACKLOG`] datagrams in its socket (read off
/// its `datagrams_received` counter), on a thread of its own.
fn flood(
    target: &MembershipHandle,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<FloodReport> {
    use grapevine_membership::wire::Message;
    let to = target.local_addr();
    let counters = target.counters().clone();
    std::thread::spawn(move || {
        let bind = |c: u8, d: usize| {
            std::net::UdpSocket::bind(SocketAddr::from(([127, 3, c, d as u8 + 1], 0)))
                .expect("flood socket")
        };
        let polite: Vec<_> = (0..POLITE)
            .map(|i| bind(10 + (i / 250) as u8, i % 250))
            .collect();
        let greedy: Vec<_> = (0..GREEDY).map(|i| bind(20, i)).collect();
        let ping = |i: usize| {
            Message::Ping {
                seq: i as u32,
                from: NodeId([i as u8; 32]),
                updates: vec![],
            }
            .encode()
            .expect("ping")
        };
        let pings: Vec<Vec<u8>> = (0..POLITE).map(ping).collect();
        let gossip = Message::Gossip {
            from: NodeId([0xee; 32]),
            updates: vec![],
        }
        .encode()
        .expect("gossip");
        let received = || counters.datagrams_received.load(Ordering::Relaxed);
        let mut report = FloodReport::default();
        let (mut sent, mut base) = (0u64, received());
        let mut last_progress = (received(), std::time::Instant::now());
        let start = std::time::Instant::now();
        let mut next_polite = vec![start; POLITE];
        let (mut p, mut g) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let now = std::time::Instant::now();
            let got = received();
            if got != last_progress.0 {
                last_progress = (got, now);
            }
            if sent.saturating_sub(got - base) >= FLOOD_BACKLOG {
                if now - last_progress.1 > Duration::from_millis(100) {
                    // Some were lost on the way: count from here.
                    (sent, base) = (0, got);
                }
                std::thread::yield_now();
                continue;
            }
            // One in eight from a greedy source, the rest from polite ones
            // while they are within their rate.
            if sent % 8 != 0 && next_polite[p] <= now {
                let _ = polite[p].send_to(&pings[p], to);
                next_polite[p] = now + Duration::from_millis(10);
                report.polite += 1;
                p = (p + 1) % POLITE;
            } else {
                let _ = greedy[g].send_to(&gossip, to);
                report.greedy += 1;
                g = (g + 1) % GREEDY;
            }
            sent += 1;
        }
        report
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_flood_from_many_addresses_does_not_starve_timers() {
    use grapevine_crypto::LocationRecord;
    use grapevine_membership::driver::{spawn, NodeConfig};
    let (tx, mut events) = mpsc::unbounded_channel();
    // The node to flood, on a socket with a receive buffer that holds the
    // whole backlog; then three more joining through it.
    let std_socket = std::net::UdpSocket::bind(addr(3, 0)).unwrap();
    socket2::SockRef::from(&std_socket)
        .set_recv_buffer_size(FLOOD_RCVBUF)
        .unwrap();
    std_socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UdpSocket::from_std(std_socket).unwrap();
    let id = Arc::new(Identity::generate());
    let record = LocationRecord::new(&id, vec![socket.local_addr().unwrap()])
        .sign(&id)
        .unwrap();
    let first = spawn(
        socket,
        NodeConfig {
            identity: id,
            record,
            seeds: vec![],
            swim: Config::new_lan(),
            state_sink: Some(tx.clone()),
        },
    )
    .unwrap();
    let mut nodes = vec![first.clone()];
    for i in 1..4 {
        let h = start_local(
            addr(3, i),
            Arc::new(Identity::generate()),
            None,
            vec![first.local_addr()],
            Config::new_lan(),
            Some(tx.clone()),
        )
        .await
        .unwrap();
        nodes.push(h);
    }
    wait_for("4 records", Duration::from_secs(30), || {
        nodes
            .iter()
            .all(|h| h.counters().records.load(Ordering::Relaxed) == 4)
    })
    .await;
    let ids: Vec<NodeId> = nodes.iter().map(|h| h.id()).collect();
    for h in &nodes {
        let others: Vec<NodeId> = ids.iter().copied().filter(|i| *i != h.id()).collect();
        let states = h.states(others).await.unwrap();
        assert!(states.iter().all(|s| *s == Some(MemberState::Alive)));
    }
    while events.try_recv().is_ok() {}
    let target = &nodes[0];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = flood(target, stop.clone());
    // The window starts once the flood is under way (the greedy sources
    // are over the per-source limit) and lasts six of the flooded node's
    // probes, during which it must read at least 100,000 datagrams. A node
    // whose socket starves its timers probes not at all, and the wait ends
    // at its deadline (five times what six probe periods take on a busy
    // machine).
    let start = target.stats().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut under_way = None;
    let (during, ended) = loop {
        let now = target.stats().await.unwrap();
        let t = tokio::time::Instant::now();
        if under_way.is_none() && now.rate_limited - start.rate_limited >= 1_000 {
            under_way = Some((now, t));
        }
        let done = under_way.is_some_and(|(b, _)| {
            now.probes - b.probes >= 6 && now.datagrams_received - b.datagrams_received >= 100_000
        });
        if done || t >= deadline {
            break (now, t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let report = tokio::task::spawn_blocking(move || flooder.join().expect("flooder"))
        .await
        .unwrap();
    let Some((before, started)) = under_way else {
        panic!(
            "the flood never got under way: {report:?}, {} rate-limited",
            during.rate_limited - start.rate_limited
        );
    };
    let window = ended - started;
    let received = during.datagrams_received - before.datagrams_received;
    let limited = during.rate_limited - before.rate_limited;
    // The flood was sustained, within and beyond the per-source limit.
    assert!(
        report.polite >= 50_000 && received >= 100_000 && limited >= 1_000,
        "not a sustained flood: {report:?}, {received} received and {limited} \
         rate-limited in {window:?}"
    );
    // The flooded node's timers kept running: it probed six times while
    // flooded (a starved driver probes not at all).
    let probes = during.probes - before.probes;
    assert!(
        probes >= 6,
        "{probes} probes in {window:?} of flood ({received} datagrams read): timers starved"
    );
    // And nobody was suspected, let alone declared dead, by anyone.
    let mut accusations = Vec::new();
    while let Ok((observer, e)) = events.try_recv() {
        if let Event::StateChanged { id, to, .. } = e {
            if matches!(to, MemberState::Suspect | MemberState::Dead) {
                accusations.push((observer.short(), id.short(), to));
            }
        }
    }
    assert!(accusations.is_empty(), "false accusations: {accusations:?}");
    for h in &nodes {
        let m = h.members().await.unwrap();
        assert!(m.iter().all(|m| m.state == MemberState::Alive), "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_grid_ignores_nodes_it_has_not_admitted() {
    use grapevine_crypto::{Admission, GridId, LocationRecord};
    use grapevine_membership::driver::{spawn, NodeConfig};
    let grid_key = Identity::generate();
    let grid = GridId::of(&grid_key);
    let start = |i: usize, admitted: bool, seeds: Vec<SocketAddr>| {
        let grid_key = &grid_key;
        async move {
            let id = Arc::new(Identity::generate());
            let socket = tokio::net::UdpSocket::bind(addr(10, i)).await.unwrap();
            let mut rec = LocationRecord::new(&id, vec![socket.local_addr().unwrap()]);
            if admitted {
                rec.admission = Some(Box::new(Admission::issue(grid_key, &id.node_id(), 0)));
            }
            let record = rec.sign(&id).unwrap();
            let swim = Config {
                grid: Some(grid),
                ..Config::new_lan()
            };
            let cfg = NodeConfig {
                identity: id,
                record,
                seeds,
                swim,
                state_sink: None,
            };
            spawn(socket, cfg).unwrap()
        }
    };
    let first = start(0, true, vec![]).await;
    let seed = first.local_addr();
    let mut members = vec![first];
    for i in 1..4 {
        members.push(start(i, true, vec![seed]).await);
    }
    // An outsider with a validly signed record but no admission, and one
    // admitted by some other grid key, both seeding to a member.
    let outsider = start(4, false, vec![seed]).await;
    let stranger_key = Identity::generate();
    let stranger = {
        let id = Arc::new(Identity::generate());
        let socket = tokio::net::UdpSocket::bind(addr(10, 5)).await.unwrap();
        let mut rec = LocationRecord::new(&id, vec![socket.local_addr().unwrap()]);
        rec.admission = Some(Box::new(Admission::issue(&stranger_key, &id.node_id(), 0)));
        let cfg = NodeConfig {
            identity: id.clone(),
            record: rec.sign(&id).unwrap(),
            seeds: vec![seed],
            swim: Config::new_lan(),
            state_sink: None,
        };
        spawn(socket, cfg).unwrap()
    };
    wait_for(
        "the four members to see each other",
        Duration::from_secs(30),
        || {
            members
                .iter()
                .all(|h| h.counters().records.load(Ordering::Relaxed) == 4)
        },
    )
    .await;
    // The outsiders keep trying to join (retries with backoff); give the
    // members time to have refused them more than once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = members[0].stats().await.unwrap();
        if st.records.unadmitted >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outsiders' joins never refused: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in &members {
        assert_eq!(h.counters().records.load(Ordering::Relaxed), 4);
        let ids: Vec<NodeId> = h.members().await.unwrap().iter().map(|m| m.id).collect();
        assert!(!ids.contains(&outsider.id()) && !ids.contains(&stranger.id()));
    }
    // The outsiders were never answered: they know only themselves.
    assert_eq!(outsider.counters().records.load(Ordering::Relaxed), 1);
    assert_eq!(stranger.counters().records.load(Ordering::Relaxed), 1);
}

/// Datagrams of another protocol sharing a node's socket (listing queries
/// for its share server) are handed over by their first byte, with their
/// source, and never reach the membership core; a full sink drops them
/// (counted) instead of holding the node up; answers go out from the
/// node's own address; gossip goes on as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_of_another_protocol_are_handed_over_by_their_first_byte() {
    use grapevine_membership::driver::{spawn_with, NodeConfig, Passthrough, RunOptions};

    let (nodes, _events) = grid(4, 2).await;
    let seed = nodes[0].as_ref().unwrap().local_addr();
    let identity = Arc::new(Identity::generate());
    let socket = tokio::net::UdpSocket::bind("127.4.9.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let record = grapevine_crypto::LocationRecord::new(&identity, vec![local])
        .sign(&identity)
        .unwrap();
    // A sink that takes one datagram at a time (a channel of one) and
    // drops what it cannot take, as a share server at its bound does.
    let (tx, mut rx) = mpsc::channel(1);
    let sink = move |d: &[u8], from, read| tx.try_send((d.to_vec(), from, read)).is_ok();
    let node = spawn_with(
        socket,
        NodeConfig {
            identity,
            record,
            seeds: vec![seed],
            swim: Config::new_lan(),
            state_sink: None,
        },
        RunOptions {
            passthrough: Some(Passthrough {
                first_byte: 0xc1,
                sink: Arc::new(sink),
            }),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let other = tokio::net::UdpSocket::bind("127.4.9.2:0").await.unwrap();
    let sent = std::time::Instant::now();
    other.send_to(&[0xc1, 1, 2, 3], local).await.unwrap();
    let (d, from, read) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("handed over")
        .unwrap();
    assert_eq!(
        (d, from),
        (vec![0xc1, 1, 2, 3], other.local_addr().unwrap())
    );
    // Stamped when the driver read it: after it was sent, before now.
    assert!(read >= sent && read <= std::time::Instant::now());
    // The sink holds one: of three more, one waits and two are dropped.
    for i in 0..3u8 {
        other.send_to(&[0xc1, i], local).await.unwrap();
    }
    let c = node.counters().clone();
    wait_for(
        "3 more handed over or dropped",
        Duration::from_secs(10),
        || {
            c.passed_through.load(Ordering::Relaxed) + c.passthrough_dropped.load(Ordering::Relaxed)
                == 4
        },
    )
    .await;
    assert_eq!(c.passed_through.load(Ordering::Relaxed), 2);
    assert_eq!(c.passthrough_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(rx.recv().await.unwrap().0, vec![0xc1, 0]);
    // None of them reached the core (it would count them malformed).
    assert_eq!(node.stats().await.unwrap().malformed, 0);
    // An answer from the node's socket comes from the node's address.
    node.socket().send_to(b"answer", from).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, src) = tokio::time::timeout(Duration::from_secs(10), other.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], src), (&b"answer"[..], local));
    // Gossip is unaffected: the node joins the other two.
    wait_for("3 records", Duration::from_secs(30), || {
        c.records.load(Ordering::Relaxed) == 3
    })
    .await;
}
