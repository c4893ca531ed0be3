//! Hostile datagrams on the gossip port of real nodes (real UDP sockets on
//! 127.20.x.y to 127.23.x.y, one process): forged accusations, requests
//! meant to be amplified or reflected, a record naming someone else's
//! address, and a forged record hiding a genuine one. Each condition is
//! waited for with a deadline; what must not happen is checked after the
//! nodes have shown (by their counters) that they handled the datagrams
//! and went on probing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use grapevine_crypto::{Identity, LocationRecord, NodeId};
use grapevine_membership::driver::{start_local, MembershipHandle};
use grapevine_membership::swim::Stats;
use grapevine_membership::wire::{BucketEntries, Message, Update};
use grapevine_membership::{Config, MemberState};

#[path = "common/wait.rs"]
mod wait;
use wait::wait_for;

fn addr(net: u8, i: usize) -> SocketAddr {
    SocketAddr::from(([127, net, 0, i as u8 + 1], 0))
}

/// `n` nodes on 127.`net`.0.x, all seeded on the first, with every record
/// everywhere.
async fn grid(net: u8, n: usize) -> Vec<MembershipHandle> {
    let mut nodes: Vec<MembershipHandle> = Vec::new();
    for i in 0..n {
        let seeds = nodes
            .first()
            .map(|h| vec![h.local_addr()])
            .unwrap_or_default();
        let h = start_local(
            addr(net, i),
            Arc::new(Identity::generate()),
            Some(format!("n{i}")),
            seeds,
            Config::new_lan(),
            None,
        )
        .await
        .expect("node");
        nodes.push(h);
    }
    wait_for("every record everywhere", 30, || async {
        nodes
            .iter()
            .all(|h| h.counters().records.load(Ordering::Relaxed) as usize == n)
    })
    .await;
    nodes
}

async fn stats(nodes: &[MembershipHandle]) -> Vec<Stats> {
    let mut out = Vec::new();
    for h in nodes {
        out.push(h.stats().await.expect("running"));
    }
    out
}

/// Wait until every node has started `more` probes since `before`.
async fn probes_go_on(nodes: &[MembershipHandle], before: &[Stats], more: u64) {
    wait_for("more probe periods", 60, || async {
        let now = stats(nodes).await;
        now.iter()
            .zip(before)
            .all(|(a, b)| a.probes >= b.probes + more)
    })
    .await;
}

/// Everything waiting in `sock`, without blocking.
fn drain(sock: &std::net::UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn stranger(net: u8) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind(SocketAddr::from(([127, net, 9, 9], 0))).expect("bind");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// A record of a fresh identity naming `at` as its address.
fn record_at(at: SocketAddr, seq: u64) -> (Identity, Vec<u8>) {
    let id = Identity::generate();
    let mut r = LocationRecord::new(&id, vec![at]);
    r.seq = seq;
    let bytes = r.sign(&id).expect("sign").bytes().to_vec();
    (id, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_accusation_at_any_incarnation_leaves_the_victim_alive_everywhere() {
    let nodes = grid(20, 6).await;
    let victim = nodes[3].id();
    let before = stats(&nodes).await;
    let incarnation = |views: &[grapevine_membership::MemberView]| {
        views.iter().find(|m| m.id == victim).map(|m| m.incarnation)
    };
    let held = incarnation(&nodes[0].members().await.unwrap()).expect("victim held");
    // From an address no member knows, unsigned: dead and suspect at the
    // highest incarnation there is, several times in a row, to every node
    // (the victim too).
    let sock = stranger(20);
    let forged = Message::Gossip {
        from: NodeId([0xee; 32]),
        updates: vec![
            Update::Dead {
                id: victim,
                incarnation: u64::MAX,
            },
            Update::Suspect {
                id: victim,
                incarnation: u64::MAX,
            },
        ],
    }
    .encode()
    .unwrap();
    for _ in 0..5 {
        for h in &nodes {
            sock.send_to(&forged, h.local_addr()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three more probe periods everywhere (so every datagram sent before
    // has been read): nobody holds the victim suspect or dead, at any
    // incarnation but the one it signed.
    let sent = stats(&nodes).await;
    probes_go_on(&nodes, &sent, 3).await;
    for (i, h) in nodes.iter().enumerate() {
        if h.id() == victim {
            continue;
        }
        let views = h.members().await.unwrap();
        let v = views.iter().find(|m| m.id == victim).expect("held");
        assert_eq!(v.state, MemberState::Alive, "node {i}");
        assert_eq!(v.incarnation, held, "node {i}");
    }
    let st = nodes[3].stats().await.unwrap();
    assert_eq!(st.refutations, 0, "nothing to refute: {st:?}");
    for (h, b) in nodes.iter().zip(&before) {
        let st = h.stats().await.unwrap();
        assert_eq!(st.declared_dead, 0);
        assert!(
            st.accusations_ignored >= b.accusations_ignored + 10,
            "{st:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_an_unproven_address_are_at_most_three_times_the_request() {
    let nodes = grid(21, 4).await;
    let target = &nodes[1];
    let sock = stranger(21);
    let who = NodeId([0x33; 32]);
    let (_, join_record) = record_at(sock.local_addr().unwrap(), 1);
    let requests = [
        (
            "a 44-byte digest",
            Message::SyncDigest {
                from: who,
                root: 1,
                count: 1,
            },
        ),
        (
            "digests of records and facts",
            Message::SyncDigests {
                from: who,
                root: 1,
                count: 1,
                fact_root: 1,
            },
        ),
        (
            "256 empty buckets",
            Message::SyncHave {
                from: who,
                buckets: (0..=255u8)
                    .map(|bucket| BucketEntries {
                        bucket,
                        entries: vec![],
                    })
                    .collect(),
            },
        ),
        (
            "a want",
            Message::SyncWant {
                from: who,
                prefixes: vec![nodes[0].id().0[..8].try_into().unwrap()],
            },
        ),
        (
            "a ping",
            Message::Ping {
                seq: 5,
                from: who,
                updates: vec![],
            },
        ),
        (
            "a join",
            Message::Join {
                record: join_record,
            },
        ),
    ];
    for (what, req) in requests {
        let bytes = req.encode().unwrap();
        let before = target.stats().await.unwrap().datagrams_received;
        sock.send_to(&bytes, target.local_addr()).unwrap();
        // Counters are updated after the answers are sent.
        wait_for(what, 10, || async {
            target.stats().await.unwrap().datagrams_received > before
        })
        .await;
        let got: usize = drain(&sock).iter().map(Vec::len).sum();
        assert!(
            got <= 3 * bytes.len(),
            "{what}: {got} bytes in answer to {}",
            bytes.len()
        );
    }
    assert!(target.stats().await.unwrap().answers_capped >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_naming_a_victim_and_relay_requests_draw_only_bare_pings_to_it() {
    let nodes = grid(22, 4).await;
    let victim = std::net::UdpSocket::bind(SocketAddr::from(([127, 22, 6, 6], 0))).unwrap();
    victim.set_nonblocking(true).unwrap();
    let v_addr = victim.local_addr().unwrap();
    let sock = stranger(22);
    // A validly signed record naming the victim's address, and requests to
    // probe the victim's address for a member and for nobody.
    let (_, rec) = record_at(v_addr, 1);
    let gossip = Message::Gossip {
        from: NodeId([0x55; 32]),
        updates: vec![Update::Record(rec)],
    }
    .encode()
    .unwrap();
    sock.send_to(&gossip, nodes[0].local_addr()).unwrap();
    for target in [nodes[2].id(), NodeId([0x56; 32])] {
        let req = Message::PingReq {
            seq: 9,
            from: NodeId([0x55; 32]),
            target,
            target_addr: v_addr,
        }
        .encode()
        .unwrap();
        for h in &nodes {
            sock.send_to(&req, h.local_addr()).unwrap();
        }
    }
    wait_for("the record everywhere", 30, || async {
        nodes
            .iter()
            .all(|h| h.counters().records.load(Ordering::Relaxed) == 5)
    })
    .await;
    // A full probe round (five members) and more, everywhere.
    let before = stats(&nodes).await;
    probes_go_on(&nodes, &before, 8).await;
    let got = drain(&victim);
    assert!(!got.is_empty(), "the address is tried");
    for d in &got {
        let m = grapevine_membership::wire::Datagram::decode(d)
            .expect("a datagram")
            .msg;
        // Bare pings (with the accusation of the member, if any) and the
        // accusation told directly: nothing else, nothing large.
        let accusations = |u: &[Update]| {
            u.iter()
                .all(|u| matches!(u, Update::Suspect { .. } | Update::Dead { .. }))
        };
        let small = match &m {
            Message::Ping { updates, .. } => accusations(updates),
            Message::Gossip { updates, .. } => updates.len() == 1 && accusations(updates),
            _ => false,
        };
        assert!(small && d.len() <= 200, "{} bytes: {m:?}", d.len());
    }
    let st = stats(&nodes).await;
    assert!(st.iter().map(|s| s.relays_refused).sum::<u64>() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_record_sent_first_cannot_hide_the_genuine_one() {
    let nodes = grid(23, 3).await;
    let sock = stranger(23);
    let id = Identity::generate();
    let at: SocketAddr = "127.23.5.5:7946".parse().unwrap();
    let mut genuine = LocationRecord::new(&id, vec![at]);
    genuine.seq = 5;
    let genuine = genuine.sign(&id).unwrap();
    // The same node, a higher number, a broken signature; first in the
    // datagram.
    let mut forged = LocationRecord::new(&id, vec![at]);
    forged.seq = 9;
    let mut forged = forged.sign(&id).unwrap().bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let gossip = Message::Gossip {
        from: NodeId([0x77; 32]),
        updates: vec![
            Update::Record(forged),
            Update::Record(genuine.bytes().to_vec()),
        ],
    }
    .encode()
    .unwrap();
    sock.send_to(&gossip, nodes[0].local_addr()).unwrap();
    wait_for("the genuine record on every node", 30, || async {
        nodes
            .iter()
            .all(|h| h.counters().records.load(Ordering::Relaxed) == 4)
    })
    .await;
    for h in &nodes {
        let views = h.members().await.unwrap();
        let m = views.iter().find(|m| m.id == id.node_id()).expect("member");
        assert_eq!(m.record.as_ref().unwrap().seq(), 5);
    }
    assert!(nodes[0].stats().await.unwrap().records.rejected >= 1);
}

/// A member played by the test: a validly signed record naming a socket
/// the test holds, which answers pings only while told to.
struct Puppet {
    id: NodeId,
    sock: std::net::UdpSocket,
}

impl Puppet {
    /// Bind on 127.`net`.6.6 and hand the record to `node` (by gossip, from
    /// a stranger's address).
    fn join(net: u8, node: SocketAddr) -> Puppet {
        let sock = std::net::UdpSocket::bind(SocketAddr::from(([127, net, 6, 6], 0))).unwrap();
        sock.set_nonblocking(true).unwrap();
        let (identity, rec) = record_at(sock.local_addr().unwrap(), 1);
        let gossip = Message::Gossip {
            from: NodeId([0x61; 32]),
            updates: vec![Update::Record(rec)],
        }
        .encode()
        .unwrap();
        stranger(net).send_to(&gossip, node).unwrap();
        Puppet {
            id: identity.node_id(),
            sock,
        }
    }

    /// The pings waiting, as (source, sequence number).
    fn pings(&self) -> Vec<(SocketAddr, u32)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            if let Ok(d) = grapevine_membership::wire::Datagram::decode(&buf[..n]) {
                if let Message::Ping { seq, .. } = d.msg {
                    out.push((from, seq));
                }
            }
        }
        out
    }

    /// An ack of `seq` naming this member, bytes.
    fn ack(&self, seq: u32) -> Vec<u8> {
        Message::Ack {
            seq,
            from: self.id,
            updates: vec![],
        }
        .encode()
        .unwrap()
    }

    /// Answer every waiting ping, from this member's own address; how many
    /// came from `node`.
    fn answer(&self, node: SocketAddr) -> usize {
        let pings = self.pings();
        for (from, seq) in &pings {
            self.sock.send_to(&self.ack(*seq), from).unwrap();
        }
        pings.iter().filter(|(from, _)| *from == node).count()
    }
}

/// Send `ping` (of sequence number `seq`) from `sock` to `to` until
/// `count` acks of it have come back.
async fn pings_answered(
    sock: &std::net::UdpSocket,
    to: SocketAddr,
    ping: &[u8],
    seq: u32,
    count: usize,
) {
    let mut acked = 0;
    wait_for("the pings answered", 20, || {
        sock.send_to(ping, to).unwrap();
        acked += acks_of(sock, seq);
        let done = acked >= count;
        async move { done }
    })
    .await;
}

/// Acks with sequence number `seq` waiting in `sock`.
fn acks_of(sock: &std::net::UdpSocket, seq: u32) -> usize {
    drain(sock)
        .iter()
        .filter_map(|d| grapevine_membership::wire::Datagram::decode(d).ok())
        .filter(|d| matches!(d.msg, Message::Ack { seq: s, .. } if s == seq))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ack_is_not_relayed_for_a_silent_member() {
    let nodes = grid(24, 2).await;
    let relay = &nodes[0];
    let r_addr = relay.local_addr();
    let puppet = Puppet::join(24, r_addr);
    // The member answers until the relay has pinged it and had its ack
    // (its address is then validated, so relayed probes go to it).
    wait_for("a ping from the relay answered", 30, || async {
        puppet.answer(r_addr) > 0
    })
    .await;
    // Now it is silent. A requester asks the relay to probe it; a forger
    // that knows the relayed ping's sequence number (it saw the ping on
    // the way, or predicted it) acks every ping the relay sends it, naming
    // the member, from its own address.
    let requester = stranger(24);
    let forger = std::net::UdpSocket::bind(SocketAddr::from(([127, 24, 9, 10], 0))).unwrap();
    let req = |seq| {
        Message::PingReq {
            seq,
            from: NodeId([0x62; 32]),
            target: puppet.id,
            target_addr: puppet.sock.local_addr().unwrap(),
        }
        .encode()
        .unwrap()
    };
    let refused = relay.stats().await.unwrap().acks_refused;
    requester.send_to(&req(77), r_addr).unwrap();
    let mut relayed = 0;
    wait_for("the forged acks handled", 20, || {
        for (from, seq) in puppet.pings() {
            if from == r_addr {
                forger.send_to(&puppet.ack(seq), r_addr).unwrap();
            }
        }
        relayed += acks_of(&requester, 77);
        let done = relayed > 0;
        async move { done || relay.stats().await.unwrap().acks_refused > refused }
    })
    .await;
    relayed += acks_of(&requester, 77);
    assert_eq!(relayed, 0, "a forged ack was relayed to the requester");
    // The genuine ack, from the member's address, is relayed.
    wait_for("a genuine ack relayed", 20, || {
        requester.send_to(&req(78), r_addr).unwrap();
        puppet.answer(r_addr);
        let got = acks_of(&requester, 78) > 0;
        async move { got }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_not_heard_from_through_datagrams_from_other_addresses() {
    let nodes = grid(25, 2).await;
    let node = &nodes[0];
    let n_addr = node.local_addr();
    let puppet = Puppet::join(25, n_addr);
    wait_for("a ping answered", 30, || async {
        puppet.answer(n_addr) > 0
    })
    .await;
    // The member falls silent; what the node last heard from it stays.
    let last_heard = || async {
        node.members()
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.id == puppet.id)
            .expect("member")
            .last_heard
    };
    // Pings naming it, from another address, each answered (so handled:
    // the node reads its socket in order, so the member's own last ack was
    // handled before the first is answered).
    let forger = stranger(25);
    let ping = |seq| {
        Message::Ping {
            seq,
            from: puppet.id,
            updates: vec![],
        }
        .encode()
        .unwrap()
    };
    pings_answered(&forger, n_addr, &ping(5), 5, 1).await;
    let before = last_heard().await;
    pings_answered(&forger, n_addr, &ping(6), 6, 3).await;
    assert_eq!(last_heard().await, before);
}
