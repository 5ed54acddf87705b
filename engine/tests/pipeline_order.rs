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
    let all: Vec<_> = records.flatten().collect();
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

/// The record stream merges the workers' output on the reading thread;
/// `recv_timeout` must give up when nothing is due, hand out a record as
/// soon as its flow ends, and say when every record has been read.
#[test]
fn the_record_stream_waits_hands_out_and_ends() {
    use engine::pipeline::RecvTimeoutError;
    use std::time::{Duration, Instant};
    for workers in [1, 2] {
        let (mut pipeline, mut records) = Pipeline::start(PipelineConfig {
            workers,
            flow: FlowConfig::default(),
            host: None,
            registry: Registry::new(),
            enrichment: None,
            sampler: None,
        });
        pipeline.push(tcp(true, 0x02), 1_000 * MS).unwrap();
        pipeline.sync().unwrap();
        let asked = Instant::now();
        assert_eq!(
            records.recv_timeout(Duration::from_millis(50)),
            Err(RecvTimeoutError::Timeout),
            "{workers} workers: an open flow has no record yet"
        );
        assert!(asked.elapsed() >= Duration::from_millis(50));
        // The SYN's flow is not established: it ends after the
        // unestablished timeout (120 s), which this packet's clock passes.
        let later = PacketRepr::new(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            17,
        );
        pipeline.push(later, 200_000 * MS).unwrap();
        pipeline.sync().unwrap();
        let batch = records
            .recv_timeout(Duration::from_secs(20))
            .expect("the timed-out record");
        assert_eq!(batch.len(), 1, "{workers} workers");
        assert_eq!(batch[0].source_port, 40000);
        let finisher = std::thread::spawn(move || pipeline.finish().map(|s| s.peak_flows));
        let rest = records
            .recv_timeout(Duration::from_secs(20))
            .expect("the flow still open, forced out at the end");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].end_reason, EndReason::ForcedEnd);
        assert_eq!(
            records.recv_timeout(Duration::from_secs(20)),
            Err(RecvTimeoutError::Disconnected)
        );
        assert_eq!(records.recv(), None);
        assert!(finisher.join().unwrap().is_ok());
    }
}

/// A worker holds the records of full batches (to send fewer messages), but
/// not past a tick: every 8192 packets they go out, even when no sync comes
/// and every batch is full, so neither a reader of the stream nor the merge
/// of several workers waits on them for long.
#[test]
fn held_records_go_out_at_the_next_tick() {
    use std::time::Duration;
    let (mut pipeline, mut records) = Pipeline::start(PipelineConfig {
        workers: 1,
        flow: FlowConfig::default(),
        host: None,
        registry: Registry::new(),
        enrichment: None,
        sampler: None,
    });
    let udp = |last: u8, port: u16| {
        let mut p = PacketRepr::new(
            "10.0.0.1".parse().unwrap(),
            std::net::IpAddr::from([10, 0, 0, last]),
            17,
        );
        p.src_port = port;
        p.dst_port = 53;
        p
    };
    // One flow, then, past its idle timeout, 8191 packets of another: the
    // first flow's record is made in the first full batch and held.
    pipeline.push(udp(2, 1000), 1_000 * MS).unwrap();
    for i in 0..8191 {
        pipeline.push(udp(3, 2000), 200_000 * MS + i * MS).unwrap();
    }
    let batch = records
        .recv_timeout(Duration::from_secs(10))
        .expect("the first flow's record, sent at the tick");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].source_port, 1000);
    assert_eq!(batch[0].end_reason, EndReason::IdleTimeout);
    let finisher = std::thread::spawn(move || pipeline.finish().is_ok());
    let rest: Vec<_> = records.flatten().collect();
    assert_eq!(rest.len(), 1, "the second flow, forced out at the end");
    assert!(finisher.join().unwrap());
}
