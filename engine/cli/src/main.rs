//! The `engine` binary: reads a capture file or captures live, and emits
//! one flow span per flow record, as OTLP JSON and/or over OTLP to a
//! collector. Flags, wiring and exit codes only; the work is in the
//! `engine`, `capture_pcap`, `capture_afpacket` and `exporter` crates.
#![forbid(unsafe_code)]

mod export;
mod output;
mod progress;
mod signals;
mod stdin;
mod summary;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use capture_afpacket::{LiveCapture, LiveError, RingConfig};
use capture_pcap::{CaptureReader, FileSource};
use clap::Parser;
use engine::decode::{Decoder, TunnelPorts, UdpTunnel};
use engine::{FLOW_BYTES, FlowConfig, IpNet, Pipeline, PipelineConfig, Registry, Timeouts, drive};
use exporter::json::OtlpJsonWriter;
use exporter::otlp::Protocol;
use exporter::sink::{Mapped, RecordSink, SinkEnd};
use exporter::span::{InterfaceNames, Mapping, OptIn};
use exporter::{Encodings, encode_spans};

use crate::export::{open_output, otlp_config, resource, start_export};
use crate::output::JsonSink;
use crate::progress::Progress;
use crate::summary::Summary;

const AFTER_HELP: &str = "\
Default timeouts: idle TCP 300 s, UDP 60 s, ICMP/ICMPv6 30 s, other protocols 60 s,
and 120 s (or the protocol's, if shorter) for flows that have not got going (TCP before
its handshake completes, any flow with one packet); active 60 s; TCP end of flow (FIN
from both sides, or RST) 2 s of linger.

OTLP export is on when an endpoint is given (--otlp-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT
or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); JSON is then written only with -o. Also read:
OTEL_EXPORTER_OTLP_[TRACES_]{PROTOCOL,HEADERS,COMPRESSION,TIMEOUT (ms),CERTIFICATE,
CLIENT_CERTIFICATE,CLIENT_KEY}, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME. Flags win.
Capture files are never dropped from: reading waits while the collector is away. On
end of input or SIGINT/SIGTERM the queue is flushed for up to --shutdown-timeout; a
second signal stops waiting. Spans not delivered are counted and reported.

Live capture (-i, needs CAP_NET_RAW) runs until SIGINT or SIGTERM, which flush every open
flow (forced_end) and exit 0; with OTLP export it drops spans beyond --queue-size rather
than stall. Its flow state is bounded by --flow-memory (256M by default).

Exit status: 0 success; 1 the capture is damaged (the error names the record and byte;
flows from the records before it were written), or every live interface went away; 2 bad flags, settings or environment,
or the input or output could not be opened, or the input is not a capture; 3 some spans
were not delivered to the collector (takes precedence over 1 and 130); 130 interrupted
by SIGINT or SIGTERM (open flows were flushed as forced_end).

Examples:
  engine --pcap trace.pcap                      # OTLP JSON on stdout
  engine --pcap trace.pcapng -o spans.json --local-net 10.0.0.0/8
  engine --pcap trace.pcap --otlp-endpoint http://localhost:4317
  OTEL_EXPORTER_OTLP_ENDPOINT=https://otel:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    OTEL_EXPORTER_OTLP_HEADERS='authorization=Bearer%20TOKEN' engine --pcap trace.pcap
  tcpdump -w - -i eth0 | engine --pcap -
  engine -i eth0 -o spans.json                  # live, until Ctrl-C";

/// Capture files in, OpenTelemetry flow spans out (OTLP JSON, OTLP/gRPC, OTLP/HTTP).
#[derive(Debug, Parser)]
#[command(
    name = "engine",
    version,
    about = "Capture files or live interfaces in, one OpenTelemetry span per flow record out: OTLP JSON, or OTLP/gRPC and OTLP/HTTP to a collector.",
    after_help = AFTER_HELP,
    group(clap::ArgGroup::new("input").required(true).args(["pcap", "interfaces"]))
)]
struct Args {
    /// Capture file to read (pcap or pcapng, any byte order); `-` reads standard input.
    /// A regular file is mapped into memory and read in place; if another program may
    /// truncate it during the run, pipe it in instead (`--pcap - < FILE`), since
    /// truncating a mapped file kills the reader (SIGBUS).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Capture live on this interface (repeatable) until SIGINT or SIGTERM, which flush
    /// every open flow (`forced_end`) and exit 0. Needs CAP_NET_RAW.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        help_heading = "Live capture"
    )]
    interfaces: Vec<String>,

    /// Live capture backend.
    #[arg(long, value_enum, default_value_t = Backend::Afpacket, help_heading = "Live capture")]
    backend: Backend,

    /// Bytes per ring block (a multiple of 4096 from 1 MiB, so that offloaded
    /// super-frames fit, to 64 MiB). Each interface has one ring per worker; all
    /// rings together may take at most 4 GiB, and at most a quarter of the
    /// memory available.
    #[arg(allow_negative_numbers = true, long, value_name = "BYTES", default_value_t = 2 << 20, value_parser = parse_block_size,
          help_heading = "Live capture")]
    ring_block_size: u32,

    /// Blocks per ring.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=65_536),
          help_heading = "Live capture")]
    ring_blocks: u32,

    /// How often to ask the kernel again for the host's addresses and listening
    /// sockets, which make flows the host answers SERVER spans and flows it opens
    /// CLIENT spans (decimals allowed).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "1", value_parser = parse_positive_secs,
          help_heading = "Live capture")]
    host_refresh: u64,

    /// Write OTLP JSON to FILE (`-` for standard output). Without it, JSON goes to
    /// standard output unless spans are exported over OTLP.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Flow-table worker threads. Output is byte-identical for any value.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = default_workers(),
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,

    /// Idle timeout for every protocol, in seconds (decimals allowed).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", value_parser = parse_positive_secs)]
    idle_timeout: Option<u64>,

    /// Active timeout in seconds: open flows emit a record this often; 0 disables.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    active_timeout: u64,

    /// Idle timeout of flows that have not got going, in seconds: TCP flows
    /// before their handshake completes, and flows of any protocol with one
    /// packet. A protocol's own idle timeout applies if it is shorter.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "120", value_parser = parse_positive_secs)]
    unestablished_timeout: u64,

    /// Memory for flow state, e.g. 512M or 2G (bytes without a suffix): the
    /// flow limit is this divided by 300 bytes a flow. A new flow beyond it
    /// ends one with `lack_of_resources`: the least recently seen that has not
    /// got going, else the least recently seen. Default: 256M for live
    /// capture, no limit for capture files (whose output then does not
    /// depend on --workers).
    #[arg(allow_negative_numbers = true, long, value_name = "SIZE", value_parser = parse_flow_memory,
          conflicts_with = "max_flows")]
    flow_memory: Option<u64>,

    /// The flow limit as a number of open flows instead of --flow-memory; 0 means
    /// no limit. Split evenly among workers.
    #[arg(allow_negative_numbers = true, long, value_name = "N", value_parser = parse_flow_count)]
    max_flows: Option<usize>,

    /// Community ID seed (0-65535).
    #[arg(
        allow_negative_numbers = true,
        long,
        value_name = "SEED",
        default_value_t = 0
    )]
    community_id_seed: u16,

    /// Network of the observing host (repeatable): flows that such an address
    /// answered become SERVER spans with flow.direction `reverse`. Live capture
    /// learns the host's own addresses and listening sockets from the kernel and
    /// takes these networks as local too.
    #[arg(long = "local-net", value_name = "CIDR")]
    local_nets: Vec<IpNet>,

    /// Write an opt-in attribute group of the specification (repeatable):
    /// `tunnel` (tunnel.type, tunnel.id, the tunnel's and the IP-in-IP header's
    /// addresses, ports, network.type and network.transport), `ipsec`
    /// (flow.ipsec.ah.spi, flow.ipsec.esp.spi, the WireGuard
    /// flow.ipsec.sender_index and receiver_index, tunnel.ipsec.ah.spi), or `all`.
    /// Tunnel byte counters and tunnel.network.interface.mac are always written.
    #[arg(long = "opt-in", value_name = "GROUP", value_enum)]
    opt_in: Vec<OptInGroup>,

    /// UDP ports of a tunnel protocol, as KIND=PORT[,PORT...] (repeatable), replacing
    /// that protocol's defaults: vxlan (4789,8472), geneve (6081), gtpu (2152),
    /// teredo (3544, either port); KIND=none stops looking for it. Packets in
    /// tunnels are the flows of the packets inside.
    #[arg(long = "tunnel-port", value_name = "KIND=PORTS", value_parser = parse_tunnel_ports)]
    tunnel_ports: Vec<(UdpTunnel, Vec<u16>)>,

    /// Spans per OTLP request (JSON line or export request).
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,

    /// Resource attribute added to every request (repeatable); overrides
    /// OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME and the detected host.name/host.id.
    #[arg(long = "resource-attribute", value_name = "KEY=VALUE")]
    resource_attributes: Vec<String>,

    /// OTLP receiver base URL, e.g. http://localhost:4317 (gRPC) or
    /// http://localhost:4318 (HTTP, `/v1/traces` is appended). Turns export on.
    #[arg(long, value_name = "URL", help_heading = "OTLP export")]
    otlp_endpoint: Option<String>,

    /// grpc, http/protobuf or http/json [default: grpc].
    #[arg(long, value_name = "PROTOCOL", help_heading = "OTLP export")]
    otlp_protocol: Option<String>,

    /// Request header / gRPC metadata, e.g. `authorization=Bearer%20x` (repeatable;
    /// values are %-decoded).
    #[arg(
        long = "otlp-header",
        value_name = "KEY=VALUE",
        help_heading = "OTLP export"
    )]
    otlp_headers: Vec<String>,

    /// gzip or none [default: none].
    #[arg(long, value_name = "ALGORITHM", help_heading = "OTLP export")]
    otlp_compression: Option<String>,

    /// Time allowed for one export request, in seconds [default: 10].
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", value_parser = parse_positive_secs,
          help_heading = "OTLP export")]
    otlp_timeout: Option<u64>,

    /// PEM file of CA certificates to trust for an https:// endpoint (instead of the
    /// system's).
    #[arg(long, value_name = "FILE", help_heading = "OTLP export")]
    otlp_ca: Option<PathBuf>,

    /// PEM client certificate chain for mutual TLS (with --otlp-client-key).
    #[arg(long, value_name = "FILE", help_heading = "OTLP export")]
    otlp_client_cert: Option<PathBuf>,

    /// PEM private key of --otlp-client-cert.
    #[arg(long, value_name = "FILE", help_heading = "OTLP export")]
    otlp_client_key: Option<PathBuf>,

    /// Send a partly filled request once its oldest span has waited this long, in
    /// seconds.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "1", value_parser = parse_positive_secs,
          help_heading = "OTLP export")]
    batch_interval: u64,

    /// Export requests in flight at once.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256),
          help_heading = "OTLP export")]
    otlp_concurrency: u16,

    /// Most spans waiting for delivery. When it is full, reading a capture file waits.
    #[arg(allow_negative_numbers = true, long, value_name = "SPANS", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000),
          help_heading = "OTLP export")]
    queue_size: u64,

    /// At exit, how long to keep delivering queued spans before giving up on them,
    /// in seconds.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "10", value_parser = parse_secs,
          help_heading = "OTLP export")]
    shutdown_timeout: u64,

    /// No progress line and no summary on standard error (errors are still printed).
    #[arg(short, long)]
    quiet: bool,
}

/// A group of opt-in attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OptInGroup {
    /// tunnel.* and ipip.* identity attributes.
    Tunnel,
    /// flow.ipsec.* and tunnel.ipsec.*.
    Ipsec,
    /// Every group.
    All,
}

fn opt_in(groups: &[OptInGroup]) -> OptIn {
    let has = |g| groups.contains(&g) || groups.contains(&OptInGroup::All);
    OptIn {
        tunnel: has(OptInGroup::Tunnel),
        ipsec: has(OptInGroup::Ipsec),
    }
}

fn parse_tunnel_ports(s: &str) -> Result<(UdpTunnel, Vec<u16>), String> {
    let names = || {
        UdpTunnel::ALL
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (kind, ports) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KIND=PORT[,PORT...] (KIND one of {})", names()))?;
    let tunnel = UdpTunnel::ALL
        .into_iter()
        .find(|t| t.name() == kind)
        .ok_or_else(|| format!("{kind:?} is not a UDP tunnel; expected one of {}", names()))?;
    if ports == "none" {
        return Ok((tunnel, Vec::new()));
    }
    let ports = ports
        .split(',')
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} in {s:?} is not a UDP port (1-65535)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((tunnel, ports))
}

fn decoder(args: &Args) -> Decoder {
    let mut tunnel_ports = TunnelPorts::default();
    for (tunnel, ports) in &args.tunnel_ports {
        tunnel_ports.set(*tunnel, ports);
    }
    Decoder { tunnel_ports }
}

/// Where live packets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// AF_PACKET TPACKET_V3 rings, one per worker, in a fanout group.
    Afpacket,
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

fn parse_block_size(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    capture_afpacket::RingConfig::check_block_size(v)
        .map_err(|expected| format!("{v}: {expected}"))?;
    Ok(v)
}

fn parse_flow_count(s: &str) -> Result<usize, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a number of flows (a whole number, 0 or more)"))
}

/// Flow memory when live capture is not given --flow-memory or --max-flows.
const DEFAULT_LIVE_FLOW_MEMORY: u64 = 256 << 20;

/// A size in bytes: a number, optionally followed by K, M, G or T (powers
/// of 1024; `KiB`, `MiB`... and `KB`, `MB`... mean the same).
fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size (expected a number of bytes, optionally followed by K, M, G or T, e.g. 512M)"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 512M or 2G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_flow_memory(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    const MIN: u64 = 1 << 20;
    const MAX: u64 = 1 << 40;
    if !(MIN..=MAX).contains(&bytes) {
        return Err(format!("{s:?} is out of range (expected 1M to 1T)"));
    }
    Ok(bytes)
}

/// The flow limit over all workers (0: none), and what set it.
fn flow_limit(args: &Args) -> (usize, String) {
    let memory = |bytes: u64, how: &str| {
        (
            FlowConfig::flows_for_memory(bytes),
            format!(
                "{how}{} MiB at {FLOW_BYTES} bytes a flow",
                bytes as f64 / f64::from(1u32 << 20)
            ),
        )
    };
    match (args.max_flows, args.flow_memory) {
        (Some(0), _) => (0, "--max-flows 0".into()),
        (Some(n), _) => (n, "--max-flows".into()),
        (None, Some(bytes)) => memory(bytes, "--flow-memory "),
        (None, None) if args.pcap.is_none() => {
            memory(DEFAULT_LIVE_FLOW_MEMORY, "default live --flow-memory ")
        }
        (None, None) => (0, "capture files have none by default".into()),
    }
}

fn parse_positive_secs(s: &str) -> Result<u64, String> {
    let ns = parse_secs(s)?;
    if ns == 0 {
        return Err(format!("{s:?} must be more than 0 seconds"));
    }
    Ok(ns)
}

/// Prints a flag error as one line with the prefix every error has (clap's
/// own rendering spreads it over several, with a usage block), or help or
/// the version as clap would.
fn flag_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let mut line = String::new();
    let mut in_usage = false;
    for l in text.lines() {
        let l = l.trim();
        if l.is_empty() {
            in_usage = false;
            continue;
        }
        if l.starts_with("Usage:") {
            in_usage = true;
        }
        if in_usage || l.starts_with("For more information") {
            continue;
        }
        let l = l.strip_prefix("error: ").unwrap_or(l);
        if !line.is_empty() {
            line.push_str(if l.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(l);
    }
    eprintln!("engine: error: {line} (engine --help lists every flag)");
    ExitCode::from(2)
}

/// How a run ended, for the exit status.
enum Outcome {
    Complete,
    DamagedInput,
    Interrupted,
    SpansLost,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return flag_error(&e),
    };
    match run(&args) {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::DamagedInput) => ExitCode::from(1),
        Ok(Outcome::SpansLost) => ExitCode::from(3),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            // One line per problem, each with the prefix.
            for line in format!("{e:#}").lines() {
                eprintln!("engine: error: {line}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Outcome> {
    if args.pcap.is_none() {
        // Before anything is opened, so that the answer comes without
        // privileges too: ring memory is kernel memory no cgroup charges.
        let rings = args.interfaces.len() * usize::from(args.workers);
        capture_afpacket::check_ring_memory(args.ring_block_size, args.ring_blocks, rings)
            .map_err(|e| {
                anyhow!(
                    "--ring-block-size {} × --ring-blocks {} × {} rings ({} interfaces × --workers {}) = {e}; \
                     lower --ring-block-size, --ring-blocks or --workers",
                    args.ring_block_size,
                    args.ring_blocks,
                    rings,
                    args.interfaces.len(),
                    args.workers
                )
            })?;
    }
    let mut timeouts = Timeouts {
        active_ns: args.active_timeout,
        unestablished_idle_ns: args.unestablished_timeout,
        ..Timeouts::default()
    };
    if let Some(ns) = args.idle_timeout {
        timeouts.set_all_idle(ns);
    }
    let (max_flows, limit_source) = flow_limit(args);
    let flow = FlowConfig {
        timeouts,
        max_flows,
        community_id_seed: args.community_id_seed,
        local_nets: args.local_nets.clone(),
        ..FlowConfig::default()
    };
    let resource = resource(args)?;
    let otlp = otlp_config(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    let registry = Registry::new();
    let mut source = match &args.pcap {
        Some(path) if path.as_os_str() == "-" => {
            let input = stdin::InterruptibleStdin::new(Arc::clone(&stop))
                .context("starting the standard input thread")?;
            let reader = CaptureReader::new(Box::new(input), "-".into()).map_err(|e| anyhow!(e))?;
            Source::File(FileSource::new(reader, &registry))
        }
        Some(path) => Source::File(FileSource::new(
            CaptureReader::open(path).map_err(|e| anyhow!(e))?,
            &registry,
        )),
        None => {
            let Backend::Afpacket = args.backend;
            let ring = RingConfig {
                block_size: args.ring_block_size,
                block_count: args.ring_blocks,
                ..RingConfig::default()
            };
            let warn: capture_afpacket::Warn =
                Arc::new(|line: &str| eprintln!("engine: warning: {line}"));
            let capture = LiveCapture::open(
                &args.interfaces,
                usize::from(args.workers),
                &ring,
                &registry,
                warn,
            )
            .map_err(|e| anyhow!(e))?;
            Source::Live(capture)
        }
    };
    let live = matches!(source, Source::Live(_));
    let name = match &source {
        Source::File(s) => s.reader().path().to_owned(),
        Source::Live(capture) => format!("live capture on {}", capture.interface_list()),
    };
    let mapping = Mapping {
        interfaces: match &source {
            Source::Live(capture) => InterfaceNames::new(capture.interface_names()),
            Source::File(_) => InterfaceNames::default(),
        },
        opt_in: opt_in(&args.opt_in),
    };
    let decoder = decoder(args);
    let json = if args.output.is_some() || otlp.is_none() {
        let target = output_target(args);
        Some(JsonSink {
            writer: OtlpJsonWriter::new(
                open_output(args.output.as_ref())?,
                &resource,
                args.batch_size as usize,
            ),
            slot: registry.output("spans", &target, None),
            flush_each_batch: args.pcap.is_none(),
        })
    } else {
        None
    };
    let sink = match &otlp {
        Some(config) => Some(start_export(config, args, &resource, live, &registry)?),
        None => None,
    };
    let shutdown_timeout = Duration::from_nanos(args.shutdown_timeout);
    signals::watch_signals(
        Arc::clone(&stop),
        sink.as_ref().map(|s| s.exporter.shutdown_handle()),
        shutdown_timeout,
    )?;

    // The workers map and encode each record in the formats the sinks need.
    let encodings = Encodings {
        json: json.is_some()
            || otlp
                .as_ref()
                .is_some_and(|c| c.protocol == Protocol::HttpJson),
        proto: otlp
            .as_ref()
            .is_some_and(|c| c.protocol != Protocol::HttpJson),
    };
    // Live: the host's addresses and listening sockets, kept current.
    let (host, _refresher) = if live {
        match host::Refresher::start(
            args.local_nets.clone(),
            Duration::from_nanos(args.host_refresh),
            |line| eprintln!("engine: warning: {line}"),
        ) {
            Ok((view, refresher)) => (Some(view), Some(refresher)),
            Err(e) => {
                eprintln!(
                    "engine: warning: cannot learn the host's addresses and listening sockets \
                     ({e:#}); span kinds follow the port rules and --local-net only"
                );
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let (mut pipeline, records) = Pipeline::start_mapped(
        PipelineConfig {
            workers: usize::from(args.workers),
            flow,
            host,
            registry: registry.clone(),
            enrichment: None,
        },
        move |records| {
            encode_spans(&records, encodings, &mapping)
                .into_iter()
                .map(|span| Mapped { span })
                .collect()
        },
    );
    let mut sinks: Vec<Box<dyn RecordSink>> = Vec::new();
    if let Some(j) = json {
        sinks.push(Box::new(j));
    }
    if let Some(o) = sink {
        sinks.push(Box::new(o));
    }
    let writer = thread::Builder::new()
        .name("output".into())
        .spawn(move || output::run(records, sinks, shutdown_timeout))
        .context("starting the output thread")?;

    let started = Instant::now();
    let mut progress = Progress::new(args.quiet, registry.clone(), name.clone());
    let mut damaged = None;
    let mut all_interfaces_gone = false;
    match &mut source {
        Source::File(file) => {
            if let Err(e) = drive(file, &decoder, &mut pipeline, &registry, &stop, || {
                progress.tick()
            }) {
                // A signal ends standard input early; a record cut short by
                // that is not damage.
                if !stop.load(Ordering::Relaxed) {
                    damaged = Some(e);
                }
            }
        }
        Source::Live(capture) => {
            eprintln!(
                "engine: capturing on {} ({} rings, afpacket); SIGINT or SIGTERM stops",
                capture.interface_list(),
                capture.ring_count()
            );
            let ended = drive(capture, &decoder, &mut pipeline, &registry, &stop, || {
                progress.tick()
            });
            all_interfaces_gone = matches!(ended, Err(LiveError::NoInterfaceLeft));
        }
    }
    let reading = started.elapsed();
    // A live capture ends by a signal: that is its normal end.
    let interrupted = !live && stop.load(Ordering::Relaxed);
    let table = pipeline.finish();
    let ended = writer
        .join()
        .map_err(|_| anyhow!("the output thread panicked"))?;
    progress.clear();
    let mut json_result = Ok(());
    let mut export = None;
    for end in ended {
        match end {
            SinkEnd::Written(r) => json_result = json_result.and(r),
            SinkEnd::Exported { target, report } => export = Some((target, report)),
        }
    }
    match json_result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe && export.is_none() => {
            // The reader of our output went away (e.g. `| head`): that ends
            // the run without an error, but not without a word (printed even
            // with --quiet: losing spans is never silent).
            let c = registry.snapshot();
            let handed = c.outputs.iter().map(|o| o.written).max().unwrap_or(0);
            let made = c.table.records_total();
            eprintln!(
                "engine: warning: {} was closed by its reader: {handed} spans were handed to it \
                 before a write failed (the last of them may not have arrived), {} more records \
                 were made and not written, and reading stopped after {} packets",
                output_target(args),
                made.saturating_sub(handed),
                c.decode.frames
            );
            return Ok(Outcome::Complete);
        }
        Err(e) => {
            let e = anyhow!(e).context(format!("writing OTLP JSON to {}", output_target(args)));
            if export.is_none() {
                return Err(e);
            }
            eprintln!("engine: error: {e:#}");
        }
    }
    table.map_err(|e| anyhow!(e))?;
    if !args.quiet {
        let counters = registry.snapshot();
        let summary = Summary {
            path: &name,
            flow_limit: (max_flows, &limit_source),
            reading,
            finishing: started.elapsed().saturating_sub(reading),
            counters: &counters,
        };
        eprint!("{summary}");
    }
    if let Source::File(file) = &source
        && let Some(first) = &file.reader().stats().first_problem
    {
        eprintln!("engine: warning: {first}");
    }
    if all_interfaces_gone {
        eprintln!("engine: error: every interface went away; open flows were flushed");
    }
    if let Some(e) = &damaged {
        eprintln!("engine: error: {e}; flows from the records before it were written");
    }
    let lost = export.as_ref().map_or(0, |(_, r)| r.lost());
    if let Some((target, r)) = &export
        && lost > 0
    {
        // Printed even with --quiet: losing spans is never silent.
        eprintln!(
            "engine: error: {lost} of {} spans were not delivered to {target}: \
             {} rejected by the receiver, {} failed permanently, {} dropped (queue full), \
             {} still queued at the shutdown deadline",
            r.submitted, r.rejected, r.failed, r.dropped, r.undelivered
        );
    }
    Ok(if lost > 0 {
        Outcome::SpansLost
    } else if interrupted {
        Outcome::Interrupted
    } else if damaged.is_some() || all_interfaces_gone {
        Outcome::DamagedInput
    } else {
        Outcome::Complete
    })
}

/// What `-o` names, for messages.
fn output_target(args: &Args) -> String {
    match &args.output {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "standard output".to_string(),
    }
}

/// Where packets come from.
enum Source {
    /// A capture file or standard input.
    File(FileSource),
    /// Live capture.
    Live(LiveCapture),
}
