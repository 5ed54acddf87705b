//! Property tests of the decoder and the flow table.

use std::net::IpAddr;

use engine::{
    DecodeErrorKind, Decoded, FlowConfig, FlowRecord, FlowTable, LinkType, PacketRepr, Pipeline,
    PipelineConfig, Timeouts, decode,
};
use proptest::prelude::*;

/// Strategies, kept in one place.
mod strategies {
    use super::*;

    pub fn link_type() -> impl Strategy<Value = LinkType> {
        prop_oneof![
            Just(LinkType::ETHERNET),
            Just(LinkType::RAW),
            Just(LinkType::IPV4),
            Just(LinkType::IPV6),
            Just(LinkType::LINUX_SLL),
            Just(LinkType::LINUX_SLL2),
            Just(LinkType::NULL),
            Just(LinkType::LOOP),
            Just(LinkType::PPP),
            Just(LinkType::PPP_HDLC),
            any::<u32>().prop_map(LinkType),
        ]
    }

    /// An Ethernet frame built by etherparse: (frame, src, dst, proto, sport, dport, ttl).
    pub fn etherparse_frame() -> impl Strategy<Value = (Vec<u8>, IpAddr, IpAddr, u8, u16, u16, u8)>
    {
        (
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<bool>(),
            any::<u16>(),
            any::<u16>(),
            1u8..=255,
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(v6, s, d, is_tcp, sp, dp, ttl, payload)| {
                let b =
                    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
                let (b, src, dst) = if v6 {
                    (b.ipv6(s, d, ttl), IpAddr::from(s), IpAddr::from(d))
                } else {
                    let (s4, d4) = ([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]]);
                    (b.ipv4(s4, d4, ttl), IpAddr::from(s4), IpAddr::from(d4))
                };
                let mut out = Vec::new();
                let proto = if is_tcp {
                    b.tcp(sp, dp, 7, 1024)
                        .syn()
                        .write(&mut out, &payload)
                        .expect("builds");
                    6
                } else {
                    b.udp(sp, dp).write(&mut out, &payload).expect("builds");
                    17
                };
                (out, src, dst, proto, sp, dp, ttl)
            })
    }

    fn host() -> impl Strategy<Value = IpAddr> {
        (0u8..4).prop_map(|i| IpAddr::from([10, 0, 0, i]))
    }

    pub fn packet() -> impl Strategy<Value = PacketRepr> {
        (
            host(),
            host(),
            prop_oneof![Just(6u8), Just(17), Just(1), Just(47)],
            0u16..3,
            0u16..3,
            any::<u16>(),
            0u8..16,
            20u32..1500,
            // Sequence numbers near each other and around the wrap, so
            // that TCP turns, retransmissions and holes all occur.
            prop_oneof![0u32..3000, (u32::MAX - 1500)..=u32::MAX],
            prop_oneof![0u32..3000, (u32::MAX - 1500)..=u32::MAX],
        )
            .prop_map(
                |(src, dst, protocol, sp, dp, flags, icmp_type, ip_bytes, seq, ack)| PacketRepr {
                    src_port: if protocol == 6 || protocol == 17 {
                        40000 + sp
                    } else {
                        0
                    },
                    dst_port: if protocol == 6 || protocol == 17 {
                        80 + dp
                    } else {
                        0
                    },
                    icmp_type: if protocol == 1 { icmp_type } else { 0 },
                    tcp_flags: if protocol == 6 { flags & 0x1ff } else { 0 },
                    tcp_seq: if protocol == 6 { seq } else { 0 },
                    tcp_ack: if protocol == 6 { ack } else { 0 },
                    headers: if protocol == 6 { 40 } else { 0 },
                    ip_bytes,
                    ttl: 64,
                    ..PacketRepr::new(src, dst, protocol)
                },
            )
    }

    /// Packets with non-decreasing-ish timestamps (some jitter backwards).
    pub fn trace() -> impl Strategy<Value = Vec<(u64, PacketRepr)>> {
        proptest::collection::vec((0u64..40_000_000_000, packet(), any::<bool>()), 1..300).prop_map(
            |v| {
                let mut t = 1_000_000_000_000u64;
                v.into_iter()
                    .map(|(gap, p, back)| {
                        t += gap;
                        (if back { t.saturating_sub(gap / 2) } else { t }, p)
                    })
                    .collect()
            },
        )
    }
}

fn run_table(cfg: FlowConfig, trace: &[(u64, PacketRepr)]) -> Vec<FlowRecord> {
    let mut t = FlowTable::new(cfg);
    let mut out = Vec::new();
    let mut clock = 0;
    for (ts, p) in trace {
        clock = clock.max(*ts);
        t.observe(p, *ts, clock, &mut out);
    }
    t.flush(clock, &mut out);
    out.sort_by_key(FlowRecord::order_key);
    out
}

fn short_timeouts() -> FlowConfig {
    let mut timeouts = Timeouts {
        active_ns: 30_000_000_000,
        ..Timeouts::default()
    };
    timeouts.set_all_idle(20_000_000_000);
    FlowConfig {
        timeouts,
        ..FlowConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_is_total(link in strategies::link_type(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        match decode(link, &bytes) {
            Decoded::Ip(p) => {
                let min = if p.src.is_ipv4() { 20 } else { 40 };
                prop_assert!(p.ip_bytes >= min);
            }
            Decoded::Malformed(e) => {
                // Display never panics and names the layer.
                prop_assert!(e.to_string().contains(e.layer.name()));
            }
            Decoded::Skipped(r) => prop_assert!(!r.reason().is_empty()),
        }
    }

    #[test]
    fn agrees_with_etherparse((frame, src, dst, proto, sp, dp, ttl) in strategies::etherparse_frame()) {
        let Decoded::Ip(p) = decode(LinkType::ETHERNET, &frame) else {
            return Err(TestCaseError::fail("an etherparse frame did not decode"));
        };
        prop_assert_eq!((p.src, p.dst, p.protocol, p.src_port, p.dst_port, p.ttl), (src, dst, proto, sp, dp, ttl));
        prop_assert_eq!(p.ip_bytes as usize, frame.len() - 14);
    }

    #[test]
    fn truncation_stops_with_truncated_error((frame, ..) in strategies::etherparse_frame(), cut in 0usize..100) {
        let cut = cut.min(frame.len());
        match decode(LinkType::ETHERNET, &frame[..cut]) {
            Decoded::Malformed(e) => {
                let truncated = matches!(e.kind, DecodeErrorKind::Truncated { .. });
                prop_assert!(truncated);
            }
            Decoded::Ip(p) => prop_assert_eq!(p.ip_bytes as usize, frame.len() - 14, "wire size kept"),
            Decoded::Skipped(r) => return Err(TestCaseError::fail(format!("skipped: {r:?}"))),
        }
    }

    #[test]
    fn every_packet_and_byte_is_counted_once(trace in strategies::trace()) {
        let records = run_table(short_timeouts(), &trace);
        let packets: u64 = records.iter().map(|r| r.forward.packets_delta + r.reverse.packets_delta).sum();
        let bytes: u64 = records.iter().map(|r| r.forward.bytes_delta + r.reverse.bytes_delta).sum();
        prop_assert_eq!(packets, trace.len() as u64);
        prop_assert_eq!(bytes, trace.iter().map(|(_, p)| u64::from(p.ip_bytes)).sum::<u64>());
        // Per flow (trace id): record numbers count up from 0, totals are sums of deltas.
        let mut flows: std::collections::BTreeMap<[u8; 16], Vec<&FlowRecord>> = Default::default();
        for r in &records {
            prop_assert!(r.forward.packets_delta + r.reverse.packets_delta > 0, "no empty records");
            prop_assert!(r.start_ns <= r.end_ns);
            flows.entry(r.trace_id).or_default().push(r);
        }
        for recs in flows.values_mut() {
            recs.sort_by_key(|r| r.record_seq);
            let (mut f, mut b) = (0, 0);
            for (i, r) in recs.iter().enumerate() {
                prop_assert_eq!(r.record_seq as usize, i);
                f += r.forward.packets_delta;
                b += r.reverse.packets_delta;
                prop_assert_eq!((r.forward.packets_total, r.reverse.packets_total), (f, b));
            }
        }
    }

    #[test]
    fn observe_batch_is_observe_on_each_packet(trace in strategies::trace(), batch in 1usize..80, max_flows in 0usize..6) {
        // Small tables too, so that evictions change the table under the
        // look-ahead.
        let mut cfg = short_timeouts();
        cfg.max_flows = max_flows;
        let mut clock = 0;
        let observations: Vec<(PacketRepr, u64, u64)> = trace
            .iter()
            .map(|(ts, p)| {
                clock = clock.max(*ts);
                (p.clone(), *ts, clock)
            })
            .collect();
        let mut t = FlowTable::new(cfg.clone());
        let mut out = Vec::new();
        for chunk in observations.chunks(batch) {
            t.observe_batch(chunk, &mut out);
        }
        t.flush(clock, &mut out);
        out.sort_by_key(FlowRecord::order_key);
        prop_assert_eq!(out, run_table(cfg, &trace));
    }

    #[test]
    fn pipeline_output_does_not_depend_on_worker_count(trace in strategies::trace(), workers in 2usize..5) {
        let run = |n: usize| {
            let (mut p, rx) = Pipeline::start(PipelineConfig { workers: n, flow: short_timeouts(), host: None, registry: Default::default(), enrichment: None, sampler: None });
            let collector = std::thread::spawn(move || rx.flatten().collect::<Vec<_>>());
            for (ts, pkt) in &trace {
                p.push(pkt.clone(), *ts).expect("consumer alive");
            }
            p.finish().expect("finished");
            collector.join().expect("collector")
        };
        let one = run(1);
        prop_assert_eq!(&one, &run(workers));
        prop_assert_eq!(one, run_table(short_timeouts(), &trace));
    }
}

/// A run long enough that workers get full batches, whose records they
/// hold and send together: the pipeline still gives the table's records, in
/// the same order, for any number of workers.
#[test]
fn long_runs_through_the_pipeline_give_the_tables_records() {
    // 60 000 UDP packets in 6 000 flows of 10, over 600 s of capture time:
    // flows start and end (20 s idle) all through the run.
    let mut trace = Vec::new();
    for i in 0..60_000u64 {
        let flow = (i / 10 + (i % 10) * 600) % 6_000;
        let mut p = PacketRepr::new(
            IpAddr::from([10, 0, (flow >> 8) as u8, flow as u8]),
            IpAddr::from([192, 0, 2, 1]),
            17,
        );
        p.src_port = 40_000;
        p.dst_port = 53;
        p.ip_bytes = 60;
        trace.push((i * 10_000_000, p));
    }
    let expected = run_table(short_timeouts(), &trace);
    assert!(expected.len() > 6_000, "{} records", expected.len());
    for workers in [1, 2, 3] {
        let (mut p, rx) = Pipeline::start(PipelineConfig {
            workers,
            flow: short_timeouts(),
            host: None,
            registry: Default::default(),
            enrichment: None,
            sampler: None,
        });
        let collector = std::thread::spawn(move || rx.flatten().collect::<Vec<_>>());
        for (ts, pkt) in &trace {
            p.push(pkt.clone(), *ts).expect("consumer alive");
        }
        p.finish().expect("finished");
        let got = collector.join().expect("collector");
        assert!(
            got == expected,
            "{workers} workers: {} records, {} expected",
            got.len(),
            expected.len()
        );
    }
}
