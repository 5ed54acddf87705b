//! Flow metering alone, for `throughput.sh`: reads a capture (mapped; each
//! worker reads it and meters its share, as `engine --pcap` does),
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
use engine::{FlowConfig, Pipeline, PipelineConfig, Registry, drive, drive_shards};

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
    let config = PipelineConfig {
        workers,
        flow: FlowConfig::default(),
        host: None,
        registry: registry.clone(),
        enrichment: None,
        sampler: None,
    };
    let map = |records: Vec<engine::FlowRecord>| vec![Some(()); records.len()];
    // One decoder for the run, as `engine` holds (default tunnel ports),
    // and the capture loop `engine` runs: on a mapped file, every worker
    // reads it and meters its share; on a stream, one reader feeds them.
    let decoder = Decoder::default();
    let stop = AtomicBool::new(false);
    let scratch = Registry::new();
    let others: Option<Vec<FileSource>> = (1..workers)
        .map(|_| Some(FileSource::new(source.reader().read_again()?, &scratch)))
        .collect();
    let (ended, stats, counter) = match others {
        Some(others) => {
            let (shards, records) = Pipeline::start_shards(config, map);
            let counter =
                std::thread::spawn(move || records.map(|batch| batch.len()).sum::<usize>());
            let (ended, stats) = drive_shards(
                &mut source,
                others,
                shards,
                &decoder,
                None,
                &registry,
                &stop,
                || {},
            );
            (ended, stats, counter)
        }
        None => {
            let (mut pipeline, records) = Pipeline::start_mapped(config, map);
            let counter =
                std::thread::spawn(move || records.map(|batch| batch.len()).sum::<usize>());
            let ended = drive(
                &mut source,
                &decoder,
                None,
                &mut pipeline,
                &registry,
                &stop,
                || {},
            );
            (ended, pipeline.finish(), counter)
        }
    };
    if let Err(e) = ended {
        eprintln!("meter: {e}");
    }
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
