//! TCP latency metrics checked against the fixture's own timestamps.
//!
//! The test reads `latency.pcap`'s records with the capture reader, parses
//! their headers itself (not with the engine's decoder), finds each
//! conversation's handshake packets and its request/response turns (a run of client data segments, then the first
//! server data segment), and applies README's definitions to their times.
//! Which handshakes and turns the rules exclude (a SYN or SYN/ACK sent
//! twice, a retransmitted or reordered request, a response that does not
//! acknowledge the whole request) is written per conversation below, with
//! the reason; every number comes from the file.

mod common;

use std::collections::BTreeMap;

use capture_pcap::CaptureReader;
use common::{attrs, engine, i, root, s, spans};
use serde_json::Value;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// One TCP packet of the capture.
#[derive(Debug, Clone, Copy)]
struct Segment {
    ts_ns: u64,
    from_client: bool,
    flags: u8,
    payload: u32,
}

/// The fixture's TCP packets by client port (clients use ports above
/// 41000, servers below). Records come from the project's capture reader;
/// the headers are parsed here.
fn conversations() -> BTreeMap<u16, Vec<Segment>> {
    let path = root().join("testdata/pcap/latency.pcap");
    let mut reader = CaptureReader::open(&path).expect("latency.pcap");
    let mut out: BTreeMap<u16, Vec<Segment>> = BTreeMap::new();
    while let Some(frame) = reader.next_frame().expect("latency.pcap reads") {
        assert_eq!(frame.link_type, 1, "Ethernet");
        let f = frame.data;
        let be16 = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        let ip = 14;
        let (tcp, ip_payload) = match be16(12) {
            0x0800 => {
                let ihl = usize::from(f[ip] & 0x0f) * 4;
                assert_eq!(f[ip + 9], 6, "TCP only");
                (ip + ihl, usize::from(be16(ip + 2)) - ihl)
            }
            0x86dd => {
                assert_eq!(f[ip + 6], 6, "TCP only");
                (ip + 40, usize::from(be16(ip + 4)))
            }
            other => panic!("ethertype {other:#x}"),
        };
        let (sport, dport) = (be16(tcp), be16(tcp + 2));
        let header = usize::from(f[tcp + 12] >> 4) * 4;
        let from_client = sport > 41000;
        out.entry(if from_client { sport } else { dport })
            .or_default()
            .push(Segment {
                ts_ns: frame.ts_ns,
                from_client,
                flags: f[tcp + 13],
                payload: (ip_payload - header) as u32,
            });
    }
    out
}

/// What README's rules keep of one conversation.
struct Rules {
    /// The SYN was sent twice: no handshake latency.
    syn_twice: bool,
    /// The SYN/ACK was sent twice: no SYN/ACK → ACK time.
    synack_twice: bool,
    /// Turns (counted from 1) that give no sample, and why.
    excluded: &'static [usize],
    /// Time after the flow's first packet at which the active timeout
    /// starts a new record.
    record_every_ns: u64,
}

const CLEAN: Rules = Rules {
    syn_twice: false,
    synack_twice: false,
    excluded: &[],
    record_every_ns: 60_000_000_000,
};

/// One record's expected metrics, in the span's order of keys.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    handshake: Option<u64>,
    rndtrip: Option<u64>,
    rndtrip_jitter: Option<u64>,
    svc: Option<u64>,
    svc_jitter: Option<u64>,
}

/// README's definitions applied to conversation `c`: one entry per record.
fn expected(c: &[Segment], rules: &Rules) -> Vec<Expected> {
    let first = c.iter().position(|p| p.flags & (SYN | ACK) == SYN);
    let synack = c.iter().position(|p| p.flags & (SYN | ACK) == SYN | ACK);
    // The client's first ACK after the (first) SYN/ACK.
    let ack = synack.and_then(|sa| {
        (sa + 1..c.len()).find(|&k| c[k].from_client && c[k].flags & (SYN | ACK) == ACK)
    });
    let h = match (first, synack) {
        (Some(0), Some(sa)) if !rules.syn_twice => Some(c[sa].ts_ns - c[0].ts_ns),
        _ => None,
    };
    let cc = match (synack, ack) {
        (Some(sa), Some(a)) if !rules.synack_twice => Some(c[a].ts_ns - c[sa].ts_ns),
        _ => None,
    };
    // Turns: the last of a run of client data segments and the server data
    // segment that ends the run; only after a handshake.
    let mut turns = Vec::new();
    let mut last_request = None;
    for (k, p) in c
        .iter()
        .enumerate()
        .skip(synack.map_or(c.len(), |sa| sa + 1))
    {
        if p.payload == 0 {
            continue;
        }
        if p.from_client {
            last_request = Some(k);
        } else if let Some(r) = last_request.take() {
            turns.push((r, k));
        }
    }
    let samples: Vec<(u64, u64)> = turns
        .iter()
        .enumerate()
        .filter(|(n, _)| !rules.excluded.contains(&(n + 1)))
        .map(|(_, &(r, k))| (c[k].ts_ns, c[k].ts_ns - c[r].ts_ns))
        .collect();
    // Records: a new one starts with the first packet after the active
    // timeout of the one before.
    let mut record_starts = vec![c[0].ts_ns];
    for p in c {
        if p.ts_ns >= record_starts.last().expect("one record") + rules.record_every_ns {
            record_starts.push(p.ts_ns);
        }
    }
    let mut out = Vec::new();
    let mut previous: Option<u64> = None;
    for (n, &start) in record_starts.iter().enumerate() {
        let end = record_starts.get(n + 1).copied().unwrap_or(u64::MAX);
        let gaps: Vec<u64> = samples
            .iter()
            .filter(|(at, _)| (start..end).contains(at))
            .map(|&(_, g)| g)
            .collect();
        let mean = (!gaps.is_empty()).then(|| gaps.iter().sum::<u64>() / gaps.len() as u64);
        let mut diffs = Vec::new();
        for &g in &gaps {
            if let Some(p) = previous {
                diffs.push(g.abs_diff(p));
            }
            previous = Some(g);
        }
        let jitter = (!diffs.is_empty()).then(|| diffs.iter().sum::<u64>() / diffs.len() as u64);
        out.push(Expected {
            handshake: h,
            rndtrip: mean.zip(cc).map(|(g, c)| g + c),
            rndtrip_jitter: jitter.filter(|_| cc.is_some()),
            svc: mean.zip(h).map(|(g, h)| g.saturating_sub(h)),
            svc_jitter: jitter.filter(|_| h.is_some()),
        });
    }
    out
}

fn metric(span: &Value, key: &str) -> Option<u64> {
    attrs(span)
        .get(key)
        .map(|v| v["intValue"].as_str().expect("int").parse().expect("u64"))
}

fn found(span: &Value) -> Expected {
    Expected {
        handshake: metric(span, "flow.tcp.handshake.latency"),
        rndtrip: metric(span, "flow.tcp.rndtrip.latency"),
        rndtrip_jitter: metric(span, "flow.tcp.rndtrip.jitter"),
        svc: metric(span, "flow.tcp.svc.latency"),
        svc_jitter: metric(span, "flow.tcp.svc.jitter"),
    }
}

#[test]
fn latencies_are_what_the_fixture_timestamps_give() {
    let fixture = root().join("testdata/pcap/latency.pcap");
    let out = engine(&["--pcap", &fixture.to_string_lossy()]);
    assert!(out.status.success());
    let spans = spans(&out.stdout);
    let conversations = conversations();
    let rules: BTreeMap<u16, Rules> = BTreeMap::from([
        (41001, CLEAN),
        (
            41002,
            Rules {
                syn_twice: true,
                ..CLEAN
            },
        ),
        // Turn 2's request is sent again.
        (
            41003,
            Rules {
                excluded: &[2],
                ..CLEAN
            },
        ),
        // The server's banner is not a turn: nothing asked for it.
        (41004, CLEAN),
        // Turn 1's response acknowledges only the request's first segment.
        (
            41005,
            Rules {
                excluded: &[1],
                ..CLEAN
            },
        ),
        (
            41006,
            Rules {
                synack_twice: true,
                ..CLEAN
            },
        ),
        // No handshake seen: no turn counts (the turn scan starts after a
        // SYN/ACK).
        (41007, CLEAN),
        // Turn 2's request segments arrive in the wrong order.
        (
            41008,
            Rules {
                excluded: &[2],
                ..CLEAN
            },
        ),
        (41009, CLEAN),
        (41010, CLEAN),
    ]);
    assert_eq!(
        conversations.keys().collect::<Vec<_>>(),
        rules.keys().collect::<Vec<_>>()
    );
    let mut checked_values = 0;
    for (port, c) in &conversations {
        let want = expected(c, &rules[port]);
        let mut records: Vec<&Value> = spans
            .iter()
            .filter(|sp| i(sp, "source.port") == i64::from(*port))
            .collect();
        records.sort_by_key(|sp| sp["startTimeUnixNano"].as_str().map(str::to_string));
        let got: Vec<Expected> = records.iter().map(|sp| found(sp)).collect();
        assert_eq!(got, want, "client port {port}");
        for sp in records {
            assert_eq!(s(sp, "network.transport"), "tcp");
        }
        checked_values += want
            .iter()
            .map(|e| {
                [
                    e.handshake,
                    e.rndtrip,
                    e.rndtrip_jitter,
                    e.svc,
                    e.svc_jitter,
                ]
                .iter()
                .flatten()
                .count()
            })
            .sum::<usize>();
    }
    // Not vacuous: the 11 records carry 40 metric values between them.
    assert_eq!(checked_values, 40, "latency values checked");
}

#[test]
fn the_fixture_covers_each_rule() {
    // What the rules above depend on is in the file: if the generator
    // changed, this says which premise broke rather than a wrong number.
    let c = conversations();
    let syns = |port: u16| {
        c[&port]
            .iter()
            .filter(|p| p.flags & (SYN | ACK) == SYN)
            .count()
    };
    let synacks = |port: u16| {
        c[&port]
            .iter()
            .filter(|p| p.flags & (SYN | ACK) == SYN | ACK)
            .count()
    };
    assert_eq!(syns(41002), 2, "41002 sends its SYN twice");
    assert_eq!(synacks(41006), 2, "41006 sends its SYN/ACK twice");
    assert_eq!(syns(41007) + synacks(41007), 0, "41007 has no handshake");
    let long = &c[&41009];
    let lifetime = long.last().expect("packets").ts_ns - long[0].ts_ns;
    assert!(
        lifetime > 60_000_000_000,
        "41009 outlives the active timeout"
    );
    // 41004's server sends data before any request.
    let first_data = c[&41004].iter().find(|p| p.payload > 0).expect("data");
    assert!(!first_data.from_client, "41004 starts with a banner");
}
