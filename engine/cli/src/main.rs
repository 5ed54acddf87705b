//! The `engine` binary: reads a capture and writes one flow span per flow
//! record as OTLP JSON. Flags, wiring and exit codes only; the work is in the
//! `engine`, `capture_pcap` and `exporter` crates.
#![forbid(unsafe_code)]

mod summary;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use capture_pcap::CaptureReader;
use clap::Parser;
use engine::{Decoded, FlowConfig, IpNet, LinkType, Pipeline, PipelineConfig, Timeouts, decode};
use exporter::json::{OtlpJsonWriter, Resource};

use crate::summary::{DecodeCounters, Summary};

const AFTER_HELP: &str = "\
Default timeouts: idle TCP 300 s, UDP 60 s, ICMP/ICMPv6 30 s, other protocols 60 s;
active 60 s; TCP end of flow (FIN from both sides, or RST) 2 s of linger.

Exit status: 0 success; 1 the capture is damaged (the error names the record and byte;
flows from the records before it were written); 2 bad flags, or the input or output
could not be opened, or the input is not a capture.

Examples:
  engine --pcap trace.pcap                      # OTLP JSON on stdout
  engine --pcap trace.pcapng -o spans.json --local-net 10.0.0.0/8
  tcpdump -w - -i eth0 | engine --pcap -";

/// Capture files in, OpenTelemetry flow spans (OTLP JSON) out.
#[derive(Debug, Parser)]
#[command(name = "engine", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Capture file to read (pcap or pcapng, any byte order); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pcap: PathBuf,

    /// Write OTLP JSON to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Flow-table worker threads. Output is byte-identical for any value.
    #[arg(long, value_name = "N", default_value_t = default_workers(),
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,

    /// Idle timeout for every protocol, in seconds (decimals allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_positive_secs)]
    idle_timeout: Option<u64>,

    /// Active timeout in seconds: open flows emit a record this often; 0 disables.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    active_timeout: u64,

    /// Most open flows; a new flow beyond it ends the least recently seen one
    /// with `lack_of_resources`. 0 means no limit. Split evenly among workers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_flows: usize,

    /// Community ID seed (0-65535).
    #[arg(long, value_name = "SEED", default_value_t = 0)]
    community_id_seed: u16,

    /// Network of the observing host (repeatable): flows that such an address
    /// answered become SERVER spans with flow.direction `reverse`.
    #[arg(long = "local-net", value_name = "CIDR")]
    local_nets: Vec<IpNet>,

    /// Spans per OTLP request line.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,

    /// No progress line and no summary on standard error (errors are still printed).
    #[arg(short, long)]
    quiet: bool,
}

fn default_workers() -> u16 {
    thread::available_parallelism()
        .map(|n| u16::try_from(n.get()).unwrap_or(u16::MAX))
        .unwrap_or(1)
}

fn parse_secs(s: &str) -> Result<u64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!(
            "{s:?} is out of range (expected 0 to 1000000000 seconds)"
        ));
    }
    Ok((v * 1e9).round() as u64)
}

fn parse_positive_secs(s: &str) -> Result<u64, String> {
    let ns = parse_secs(s)?;
    if ns == 0 {
        return Err(format!("{s:?} must be more than 0 seconds"));
    }
    Ok(ns)
}

/// How a run ended, for the exit status.
enum Outcome {
    Complete,
    DamagedInput,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::DamagedInput) => ExitCode::from(1),
        Err(e) => {
            eprintln!("engine: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn open_output(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(p).with_context(|| format!("--output {}: cannot create", p.display()))?,
        )),
    })
}

fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut timeouts = Timeouts {
        active_ns: args.active_timeout,
        ..Timeouts::default()
    };
    if let Some(ns) = args.idle_timeout {
        timeouts.set_all_idle(ns);
    }
    let flow = FlowConfig {
        timeouts,
        max_flows: args.max_flows,
        community_id_seed: args.community_id_seed,
        local_nets: args.local_nets.clone(),
    };
    let mut reader = CaptureReader::open(&args.pcap).map_err(|e| anyhow!(e))?;
    let out = open_output(args.output.as_ref())?;

    let (mut pipeline, records) = Pipeline::start(PipelineConfig {
        workers: usize::from(args.workers),
        flow,
    });
    let batch_size = args.batch_size as usize;
    let writer = thread::Builder::new()
        .name("otlp-json-writer".into())
        .spawn(move || -> io::Result<u64> {
            let mut w = OtlpJsonWriter::new(out, &Resource::default(), batch_size);
            for batch in records {
                for r in &batch {
                    w.write_record(r)?;
                }
            }
            let spans = w.spans();
            w.finish()?;
            Ok(spans)
        })
        .context("starting the output thread")?;

    let started = Instant::now();
    let mut progress = Progress::new(args.quiet);
    let mut decode_counters = DecodeCounters::default();
    let mut damaged = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                damaged = Some(e);
                break;
            }
        };
        let ts = frame.ts_ns;
        decode_counters.frames += 1;
        match decode(LinkType(frame.link_type), frame.data) {
            Decoded::Ip(p) => {
                decode_counters.decoded += 1;
                // On error the output thread has stopped; its own error is
                // reported below.
                if pipeline.push(p, ts).is_err() {
                    break;
                }
            }
            Decoded::Skipped(reason) => decode_counters.skip(reason, frame.link_type),
            Decoded::Malformed(e) => decode_counters.malformed(e),
        }
        if decode_counters.frames % 65_536 == 0 {
            progress.tick(&reader, &decode_counters);
        }
    }
    let table = pipeline.finish();
    let written = writer
        .join()
        .map_err(|_| anyhow!("the output thread panicked"))?;
    progress.clear();
    let spans = match written {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            // The reader of our output went away (e.g. `| head`): stop quietly.
            return Ok(Outcome::Complete);
        }
        Err(e) => {
            let target = args
                .output
                .as_ref()
                .map_or("standard output".to_string(), |p| p.display().to_string());
            return Err(anyhow!(e).context(format!("writing OTLP JSON to {target}")));
        }
    };
    let table = table.map_err(|e| anyhow!(e))?;
    if !args.quiet {
        let summary = Summary {
            path: reader.path(),
            elapsed: started.elapsed(),
            reader: reader.stats(),
            decode: &decode_counters,
            table: &table,
            spans,
        };
        eprint!("{summary}");
    }
    if let Some(first) = &reader.stats().first_problem {
        eprintln!("engine: warning: {first}");
    }
    match damaged {
        Some(e) => {
            eprintln!("engine: error: {e}; flows from the records before it were written");
            Ok(Outcome::DamagedInput)
        }
        None => Ok(Outcome::Complete),
    }
}

/// A progress line on standard error for long runs: rewritten in place on a
/// terminal, one line every 10 s otherwise.
struct Progress {
    enabled: bool,
    tty: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: !quiet,
            tty: io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    fn tick(&mut self, reader: &CaptureReader, d: &DecodeCounters) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let every = if self.tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if now.duration_since(self.started) < Duration::from_secs(2)
            || now.duration_since(self.last) < every
        {
            return;
        }
        self.last = now;
        let secs = now.duration_since(self.started).as_secs_f64();
        let line = format!(
            "engine: {}: {} packets, {:.1} MB read in {:.0} s ({:.0} packets/s)",
            reader.path(),
            d.frames,
            reader.stats().bytes as f64 / 1e6,
            secs,
            d.frames as f64 / secs
        );
        if self.tty {
            eprint!("\r{line}\x1b[K");
            self.shown = true;
        } else {
            eprintln!("{line}");
        }
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
