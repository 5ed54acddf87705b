//! The canonical biflow key shared by both directions of a flow.

use std::hash::{Hash, Hasher};
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
/// without ports have both ports 0. A tunnelled packet's key is its inner
/// packet's, with the fingerprint of its tunnels in `scope`, so the same
/// inner flow in two tunnels is two flows; live capture that keeps flows
/// apart per interface mixes the interface into `scope` too
/// ([`FlowKey::scoped_to_interface`]).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    /// What else keeps flows of the same addresses, ports and protocol
    /// apart: the [`Encap::fingerprint`](crate::decode::Encap::fingerprint)
    /// of the packets' tunnels, with the interface mixed in when flows are
    /// kept apart per interface
    /// ([`InterfaceFlows::Separate`](crate::flow::config::InterfaceFlows),
    /// live capture); 0 for neither (so always 0 for a capture file's flow
    /// outside tunnels). A fingerprint rather than the fields, so that the
    /// key, which every flow slot holds, stays 48 bytes.
    pub scope: u64,
}

impl Hash for FlowKey {
    /// Three wide writes instead of one per field: the table hashes every
    /// packet's key. Equal keys hash equally; an IPv4 address and the IPv6
    /// address with the same low bits may collide, which equality sorts out.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        fn bits(a: IpAddr) -> u128 {
            match a {
                IpAddr::V4(v4) => u128::from(u32::from(v4)),
                IpAddr::V6(v6) => u128::from(v6),
            }
        }
        let small = u64::from(self.protocol)
            | u64::from(self.one_way) << 8
            | u64::from(self.a_port) << 16
            | u64::from(self.b_port) << 32;
        state.write_u128(bits(self.a));
        state.write_u128(bits(self.b));
        state.write_u64(small ^ self.scope.rotate_left(17));
    }
}

/// An address as two integers that order as [`IpAddr`] does (every IPv4
/// address before every IPv6 address, each family numerically), but
/// compare in two instructions instead of per byte.
#[inline]
fn rank(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

impl FlowKey {
    /// The key of a packet, and whether the packet was sent by endpoint `a`.
    /// Inlined: the flow table works it out twice for every packet.
    #[inline(always)]
    pub fn from_packet(p: &PacketRepr) -> (FlowKey, bool) {
        let (sport, dport, one_way) = match p.protocol {
            // An ICMP header cut short has no type: no port equivalents.
            1 | 58 if p.extra.is_some() && p.stopped().is_some() => (0, 0, false),
            1 | 58 => icmp_port_equivalents(p.protocol, p.icmp_type, p.icmp_code),
            6 | 17 | 132 => (p.src_port, p.dst_port, false),
            _ => (0, 0, false),
        };
        let from_a = one_way || (rank(p.src), sport) < (rank(p.dst), dport);
        let key = if from_a {
            FlowKey {
                protocol: p.protocol,
                one_way,
                a: p.src,
                a_port: sport,
                b: p.dst,
                b_port: dport,
                scope: p.tunnel_fingerprint(),
            }
        } else {
            FlowKey {
                protocol: p.protocol,
                one_way,
                a: p.dst,
                a_port: dport,
                b: p.src,
                b_port: sport,
                scope: p.tunnel_fingerprint(),
            }
        };
        (key, from_a)
    }

    /// `scope` (a tunnel fingerprint, or 0) with interface `ifindex` mixed
    /// in: what a flow captured on that interface has in its key when flows
    /// are kept apart per interface. `ifindex` 0 (unknown) leaves it as it
    /// is. SplitMix64's finaliser over both; never 0.
    pub fn scoped_to_interface(scope: u64, ifindex: u32) -> u64 {
        if ifindex == 0 {
            return scope;
        }
        crate::decode::splitmix_finish(scope ^ (u64::from(ifindex) << 32 | 0x6966_6163)).max(1)
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
    #[inline]
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
        // Keys outside tunnels and interfaces keep the trace ids they
        // always had.
        if self.scope != 0 {
            out.extend_from_slice(&self.scope.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn rank_orders_addresses_as_ip_addr_does() {
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "0.0.0.1",
            "1.0.0.0",
            "10.0.0.255",
            "10.0.1.0",
            "127.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "fe80::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]
        .iter()
        .map(|a| a.parse().expect("test address"))
        .chain([
            IpAddr::V4(Ipv4Addr::from(0x8000_0000)),
            IpAddr::V6(Ipv6Addr::from(1u128 << 127)),
            IpAddr::V6(Ipv6Addr::from(u128::from(u32::MAX))),
        ])
        .collect();
        for x in &addrs {
            for y in &addrs {
                assert_eq!(rank(*x).cmp(&rank(*y)), x.cmp(y), "{x} against {y}");
            }
        }
    }
}
