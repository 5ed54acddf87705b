//! Records due at the last clock itself sort the same for any number of
//! workers. Flows whose idle time ran out exactly at the last packet's time
//! used to be ended by the batch before the final flush, so one worker sent
//! them ahead of every flow the flush ended, while the merge of several
//! workers put them among those (both are due at that clock).

use std::net::{IpAddr, Ipv4Addr};
use std::thread;

use engine::{
    FlowConfig, FlowRecord, PacketRepr, Pipeline, PipelineConfig, Registry, TableStats, Timeouts,
};

const MS: u64 = 1_000_000;

/// Packets of `flows` UDP and TCP flows, 0.25 ms apart: with an idle
/// timeout of whole milliseconds, some flows fall due exactly at the last
/// packet's time.
fn packets(packets: u32, flows: u32) -> Vec<(PacketRepr, u64)> {
    (0..packets)
        .map(|i| {
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
            (p, 1_000_000 * MS + u64::from(i) * MS / 4)
        })
        .collect()
}

fn run(workers: usize, input: &[(PacketRepr, u64)]) -> (Vec<FlowRecord>, TableStats) {
    let mut timeouts = Timeouts::default();
    timeouts.set_all_idle(2_000 * MS);
    let (mut pipeline, records) = Pipeline::start(PipelineConfig {
        workers,
        flow: FlowConfig {
            timeouts,
            ..FlowConfig::default()
        },
        host: None,
        registry: Registry::new(),
        enrichment: None,
        sampler: None,
    });
    let reader = thread::spawn(move || records.flatten().collect::<Vec<_>>());
    for (p, ts) in input {
        pipeline.push(p.clone(), *ts).unwrap();
    }
    let stats = pipeline.finish().unwrap();
    (reader.join().unwrap(), stats)
}

#[test]
fn records_due_at_the_last_clock_come_in_one_order_for_any_worker_count() {
    let input = packets(120_000, 9_000);
    let last = input.last().unwrap().1;
    let (one, one_stats) = run(1, &input);
    // The case this is about: flows ended idle at the last clock, beside
    // flows the final flush ended at it.
    let idle_at_last = one
        .iter()
        .filter(|r| r.export_clock_ns == last && r.end_reason == engine::EndReason::IdleTimeout)
        .count();
    let forced = one
        .iter()
        .filter(|r| r.end_reason == engine::EndReason::ForcedEnd)
        .count();
    assert!(
        idle_at_last > 0 && forced > 0,
        "{idle_at_last} idle, {forced} forced"
    );
    for workers in 2..=4 {
        let (records, stats) = run(workers, &input);
        assert_eq!(records.len(), one.len(), "{workers} workers");
        let first_difference = records.iter().zip(&one).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{workers} workers against one");
        assert_eq!(stats.records, one_stats.records, "{workers} workers");
    }
}
