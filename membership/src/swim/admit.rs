//! What is read at all: every datagram is first counted against its source
//! address (a token bucket per address, [`crate::ratelimit`]); datagrams
//! over the rate are dropped before they are parsed or any signature is
//! checked. Then it is decoded (malformed and unknown kinds are counted and
//! dropped). A node that has left reads nothing. A closed grid reads only
//! joins and datagrams from the addresses of admitted members and of its
//! seeds, so outsiders get no answers at all; records themselves are
//! admitted by the record store (a certificate from the grid key).

use std::net::SocketAddr;
use std::time::Instant;

use super::Swim;
use crate::error::WireError;
use crate::wire::{Datagram, Message};

impl Swim {
    /// Count, rate-limit, decode and filter one datagram; the message if
    /// it is to be handled.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Datagram> {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if !self.limiter.allow(now, from) {
            self.stats.rate_limited += 1;
            return None;
        }
        let dg = match Datagram::decode(bytes) {
            Ok(d) => d,
            Err(WireError::UnknownKind(k)) => {
                self.stats.unknown_kinds += 1;
                tracing::debug!(%from, kind = k, "dropping a message kind this version does not know");
                return None;
            }
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(%from, "dropping datagram: {e}");
                return None;
            }
        };
        if self.left {
            return None;
        }
        // A closed grid talks only to its members: anything but a join
        // (whose record is checked) from an address that is not an admitted
        // member's or a seed's is dropped unanswered, so outsiders learn
        // nothing (answers go to members' addresses only).
        if self.cfg.grid.is_some()
            && !matches!(dg.msg, Message::Join { .. } | Message::JoinAck { .. })
            && !self.members.is_member_addr(&from)
            && !self.seeds.contains(&from)
        {
            self.stats.from_outsiders += 1;
            return None;
        }
        Some(dg)
    }
}

#[cfg(test)]
mod tests {
    use crate::swim::testing::{closed_node_alone, node_alone};
    use crate::wire::{Message, WIRE_VERSION};
    use grapevine_crypto::NodeId;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn gossip() -> Vec<u8> {
        Message::Gossip {
            from: NodeId([3; 32]),
            updates: vec![],
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn a_source_over_its_rate_is_dropped_unread_and_others_are_not() {
        let (mut node, now) = node_alone(6);
        let flooder: SocketAddr = "10.1.1.1:1".parse().unwrap();
        for _ in 0..1000 {
            node.handle_datagram(now, flooder, &gossip());
        }
        let st = node.stats();
        // The burst (400) passes, the rest is dropped before decoding.
        assert_eq!(st.rate_limited, 600);
        node.handle_datagram(now, "10.1.1.2:1".parse().unwrap(), &gossip());
        assert_eq!(node.stats().rate_limited, 600);
        // Tokens come back with time (200 a second).
        let later = now + Duration::from_secs(1);
        node.handle_datagram(later, flooder, &gossip());
        assert_eq!(node.stats().rate_limited, 600);
    }

    #[test]
    fn unknown_kinds_and_garbage_are_counted_apart() {
        let (mut node, now) = node_alone(7);
        let from: SocketAddr = "10.1.1.3:1".parse().unwrap();
        let mut newer = vec![WIRE_VERSION, 40];
        newer.extend_from_slice(&[0; 40]);
        node.handle_datagram(now, from, &newer);
        node.handle_datagram(now, from, b"\x01\xff\xff");
        node.handle_datagram(now, from, &[9, 0, 0]);
        let st = node.stats();
        assert_eq!((st.unknown_kinds, st.malformed), (1, 2));
        while node.poll_transmit().is_some() {}
        assert!(node.poll_transmit().is_none(), "no answer to either");
    }

    #[test]
    fn a_closed_grid_reads_only_members_seeds_and_joins() {
        let (mut node, now) = closed_node_alone(8);
        let stranger: SocketAddr = "10.1.1.4:1".parse().unwrap();
        let ping = Message::Ping {
            seq: 1,
            from: NodeId([4; 32]),
            updates: vec![],
        };
        while node.poll_transmit().is_some() {}
        node.handle_datagram(now, stranger, &ping.encode().unwrap());
        assert_eq!(node.stats().from_outsiders, 1);
        assert!(node.poll_transmit().is_none(), "no ack to an outsider");
    }
}
