//! Flow metering alone, for `throughput.sh`: reads a capture (mapped),
//! decodes each frame, and meters the packets in a [`Pipeline`] of N workers,
//! with the same capture loop as `engine --pcap` ([`engine::drive`]), but drops the flow records instead of
//! mapping and encoding them as spans. Comparing its CPU time with the
//! engine's shows what metering costs and what output costs.
//!
//!     meter CAPTURE [WORKERS [json|proto]]      (default 1 worker)
//!
//! With `json` or `proto`, each worker also maps and encodes its records as
//! the engine's workers do (`exporter::encode_spans`, default mapping),
//! then drops the spans: the cost of one encoding without a writer or a
//! collector (`benches/instructions.sh` counts the protobuf one this way).
//!
//! Prints the packets metered and the records made, on one line.
#![forbid(unsafe_code)]
// The result line is the output.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use capture_pcap::FileSource;
use engine::decode::Decoder;
use engine::{FlowConfig, Pipeline, PipelineConfig, Registry, drive};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, workers, encoding) = match args.as_slice() {
        [path] => (path, "1", None),
        [path, n] => (path, n.as_str(), None),
        [path, n, e] => (path, n.as_str(), Some(e.as_str())),
        _ => {
            eprintln!("usage: meter CAPTURE [WORKERS [json|proto]]");
            return ExitCode::from(2);
        }
    };
    let workers = match workers.parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("meter: WORKERS must be a positive integer, not {workers:?}");
            return ExitCode::from(2);
        }
    };
    let encodings = match encoding {
        None => None,
        Some("json") => Some(exporter::Encodings {
            json: true,
            proto: false,
        }),
        Some("proto") => Some(exporter::Encodings {
            json: false,
            proto: true,
        }),
        Some(other) => {
            eprintln!("meter: the encoding must be json or proto, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let registry = Registry::new();
    let mut source = match capture_pcap::CaptureReader::open(path) {
        Ok(r) => FileSource::new(r, &registry),
        Err(e) => {
            eprintln!("meter: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut pipeline, records) = Pipeline::start_mapped(
        PipelineConfig {
            workers,
            flow: FlowConfig::default(),
            host: None,
            registry: registry.clone(),
            enrichment: None,
            sampler: None,
        },
        move |records: Vec<engine::FlowRecord>| {
            if let Some(encodings) = encodings {
                let spans = exporter::encode_spans(
                    &records,
                    encodings,
                    &exporter::span::Mapping::default(),
                );
                std::hint::black_box(spans);
            }
            vec![Some(()); records.len()]
        },
    );
    let counter = std::thread::spawn(move || records.map(|batch| batch.len()).sum::<usize>());
    // One decoder for the run, as `engine` holds (default tunnel ports),
    // and the capture loop `engine` runs.
    let decoder = Decoder::default();
    let stop = AtomicBool::new(false);
    if let Err(e) = drive(
        &mut source,
        &decoder,
        None,
        &mut pipeline,
        &registry,
        &stop,
        || {},
    ) {
        eprintln!("meter: {e}");
    }
    let stats = pipeline.finish();
    let records = counter.join().unwrap_or(0);
    let packets = registry.snapshot().decode.decoded;
    match stats {
        Ok(s) => {
            println!(
                "{packets} packets metered, {records} records, {} flows at the peak",
                s.peak_flows
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meter: {e}");
            ExitCode::FAILURE
        }
    }
}
