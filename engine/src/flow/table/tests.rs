//! Unit tests of the flow table.

use std::net::IpAddr;

use super::*;
use crate::flow::config::{DEFAULT_MAX_FRAGMENTS, Timeouts};
use crate::flow::observation::FlowObservation;
use crate::flow::record::{FlowRole, TcpState};
use crate::flow::tcp::FIN;

const S: u64 = 1_000_000_000;

fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: u16) -> PacketRepr {
    PacketRepr {
        src_port: sp,
        dst_port: dp,
        tcp_flags: flags,
        ip_bytes: 60,
        ttl: 64,
        ..PacketRepr::new(src.parse().unwrap(), dst.parse().unwrap(), 6)
    }
}

fn run(table: &mut FlowTable, pkts: &[(u64, PacketRepr)]) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let mut clock = 0;
    for (ts, p) in pkts {
        clock = clock.max(*ts);
        table.observe(p, *ts, clock, &mut out);
    }
    table.flush(clock, &mut out);
    out
}

#[test]
fn a_flow_takes_248_bytes_and_a_million_take_at_most_288_each() {
    assert_eq!(std::mem::size_of::<Flow>(), 248);
    assert_eq!(std::mem::size_of::<Option<Flow>>(), 248);
    assert_eq!(std::mem::size_of::<TcpTiming>(), 56);
    // What a flow with tunnels or IPsec keeps besides (README, "Tunnels").
    assert_eq!(std::mem::size_of::<(u32, FlowExtra)>(), 296);
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    let mut p = tcp("10.0.0.1", 1, "172.16.0.1", 443, SYN);
    p.protocol = 17;
    // Just after the index and the timer links double (2^18 + 1 and
    // 2^19 + 1 flows; the index also at 3/4 of 2^20) is the worst case.
    let mut worst = 0;
    for n in 0..1_000_000u32 {
        let [_, b, c, d] = n.to_be_bytes();
        p.src = IpAddr::from([10, b, c, d]);
        p.src_port = 1024 + (n % 60_000) as u16;
        t.observe(&p, S, S, &mut out);
        if matches!(n + 1, 262_145 | 524_289 | 786_433) {
            worst = worst.max(t.memory_bytes() / t.len());
        }
    }
    assert_eq!(t.len(), 1_000_000);
    assert!(out.is_empty());
    let per_flow = t.memory_bytes() / t.len();
    // The figures README and benches/README give (`-- --nocapture`).
    eprintln!("bytes per flow: {per_flow} at 1 M flows, {worst} at worst after a doubling");
    assert!(per_flow <= 288, "{per_flow} bytes per flow at 1 M flows");
    assert!(
        worst as u64 <= crate::FLOW_BYTES,
        "{worst} bytes per flow after a doubling"
    );
    assert_eq!(t.stats().peak_memory_bytes, t.memory_bytes() as u64);
}

/// Under a flow limit the slots take only what the limit needs, not a
/// whole chunk; and were the limit passed, slots keep coming.
#[test]
fn a_flow_limit_sizes_the_slots_and_passing_it_is_no_panic() {
    let limit = 100;
    let mut t = FlowTable::new(FlowConfig {
        max_flows: limit,
        ..FlowConfig::default()
    });
    let mut out = Vec::new();
    let mut p = tcp("10.0.0.1", 1, "172.16.0.1", 443, SYN);
    for n in 0..1000u16 {
        p.src_port = 1024 + n;
        t.observe(&p, S, S, &mut out);
    }
    assert_eq!(t.len(), limit);
    assert_eq!(t.stats().evicted, 900);
    let slots = t.slots.allocated_bytes();
    assert_eq!(slots, limit * std::mem::size_of::<Option<Flow>>());
    assert!(
        t.memory_bytes() as u64 <= limit as u64 * crate::FLOW_BYTES,
        "{} bytes for {limit} flows",
        t.memory_bytes()
    );
    // The table never asks for more slots than its limit; the slab copes
    // if it did, and keeps every flow where it put it.
    let keys: Vec<FlowKey> = (0..100).map(|i| t.flow(i).key).collect();
    let flow = t.flow(0).clone();
    let pushed: Vec<u32> = (0..10).map(|_| t.slots.push(flow.clone())).collect();
    assert_eq!(pushed, (100..110).collect::<Vec<u32>>());
    assert!(pushed.iter().all(|&i| t.slots.key_is(i, &flow.key)));
    assert!((0..100).all(|i| t.slots.key_is(i, &keys[i as usize])));
    assert!(t.slots.allocated_bytes() > slots);
}

#[test]
fn synack_first_makes_its_receiver_the_initiator() {
    let mut t = FlowTable::new(FlowConfig::default());
    let out = run(
        &mut t,
        &[
            (S, tcp("10.0.0.2", 80, "10.0.0.1", 40000, SYN | ACK)),
            (2 * S, tcp("10.0.0.1", 40000, "10.0.0.2", 80, ACK)),
            (3 * S, tcp("10.0.0.1", 40000, "10.0.0.2", 80, ACK)),
        ],
    );
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.source, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((r.source_port, r.destination_port), (40000, 80));
    assert_eq!(r.forward.packets_delta, 2);
    assert_eq!(r.reverse.packets_delta, 1);
    assert_eq!(r.role, FlowRole::Client);
    assert_eq!(r.end_reason, EndReason::ForcedEnd);
}

#[test]
fn mid_stream_without_port_evidence_is_internal_from_first_sender() {
    let mut t = FlowTable::new(FlowConfig::default());
    let out = run(
        &mut t,
        &[
            (S, tcp("10.0.0.9", 40001, "10.0.0.1", 50000, ACK)),
            (2 * S, tcp("10.0.0.1", 50000, "10.0.0.9", 40001, ACK)),
        ],
    );
    assert_eq!(out[0].role, FlowRole::Internal);
    assert_eq!(out[0].source_port, 40001);
    assert_eq!(out[0].forward.packets_delta, 1);
}

#[test]
fn fin_both_sides_ends_flow_after_linger_and_late_packet_starts_new_flow() {
    let mut t = FlowTable::new(FlowConfig::default());
    let a = "10.0.0.1";
    let b = "10.0.0.2";
    let out = run(
        &mut t,
        &[
            (S, tcp(a, 40000, b, 80, SYN)),
            (S + 1, tcp(b, 80, a, 40000, SYN | ACK)),
            (S + 2, tcp(a, 40000, b, 80, ACK)),
            (S + 3, tcp(a, 40000, b, 80, FIN | ACK)),
            (S + 4, tcp(b, 80, a, 40000, FIN | ACK)),
            (S + 5, tcp(a, 40000, b, 80, ACK)),
            (10 * S, tcp(a, 40000, b, 80, ACK)),
        ],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].end_reason, EndReason::EndOfFlowDetected);
    assert_eq!(out[0].forward.packets_delta, 4);
    assert_eq!(out[0].tcp_state, Some(TcpState::TimeWait));
    assert_eq!(out[0].export_clock_ns, S + 4 + 2 * S);
    assert_eq!(out[1].end_reason, EndReason::ForcedEnd);
    assert_ne!(out[0].trace_id, out[1].trace_id);
}

#[test]
fn active_timeout_splits_deltas_but_totals_grow() {
    let cfg = FlowConfig {
        timeouts: Timeouts {
            active_ns: 10 * S,
            ..Timeouts::default()
        },
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    let pkts: Vec<_> = (0..25)
        .map(|i| (i * S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK)))
        .collect();
    let out = run(&mut t, &pkts);
    let deltas: Vec<u64> = out.iter().map(|r| r.forward.packets_delta).collect();
    let totals: Vec<u64> = out.iter().map(|r| r.forward.packets_total).collect();
    assert_eq!(deltas, [10, 10, 5]);
    assert_eq!(totals, [10, 20, 25]);
    assert_eq!(out[0].end_reason, EndReason::ActiveTimeout);
    assert_eq!(out[2].end_reason, EndReason::ForcedEnd);
    assert!(out.iter().all(|r| r.trace_id == out[0].trace_id));
    assert_eq!(
        out.iter().map(|r| r.record_seq).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

/// A flow whose active timeout (10 s after its start) comes before its
/// idle timeout (5 s after its last packet at 8 s, so 13 s; packets every 4 s): the records
/// are the same whether the clock steps to 10 s first, jumps past both in
/// one advance, or a packet of the flow arrives after both. (They once
/// depended on it: the idle timeout was checked first.)
#[test]
fn the_earlier_of_the_active_and_idle_timeouts_wins_however_the_clock_steps() {
    let cfg = || {
        let mut c = FlowConfig {
            timeouts: Timeouts {
                active_ns: 10 * S,
                ..Timeouts::default()
            },
            ..FlowConfig::default()
        };
        c.timeouts.set_all_idle(5 * S);
        c
    };
    let p = tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK);
    let q = tcp("10.0.0.3", 40000, "10.0.0.2", 443, ACK);
    let reasons = |out: &[FlowRecord]| -> Vec<(EndReason, u64, u64)> {
        out.iter()
            .filter(|r| r.source_port == 40000 && r.source.to_string() == "10.0.0.1")
            .map(|r| (r.end_reason, r.export_clock_ns, r.forward.packets_delta))
            .collect()
    };
    let expected = [(EndReason::ActiveTimeout, 10 * S, 3)];
    // The flow's packets at 0, 4 and 8 s.
    let started = || {
        let mut t = FlowTable::new(cfg());
        let mut out = Vec::new();
        for ts in [0, 4 * S, 8 * S] {
            t.observe(&p, ts, ts, &mut out);
        }
        (t, out)
    };
    // One jump past both.
    let (mut t, mut out) = started();
    t.advance(20 * S, &mut out);
    assert_eq!(reasons(&out), expected);
    // Two steps.
    let (mut t, mut out) = started();
    t.advance(11 * S, &mut out);
    t.advance(20 * S, &mut out);
    assert_eq!(reasons(&out), expected);
    // Another flow's packet moves the clock (a packet checks only its own
    // flow's timers), then this flow's arrives.
    let (mut t, mut out) = started();
    t.observe(&q, 20 * S, 20 * S, &mut out);
    assert_eq!(reasons(&out), []);
    let mut out2 = Vec::new();
    t.observe(&p, 21 * S, 21 * S, &mut out2);
    out.extend(out2);
    assert_eq!(reasons(&out)[..1], expected);
}

#[test]
fn idle_timeout_is_evaluated_on_arrival() {
    let mut cfg = FlowConfig::default();
    cfg.timeouts.set_all_idle(5 * S);
    let mut t = FlowTable::new(cfg);
    let p = tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK);
    let out = run(&mut t, &[(S, p.clone()), (7 * S, p)]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].end_reason, EndReason::IdleTimeout);
    assert_eq!(out[0].export_clock_ns, 6 * S);
}

#[test]
fn max_flows_evicts_least_recently_seen() {
    let cfg = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    let out = run(
        &mut t,
        &[
            (S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, SYN)),
            (2 * S, tcp("10.0.0.1", 40001, "10.0.0.2", 443, SYN)),
            (3 * S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK)),
            (4 * S, tcp("10.0.0.1", 40002, "10.0.0.2", 443, SYN)),
        ],
    );
    assert_eq!(out[0].end_reason, EndReason::LackOfResources);
    assert_eq!(out[0].source_port, 40001);
    assert_eq!(t.stats().records[4], 1);
}

#[test]
fn local_net_responder_makes_server_role() {
    let cfg = FlowConfig {
        local_nets: vec!["10.0.0.2/32".parse().unwrap()],
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    let out = run(
        &mut t,
        &[
            (S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, SYN)),
            (S, tcp("10.0.0.2", 40000, "10.0.0.1", 443, SYN)),
        ],
    );
    assert_eq!(out[0].role, FlowRole::Server);
    assert_eq!(out[1].role, FlowRole::Client);
    assert_eq!(out[0].source, "10.0.0.1".parse::<IpAddr>().unwrap());
}

/// A host with address 10.0.0.2, TCP listening on 10.0.0.2:45000 and
/// on every address at 22, UDP bound to 10.0.0.2:41000.
fn host_table() -> FlowTable {
    use crate::flow::host::{ANY_V4, Listener};
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let host = HostSockets::new(
        [ip("10.0.0.2")],
        &[],
        [
            Listener {
                protocol: 6,
                address: ip("10.0.0.2"),
                port: 45000,
            },
            Listener {
                protocol: 6,
                address: ANY_V4,
                port: 22,
            },
            Listener {
                protocol: 17,
                address: ip("10.0.0.2"),
                port: 41000,
            },
        ],
    );
    let mut t = FlowTable::new(FlowConfig::default());
    t.set_host(Some(Arc::new(host)));
    t
}

#[test]
fn the_host_answering_on_a_listening_socket_makes_server_role() {
    let mut t = host_table();
    let udp = |src, sp, dst, dp| {
        let mut p = tcp(src, sp, dst, dp, 0);
        p.protocol = 17;
        p
    };
    let out = run(
        &mut t,
        &[
            // An inbound SYN to a listening port.
            (S, tcp("10.0.0.1", 50000, "10.0.0.2", 22, SYN)),
            // Mid-stream, the server speaking first, no port rule: the
            // listening socket says who answers.
            (S, tcp("10.0.0.2", 45000, "10.0.0.1", 46000, ACK)),
            // The host connects out: CLIENT even to a port that it
            // listens on elsewhere.
            (S, tcp("10.0.0.2", 51000, "10.0.0.9", 22, SYN)),
            // An inbound SYN to a port nobody listens on (a scan).
            (S, tcp("10.0.0.1", 50001, "10.0.0.2", 23, SYN)),
            // UDP to a bound socket, the reply seen first.
            (S, udp("10.0.0.2", 41000, "10.0.0.7", 42000)),
            // Transit traffic: neither side is the host.
            (S, tcp("10.0.0.5", 50000, "10.0.0.6", 22, SYN)),
        ],
    );
    let by_port = |port: u16| {
        out.iter()
            .find(|r| r.source_port == port || r.destination_port == port)
            .map(|r| (r.role, r.source_port))
            .unwrap()
    };
    assert_eq!(by_port(50000), (FlowRole::Server, 50000));
    assert_eq!(by_port(46000), (FlowRole::Server, 46000));
    assert_eq!(by_port(51000), (FlowRole::Client, 51000));
    assert_eq!(by_port(50001), (FlowRole::Client, 50001));
    assert_eq!(by_port(42000), (FlowRole::Server, 42000));
    let transit = out
        .iter()
        .find(|r| r.source.to_string() == "10.0.0.5")
        .unwrap();
    assert_eq!(transit.role, FlowRole::Client);
}

#[test]
fn the_host_answering_a_ping_makes_server_role_and_its_own_ping_client() {
    let mut t = host_table();
    let icmp = |src: &str, dst: &str, ty: u8| {
        let mut p = tcp(src, 0, dst, 0, 0);
        p.protocol = 1;
        p.icmp_type = ty;
        p.src_port = 7; // the echo identifier
        p
    };
    let out = run(
        &mut t,
        &[
            (S, icmp("10.0.0.1", "10.0.0.2", 8)),
            (S, icmp("10.0.0.2", "10.0.0.1", 0)),
            (2 * S, icmp("10.0.0.2", "10.0.0.3", 8)),
        ],
    );
    let from = |src: &str| {
        out.iter()
            .find(|r| r.source.to_string() == src)
            .unwrap()
            .role
    };
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(from("10.0.0.1"), FlowRole::Server);
    assert_eq!(from("10.0.0.2"), FlowRole::Client);
}

#[test]
fn an_unconnected_udp_socket_does_not_overrule_the_port_rule() {
    // A resolver's unconnected socket on 10.0.0.2:41000 asks port 53:
    // the port rule makes the host the initiator, so CLIENT.
    let mut t = host_table();
    let mut p = tcp("10.0.0.2", 41000, "10.0.0.53", 53, 0);
    p.protocol = 17;
    let out = run(&mut t, &[(S, p)]);
    assert_eq!((out[0].role, out[0].source_port), (FlowRole::Client, 41000));
}

/// Feeds `pkts` without flushing, then advances the clock to `until`.
fn run_until(table: &mut FlowTable, pkts: &[(u64, PacketRepr)], until: u64) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let mut clock = 0;
    for (ts, p) in pkts {
        clock = clock.max(*ts);
        table.observe(p, *ts, clock, &mut out);
    }
    table.advance(until, &mut out);
    out
}

fn udp(src: &str, sp: u16, dst: &str, dp: u16) -> PacketRepr {
    PacketRepr {
        src_port: sp,
        dst_port: dp,
        ip_bytes: 60,
        ..PacketRepr::new(src.parse().unwrap(), dst.parse().unwrap(), 17)
    }
}

/// Issue 16: a SYN nobody answered waited the full 300 s TCP idle timeout,
/// so a SYN flood or a scan filled the table.
#[test]
fn regression_16_flows_that_never_got_going_end_after_the_unestablished_timeout() {
    let syn = |sp| tcp("10.0.0.1", sp, "10.0.0.2", 443, SYN);
    let synack = |dp| tcp("10.0.0.2", 443, "10.0.0.1", dp, SYN | ACK);
    let ack = |sp| tcp("10.0.0.1", sp, "10.0.0.2", 443, ACK);
    let pkts = [
        // Unanswered, and answered without the handshake completing.
        (0, syn(40000)),
        (0, syn(40001)),
        (S / 1000, synack(40001)),
        // A completed handshake.
        (0, syn(40002)),
        (S / 1000, synack(40002)),
        (S / 500, ack(40002)),
        // Picked up midstream, from both sides.
        (0, tcp("10.0.0.1", 40003, "10.0.0.2", 443, ACK)),
        (S / 1000, tcp("10.0.0.2", 443, "10.0.0.1", 40003, ACK)),
        // Picked up midstream, from one side only.
        (0, tcp("10.0.0.1", 40004, "10.0.0.2", 443, ACK)),
    ];
    let ended = |out: &[FlowRecord]| {
        let mut ports: Vec<u16> = out.iter().map(|r| r.source_port).collect();
        ports.sort_unstable();
        ports
    };
    let no_active = |unestablished_idle_ns| FlowConfig {
        timeouts: Timeouts {
            active_ns: 0,
            unestablished_idle_ns,
            ..Timeouts::default()
        },
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(no_active(Timeouts::default().unestablished_idle_ns));
    let early = run_until(&mut t, &pkts, 119 * S);
    assert!(early.is_empty(), "{early:#?}");
    let out = run_until(&mut t, &[], 121 * S);
    assert_eq!(ended(&out), [40000, 40001, 40004]);
    assert!(out.iter().all(|r| r.end_reason == EndReason::IdleTimeout));
    assert_eq!(out[0].export_clock_ns, 120 * S);
    // The flows that got going keep TCP's 300 s.
    assert!(run_until(&mut t, &[], 299 * S).is_empty());
    assert_eq!(ended(&run_until(&mut t, &[], 301 * S)), [40002, 40003]);

    // One-packet flows of other protocols: the shorter of the two timeouts.
    let mut t = FlowTable::new(no_active(10 * S));
    let pkts = [
        (0, udp("10.0.0.1", 5000, "10.0.0.2", 53)),
        (0, udp("10.0.0.1", 5001, "10.0.0.2", 53)),
        (S, udp("10.0.0.2", 53, "10.0.0.1", 5001)),
        (0, udp("10.0.0.1", 5002, "10.0.0.2", 53)),
        (S, udp("10.0.0.1", 5002, "10.0.0.2", 53)),
    ];
    assert!(run_until(&mut t, &pkts, 9 * S).is_empty());
    assert_eq!(ended(&run_until(&mut t, &[], 11 * S)), [5000]);
    assert_eq!(ended(&run_until(&mut t, &[], 62 * S)), [5001, 5002]);
}

/// Issue 16: at the flow limit, the least recently seen flow was evicted
/// even when it carried traffic and a flood's new flows did not.
#[test]
fn regression_16_eviction_takes_flows_that_have_not_got_going_first() {
    let cfg = FlowConfig {
        max_flows: 3,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    let out = run(
        &mut t,
        &[
            // An established connection, least recently seen of all.
            (S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, SYN)),
            (S, tcp("10.0.0.2", 443, "10.0.0.1", 40000, SYN | ACK)),
            (S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK)),
            // A flood.
            (2 * S, tcp("192.0.2.1", 1000, "10.0.0.2", 443, SYN)),
            (3 * S, tcp("192.0.2.2", 1000, "10.0.0.2", 443, SYN)),
            (4 * S, tcp("192.0.2.3", 1000, "10.0.0.2", 443, SYN)),
            (5 * S, tcp("192.0.2.4", 1000, "10.0.0.2", 443, SYN)),
        ],
    );
    let evicted: Vec<_> = out
        .iter()
        .filter(|r| r.end_reason == EndReason::LackOfResources)
        .map(|r| r.source.to_string())
        .collect();
    assert_eq!(evicted, ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(t.stats().evicted, 2);
    // With only flows that got going, the least recently seen goes.
    let mut t = FlowTable::new(FlowConfig {
        max_flows: 1,
        ..FlowConfig::default()
    });
    let out = run(
        &mut t,
        &[
            (S, udp("10.0.0.1", 5000, "10.0.0.2", 53)),
            (S, udp("10.0.0.2", 53, "10.0.0.1", 5000)),
            (2 * S, udp("10.0.0.1", 5001, "10.0.0.2", 53)),
        ],
    );
    assert_eq!(out[0].end_reason, EndReason::LackOfResources);
    assert_eq!(out[0].source_port, 5000);
}

fn fragment(src: &str, dst: &str, fragment: Fragment, ports: (u16, u16)) -> PacketRepr {
    PacketRepr {
        fragment,
        src_port: ports.0,
        dst_port: ports.1,
        ..udp(src, 0, dst, 0)
    }
}

/// Issue 16: the fragment table was limited in time only, so a stream of
/// unique first fragments grew it without bound.
#[test]
fn regression_16_the_fragment_table_is_bounded_and_counts_what_it_could_not_keep() {
    let mut t = FlowTable::new(FlowConfig {
        max_fragments: 2,
        ..FlowConfig::default()
    });
    let first = |id| fragment("10.0.0.1", "10.0.0.2", Fragment::First { id }, (5000, 53));
    let later = |id| fragment("10.0.0.1", "10.0.0.2", Fragment::Later { id }, (0, 0));
    let out = run(
        &mut t,
        &[
            (S, first(1)),
            (S, first(2)),
            // Full: not remembered, and its later fragment has no ports.
            (S, first(3)),
            (S, later(3)),
            (S, later(1)),
            // The first two have expired (30 s): room again.
            (40 * S, first(4)),
            (40 * S, later(4)),
        ],
    );
    assert_eq!(t.stats().fragments_untracked, 1);
    assert_eq!(t.stats().fragments_without_first, 1);
    let portless: u64 = out
        .iter()
        .filter(|r| r.source_port == 0)
        .map(|r| r.forward.packets_total)
        .sum();
    assert_eq!(portless, 1);
    assert!(t.fragments.len() <= 2);
}

/// RFC 8200: an IPv6 datagram's fragments may arrive over 60 s; IPv4 keeps 30 s.
#[test]
fn ipv6_fragments_are_matched_for_60_s_and_ipv4_fragments_for_30_s() {
    let mut t = FlowTable::new(FlowConfig::default());
    let run_pair = |t: &mut FlowTable, src: &str, dst: &str, gap: u64| {
        let mut out = Vec::new();
        let first = fragment(src, dst, Fragment::First { id: 7 }, (5000, 53));
        let later = fragment(src, dst, Fragment::Later { id: 7 }, (0, 0));
        t.observe(&first, S, S, &mut out);
        t.observe(&later, S + gap, S + gap, &mut out);
        t.flush(S + gap, &mut out);
        out.iter().any(|r| r.source_port == 0)
    };
    assert!(!run_pair(&mut t, "2001:db8::1", "2001:db8::2", 45 * S));
    assert!(run_pair(&mut t, "2001:db8::1", "2001:db8::2", 61 * S));
    assert!(!run_pair(&mut t, "10.0.0.1", "10.0.0.2", 25 * S));
    assert!(run_pair(&mut t, "10.0.0.1", "10.0.0.2", 31 * S));
}

/// What README and `DEFAULT_MAX_FRAGMENTS` say of a full fragment table:
/// about 2 MiB per worker (`-- --nocapture` prints the figure).
#[test]
fn a_full_fragment_table_takes_about_2_mib() {
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    for id in 0..DEFAULT_MAX_FRAGMENTS as u32 + 100 {
        let f = fragment("10.0.0.1", "10.0.0.2", Fragment::First { id }, (5000, 53));
        t.observe(&f, S, S, &mut out);
    }
    assert_eq!(t.fragments.len(), DEFAULT_MAX_FRAGMENTS);
    assert_eq!(t.stats().fragments_untracked, 100);
    let bytes = t.fragments.allocation_size();
    eprintln!("fragment table at its limit: {bytes} bytes");
    assert!(bytes <= 5 << 19, "{bytes} bytes");
}

/// A connection whose packets all cross interface 3 and then interface 5
/// (a pod's veth and the uplink), each packet seen on both.
fn crossing_two_interfaces() -> Vec<(u64, PacketRepr)> {
    let mut pkts = Vec::new();
    let mut k = 0;
    for (flags, reply) in [
        (SYN, false),
        (SYN | ACK, true),
        (ACK, false),
        (FIN | ACK, false),
    ] {
        let mut p = if reply {
            tcp("10.0.0.2", 443, "10.0.0.1", 40000, flags)
        } else {
            tcp("10.0.0.1", 40000, "10.0.0.2", 443, flags)
        };
        // Requests enter the pod's veth first; replies the uplink.
        let order = if reply { [5, 3] } else { [3, 5] };
        for ifindex in order {
            p.ifindex = ifindex;
            pkts.push((S + k * 1_000, p.clone()));
            k += 1;
        }
    }
    pkts
}

#[test]
fn a_flow_on_two_interfaces_is_one_flow_per_interface_by_default() {
    let mut t = FlowTable::new(FlowConfig::default());
    let out = run(&mut t, &crossing_two_interfaces());
    assert_eq!(out.len(), 2, "{out:#?}");
    let mut by_interface: Vec<_> = out
        .iter()
        .map(|r| {
            (
                r.interface_index,
                r.forward.packets_delta,
                r.reverse.packets_delta,
                r.community_id,
            )
        })
        .collect();
    by_interface.sort_by_key(|x| x.0);
    assert_eq!(by_interface[0].0, Some(3));
    assert_eq!(by_interface[1].0, Some(5));
    for (_, fwd, rev, _) in &by_interface {
        assert_eq!((*fwd, *rev), (3, 1), "each interface saw every packet once");
    }
    assert_eq!(by_interface[0].3, by_interface[1].3, "one Community ID");
    assert_ne!(out[0].trace_id, out[1].trace_id);
    assert_eq!(t.stats().duplicates, 0);
}

#[test]
fn a_flow_on_two_interfaces_is_one_flow_on_its_first_interface_with_first() {
    let config = FlowConfig {
        interfaces: InterfaceFlows::First,
        ..FlowConfig::default()
    };
    // One record on interface 3; the other interface's 4 packets left out.
    let one_on_the_first = |out: &[FlowRecord], t: &FlowTable| {
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].interface_index, Some(3));
        assert_eq!(
            (out[0].forward.packets_delta, out[0].reverse.packets_delta),
            (3, 1)
        );
        assert_eq!(t.stats().duplicates, 4);
    };
    let mut t = FlowTable::new(config.clone());
    let pkts = crossing_two_interfaces();
    let out = run(&mut t, &pkts);
    one_on_the_first(&out, &t);

    // Flow observations (the eBPF backend) take the same path.
    let mut t = FlowTable::new(config);
    let mut out = Vec::new();
    for (ts, p) in &pkts {
        let (key, from_a) = FlowKey::from_packet(p);
        let mut o = FlowObservation::new(key, *ts);
        o.sides[usize::from(!from_a)] = crate::flow::observation::SideDelta {
            packets: 1,
            bytes: u64::from(p.ip_bytes),
            tcp_flags: p.tcp_flags,
            first: FirstPacket::of(p),
        };
        o.ifindex = p.ifindex;
        if t.is_empty() {
            o.opening = Some(role::opening_of(p, from_a));
        }
        t.observe_flow(&o, *ts, &mut out);
    }
    t.flush(2 * S, &mut out);
    one_on_the_first(&out, &t);
}

/// Issue 19: an interface that goes away ends the flows it kept, now, and
/// only those.
#[test]
fn the_flows_of_an_interface_that_went_away_end_now() {
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    let on = |ifindex, sp| PacketRepr {
        ifindex,
        ..udp("10.0.0.1", sp, "10.0.0.2", 53)
    };
    let fin = |ifindex, back: bool| PacketRepr {
        ifindex,
        ..if back {
            tcp("10.0.0.2", 80, "10.0.0.1", 9, FIN | ACK)
        } else {
            tcp("10.0.0.1", 9, "10.0.0.2", 80, FIN | ACK)
        }
    };
    t.observe(&on(3, 1000), S, S, &mut out);
    t.observe(&on(3, 1001), S, S, &mut out);
    t.observe(&on(4, 1002), S, S, &mut out);
    t.observe(&fin(3, false), S, S, &mut out);
    t.observe(&fin(3, true), S, S, &mut out);
    assert!(out.is_empty());
    t.end_interface(3, 2 * S, &mut out);
    let mut ended: Vec<_> = out
        .iter()
        .map(|r| {
            (
                r.interface_index.unwrap_or(0),
                r.source_port.min(r.destination_port),
                r.end_reason,
                r.export_clock_ns,
            )
        })
        .collect();
    ended.sort_by_key(|e| e.1);
    assert_eq!(ended.len(), 3, "{ended:?}");
    assert!(ended.iter().all(|e| e.0 == 3 && e.3 == 2 * S), "{ended:?}");
    assert_eq!(t.len(), 1, "the other interface's flow stays");
    assert_eq!(ended[0].2, EndReason::EndOfFlowDetected, "{ended:?}");
    assert_eq!(ended[1].2, EndReason::ForcedEnd);
}

/// 600 flows of four kinds, fed to `t`: TCP that closes (FIN both ways),
/// UDP split by the active timeout with packets after the split, UDP whose
/// packets all went out in an active-timeout record, and ESP with its SPI
/// (kept beside the flow, in `extras`). Returns the clock at the end.
fn mixed_flows(t: &mut FlowTable, out: &mut Vec<FlowRecord>) -> u64 {
    let mut pkts = Vec::new();
    for n in 0..600u32 {
        let [_, _, c, d] = n.to_be_bytes();
        let client = format!("10.1.{c}.{d}");
        // UDP from 0 to 5 s; TCP and ESP from 16 s, so that their records
        // end at the flush, not by the active timeout.
        let at = u64::from(n % 50) * S / 10 + if n % 4 == 0 || n % 4 == 3 { 16 * S } else { 0 };
        match n % 4 {
            0 => {
                for (dt, fwd, flags) in [
                    (0, true, SYN),
                    (1, false, SYN | ACK),
                    (2, true, ACK),
                    (3, true, FIN | ACK),
                    (4, false, FIN | ACK),
                ] {
                    let p = if fwd {
                        tcp(&client, 40000, "10.9.0.1", 443, flags)
                    } else {
                        tcp("10.9.0.1", 443, &client, 40000, flags)
                    };
                    pkts.push((at + dt * S / 1000, p));
                }
            }
            1 | 2 => {
                let mut p = tcp(&client, 5000, "10.9.0.2", 53, 0);
                p.protocol = 17;
                pkts.push((at, p.clone()));
                // After the active timeout (10 s), or before it.
                let later = if n % 4 == 1 { 15 * S } else { S };
                pkts.push((at + later, p));
            }
            _ => {
                let mut p =
                    PacketRepr::new(client.parse().unwrap(), "10.9.0.3".parse().unwrap(), 50);
                p.ip_bytes = 100;
                p.extra = Some(Box::new(crate::decode::PacketExtra {
                    ipsec: crate::decode::Ipsec {
                        esp_spi: 0x1000 + n,
                        ..Default::default()
                    },
                    ..Default::default()
                }));
                pkts.push((at, p));
            }
        }
    }
    pkts.sort_by_key(|(ts, _)| *ts);
    let mut clock = 0;
    for (ts, p) in &pkts {
        clock = clock.max(*ts);
        t.observe(p, *ts, clock, out);
    }
    // The UDP flows of the third kind are due by the active timeout (at 10
    // to 15 s) with all their packets: the flush's sweep makes their
    // records, and nothing is left for a final one.
    clock + S
}

#[test]
fn the_sorted_final_flush_gives_the_records_of_a_flush_in_output_order() {
    let config = FlowConfig {
        timeouts: Timeouts {
            active_ns: 10 * S,
            udp_idle_ns: 3600 * S,
            tcp_idle_ns: 3600 * S,
            other_idle_ns: 3600 * S,
            tcp_end_linger_ns: 3600 * S,
            ..Timeouts::default()
        },
        ..FlowConfig::default()
    };
    let (mut a, mut b) = (FlowTable::new(config.clone()), FlowTable::new(config));
    let (mut early_a, mut early_b) = (Vec::new(), Vec::new());
    let end = mixed_flows(&mut a, &mut early_a);
    assert_eq!(mixed_flows(&mut b, &mut early_b), end);
    assert_eq!(early_a, early_b);
    let mut expected = Vec::new();
    a.flush(end, &mut expected);
    expected.sort_by_key(FlowRecord::order_key);
    let mut got = Vec::new();
    let mut chunks = 0;
    b.flush_sorted(end, 7, |records| {
        assert!(records.len() <= 7);
        chunks += 1;
        got.extend(records);
        true
    });
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
    assert!(chunks > 1);
    // Every kind made it: closed TCP, forced ends, ESP with its SPI; and
    // some flows ended without a record.
    assert!(
        got.iter()
            .any(|r| r.end_reason == EndReason::EndOfFlowDetected)
    );
    assert!(got.iter().any(|r| r.end_reason == EndReason::ForcedEnd));
    assert!(
        got.iter()
            .any(|r| r.encap.as_ref().is_some_and(|e| e.esp_spi.is_some()))
    );
    assert!(got.len() < 600 + early_b.len());
    assert_eq!(a.stats(), b.stats());
    assert!(b.is_empty());
    assert_eq!(
        b.memory_bytes(),
        FlowTable::new(FlowConfig::default()).memory_bytes()
    );
}

#[test]
fn a_sorted_final_flush_stopped_early_leaves_an_empty_table_that_works() {
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    let end = mixed_flows(&mut t, &mut out);
    let mut calls = 0;
    t.flush_sorted(end, 10, |records| {
        assert_eq!(records.len(), 10);
        calls += 1;
        false
    });
    assert_eq!(calls, 1);
    assert!(t.is_empty());
    // The table takes new flows as a new one would.
    let mut again = Vec::new();
    t.observe(
        &tcp("10.0.0.1", 1, "10.0.0.2", 2, SYN),
        end + S,
        end + S,
        &mut again,
    );
    assert_eq!(t.len(), 1);
    t.flush(end + S, &mut again);
    assert_eq!(again.len(), 1);
    assert!(t.is_empty());
}
