//! The gossip target's core: a SWIM node with members, fed datagrams as
//! they arrive from members and from strangers, so that accusations,
//! refutations, signed facts and anti-entropy are all reachable.
//!
//! The node and its three members have fixed identities ([`identity`]:
//! seeds 1 to 4), records at `10.0.0.1` to `10.0.0.4` port 7946 with
//! sequence number [`SEQ`]; member 3 starts suspect and member 4 departed
//! (its signed leave applied), so every state is there to move.
//!
//! The input is fed twice: whole, as one datagram from member 2 (so any
//! datagram, such as the older corpus's, is a member's); then as chunks,
//! each `ctrl:u8 len:u16-le bytes`, where `ctrl & 3` picks the source
//! (members 2, 3, 4 or a stranger) and `ctrl & 4` puts a header echoing
//! the cookie the node issued to that source (learned from its answers),
//! so inputs can reach answers a cookie unlocks (bucket hashes, records).
//! After each datagram the timers due within a second run.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use grapevine_crypto::{Identity, LocationRecord, NodeId, SignedRecord};
use grapevine_membership::wire::{liveness_message, Cookie, Datagram, Message, Update};
use grapevine_membership::{Config, Swim};
use rand::SeedableRng;

/// Every record's sequence number (and so every incarnation at start).
pub const SEQ: u64 = 5;

/// The fixed identity `i` (1: the node; 2 to 4: its members).
pub fn identity(i: u8) -> Identity {
    Identity::from_seed([i; 32])
}

/// The address of identity `i`.
pub fn address(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7946))
}

/// A stranger's address.
pub const STRANGER: ([u8; 4], u16) = ([10, 9, 9, 9], 9);

struct Fixture {
    ids: Vec<Arc<Identity>>,
    records: Vec<SignedRecord>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ids: Vec<Arc<Identity>> = (1..=4).map(|i| Arc::new(identity(i))).collect();
        let records = ids
            .iter()
            .zip(1u8..)
            .map(|(id, i)| {
                let mut r = LocationRecord::new(id, vec![address(i)]);
                r.seq = SEQ;
                r.issued_at = 1_700_000_000;
                r.sign(id).expect("sign")
            })
            .collect();
        Fixture { ids, records }
    })
}

fn source(ctrl: u8) -> SocketAddr {
    match ctrl & 3 {
        0 => address(2),
        1 => address(3),
        2 => address(4),
        _ => SocketAddr::from(STRANGER),
    }
}

/// The node with its members, before any input.
pub fn node() -> (Swim, Instant) {
    let f = fixture();
    let now = Instant::now();
    let mut n = Swim::new(
        f.ids[0].clone(),
        f.records[0].clone(),
        vec![],
        Config::new_lan(),
        rand::rngs::SmallRng::seed_from_u64(1),
        now,
    );
    n.set_wall_clock(now, 1_700_000_000_000);
    for r in &f.records[1..] {
        n.add_verified_record(r.clone(), now);
    }
    // Member 3 suspect (an accusation at its incarnation), member 4 gone
    // (its own signed leave).
    let left = Update::Left {
        id: f.ids[3].node_id(),
        incarnation: SEQ,
        sig: f.ids[3].sign(&liveness_message("left", &f.ids[3].node_id(), SEQ)),
    };
    let setup = Message::Gossip {
        from: f.ids[1].node_id(),
        updates: vec![
            Update::Suspect {
                id: f.ids[2].node_id(),
                incarnation: SEQ,
            },
            left,
        ],
    };
    n.handle_datagram(now, address(2), &setup.encode().expect("fits"));
    while n.poll_transmit().is_some() {}
    (n, now)
}

/// Feed `data` to the node (see the module docs) and return it.
pub fn gossip_core(data: &[u8]) -> Swim {
    let (mut n, mut now) = node();
    let mut cookies: Vec<(SocketAddr, Cookie)> = Vec::new();
    feed(&mut n, &mut now, address(2), data, &mut cookies);
    let mut rest = data;
    while let [ctrl, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (chunk, after) = tail.split_at(len);
        let from = source(*ctrl);
        let echo = cookies.iter().find(|(a, _)| *a == from).map(|(_, c)| *c);
        let bytes = if ctrl & 4 != 0 {
            match Datagram::decode(chunk) {
                Ok(d) => Datagram::encode(Some((echo, 1_700_000_100)), &d.msg).unwrap_or_default(),
                Err(_) => chunk.to_vec(),
            }
        } else {
            chunk.to_vec()
        };
        feed(&mut n, &mut now, from, &bytes, &mut cookies);
        rest = after;
    }
    n
}

/// One datagram from `from`, then the timers due; the cookies the node
/// issued are kept by address.
fn feed(
    n: &mut Swim,
    now: &mut Instant,
    from: SocketAddr,
    bytes: &[u8],
    cookies: &mut Vec<(SocketAddr, Cookie)>,
) {
    n.handle_datagram(*now, from, bytes);
    *now += Duration::from_millis(300);
    n.handle_timeout(*now);
    while let Some((to, out)) = n.poll_transmit() {
        if let Ok(Datagram {
            msg: Message::Cookie { cookie },
            ..
        }) = Datagram::decode(&out)
        {
            cookies.retain(|(a, _)| *a != to);
            cookies.push((to, cookie));
        }
    }
}

/// A chunk of the chunked input format: `msg` from source `ctrl`.
pub fn chunk(ctrl: u8, msg: &Message) -> Vec<u8> {
    let bytes = msg.encode().expect("fits");
    let mut out = vec![ctrl];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// The node's id (identity 1).
pub fn me() -> NodeId {
    fixture().ids[0].node_id()
}

/// Member `i`'s id (2 to 4).
pub fn member(i: u8) -> NodeId {
    fixture().ids[usize::from(i) - 1].node_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine_membership::MemberState;

    #[test]
    fn members_are_there_in_every_state() {
        let (n, _) = node();
        assert_eq!(n.state_of(&member(2)), Some(MemberState::Alive));
        assert_eq!(n.state_of(&member(3)), Some(MemberState::Suspect));
        assert_eq!(n.state_of(&member(4)), Some(MemberState::Left));
    }

    #[test]
    fn inputs_reach_accusations_refutations_and_anti_entropy() {
        // An accusation of the node itself, from a member: refuted.
        let accuse_me = Message::Gossip {
            from: member(2),
            updates: vec![Update::Suspect {
                id: me(),
                incarnation: SEQ,
            }],
        };
        let n = gossip_core(&chunk(0, &accuse_me));
        assert_eq!(n.stats().refutations, 1);
        // A member declared dead at its incarnation, from a stranger.
        let dead = Message::Gossip {
            from: NodeId([9; 32]),
            updates: vec![Update::Dead {
                id: member(2),
                incarnation: SEQ,
            }],
        };
        let n = gossip_core(&chunk(3, &dead));
        assert_eq!(
            n.state_of(&member(2)),
            Some(grapevine_membership::MemberState::Dead)
        );
        // A sync round from member 2, then again echoing the cookie it was
        // given: the second gets the bucket hashes.
        let digests = Message::SyncDigests {
            from: member(2),
            root: 1,
            count: 9,
            fact_root: 1,
        };
        let once = gossip_core(&chunk(0, &digests)).stats();
        let mut twice_in = chunk(0, &digests);
        twice_in.extend(chunk(4, &digests));
        let twice = gossip_core(&twice_in).stats();
        assert!(once.answers_capped >= 1, "{once:?}");
        assert!(
            twice.bytes_sent > once.bytes_sent + 256,
            "{} then {}",
            once.bytes_sent,
            twice.bytes_sent
        );
    }
}
