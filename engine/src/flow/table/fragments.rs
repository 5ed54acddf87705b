//! Fragments: a non-first fragment carries no ports, so it takes those of
//! its datagram's first fragment, remembered for a while (30 s for IPv4,
//! 60 s for IPv6 by default) by (addresses, protocol, IP id, tunnel), and
//! for at most [`FlowConfig::max_fragments`](crate::FlowConfig) datagrams at
//! once.

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
    fn fragment_window(&self, ipv6: bool) -> u64 {
        let t = &self.config.timeouts;
        if ipv6 {
            t.fragment_v6_ns
        } else {
            t.fragment_ns
        }
    }

    /// Forgets the datagrams whose window has passed at `clock_ns`.
    pub(super) fn purge_fragments(&mut self, clock_ns: u64) {
        let keep_after = [false, true].map(|v6| clock_ns.saturating_sub(self.fragment_window(v6)));
        self.fragments
            .retain(|k, e| e.clock > keep_after[usize::from(k.src.is_ipv6())]);
        self.last_fragment_purge = clock_ns;
    }

    /// Gives a non-first fragment the ports of its datagram, and remembers
    /// the ports of a first fragment.
    pub(super) fn resolve_fragment(&mut self, p: &mut PacketRepr, clock_ns: u64) {
        match p.fragment {
            Fragment::Whole => {}
            Fragment::First { id } => {
                let key = FragmentKey::of(p, id);
                let max = self.config.max_fragments;
                if max > 0 && self.fragments.len() >= max && !self.fragments.contains_key(&key) {
                    // Full: forget what has expired, at most once a second
                    // of capture time (each purge visits every entry).
                    if clock_ns.saturating_sub(self.last_fragment_purge) >= 1_000_000_000 {
                        self.purge_fragments(clock_ns);
                    }
                    if self.fragments.len() >= max {
                        self.stats.fragments_untracked += 1;
                        return;
                    }
                }
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
                let window = self.fragment_window(p.src.is_ipv6());
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
