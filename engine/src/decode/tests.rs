//! Unit tests of the decoder: frames of every layer, cut and corrupted.

use std::net::IpAddr;

use super::*;
use crate::error::DecodeErrorKind;

/// Ethernet + IPv4 (no options) + TCP SYN 10.0.0.1:40000 -> 10.0.0.2:80.
const ETH_IPV4_TCP_SYN: [u8; 54] = [
    0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
    0x45, 0xb8, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // ipv4
    10, 0, 0, 1, 10, 0, 0, 2, //
    0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0, // tcp
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
        let len = u32::from_le_bytes([file[at + 8], file[at + 9], file[at + 10], file[at + 11]]);
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
        include_bytes!("../../../testdata/pcap/tunnels.pcap"),
        include_bytes!("../../../testdata/pcap/tunnels_malformed.pcap"),
        include_bytes!("../../../testdata/pcap/ipsec_wireguard.pcap"),
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
