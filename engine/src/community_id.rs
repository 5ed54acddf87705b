//! Community ID v1 (<https://github.com/corelight/community-id-spec>).
//!
//! The hash input is `seed (u16 BE) ‖ saddr ‖ daddr ‖ proto ‖ 0 ‖ sport ‖ dport`
//! after ordering the endpoints so that both directions of a flow give the
//! same id. As in the reference implementation:
//!
//! - ICMP and ICMPv6 use the message type as the source "port" and, for the
//!   request/reply pairs listed below, the counterpart type as the
//!   destination "port" (so a request and its reply share one id); every other
//!   type uses the code as the destination "port" and is *one-way*: its
//!   endpoints are never reordered.
//! - Only TCP, UDP, SCTP, ICMP and ICMPv6 hash port bytes; every other
//!   protocol hashes no port bytes at all.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// ICMPv4 request/reply pairs of the reference implementation.
const ICMPV4_PAIRS: [(u8, u8); 5] = [
    (8, 0),   // echo / echo reply
    (13, 14), // timestamp / timestamp reply
    (15, 16), // information request / reply
    (10, 9),  // router solicitation / advertisement
    (17, 18), // address mask request / reply
];

/// ICMPv6 request/reply pairs of the reference implementation.
const ICMPV6_PAIRS: [(u8, u8); 6] = [
    (128, 129), // echo request / reply
    (130, 131), // multicast listener query / report
    (133, 134), // router solicitation / advertisement
    (135, 136), // neighbor solicitation / advertisement
    (139, 140), // node information query / response
    (144, 145), // home agent address discovery request / reply
];

fn pairs(protocol: u8) -> &'static [(u8, u8)] {
    match protocol {
        1 => &ICMPV4_PAIRS,
        58 => &ICMPV6_PAIRS,
        _ => &[],
    }
}

/// The role of an ICMP message type in a request/reply exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpRole {
    /// The request of a pair (echo request, router solicitation, …).
    Request,
    /// The reply of a pair.
    Reply,
    /// A one-way message (errors, redirects, unpaired types).
    OneWay,
}

/// Classifies an ICMP (protocol 1) or ICMPv6 (protocol 58) message type.
pub fn icmp_role(protocol: u8, icmp_type: u8) -> IcmpRole {
    for &(request, reply) in pairs(protocol) {
        if icmp_type == request {
            return IcmpRole::Request;
        }
        if icmp_type == reply {
            return IcmpRole::Reply;
        }
    }
    IcmpRole::OneWay
}

/// The reference implementation's "port equivalents" of an ICMP message:
/// `(sport, dport, is_one_way)`.
pub fn icmp_port_equivalents(protocol: u8, icmp_type: u8, icmp_code: u8) -> (u16, u16, bool) {
    for &(a, b) in pairs(protocol) {
        if icmp_type == a {
            return (u16::from(a), u16::from(b), false);
        }
        if icmp_type == b {
            return (u16::from(b), u16::from(a), false);
        }
    }
    (u16::from(icmp_type), u16::from(icmp_code), true)
}

/// Whether the reference implementation hashes port bytes for this protocol.
pub fn hashes_ports(protocol: u8) -> bool {
    matches!(protocol, 1 | 6 | 17 | 58 | 132)
}

/// A Community ID v1 hash (the SHA-1 digest).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommunityId(pub [u8; 20]);

impl CommunityId {
    /// Computes the id of an already ordered tuple: `(a_addr, a_port)` and
    /// `(b_addr, b_port)` are hashed in that order, ports only when
    /// [`hashes_ports`] says so.
    pub fn from_ordered(
        seed: u16,
        protocol: u8,
        a_addr: IpAddr,
        a_port: u16,
        b_addr: IpAddr,
        b_port: u16,
    ) -> CommunityId {
        let mut h = Sha1::new();
        h.update(seed.to_be_bytes());
        match (a_addr, b_addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                h.update(a.octets());
                h.update(b.octets());
            }
            (a, b) => {
                h.update(to_v6_octets(a));
                h.update(to_v6_octets(b));
            }
        }
        h.update([protocol, 0]);
        if hashes_ports(protocol) {
            h.update(a_port.to_be_bytes());
            h.update(b_port.to_be_bytes());
        }
        CommunityId(h.finalize().into())
    }

    /// Computes the id of a directional tuple, as the reference
    /// implementation's `calc` does (ICMP mapping and ordering included).
    /// For ICMP, `sport`/`dport` are the message type and code.
    pub fn from_tuple(
        seed: u16,
        protocol: u8,
        saddr: IpAddr,
        sport: u16,
        daddr: IpAddr,
        dport: u16,
    ) -> CommunityId {
        let (sport, dport, one_way) = if protocol == 1 || protocol == 58 {
            let t = u8::try_from(sport).unwrap_or(u8::MAX);
            let c = u8::try_from(dport).unwrap_or(u8::MAX);
            icmp_port_equivalents(protocol, t, c)
        } else {
            (sport, dport, false)
        };
        if one_way || (saddr, sport) < (daddr, dport) {
            Self::from_ordered(seed, protocol, saddr, sport, daddr, dport)
        } else {
            Self::from_ordered(seed, protocol, daddr, dport, saddr, sport)
        }
    }

    /// The hex form (`1:` followed by 40 hex digits), as the reference's
    /// `--no-base64` option prints it.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(42);
        s.push_str("1:");
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

fn to_v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl CommunityId {
    /// The canonical base64 form ([`Display`](fmt::Display)'s) as ASCII
    /// bytes, without the formatting machinery: for encoders that write
    /// one per span.
    pub fn to_ascii(&self) -> [u8; 30] {
        let mut text = [0u8; 30];
        text[..2].copy_from_slice(b"1:");
        // 20 bytes are 28 base64 characters with their padding: the
        // buffer always has room.
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(self.0, &mut text[2..])
            .unwrap_or(0);
        debug_assert_eq!(n, 28);
        text
    }
}

/// The canonical base64 form, e.g. `1:LQU9qZlK+B5F3KDmev6m5PMibrg=`.
impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_ascii();
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u16, proto: u8, s: &str, sp: u16, d: &str, dp: u16) -> String {
        CommunityId::from_tuple(seed, proto, s.parse().unwrap(), sp, d.parse().unwrap(), dp)
            .to_string()
    }

    /// The tables of the spec's baseline README, default seed and seed 1.
    #[test]
    fn reference_tables() {
        let v6a = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D";
        let v6b = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D";
        let cases: [(u8, &str, u16, &str, u16, &str, &str); 16] = [
            (
                6,
                "1.2.3.4",
                1122,
                "5.6.7.8",
                3344,
                "1:wCb3OG7yAFWelaUydu0D+125CLM=",
                "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=",
            ),
            (
                6,
                "5.6.7.8",
                3344,
                "1.2.3.4",
                1122,
                "1:wCb3OG7yAFWelaUydu0D+125CLM=",
                "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=",
            ),
            (
                17,
                "1.2.3.4",
                1122,
                "5.6.7.8",
                3344,
                "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
                "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
            ),
            (
                17,
                "5.6.7.8",
                3344,
                "1.2.3.4",
                1122,
                "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
                "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
            ),
            (
                132,
                "1.2.3.4",
                1122,
                "5.6.7.8",
                3344,
                "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
                "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
            ),
            (
                132,
                "5.6.7.8",
                3344,
                "1.2.3.4",
                1122,
                "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
                "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
            ),
            (
                1,
                "1.2.3.4",
                8,
                "5.6.7.8",
                0,
                "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=",
                "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=",
            ),
            (
                1,
                "5.6.7.8",
                0,
                "1.2.3.4",
                0,
                "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=",
                "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=",
            ),
            (
                1,
                "1.2.3.4",
                11,
                "5.6.7.8",
                0,
                "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=",
                "1:1DD7cWGC/Yg91YGsQeni8du3pIA=",
            ),
            (
                58,
                v6a,
                128,
                v6b,
                0,
                "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=",
                "1:IO27GQzPuCtNnwFvjWALMHu5tJE=",
            ),
            (
                58,
                v6b,
                129,
                v6a,
                0,
                "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=",
                "1:IO27GQzPuCtNnwFvjWALMHu5tJE=",
            ),
            (
                58,
                v6a,
                146,
                v6b,
                0,
                "1:fYC8+pz24E+EhANP1EZhpX0Dw10=",
                "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s=",
            ),
            (
                46,
                "1.2.3.4",
                0,
                "5.6.7.8",
                0,
                "1:ikv3kmf89luf73WPz1jOs49S768=",
                "1:/buhqeOmaRCopOZFy9HnoJd5XW8=",
            ),
            (
                46,
                "5.6.7.8",
                0,
                "1.2.3.4",
                0,
                "1:ikv3kmf89luf73WPz1jOs49S768=",
                "1:/buhqeOmaRCopOZFy9HnoJd5XW8=",
            ),
            (
                46,
                v6a,
                0,
                v6b,
                0,
                "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=",
                "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM=",
            ),
            (
                46,
                v6b,
                0,
                v6a,
                0,
                "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=",
                "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM=",
            ),
        ];
        for (proto, s, sp, d, dp, seed0, seed1) in cases {
            assert_eq!(
                id(0, proto, s, sp, d, dp),
                seed0,
                "{proto} {s}:{sp} -> {d}:{dp}"
            );
            assert_eq!(
                id(1, proto, s, sp, d, dp),
                seed1,
                "{proto} {s}:{sp} -> {d}:{dp} seed 1"
            );
        }
    }

    #[test]
    fn hex_form() {
        let c = CommunityId::from_tuple(
            0,
            6,
            "1.2.3.4".parse().unwrap(),
            1122,
            "5.6.7.8".parse().unwrap(),
            3344,
        );
        assert_eq!(c.to_hex(), "1:c026f7386ef200559e95a53276ed03fb5db908b3");
    }

    #[test]
    fn one_way_icmp_is_not_reordered() {
        let there = id(0, 1, "5.6.7.8", 11, "1.2.3.4", 0);
        let back = id(0, 1, "1.2.3.4", 11, "5.6.7.8", 0);
        assert_ne!(there, back);
        assert_eq!(back, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=");
    }
}
