//! Tunnel, IPsec and WireGuard fixtures. Tunnel headers are written by hand
//! from their specifications (RFC 7348 VXLAN, RFC 8926 Geneve, RFC 2784 and
//! 2890 GRE, RFC 2637 enhanced GRE, the ERSPAN draft, 3GPP TS 29.281 GTP-U,
//! RFC 4380 Teredo, RFC 4302/4303 AH/ESP, the WireGuard paper's message
//! formats); the IP, TCP and UDP headers inside and outside come from the
//! same builders as every other fixture.

use super::{
    ACK, MS, Pcap, S, SYN, T0, echo, eth, eth_ip, ipv4, ipv6, tcp, tcp_conversation_v4,
    tcp_conversation_v6,
};

/// Ethernet addresses of the tunnel endpoints (outer frames) and of the
/// hosts inside (inner frames).
const VTEP_A: [u8; 6] = [0x02, 0x7e, 0, 0, 0, 0x0a];
const VTEP_B: [u8; 6] = [0x02, 0x7e, 0, 0, 0, 0x0b];
const VM_A: [u8; 6] = [0x02, 0x11, 0, 0, 0, 0x0a];
const VM_B: [u8; 6] = [0x02, 0x11, 0, 0, 0, 0x0b];

/// An Ethernet frame from `src` to `dst` around an IP packet.
fn frame(src: [u8; 6], dst: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&(if ip[0] >> 4 == 6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    out.extend_from_slice(ip);
    out
}

/// The outer Ethernet frame of a packet from tunnel endpoint A (`forward`)
/// or B.
fn outer_frame(forward: bool, ip: &[u8]) -> Vec<u8> {
    if forward {
        frame(VTEP_A, VTEP_B, ip)
    } else {
        frame(VTEP_B, VTEP_A, ip)
    }
}

/// The inner Ethernet frame of a packet from host A (`forward`) or B.
fn inner_frame(forward: bool, ip: &[u8]) -> Vec<u8> {
    if forward {
        frame(VM_A, VM_B, ip)
    } else {
        frame(VM_B, VM_A, ip)
    }
}

/// A UDP header with a given payload.
fn udp_with(sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    cat(&[&[0x08, 0, 0, 0], &(vni << 8).to_be_bytes(), inner])
}

/// Geneve with `options` (a multiple of 4 bytes) and protocol `protocol`.
fn geneve(vni: u32, protocol: u16, options: &[u8], inner: &[u8]) -> Vec<u8> {
    let opt_len = (options.len() / 4) as u8;
    cat(&[
        &[opt_len, 0],
        &protocol.to_be_bytes(),
        &(vni << 8).to_be_bytes(),
        options,
        inner,
    ])
}

/// GRE version 0 with the optional checksum, key and sequence fields.
fn gre(protocol: u16, checksum: bool, key: Option<u32>, seq: Option<u32>, inner: &[u8]) -> Vec<u8> {
    let mut flags = 0u16;
    let mut out = Vec::new();
    if checksum {
        flags |= 0x8000;
    }
    if key.is_some() {
        flags |= 0x2000;
    }
    if seq.is_some() {
        flags |= 0x1000;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&protocol.to_be_bytes());
    if checksum {
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
    if let Some(k) = key {
        out.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        out.extend_from_slice(&s.to_be_bytes());
    }
    out.extend_from_slice(inner);
    out
}

/// PPTP's enhanced GRE (version 1) carrying a PPP frame with IP.
fn gre_pptp(call_id: u16, seq: u32, ip: &[u8]) -> Vec<u8> {
    let ppp = cat(&[
        &[0xff, 0x03],
        &(if ip[0] >> 4 == 6 { 0x0057u16 } else { 0x0021 }).to_be_bytes(),
        ip,
    ]);
    cat(&[
        &0x3001u16.to_be_bytes(),
        &0x880bu16.to_be_bytes(),
        &(ppp.len() as u16).to_be_bytes(),
        &call_id.to_be_bytes(),
        &seq.to_be_bytes(),
        &ppp,
    ])
}

fn erspan2(session: u16, frame: &[u8]) -> Vec<u8> {
    // Version 1, VLAN 0; COS 0, En 0, T 0, session id; index.
    cat(&[
        &[0x10, 0x00],
        &(session & 0x03ff).to_be_bytes(),
        &[0, 0, 0, 7],
        frame,
    ])
}

fn erspan3(session: u16, subheader: bool, frame: &[u8]) -> Vec<u8> {
    let mut h = vec![0x20, 0x00];
    h.extend_from_slice(&(session & 0x03ff).to_be_bytes());
    h.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // timestamp
    h.extend_from_slice(&[0, 0, 0, u8::from(subheader)]); // SGT, P, FT, HW id, D, Gra, O
    if subheader {
        h.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 1]);
    }
    cat(&[&h, frame])
}

/// GTP-U G-PDU, with a sequence number and one PDU session container
/// extension header when `extended`.
fn gtpu(teid: u32, extended: bool, ip: &[u8]) -> Vec<u8> {
    let ext: &[u8] = if extended {
        // Sequence 7, N-PDU 0, next type 0x85; extension of 1 unit, next 0.
        &[0, 7, 0, 0x85, 1, 0x10, 0x09, 0]
    } else {
        &[]
    };
    let flags = if extended { 0x32 } else { 0x30 };
    cat(&[
        &[flags, 0xff],
        &((ext.len() + ip.len()) as u16).to_be_bytes(),
        &teid.to_be_bytes(),
        ext,
        ip,
    ])
}

/// Teredo with an origin indication in front of the IPv6 packet.
fn teredo(ip6: &[u8], origin: bool) -> Vec<u8> {
    if origin {
        cat(&[&[0, 0, 0xf2, 0x27], &[0x3f, 0x57, 0xfe, 0xd9], ip6])
    } else {
        ip6.to_vec()
    }
}

/// The IPv4 packets of a TCP conversation, each with whether the client
/// sent it.
fn conv4(c: &str, cp: u16, s: &str, sp: u16) -> Vec<(bool, Vec<u8>)> {
    let client: [u8; 4] = c.parse::<std::net::Ipv4Addr>().expect("IPv4").octets();
    tcp_conversation_v4(c, cp, s, sp)
        .into_iter()
        .map(|ip| (ip[12..16] == client, ip))
        .collect()
}

fn conv6(c: &str, cp: u16, s: &str, sp: u16) -> Vec<(bool, Vec<u8>)> {
    let client = c.parse::<std::net::Ipv6Addr>().expect("IPv6").octets();
    tcp_conversation_v6(c, cp, s, sp)
        .into_iter()
        .map(|ip| (ip[8..24] == client, ip))
        .collect()
}

/// Writes `packets` 1 ms apart from `start`, each wrapped by `wrap` (given
/// whether the client sent it).
fn add(
    p: &mut Pcap,
    start: u64,
    packets: &[(bool, Vec<u8>)],
    wrap: impl Fn(bool, &[u8]) -> Vec<u8>,
) {
    for (i, (forward, ip)) in packets.iter().enumerate() {
        p.add(start + i as u64 * MS, &wrap(*forward, ip));
    }
}

/// Outer IPv4 from endpoint A (192.0.2.1) or B (192.0.2.2).
fn outer4(forward: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
    if forward {
        ipv4("192.0.2.1", "192.0.2.2", proto, payload)
    } else {
        ipv4("192.0.2.2", "192.0.2.1", proto, payload)
    }
}

fn outer6(forward: bool, next: u8, payload: &[u8]) -> Vec<u8> {
    if forward {
        ipv6("2001:db8:ffff::1", "2001:db8:ffff::2", next, payload)
    } else {
        ipv6("2001:db8:ffff::2", "2001:db8:ffff::1", next, payload)
    }
}

/// Every tunnel flowspan decapsulates, one TCP conversation (or ICMP
/// exchange) each, 1 s apart, both directions tunnelled like real tunnel
/// endpoints do (the VXLAN/Geneve source port differs per direction).
pub fn tunnels() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let mut t = T0;
    let mut next = || {
        t += S;
        t
    };
    // VXLAN on 4789 and on Linux's 8472, inner Ethernet frames.
    add(
        &mut p,
        next(),
        &conv4("10.10.0.1", 40001, "10.10.0.2", 80),
        |fw, ip| {
            let sport = if fw { 49152 } else { 50000 };
            outer_frame(
                fw,
                &outer4(
                    fw,
                    17,
                    &udp_with(sport, 4789, &vxlan(5001, &inner_frame(fw, ip))),
                ),
            )
        },
    );
    // The same inner conversation in another VNI is another flow.
    add(
        &mut p,
        next(),
        &conv4("10.10.0.1", 40001, "10.10.0.2", 80),
        |fw, ip| {
            let sport = if fw { 49153 } else { 50001 };
            outer_frame(
                fw,
                &outer4(
                    fw,
                    17,
                    &udp_with(sport, 4789, &vxlan(5002, &inner_frame(fw, ip))),
                ),
            )
        },
    );
    add(
        &mut p,
        next(),
        &conv4("10.11.0.1", 40002, "10.11.0.2", 443),
        |fw, ip| {
            outer_frame(
                fw,
                &outer4(
                    fw,
                    17,
                    &udp_with(40000, 8472, &vxlan(77, &inner_frame(fw, ip))),
                ),
            )
        },
    );
    // Geneve with an 8-byte option, Ethernet inside; and IPv6 directly inside.
    add(
        &mut p,
        next(),
        &conv4("10.12.0.1", 40003, "10.12.0.2", 80),
        |fw, ip| {
            let opts = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef];
            outer_frame(
                fw,
                &outer4(
                    fw,
                    17,
                    &udp_with(
                        51000,
                        6081,
                        &geneve(0xabcdef, 0x6558, &opts, &inner_frame(fw, ip)),
                    ),
                ),
            )
        },
    );
    add(
        &mut p,
        next(),
        &conv6("2001:db8:12::1", 40004, "2001:db8:12::2", 80),
        |fw, ip| {
            outer_frame(
                fw,
                &outer6(fw, 17, &udp_with(51001, 6081, &geneve(12, 0x86dd, &[], ip))),
            )
        },
    );
    // GRE: IP with key, checksum and sequence number; plain IPv6; transparent
    // Ethernet bridging with a key.
    add(
        &mut p,
        next(),
        &conv4("10.13.0.1", 40005, "10.13.0.2", 22),
        |fw, ip| {
            outer_frame(
                fw,
                &outer4(fw, 47, &gre(0x0800, true, Some(0x1234), Some(1), ip)),
            )
        },
    );
    add(
        &mut p,
        next(),
        &conv6("2001:db8:13::1", 40006, "2001:db8:13::2", 22),
        |fw, ip| outer_frame(fw, &outer4(fw, 47, &gre(0x86dd, false, None, None, ip))),
    );
    add(
        &mut p,
        next(),
        &conv4("10.14.0.1", 40007, "10.14.0.2", 80),
        |fw, ip| {
            outer_frame(
                fw,
                &outer6(
                    fw,
                    47,
                    &gre(0x6558, false, Some(99), None, &inner_frame(fw, ip)),
                ),
            )
        },
    );
    // PPTP: enhanced GRE carrying PPP.
    add(
        &mut p,
        next(),
        &conv4("10.15.0.1", 40008, "10.15.0.2", 80),
        |fw, ip| {
            outer_frame(
                fw,
                &outer4(fw, 47, &gre_pptp(if fw { 0x0101 } else { 0x0202 }, 1, ip)),
            )
        },
    );
    // ERSPAN I, II and III (with and without the platform sub-header): a
    // switch mirrors both directions of a conversation from one address.
    for (i, kind) in [1, 2, 3, 4].into_iter().enumerate() {
        let c = format!("10.16.{i}.1");
        let s = format!("10.16.{i}.2");
        add(
            &mut p,
            next(),
            &conv4(&c, 40010 + i as u16, &s, 80),
            |fw, ip| {
                let mirrored = inner_frame(fw, ip);
                let g = match kind {
                    1 => gre(0x88be, false, None, None, &mirrored),
                    2 => gre(0x88be, false, None, Some(5), &erspan2(100, &mirrored)),
                    3 => gre(
                        0x22eb,
                        false,
                        None,
                        Some(5),
                        &erspan3(200, false, &mirrored),
                    ),
                    _ => gre(0x22eb, false, None, Some(5), &erspan3(300, true, &mirrored)),
                };
                outer_frame(true, &outer4(true, 47, &g))
            },
        );
    }
    // IP in IP: 4in4, 6in4, 4in6, 6in6.
    type Outer = fn(bool, u8, &[u8]) -> Vec<u8>;
    type Conversation = Vec<(bool, Vec<u8>)>;
    let ipip: [(Conversation, Outer, u8); 4] = [
        (conv4("10.17.0.1", 40020, "10.17.0.2", 80), outer4, 4),
        (
            conv6("2001:db8:17::1", 40021, "2001:db8:17::2", 80),
            outer4,
            41,
        ),
        (conv4("10.18.0.1", 40022, "10.18.0.2", 80), outer6, 4),
        (
            conv6("2001:db8:18::1", 40023, "2001:db8:18::2", 80),
            outer6,
            41,
        ),
    ];
    for (conv, outer, protocol) in ipip {
        add(&mut p, next(), &conv, |fw, ip| {
            outer_frame(fw, &outer(fw, protocol, ip))
        });
    }
    // GTP-U: TEIDs differ per direction; with and without extension headers.
    add(
        &mut p,
        next(),
        &conv4("10.19.0.1", 40024, "10.19.0.2", 80),
        |fw, ip| {
            let teid = if fw { 0x1111 } else { 0x2222 };
            outer_frame(
                fw,
                &outer4(fw, 17, &udp_with(2152, 2152, &gtpu(teid, !fw, ip))),
            )
        },
    );
    // Teredo: ICMPv6 echo between a Teredo client and a native host, via
    // the relay (UDP port 3544 on the relay side).
    let teredo_client = "2001:0:4136:e378:8000:63bf:3fff:fdd2";
    let native = "2001:db8:20::1";
    let ping = [
        (true, ipv6(teredo_client, native, 58, &echo(128, 7, 1))),
        (false, ipv6(native, teredo_client, 58, &echo(129, 7, 1))),
    ];
    add(&mut p, next(), &ping, |fw, ip| {
        if fw {
            outer_frame(
                true,
                &ipv4(
                    "192.0.2.1",
                    "192.0.2.2",
                    17,
                    &udp_with(40000, 3544, &teredo(ip, false)),
                ),
            )
        } else {
            outer_frame(
                false,
                &ipv4(
                    "192.0.2.2",
                    "192.0.2.1",
                    17,
                    &udp_with(3544, 40000, &teredo(ip, true)),
                ),
            )
        }
    });
    // Nested: IP-in-IP outermost around VXLAN (ipip.* is the IPIP header,
    // tunnel.* the VXLAN); VXLAN around GRE around the flow.
    add(
        &mut p,
        next(),
        &conv4("10.21.0.1", 40030, "10.21.0.2", 80),
        |fw, ip| {
            let vx = outer4(
                fw,
                17,
                &udp_with(49200, 4789, &vxlan(21, &inner_frame(fw, ip))),
            );
            let (a, b) = if fw {
                ("198.51.100.1", "198.51.100.2")
            } else {
                ("198.51.100.2", "198.51.100.1")
            };
            outer_frame(fw, &ipv4(a, b, 4, &vx))
        },
    );
    // GRE inside VXLAN, twice with another inner GRE key: a different flow,
    // though the outermost tunnel is the same.
    for key in [22, 23] {
        add(
            &mut p,
            next(),
            &conv4("10.22.0.1", 40031, "10.22.0.2", 80),
            |fw, ip| {
                let (a, b) = if fw {
                    ("172.16.0.1", "172.16.0.2")
                } else {
                    ("172.16.0.2", "172.16.0.1")
                };
                let g = ipv4(a, b, 47, &gre(0x0800, false, Some(key), None, ip));
                let vx = vxlan(22, &inner_frame(fw, &g));
                outer_frame(fw, &outer4(fw, 17, &udp_with(49201, 4789, &vx)))
            },
        );
    }
    p.buf
}

/// Broken tunnel headers: each packet is counted on the flow of the packet
/// that carried it, with a counter naming the problem.
pub fn tunnels_malformed() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let mut t = T0;
    let mut add1 = |frame: Vec<u8>| {
        t += MS;
        p.add(t, &frame);
    };
    let inner = inner_frame(
        true,
        &tcp_conversation_v4("10.30.0.1", 40000, "10.30.0.2", 80)[0],
    );
    // VXLAN: 4 of 8 header bytes; the I flag clear.
    add1(outer_frame(
        true,
        &outer4(true, 17, &udp_with(49152, 4789, &[0x08, 0, 0, 0])),
    ));
    add1(outer_frame(
        true,
        &outer4(
            true,
            17,
            &udp_with(49152, 4789, &cat(&[&[0, 0, 0, 0, 0, 0, 1, 0], &inner])),
        ),
    ));
    // Geneve: version 1; options longer than the packet.
    add1(outer_frame(
        true,
        &outer4(
            true,
            17,
            &udp_with(
                51000,
                6081,
                &cat(&[&[0x40, 0, 0x65, 0x58, 0, 0, 1, 0], &inner]),
            ),
        ),
    ));
    add1(outer_frame(
        true,
        &outer4(
            true,
            17,
            &udp_with(51000, 6081, &[0x3f, 0, 0x65, 0x58, 0, 0, 1, 0, 1, 2, 3, 4]),
        ),
    ));
    // GRE version 5; key flag with the key cut off.
    add1(outer_frame(
        true,
        &outer4(true, 47, &[0x00, 0x05, 0x08, 0x00, 0x45]),
    ));
    add1(outer_frame(
        true,
        &outer4(true, 47, &[0x20, 0x00, 0x08, 0x00, 0x00, 0x01]),
    ));
    // ERSPAN II with version 3.
    add1(outer_frame(
        true,
        &outer4(
            true,
            47,
            &gre(
                0x88be,
                false,
                None,
                Some(1),
                &cat(&[&[0x30, 0, 0, 1, 0, 0, 0, 0], &inner]),
            ),
        ),
    ));
    // GTP version 2 on the GTP-U port.
    add1(outer_frame(
        true,
        &outer4(
            true,
            17,
            &udp_with(2152, 2152, &[0x48, 0xff, 0, 4, 0, 0, 0, 1, 0x45, 0, 0, 0]),
        ),
    ));
    // IP in IP whose inner IPv4 header is cut short; whose inner IPv6 has
    // version 4.
    add1(outer_frame(true, &outer4(true, 4, &[0x45, 0, 0, 40, 0, 0])));
    let mut bad6 = ipv6("2001:db8:30::1", "2001:db8:30::2", 59, &[]);
    bad6[0] = 0x40;
    add1(outer_frame(true, &outer4(true, 41, &bad6)));
    // VXLAN whose inner Ethernet frame is cut short.
    add1(outer_frame(
        true,
        &outer4(
            true,
            17,
            &udp_with(49152, 4789, &vxlan(9, &[0x02, 0, 0, 0, 0, 1, 0x02])),
        ),
    ));
    // Not errors: a VXLAN frame carrying ARP and a GRE payload nobody
    // decodes stay the tunnel's own flow.
    add1(outer_frame(
        true,
        &outer4(
            true,
            17,
            &udp_with(49152, 4789, &vxlan(9, &eth(0x0806, &[0u8; 28]))),
        ),
    ));
    add1(outer_frame(
        true,
        &outer4(true, 47, &gre(0x88b5, false, None, None, &[0u8; 20])),
    ));
    // Nor is ordinary UDP on the Geneve and GTP-U ports (issue 16): DNS
    // answers to clients that got port 6081 and port 2152, and 4 bytes to
    // 6081 (too short for any Geneve header).
    let dns = |id: u16, flags: u16, answers: u8| {
        cat(&[
            &id.to_be_bytes(),
            &flags.to_be_bytes(),
            &[0, 1, 0, answers, 0, 0, 0, 0],
            b"\x07example\x03org\x00\x00\x01\x00\x01",
        ])
    };
    add1(outer_frame(
        false,
        &outer4(false, 17, &udp_with(53, 6081, &dns(0x1234, 0x8180, 1))),
    ));
    add1(outer_frame(
        true,
        &outer4(true, 17, &udp_with(53, 2152, &dns(0x5678, 0x8180, 1))),
    ));
    add1(outer_frame(
        true,
        &outer4(true, 17, &udp_with(40000, 6081, &[1, 2, 3, 4])),
    ));
    p.buf
}

/// ESP, AH, ESP in UDP (NAT traversal), an AH-protected GRE tunnel, and a
/// WireGuard session.
pub fn ipsec_wireguard() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let mut t = T0;
    let mut add1 = |frame: Vec<u8>| {
        t += MS;
        p.add(t, &frame);
    };
    let esp = |spi: u32, seq: u32| cat(&[&spi.to_be_bytes(), &seq.to_be_bytes(), &[0xee; 48]]);
    // ESP: one SA each way.
    add1(eth_ip(&ipv4(
        "10.40.0.1",
        "10.40.0.2",
        50,
        &esp(0x1000_0001, 1),
    )));
    add1(eth_ip(&ipv4(
        "10.40.0.2",
        "10.40.0.1",
        50,
        &esp(0x2000_0002, 1),
    )));
    // AH (transport mode) protecting TCP.
    let ah = |spi: u32, payload: &[u8]| {
        cat(&[
            &[6, 4, 0, 0],
            &spi.to_be_bytes(),
            &1u32.to_be_bytes(),
            &[0xaa; 12],
            payload,
        ])
    };
    add1(eth_ip(&ipv4(
        "10.41.0.1",
        "10.41.0.2",
        51,
        &ah(0x3000_0003, &tcp(40000, 80, SYN, 0)),
    )));
    add1(eth_ip(&ipv4(
        "10.41.0.2",
        "10.41.0.1",
        51,
        &ah(0x4000_0004, &tcp(80, 40000, SYN | ACK, 0)),
    )));
    // ESP in UDP on 4500, and an IKE packet (non-ESP marker) on the same flow.
    add1(eth_ip(&ipv4(
        "10.42.0.1",
        "10.42.0.2",
        17,
        &udp_with(4500, 4500, &cat(&[&[0, 0, 0, 0], &[0x11; 28]])),
    )));
    add1(eth_ip(&ipv4(
        "10.42.0.1",
        "10.42.0.2",
        17,
        &udp_with(4500, 4500, &esp(0x5000_0005, 1)),
    )));
    // GRE in an AH-protected outer header: tunnel.ipsec.ah.spi.
    let inner = ipv4("10.43.0.1", "10.43.0.2", 6, &tcp(40001, 80, SYN, 0));
    let g = gre(0x0800, false, Some(43), None, &inner);
    let protected = cat(&[
        &[47, 4, 0, 0],
        &0x6000_0006u32.to_be_bytes(),
        &1u32.to_be_bytes(),
        &[0xaa; 12],
        &g,
    ]);
    add1(outer_frame(true, &outer4(true, 51, &protected)));
    // WireGuard: initiation (148 bytes), response (92), transport data both ways.
    let wg = |ty: u8, a: u32, b: Option<u32>, len: usize| {
        let mut m = vec![ty, 0, 0, 0];
        m.extend_from_slice(&a.to_le_bytes());
        if let Some(b) = b {
            m.extend_from_slice(&b.to_le_bytes());
        }
        m.resize(len, 0x77);
        m
    };
    let (c, s) = ("10.44.0.1", "10.44.0.2");
    add1(eth_ip(&ipv4(
        c,
        s,
        17,
        &udp_with(41000, 51820, &wg(1, 0xc11e_0001, None, 148)),
    )));
    add1(eth_ip(&ipv4(
        s,
        c,
        17,
        &udp_with(51820, 41000, &wg(2, 0x5e7e_0002, Some(0xc11e_0001), 92)),
    )));
    add1(eth_ip(&ipv4(
        c,
        s,
        17,
        &udp_with(41000, 51820, &wg(4, 0x5e7e_0002, None, 64)),
    )));
    add1(eth_ip(&ipv4(
        s,
        c,
        17,
        &udp_with(51820, 41000, &wg(4, 0xc11e_0001, None, 48)),
    )));
    p.buf
}

/// The fragments of IPv4 packet `ip`, `chunk` payload bytes each (a
/// multiple of 8), with IP id `id`.
fn fragments_v4(ip: &[u8], chunk: usize, id: u16) -> Vec<Vec<u8>> {
    let (header, payload) = etherparse::Ipv4Header::from_slice(ip).expect("an IPv4 packet");
    let parts = payload.len().div_ceil(chunk);
    (0..parts)
        .map(|k| {
            let part = &payload[k * chunk..((k + 1) * chunk).min(payload.len())];
            let mut h = header.clone();
            h.identification = id;
            h.more_fragments = k + 1 < parts;
            h.fragment_offset =
                etherparse::IpFragOffset::try_new((k * chunk / 8) as u16).expect("13-bit offset");
            h.set_payload_len(part.len()).expect("small payload");
            h.header_checksum = h.calc_header_checksum();
            cat(&[&h.to_bytes(), part])
        })
        .collect()
}

/// The fragments of IPv6 packet `ip` (no extension headers), `chunk`
/// payload bytes each (a multiple of 8), with fragment id `id`.
fn fragments_v6(ip: &[u8], chunk: usize, id: u32) -> Vec<Vec<u8>> {
    let payload = &ip[40..];
    let parts = payload.len().div_ceil(chunk);
    (0..parts)
        .map(|k| {
            let part = &payload[k * chunk..((k + 1) * chunk).min(payload.len())];
            let mut h = ip[..40].to_vec();
            h[4..6].copy_from_slice(&((8 + part.len()) as u16).to_be_bytes());
            h[6] = 44;
            let more = u16::from(k + 1 < parts);
            let fragment_header = cat(&[
                &[ip[6], 0],
                &((k * chunk) as u16 | more).to_be_bytes(),
                &id.to_be_bytes(),
            ]);
            cat(&[&h, &fragment_header, part])
        })
        .collect()
}

/// Tunnels whose outer packets are fragmented: each fragment is a packet
/// of the flow inside, and the flow between the tunnel endpoints sees none
/// (issue 16).
pub fn tunnels_fragmented() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let mut t = T0;
    let mut id = 100u16;
    // VXLAN over IPv4: every outer packet in 48-byte fragments.
    for (fw, ip) in conv4("10.50.0.1", 40001, "10.50.0.2", 80) {
        let sport = if fw { 49152 } else { 50000 };
        let outer = outer4(
            fw,
            17,
            &udp_with(sport, 4789, &vxlan(5050, &inner_frame(fw, &ip))),
        );
        id += 1;
        for f in fragments_v4(&outer, 48, id) {
            t += MS;
            p.add(t, &outer_frame(fw, &f));
        }
    }
    // GRE over IPv6 carrying IPv4 pings, 16-byte fragments sent last first
    // (any GRE fragment says it is one: the datagram is held from its
    // first-come fragment).
    for (k, fw) in [true, false].into_iter().enumerate() {
        let (src, dst) = if fw {
            ("10.51.0.1", "10.51.0.2")
        } else {
            ("10.51.0.2", "10.51.0.1")
        };
        let ping = ipv4(src, dst, 1, &echo(if fw { 8 } else { 0 }, 7, 1));
        let outer = outer6(fw, 47, &gre(0x0800, false, None, None, &ping));
        for f in fragments_v6(&outer, 16, 900 + k as u32).into_iter().rev() {
            t += MS;
            p.add(t, &outer_frame(fw, &f));
        }
    }
    // VXLAN whose last fragment was lost: the two that came are counted as
    // they are, on the flow between the tunnel endpoints.
    let (_, syn) = &conv4("10.52.0.1", 40002, "10.52.0.2", 80)[0];
    let outer = outer4(
        true,
        17,
        &udp_with(49153, 4789, &vxlan(5052, &inner_frame(true, syn))),
    );
    let fragments = fragments_v4(&outer, 24, 200);
    for f in &fragments[..fragments.len() - 1] {
        t += MS;
        p.add(t, &outer_frame(true, f));
    }
    // A fragmented DNS answer: not a tunnel, counted as it always was.
    let answer = outer4(false, 17, &udp_with(53, 40053, &[0x5a; 120]));
    for f in fragments_v4(&answer, 64, 300) {
        t += MS;
        p.add(t, &outer_frame(false, &f));
    }
    p.buf
}
