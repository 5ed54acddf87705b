//! What decoding makes of a frame: the link types it reads, the packet a
//! flow needs ([`PacketRepr`]) and why a frame was skipped.

use std::net::IpAddr;

use super::tunnel::Encap;
use crate::error::DecodeError;

/// A pcap / pcapng link-layer type (`LINKTYPE_*` from the tcpdump registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// IEEE 802.3 Ethernet.
    pub const ETHERNET: LinkType = LinkType(1);
    /// PPP, optionally with HDLC address/control bytes.
    pub const PPP: LinkType = LinkType(9);
    /// Raw IP as written by some platforms as DLT 12.
    pub const RAW_12: LinkType = LinkType(12);
    /// Raw IP as written by OpenBSD as DLT 14.
    pub const RAW_14: LinkType = LinkType(14);
    /// PPP in HDLC-like framing (RFC 1662), or Cisco HDLC.
    pub const PPP_HDLC: LinkType = LinkType(50);
    /// Raw IP (`LINKTYPE_RAW`).
    pub const RAW: LinkType = LinkType(101);
    /// Cisco HDLC.
    pub const C_HDLC: LinkType = LinkType(104);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux "cooked" capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// Whether [`decode`](super::decode) understands this link type.
    pub fn is_supported(self) -> bool {
        matches!(
            self.0,
            0 | 1 | 9 | 12 | 14 | 50 | 101 | 104 | 108 | 113 | 228 | 229 | 276
        )
    }
}

/// How a non-first fragment, a first fragment or a whole datagram relates to
/// its IP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not fragmented (this includes IPv6 atomic fragments).
    Whole,
    /// Offset 0 with more fragments: carries the transport header.
    First {
        /// IPv4 identification or IPv6 fragment identification.
        id: u32,
    },
    /// Offset > 0: no transport header, belongs to datagram `id`.
    Later {
        /// IPv4 identification or IPv6 fragment identification.
        id: u32,
    },
}

/// What a flow needs from one IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRepr {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol number after any IPv6 extension headers and AH.
    pub protocol: u8,
    /// Source port (TCP, UDP, SCTP); 0 otherwise.
    pub src_port: u16,
    /// Destination port (TCP, UDP, SCTP); 0 otherwise.
    pub dst_port: u16,
    /// ICMP / ICMPv6 type (when the protocol is ICMP and the header is present).
    pub icmp_type: u8,
    /// ICMP / ICMPv6 code.
    pub icmp_code: u8,
    /// TCP flags: FIN=0x01 … CWR=0x80, NS=0x100.
    pub tcp_flags: u16,
    /// TCP sequence number (0 for other protocols).
    pub tcp_seq: u32,
    /// TCP acknowledgement number (0 for other protocols).
    pub tcp_ack: u32,
    /// Type of the first SCTP chunk (1 = INIT, 2 = INIT ACK), 0 if absent.
    pub sctp_chunk: u8,
    /// IP-layer bytes on the wire, from the IP header.
    pub ip_bytes: u32,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class (DSCP << 2 | ECN).
    pub tos: u8,
    /// IPv6 flow label (0 for IPv4).
    pub flow_label: u32,
    /// Fragment position.
    pub fragment: Fragment,
    /// Index of the interface the packet was captured on (live capture);
    /// 0 when unknown, as for capture files.
    pub ifindex: u32,
    /// Bytes of IP header (with extension headers) and TCP or UDP header:
    /// what every segment of a GSO/GRO super-frame repeats. 0 for other
    /// transports and for fragments without a transport header.
    pub headers: u16,
    /// Packets on the wire this packet stands for: 1, or the segments of a
    /// super-frame after [`PacketRepr::count_segments`].
    pub segments: u16,
    /// Ethernet source address (zero without an Ethernet header).
    pub src_mac: [u8; 6],
    /// Ethernet destination address (zero without an Ethernet header).
    pub dst_mac: [u8; 6],
    /// Tunnels, IPsec and WireGuard identifiers, and tunnel header errors:
    /// absent for most packets, which so stay small.
    pub extra: Option<Box<PacketExtra>>,
}

/// The rarer parts of a packet, kept out of line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketExtra {
    /// IPsec and WireGuard identifiers in this packet's own headers.
    pub ipsec: Ipsec,
    /// The tunnels this packet was found in (empty if none).
    pub encap: Encap,
    /// A tunnel header (or the packet inside it) that could not be decoded:
    /// the packet is then the flow of the tunnel that carried it.
    pub tunnel_error: Option<DecodeError>,
    /// Where decoding stopped: the transport header was cut short. The
    /// packet is then the flow of its addresses and protocol, without
    /// ports (its IP-level flow), and the malformation is counted.
    pub stopped: Option<DecodeError>,
}

/// IPsec SPIs and WireGuard indices from one packet; 0 when absent (SPI 0
/// is reserved and never sent; a WireGuard index of 0 is read as absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipsec {
    /// SPI of an Authentication Header.
    pub ah_spi: u32,
    /// SPI of an Encapsulating Security Payload header (IP protocol 50, or
    /// ESP in UDP on port 4500).
    pub esp_spi: u32,
    /// WireGuard: the index the sender of this packet chose (handshake
    /// initiation and response).
    pub wg_sender: u32,
    /// WireGuard: the index the receiver of this packet chose (handshake
    /// response, cookie reply, transport data).
    pub wg_receiver: u32,
}

impl PacketRepr {
    /// A packet of `protocol` from `src` to `dst` with every other field
    /// empty: no ports, flags or MACs, 0 bytes, one segment, not a fragment.
    /// Set the rest with struct update syntax.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8) -> PacketRepr {
        PacketRepr {
            src,
            dst,
            protocol,
            src_port: 0,
            dst_port: 0,
            icmp_type: 0,
            icmp_code: 0,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_ack: 0,
            sctp_chunk: 0,
            ip_bytes: 0,
            ttl: 0,
            tos: 0,
            flow_label: 0,
            fragment: Fragment::Whole,
            ifindex: 0,
            headers: 0,
            segments: 1,
            src_mac: [0; 6],
            dst_mac: [0; 6],
            extra: None,
        }
    }

    /// [`Encap::fingerprint`] of the packet's tunnels; 0 when not tunnelled.
    #[inline]
    pub fn tunnel_fingerprint(&self) -> u64 {
        self.extra.as_ref().map_or(0, |x| x.encap.fingerprint)
    }

    /// The packet's tunnels, if it was tunnelled.
    pub fn encap(&self) -> Option<&Encap> {
        self.extra
            .as_ref()
            .map(|x| &x.encap)
            .filter(|e| e.is_tunnelled())
    }

    /// The tunnel header error, if any.
    pub fn tunnel_error(&self) -> Option<DecodeError> {
        self.extra.as_ref().and_then(|x| x.tunnel_error)
    }

    /// The out-of-line part, made on first use.
    pub fn extra_mut(&mut self) -> &mut PacketExtra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// Where decoding stopped, if the transport header was cut short.
    #[inline]
    pub fn stopped(&self) -> Option<DecodeError> {
        self.extra.as_ref().and_then(|x| x.stopped)
    }

    /// Whether the protocol carries ports or ICMP type/code in the flow key.
    pub fn has_transport_header(&self) -> bool {
        !matches!(self.fragment, Fragment::Later { .. }) && self.stopped().is_none()
    }

    /// Counts this TCP or UDP super-frame (GSO on send, GRO on receive) as
    /// the segments the wire carries: `segment_size` payload bytes each,
    /// the last one the rest, every one with its own copy of the IP and
    /// transport headers, which [`ip_bytes`](Self::ip_bytes) then includes.
    /// Returns the number of segments, or `None` (and changes nothing) for
    /// a packet that cannot be one (no TCP or UDP header, or no payload
    /// beyond one segment).
    pub fn count_segments(&mut self, segment_size: u16) -> Option<u16> {
        if self.headers == 0 || segment_size == 0 || !matches!(self.protocol, 6 | 17) {
            return None;
        }
        let payload = self.ip_bytes.checked_sub(u32::from(self.headers))?;
        let segments = payload.div_ceil(u32::from(segment_size));
        if segments <= 1 {
            return None;
        }
        let segments = u16::try_from(segments).ok()?;
        self.segments = segments;
        self.ip_bytes += u32::from(segments - 1) * u32::from(self.headers);
        Some(segments)
    }

    /// TCP payload bytes (of all segments of a super-frame), for a whole
    /// TCP packet whose header was read; `None` otherwise.
    pub fn tcp_payload(&self) -> Option<u32> {
        if self.protocol != 6 || self.headers == 0 || self.fragment != Fragment::Whole {
            return None;
        }
        self.ip_bytes
            .checked_sub(u32::from(self.segments) * u32::from(self.headers))
    }

    /// Adds the `ip_header` bytes before the transport header to a TCP or
    /// UDP header length found by the transport decoder.
    pub(super) fn add_headers(&mut self, ip_header: usize) {
        if self.headers != 0 {
            let total = usize::from(self.headers) + ip_header;
            self.headers = u16::try_from(total).unwrap_or(0);
        }
    }
}

/// Why a frame was not decoded into an IP packet, without it being malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The capture's link type is not one [`decode`](super::decode) knows.
    UnsupportedLinkType,
    /// ARP or RARP.
    Arp,
    /// LLDP.
    Lldp,
    /// 802.3 frame with a length field (LLC/SNAP, STP, …).
    Llc,
    /// An EtherType that carries no IP.
    OtherEthertype,
    /// A PPP or PPPoE frame with a non-IP protocol (LCP, IPCP, …).
    PppNonIp,
    /// MPLS payload that is neither IPv4, IPv6 nor a pseudowire with Ethernet.
    MplsNonIp,
    /// BSD NULL / LOOP with an address family that is not IP.
    NullNonIp,
    /// Raw-IP frame whose version nibble is neither 4 nor 6.
    RawNotIp,
}

impl SkipReason {
    /// Every reason, in declaration order (so `reason as usize` indexes it).
    pub const ALL: [SkipReason; 9] = [
        SkipReason::UnsupportedLinkType,
        SkipReason::Arp,
        SkipReason::Lldp,
        SkipReason::Llc,
        SkipReason::OtherEthertype,
        SkipReason::PppNonIp,
        SkipReason::MplsNonIp,
        SkipReason::NullNonIp,
        SkipReason::RawNotIp,
    ];

    /// A short, bounded reason string for counters.
    pub fn reason(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLinkType => "unsupported_link_type",
            SkipReason::Arp => "non_ip_arp",
            SkipReason::Lldp => "non_ip_lldp",
            SkipReason::Llc => "non_ip_llc",
            SkipReason::OtherEthertype => "non_ip_other_ethertype",
            SkipReason::PppNonIp => "non_ip_ppp",
            SkipReason::MplsNonIp => "non_ip_mpls_payload",
            SkipReason::NullNonIp => "non_ip_loopback_family",
            SkipReason::RawNotIp => "non_ip_raw_version",
        }
    }
}

/// The outcome of decoding one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// An IP packet that belongs to a flow.
    Ip(PacketRepr),
    /// Not IP (or an unsupported link type): counted, not an error.
    Skipped(SkipReason),
    /// A header was truncated or invalid.
    Malformed(DecodeError),
}
