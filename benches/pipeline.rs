//! criterion benches: decode, flow-table update, OTLP JSON encoding, over the
//! generated fixtures. `cargo bench -p flowspan-benches`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::{Decoded, FlowConfig, FlowRecord, FlowTable, LinkType, PacketRepr, decode};
use exporter::json::OtlpJsonWriter;
use exporter::resource::Resource;
use flowspan_benches::fixture_frames;

fn decoded(frames: &[(u32, u64, Vec<u8>)]) -> Vec<(u64, PacketRepr)> {
    frames
        .iter()
        .filter_map(|(lt, ts, data)| match decode(LinkType(*lt), data) {
            Decoded::Ip(p) => Some((*ts, p)),
            _ => None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let frames = fixture_frames();
    let packets = decoded(&frames);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("fixture_frames", |b| {
        b.iter(|| {
            for (lt, _, data) in &frames {
                black_box(decode(LinkType(*lt), black_box(data)));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("observe_and_flush", |b| {
        b.iter(|| {
            let mut t = FlowTable::new(FlowConfig::default());
            let mut out = Vec::new();
            let mut clock = 0;
            for (ts, p) in &packets {
                clock = clock.max(*ts);
                t.observe(p, *ts, clock, &mut out);
            }
            t.flush(clock, &mut out);
            black_box(out.len())
        })
    });
    g.finish();

    let mut records: Vec<FlowRecord> = Vec::new();
    let mut t = FlowTable::new(FlowConfig::default());
    let mut clock = 0;
    for (ts, p) in &packets {
        clock = clock.max(*ts);
        t.observe(p, *ts, clock, &mut records);
    }
    t.flush(clock, &mut records);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("otlp_json", |b| {
        b.iter(|| {
            let mut w = OtlpJsonWriter::new(Vec::with_capacity(1 << 20), &Resource::default(), 512);
            for r in &records {
                w.write_span(&exporter::span::flow_span(r))
                    .expect("in-memory write");
            }
            black_box(w.finish().expect("in-memory write").len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
