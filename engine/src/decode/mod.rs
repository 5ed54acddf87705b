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

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use crate::error::{DecodeError, Layer};

mod ip;
mod link;
mod packet;
pub(crate) mod reassembly;
#[cfg(test)]
mod tests;
mod tunnel;

pub use packet::{Decoded, Fragment, Ipsec, LinkType, PacketExtra, PacketRepr, SkipReason};
pub(crate) use tunnel::splitmix_finish;
pub use tunnel::{Encap, IpIpHeader, TunnelHeader, TunnelKind, TunnelPorts, UdpTunnel};

pub(crate) use crate::wire::{be16, be32};
use ip::{ip, ipsec_ids};
use link::link_layer;

/// Why decoding a layer stopped: not IP (counted, not an error), or a
/// malformed header.
pub(crate) enum Stop {
    Skip(SkipReason),
    Err(DecodeError),
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        Stop::Err(e)
    }
}

pub(crate) type Step<T> = Result<T, Stop>;

#[derive(Clone, Copy)]
/// The IP version the link layer announced.
pub(crate) enum IpVersion {
    V4,
    V6,
}

/// Checks that `need` bytes are available at `at` in a frame of `end` bytes.
pub(crate) fn need(layer: Layer, at: usize, need: usize, end: usize) -> Result<(), DecodeError> {
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
    /// The UDP ports whose packets this decoder looks into (tunnels,
    /// IPsec NAT traversal, WireGuard), on either side: what a kernel
    /// program that counts packets itself must send up whole instead.
    pub fn udp_ports_looked_into(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.tunnel_ports.all_ports().collect();
        ports.extend([NAT_T_PORT, WIREGUARD_PORT]);
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Whether this decoder looks for Teredo on any UDP port (then a UDP
    /// payload that may hold an IPv6 packet is looked into too).
    pub fn teredo_anywhere(&self) -> bool {
        self.tunnel_ports.teredo_anywhere()
    }

    /// Decodes one frame of the given link type. A tunnelled packet
    /// becomes the packet inside, its tunnels described in
    /// [`PacketRepr::encap`].
    #[inline]
    pub fn decode(&self, link: LinkType, frame: &[u8]) -> Decoded {
        self.decode_from(link, frame, 0)
    }

    /// [`decode`](Self::decode) for a frame captured on interface
    /// `ifindex` (0: unknown), which the packet records.
    pub fn decode_from(&self, link: LinkType, frame: &[u8], ifindex: u32) -> Decoded {
        let mut p = PacketRepr::new(UNSPECIFIED, UNSPECIFIED, 0);
        match self.decode_into(link, frame, ifindex, &mut p) {
            Ok(()) => Decoded::Ip(p),
            Err(Stop::Skip(r)) => Decoded::Skipped(r),
            Err(Stop::Err(e)) => Decoded::Malformed(e),
        }
    }

    /// Decodes the frame into `p`, which holds the packet when this returns
    /// `Ok` (and a part of it otherwise). The capture loop decodes into one
    /// packet it keeps and copies that into the pipeline's batch: a packet
    /// returned by value is copied once more on the way, and each copy of
    /// freshly written fields stalls on store forwarding.
    ///
    /// # Errors
    /// Why the frame is not an IP packet of a flow: skipped or malformed.
    pub(crate) fn decode_into(
        &self,
        link: LinkType,
        frame: &[u8],
        ifindex: u32,
        p: &mut PacketRepr,
    ) -> Result<(), Stop> {
        let (offset, version) = link_layer(link, frame)?;
        // The packet is decoded in place and stays there: it is large, and
        // each move through the stack costs more than the checks below.
        let (mut l4, mut end) = ip(frame, offset, version, p)?;
        if link == LinkType::ETHERNET && frame.len() >= 12 {
            p.dst_mac.copy_from_slice(&frame[0..6]);
            p.src_mac.copy_from_slice(&frame[6..12]);
        }
        if p.fragment == Fragment::Whole && tunnel::may_carry(&self.tunnel_ports, frame, p, l4, end)
        {
            self.decapsulate(frame, p, offset, &mut l4, &mut end);
        }
        ipsec_ids(frame, p, l4, end);
        p.ifindex = ifindex;
        Ok(())
    }
}
