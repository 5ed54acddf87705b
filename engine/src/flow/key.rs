//! The canonical biflow key shared by both directions of a flow.

use std::net::IpAddr;

use crate::community_id::{CommunityId, icmp_port_equivalents};
use crate::decode::PacketRepr;

/// A biflow key: the Community ID tuple after its ordering rules.
///
/// Endpoint `a` is the lower `(address, port)` pair, so both directions of a
/// conversation give the same key. For ICMP the "ports" are the Community ID
/// port equivalents (type and counterpart type), so an echo request and its
/// reply share one key; one-way ICMP types keep the sender as `a` and are
/// never reordered (`one_way`), exactly as their Community ID is. Protocols
/// without ports have both ports 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// IP protocol number.
    pub protocol: u8,
    /// One-way ICMP message: endpoints not reordered.
    pub one_way: bool,
    /// Lower endpoint address.
    pub a: IpAddr,
    /// Lower endpoint port (or ICMP port equivalent).
    pub a_port: u16,
    /// Higher endpoint address.
    pub b: IpAddr,
    /// Higher endpoint port (or ICMP port equivalent).
    pub b_port: u16,
}

impl FlowKey {
    /// The key of a packet, and whether the packet was sent by endpoint `a`.
    pub fn from_packet(p: &PacketRepr) -> (FlowKey, bool) {
        let (sport, dport, one_way) = match p.protocol {
            1 | 58 => icmp_port_equivalents(p.protocol, p.icmp_type, p.icmp_code),
            6 | 17 | 132 => (p.src_port, p.dst_port, false),
            _ => (0, 0, false),
        };
        let from_a = one_way || (p.src, sport) < (p.dst, dport);
        let key = if from_a {
            FlowKey {
                protocol: p.protocol,
                one_way,
                a: p.src,
                a_port: sport,
                b: p.dst,
                b_port: dport,
            }
        } else {
            FlowKey {
                protocol: p.protocol,
                one_way,
                a: p.dst,
                a_port: dport,
                b: p.src,
                b_port: sport,
            }
        };
        (key, from_a)
    }

    /// Whether the protocol has real ports (TCP, UDP, SCTP).
    pub fn has_ports(&self) -> bool {
        matches!(self.protocol, 6 | 17 | 132)
    }

    /// The flow's Community ID v1.
    pub fn community_id(&self, seed: u16) -> CommunityId {
        CommunityId::from_ordered(
            seed,
            self.protocol,
            self.a,
            self.a_port,
            self.b,
            self.b_port,
        )
    }

    /// A stable byte encoding used to derive trace ids.
    pub(crate) fn write_bytes(&self, out: &mut Vec<u8>) {
        out.push(self.protocol);
        out.push(u8::from(self.one_way));
        for (addr, port) in [(self.a, self.a_port), (self.b, self.b_port)] {
            match addr {
                IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
                IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
            }
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
}
