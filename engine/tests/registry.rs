//! Live counters: what the capture loop and the flow workers publish into
//! the registry can be read while the run goes on, and adds up.

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;

use engine::decode::Decoder;
use engine::source::{CaptureSource, Clock, Frame, Input, Poll};
use engine::{FlowConfig, PacketRepr, Pipeline, PipelineConfig, Registry, drive};

const S: u64 = 1_000_000_000;

/// Frames handed out a few per poll, with an idle poll between: what a
/// pipe that trickles looks like.
struct Trickle {
    frames: Vec<Vec<u8>>,
    at: usize,
    idle: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl CaptureSource for Trickle {
    type Error = Never;

    fn poll<I: Input>(&mut self, input: &mut I) -> Result<Poll, Never> {
        self.idle = !self.idle;
        if self.idle {
            return Ok(Poll::Idle);
        }
        for _ in 0..3 {
            let Some(data) = self.frames.get(self.at) else {
                return Ok(Poll::End);
            };
            self.at += 1;
            let frame = Frame {
                ts_ns: self.at as u64 * S,
                link_type: 101,
                data,
                wire_len: data.len() as u32,
                vlan: None,
                prefiltered: false,
                ifindex: 0,
                segmentation: None,
            };
            if let ControlFlow::Break(()) = input.frame(&frame) {
                break;
            }
        }
        Ok(Poll::Ready)
    }

    fn clock(&self) -> Clock {
        Clock::Packets
    }
}

/// A raw IPv4 UDP datagram from 192.0.2.1:`sport` to 192.0.2.2:53.
fn udp(sport: u16) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0, 0, 0, 53, 0, 8, 0,
        0,
    ];
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p
}

#[test]
fn the_capture_loop_publishes_its_counters_before_the_run_ends() {
    let registry = Registry::new();
    let (mut pipeline, records) = Pipeline::start(PipelineConfig {
        workers: 2,
        flow: FlowConfig::default(),
        host: None,
        registry: registry.clone(),
        enrichment: None,
        sampler: None,
    });
    let consumer = std::thread::spawn(move || records.map(|b| b.len()).sum::<usize>());
    let mut frames: Vec<Vec<u8>> = (0..10).map(|i| udp(40000 + i)).collect();
    // Not IP (version 5), and an IPv4 header cut short.
    frames.push(vec![0x50, 0, 0, 0]);
    frames.push(udp(1)[..12].to_vec());
    // A UDP header cut short: its IP-level flow, and counted as malformed.
    frames.push(udp(2)[..22].to_vec());
    let mut source = Trickle {
        frames,
        at: 0,
        idle: false,
    };
    let stop = AtomicBool::new(false);
    let ended = drive(
        &mut source,
        &Decoder::default(),
        None,
        &mut pipeline,
        &registry,
        &stop,
        || {},
    )
    .unwrap();
    assert_eq!(ended, engine::Ended::EndOfInput);
    // The pipeline still runs: the loop's counters are there already.
    let running = registry.snapshot();
    let d = &running.decode;
    assert_eq!((d.frames, d.decoded), (13, 11));
    assert_eq!(
        d.skipped_by_reason().collect::<Vec<_>>(),
        [("non_ip_raw_version", 1)]
    );
    assert_eq!(
        d.malformed_by_reason().collect::<Vec<_>>(),
        [("ipv4_truncated", 1), ("udp_truncated", 1)]
    );
    pipeline.finish().unwrap();
    assert_eq!(consumer.join().unwrap(), 11, "one record per flow");
    let end = registry.snapshot();
    assert_eq!(end.decode, running.decode);
    assert_eq!(end.table.packets, 11);
    assert_eq!(end.table.flows, 11);
    assert_eq!(end.table.records_total(), 11);
    assert_eq!(end.open_flows, 0);
}

#[test]
fn workers_publish_their_tables_while_running() {
    let registry = Registry::new();
    let (mut pipeline, mut records) = Pipeline::start(PipelineConfig {
        workers: 2,
        flow: FlowConfig::default(),
        host: None,
        registry: registry.clone(),
        enrichment: None,
        sampler: None,
    });
    let packet = |sport: u16, ts: u64| -> (PacketRepr, u64) {
        let p = PacketRepr {
            src_port: sport,
            dst_port: 53,
            ip_bytes: 28,
            ..PacketRepr::new(
                "192.0.2.1".parse().unwrap(),
                "192.0.2.2".parse().unwrap(),
                17,
            )
        };
        (p, ts)
    };
    for (p, ts) in [packet(1, S), packet(2, S), packet(3, 100 * S)] {
        pipeline.push(p, ts).unwrap();
    }
    pipeline.sync().unwrap();
    // Two flows time out at 61 s: once their records are out, the workers
    // have published the batch that made them.
    let mut got = 0;
    while got < 2 {
        got += records.recv().unwrap().len();
    }
    let s = registry.snapshot();
    assert_eq!(s.table.packets, 3);
    assert_eq!(s.table.flows, 3);
    assert_eq!(s.table.records[0], 2, "idle_timeout");
    assert_eq!(s.open_flows, 1);
    pipeline.finish().unwrap();
    assert_eq!(registry.snapshot().open_flows, 0);
}
