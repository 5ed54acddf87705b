//! The IP layer: the IPv4 header with its options, or the IPv6 header and
//! its extension-header chain (and an Authentication Header in either),
//! then the first bytes of the transport header, each read through its
//! [`crate::wire`] view.

use std::net::IpAddr;

use super::packet::{Fragment, PacketRepr};
use super::{IpVersion, NAT_T_PORT, WIREGUARD_PORT, be32};
use crate::error::{DecodeError, DecodeErrorKind, Layer};
use crate::wire::{
    AuthHeader, IcmpPacket, Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, SctpPacket,
    TcpPacket, UdpPacket,
};

/// Whether IPv6 next header `n` is an extension header that only chains
/// to the next (hop-by-hop, routing, destination options, mobility, HIP,
/// shim6), with the generic length field.
#[inline(always)]
pub(super) fn is_chained_ext(n: u8) -> bool {
    matches!(n, 0 | 43 | 60 | 135 | 139 | 140)
}

/// The view at `at` in `b`, or the error naming `layer` and `at`.
#[inline(always)]
fn view<'a, V>(
    layer: Layer,
    b: &'a [u8],
    at: usize,
    new_checked: impl FnOnce(&'a [u8]) -> Result<V, DecodeErrorKind>,
) -> Result<V, DecodeError> {
    // `at` may lie past the end (a header that ends the capture): nothing
    // of the next one is there.
    new_checked(b.get(at..).unwrap_or_default()).map_err(|kind| DecodeError::new(layer, at, kind))
}

/// Decodes the IP header at `at` into `repr` (written in place: packets
/// are large, and each move costs) and returns where its transport header
/// starts and where its datagram ends in the frame. On error `repr` holds
/// a part of the packet.
#[inline(always)]
pub(super) fn ip(
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
    let h = view(Layer::Ipv4, f, at, Ipv4Packet::new_checked)?;
    let header_len = h.header_len();
    let total_len = usize::from(h.total_len());
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
    let id = u32::from(h.ident());
    let fragment = if h.frag_offset() != 0 {
        Fragment::Later { id }
    } else if h.more_frags() {
        Fragment::First { id }
    } else {
        Fragment::Whole
    };
    *repr = PacketRepr {
        ip_bytes: u32::try_from(ip_bytes).unwrap_or(u32::MAX),
        ttl: h.ttl(),
        tos: h.tos(),
        fragment,
        ..PacketRepr::new(
            IpAddr::V4(h.src_addr()),
            IpAddr::V4(h.dst_addr()),
            h.protocol(),
        )
    };
    let mut l4 = at + header_len;
    if repr.has_transport_header() {
        // Authentication Header: skip to what it protects.
        if repr.protocol == 51 {
            let ah = view(Layer::Ipv6Ext, &f[..end], l4, AuthHeader::new_checked)?;
            repr.protocol = ah.next_header();
            repr.extra_mut().ipsec.ah_spi = ah.spi();
            l4 += ah.header_len();
        }
        transport_lax(f, l4, end, at, repr);
    }
    Ok((l4, end))
}

#[inline(always)]
fn ipv6(f: &[u8], at: usize, repr: &mut PacketRepr) -> Result<(usize, usize), DecodeError> {
    let h = view(Layer::Ipv6, f, at, Ipv6Packet::new_checked)?;
    let payload_len = usize::from(h.payload_len());
    let mut next = h.next_header();
    let captured = f.len() - at;
    let (ip_bytes, end) = if payload_len == 0 && next == 0 {
        // Jumbogram or GSO: no length in the fixed header.
        (captured, f.len())
    } else {
        (40 + payload_len, f.len().min(at + 40 + payload_len))
    };
    let datagram = &f[..end];
    let mut fragment = Fragment::Whole;
    let mut ah_spi = 0;
    let mut l4 = at + 40;
    loop {
        match next {
            n if is_chained_ext(n) => {
                let e = view(Layer::Ipv6Ext, datagram, l4, Ipv6ExtHeader::new_checked)?;
                next = e.next_header();
                l4 += e.header_len();
            }
            44 => {
                let frag = view(
                    Layer::Ipv6Ext,
                    datagram,
                    l4,
                    Ipv6FragmentHeader::new_checked,
                )?;
                next = frag.next_header();
                l4 += Ipv6FragmentHeader::<&[u8]>::LEN;
                let id = frag.ident();
                if frag.frag_offset() != 0 {
                    fragment = Fragment::Later { id };
                    break;
                } else if frag.more_frags() {
                    fragment = Fragment::First { id };
                }
                // Offset 0 without M is an atomic fragment (RFC 6946): whole.
            }
            51 => {
                let ah = view(Layer::Ipv6Ext, datagram, l4, AuthHeader::new_checked)?;
                next = ah.next_header();
                if ah_spi == 0 {
                    ah_spi = ah.spi();
                }
                l4 += ah.header_len();
            }
            _ => break,
        }
    }
    *repr = PacketRepr {
        ip_bytes: u32::try_from(ip_bytes).unwrap_or(u32::MAX),
        ttl: h.hop_limit(),
        tos: h.traffic_class(),
        flow_label: h.flow_label(),
        fragment,
        ..PacketRepr::new(IpAddr::V6(h.src_addr()), IpAddr::V6(h.dst_addr()), next)
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
    match transport(&f[..end], l4, repr) {
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

/// Reads the transport header at `at` of `datagram` (the frame up to the
/// datagram's end) into `repr`; nothing is written when it is cut short.
#[inline(always)]
fn transport(datagram: &[u8], at: usize, repr: &mut PacketRepr) -> Result<(), DecodeError> {
    match repr.protocol {
        6 => {
            // Ports, sequence numbers and flags; options are not needed.
            let t = view(Layer::Tcp, datagram, at, TcpPacket::new_checked)?;
            repr.src_port = t.src_port();
            repr.dst_port = t.dst_port();
            repr.tcp_seq = t.seq_number();
            repr.tcp_ack = t.ack_number();
            repr.tcp_flags = t.flags();
            // A data offset below 5 words is not a TCP header: its payload
            // length is then unknown (0 marks that, as for other transports).
            let header_len = t.header_len();
            repr.headers = if header_len >= 20 { header_len } else { 0 };
        }
        17 => {
            let u = view(Layer::Udp, datagram, at, UdpPacket::new_checked)?;
            repr.src_port = u.src_port();
            repr.dst_port = u.dst_port();
            repr.headers = 8;
        }
        132 => {
            let s = view(Layer::Sctp, datagram, at, SctpPacket::new_checked)?;
            repr.src_port = s.src_port();
            repr.dst_port = s.dst_port();
            if let Some(chunk) = s.first_chunk_type() {
                repr.sctp_chunk = chunk;
            }
        }
        1 | 58 => {
            let layer = if repr.protocol == 1 {
                Layer::Icmp
            } else {
                Layer::Icmpv6
            };
            let m = view(layer, datagram, at, IcmpPacket::new_checked)?;
            repr.icmp_type = m.msg_type();
            repr.icmp_code = m.msg_code();
        }
        _ => {}
    }
    Ok(())
}

/// Reads the ESP SPI (IP protocol 50, or ESP in UDP on port 4500) and the
/// WireGuard indices (UDP port 51820) of a packet whose transport header
/// is at `l4`. Headers too short to hold them leave them absent.
#[inline]
pub(super) fn ipsec_ids(f: &[u8], p: &mut PacketRepr, l4: usize, end: usize) {
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
