//! Unit tests of the flow table.

use std::net::IpAddr;

use super::*;
use crate::flow::config::Timeouts;
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
    assert!(worst <= 300, "{worst} bytes per flow after a doubling");
    assert_eq!(t.stats().peak_memory_bytes, t.memory_bytes() as u64);
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
