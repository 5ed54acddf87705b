//! Fragments: a non-first fragment carries no ports, so it takes those of
//! its datagram's first fragment, remembered for a while by
//! (addresses, protocol, IP id, tunnel).

use std::net::IpAddr;

use super::FlowTable;
use crate::decode::{Fragment, PacketRepr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
    tunnel: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FragmentEntry {
    src_port: u16,
    dst_port: u16,
    icmp_type: u8,
    icmp_code: u8,
    pub(super) clock: u64,
}

impl FragmentKey {
    /// The key of fragment `id` of packet `p`'s datagram.
    fn of(p: &PacketRepr, id: u32) -> FragmentKey {
        FragmentKey {
            src: p.src,
            dst: p.dst,
            protocol: p.protocol,
            id,
            tunnel: p.tunnel_fingerprint(),
        }
    }
}

impl FlowTable {
    /// Gives a non-first fragment the ports of its datagram, and remembers
    /// the ports of a first fragment.
    pub(super) fn resolve_fragment(&mut self, p: &mut PacketRepr, clock_ns: u64) {
        match p.fragment {
            Fragment::Whole => {}
            Fragment::First { id } => {
                let key = FragmentKey::of(p, id);
                self.fragments.insert(
                    key,
                    FragmentEntry {
                        src_port: p.src_port,
                        dst_port: p.dst_port,
                        icmp_type: p.icmp_type,
                        icmp_code: p.icmp_code,
                        clock: clock_ns,
                    },
                );
            }
            Fragment::Later { id } => {
                let key = FragmentKey::of(p, id);
                let window = self.config.timeouts.fragment_ns;
                match self.fragments.get(&key) {
                    Some(e) if e.clock.saturating_add(window) > clock_ns => {
                        p.src_port = e.src_port;
                        p.dst_port = e.dst_port;
                        p.icmp_type = e.icmp_type;
                        p.icmp_code = e.icmp_code;
                    }
                    _ => self.stats.fragments_without_first += 1,
                }
            }
        }
    }
}
