//! Flow records: what a flow table emits, one per span.

use std::net::IpAddr;

use crate::community_id::CommunityId;
use crate::decode::{IpIpHeader, TunnelHeader};
use crate::flow::key::FlowKey;

/// Why a record was emitted (IPFIX `flowEndReason`, snake_case).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndReason {
    /// No packet for longer than the protocol's idle timeout.
    IdleTimeout,
    /// The flow is still open; periodic record.
    ActiveTimeout,
    /// TCP FIN from both sides, or RST, then the linger elapsed.
    EndOfFlowDetected,
    /// Still open at the end of the input.
    ForcedEnd,
    /// Evicted because the table was full (`--max-flows`).
    LackOfResources,
}

impl EndReason {
    /// All reasons, in counter order.
    pub const ALL: [EndReason; 5] = [
        EndReason::IdleTimeout,
        EndReason::ActiveTimeout,
        EndReason::EndOfFlowDetected,
        EndReason::ForcedEnd,
        EndReason::LackOfResources,
    ];

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::EndOfFlowDetected => "end_of_flow_detected",
            EndReason::ForcedEnd => "forced_end",
            EndReason::LackOfResources => "lack_of_resources",
        }
    }
}

/// The observer's role in the flow, which gives span kind and `flow.direction`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowRole {
    /// Initiator known: CLIENT + `forward`.
    Client,
    /// The observing host answered: SERVER + `reverse`.
    Server,
    /// Initiator unknown: INTERNAL + `unknown`.
    Internal,
}

impl FlowRole {
    /// The `flow.direction` value.
    pub fn direction(self) -> &'static str {
        match self {
            FlowRole::Client => "forward",
            FlowRole::Server => "reverse",
            FlowRole::Internal => "unknown",
        }
    }
}

/// TCP connection state from the initiator's point of view, as far as a
/// passive observer can tell (see the README for the rules).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum TcpState {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    CloseWait,
    TimeWait,
    Closed,
}

impl TcpState {
    /// The `flow.connection.state` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn_sent",
            TcpState::SynReceived => "syn_received",
            TcpState::Established => "established",
            TcpState::FinWait1 => "fin_wait_1",
            TcpState::CloseWait => "close_wait",
            TcpState::TimeWait => "time_wait",
            TcpState::Closed => "closed",
        }
    }
}

/// Header fields of the first packet of one direction in one record.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirstPacket {
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// TOS / traffic class: DSCP << 2 | ECN.
    pub tos: u8,
    /// IPv6 flow label.
    pub flow_label: u32,
    /// ICMP type (ICMP flows only).
    pub icmp_type: u8,
    /// ICMP code (ICMP flows only).
    pub icmp_code: u8,
}

impl FirstPacket {
    /// The fields of packet `p`.
    #[inline]
    pub fn of(p: &crate::decode::PacketRepr) -> FirstPacket {
        FirstPacket {
            ttl: p.ttl,
            tos: p.tos,
            flow_label: p.flow_label,
            icmp_type: p.icmp_type,
            icmp_code: p.icmp_code,
        }
    }
}

/// Counters and attributes of one direction of a record.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionRecord {
    /// Packets in this record.
    pub packets_delta: u64,
    /// IP-layer bytes in this record.
    pub bytes_delta: u64,
    /// Packets since the flow started.
    pub packets_total: u64,
    /// Bytes since the flow started.
    pub bytes_total: u64,
    /// TCP flags seen over the flow's whole life.
    pub tcp_flags: u16,
    /// The first packet of this direction in this record, if any.
    pub first: Option<FirstPacket>,
}

/// TCP latency metrics of one record, in ns (README, "TCP latency"); each
/// is absent where the flow gave no sample for it.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpLatency {
    /// `flow.tcp.handshake.latency`: SYN → SYN/ACK.
    pub handshake_ns: Option<u64>,
    /// `flow.tcp.rndtrip.latency`: the client's request → response wait.
    pub rndtrip_ns: Option<u64>,
    /// `flow.tcp.rndtrip.jitter`.
    pub rndtrip_jitter_ns: Option<u64>,
    /// `flow.tcp.svc.latency`: the server's time to respond.
    pub svc_ns: Option<u64>,
    /// `flow.tcp.svc.jitter`.
    pub svc_jitter_ns: Option<u64>,
}

/// One flow record: becomes one span.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// The biflow key.
    pub key: FlowKey,
    /// Initiator address (`source.address`).
    pub source: IpAddr,
    /// Initiator port, 0 for protocols without ports.
    pub source_port: u16,
    /// Responder address.
    pub destination: IpAddr,
    /// Responder port, 0 for protocols without ports.
    pub destination_port: u16,
    /// Community ID of the flow.
    pub community_id: CommunityId,
    /// Observer role: span kind and direction.
    pub role: FlowRole,
    /// Why this record was emitted.
    pub end_reason: EndReason,
    /// TCP state (TCP only).
    pub tcp_state: Option<TcpState>,
    /// TCP latency metrics (all absent for other protocols).
    pub tcp_latency: TcpLatency,
    /// Timestamp of the first packet in this record (ns since the epoch).
    pub start_ns: u64,
    /// Timestamp of the last packet in this record.
    pub end_ns: u64,
    /// Timestamp of the flow's first packet.
    pub flow_start_ns: u64,
    /// Record number within the flow, from 0.
    pub record_seq: u32,
    /// Initiator → responder.
    pub forward: DirectionRecord,
    /// Responder → initiator.
    pub reverse: DirectionRecord,
    /// Shared by every record of the flow.
    pub trace_id: [u8; 16],
    /// Unique per record.
    pub span_id: [u8; 8],
    /// Capture time at which the record became due: the order of output.
    pub export_clock_ns: u64,
    /// Index of the interface the flow's first packet was captured on
    /// (live capture only).
    pub interface_index: Option<u32>,
    /// The initiator's (`source.*`) Ethernet address, from the flow's first
    /// packet (live capture on an Ethernet interface only).
    pub interface_mac: Option<[u8; 6]>,
    /// Tunnels, IPsec and WireGuard identifiers: only for flows that have
    /// any, so that other records stay small.
    pub encap: Option<Box<EncapRecord>>,
    /// What enrichment knows about the source and the destination
    /// ([`crate::enrich`]); filled in by the worker when the record is
    /// emitted, and only when it knows something (out of line: records are
    /// moved several times, and most runs have no enrichment).
    pub endpoints: Option<Box<crate::enrich::Endpoints>>,
}

/// Encapsulation overhead bytes of one record, both directions.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OverheadBytes {
    /// Initiator → responder, this record.
    pub delta: u64,
    /// Initiator → responder, since the flow started.
    pub total: u64,
    /// Responder → initiator, this record.
    pub reverse_delta: u64,
    /// Responder → initiator, since the flow started.
    pub reverse_total: u64,
}

/// A flow's tunnels and security identifiers, oriented like the record:
/// `src` fields belong to the initiator's side.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncapRecord {
    /// The outermost tunnel that is not IP-in-IP, as the initiator's first
    /// packet carried it (the responder's, reversed, if the initiator's
    /// packets carried none).
    pub tunnel: Option<TunnelHeader>,
    /// Overhead bytes counted under `tunnel.*`.
    pub tunnel_bytes: OverheadBytes,
    /// The outermost IP-in-IP header, oriented the same way.
    pub ipip: Option<IpIpHeader>,
    /// Overhead bytes counted under `ipip.*`.
    pub ipip_bytes: OverheadBytes,
    /// SPI of an AH in the tunnel's outermost IP header.
    pub tunnel_ah_spi: Option<u32>,
    /// SPI of the flow's own AH, from the initiator's packets.
    pub ah_spi: Option<u32>,
    /// SPI of the flow's own ESP, from the initiator's packets.
    pub esp_spi: Option<u32>,
    /// WireGuard index chosen by the initiator.
    pub wg_sender_index: Option<u32>,
    /// WireGuard index chosen by the responder.
    pub wg_receiver_index: Option<u32>,
}

impl FlowRecord {
    /// `network.type`: `ipv4` or `ipv6`.
    pub fn network_type(&self) -> &'static str {
        crate::names::network_type(self.source)
    }

    /// The total order of output records: due time, then first packet, then
    /// key and record number. It does not depend on how flows were sharded.
    pub fn order_key(&self) -> (u64, u64, FlowKey, u32) {
        let ((due, start), (key, seq)) = (self.order_times(), self.order_tie());
        (due, start, key, seq)
    }

    /// The first part of [`order_key`](Self::order_key): due time, then
    /// first packet (what [`sort_in_output_order`] sorts by).
    pub(crate) fn order_times(&self) -> (u64, u64) {
        (self.export_clock_ns, self.start_ns)
    }

    /// The rest of [`order_key`](Self::order_key), for records whose times
    /// are equal.
    pub(crate) fn order_tie(&self) -> (FlowKey, u32) {
        (self.key, self.record_seq)
    }
}

/// Sorts `entries`, each a record's due time, first packet time and an
/// index, into [`FlowRecord::order_key`] order: by the times, which tell
/// most records apart, then by `rest(index)` (key and record number). The
/// entries stay 24 bytes, where whole order keys are 72: sorting moves them
/// around many times.
pub(crate) fn sort_in_output_order<R: Ord>(
    entries: &mut [(u64, u64, u32)],
    rest: impl Fn(u32) -> R,
) {
    entries.sort_unstable_by(|x, y| {
        (x.0, x.1)
            .cmp(&(y.0, y.1))
            .then_with(|| rest(x.2).cmp(&rest(y.2)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_order_is_the_whole_order_key_order() {
        // Many ties in the times, so that the keys decide often; the keys
        // themselves tie on all but the record number now and then.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let keys: Vec<(u64, u64, (u8, u16), u32)> = (0..2000)
            .map(|_| {
                let key = (next(3) as u8, next(4) as u16);
                (next(3), next(5), key, next(2) as u32)
            })
            .collect();
        let mut entries: Vec<(u64, u64, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.0, k.1, i as u32))
            .collect();
        sort_in_output_order(&mut entries, |i| {
            let k = &keys[i as usize];
            (k.2, k.3)
        });
        let got: Vec<_> = entries.iter().map(|e| keys[e.2 as usize]).collect();
        let mut want = keys.clone();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
