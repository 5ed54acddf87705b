//! Flow-level input: a flow counted elsewhere (in the kernel, by an eBPF
//! program), handed to the table as what changed since the last
//! observation of it, instead of packet by packet.
//!
//! A [`FlowObservation`] carries what a kernel aggregate can keep per flow:
//! packets, bytes and TCP flags per direction, first and last seen, the
//! first packet's per-direction header fields, how the flow opened, and
//! the TCP latency samples the README defines (summed, so that deltas
//! add up). Fed the deltas of a flow, a [`FlowTable`](super::table::FlowTable)
//! makes the same records as when fed its packets, provided the deltas do
//! not straddle a record boundary (an active timeout, the end of the flow):
//! a kernel aggregate is read at least that often.

use crate::decode::{IpIpHeader, Ipsec, TunnelHeader};
use crate::flow::key::FlowKey;
use crate::flow::record::FirstPacket;

/// One direction of a flow since the last observation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SideDelta {
    /// Packets (wire segments) sent by this side.
    pub packets: u64,
    /// Their IP-layer bytes.
    pub bytes: u64,
    /// The union of their TCP flags.
    pub tcp_flags: u16,
    /// The header fields of the first of them (meaningful when
    /// `packets > 0`).
    pub first: FirstPacket,
}

/// How a flow opened: its very first packet, as the initiator inference
/// needs it (README, "Span kind").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opening {
    /// The first packet was sent by endpoint `a` of the key.
    pub from_a: bool,
    /// Its TCP flags.
    pub tcp_flags: u16,
    /// Its first SCTP chunk type.
    pub sctp_chunk: u8,
    /// Its ICMP type (ICMP and ICMPv6).
    pub icmp_type: u8,
    /// Whether its transport header was there whole.
    pub has_transport: bool,
    /// Its Ethernet source address (zero when unknown).
    pub src_mac: [u8; 6],
    /// Its Ethernet destination address (zero when unknown).
    pub dst_mac: [u8; 6],
}

/// TCP latency samples (README, "TCP latency"), as a kernel program that
/// follows the same definition keeps them. Sums and counts, so that the
/// samples of successive observations add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpSamples {
    /// `h`: SYN → SYN/ACK, when the handshake gave one (first
    /// observation only).
    pub handshake_ns: Option<u32>,
    /// `c`: SYN/ACK → the initiator's ACK, when it gave one.
    pub ack_after_ns: Option<u32>,
    /// The initiator acknowledged the SYN/ACK (the handshake completed).
    pub established: bool,
    /// Turn samples `g` in this observation: their number and sum.
    pub turns: u32,
    /// Sum of this observation's `g`.
    pub turn_sum_ns: u64,
    /// Sum of |`g` − previous `g`| over this observation's samples that
    /// have a previous one (which may be in an earlier observation).
    pub jitter_sum_ns: u64,
    /// This observation's first sample was the flow's first (no jitter
    /// pair).
    pub first_turn: bool,
}

/// What a tunnelled flow's packets carried besides their own headers
/// (README "Tunnels"), per side of the key (`[0]`: sent by endpoint `a`),
/// as a kernel program that decapsulates them keeps it. The flow's key
/// holds the tunnels' fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedEncap {
    /// The outermost tunnel of each side's first tunnelled packet.
    pub tunnel: [Option<TunnelHeader>; 2],
    /// The outermost IP-in-IP header of each side's first tunnelled packet.
    pub ipip: [Option<IpIpHeader>; 2],
    /// Encapsulation bytes each side's packets carried, counted under
    /// `tunnel.*`.
    pub tunnel_bytes: [u64; 2],
    /// Encapsulation bytes counted under `ipip.*`.
    pub ipip_bytes: [u64; 2],
    /// The first non-zero IPsec and WireGuard identifiers of each side.
    pub ipsec: [Ipsec; 2],
    /// The first non-zero AH SPI of each side's outer headers.
    pub tunnel_ah_spi: [u32; 2],
}

/// What happened to one flow since it was last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowObservation {
    /// The flow.
    pub key: FlowKey,
    /// Traffic sent by endpoint `a` (`[0]`) and by `b` (`[1]`).
    pub sides: [SideDelta; 2],
    /// Time of the first packet of this observation.
    pub first_seen_ns: u64,
    /// Time of the last packet of this observation.
    pub last_seen_ns: u64,
    /// Set when this observation holds the flow's first packet.
    pub opening: Option<Opening>,
    /// The interface the flow was seen on (0: unknown).
    pub ifindex: u32,
    /// TCP latency samples (TCP flows).
    pub tcp: TcpSamples,
    /// Tunnels, IPsec and WireGuard identifiers, for the flows that have
    /// any.
    pub encap: Option<Box<ObservedEncap>>,
}

impl FlowObservation {
    /// An observation of `key` with nothing counted yet, at `ts_ns`.
    pub fn new(key: FlowKey, ts_ns: u64) -> FlowObservation {
        FlowObservation {
            key,
            sides: [SideDelta::default(); 2],
            first_seen_ns: ts_ns,
            last_seen_ns: ts_ns,
            opening: None,
            ifindex: 0,
            tcp: TcpSamples::default(),
            encap: None,
        }
    }

    /// Packets in both directions.
    pub fn packets(&self) -> u64 {
        self.sides[0].packets + self.sides[1].packets
    }
}
