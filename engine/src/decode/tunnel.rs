//! Tunnels: which encapsulation a packet's transport header starts, and the
//! headers that describe it.
//!
//! [`Decoder::decode`](super::Decoder::decode) peels layers off from the
//! outside in: IP-in-IP (4in4, 6in4, 4in6, 6in6), GRE (with checksum, key
//! and sequence number; IP, transparent Ethernet bridging, PPP of PPTP's
//! enhanced GRE, and ERSPAN types I, II and III), and over UDP VXLAN,
//! Geneve, GTP-U and Teredo. The innermost packet is the flow's; the
//! outermost tunnel and the outermost IP-in-IP header are kept in
//! [`Encap`], the layers between them only in its fingerprint.

use std::net::IpAddr;

use super::ip::ip;
use super::link::{ethernet, ieee80211, ppp};
use super::{
    Decoder, Fragment, IpVersion, MAX_TUNNELS, PacketRepr, Stop, UNSPECIFIED, be16, be32, need,
};
use crate::error::{DecodeError, DecodeErrorKind, Layer};

/// A tunnel protocol that is not IP-in-IP (`tunnel.type`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunnelKind {
    /// VXLAN (RFC 7348).
    Vxlan,
    /// Geneve (RFC 8926).
    Geneve,
    /// GRE (RFC 2784/2890), including PPTP's enhanced GRE (RFC 2637).
    Gre,
    /// ERSPAN types I, II and III over GRE.
    Erspan,
    /// GTP-U (3GPP TS 29.281), G-PDU messages.
    GtpU,
    /// Teredo (RFC 4380).
    Teredo,
}

impl TunnelKind {
    /// The `tunnel.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::GtpU => "gtpu",
            TunnelKind::Teredo => "teredo",
        }
    }
}

/// The outer headers of a tunnel as one packet carried them.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelHeader {
    /// The tunnel protocol.
    pub kind: TunnelKind,
    /// VNI (VXLAN, Geneve), key (GRE), session id (ERSPAN II/III) or
    /// TEID (GTP-U), when the header has one.
    pub id: Option<u32>,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
    /// Outer UDP source port (0 for GRE).
    pub src_port: u16,
    /// Outer UDP destination port (0 for GRE).
    pub dst_port: u16,
    /// Outer transport protocol: 17 (UDP) or 47 (GRE).
    pub transport: u8,
    /// Source address of the outermost Ethernet header (zero without one).
    pub src_mac: [u8; 6],
}

impl TunnelHeader {
    /// The same header as the other direction would carry it: addresses
    /// and ports swapped.
    pub fn reversed(&self) -> TunnelHeader {
        TunnelHeader {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }
}

/// The outer header of an IP-in-IP encapsulation (`ipip.*`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpIpHeader {
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
    /// What the outer header says it carries: 4 (IPv4) or 41 (IPv6).
    pub protocol: u8,
}

impl IpIpHeader {
    /// The same header as the other direction would carry it.
    pub fn reversed(&self) -> IpIpHeader {
        IpIpHeader {
            src: self.dst,
            dst: self.src,
            ..*self
        }
    }
}

/// What encapsulated a packet. Empty (`fingerprint == 0`) for a packet
/// that was not tunnelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encap {
    /// The outermost tunnel that is not IP-in-IP.
    pub tunnel: Option<TunnelHeader>,
    /// The outermost IP-in-IP header.
    pub ipip: Option<IpIpHeader>,
    /// Identifies the tunnels the packet travelled in, the same for both
    /// directions: each layer's type, its shared identifier and its two
    /// endpoint addresses, outermost first. 0 when not tunnelled.
    pub fingerprint: u64,
    /// Bytes of encapsulation (outer IP headers, UDP, tunnel headers, inner
    /// Ethernet) counted under `tunnel.*`: every encapsulation byte but
    /// those of `ipip_bytes`.
    pub tunnel_bytes: u32,
    /// Bytes counted under `ipip.*`: the outermost IP-in-IP header when
    /// there is another tunnel, else every encapsulation byte.
    pub ipip_bytes: u32,
    /// SPI of an Authentication Header in the outermost IP header of a
    /// tunnelled packet (0: none).
    pub outer_ah_spi: u32,
}

impl Encap {
    /// The fingerprint of a packet that came in one tunnel of `kind` between
    /// `src` and `dst` with `shared_id` (the identifier both directions
    /// carry, as VXLAN's and Geneve's VNI): what a kernel program that
    /// decapsulates such packets itself gives the flow key.
    pub fn one_tunnel_fingerprint(
        kind: TunnelKind,
        shared_id: Option<u32>,
        src: IpAddr,
        dst: IpAddr,
    ) -> u64 {
        fold(0, Some(kind), shared_id, src, dst)
    }

    /// Whether the packet was tunnelled.
    pub fn is_tunnelled(&self) -> bool {
        self.fingerprint != 0
    }
}

/// UDP ports that carry tunnels, by destination port (Teredo: either
/// port). Scanned in order; a handful of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPorts {
    ports: Vec<(u16, UdpTunnel)>,
    /// Whether Teredo is looked for at all (then also off its port).
    teredo: bool,
}

/// A tunnel carried over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpTunnel {
    /// VXLAN.
    Vxlan,
    /// Geneve.
    Geneve,
    /// GTP-U.
    GtpU,
    /// Teredo.
    Teredo,
}

impl UdpTunnel {
    /// Every UDP tunnel, in the order of [`name`](Self::name)s in help text.
    pub const ALL: [UdpTunnel; 4] = [
        UdpTunnel::Vxlan,
        UdpTunnel::Geneve,
        UdpTunnel::GtpU,
        UdpTunnel::Teredo,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            UdpTunnel::Vxlan => "vxlan",
            UdpTunnel::Geneve => "geneve",
            UdpTunnel::GtpU => "gtpu",
            UdpTunnel::Teredo => "teredo",
        }
    }

    /// The IANA ports (and Linux's historical VXLAN port 8472).
    pub fn default_ports(self) -> &'static [u16] {
        match self {
            UdpTunnel::Vxlan => &[4789, 8472],
            UdpTunnel::Geneve => &[6081],
            UdpTunnel::GtpU => &[2152],
            UdpTunnel::Teredo => &[3544],
        }
    }
}

impl Default for TunnelPorts {
    fn default() -> Self {
        let mut ports = Vec::new();
        for t in UdpTunnel::ALL {
            ports.extend(t.default_ports().iter().map(|&p| (p, t)));
        }
        TunnelPorts {
            ports,
            teredo: true,
        }
    }
}

impl TunnelPorts {
    /// No UDP port carries a tunnel.
    pub fn none() -> TunnelPorts {
        TunnelPorts {
            ports: Vec::new(),
            teredo: false,
        }
    }

    /// Replaces the ports of `tunnel` with `ports`.
    pub fn set(&mut self, tunnel: UdpTunnel, ports: &[u16]) {
        self.ports.retain(|&(_, t)| t != tunnel);
        self.ports.extend(ports.iter().map(|&p| (p, tunnel)));
        self.teredo = self.ports.iter().any(|&(_, t)| t == UdpTunnel::Teredo);
    }

    /// The ports of `tunnel`.
    pub fn ports(&self, tunnel: UdpTunnel) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .filter(move |&&(_, t)| t == tunnel)
            .map(|&(p, _)| p)
    }

    /// Every port that carries a tunnel.
    pub(super) fn all_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().map(|&(p, _)| p)
    }

    /// Whether Teredo is looked for at all (then also off its port).
    pub(super) fn teredo_anywhere(&self) -> bool {
        self.teredo
    }

    /// Whether UDP between these ports is looked at as a tunnel.
    pub(super) fn carries_tunnel(&self, src_port: u16, dst_port: u16) -> bool {
        self.lookup(src_port, dst_port).is_some()
    }

    fn lookup(&self, src_port: u16, dst_port: u16) -> Option<UdpTunnel> {
        self.ports.iter().find_map(|&(p, t)| {
            (p == dst_port || (t == UdpTunnel::Teredo && p == src_port)).then_some(t)
        })
    }
}

/// What a tunnel header carries.
pub(super) enum Payload {
    /// An IP packet of the version the tunnel header gives at this offset.
    Ip(usize, IpVersion),
    /// An Ethernet frame at this offset.
    Ethernet(usize),
    /// A PPP frame at this offset.
    Ppp(usize),
    /// An IEEE 802.11 data frame at this offset (Aruba's GRE).
    Ieee80211(usize),
}

/// One encapsulation layer found after a packet's IP header.
pub(super) struct Found {
    /// `None` for IP-in-IP.
    pub kind: Option<TunnelKind>,
    pub id: Option<u32>,
    /// Whether both directions carry the same `id`, so that it can tell
    /// tunnels apart. GTP-U's TEID and PPTP's call id are chosen by each
    /// receiver: the two directions of one tunnel carry different ones.
    pub id_shared: bool,
    pub payload: Payload,
}

fn bad(layer: Layer, at: usize) -> DecodeError {
    DecodeError::new(layer, at, DecodeErrorKind::BadTunnelHeader)
}

/// Whether [`find`] may find a tunnel (or a broken tunnel header) here:
/// a quick test, so that the packets of most flows skip the rest.
#[inline]
pub(super) fn may_carry(
    ports: &TunnelPorts,
    f: &[u8],
    p: &PacketRepr,
    l4: usize,
    end: usize,
) -> bool {
    match p.protocol {
        4 | 41 | 47 => true,
        17 => {
            ports.lookup(p.src_port, p.dst_port).is_some()
                || (ports.teredo_anywhere() && {
                    // Exactly one IPv6 packet as the UDP payload, or a
                    // Teredo indicator (a zero byte) before one.
                    let at = l4 + 8;
                    (end >= at + 40 && f.get(at) == Some(&0)) || one_ipv6_packet(f, at, end)
                })
        }
        _ => false,
    }
}

/// The encapsulation that starts at the transport header `l4` (whose
/// datagram ends at `end`) of packet `p`, if any.
///
/// # Errors
/// The tunnel header is truncated or invalid.
pub(super) fn find(
    ports: &TunnelPorts,
    f: &[u8],
    p: &PacketRepr,
    l4: usize,
    end: usize,
) -> Result<Option<Found>, DecodeError> {
    match p.protocol {
        4 | 41 => Ok(Some(Found {
            kind: None,
            id: None,
            id_shared: true,
            payload: Payload::Ip(l4, ip_version(p.protocol == 41)),
        })),
        47 => gre(f, l4, end),
        17 => match ports.lookup(p.src_port, p.dst_port) {
            Some(t) => udp(t, f, l4, end),
            // Teredo between a client and a peer or relay uses any port:
            // taken when the payload is exactly one IPv6 packet to or from
            // a Teredo address (2001::/32).
            None if ports.teredo_anywhere() => Ok(teredo(f, l4 + 8, end).filter(|found| {
                let Payload::Ip(at, _) = found.payload else {
                    return false;
                };
                let teredo_prefix = |a: usize| f[a..a + 4] == [0x20, 0x01, 0, 0];
                teredo_prefix(at + 8) || teredo_prefix(at + 24)
            })),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

fn gre(f: &[u8], at: usize, end: usize) -> Result<Option<Found>, DecodeError> {
    need(Layer::Gre, at, 4, end)?;
    let flags = be16(f, at);
    let protocol = be16(f, at + 2);
    let version = flags & 0x0007;
    let (checksum, routing, key, sequence) = (
        flags & 0x8000 != 0,
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    if routing {
        // Source routing (RFC 1701) is obsolete: left as a GRE flow.
        return Ok(None);
    }
    let mut len = 4;
    match version {
        0 => {
            len += 4 * (usize::from(checksum) + usize::from(key) + usize::from(sequence));
        }
        1 => {
            // PPTP's enhanced GRE: key (payload length, call id) always,
            // sequence and acknowledgment numbers when flagged.
            if !key || protocol != 0x880b {
                return Err(bad(Layer::Gre, at));
            }
            let ack = flags & 0x0080 != 0;
            len += 4 + 4 * (usize::from(sequence) + usize::from(ack));
        }
        _ => return Err(bad(Layer::Gre, at)),
    }
    need(Layer::Gre, at, len, end)?;
    let id = match (version, key) {
        (0, true) => Some(be32(f, at + 4 + 4 * usize::from(checksum))),
        // The call id, the second half of the key field.
        (1, _) => Some(u32::from(be16(f, at + 6))),
        _ => None,
    };
    let inner = at + len;
    let (kind, id, payload) = match protocol {
        0x0800 | 0x86dd => (
            TunnelKind::Gre,
            id,
            Payload::Ip(inner, ip_version(protocol == 0x86dd)),
        ),
        0x6558 => (TunnelKind::Gre, id, Payload::Ethernet(inner)),
        0x880b => (TunnelKind::Gre, id, Payload::Ppp(inner)),
        // Aruba access points to their controller: 802.11 frames.
        0x8200 | 0x8210 => (TunnelKind::Gre, id, Payload::Ieee80211(inner)),
        // ERSPAN type II has a sequence number and an 8-byte header; type I
        // has neither and mirrors the frame as it is.
        0x88be if sequence => {
            need(Layer::Erspan, inner, 8, end)?;
            if f[inner] >> 4 != 1 {
                return Err(bad(Layer::Erspan, inner));
            }
            let session = u32::from(be16(f, inner + 2) & 0x03ff);
            (
                TunnelKind::Erspan,
                Some(session),
                Payload::Ethernet(inner + 8),
            )
        }
        0x88be => (TunnelKind::Erspan, None, Payload::Ethernet(inner)),
        0x22eb => {
            // Type III: 12 bytes, and an 8-byte platform sub-header when
            // the O flag (the last bit) is set.
            need(Layer::Erspan, inner, 12, end)?;
            if f[inner] >> 4 != 2 {
                return Err(bad(Layer::Erspan, inner));
            }
            let session = u32::from(be16(f, inner + 2) & 0x03ff);
            let sub = if f[inner + 11] & 0x01 != 0 { 8 } else { 0 };
            need(Layer::Erspan, inner, 12 + sub, end)?;
            (
                TunnelKind::Erspan,
                Some(session),
                Payload::Ethernet(inner + 12 + sub),
            )
        }
        // Anything else (Cisco/Aruba proprietary payloads, MPLS, …) stays
        // a GRE flow between the tunnel endpoints.
        _ => return Ok(None),
    };
    Ok(Some(Found {
        kind: Some(kind),
        id,
        id_shared: version == 0,
        payload,
    }))
}

/// The tunnel of kind `t` in the UDP datagram at `l4`, if the payload is
/// one. Only a payload that looks like the tunnel's header (its fixed
/// fields agree) can be a broken tunnel header: anything else on the port
/// is ordinary UDP and stays a UDP flow.
fn udp(t: UdpTunnel, f: &[u8], l4: usize, end: usize) -> Result<Option<Found>, DecodeError> {
    let at = l4 + 8;
    // Where the datagram ends by its own header, if that was captured (a
    // capture cut short still shows a tunnel header cut short).
    let declared_end = (end >= l4 + 6).then(|| l4 + usize::from(be16(f, l4 + 4)));
    let too_short = declared_end.is_some_and(|d| d < at + 8);
    match t {
        UdpTunnel::Vxlan => {
            need(Layer::Vxlan, at, 8, end)?;
            // The I flag says the VNI is valid; RFC 7348 requires it.
            if f[at] & 0x08 == 0 {
                return Err(bad(Layer::Vxlan, at));
            }
            Ok(Some(Found {
                kind: Some(TunnelKind::Vxlan),
                id: Some(be32(f, at + 4) >> 8),
                id_shared: true,
                payload: Payload::Ethernet(at + 8),
            }))
        }
        UdpTunnel::Geneve => {
            // A Geneve header names its payload's EtherType and ends with
            // a reserved zero byte; without both it is not one.
            if too_short {
                return Ok(None);
            }
            need(Layer::Geneve, at, 8, end)?;
            if f[at + 7] != 0 {
                return Ok(None);
            }
            let len = 8 + usize::from(f[at] & 0x3f) * 4;
            let inner = at + len;
            let payload = match be16(f, at + 2) {
                0x6558 => Payload::Ethernet(inner),
                0x0800 => Payload::Ip(inner, IpVersion::V4),
                0x86dd => Payload::Ip(inner, IpVersion::V6),
                _ => return Ok(None),
            };
            if f[at] >> 6 != 0 {
                return Err(bad(Layer::Geneve, at));
            }
            need(Layer::Geneve, at, len, end)?;
            Ok(Some(Found {
                kind: Some(TunnelKind::Geneve),
                id: Some(be32(f, at + 4) >> 8),
                id_shared: true,
                payload,
            }))
        }
        UdpTunnel::GtpU => {
            // A GTP header gives the length of what follows its first 8
            // bytes, and a message type GTP-U uses.
            if too_short {
                return Ok(None);
            }
            need(Layer::Gtp, at, 8, end)?;
            let plausible = matches!(f[at + 1], 1 | 2 | 26 | 31 | 254 | 255)
                && declared_end.is_none_or(|d| at + 8 + usize::from(be16(f, at + 2)) == d);
            if !plausible {
                return Ok(None);
            }
            gtpu(f, at, end)
        }
        UdpTunnel::Teredo => Ok(teredo(f, at, end)),
    }
}

fn gtpu(f: &[u8], at: usize, end: usize) -> Result<Option<Found>, DecodeError> {
    need(Layer::Gtp, at, 8, end)?;
    let flags = f[at];
    // Version 1, protocol type GTP (not GTP').
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return Err(bad(Layer::Gtp, at));
    }
    if f[at + 1] != 0xff {
        // Echo, error indication, end marker, …: no user packet inside.
        return Ok(None);
    }
    let teid = be32(f, at + 4);
    let mut inner = at + 8;
    if flags & 0x07 != 0 {
        // Sequence number, N-PDU number and next extension header type.
        need(Layer::Gtp, inner, 4, end)?;
        let mut next = f[inner + 3];
        inner += 4;
        while next != 0 {
            need(Layer::Gtp, inner, 1, end)?;
            let len = usize::from(f[inner]) * 4;
            if len == 0 {
                return Err(bad(Layer::Gtp, inner));
            }
            need(Layer::Gtp, inner, len, end)?;
            next = f[inner + len - 1];
            inner += len;
        }
    }
    need(Layer::Gtp, inner, 1, end)?;
    let version = match f[inner] >> 4 {
        4 => IpVersion::V4,
        6 => IpVersion::V6,
        // Not IP (e.g. Ethernet or unstructured PDU sessions).
        _ => return Ok(None),
    };
    Ok(Some(Found {
        kind: Some(TunnelKind::GtpU),
        id: Some(teid),
        id_shared: false,
        payload: Payload::Ip(inner, version),
    }))
}

/// Teredo: an IPv6 packet in UDP, after optional authentication and origin
/// indication headers. Only what fits exactly is taken for Teredo; anything
/// else on the port stays a UDP flow.
fn teredo(f: &[u8], mut at: usize, end: usize) -> Option<Found> {
    if end >= at + 4 && f[at] == 0 && f[at + 1] == 1 {
        // Authentication: indicator, id length, auth length, id, auth,
        // nonce (8), confirmation (1).
        let len = 4 + usize::from(f[at + 2]) + usize::from(f[at + 3]) + 9;
        at += len;
    }
    if end >= at + 8 && f[at] == 0 && f[at + 1] == 0 {
        // Origin indication: indicator, port, address.
        at += 8;
    }
    if !one_ipv6_packet(f, at, end) {
        return None;
    }
    Some(Found {
        kind: Some(TunnelKind::Teredo),
        id: None,
        id_shared: true,
        payload: Payload::Ip(at, IpVersion::V6),
    })
}

/// Whether `f[at..end]` is exactly one IPv6 packet by its header's version
/// and payload length.
fn one_ipv6_packet(f: &[u8], at: usize, end: usize) -> bool {
    end >= at + 40
        && f.len() >= at + 6
        && f[at] >> 4 == 6
        && end - at == 40 + usize::from(be16(f, at + 4))
}

fn ip_version(v6: bool) -> IpVersion {
    if v6 { IpVersion::V6 } else { IpVersion::V4 }
}

/// Folds one layer (its kind, the identifier both directions share, if
/// any, and its endpoints) into a fingerprint, the same whichever direction
/// the packet went: the endpoints enter in sorted order. FNV-1a over the bytes,
/// then the SplitMix64 finaliser: written out here so that fingerprints
/// (and the trace ids made from them) never change with a dependency.
pub(super) fn fold(
    h: u64,
    kind: Option<TunnelKind>,
    shared_id: Option<u32>,
    a: IpAddr,
    b: IpAddr,
) -> u64 {
    fn eat(mut h: u64, bytes: &[u8]) -> u64 {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut x = eat(0xcbf2_9ce4_8422_2325, &h.to_le_bytes());
    x = eat(x, &[kind.map_or(0, |k| k as u8 + 1)]);
    match shared_id {
        Some(id) => {
            x = eat(x, &[1]);
            x = eat(x, &id.to_be_bytes());
        }
        None => x = eat(x, &[0]),
    }
    for addr in [lo, hi] {
        x = match addr {
            IpAddr::V4(v4) => eat(x, &v4.octets()),
            IpAddr::V6(v6) => eat(x, &v6.octets()),
        };
    }
    // 0 means "not tunnelled".
    splitmix_finish(x).max(1)
}

/// SplitMix64's finaliser, written out so that fingerprints, flow keys and
/// the trace ids made from them never change with a dependency.
pub(crate) fn splitmix_finish(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Decoder {
    /// Peels tunnels off `packet` (its IP header at `at`, transport header
    /// at `l4`, datagram ending at `end`): it becomes the innermost packet,
    /// and `l4` and `end` that packet's. Out of line: most packets do not
    /// come here ([`tunnel::may_carry`]).
    #[inline(never)]
    pub(super) fn decapsulate(
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
            let found = match find(&self.tunnel_ports, f, &cur, cur_l4, cur_end) {
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
                Payload::Ip(i, v) => Ok((i, v, None)),
                Payload::Ethernet(i) => {
                    ethernet(inner_frame, i, 0).map(|(ip_at, v)| (ip_at, v, Some(i)))
                }
                Payload::Ppp(i) => ppp(inner_frame, i).map(|(i, v)| (i, v, None)),
                Payload::Ieee80211(i) => ieee80211(inner_frame, i).map(|(i, v)| (i, v, None)),
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
            fingerprint = fold(fingerprint, found.kind, shared_id, cur.src, cur.dst);
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
