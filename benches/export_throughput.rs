//! Export throughput against a real collector: flow spans mapped, encoded
//! and sent per second, and per CPU-second of the engine's side.
//!
//! `cargo bench -p flowspan-benches --bench export_throughput`
//! (`FLOWSPAN_BENCH_SPANS` sets the span count, default 2 000 000;
//! `FLOWSPAN_BENCH_CONCURRENCY` the requests in flight, default 4 like the
//! engine's `--otlp-concurrency`).
//!
//! The receiver is rotel (installed by `scripts/install-rotel.sh`) with its
//! blackhole exporter, pinned to the last CPU with `taskset` when there is
//! more than one. This process is pinned to CPU 0 the same way (it re-runs
//! itself under `taskset`), so "one core" is literal: the producer (span
//! mapping and encoding) and the exporter thread share it. Spans are the
//! fixture records, cycled, each with its own span id; requests carry 512
//! spans; the queue policy is the pcap mode's (never drop). Spans are
//! encoded as the engine's workers encode them, 512 records at a time into
//! shared buffers, then batched from those (`push_encoded`), in two ways
//! timed one after the other: through each span's attribute list (`list`,
//! the engine's path with record rules or metrics) and attribute by
//! attribute as mapped (`direct`, its path otherwise).

// A benchmark report is its standard output.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exporter::json::JsonEncoder;
use exporter::otlp::{ExportOptions, OtlpConfig, OtlpExporter, OtlpFlags, Protocol, QueuePolicy};
use exporter::proto::ProtoEncoder;
use exporter::resource::Resource;
use exporter::select::RecordRules;
use exporter::span::Mapping;
use exporter::{EncodedSpan, Encodings, RequestEncoder, encode_selected, encode_spans};
use flowspan_benches::fixture_records;

/// User + system CPU seconds of process `pid` (`self` for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn main() {
    // criterion-style flags (`--bench`) are ignored.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let has_taskset = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if cpus > 1 && has_taskset && std::env::var_os("FLOWSPAN_PINNED").is_none() {
        let me = std::env::current_exe().expect("own path");
        let status = Command::new("taskset")
            .args(["-c", "0"])
            .arg(me)
            .env("FLOWSPAN_PINNED", "1")
            .status()
            .expect("re-run under taskset");
        std::process::exit(status.code().unwrap_or(1));
    }

    let spans: u64 = std::env::var("FLOWSPAN_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/install-rotel.sh"))
        .output()
        .expect("install rotel");
    assert!(out.status.success(), "installing rotel failed");
    let rotel = String::from_utf8(out.stdout)
        .expect("path")
        .trim()
        .to_string();
    let (grpc, http) = (free_port(), free_port());
    let mut cmd = if cpus > 1 && has_taskset {
        let mut c = Command::new("taskset");
        c.args(["-c", &(cpus - 1).to_string(), &rotel]);
        c
    } else {
        Command::new(&rotel)
    };
    let mut collector = cmd
        .args(["start", "--exporter", "blackhole"])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rotel");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "rotel did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let collector_pid = collector.id().to_string();

    let concurrency: usize = std::env::var("FLOWSPAN_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let records = fixture_records();
    let resource = Resource::detect();
    println!(
        "export_throughput: {spans} spans from {} fixture records, 512 per request, \
         {concurrency} in flight, engine side on 1 CPU",
        records.len()
    );
    for protocol in ["grpc", "http/protobuf", "http/json"] {
        for path in [Encoding::List, Encoding::Direct] {
            let port = if protocol == "grpc" { grpc } else { http };
            let r = run(
                protocol,
                port,
                path,
                &records,
                spans,
                concurrency,
                &resource,
                &collector_pid,
            );
            println!(
                "  {protocol:<14} {:<7} {:>9.0} spans/s wall   {:>9.0} spans per CPU-second   \
                 ({:.2} s wall, {:.2} s CPU; collector {:.2} s CPU; {} requests, {} retries)",
                path.name(),
                spans as f64 / r.wall,
                spans as f64 / r.cpu,
                r.wall,
                r.cpu,
                r.collector_cpu,
                r.requests,
                r.retries
            );
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &collector_pid])
        .status();
    let _ = collector.wait();
}

/// How spans are encoded: both as the engine's workers encode them, a
/// message of records at a time, each span in a shared buffer.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// Each record mapped to a `FlowSpan` (its attribute list), then
    /// encoded (`encode_selected`, as with record rules or metrics).
    List,
    /// Each attribute encoded as the mapping makes it (`encode_spans`, the
    /// engine's path without record rules and metrics).
    Direct,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::List => "list",
            Encoding::Direct => "direct",
        }
    }
}

struct Run {
    wall: f64,
    cpu: f64,
    collector_cpu: f64,
    requests: u64,
    retries: u64,
}

/// Sends `spans` spans to the collector at `port` over `protocol`, each a
/// fixture record with its own span id, encoded by `path`.
#[allow(clippy::too_many_arguments)]
fn run(
    protocol: &str,
    port: u16,
    path: Encoding,
    records: &[engine::FlowRecord],
    spans: u64,
    concurrency: usize,
    resource: &Resource,
    collector_pid: &str,
) -> Run {
    let flags = OtlpFlags {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        protocol: Some(protocol.into()),
        ..OtlpFlags::default()
    };
    let config = OtlpConfig::resolve(exporter::otlp::Signal::Traces, &flags, &|_| None)
        .expect("config")
        .expect("endpoint");
    let log: exporter::otlp::Log = Arc::new(|line: &str| eprintln!("{line}"));
    let exporter = OtlpExporter::start(
        &config,
        ExportOptions {
            queue_requests: 64,
            policy: QueuePolicy::Block,
            concurrency,
        },
        log,
    )
    .expect("exporter");
    let json = config.protocol == Protocol::HttpJson;
    let (mut encoder, encodings): (Box<dyn RequestEncoder>, _) = if json {
        (
            Box::new(JsonEncoder::new(resource)),
            Encodings {
                json: true,
                proto: false,
            },
        )
    } else {
        (
            Box::new(ProtoEncoder::new(resource)),
            Encodings {
                json: false,
                proto: true,
            },
        )
    };
    let mapping = Mapping::default();
    let rules = RecordRules::default();
    let mut chunk: Vec<engine::FlowRecord> = Vec::with_capacity(512);
    let cpu0 = cpu_seconds("self");
    let rotel0 = cpu_seconds(collector_pid);
    let t0 = Instant::now();
    let mut i = 0;
    while i < spans {
        chunk.clear();
        while chunk.len() < 512 && i < spans {
            let mut r = records[(i % records.len() as u64) as usize].clone();
            r.span_id = i.to_be_bytes();
            chunk.push(r);
            i += 1;
        }
        let encoded: Vec<EncodedSpan> = match path {
            Encoding::List => encode_selected(&chunk, encodings, &mapping, &rules)
                .into_iter()
                .flatten()
                .collect(),
            Encoding::Direct => encode_spans(&chunk, encodings, &mapping),
        };
        for e in &encoded {
            encoder.push_encoded(e);
        }
        let n = encoder.spans() as u64;
        let mut body = Vec::with_capacity(512 * 1024);
        encoder.take_request(&mut body);
        exporter.submit(body, n);
    }
    let report = exporter.finish(Duration::from_secs(60));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self") - cpu0;
    let collector_cpu = cpu_seconds(collector_pid) - rotel0;
    assert_eq!(report.delivered, spans, "{protocol}: {report:?}");
    Run {
        wall,
        cpu,
        collector_cpu,
        requests: report.requests,
        retries: report.retries,
    }
}
