//! Flow metering alone, for `throughput.sh`: reads a capture (mapped),
//! decodes each frame, and meters the packets in a [`Pipeline`] of N workers,
//! with the same capture loop as `engine --pcap` ([`engine::drive`]), but drops the flow records instead of
//! mapping and encoding them as spans. Comparing its CPU time with the
//! engine's shows what metering costs and what output costs.
//!
//!     meter CAPTURE [WORKERS]      (default 1 worker)
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
    let (path, workers) = match args.as_slice() {
        [path] => (path, 1),
        [path, n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => (path, n),
            _ => {
                eprintln!("meter: WORKERS must be a positive integer, not {n:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: meter CAPTURE [WORKERS]");
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
        |records: Vec<engine::FlowRecord>| vec![Some(()); records.len()],
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
