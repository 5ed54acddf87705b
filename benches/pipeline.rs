//! criterion benches: decode, flow-table update, OTLP JSON encoding, over the
//! generated fixtures. `cargo bench -p flowspan-benches`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
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

    flow_table_sizes(c);

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
    // What each pipeline worker does: map and encode a message's records
    // into one shared buffer.
    g.bench_function("worker_json", |b| {
        b.iter(|| {
            let spans = exporter::encode_spans(
                black_box(&records),
                exporter::Encodings {
                    json: true,
                    proto: false,
                },
                &exporter::span::Mapping::default(),
            );
            black_box(spans.len())
        })
    });
    g.finish();
}

/// A UDP packet of flow `n` (distinct addresses and ports per `n`).
fn udp_packet(n: u32) -> PacketRepr {
    let [_, b, c, d] = n.to_be_bytes();
    PacketRepr {
        src_port: 1024 + (n % 60_000) as u16,
        dst_port: 53,
        ip_bytes: 80,
        ttl: 64,
        ..PacketRepr::new(
            std::net::IpAddr::from([10, b, c, d]),
            std::net::IpAddr::from([172, 16, 0, (n % 251) as u8]),
            17,
        )
    }
}

/// A table holding flows `0..n`, all seen at 1 s.
fn table_with(n: u32) -> FlowTable {
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    for i in 0..n {
        t.observe(&udp_packet(i), S, S, &mut out);
    }
    t
}

const S: u64 = 1_000_000_000;

/// Flow-table updates with 10 k and 1 M flows open: a hit (a packet of an
/// open flow, in an order that defeats the caches) and a miss (a packet that
/// opens a new flow).
fn flow_table_sizes(c: &mut Criterion) {
    const PACKETS: u32 = 10_000;
    for (name, open) in [("10k", 10_000u32), ("1m", 1_000_000)] {
        let mut g = c.benchmark_group(format!("flow_table_{name}"));
        g.throughput(Throughput::Elements(u64::from(PACKETS)));
        if open > 100_000 {
            g.sample_size(10);
        }
        // Hits: a stride through the open flows (coprime with their count).
        let hits: Vec<PacketRepr> = (0..PACKETS)
            .map(|k| udp_packet(((u64::from(k) * 7_919) % u64::from(open)) as u32))
            .collect();
        let mut table = table_with(open);
        let mut out = Vec::new();
        g.bench_function("hit", |b| {
            b.iter(|| {
                for p in &hits {
                    table.observe(black_box(p), 2 * S, 2 * S, &mut out);
                }
                black_box(out.len())
            })
        });
        // The same hits through `observe_batch` (as the pipeline's workers
        // meter them), in batches of 512.
        let batches: Vec<Vec<(PacketRepr, u64, u64)>> = hits
            .chunks(512)
            .map(|c| c.iter().map(|p| (p.clone(), 2 * S, 2 * S)).collect())
            .collect();
        g.bench_function("hit_batch", |b| {
            b.iter(|| {
                for batch in &batches {
                    table.observe_batch(black_box(batch), &mut out);
                }
                black_box(out.len())
            })
        });
        drop(table);
        // Misses: new flows into a table holding `open`, rebuilt per batch.
        let misses: Vec<PacketRepr> = (open..open + PACKETS).map(udp_packet).collect();
        g.bench_function("miss", |b| {
            b.iter_batched_ref(
                || (table_with(open), Vec::new()),
                |(t, out)| {
                    for p in &misses {
                        t.observe(black_box(p), 2 * S, 2 * S, out);
                    }
                    black_box(out.len())
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
