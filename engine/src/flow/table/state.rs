//! What the table keeps per open flow.

use crate::decode::{IpIpHeader, Ipsec, PacketExtra, TunnelHeader};
use crate::flow::key::FlowKey;
use crate::flow::observation::ObservedEncap;
use crate::flow::record::{
    DirectionRecord, EncapRecord, FirstPacket, FlowRole, OverheadBytes, TcpState,
};
use crate::flow::tcp::{FIN, RST, SYN, TcpTiming};

/// One direction's counters, and its first packet in the record (which is
/// there if and only if `packets_delta > 0`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Direction {
    pub(super) packets_delta: u64,
    pub(super) bytes_delta: u64,
    pub(super) packets_total: u64,
    pub(super) bytes_total: u64,
    pub(super) first: FirstPacket,
}

impl Direction {
    pub(super) fn record(&self, tcp_flags: u16) -> DirectionRecord {
        DirectionRecord {
            packets_delta: self.packets_delta,
            bytes_delta: self.bytes_delta,
            packets_total: self.packets_total,
            bytes_total: self.bytes_total,
            tcp_flags,
            first: (self.packets_delta > 0).then_some(self.first),
        }
    }

    pub(super) fn reset_record(&mut self) {
        self.packets_delta = 0;
        self.bytes_delta = 0;
    }
}

/// One open flow: 248 bytes (checked by a test). Identifiers derived from
/// the key (Community ID, trace id) are computed when a record is made, not
/// stored.
#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub(super) key: FlowKey,
    pub(super) flow_start_ns: u64,
    pub(super) record_start_ns: u64,
    pub(super) record_end_ns: u64,
    pub(super) record_start_clock: u64,
    pub(super) last_clock: u64,
    pub(super) fwd: Direction,
    pub(super) rev: Direction,
    /// TCP flags seen over the flow's life: forward, reverse.
    pub(super) tcp_flags: [u16; 2],
    /// TCP latency state, and the clock at which a TCP flow began closing.
    pub(super) tcp: TcpTiming,
    pub(super) record_seq: u32,
    /// Idle class (`CLASS_*`).
    pub(super) class: u8,
    pub(super) role: FlowRole,
    /// Whether endpoint `a` of the key is the initiator.
    pub(super) initiator_is_a: bool,
    pub(super) in_active: bool,
    /// Interface of the flow's first packet (0: unknown).
    pub(super) ifindex: u32,
    /// The initiator's Ethernet address, from the flow's first packet
    /// (live capture; zero when unknown).
    pub(super) mac: [u8; 6],
    /// Whether the table holds a [`FlowExtra`] for this flow.
    pub(super) extra: bool,
}

/// What a flow with tunnels, IPsec or WireGuard keeps beyond [`Flow`], in
/// a map beside the slots, so that other flows do not pay for it. Arrays
/// are indexed by key side: 0 for endpoint `a`, 1 for `b`.
#[derive(Debug, Clone, Default)]
pub(super) struct FlowExtra {
    /// Outer headers from each side's first tunnelled packet.
    pub(super) tunnel: [Option<TunnelHeader>; 2],
    pub(super) ipip: [Option<IpIpHeader>; 2],
    /// Overhead bytes counted under `tunnel.*` and `ipip.*`, by side.
    pub(super) tunnel_bytes: [Overhead; 2],
    pub(super) ipip_bytes: [Overhead; 2],
    /// The first non-zero identifiers of each side's packets.
    pub(super) ipsec: [Ipsec; 2],
    pub(super) tunnel_ah_spi: [u32; 2],
}

impl FlowExtra {
    pub(super) fn note(&mut self, p: &PacketExtra, side: usize) {
        let e = &p.encap;
        if e.is_tunnelled() {
            self.tunnel_bytes[side].add(e.tunnel_bytes);
            self.ipip_bytes[side].add(e.ipip_bytes);
            if self.tunnel[side].is_none() {
                self.tunnel[side] = e.tunnel;
            }
            if self.ipip[side].is_none() {
                self.ipip[side] = e.ipip;
            }
            first_nonzero(&mut self.tunnel_ah_spi[side], e.outer_ah_spi);
        }
        let mine = &mut self.ipsec[side];
        first_nonzero(&mut mine.ah_spi, p.ipsec.ah_spi);
        first_nonzero(&mut mine.esp_spi, p.ipsec.esp_spi);
        first_nonzero(&mut mine.wg_sender, p.ipsec.wg_sender);
        first_nonzero(&mut mine.wg_receiver, p.ipsec.wg_receiver);
    }

    /// Takes in what a flow observation says of the flow's tunnels.
    pub(super) fn merge(&mut self, o: &ObservedEncap) {
        for side in 0..2 {
            self.tunnel_bytes[side].add_u64(o.tunnel_bytes[side]);
            self.ipip_bytes[side].add_u64(o.ipip_bytes[side]);
            if self.tunnel[side].is_none() {
                self.tunnel[side] = o.tunnel[side];
            }
            if self.ipip[side].is_none() {
                self.ipip[side] = o.ipip[side];
            }
            first_nonzero(&mut self.tunnel_ah_spi[side], o.tunnel_ah_spi[side]);
            let (mine, seen) = (&mut self.ipsec[side], &o.ipsec[side]);
            first_nonzero(&mut mine.ah_spi, seen.ah_spi);
            first_nonzero(&mut mine.esp_spi, seen.esp_spi);
            first_nonzero(&mut mine.wg_sender, seen.wg_sender);
            first_nonzero(&mut mine.wg_receiver, seen.wg_receiver);
        }
    }

    pub(super) fn reset_record(&mut self) {
        for b in self.tunnel_bytes.iter_mut().chain(&mut self.ipip_bytes) {
            b.delta = 0;
        }
    }

    /// The record's view, `init` being the initiator's side.
    pub(super) fn record(&self, init: usize) -> EncapRecord {
        let resp = 1 - init;
        let nonzero = |v: u32| (v != 0).then_some(v);
        let overhead = |b: &[Overhead; 2]| OverheadBytes {
            delta: b[init].delta,
            total: b[init].total,
            reverse_delta: b[resp].delta,
            reverse_total: b[resp].total,
        };
        let (i, r) = (&self.ipsec[init], &self.ipsec[resp]);
        EncapRecord {
            tunnel: self.tunnel[init].or(self.tunnel[resp].map(|t| t.reversed())),
            tunnel_bytes: overhead(&self.tunnel_bytes),
            ipip: self.ipip[init].or(self.ipip[resp].map(|t| t.reversed())),
            ipip_bytes: overhead(&self.ipip_bytes),
            tunnel_ah_spi: nonzero(self.tunnel_ah_spi[init]),
            ah_spi: nonzero(i.ah_spi),
            esp_spi: nonzero(i.esp_spi),
            // Each side names its own index as sender and the other's as
            // receiver.
            wg_sender_index: nonzero(i.wg_sender).or(nonzero(r.wg_receiver)),
            wg_receiver_index: nonzero(r.wg_sender).or(nonzero(i.wg_receiver)),
        }
    }
}

/// Overhead bytes of one side: this record's and since the flow started.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Overhead {
    pub(super) delta: u64,
    pub(super) total: u64,
}

impl Overhead {
    pub(super) fn add(&mut self, bytes: u32) {
        self.add_u64(u64::from(bytes));
    }

    pub(super) fn add_u64(&mut self, bytes: u64) {
        self.delta += bytes;
        self.total += bytes;
    }
}

pub(super) fn first_nonzero(slot: &mut u32, v: u32) {
    if *slot == 0 {
        *slot = v;
    }
}

impl Flow {
    pub(super) fn class(&self) -> usize {
        usize::from(self.class)
    }

    pub(super) fn record_has_packets(&self) -> bool {
        self.fwd.packets_delta + self.rev.packets_delta > 0
    }

    /// Whether the flow has got going, which gives it its protocol's idle
    /// timeout instead of the shorter one of new flows: a TCP flow once its
    /// handshake has completed (or, seen from the middle with no SYN from
    /// either side, once both sides have sent), any other flow once it has
    /// a second packet. Decided from what packets and flow observations
    /// both carry, so that both take the same path.
    #[inline]
    pub(super) fn got_going(&self) -> bool {
        if self.key.protocol == 6 {
            let [f, r] = self.tcp_flags;
            self.tcp.established()
                || ((f | r) & SYN == 0 && self.fwd.packets_total > 0 && self.rev.packets_total > 0)
        } else {
            self.fwd.packets_total + self.rev.packets_total >= 2
        }
    }

    /// Whether this TCP flow has just closed (FIN from both sides, or an
    /// RST) and is not yet on the closing list.
    #[inline]
    pub(super) fn closes_now(&self, closing_class: u8) -> bool {
        let [f, r] = self.tcp_flags;
        self.key.protocol == 6
            && self.class != closing_class
            && ((f | r) & RST != 0 || (f & FIN != 0 && r & FIN != 0))
    }

    pub(super) fn tcp_state(&self) -> Option<TcpState> {
        if self.key.protocol != 6 {
            return None;
        }
        let [f, r] = self.tcp_flags;
        let fin_f = f & FIN != 0;
        let fin_r = r & FIN != 0;
        Some(if (f | r) & RST != 0 {
            TcpState::Closed
        } else if fin_f && fin_r {
            TcpState::TimeWait
        } else if fin_f {
            TcpState::FinWait1
        } else if fin_r {
            TcpState::CloseWait
        } else if r & SYN != 0 && !self.tcp.established() {
            TcpState::SynReceived
        } else if f & SYN != 0 && r == 0 {
            TcpState::SynSent
        } else {
            TcpState::Established
        })
    }
}
