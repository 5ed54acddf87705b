//! Tunnels: the generated fixtures' flows, their overhead bytes computed from
//! how the generator built each packet, opt-in attributes, tunnel ports, and
//! the tunnel captures of `../shared/data/zeek/`.

mod common;

use std::collections::BTreeMap;

use common::{attrs, engine, i, root, s, shared_data, spans};
use serde_json::Value;

fn fixture(name: &str) -> String {
    root()
        .join("testdata/pcap")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs the engine and returns its spans, checking that it succeeded.
fn run(args: &[&str]) -> (Vec<Value>, String) {
    let out = engine(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "engine {args:?} failed:\n{stderr}");
    (spans(&out.stdout), stderr)
}

fn has(span: &Value, key: &str) -> bool {
    attrs(span).contains_key(key)
}

fn packets(span: &Value) -> (i64, i64) {
    (
        i(span, "flow.packets.total"),
        i(span, "flow.reverse.packets.total"),
    )
}

/// The spans whose source address is `src`.
fn from<'a>(spans: &'a [Value], src: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|sp| s(sp, "source.address") == src)
        .collect()
}

#[test]
fn both_directions_of_a_tunnelled_flow_join_and_other_tunnels_make_other_flows() {
    let (spans, _) = run(&["--pcap", &fixture("tunnels.pcap"), "--opt-in", "all"]);
    // The same inner conversation in VNI 5001 and 5002: two flows, each
    // with both directions though the VXLAN source port differs per
    // direction, with one Community ID (the inner 5-tuple's) and two traces.
    let vx = from(&spans, "10.10.0.1");
    assert_eq!(vx.len(), 2);
    let vnis: Vec<String> = vx.iter().map(|sp| s(sp, "tunnel.id")).collect();
    assert_eq!(vnis, ["5001", "5002"]);
    for sp in &vx {
        assert_eq!(packets(sp), (5, 3));
        assert_eq!(i(sp, "tunnel.destination.port"), 4789);
    }
    assert_eq!(s(vx[0], "flow.community_id"), s(vx[1], "flow.community_id"));
    assert_ne!(vx[0]["traceId"], vx[1]["traceId"]);
    // GTP-U and PPTP identifiers differ per direction, yet each is one flow.
    for src in ["10.19.0.1", "10.15.0.1"] {
        let f = from(&spans, src);
        assert_eq!(f.len(), 1, "{src}");
        assert_eq!(packets(f[0]), (5, 3), "{src}");
    }
    // GRE inside VXLAN with two inner GRE keys: two flows under one
    // outermost tunnel.
    let nested = from(&spans, "10.22.0.1");
    assert_eq!(nested.len(), 2);
    for sp in &nested {
        assert_eq!(s(sp, "tunnel.type"), "vxlan");
        assert_eq!(s(sp, "tunnel.id"), "22");
    }
}

/// Overhead bytes per packet: `(tunnel.*, ipip.*)`.
type PerPacket = (i64, i64);

/// Bytes each encapsulation adds per packet, as the generator builds it
/// (`testdata/generator/src/tunnels.rs`): the flow's source, its
/// `tunnel.type` ("" for IP in IP), forward and reverse.
const OVERHEAD: [(&str, &str, PerPacket, PerPacket); 20] = [
    // outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
    ("10.10.0.1", "vxlan", (50, 0), (50, 0)),
    ("10.11.0.1", "vxlan", (50, 0), (50, 0)),
    // IPv4 20 + UDP 8 + Geneve 8 + 8 bytes of options + Ethernet 14
    ("10.12.0.1", "geneve", (58, 0), (58, 0)),
    // IPv6 40 + UDP 8 + Geneve 8, IPv6 directly inside
    ("2001:db8:12::1", "geneve", (56, 0), (56, 0)),
    // IPv4 20 + GRE 4 + checksum 4 + key 4 + sequence 4
    ("10.13.0.1", "gre", (36, 0), (36, 0)),
    ("2001:db8:13::1", "gre", (24, 0), (24, 0)),
    // IPv6 40 + GRE 4 + key 4 + Ethernet 14
    ("10.14.0.1", "gre", (62, 0), (62, 0)),
    // IPv4 20 + enhanced GRE 4 + key 4 + sequence 4 + PPP 4
    ("10.15.0.1", "gre", (36, 0), (36, 0)),
    // ERSPAN I: IPv4 20 + GRE 4 + Ethernet 14; II: + sequence 4 + 8;
    // III: + sequence 4 + 12; III with the sub-header: + 8 more.
    ("10.16.0.1", "erspan", (38, 0), (38, 0)),
    ("10.16.1.1", "erspan", (50, 0), (50, 0)),
    ("10.16.2.1", "erspan", (54, 0), (54, 0)),
    ("10.16.3.1", "erspan", (62, 0), (62, 0)),
    // IP in IP: the outer header only.
    ("10.17.0.1", "", (0, 20), (0, 20)),
    ("2001:db8:17::1", "", (0, 20), (0, 20)),
    ("10.18.0.1", "", (0, 40), (0, 40)),
    ("2001:db8:18::1", "", (0, 40), (0, 40)),
    // IPv4 20 + UDP 8 + GTP 8; the reverse direction adds 4 + 4 bytes of
    // sequence number and extension header.
    ("10.19.0.1", "gtpu", (36, 0), (44, 0)),
    // IPv4 20 + UDP 8; the relay's replies add an 8-byte origin indication.
    (
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "teredo",
        (28, 0),
        (36, 0),
    ),
    // IP in IP (20) around VXLAN (50): each counted under its own name.
    ("10.21.0.1", "vxlan", (50, 20), (50, 20)),
    // VXLAN (50) around IPv4 20 + GRE 4 + key 4: all under tunnel.*.
    ("10.22.0.1", "vxlan", (78, 0), (78, 0)),
];

#[test]
fn overhead_bytes_are_what_each_encapsulation_adds() {
    let (spans, _) = run(&["--pcap", &fixture("tunnels.pcap"), "--opt-in", "tunnel"]);
    for (src, kind, fwd, rev) in OVERHEAD {
        let flows = from(&spans, src);
        assert!(!flows.is_empty(), "no flow from {src}");
        for sp in flows {
            let (pf, pr) = packets(sp);
            let total = |key: &str| if has(sp, key) { i(sp, key) } else { 0 };
            assert_eq!(
                (total("tunnel.bytes.total"), total("ipip.bytes.total")),
                (fwd.0 * pf, fwd.1 * pf),
                "{src} forward"
            );
            assert_eq!(
                (
                    total("tunnel.reverse.bytes.total"),
                    total("ipip.reverse.bytes.total")
                ),
                (rev.0 * pr, rev.1 * pr),
                "{src} reverse"
            );
            // One record per flow here, so the deltas are the totals.
            assert_eq!(total("tunnel.bytes.delta"), total("tunnel.bytes.total"));
            assert_eq!(total("ipip.bytes.delta"), total("ipip.bytes.total"));
            if kind.is_empty() {
                assert!(!has(sp, "tunnel.type"), "{src}");
                assert!(has(sp, "ipip.source.address"), "{src}");
            } else {
                assert_eq!(s(sp, "tunnel.type"), kind, "{src}");
            }
        }
    }
}

#[test]
fn identity_attributes_are_opt_in_and_byte_counters_are_not() {
    let (spans, _) = run(&["--pcap", &fixture("tunnels.pcap")]);
    let (with_ipsec, _) = run(&["--pcap", &fixture("ipsec_wireguard.pcap")]);
    for sp in spans.iter().chain(&with_ipsec) {
        let keys: Vec<String> = attrs(sp).into_keys().collect();
        for k in &keys {
            let counter = k.contains(".bytes.") || k == "tunnel.network.interface.mac";
            assert!(
                counter
                    || !(k.starts_with("tunnel.")
                        || k.starts_with("ipip.")
                        || k.starts_with("flow.ipsec.")),
                "{k} written without --opt-in"
            );
        }
    }
    let vx = &from(&spans, "10.10.0.1")[0];
    assert_eq!(i(vx, "tunnel.bytes.total"), 250);
    assert_eq!(s(vx, "tunnel.network.interface.mac"), "02:7e:00:00:00:0a");
}

#[test]
fn ipsec_spis_and_wireguard_indices_are_the_initiators() {
    let (spans, _) = run(&[
        "--pcap",
        &fixture("ipsec_wireguard.pcap"),
        "--opt-in",
        "ipsec",
    ]);
    let one = |src: &str| from(&spans, src)[0].clone();
    assert_eq!(i(&one("10.40.0.1"), "flow.ipsec.esp.spi"), 0x1000_0001);
    assert_eq!(i(&one("10.41.0.1"), "flow.ipsec.ah.spi"), 0x3000_0003);
    assert_eq!(i(&one("10.42.0.1"), "flow.ipsec.esp.spi"), 0x5000_0005);
    let gre = one("10.43.0.1");
    assert_eq!(i(&gre, "tunnel.ipsec.ah.spi"), 0x6000_0006);
    assert!(!has(&gre, "flow.ipsec.ah.spi"), "the AH is the tunnel's");
    assert!(
        !has(&gre, "tunnel.type"),
        "tunnel identity is its own group"
    );
    let wg = one("10.44.0.1");
    assert_eq!(i(&wg, "flow.ipsec.sender_index"), 0xc11e_0001);
    assert_eq!(i(&wg, "flow.ipsec.receiver_index"), 0x5e7e_0002);
}

#[test]
fn malformed_tunnel_headers_are_counted_and_their_packets_kept() {
    let (spans, stderr) = run(&["--pcap", &fixture("tunnels_malformed.pcap")]);
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("tunnels:"))
        .expect("tunnels line");
    for reason in [
        "vxlan_truncated=1",
        "vxlan_bad_header=1",
        "geneve_bad_header=1",
        "geneve_truncated=1",
        "gre_bad_header=1",
        "gre_truncated=1",
        "erspan_bad_header=1",
        "gtp_bad_header=1",
        "ipv4_truncated=1",
        "ipv6_bad_version=1",
        "ethernet_truncated=1",
    ] {
        assert!(line.contains(reason), "{reason} missing: {line}");
    }
    // All 16 packets are in flows: the 13 in the tunnels that carried
    // them, and 3 ordinary UDP datagrams on tunnel ports in their own.
    let total: i64 = spans.iter().map(|sp| packets(sp).0 + packets(sp).1).sum();
    assert_eq!(total, 16);
    assert!(spans.iter().all(|sp| !has(sp, "tunnel.bytes.total")));
}

/// Issue 16: when a tunnel's outer packet was fragmented, its fragments
/// were counted on the flow between the tunnel endpoints and the flow
/// inside lost them. Every fragment is now one packet of the flow inside,
/// and inner bytes plus overhead are the wire's IP bytes, per direction.
#[test]
fn fragmented_outer_packets_count_once_in_the_flow_inside() {
    let path = fixture("tunnels_fragmented.pcap");
    let (spans, stderr) = run(&["--pcap", &path, "--opt-in", "all"]);
    // What the wire carried, by outer source address: fragments and IP
    // bytes.
    let mut wire: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut reader = capture_pcap::CaptureReader::open(&path).expect("fixture");
    while let Some(frame) = reader.next_frame().expect("fixture reads") {
        let ip = &frame.data[14..];
        let (src, len) = if ip[0] >> 4 == 4 {
            let a: [u8; 4] = ip[12..16].try_into().expect("4 bytes");
            (
                std::net::IpAddr::from(a),
                i64::from(u16::from_be_bytes([ip[2], ip[3]])),
            )
        } else {
            let a: [u8; 16] = ip[8..24].try_into().expect("16 bytes");
            (
                std::net::IpAddr::from(a),
                40 + i64::from(u16::from_be_bytes([ip[4], ip[5]])),
            )
        };
        let w = wire.entry(src.to_string()).or_default();
        w.0 += 1;
        w.1 += len;
    }
    let side = |sp: &Value, reverse: bool| -> (i64, i64) {
        let r = if reverse { "reverse." } else { "" };
        let get = |k: &str| {
            attrs(sp)
                .get(k)
                .and_then(|v| v["intValue"].as_str()?.parse().ok())
                .unwrap_or(0i64)
        };
        (
            get(&format!("flow.{r}packets.total")),
            get(&format!("flow.{r}bytes.total"))
                + get(&format!("tunnel.{r}bytes.total"))
                + get(&format!("ipip.{r}bytes.total")),
        )
    };
    let vxlan = from(&spans, "10.50.0.1");
    let gre = from(&spans, "10.51.0.1");
    // Between the tunnel endpoints: the cut datagram, and the DNS answer
    // (whose client, by the port rule, is 192.0.2.1).
    let endpoints = from(&spans, "192.0.2.1");
    let by_port = |port: i64| {
        endpoints
            .iter()
            .filter(|sp| i(sp, "destination.port") == port)
            .copied()
            .collect::<Vec<_>>()
    };
    let (cut, dns) = (by_port(4789), by_port(53));
    assert_eq!(
        (vxlan.len(), gre.len(), cut.len(), dns.len(), spans.len()),
        (1, 1, 1, 1, 4)
    );
    assert_eq!(s(vxlan[0], "tunnel.type"), "vxlan");
    assert_eq!(s(gre[0], "tunnel.type"), "gre");
    // Outer 192.0.2.1 sent the VXLAN flow's forward packets and the cut
    // datagram's two fragments (which stay a UDP flow of the endpoints).
    let (v, c) = (side(vxlan[0], false), side(cut[0], false));
    assert_eq!(c.0, 2, "{:?}", cut[0]);
    assert_eq!((v.0 + c.0, v.1 + c.1), wire["192.0.2.1"]);
    // 192.0.2.2 sent the VXLAN flow's answers and the fragmented DNS
    // answer.
    let (v, d) = (side(vxlan[0], true), side(dns[0], true));
    assert_eq!(d.0, 2);
    assert_eq!((v.0 + d.0, v.1 + d.1), wire["192.0.2.2"]);
    assert_eq!(side(gre[0], false), wire["2001:db8:ffff::1"]);
    assert_eq!(side(gre[0], true), wire["2001:db8:ffff::2"]);
    assert!(
        stderr.contains(
            "fragmented tunnels: 10 outer datagrams put together from 47 fragments; \
             2 fragments counted as they came"
        ),
        "{stderr}"
    );
}

#[test]
fn tunnel_ports_are_configurable() {
    let path = fixture("tunnels.pcap");
    // Only 8472 is VXLAN now: the 4789 tunnels stay UDP flows between the
    // tunnel endpoints.
    let (spans, _) = run(&["--pcap", &path, "--tunnel-port", "vxlan=8472"]);
    assert!(from(&spans, "10.10.0.1").is_empty());
    assert_eq!(from(&spans, "10.11.0.1").len(), 1);
    let outer: Vec<_> = from(&spans, "192.0.2.1")
        .into_iter()
        .filter(|sp| i(sp, "destination.port") == 4789)
        .collect();
    assert!(!outer.is_empty());
    let (spans, _) = run(&["--pcap", &path, "--tunnel-port", "vxlan=none"]);
    assert!(from(&spans, "10.11.0.1").is_empty());
    for bad in ["vxlan", "nvgre=1", "vxlan=0", "vxlan=4789,x"] {
        let out = engine(&["--pcap", &path, "--tunnel-port", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--tunnel-port"), "{bad}: {stderr}");
    }
}

/// What each zeek tunnel capture must give: `(file, tunnel.type or "" for
/// IP-in-IP, inner span name, packets decapsulated)`.
const ZEEK: [(&str, &str, &str, u64); 14] = [
    (
        "tunnels/vxlan-inner-tcp-bad-checksum.pcap",
        "vxlan",
        "flow_ipv4_tcp",
        1,
    ),
    (
        "tunnels/geneve-inner-tcp-bad-checksum.pcap",
        "geneve",
        "flow_ipv4_tcp",
        1,
    ),
    ("erspanIII.pcap", "erspan", "flow_ipv4_icmp", 2),
    (
        "tunnels/gre-erspan3-dot1q.pcap",
        "erspan",
        "flow_ipv4_icmp",
        2,
    ),
    ("tunnels/4in4.pcap", "", "flow_ipv4_udp", 1),
    ("tunnels/6in4.pcap", "", "flow_ipv6_udp", 1),
    ("tunnels/ping6-in-ipv4.pcap", "", "flow_ipv6_ipv6-icmp", 10),
    ("tunnels/4in6.pcap", "", "flow_ipv4_tcp", 1),
    ("tunnels/6in6.pcap", "", "flow_ipv6_udp", 1),
    (
        "tunnels/gtp/gtp7_ipv6.pcap",
        "gtpu",
        "flow_ipv6_ipv6-icmp",
        2,
    ),
    // GTP-U around Teredo: tunnel.* is the outermost, GTP-U.
    (
        "tunnels/gtp/gtp8_teredo.pcap",
        "gtpu",
        "flow_ipv6_ipv6-icmp",
        10,
    ),
    (
        "tunnels/teredo_bubble_with_payload.pcap",
        "teredo",
        "flow_ipv6_tcp",
        26,
    ),
    // Three VXLAN headers deep: the innermost packet is DNS.
    ("tunnels/vxlan-triple-v2.pcap", "vxlan", "flow_ipv4_udp", 1),
    // Aruba access points: GRE with 802.11 frames inside.
    ("tunnels/gre-aruba.pcap", "gre", "flow_ipv4_tcp", 2407),
];

#[test]
fn zeek_tunnel_captures_decapsulate() {
    let Some(data) = shared_data() else { return };
    for (file, kind, inner, decapsulated) in ZEEK {
        let path = data.join("zeek").join(file);
        let (spans, stderr) = run(&["--pcap", &path.to_string_lossy(), "--opt-in", "tunnel"]);
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with("tunnels:"))
            .expect("tunnels line");
        assert!(
            line.contains(&format!("tunnels: {decapsulated} packets decapsulated;"))
                && line.ends_with(": none"),
            "{file}: {line}"
        );
        let matching: Vec<_> = spans.iter().filter(|sp| sp["name"] == inner).collect();
        assert!(!matching.is_empty(), "{file}: no {inner} span");
        for sp in matching {
            if kind.is_empty() {
                assert!(has(sp, "ipip.bytes.total"), "{file}");
            } else {
                assert_eq!(s(sp, "tunnel.type"), kind, "{file}");
            }
        }
    }
    // Broken or not-a-tunnel: kept as the carrying flow, counted.
    let counts: BTreeMap<&str, &str> = [
        ("tunnels/geneve-truncated.pcapng", "ethernet_truncated=1"),
        ("trunc/mpls-6in6-6in6-4in6-trunc.pcap", "ipv4_truncated=1"),
        ("tunnels/geneve-arp.pcap", "none"),
        ("tunnels/gtp/gtp10_not_0xff.pcap", "none"),
    ]
    .into_iter()
    .collect();
    for (file, reasons) in counts {
        let path = data.join("zeek").join(file);
        let (spans, stderr) = run(&["--pcap", &path.to_string_lossy()]);
        assert!(!spans.is_empty(), "{file}");
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with("tunnels:"))
            .expect("tunnels line");
        assert!(line.ends_with(&format!(": {reasons}")), "{file}: {line}");
    }
}
