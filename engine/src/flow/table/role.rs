//! Who initiated a flow: the protocol's own evidence, then the port
//! heuristic (README, "Span kind").

use super::FlowTable;
use crate::community_id::{IcmpRole, icmp_role};
use crate::decode::PacketRepr;
use crate::flow::key::FlowKey;
use crate::flow::observation::Opening;
use crate::flow::record::FlowRole;
use crate::flow::tcp::{ACK, SYN};

/// How the initiator of a flow was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Evidence {
    /// TCP SYN or SYN/ACK, ICMP request or reply, SCTP INIT or INIT ACK.
    Protocol,
    /// The port heuristic (see [`service_port_side`]).
    Ports,
    /// A local socket listens on the responder's port (live capture).
    Listening,
    /// Neither: the sender of the first packet.
    None,
}

/// The first packet of a flow, as the initiator inference reads it: a
/// packet itself, or what a flow observation says of it. Generic rather
/// than a struct built from the packet: that copy cost more than the
/// inference on every new flow.
pub(crate) trait Opener {
    /// The first packet was sent by endpoint `a` of the key.
    fn sent_by_a(&self) -> bool;
    /// Its TCP flags.
    fn tcp_flags(&self) -> u16;
    /// Its first SCTP chunk type.
    fn sctp_chunk(&self) -> u8;
    /// Its ICMP type.
    fn icmp_type(&self) -> u8;
    /// Whether its transport header was there whole.
    fn has_transport(&self) -> bool;
    /// Its Ethernet source and destination addresses.
    fn macs(&self) -> ([u8; 6], [u8; 6]);
}

/// A packet, sent by endpoint `a` if `.1`.
impl Opener for (&PacketRepr, bool) {
    #[inline(always)]
    fn sent_by_a(&self) -> bool {
        self.1
    }
    #[inline(always)]
    fn tcp_flags(&self) -> u16 {
        self.0.tcp_flags
    }
    #[inline(always)]
    fn sctp_chunk(&self) -> u8 {
        self.0.sctp_chunk
    }
    #[inline(always)]
    fn icmp_type(&self) -> u8 {
        self.0.icmp_type
    }
    #[inline(always)]
    fn has_transport(&self) -> bool {
        self.0.has_transport_header()
    }
    #[inline(always)]
    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (self.0.src_mac, self.0.dst_mac)
    }
}

impl Opener for Opening {
    fn sent_by_a(&self) -> bool {
        self.from_a
    }
    fn tcp_flags(&self) -> u16 {
        self.tcp_flags
    }
    fn sctp_chunk(&self) -> u8 {
        self.sctp_chunk
    }
    fn icmp_type(&self) -> u8 {
        self.icmp_type
    }
    fn has_transport(&self) -> bool {
        self.has_transport
    }
    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (self.src_mac, self.dst_mac)
    }
}

/// How packet `p`, sent by endpoint `a` if `from_a`, opens a flow: what a
/// flow observation carries of it (for tests that turn packets into
/// observations).
#[cfg(test)]
pub(crate) fn opening_of(p: &PacketRepr, from_a: bool) -> Opening {
    Opening {
        from_a,
        tcp_flags: p.tcp_flags,
        sctp_chunk: p.sctp_chunk,
        icmp_type: p.icmp_type,
        has_transport: p.has_transport_header(),
        src_mac: p.src_mac,
        dst_mac: p.dst_mac,
    }
}

/// Who initiated a flow of `protocol` that opened with `o`, sent from
/// `src_port` to `dst_port`: `(the sender is the initiator, how we know)`.
#[inline]
pub(super) fn initiator_of(
    protocol: u8,
    o: &impl Opener,
    src_port: u16,
    dst_port: u16,
) -> (bool, Evidence) {
    match protocol {
        6 if o.tcp_flags() & (SYN | ACK) == SYN => return (true, Evidence::Protocol),
        6 if o.tcp_flags() & (SYN | ACK) == SYN | ACK => return (false, Evidence::Protocol),
        132 if o.sctp_chunk() == 1 => return (true, Evidence::Protocol),
        132 if o.sctp_chunk() == 2 => return (false, Evidence::Protocol),
        1 | 58 if o.has_transport() => match icmp_role(protocol, o.icmp_type()) {
            IcmpRole::Request => return (true, Evidence::Protocol),
            IcmpRole::Reply => return (false, Evidence::Protocol),
            IcmpRole::OneWay => return (true, Evidence::None),
        },
        _ => {}
    }
    if matches!(protocol, 6 | 17 | 132) {
        match service_port_side(src_port, dst_port) {
            Some(ServiceSide::Destination) => return (true, Evidence::Ports),
            Some(ServiceSide::Source) => return (false, Evidence::Ports),
            None => {}
        }
    }
    (true, Evidence::None)
}

impl FlowTable {
    /// Who initiated a new flow of `key` that opened with `opening`
    /// (`true`: endpoint `a`), and the observer's role in it.
    #[inline]
    pub(super) fn judge(&self, key: &FlowKey, opening: &impl Opener) -> (bool, FlowRole) {
        let (src_port, dst_port) = if opening.sent_by_a() {
            (key.a_port, key.b_port)
        } else {
            (key.b_port, key.a_port)
        };
        let (sender_is_initiator, mut evidence) =
            initiator_of(key.protocol, opening, src_port, dst_port);
        let mut initiator_is_a = opening.sent_by_a() == sender_is_initiator;
        if let Some(host) = self.host.as_deref()
            && has_ports(key.protocol)
            && (evidence == Evidence::None || (evidence == Evidence::Ports && key.protocol == 6))
        {
            // A local listening socket on one side makes that side the
            // responder. A TCP socket in LISTEN state is better evidence
            // than the port heuristic; an unconnected UDP socket may be a
            // client's, so it only decides where nothing else does.
            let a_listens = host.listens(key.protocol, key.a, key.a_port);
            let b_listens = host.listens(key.protocol, key.b, key.b_port);
            if a_listens != b_listens {
                initiator_is_a = b_listens;
                evidence = Evidence::Listening;
            }
        }
        let ((initiator, _), (responder, responder_port)) = if initiator_is_a {
            ((key.a, key.a_port), (key.b, key.b_port))
        } else {
            ((key.b, key.b_port), (key.a, key.a_port))
        };
        let role = match (evidence, self.host.as_deref()) {
            (Evidence::None, _) => FlowRole::Internal,
            // Live: the host opened it, or answers it on a listening socket
            // (for protocols without ports: answers it at all, as the
            // kernel answers an echo request).
            (_, Some(host)) if host.is_local(initiator) => FlowRole::Client,
            (_, Some(host))
                if (has_ports(key.protocol)
                    && host.listens(key.protocol, responder, responder_port))
                    || (!has_ports(key.protocol) && host.is_local(responder)) =>
            {
                FlowRole::Server
            }
            (_, Some(_)) => FlowRole::Client,
            // Capture files: `--local-net` stands in for the host.
            _ if self.config.is_local(responder) && !self.config.is_local(initiator) => {
                FlowRole::Server
            }
            _ => FlowRole::Client,
        };
        (initiator_is_a, role)
    }
}

/// Whether `protocol`'s flows are told apart by ports (TCP, UDP, SCTP,
/// UDP-Lite).
fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

/// Well-known service ports at or above 1024.
const REGISTERED_SERVICES: [u16; 24] = [
    1433, 1521, 1883, 2049, 2181, 2375, 2376, 2379, 3000, 3306, 3389, 4317, 4318, 5432, 5672, 6379,
    6443, 8080, 8443, 9042, 9092, 9200, 11211, 27017,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceSide {
    Source,
    Destination,
}

fn is_service_port(p: u16) -> bool {
    (p != 0 && p < 1024) || REGISTERED_SERVICES.contains(&p)
}

/// The port heuristic: a side whose port is a service port (below 1024, or
/// in [`REGISTERED_SERVICES`]) facing a side whose port is not is the
/// responder; failing that, a side whose port is below the ephemeral range
/// (32768) facing one inside it is the responder.
fn service_port_side(src: u16, dst: u16) -> Option<ServiceSide> {
    match (is_service_port(src), is_service_port(dst)) {
        (true, false) => return Some(ServiceSide::Source),
        (false, true) => return Some(ServiceSide::Destination),
        (true, true) => return None,
        (false, false) => {}
    }
    const EPHEMERAL: u16 = 32768;
    match (src >= EPHEMERAL, dst >= EPHEMERAL) {
        (false, true) if src != 0 => Some(ServiceSide::Source),
        (true, false) if dst != 0 => Some(ServiceSide::Destination),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_heuristic() {
        assert_eq!(service_port_side(53, 40000), Some(ServiceSide::Source));
        assert_eq!(
            service_port_side(51000, 5432),
            Some(ServiceSide::Destination)
        );
        assert_eq!(service_port_side(8081, 50000), Some(ServiceSide::Source));
        assert_eq!(service_port_side(53, 53), None);
        assert_eq!(service_port_side(40000, 40001), None);
    }
}
