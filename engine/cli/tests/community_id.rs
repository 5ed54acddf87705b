//! Community ID against the reference implementation's baselines in
//! `../shared/data/community-id/` (seed 0, seed 1 and the hex form), packet by
//! packet and end to end through `engine`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use capture_pcap::CaptureReader;
use common::{engine, s, shared_data, spans};
use engine::community_id::icmp_port_equivalents;
use engine::{CommunityId, Decoded, LinkType, decode};

type Tuple = (u8, IpAddr, IpAddr, u16, u16);

/// The baseline: directional tuple (ICMP as port equivalents) -> id.
fn baseline(file: &std::path::Path) -> BTreeMap<Tuple, String> {
    let text = std::fs::read_to_string(file).expect("baseline file");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("baseline JSON");
    rows.iter()
        .map(|r| {
            let t: Tuple = (
                r["proto"].as_u64().expect("proto") as u8,
                r["saddr"]
                    .as_str()
                    .expect("saddr")
                    .parse()
                    .expect("address"),
                r["daddr"]
                    .as_str()
                    .expect("daddr")
                    .parse()
                    .expect("address"),
                r["sport"].as_u64().unwrap_or(0) as u16,
                r["dport"].as_u64().unwrap_or(0) as u16,
            );
            (
                t,
                r["communityid"].as_str().expect("communityid").to_string(),
            )
        })
        .collect()
}

/// Every IP packet of the capture as `(tuple, id)` computed by us.
fn computed(pcap: &std::path::Path, seed: u16, hex: bool) -> BTreeMap<Tuple, String> {
    let mut reader = CaptureReader::open(pcap).expect("combined.pcap opens");
    let mut out = BTreeMap::new();
    while let Some(frame) = reader.next_frame().expect("combined.pcap reads") {
        let Decoded::Ip(p) = decode(LinkType(frame.link_type), frame.data) else {
            continue;
        };
        let (sport, dport) = match p.protocol {
            1 | 58 => {
                let (a, b, _) = icmp_port_equivalents(p.protocol, p.icmp_type, p.icmp_code);
                (a, b)
            }
            6 | 17 | 132 => (p.src_port, p.dst_port),
            _ => (0, 0),
        };
        let (t_sport, t_dport) = match p.protocol {
            1 | 58 => (u16::from(p.icmp_type), u16::from(p.icmp_code)),
            _ => (sport, dport),
        };
        let id = CommunityId::from_tuple(seed, p.protocol, p.src, t_sport, p.dst, t_dport);
        let text = if hex { id.to_hex() } else { id.to_string() };
        out.insert((p.protocol, p.src, p.dst, sport, dport), text);
    }
    out
}

#[test]
fn matches_reference_baselines_packet_by_packet() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("community-id");
    let pcap = dir.join("combined.pcap");
    for (file, seed, hex) in [
        ("baseline_deflt.json", 0, false),
        ("baseline_seed1.json", 1, false),
        ("baseline_nob64.json", 0, true),
    ] {
        let expected = baseline(&dir.join(file));
        let got = computed(&pcap, seed, hex);
        assert_eq!(
            expected.len(),
            23,
            "{file}: the baseline has 23 directional tuples"
        );
        for (tuple, id) in &expected {
            assert_eq!(got.get(tuple), Some(id), "{file}: tuple {tuple:?}");
        }
        let extra: BTreeSet<_> = got.keys().filter(|t| !expected.contains_key(*t)).collect();
        assert!(
            extra.is_empty(),
            "{file}: tuples the reference does not list: {extra:?}"
        );
    }
}

#[test]
fn engine_spans_carry_reference_ids() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("community-id");
    let pcap = dir.join("combined.pcap");
    let pcap = pcap.to_str().expect("UTF-8 path");
    for (file, seed) in [("baseline_deflt.json", "0"), ("baseline_seed1.json", "1")] {
        let expected = baseline(&dir.join(file));
        let out = engine(&["--pcap", pcap, "--community-id-seed", seed, "-q"]);
        assert_eq!(out.status.code(), Some(0));
        let spans = spans(&out.stdout);
        assert!(!spans.is_empty());
        for span in &spans {
            let id = s(span, "flow.community_id");
            let src: IpAddr = s(span, "source.address").parse().expect("address");
            let dst: IpAddr = s(span, "destination.address").parse().expect("address");
            let matching: Vec<_> = expected
                .iter()
                .filter(|((_, a, b, _, _), _)| (*a == src && *b == dst) || (*a == dst && *b == src))
                .map(|(_, id)| id.clone())
                .collect();
            assert!(
                matching.contains(&id),
                "{file}: span {src} -> {dst} has {id}, reference ids for these hosts: {matching:?}"
            );
        }
        // The one-way ICMPv6 messages of the baseline give flows of their own.
        let ids: BTreeSet<_> = spans.iter().map(|sp| s(sp, "flow.community_id")).collect();
        let reference: BTreeSet<_> = expected.values().cloned().collect();
        assert_eq!(
            ids, reference,
            "{file}: every reference id appears as a flow, and no other"
        );
    }
}

#[test]
fn known_tcp_flow_id() {
    let Some(data) = shared_data() else { return };
    let pcap = data.join("community-id/tcp.pcap");
    let out = engine(&["--pcap", pcap.to_str().expect("UTF-8 path"), "-q"]);
    let spans = spans(&out.stdout);
    assert_eq!(spans.len(), 1);
    assert_eq!(
        s(&spans[0], "flow.community_id"),
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    );
    assert_eq!(s(&spans[0], "source.address"), "128.232.110.120");
}
