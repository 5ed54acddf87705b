//! Lenient, zero-copy decoding of one captured frame into a [`PacketRepr`].
//!
//! The decoder reads only the headers a flow needs: the link layer (and any
//! VLAN / QinQ / VN-Tag / FabricPath / MPLS / PPPoE encapsulation in front of
//! IP), the IP
//! header with IPv4 options or the IPv6 extension-header chain, and the first
//! bytes of the transport header (ports, TCP flags, ICMP type and code, the
//! first SCTP chunk type). Checksums are never validated.
//!
//! Contract: [`decode`] never panics, whatever the bytes. All reads are
//! bounds-checked; a header that does not fit in the captured bytes stops
//! decoding with a [`DecodeError`] naming the layer, the offset and how many
//! bytes were needed.
//!
//! Byte counts are IP-layer bytes taken from the headers (IPv4 total length,
//! IPv6 40 + payload length), so a snaplen-truncated packet still counts at
//! its wire size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use crate::error::{DecodeError, DecodeErrorKind, Layer};

mod tunnel;

pub use tunnel::{Encap, IpIpHeader, TunnelHeader, TunnelKind, TunnelPorts, UdpTunnel};

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

    /// Whether [`decode`] understands this link type.
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
    fn add_headers(&mut self, ip_header: usize) {
        if self.headers != 0 {
            let total = usize::from(self.headers) + ip_header;
            self.headers = u16::try_from(total).unwrap_or(0);
        }
    }
}

/// Why a frame was not decoded into an IP packet, without it being malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The capture's link type is not one [`decode`] knows.
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

enum Stop {
    Skip(SkipReason),
    Err(DecodeError),
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        Stop::Err(e)
    }
}

type Step<T> = Result<T, Stop>;

#[derive(Clone, Copy)]
enum IpVersion {
    V4,
    V6,
}

// One bounds check and one load each: these run several times per packet.
#[inline]
fn be16(f: &[u8], at: usize) -> u16 {
    let mut b = [0; 2];
    b.copy_from_slice(&f[at..at + 2]);
    u16::from_be_bytes(b)
}

#[inline]
fn be32(f: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&f[at..at + 4]);
    u32::from_be_bytes(b)
}

/// Checks that `need` bytes are available at `at` in a frame of `end` bytes.
fn need(layer: Layer, at: usize, need: usize, end: usize) -> Result<(), DecodeError> {
    let have = end.saturating_sub(at);
    if have < need {
        Err(DecodeError::truncated(layer, at, need, have))
    } else {
        Ok(())
    }
}

/// Decodes one frame of the given link type with the default
/// [`Decoder`] (IANA tunnel ports).
pub fn decode(link: LinkType, frame: &[u8]) -> Decoded {
    static DEFAULT: LazyLock<Decoder> = LazyLock::new(Decoder::default);
    DEFAULT.decode(link, frame)
}

/// Most encapsulation layers peeled off one packet; a packet nested deeper
/// is the flow of its fourth inner packet.
const MAX_TUNNELS: usize = 4;

/// What a packet's addresses are before its IP header is read.
const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// UDP port of WireGuard (its default; WireGuard has no assigned port).
const WIREGUARD_PORT: u16 = 51820;
/// UDP port of IKE NAT traversal, which also carries ESP (RFC 3948).
const NAT_T_PORT: u16 = 4500;

/// Decodes frames, looking into tunnels on the configured UDP ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoder {
    /// UDP ports that carry tunnels.
    pub tunnel_ports: TunnelPorts,
}

impl Decoder {
    /// Decodes one frame of the given link type. A tunnelled packet
    /// becomes the packet inside, its tunnels described in
    /// [`PacketRepr::encap`].
    pub fn decode(&self, link: LinkType, frame: &[u8]) -> Decoded {
        let (offset, version) = match link_layer(link, frame) {
            Ok(l) => l,
            Err(Stop::Skip(r)) => return Decoded::Skipped(r),
            Err(Stop::Err(e)) => return Decoded::Malformed(e),
        };
        // The packet is decoded in place and stays there: it is large, and
        // each move through the stack costs more than the checks below.
        let mut p = PacketRepr::new(UNSPECIFIED, UNSPECIFIED, 0);
        let (mut l4, mut end) = match ip(frame, offset, version, &mut p) {
            Ok(d) => d,
            Err(e) => return Decoded::Malformed(e),
        };
        if link == LinkType::ETHERNET && frame.len() >= 12 {
            p.dst_mac.copy_from_slice(&frame[0..6]);
            p.src_mac.copy_from_slice(&frame[6..12]);
        }
        if p.fragment == Fragment::Whole
            && tunnel::may_carry(&self.tunnel_ports, frame, &p, l4, end)
        {
            self.decapsulate(frame, &mut p, offset, &mut l4, &mut end);
        }
        ipsec_ids(frame, &mut p, l4, end);
        Decoded::Ip(p)
    }

    /// Peels tunnels off `packet` (its IP header at `at`, transport header
    /// at `l4`, datagram ending at `end`): it becomes the innermost packet,
    /// and `l4` and `end` that packet's. Out of line: most packets do not
    /// come here ([`tunnel::may_carry`]).
    #[inline(never)]
    fn decapsulate(
        &self,
        f: &[u8],
        packet: &mut PacketRepr,
        at: usize,
        l4: &mut usize,
        end: &mut usize,
    ) {
        let placeholder = PacketRepr::new(packet.src, packet.dst, packet.protocol);
        let outer = std::mem::replace(packet, placeholder);
        let outer_bytes = outer.ip_bytes;
        let outer_ah_spi = outer.extra.as_ref().map_or(0, |x| x.ipsec.ah_spi);
        let (mut cur, mut cur_at, mut cur_l4, mut cur_end) = (outer, at, *l4, *end);
        let mut encap = Encap::default();
        let mut fingerprint = 0u64;
        let mut first_ipip_header = 0u32;
        for _ in 0..MAX_TUNNELS {
            // A fragment's tunnel header is in its first fragment only: a
            // fragmented outer packet is counted as it is.
            if cur.fragment != Fragment::Whole {
                break;
            }
            let found = match tunnel::find(&self.tunnel_ports, f, &cur, cur_l4, cur_end) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(e) => {
                    cur.extra_mut().tunnel_error = Some(e);
                    break;
                }
            };
            // Nothing inside may reach past the outer datagram.
            let inner_frame = &f[..cur_end];
            let located = match found.payload {
                tunnel::Payload::Ip(i, v) => Ok((i, v, None)),
                tunnel::Payload::Ethernet(i) => {
                    ethernet(inner_frame, i, 0).map(|(ip_at, v)| (ip_at, v, Some(i)))
                }
                tunnel::Payload::Ppp(i) => ppp(inner_frame, i).map(|(i, v)| (i, v, None)),
                tunnel::Payload::Ieee80211(i) => {
                    ieee80211(inner_frame, i).map(|(i, v)| (i, v, None))
                }
            };
            let (ip_at, version, ethernet_at) = match located {
                Ok(l) => l,
                // Not IP inside (ARP, LLDP, …): the tunnel's own flow.
                Err(Stop::Skip(_)) => break,
                Err(Stop::Err(e)) => {
                    cur.extra_mut().tunnel_error = Some(e);
                    break;
                }
            };
            let mut inner = PacketRepr::new(UNSPECIFIED, UNSPECIFIED, 0);
            let (inner_l4, inner_end) = match ip(inner_frame, ip_at, version, &mut inner) {
                Ok(d) => d,
                Err(e) => {
                    cur.extra_mut().tunnel_error = Some(e);
                    break;
                }
            };
            match found.kind {
                None => {
                    if encap.ipip.is_none() {
                        encap.ipip = Some(IpIpHeader {
                            src: cur.src,
                            dst: cur.dst,
                            protocol: cur.protocol,
                        });
                        first_ipip_header = u32::try_from(cur_l4 - cur_at).unwrap_or(0);
                    }
                }
                Some(kind) => {
                    if encap.tunnel.is_none() {
                        encap.tunnel = Some(TunnelHeader {
                            kind,
                            id: found.id,
                            src: cur.src,
                            dst: cur.dst,
                            src_port: if cur.protocol == 17 { cur.src_port } else { 0 },
                            dst_port: if cur.protocol == 17 { cur.dst_port } else { 0 },
                            transport: cur.protocol,
                            // Only IP in IP came before: its MAC is the
                            // outermost frame's.
                            src_mac: cur.src_mac,
                        });
                    }
                }
            }
            let shared_id = found.id.filter(|_| found.id_shared);
            fingerprint = tunnel::fold(fingerprint, found.kind, shared_id, cur.src, cur.dst);
            match ethernet_at {
                Some(e) => {
                    inner.dst_mac.copy_from_slice(&f[e..e + 6]);
                    inner.src_mac.copy_from_slice(&f[e + 6..e + 12]);
                }
                None => {
                    inner.src_mac = cur.src_mac;
                    inner.dst_mac = cur.dst_mac;
                }
            }
            inner.ifindex = cur.ifindex;
            (cur, cur_at, cur_l4, cur_end) = (inner, ip_at, inner_l4, inner_end);
        }
        if fingerprint != 0 {
            let overhead = outer_bytes.saturating_sub(cur.ip_bytes);
            encap.ipip_bytes = match (encap.ipip, encap.tunnel) {
                (None, _) => 0,
                (Some(_), None) => overhead,
                (Some(_), Some(_)) => first_ipip_header.min(overhead),
            };
            encap.tunnel_bytes = overhead - encap.ipip_bytes;
            encap.fingerprint = fingerprint;
            encap.outer_ah_spi = outer_ah_spi;
            cur.extra_mut().encap = encap;
        }
        (*packet, *l4, *end) = (cur, cur_l4, cur_end);
    }
}

/// Reads the ESP SPI (IP protocol 50, or ESP in UDP on port 4500) and the
/// WireGuard indices (UDP port 51820) of a packet whose transport header
/// is at `l4`. Headers too short to hold them leave them absent.
#[inline]
fn ipsec_ids(f: &[u8], p: &mut PacketRepr, l4: usize, end: usize) {
    if !matches!(p.protocol, 17 | 50) || !p.has_transport_header() {
        return;
    }
    let end = end.min(f.len());
    let u32_at = |at: usize| (at + 4 <= end).then(|| be32(f, at));
    match p.protocol {
        50 => {
            if let Some(spi) = u32_at(l4) {
                p.extra_mut().ipsec.esp_spi = spi;
            }
        }
        17 if p.src_port == NAT_T_PORT || p.dst_port == NAT_T_PORT => {
            // A zero "SPI" is the non-ESP marker of IKE; 0xff is a keepalive.
            if let Some(spi) = u32_at(l4 + 8)
                && end >= l4 + 16
            {
                p.extra_mut().ipsec.esp_spi = spi;
            }
        }
        17 if p.src_port == WIREGUARD_PORT || p.dst_port == WIREGUARD_PORT => {
            let at = l4 + 8;
            let len = end.saturating_sub(at);
            // Message type, then three reserved zero bytes.
            let Some(head) = u32_at(at) else { return };
            let (sender, receiver) = match (head, len) {
                (0x0100_0000, 148) => (u32_at(at + 4), None),
                (0x0200_0000, 92) => (u32_at(at + 4), u32_at(at + 8)),
                (0x0300_0000, 64) => (None, u32_at(at + 4)),
                (0x0400_0000, n) if n >= 32 && n % 16 == 0 => (None, u32_at(at + 4)),
                _ => (None, None),
            };
            if sender.is_some() || receiver.is_some() {
                // Indices are little-endian on the wire.
                let ipsec = &mut p.extra_mut().ipsec;
                ipsec.wg_sender = sender.map_or(0, u32::swap_bytes);
                ipsec.wg_receiver = receiver.map_or(0, u32::swap_bytes);
            }
        }
        _ => {}
    }
}

fn link_layer(link: LinkType, f: &[u8]) -> Step<(usize, IpVersion)> {
    match link {
        LinkType::ETHERNET => ethernet(f, 0, 0),
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => raw_ip(f, 0),
        LinkType::IPV4 => Ok((0, IpVersion::V4)),
        LinkType::IPV6 => Ok((0, IpVersion::V6)),
        LinkType::LINUX_SLL => {
            need(Layer::LinuxSll, 0, 16, f.len())?;
            ethertype(f, be16(f, 14), 16, 0)
        }
        LinkType::LINUX_SLL2 => {
            need(Layer::LinuxSll2, 0, 20, f.len())?;
            ethertype(f, be16(f, 0), 20, 0)
        }
        LinkType::NULL | LinkType::LOOP => {
            need(Layer::Null, 0, 4, f.len())?;
            let bytes = [f[0], f[1], f[2], f[3]];
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(bytes)
            } else {
                // Written in the capturing host's byte order: the family is
                // small, so whichever reading is small is the right one.
                let le = u32::from_le_bytes(bytes);
                if le < 0x1_0000 {
                    le
                } else {
                    u32::from_be_bytes(bytes)
                }
            };
            match family {
                2 => Ok((4, IpVersion::V4)),
                // AF_INET6 on NetBSD/OpenBSD (24), FreeBSD (28), Darwin (30), Linux (10).
                10 | 24 | 28 | 30 => Ok((4, IpVersion::V6)),
                _ => Err(Stop::Skip(SkipReason::NullNonIp)),
            }
        }
        LinkType::PPP => ppp(f, 0),
        LinkType::PPP_HDLC | LinkType::C_HDLC => {
            need(Layer::Ppp, 0, 2, f.len())?;
            if f[0] == 0x0f || f[0] == 0x8f {
                // Cisco HDLC: address, control, EtherType.
                need(Layer::Ppp, 0, 4, f.len())?;
                ethertype(f, be16(f, 2), 4, 0)
            } else {
                ppp(f, 0)
            }
        }
        _ => Err(Stop::Skip(SkipReason::UnsupportedLinkType)),
    }
}

fn raw_ip(f: &[u8], at: usize) -> Step<(usize, IpVersion)> {
    need(Layer::Ipv4, at, 1, f.len())?;
    match f[at] >> 4 {
        4 => Ok((at, IpVersion::V4)),
        6 => Ok((at, IpVersion::V6)),
        _ => Err(Stop::Skip(SkipReason::RawNotIp)),
    }
}

/// Depth bounds recursion through pseudowires carrying Ethernet.
const MAX_DEPTH: u8 = 4;

fn ethernet(f: &[u8], at: usize, depth: u8) -> Step<(usize, IpVersion)> {
    need(Layer::Ethernet, at, 14, f.len())?;
    ethertype(f, be16(f, at + 12), at + 14, depth)
}

/// Follows an EtherType chain starting with `et`, whose payload starts at `at`.
fn ethertype(f: &[u8], mut et: u16, mut at: usize, depth: u8) -> Step<(usize, IpVersion)> {
    loop {
        match et {
            0x0800 => return Ok((at, IpVersion::V4)),
            0x86dd => return Ok((at, IpVersion::V6)),
            // 802.1Q, 802.1ad, and the pre-standard QinQ tags.
            0x8100 | 0x88a8 | 0x9100 | 0x9200 | 0x9300 => {
                need(Layer::Vlan, at, 4, f.len())?;
                et = be16(f, at + 2);
                at += 4;
            }
            // Cisco VN-Tag: 4 bytes of tag, then the next EtherType.
            0x8926 => {
                need(Layer::Vlan, at, 6, f.len())?;
                et = be16(f, at + 4);
                at += 6;
            }
            0x8847 | 0x8848 => return mpls(f, at, depth),
            // Cisco FabricPath: FTag/TTL, then the original Ethernet frame.
            0x8903 if depth < MAX_DEPTH => return ethernet(f, at + 2, depth + 1),
            0x8864 => {
                // PPPoE session: version/type, code, session id, length, then PPP protocol.
                need(Layer::Pppoe, at, 8, f.len())?;
                return match be16(f, at + 6) {
                    0x0021 => Ok((at + 8, IpVersion::V4)),
                    0x0057 => Ok((at + 8, IpVersion::V6)),
                    _ => Err(Stop::Skip(SkipReason::PppNonIp)),
                };
            }
            0x0806 | 0x8035 => return Err(Stop::Skip(SkipReason::Arp)),
            0x88cc => return Err(Stop::Skip(SkipReason::Lldp)),
            t if t < 0x0600 => return Err(Stop::Skip(SkipReason::Llc)),
            _ => return Err(Stop::Skip(SkipReason::OtherEthertype)),
        }
    }
}

fn mpls(f: &[u8], mut at: usize, depth: u8) -> Step<(usize, IpVersion)> {
    loop {
        need(Layer::Mpls, at, 4, f.len())?;
        let bottom = f[at + 2] & 0x01 != 0;
        at += 4;
        if bottom {
            break;
        }
    }
    need(Layer::Mpls, at, 1, f.len())?;
    match f[at] >> 4 {
        4 => Ok((at, IpVersion::V4)),
        6 => Ok((at, IpVersion::V6)),
        // A pseudowire control word (first nibble 0), then an Ethernet frame.
        0 if depth < MAX_DEPTH => ethernet(f, at + 4, depth + 1),
        _ => Err(Stop::Skip(SkipReason::MplsNonIp)),
    }
}

/// An IEEE 802.11 data frame with an LLC/SNAP header in front of IP.
fn ieee80211(f: &[u8], at: usize) -> Step<(usize, IpVersion)> {
    need(Layer::Ieee80211, at, 24, f.len())?;
    let (fc0, fc1) = (f[at], f[at + 1]);
    // Type 2 (data); subtypes with bit 2 set carry no data.
    if (fc0 >> 2) & 0x3 != 2 || fc0 & 0x40 != 0 {
        return Err(Stop::Skip(SkipReason::OtherEthertype));
    }
    let mut len = 24;
    if fc1 & 0x03 == 0x03 {
        // To DS and From DS: a fourth address.
        len += 6;
    }
    if fc0 & 0x80 != 0 {
        // QoS control, and HT control when the order bit is set.
        len += 2;
        if fc1 & 0x80 != 0 {
            len += 4;
        }
    }
    need(Layer::Ieee80211, at, len + 8, f.len())?;
    let llc = at + len;
    if f[llc..llc + 6] != [0xaa, 0xaa, 0x03, 0, 0, 0] {
        return Err(Stop::Skip(SkipReason::Llc));
    }
    ethertype(f, be16(f, llc + 6), llc + 8, MAX_DEPTH)
}

fn ppp(f: &[u8], mut at: usize) -> Step<(usize, IpVersion)> {
    need(Layer::Ppp, at, 1, f.len())?;
    if f[at] == 0xff {
        // HDLC address 0xff and control 0x03.
        need(Layer::Ppp, at, 2, f.len())?;
        at += 2;
    }
    need(Layer::Ppp, at, 1, f.len())?;
    // Protocol-field compression: an odd first byte is a 1-byte protocol.
    let (protocol, len) = if f[at] & 1 == 1 {
        (u16::from(f[at]), 1)
    } else {
        need(Layer::Ppp, at, 2, f.len())?;
        (be16(f, at), 2)
    };
    match protocol {
        0x0021 => Ok((at + len, IpVersion::V4)),
        0x0057 => Ok((at + len, IpVersion::V6)),
        _ => Err(Stop::Skip(SkipReason::PppNonIp)),
    }
}

/// Decodes the IP header at `at` into `repr` (written in place: packets
/// are large, and each move costs) and returns where its transport header
/// starts and where its datagram ends in the frame. On error `repr` holds
/// a part of the packet.
#[inline(always)]
fn ip(
    f: &[u8],
    at: usize,
    version: IpVersion,
    repr: &mut PacketRepr,
) -> Result<(usize, usize), DecodeError> {
    match version {
        IpVersion::V4 => ipv4(f, at, repr),
        IpVersion::V6 => ipv6(f, at, repr),
    }
}

#[inline(always)]
fn ipv4(f: &[u8], at: usize, repr: &mut PacketRepr) -> Result<(usize, usize), DecodeError> {
    need(Layer::Ipv4, at, 20, f.len())?;
    if f[at] >> 4 != 4 {
        return Err(DecodeError::new(
            Layer::Ipv4,
            at,
            DecodeErrorKind::BadVersion,
        ));
    }
    let header_len = usize::from(f[at] & 0x0f) * 4;
    if header_len < 20 {
        return Err(DecodeError::new(
            Layer::Ipv4,
            at,
            DecodeErrorKind::BadHeaderLength,
        ));
    }
    need(Layer::Ipv4, at, header_len, f.len())?;
    let total_len = usize::from(be16(f, at + 2));
    let captured = f.len() - at;
    let (ip_bytes, end) = if total_len == 0 {
        // TSO / GSO super-frames carry total length 0: count what was captured.
        (captured, f.len())
    } else if total_len < header_len {
        return Err(DecodeError::new(
            Layer::Ipv4,
            at,
            DecodeErrorKind::BadTotalLength,
        ));
    } else {
        // Trailing Ethernet padding is not part of the datagram.
        (total_len, f.len().min(at + total_len))
    };
    let id = u32::from(be16(f, at + 4));
    let flags_offset = be16(f, at + 6);
    let more = flags_offset & 0x2000 != 0;
    let fragment = if flags_offset & 0x1fff != 0 {
        Fragment::Later { id }
    } else if more {
        Fragment::First { id }
    } else {
        Fragment::Whole
    };
    let src = Ipv4Addr::new(f[at + 12], f[at + 13], f[at + 14], f[at + 15]);
    let dst = Ipv4Addr::new(f[at + 16], f[at + 17], f[at + 18], f[at + 19]);
    *repr = PacketRepr {
        ip_bytes: u32::try_from(ip_bytes).unwrap_or(u32::MAX),
        ttl: f[at + 8],
        tos: f[at + 1],
        fragment,
        ..PacketRepr::new(IpAddr::V4(src), IpAddr::V4(dst), f[at + 9])
    };
    let mut l4 = at + header_len;
    if repr.has_transport_header() {
        // Authentication Header: skip to what it protects.
        if repr.protocol == 51 {
            need(Layer::Ipv6Ext, l4, 12, end)?;
            let len = (usize::from(f[l4 + 1]) + 2) * 4;
            need(Layer::Ipv6Ext, l4, len, end)?;
            repr.protocol = f[l4];
            repr.extra_mut().ipsec.ah_spi = be32(f, l4 + 4);
            l4 += len;
        }
        transport_lax(f, l4, end, at, repr);
    }
    Ok((l4, end))
}

#[inline(always)]
fn ipv6(f: &[u8], at: usize, repr: &mut PacketRepr) -> Result<(usize, usize), DecodeError> {
    need(Layer::Ipv6, at, 40, f.len())?;
    if f[at] >> 4 != 6 {
        return Err(DecodeError::new(
            Layer::Ipv6,
            at,
            DecodeErrorKind::BadVersion,
        ));
    }
    let tos = (f[at] << 4) | (f[at + 1] >> 4);
    let flow_label = be32(f, at) & 0x000f_ffff;
    let payload_len = usize::from(be16(f, at + 4));
    let mut next = f[at + 6];
    let captured = f.len() - at;
    let (ip_bytes, end) = if payload_len == 0 && next == 0 {
        // Jumbogram or GSO: no length in the fixed header.
        (captured, f.len())
    } else {
        (40 + payload_len, f.len().min(at + 40 + payload_len))
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&f[at + 8..at + 24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&f[at + 24..at + 40]);
    let mut fragment = Fragment::Whole;
    let mut ah_spi = 0;
    let mut l4 = at + 40;
    loop {
        match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => {
                need(Layer::Ipv6Ext, l4, 2, end)?;
                let len = (usize::from(f[l4 + 1]) + 1) * 8;
                need(Layer::Ipv6Ext, l4, len, end)?;
                next = f[l4];
                l4 += len;
            }
            44 => {
                need(Layer::Ipv6Ext, l4, 8, end)?;
                let offset_flags = be16(f, l4 + 2);
                let id = be32(f, l4 + 4);
                next = f[l4];
                l4 += 8;
                if offset_flags & 0xfff8 != 0 {
                    fragment = Fragment::Later { id };
                    break;
                } else if offset_flags & 1 != 0 {
                    fragment = Fragment::First { id };
                }
                // Offset 0 without M is an atomic fragment (RFC 6946): whole.
            }
            51 => {
                need(Layer::Ipv6Ext, l4, 12, end)?;
                let len = (usize::from(f[l4 + 1]) + 2) * 4;
                need(Layer::Ipv6Ext, l4, len, end)?;
                next = f[l4];
                if ah_spi == 0 {
                    ah_spi = be32(f, l4 + 4);
                }
                l4 += len;
            }
            _ => break,
        }
    }
    *repr = PacketRepr {
        ip_bytes: u32::try_from(ip_bytes).unwrap_or(u32::MAX),
        ttl: f[at + 7],
        tos,
        flow_label,
        fragment,
        ..PacketRepr::new(
            IpAddr::V6(Ipv6Addr::from(src)),
            IpAddr::V6(Ipv6Addr::from(dst)),
            next,
        )
    };
    if ah_spi != 0 {
        repr.extra_mut().ipsec.ah_spi = ah_spi;
    }
    if repr.has_transport_header() {
        transport_lax(f, l4, end, at, repr);
    }
    Ok((l4, end))
}

/// Decodes the transport header at `l4` (the IP header at `at`); one cut
/// short leaves the packet its IP-level flow (addresses and protocol, no
/// ports), with where decoding stopped in [`PacketRepr::stopped`], as
/// etherparse's lax slicing does.
#[inline(always)]
fn transport_lax(f: &[u8], l4: usize, end: usize, at: usize, repr: &mut PacketRepr) {
    match transport(f, l4, end, repr) {
        Ok(()) => repr.add_headers(l4 - at),
        Err(e) => stopped_at(repr, e),
    }
}

/// Out of line: rare.
#[cold]
#[inline(never)]
fn stopped_at(repr: &mut PacketRepr, e: DecodeError) {
    repr.extra_mut().stopped = Some(e);
}

#[inline(always)]
fn transport(f: &[u8], at: usize, end: usize, repr: &mut PacketRepr) -> Result<(), DecodeError> {
    match repr.protocol {
        6 => {
            // Ports, sequence numbers and flags; options are not needed.
            need(Layer::Tcp, at, 14, end)?;
            repr.src_port = be16(f, at);
            repr.dst_port = be16(f, at + 2);
            repr.tcp_seq = be32(f, at + 4);
            repr.tcp_ack = be32(f, at + 8);
            repr.tcp_flags = (u16::from(f[at + 12] & 0x01) << 8) | u16::from(f[at + 13]);
            // A data offset below 5 words is not a TCP header: its payload
            // length is then unknown (0 marks that, as for other transports).
            let offset = u16::from(f[at + 12] >> 4);
            repr.headers = if offset >= 5 { offset * 4 } else { 0 };
        }
        17 => {
            need(Layer::Udp, at, 4, end)?;
            repr.src_port = be16(f, at);
            repr.dst_port = be16(f, at + 2);
            repr.headers = 8;
        }
        132 => {
            need(Layer::Sctp, at, 12, end)?;
            repr.src_port = be16(f, at);
            repr.dst_port = be16(f, at + 2);
            if end > at + 12 {
                repr.sctp_chunk = f[at + 12];
            }
        }
        1 => {
            need(Layer::Icmp, at, 2, end)?;
            repr.icmp_type = f[at];
            repr.icmp_code = f[at + 1];
        }
        58 => {
            need(Layer::Icmpv6, at, 2, end)?;
            repr.icmp_type = f[at];
            repr.icmp_code = f[at + 1];
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (no options) + TCP SYN 10.0.0.1:40000 -> 10.0.0.2:80.
    const ETH_IPV4_TCP_SYN: [u8; 54] = [
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
        0x45, 0xb8, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // ipv4
        10, 0, 0, 1, 10, 0, 0, 2, //
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0,
        0, // tcp
    ];

    #[test]
    fn a_super_frame_counts_as_its_segments() {
        let Decoded::Ip(mut p) = decode(LinkType::ETHERNET, &ETH_IPV4_TCP_SYN) else {
            panic!("not decoded");
        };
        assert_eq!(p.headers, 40, "IPv4 20 + TCP 20");
        assert_eq!(p.src_mac, [0x02, 0, 0, 0, 0, 1]);
        assert_eq!(p.dst_mac, [0x02, 0, 0, 0, 0, 2]);
        assert_eq!(p.count_segments(1448), None, "no payload");
        // As GRO would leave it: 4000 payload bytes in one 4040-byte packet.
        p.ip_bytes = 4040;
        assert_eq!(p.count_segments(1448), Some(3));
        assert_eq!((p.segments, p.ip_bytes), (3, 4040 + 2 * 40));
        let mut small = p.clone();
        small.ip_bytes = 1000;
        small.segments = 1;
        assert_eq!(small.count_segments(1448), None, "fits one segment");
        let mut icmp = p;
        icmp.protocol = 1;
        assert_eq!(icmp.count_segments(1448), None);
    }

    #[test]
    fn parse_ethernet_ipv4_tcp() {
        let Decoded::Ip(p) = decode(LinkType::ETHERNET, &ETH_IPV4_TCP_SYN) else {
            panic!("not decoded");
        };
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((p.protocol, p.src_port, p.dst_port), (6, 40000, 80));
        assert_eq!(p.tcp_flags, 0x02);
        assert_eq!(p.ip_bytes, 40);
        assert_eq!((p.ttl, p.tos), (64, 0xb8));
        assert_eq!(p.fragment, Fragment::Whole);
    }

    #[test]
    fn truncated_at_every_length() {
        // TCP needs 14 bytes (ports and flags): frames of 48 bytes and more
        // decode whole; from 34 bytes (a whole IP header) the packet is its
        // IP-level flow, with where decoding stopped.
        for len in 0..ETH_IPV4_TCP_SYN.len() {
            match decode(LinkType::ETHERNET, &ETH_IPV4_TCP_SYN[..len]) {
                Decoded::Malformed(e) => {
                    let expected = match len {
                        0..14 => Layer::Ethernet,
                        14..34 => Layer::Ipv4,
                        _ => panic!("length {len}: unexpected error {e}"),
                    };
                    assert_eq!(e.layer, expected, "length {len}");
                }
                Decoded::Ip(p) if len < 48 => {
                    assert!(len >= 34, "length {len} decoded");
                    let e = p.stopped().expect("where decoding stopped");
                    assert_eq!((e.layer, usize::from(e.offset)), (Layer::Tcp, 34));
                    assert_eq!(
                        e.kind,
                        DecodeErrorKind::Truncated {
                            need: 14,
                            have: (len - 34) as u16
                        }
                    );
                    assert_eq!((p.protocol, p.src_port, p.dst_port), (6, 0, 0));
                    assert_eq!((p.tcp_flags, p.headers), (0, 0));
                    assert!(!p.has_transport_header());
                    assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
                }
                Decoded::Ip(p) => {
                    assert_eq!(p.stopped(), None, "length {len}");
                    assert_eq!((p.src_port, p.tcp_flags), (40000, 0x02));
                }
                other => panic!("length {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn snaplen_truncated_payload_counts_wire_bytes() {
        let mut frame = ETH_IPV4_TCP_SYN.to_vec();
        frame[16..18].copy_from_slice(&1500u16.to_be_bytes());
        let Decoded::Ip(p) = decode(LinkType::ETHERNET, &frame) else {
            panic!("not decoded");
        };
        assert_eq!(p.ip_bytes, 1500);
    }

    #[test]
    fn qinq_and_mpls_and_pppoe() {
        let ip = &ETH_IPV4_TCP_SYN[14..];
        let mut qinq = ETH_IPV4_TCP_SYN[..12].to_vec();
        qinq.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        qinq.extend_from_slice(ip);
        assert!(matches!(decode(LinkType::ETHERNET, &qinq), Decoded::Ip(_)));

        let mut mpls = ETH_IPV4_TCP_SYN[..12].to_vec();
        mpls.extend_from_slice(&[0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64]);
        mpls.extend_from_slice(ip);
        assert!(matches!(decode(LinkType::ETHERNET, &mpls), Decoded::Ip(_)));

        let mut pppoe = ETH_IPV4_TCP_SYN[..12].to_vec();
        pppoe.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 1, 0, 42, 0x00, 0x21]);
        pppoe.extend_from_slice(ip);
        assert!(matches!(decode(LinkType::ETHERNET, &pppoe), Decoded::Ip(_)));
    }

    #[test]
    fn non_ip_is_skipped_not_malformed() {
        let mut arp = ETH_IPV4_TCP_SYN.to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            decode(LinkType::ETHERNET, &arp),
            Decoded::Skipped(SkipReason::Arp)
        );
        assert_eq!(
            decode(LinkType(147), &arp),
            Decoded::Skipped(SkipReason::UnsupportedLinkType)
        );
    }

    #[test]
    fn null_loopback_either_byte_order() {
        let ip = &ETH_IPV4_TCP_SYN[14..];
        for family in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let mut f = family.to_vec();
            f.extend_from_slice(ip);
            assert!(matches!(decode(LinkType::NULL, &f), Decoded::Ip(_)));
        }
    }

    /// The frames of a little-endian microsecond pcap.
    fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= file.len() {
            let len =
                u32::from_le_bytes([file[at + 8], file[at + 9], file[at + 10], file[at + 11]]);
            let end = at + 16 + len as usize;
            out.push(&file[at + 16..end]);
            at = end;
        }
        out
    }

    /// Every encapsulation of the fixtures, truncated at every length and
    /// with every byte replaced: no panic, the packet is never dropped
    /// (a frame that decoded whole still decodes, or is malformed only
    /// where its outer headers are cut), and inner bytes plus overhead are
    /// the outer packet's bytes.
    #[test]
    fn tunnel_frames_cut_or_corrupted_anywhere_are_kept() {
        let files: [&[u8]; 3] = [
            include_bytes!("../../testdata/pcap/tunnels.pcap"),
            include_bytes!("../../testdata/pcap/tunnels_malformed.pcap"),
            include_bytes!("../../testdata/pcap/ipsec_wireguard.pcap"),
        ];
        let mut tunnelled = 0;
        for frame in files.iter().flat_map(|f| pcap_frames(f)) {
            let Decoded::Ip(whole) = decode(LinkType::ETHERNET, frame) else {
                panic!("fixture frame not decoded");
            };
            let outer = outer_ip_bytes(frame);
            if let Some(e) = whole.encap() {
                tunnelled += 1;
                assert_eq!(whole.ip_bytes + e.tunnel_bytes + e.ipip_bytes, outer);
            }
            // Where the outer transport header starts (after an AH, if any):
            // a cut before or inside it is the only malformed outcome.
            let outer_l4 = outer_transport_at(frame);
            for len in 0..frame.len() {
                match decode(LinkType::ETHERNET, &frame[..len]) {
                    Decoded::Ip(p) => {
                        if let Some(e) = p.encap() {
                            assert!(p.ip_bytes + e.tunnel_bytes + e.ipip_bytes <= outer);
                        } else if whole.encap().is_some() && !is_teredo(&whole) {
                            // Cut inside the tunnel (or the outer transport
                            // header): counted as an error, never silently
                            // the outer flow.
                            assert!(
                                p.tunnel_error().is_some() || p.stopped().is_some(),
                                "length {len}: {p:?}"
                            );
                        }
                    }
                    Decoded::Malformed(e) => assert!(
                        usize::from(e.offset) <= outer_l4,
                        "length {len}: {e} (outer transport at {outer_l4})"
                    ),
                    Decoded::Skipped(r) => panic!("length {len}: skipped {r:?}"),
                }
            }
            let mut bytes = frame.to_vec();
            for at in 0..bytes.len() {
                let keep = bytes[at];
                for v in [0x00, 0xff, keep ^ 0x80] {
                    bytes[at] = v;
                    let _ = decode(LinkType::ETHERNET, &bytes);
                }
                bytes[at] = keep;
            }
        }
        assert!(tunnelled > 100, "{tunnelled} tunnelled frames");
    }

    /// The offset of the outer transport header of an untagged Ethernet
    /// frame (the fixtures' IPv6 outer headers have no extension headers).
    fn outer_transport_at(frame: &[u8]) -> usize {
        match be16(frame, 12) {
            0x0800 => {
                let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
                if frame[23] == 51 {
                    l4 + (usize::from(frame[l4 + 1]) + 2) * 4
                } else {
                    l4
                }
            }
            _ => 14 + 40,
        }
    }

    /// Teredo is recognised by the exact length of the IPv6 packet inside,
    /// so a cut Teredo packet is plain UDP, not an error.
    fn is_teredo(p: &PacketRepr) -> bool {
        p.encap()
            .and_then(|e| e.tunnel)
            .is_some_and(|t| t.kind == TunnelKind::Teredo)
    }

    /// The IP bytes of the outermost header of an untagged Ethernet frame.
    fn outer_ip_bytes(frame: &[u8]) -> u32 {
        match be16(frame, 12) {
            0x0800 => u32::from(be16(frame, 16)),
            _ => 40 + u32::from(be16(frame, 18)),
        }
    }
}
