//! Link layers in front of IP: Ethernet with VLAN / QinQ / VN-Tag /
//! FabricPath tags, MPLS (and pseudowires carrying Ethernet), PPPoE, PPP
//! and HDLC, Linux cooked captures, BSD loopback, raw IP and 802.11 data
//! frames. Each returns where the IP header starts and its version, or why
//! the frame is not IP.

use super::packet::{LinkType, SkipReason};
use super::{IpVersion, Step, Stop, be16, need};
use crate::error::{DecodeError, Layer};
use crate::wire::EthernetFrame;

#[inline]
pub(super) fn link_layer(link: LinkType, f: &[u8]) -> Step<(usize, IpVersion)> {
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

pub(super) fn ethernet(f: &[u8], at: usize, depth: u8) -> Step<(usize, IpVersion)> {
    let frame = EthernetFrame::new_checked(f.get(at..).unwrap_or_default())
        .map_err(|kind| DecodeError::new(Layer::Ethernet, at, kind))?;
    ethertype(f, frame.ethertype(), at + 14, depth)
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
pub(super) fn ieee80211(f: &[u8], at: usize) -> Step<(usize, IpVersion)> {
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

pub(super) fn ppp(f: &[u8], mut at: usize) -> Step<(usize, IpVersion)> {
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
