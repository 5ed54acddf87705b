//! The packets of a TPACKET_V3 block, parsed in safe code with bounds
//! checks: each `tpacket3_hdr`, the `sockaddr_ll` after it, and the
//! `virtio_net_hdr` before a frame when GSO headers are asked for.

use crate::ring::{BLOCK_FIRST_PKT, BLOCK_NUM_PKTS, TPACKET3_HDR_LEN};

/// How a packet reached the interface (`sll_pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Addressed to this host.
    Host,
    /// Broadcast.
    Broadcast,
    /// Multicast.
    Multicast,
    /// Addressed to another host (promiscuous mode).
    OtherHost,
    /// Sent by this host.
    Outgoing,
    /// Any other value.
    Other(u8),
}

impl PacketType {
    fn from_raw(v: u8) -> PacketType {
        match v {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            libc::PACKET_OUTGOING => PacketType::Outgoing,
            other => PacketType::Other(other),
        }
    }
}

/// One captured packet, borrowed from its block.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame as captured, from its link-layer header (an 802.1Q tag the
    /// NIC or driver removed is in `vlan`, not here).
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data` if truncated).
    pub wire_len: u32,
    /// The VLAN tag the kernel removed, as (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
    /// Direction and addressing.
    pub packet_type: PacketType,
    /// The interface it was captured on.
    pub ifindex: u32,
    /// `tp_status` (e.g. `TP_STATUS_CSUMNOTREADY`).
    pub status: u32,
    /// The interface's hardware type (`sll_hatype`, an `ARPHRD_*` value).
    pub hatype: u16,
    /// For a GSO/GRO super-frame, its segmentation (with
    /// [`RingConfig::gso_header`](crate::RingConfig::gso_header)); `None` for a frame as on the wire.
    pub gso: Option<Gso>,
}

impl Packet<'_> {
    /// The pcap link type (`LINKTYPE_*`) of `data`: Ethernet for Ethernet
    /// and loopback interfaces (and veth), raw IP for interfaces without a
    /// link-layer header (tun, WireGuard), 0 for anything else, which the
    /// decoder counts as an unsupported link type.
    pub fn link_type(&self) -> u32 {
        link_type_of(self.hatype)
    }
}

/// The pcap link type of frames from an interface of hardware type
/// `hatype` (see [`Packet::link_type`]).
pub(crate) fn link_type_of(hatype: u16) -> u32 {
    match hatype {
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => 1,
        libc::ARPHRD_NONE => 101,
        _ => 0,
    }
}

/// The packets of a [`Block`](crate::Block).
#[derive(Debug)]
pub struct Packets<'a> {
    block: &'a [u8],
    left: u32,
    offset: usize,
    gso_header: bool,
}

impl Packets<'_> {
    /// The packets of the block `block` (its header first).
    pub(crate) fn new(block: &[u8], gso_header: bool) -> Packets<'_> {
        Packets {
            block,
            left: u32_at(block, BLOCK_NUM_PKTS).unwrap_or(0),
            offset: u32_at(block, BLOCK_FIRST_PKT).unwrap_or(0) as usize,
            gso_header,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let packet = parse_packet(self.block, self.offset, self.gso_header);
        let next = u32_at(self.block, self.offset).unwrap_or(0) as usize;
        if packet.is_none() || next == 0 {
            // A malformed header (which the kernel does not write) ends the
            // block rather than reading past it.
            self.left = 0;
        }
        self.offset += next;
        packet
    }
}

/// Parses the `tpacket3_hdr` and `sockaddr_ll` at `at`, and the
/// `virtio_net_hdr` just before the frame if `gso_header`, bounds-checked.
fn parse_packet(b: &[u8], at: usize, gso_header: bool) -> Option<Packet<'_>> {
    let h = b.get(at..)?;
    let sec = u64::from(u32_at(h, 4)?);
    let nsec = u64::from(u32_at(h, 8)?);
    let snaplen = u32_at(h, 12)? as usize;
    let wire_len = u32_at(h, 16)?;
    let status = u32_at(h, 20)?;
    let mac = usize::from(u16_at(h, 24)?);
    let vlan_tci = u32_at(h, 32)?;
    let vlan_tpid = u16_at(h, 36)?;
    // struct sockaddr_ll follows the header, aligned to 16.
    let ll = TPACKET3_HDR_LEN.next_multiple_of(16);
    let ifindex = u32_at(h, ll + 4)?;
    let hatype = u16_at(h, ll + 8)?;
    let pkttype = *h.get(ll + 10)?;
    let data = h.get(mac..mac.checked_add(snaplen)?)?;
    let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            vlan_tpid
        } else {
            0x8100
        };
        (tpid, vlan_tci as u16)
    });
    // struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start,
    // csum_offset; in host byte order (the kernel writes it little-endian
    // on little-endian hosts and native otherwise).
    let gso = if gso_header {
        let v = h.get(mac.checked_sub(VIRTIO_NET_HDR_LEN)?..mac)?;
        let kind = v[1] & !VIRTIO_NET_HDR_GSO_ECN;
        let size = u16::from_ne_bytes([v[4], v[5]]);
        (kind != VIRTIO_NET_HDR_GSO_NONE).then_some(Gso {
            kind: match kind {
                VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => GsoKind::Tcp,
                VIRTIO_NET_HDR_GSO_UDP_L4 => GsoKind::Udp,
                other => GsoKind::Other(other),
            },
            segment_size: size,
        })
    } else {
        None
    };
    Some(Packet {
        ts_ns: sec * 1_000_000_000 + nsec,
        data,
        wire_len,
        vlan,
        packet_type: PacketType::from_raw(pkttype),
        ifindex,
        status,
        hatype,
        gso,
    })
}

const VIRTIO_NET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// What the kernel says of a GSO/GRO super-frame: one frame standing for
/// several on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Which transport is segmented.
    pub kind: GsoKind,
    /// Payload bytes per segment (the MSS for TCP).
    pub segment_size: u16,
}

/// The transport a [`Gso`] super-frame segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// UDP (`UDP_SEGMENT`, UDP GRO).
    Udp,
    /// Another `VIRTIO_NET_HDR_GSO_*` type.
    Other(u8),
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A block as the kernel lays it out, with the given frames.
    fn block(frames: &[(&[u8], u8, Option<u16>)]) -> Vec<u8> {
        let mut b = vec![0u8; 1 << 16];
        let first = 48usize;
        b[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[BLOCK_FIRST_PKT..BLOCK_FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        let mut at = first;
        for (i, (data, pkttype, vlan)) in frames.iter().enumerate() {
            let mac = 80usize;
            let len = (mac + data.len()).next_multiple_of(16);
            let next = if i + 1 == frames.len() { 0 } else { len as u32 };
            let h = &mut b[at..];
            h[0..4].copy_from_slice(&next.to_ne_bytes());
            h[4..8].copy_from_slice(&(1_700_000_000u32 + i as u32).to_ne_bytes());
            h[8..12].copy_from_slice(&5u32.to_ne_bytes());
            h[12..16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            h[16..20].copy_from_slice(&(data.len() as u32 + 4).to_ne_bytes());
            let status = if vlan.is_some() {
                libc::TP_STATUS_VLAN_VALID
            } else {
                0
            };
            h[20..24].copy_from_slice(&status.to_ne_bytes());
            h[24..26].copy_from_slice(&(mac as u16).to_ne_bytes());
            h[32..36].copy_from_slice(&u32::from(vlan.unwrap_or(0)).to_ne_bytes());
            h[48 + 4..48 + 8].copy_from_slice(&7u32.to_ne_bytes());
            h[48 + 8..48 + 10].copy_from_slice(&libc::ARPHRD_ETHER.to_ne_bytes());
            h[48 + 10] = *pkttype;
            h[mac..mac + data.len()].copy_from_slice(data);
            at += len;
        }
        b
    }

    #[test]
    fn the_virtio_header_before_a_frame_gives_its_segmentation() {
        let mut b = block(&[(&[9; 60], libc::PACKET_HOST, None)]);
        // The first packet's header is at 48, its frame at 48 + 80; the
        // virtio_net_hdr takes the 10 bytes before the frame.
        let v = 48 + 80 - 10;
        b[v + 1] = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
        b[v + 4..v + 6].copy_from_slice(&1448u16.to_ne_bytes());
        let packets = |b: &[u8], gso_header| {
            Packets {
                block: b,
                left: 1,
                offset: 48,
                gso_header,
            }
            .map(|p| p.gso)
            .collect::<Vec<_>>()
        };
        let tcp = Gso {
            kind: GsoKind::Tcp,
            segment_size: 1448,
        };
        assert_eq!(packets(&b, true), [Some(tcp)]);
        assert_eq!(packets(&b, false), [None], "no header asked for");
        b[v + 1] = VIRTIO_NET_HDR_GSO_NONE;
        assert_eq!(packets(&b, true), [None], "a frame as on the wire");
        b[v + 1] = 3; // VIRTIO_NET_HDR_GSO_UDP (UFO)
        assert_eq!(
            packets(&b, true)[0].map(|g| g.kind),
            Some(GsoKind::Other(3))
        );
    }

    #[test]
    fn parses_a_kernel_laid_out_block() {
        let b = block(&[
            (&[1, 2, 3], libc::PACKET_HOST, None),
            (&[4; 100], libc::PACKET_OUTGOING, Some(0x2064)),
        ]);
        let packets: Vec<Packet<'_>> = Packets {
            block: &b,
            left: 2,
            offset: 48,
            gso_header: false,
        }
        .collect();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].data, &[1, 2, 3]);
        assert_eq!(packets[0].ts_ns, 1_700_000_000_000_000_005);
        assert_eq!(packets[0].wire_len, 7);
        assert_eq!(packets[0].packet_type, PacketType::Host);
        assert_eq!(packets[0].vlan, None);
        assert_eq!(packets[0].ifindex, 7);
        assert_eq!(packets[0].link_type(), 1);
        assert_eq!(packets[1].data, &[4; 100][..]);
        assert_eq!(packets[1].packet_type, PacketType::Outgoing);
        assert_eq!(packets[1].vlan, Some((0x8100, 0x2064)));
    }

    #[test]
    fn a_header_pointing_outside_the_block_ends_it() {
        let mut b = block(&[(&[1, 2, 3], libc::PACKET_HOST, None)]);
        // snaplen beyond the block.
        b[48 + 12..48 + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        let mut p = Packets {
            block: &b,
            left: 5,
            offset: 48,
            gso_header: false,
        };
        assert!(p.next().is_none());
        assert!(p.next().is_none());
    }
}
