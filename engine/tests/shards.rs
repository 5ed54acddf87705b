//! Shards (issue 21): workers that each read the whole input and meter
//! their share give the records a pipeline with as many workers gives, in
//! the same order, and a shard far ahead of the others waits instead of
//! piling its records up in the merge.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use engine::{
    FlowConfig, FlowKey, FlowObservation, FlowRecord, PacketRepr, PacketSink, Pipeline,
    PipelineConfig, Registry, SideDelta, TableStats, Timeouts,
};

const MS: u64 = 1_000_000;

/// What the capture loop would push: packets of `flows` flows (UDP and
/// TCP, some lasting, some not), now and then a flow observation, with the
/// clock moving so that idle flows time out along the way.
enum Input {
    Packet(PacketRepr, u64),
    Flow(FlowObservation),
}

fn input(packets: u32, flows: u32) -> Vec<Input> {
    let mut out = Vec::with_capacity(packets as usize);
    for i in 0..packets {
        // A cheap scramble so that flows interleave.
        let f = i.wrapping_mul(2_654_435_761) % flows;
        let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + f));
        let b = IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + f % 251));
        let (src, dst) = if i.is_multiple_of(3) { (b, a) } else { (a, b) };
        let protocol = if f.is_multiple_of(4) { 6 } else { 17 };
        let mut p = PacketRepr::new(src, dst, protocol);
        (p.src_port, p.dst_port) = if src == a { (40_000, 53) } else { (53, 40_000) };
        p.ip_bytes = 60 + i % 900;
        p.headers = 28;
        if protocol == 6 {
            p.tcp_flags = if i.is_multiple_of(7) { 0x02 } else { 0x10 };
        }
        let ts = 1_000_000 * MS + u64::from(i) * MS / 4;
        out.push(Input::Packet(p, ts));
        if i % 5_000 == 4_999 {
            let (key, _) = FlowKey::from_packet(&PacketRepr::new(a, b, 17));
            let mut o = FlowObservation::new(key, ts);
            o.last_seen_ns = ts;
            o.sides[0] = SideDelta {
                packets: 2,
                bytes: 200,
                ..SideDelta::default()
            };
            out.push(Input::Flow(o));
        }
    }
    out
}

fn config(workers: usize) -> PipelineConfig {
    let mut timeouts = Timeouts::default();
    timeouts.set_all_idle(2_000 * MS);
    PipelineConfig {
        workers,
        flow: FlowConfig {
            timeouts,
            ..FlowConfig::default()
        },
        host: None,
        registry: Registry::new(),
        enrichment: None,
        sampler: None,
    }
}

fn feed(sink: &mut impl PacketSink, input: &[Input]) {
    for i in input {
        match i {
            Input::Packet(p, ts) => sink.push(p.clone(), *ts).unwrap(),
            Input::Flow(o) => sink.push_flow(o.clone()).unwrap(),
        }
    }
}

fn threaded(workers: usize, input: &[Input]) -> (Vec<FlowRecord>, TableStats) {
    let (mut pipeline, records) = Pipeline::start(config(workers));
    let reader = thread::spawn(move || records.flatten().collect::<Vec<_>>());
    feed(&mut pipeline, input);
    let stats = pipeline.finish().unwrap();
    (reader.join().unwrap(), stats)
}

fn sharded(workers: usize, input: &Arc<Vec<Input>>) -> (Vec<FlowRecord>, TableStats) {
    let (shards, records) = Pipeline::start_shards(config(workers), |records: Vec<FlowRecord>| {
        records.into_iter().map(Some).collect()
    });
    let reader = thread::spawn(move || records.flatten().collect::<Vec<_>>());
    let feeders: Vec<_> = shards
        .into_iter()
        .map(|mut shard| {
            let input = Arc::clone(input);
            thread::spawn(move || {
                feed(&mut shard, &input);
                shard.finish().unwrap()
            })
        })
        .collect();
    let mut stats = TableStats::default();
    for f in feeders {
        stats.merge(&f.join().unwrap());
    }
    (reader.join().unwrap(), stats)
}

#[test]
fn shards_give_the_records_of_a_pipeline_with_as_many_workers() {
    let input = Arc::new(input(120_000, 9_000));
    let (one, one_stats) = threaded(1, &input);
    // Idle flows ended along the way, and the rest at the end: both kinds
    // of release through the merge are exercised.
    assert!(one.len() > 9_000, "{} records", one.len());
    for workers in 1..=4 {
        let (records, stats) = sharded(workers, &input);
        assert_eq!(records.len(), one.len(), "{workers} shards");
        assert!(
            records == one,
            "{workers} shards: records differ from one worker's"
        );
        assert_eq!(stats.packets, one_stats.packets, "{workers} shards");
        assert_eq!(stats.flows, one_stats.flows, "{workers} shards");
        assert_eq!(stats.records, one_stats.records, "{workers} shards");
    }
    let (three, _) = threaded(3, &input);
    assert!(
        three == one,
        "a pipeline of three gives one worker's records"
    );
}

#[test]
fn a_shard_far_ahead_of_the_others_waits_for_them() {
    // Every packet starts a flow that ends idle along the way: the first
    // shard alone makes about 100 000 records that the merge cannot
    // release while the second has sent nothing.
    let input = Arc::new(input(200_000, 60_000));
    let (mut shards, records) = Pipeline::start_shards(config(2), |records: Vec<FlowRecord>| {
        records.into_iter().map(Some).collect()
    });
    let behind = shards.pop().unwrap();
    let ahead = shards.pop().unwrap();
    let reader = thread::spawn(move || records.flatten().count());
    let fed = Arc::new(AtomicUsize::new(0));
    let first = {
        let (input, fed) = (Arc::clone(&input), Arc::clone(&fed));
        let mut shard = ahead;
        thread::spawn(move || {
            for chunk in input.chunks(1_000) {
                feed(&mut shard, chunk);
                fed.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            shard.finish().unwrap()
        })
    };
    // Unheld, the first shard reads all its input in milliseconds (its
    // final flush then waits, as a pipeline's does). Held back, it waits
    // a few thousand records in.
    thread::sleep(Duration::from_millis(500));
    let read = fed.load(Ordering::Relaxed);
    assert!(
        read < input.len() / 4,
        "the shard ahead read {read} of {} inputs while the other had sent nothing",
        input.len()
    );
    let second = {
        let input = Arc::clone(&input);
        let mut shard = behind;
        thread::spawn(move || {
            feed(&mut shard, &input);
            shard.finish().unwrap()
        })
    };
    let mut stats = first.join().unwrap();
    stats.merge(&second.join().unwrap());
    let count = reader.join().unwrap();
    assert_eq!(count as u64, stats.records.iter().sum::<u64>());
    let (one, _) = threaded(1, &input);
    assert_eq!(count, one.len());
}
