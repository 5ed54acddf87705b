//! Packets and flow observations of one flow reach its worker in the order
//! they were pushed (regression, issue 17: the eBPF backend hands on a
//! flow's kernel counts just before a packet of it that went to userspace).

use engine::{
    EndReason, FlowConfig, FlowKey, FlowObservation, Opening, PacketRepr, Pipeline, PipelineConfig,
    Registry, SideDelta,
};

const MS: u64 = 1_000_000;

fn tcp(from_client: bool, flags: u16) -> PacketRepr {
    let (c, s) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let (src, dst, sport, dport) = if from_client {
        (c, s, 40000, 80)
    } else {
        (s, c, 80, 40000)
    };
    PacketRepr {
        src_port: sport,
        dst_port: dport,
        tcp_flags: flags,
        ip_bytes: 40,
        headers: 40,
        ..PacketRepr::new(src, dst, 6)
    }
}

#[test]
fn a_packet_pushed_after_an_observation_of_its_flow_is_taken_after_it() {
    let (syn, ack, fin) = (0x02, 0x10, 0x01);
    let (mut pipeline, records) = Pipeline::start(PipelineConfig {
        workers: 2,
        flow: FlowConfig::default(),
        host: None,
        registry: Registry::new(),
        enrichment: None,
        sampler: None,
    });
    // A whole connection, counted elsewhere: SYN, SYN/ACK, ACK, FIN both
    // ways; the client's FIN and ACK in one observation side.
    let (key, client_is_a) = FlowKey::from_packet(&tcp(true, syn));
    assert!(client_is_a);
    let mut o = FlowObservation::new(key, 1_000 * MS);
    o.last_seen_ns = 1_004 * MS;
    o.sides[0] = SideDelta {
        packets: 3,
        bytes: 120,
        tcp_flags: syn | ack | fin,
        ..SideDelta::default()
    };
    o.sides[1] = SideDelta {
        packets: 2,
        bytes: 80,
        tcp_flags: syn | ack | fin,
        ..SideDelta::default()
    };
    o.opening = Some(Opening {
        from_a: true,
        tcp_flags: syn,
        has_transport: true,
        ..Opening::default()
    });
    pipeline.push_flow(o).unwrap();
    // Then a new connection on the same ports: a new flow.
    pipeline.push(tcp(true, syn), 1_005 * MS).unwrap();
    pipeline.finish().unwrap();
    let all: Vec<_> = records.iter().flatten().collect();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].end_reason, EndReason::EndOfFlowDetected);
    assert_eq!(
        (all[0].forward.packets_delta, all[0].reverse.packets_delta),
        (3, 2)
    );
    assert_eq!(
        (all[1].forward.packets_delta, all[1].reverse.packets_delta),
        (1, 0)
    );
}
