//! The `engine` binary: reads a capture file or captures live, and emits
//! one flow span per flow record, as OTLP JSON and/or over OTLP to a
//! collector. Flags, wiring and exit codes only; the work is in the
//! `engine`, `capture_pcap`, `capture_afpacket` and `exporter` crates.
#![forbid(unsafe_code)]

/// std's `eprintln!`, except that it cannot panic: when standard error is a
/// pipe whose reader has gone (`engine … 2>&1 | head`), std's panics
/// ("failed printing to stderr") and the run ends with status 101; here the
/// line is lost and the run goes on. Every module below uses this one.
macro_rules! eprintln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// std's `eprint!`, except that it cannot panic (see `eprintln!`).
macro_rules! eprint {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

/// `engine: warning: …` on standard error, unless `--log-level error`.
macro_rules! warning {
    ($($t:tt)*) => { $crate::log::warning(format_args!($($t)*)) };
}

/// `engine: …` on standard error, at `--log-level info`.
macro_rules! note {
    ($($t:tt)*) => { $crate::log::note(format_args!($($t)*)) };
}

mod export;
mod files;
mod kubernetes;
mod log;
mod metrics;
mod output;
mod progress;
mod reload;
mod signals;
mod stdin;
mod summary;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use capture_afpacket::{LiveCapture, LiveError, RingConfig};
use capture_ebpf::{AttachMode, EbpfCapture, EbpfConfig};
use capture_pcap::{CaptureReader, FileSource, MergedFiles};
use engine::bpf::FrameFilter;
use engine::decode::UdpTunnel;
use engine::registry::{METRIC_POINTS, SPANS};
use engine::sample::FlowSampler;
use engine::{FlowConfig, InterfaceFlows, Pipeline, PipelineConfig, Registry, Timeouts, drive};
use exporter::json::OtlpJsonWriter;
use exporter::metrics::{Aggregator, Clock};
use exporter::otlp::{Protocol, Signal};
use exporter::select::RecordRules;
use exporter::sink::{Mapped, RecordSink, SinkEnd};
use exporter::span::{InterfaceNames, Mapping};
use exporter::{Encodings, encode_selected_with, encode_spans};
use flowspan_cli::args::{
    self, Args, Backend, EbpfAttach, InterfaceFlowsArg, decoder, flow_limit, opt_in,
};
use flowspan_cli::config::{self, ConfigError};

use crate::export::{
    metrics_settings, open_output, otlp_config, resource, start_export, start_metrics_export,
};
use crate::output::{JsonSink, MetricsFeed};
use crate::progress::Progress;
use crate::summary::Summary;

/// How a run ended, for the exit status.
enum Outcome {
    Complete,
    DamagedInput,
    Interrupted,
    SpansLost,
}

fn main() -> ExitCode {
    // First: SIGHUP's default action ends the process, and a reload may be
    // asked for while the run is still starting. One that comes before the
    // signal thread runs is kept and done then.
    let early_hangup = Arc::new(AtomicBool::new(false));
    if let Err(e) =
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&early_hangup))
    {
        eprintln!("engine: error: installing the SIGHUP handler: {e}");
        return ExitCode::from(2);
    }
    let argv: Vec<OsString> = std::env::args_os().collect();
    let layered = match config::load(&argv, &|k| std::env::var(k).ok()) {
        Ok(layered) => layered,
        Err(ConfigError::Bad(line)) => {
            eprintln!("engine: error: {line}");
            return ExitCode::from(2);
        }
        Err(ConfigError::Clap(e)) => match args::flag_error_line(&e) {
            Some(line) => {
                eprintln!("engine: error: {line}");
                return ExitCode::from(2);
            }
            None => {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
        },
    };
    if layered.args.print_config {
        let mut out = io::stdout().lock();
        return match out
            .write_all(config::print(&layered).as_bytes())
            .and_then(|()| out.flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("engine: error: writing the configuration: {e}");
                ExitCode::from(2)
            }
        };
    }
    let args = &layered.args;
    log::set(args.log_level);
    match run(args, &layered, argv.clone(), &early_hangup) {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::DamagedInput) => ExitCode::from(1),
        Ok(Outcome::SpansLost) => ExitCode::from(3),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            // One line per problem, each with the prefix, naming the file
            // and line or the variable a setting came from.
            for line in format!("{e:#}").lines() {
                eprintln!("engine: error: {}", config::locate(line, &layered.origins));
            }
            ExitCode::from(2)
        }
    }
}

/// The capture filter of --filter or the words after the options,
/// compiled by libpcap.
///
/// # Errors
/// Both are given, or libpcap is missing or refuses the expression.
fn capture_filter(args: &Args) -> anyhow::Result<Option<FrameFilter>> {
    let Some(expression) = args.filter_expression().map_err(|e| anyhow!(e))? else {
        return Ok(None);
    };
    Ok(Some(capture_filter::compile(&expression)?))
}

fn run(
    args: &Args,
    layered: &config::Layered,
    argv: Vec<OsString>,
    early_hangup: &AtomicBool,
) -> anyhow::Result<Outcome> {
    if args.pcap.is_empty() && args.backend == Backend::Ebpf {
        // Before anything is loaded: the flow map is kernel memory no
        // cgroup charges, allocated whole at load time.
        capture_ebpf::check_kernel_memory(args.ebpf_flows, args.ebpf_ring_size).map_err(|e| {
            anyhow!(
                "--ebpf-flows {} × {} bytes + --ebpf-ring-size {} = {e}; lower --ebpf-flows",
                args.ebpf_flows,
                capture_ebpf::ENTRY_BYTES,
                args.ebpf_ring_size
            )
        })?;
    } else if args.pcap.is_empty() {
        // Before anything is opened, so that the answer comes without
        // privileges too: ring memory is kernel memory no cgroup charges.
        // Interfaces a pattern picks are checked one by one as they come.
        let named = args
            .interfaces
            .iter()
            .filter(|i| !capture_afpacket::is_pattern(i))
            .count();
        let rings = named * usize::from(args.workers);
        capture_afpacket::check_ring_memory(args.ring_block_size, args.ring_blocks, rings)
            .map_err(|e| {
                anyhow!(
                    "--ring-block-size {} × --ring-blocks {} × {} rings ({} interfaces × --workers {}) = {e}; \
                     lower --ring-block-size, --ring-blocks or --workers",
                    args.ring_block_size,
                    args.ring_blocks,
                    rings,
                    named,
                    args.workers
                )
            })?;
    }
    let frame_filter = capture_filter(args)?;
    let filter = frame_filter.as_ref();
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
        interfaces: match args.interface_flows {
            InterfaceFlowsArg::Separate => InterfaceFlows::Separate,
            InterfaceFlowsArg::First => InterfaceFlows::First,
        },
        ..FlowConfig::default()
    };
    let resource = resource(args)?;
    let otlp = otlp_config(args, Signal::Traces)?;
    let metrics = metrics_settings(
        args,
        &|k| std::env::var(k).ok(),
        kubernetes::requested(args),
        if args.pcap.is_empty() {
            Clock::Wall
        } else {
            Clock::Packet
        },
    )?;
    let metrics_otlp = match &metrics {
        Some(_) => otlp_config(args, Signal::Metrics)?,
        None => None,
    };
    let registry = Registry::new();
    // First, so that probes get answers while enrichment syncs.
    let endpoints = metrics::Endpoints::new(registry.clone());
    if let Some(address) = args.metrics_address {
        let bound = metrics::serve(address, Arc::clone(&endpoints))?;
        if !args.quiet {
            note!("serving /metrics, /healthz and /readyz on http://{bound}");
        }
    }
    let enrichment =
        kubernetes::enrichment(args, |stats| endpoints.set_k8s(Arc::clone(stats)))?.map(Arc::new);
    let stop = Arc::new(AtomicBool::new(false));
    let paths = files::expand(&args.pcap)?;
    let mut unopened = Vec::new();
    let mut source = match paths.as_slice() {
        [path] if path.as_os_str() == "-" => {
            let input = stdin::InterruptibleStdin::new(Arc::clone(&stop))
                .context("starting the standard input thread")?;
            let reader = CaptureReader::new(Box::new(input), "-".into()).map_err(|e| anyhow!(e))?;
            Source::File(FileSource::new(reader, &registry))
        }
        [path] => Source::File(FileSource::new(
            CaptureReader::open(path).map_err(|e| anyhow!(e))?,
            &registry,
        )),
        [_, _, ..] => {
            let (readers, problems) = files::open_all(&paths);
            if readers.is_empty() {
                return Err(anyhow!(
                    "--pcap: none of the {} files could be read",
                    paths.len()
                ));
            }
            unopened = problems;
            Source::Merged(MergedFiles::new(readers, &registry))
        }
        [] if args.backend == Backend::Ebpf => {
            let decoder = decoder(args);
            let config = EbpfConfig {
                flows: args.ebpf_flows,
                ring_bytes: args.ebpf_ring_size,
                timeouts: flow.timeouts,
                udp_ports: decoder.udp_ports_looked_into(),
                vxlan_ports: decoder.tunnel_ports.ports(UdpTunnel::Vxlan).collect(),
                geneve_ports: decoder.tunnel_ports.ports(UdpTunnel::Geneve).collect(),
                teredo_anywhere: decoder.teredo_anywhere(),
                first_interface: args.interface_flows == InterfaceFlowsArg::First,
                scan_interval: Duration::from_nanos(args.ebpf_scan_interval),
                attach: match args.ebpf_attach {
                    EbpfAttach::Auto => None,
                    EbpfAttach::Tcx => Some(AttachMode::Tcx),
                    EbpfAttach::Clsact => Some(AttachMode::Clsact),
                },
                filter: frame_filter.clone(),
                ..EbpfConfig::default()
            };
            let selection =
                host::links::Selection::new(&args.interfaces).map_err(|e| anyhow!(e))?;
            let mut capture = EbpfCapture::open(&selection.named, &config, &registry, &|line| {
                warning!("{line}")
            })
            .map_err(|e| anyhow!(e))?;
            if selection.follows() {
                capture
                    .follow(
                        selection,
                        Box::new(|line| warning!("{line}")),
                        Box::new(|line| note!("{line}")),
                    )
                    .map_err(|e| anyhow!(e))?;
            }
            Source::Ebpf(Box::new(capture))
        }
        [] => {
            let ring = RingConfig {
                block_size: args.ring_block_size,
                block_count: args.ring_blocks,
                filter: frame_filter.clone(),
                ..RingConfig::default()
            };
            let messages = capture_afpacket::Messages {
                warn: Arc::new(|line: &str| warning!("{line}")),
                note: Arc::new(|line: &str| note!("{line}")),
            };
            let capture = LiveCapture::open(
                &args.interfaces,
                usize::from(args.workers),
                &ring,
                &registry,
                messages,
            )
            .map_err(|e| anyhow!(e))?;
            Source::Live(capture)
        }
    };
    let live = !matches!(source, Source::File(_) | Source::Merged(_));
    endpoints.set_input_kind(match &source {
        Source::File(_) | Source::Merged(_) => "file",
        Source::Live(_) => "afpacket",
        Source::Ebpf(_) => "ebpf",
    });
    endpoints.set_flow_limit(max_flows as u64);
    endpoints.set_queue_capacity(args.queue_size);

    let name = match &source {
        Source::File(s) => s.reader().path().to_owned(),
        Source::Merged(_) => files::merge_name(&paths),
        Source::Live(capture) => format!("live capture on {}", capture.interface_list()),
        Source::Ebpf(capture) => format!("live capture on {}", capture.interface_list()),
    };
    let mapping = Mapping {
        interfaces: match &source {
            Source::Live(capture) => capture.interface_names(),
            Source::Ebpf(capture) => capture.interface_names(),
            Source::File(_) | Source::Merged(_) => InterfaceNames::default(),
        },
        opt_in: opt_in(&args.opt_in),
        sampling_rate: args.sample_flows,
    };
    let decoder = decoder(args);
    let json = if args.output.is_some() || otlp.is_none() {
        let target = output_target(args);
        // Flow metrics go into the JSON output too, unless they are
        // exported and the JSON output is there only for want of a span
        // exporter.
        let metrics = metrics
            .as_ref()
            .filter(|_| args.output.is_some() || metrics_otlp.is_none())
            .map(|settings| MetricsFeed {
                aggregator: Aggregator::new(settings.clone()),
                resource: resource.clone(),
                target: target.clone(),
                slot: registry.output(METRIC_POINTS, &target, None),
            });
        Some(JsonSink {
            writer: OtlpJsonWriter::new(
                open_output(args.output.as_ref())?,
                &resource,
                args.batch_size as usize,
            ),
            slot: registry.output(SPANS, &target, None),
            flush_each_batch: args.pcap.is_empty(),
            metrics,
        })
    } else {
        None
    };
    let sink = match &otlp {
        Some(config) => Some(start_export(config, args, &resource, live, &registry)?),
        None => None,
    };
    let metrics_sink = match (&metrics_otlp, &metrics) {
        (Some(config), Some(settings)) => Some(start_metrics_export(
            config,
            args,
            settings.clone(),
            &resource,
            live,
            &registry,
        )?),
        _ => None,
    };
    let shutdown_timeout = Duration::from_nanos(args.shutdown_timeout);
    let quiet = Arc::new(AtomicBool::new(args.quiet));
    let reloader = reload::Reloader::new(
        argv,
        layered,
        reload::Parts {
            headers: sink
                .iter()
                .map(|s| (Signal::Traces, s.exporter.headers_handle()))
                .chain(
                    metrics_sink
                        .iter()
                        .map(|s| (Signal::Metrics, s.exporter.headers_handle())),
                )
                .collect(),
            quiet: Arc::clone(&quiet),
            enrichment: enrichment.clone(),
        },
    );
    let reloader = Arc::new(reloader);
    let hangup = Arc::clone(&reloader);
    signals::watch_signals(
        Arc::clone(&stop),
        sink.iter()
            .map(|s| s.exporter.shutdown_handle())
            .chain(metrics_sink.iter().map(|s| s.exporter.shutdown_handle()))
            .collect(),
        shutdown_timeout,
        Box::new(move || hangup.reload()),
    )?;
    if early_hangup.swap(false, Ordering::Relaxed) {
        reloader.reload();
    }

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
            |line| warning!("{line}"),
        ) {
            Ok((view, refresher)) => (Some(view), Some(refresher)),
            Err(e) => {
                warning!(
                    "cannot learn the host's addresses and listening sockets \
                     ({e:#}); span kinds follow the port rules and --local-net only"
                );
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    // Live: the processes of the host's sockets, laid over the cluster's
    // directory when there is one.
    let cluster_view = enrichment.as_ref().map(|e| e.view.clone());
    let (enrichment_view, processes) = if live && !args.no_processes {
        let out = engine::enrich::EnrichmentView::new(engine::enrich::Directory::new());
        let connects = if args.backend == Backend::Ebpf {
            connect_hook()
        } else {
            None
        };
        match host::ProcessRefresher::start(
            "/proc".into(),
            Duration::from_nanos(args.host_refresh),
            cluster_view.clone(),
            out.clone(),
            connects,
            Box::new(|line| warning!("{line}")),
        ) {
            Ok(r) => {
                endpoints.set_processes(Arc::clone(r.stats()));
                (Some(out), Some(r))
            }
            Err(e) => {
                warning!(
                    "cannot start attributing flows to processes ({e}); \
                     spans go without process.* attributes"
                );
                (cluster_view, None)
            }
        }
    } else {
        (cluster_view, None)
    };
    let rules = RecordRules {
        keep: args.keep.clone(),
        drop: args.drop.clone(),
    };
    let dimensions = metrics.as_ref().map(|m| m.dimensions.clone());
    let (mut pipeline, records) = Pipeline::start_mapped(
        PipelineConfig {
            workers: usize::from(args.workers),
            flow,
            host,
            registry: registry.clone(),
            enrichment: enrichment_view,
            sampler: args.sample_flows.map(FlowSampler::new),
        },
        move |records| {
            if rules.is_empty() && dimensions.is_none() {
                // Nothing reads the spans' attributes: the encoders write
                // them as they are mapped.
                return encode_spans(&records, encodings, &mapping)
                    .into_iter()
                    .map(|span| Some(Mapped { span, metric: None }))
                    .collect();
            }
            encode_selected_with(&records, encodings, &mapping, &rules, |record, span| {
                dimensions
                    .as_ref()
                    .map(|d| Box::new(d.sample(record, span)))
            })
            .into_iter()
            .map(|kept| kept.map(|(span, metric)| Mapped { span, metric }))
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
    if let Some(m) = metrics_sink {
        sinks.push(Box::new(m));
    }
    let writer = thread::Builder::new()
        .name("output".into())
        .spawn(move || output::run(records, sinks, shutdown_timeout))
        .context("starting the output thread")?;

    let started = Instant::now();
    endpoints.set_phase(metrics::Phase::Capturing);
    let mut progress = Progress::new(Arc::clone(&quiet), registry.clone(), name.clone());
    let mut damaged = None;
    let mut all_interfaces_gone = false;
    let mut capture_error = None;
    match &mut source {
        Source::File(file) => {
            if let Err(e) = drive(
                file,
                &decoder,
                filter,
                &mut pipeline,
                &registry,
                &stop,
                || progress.tick(),
            ) {
                // A signal ends standard input early; a record cut short by
                // that is not damage.
                if !stop.load(Ordering::Relaxed) {
                    damaged = Some(e);
                }
            }
        }
        Source::Merged(merged) => {
            // A damaged file leaves the merge; what it was is said below.
            let Ok(_) = drive(
                merged,
                &decoder,
                filter,
                &mut pipeline,
                &registry,
                &stop,
                || progress.tick(),
            );
        }
        Source::Live(capture) => {
            note!(
                "capturing on {} ({} rings, afpacket); SIGINT or SIGTERM stops",
                capture.interface_list(),
                capture.ring_count()
            );
            let ended = drive(
                capture,
                &decoder,
                filter,
                &mut pipeline,
                &registry,
                &stop,
                || progress.tick(),
            );
            all_interfaces_gone = matches!(ended, Err(LiveError::NoInterfaceLeft));
        }
        Source::Ebpf(capture) => {
            note!(
                "capturing on {} (ebpf, {}); SIGINT or SIGTERM stops",
                capture.interface_list(),
                match capture.mode() {
                    AttachMode::Tcx => "TCX links",
                    AttachMode::Clsact => "clsact filters",
                }
            );
            let ended = drive(
                capture.as_mut(),
                &decoder,
                filter,
                &mut pipeline,
                &registry,
                &stop,
                || progress.tick(),
            );
            if let Err(e) = ended {
                capture_error = Some(e);
            }
        }
    }
    let reading = started.elapsed();
    endpoints.set_phase(metrics::Phase::Finishing);
    // A live capture ends by a signal: that is its normal end.
    let interrupted = !live && stop.load(Ordering::Relaxed);
    let table = pipeline.finish();
    let ended = writer
        .join()
        .map_err(|_| anyhow!("the output thread panicked"))?;
    progress.clear();
    let mut json_result = Ok(());
    let mut export = None;
    let mut metrics_export = None;
    let mut metrics_ends = Vec::new();
    for end in ended {
        match end {
            SinkEnd::Written(r) => json_result = json_result.and(r),
            SinkEnd::Exported {
                signal: Signal::Traces,
                target,
                report,
            } => export = Some((target, report)),
            SinkEnd::Exported {
                signal: Signal::Metrics,
                target,
                report,
            } => metrics_export = Some((target, report)),
            SinkEnd::Metrics { target, stats } => metrics_ends.push((target, stats)),
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
            warning!(
                "{} was closed by its reader: {handed} spans were handed to it \
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
    if !quiet.load(Ordering::Relaxed) {
        let counters = registry.snapshot();
        let summary = Summary {
            path: &name,
            flow_limit: (max_flows, &limit_source),
            selection: summary::Selection {
                filter: frame_filter.as_ref().map(FrameFilter::expression),
                filter_in_kernel: matches!(source, Source::Live(_) | Source::Ebpf(_)),
                sample_flows: args.sample_flows,
                rules: !(args.keep.is_empty() && args.drop.is_empty()),
            },
            reading,
            finishing: started.elapsed().saturating_sub(reading),
            counters: &counters,
        };
        eprint!("{summary}");
        for (target, m) in &metrics_ends {
            eprintln!(
                "  flow metrics to {target}: {} data points in {} collections, \
                 {} series at most; {} of {} records counted in the overflow series",
                m.points, m.collections, m.peak_series, m.overflowed, m.records
            );
        }
        if let Some(w) = enrichment.as_ref().and_then(|e| e.watcher.as_ref()) {
            eprintln!("  {}", w.stats().summary());
        }
        if let Some(p) = &processes {
            eprintln!("  {}", p.stats().summary());
        }
    }
    let mut merge_problems = unopened.len();
    match &source {
        Source::File(file) => {
            if let Some(first) = &file.reader().stats().first_problem {
                warning!("{first}");
            }
        }
        Source::Merged(merged) => {
            for first in merged
                .readers()
                .filter_map(|r| r.stats().first_problem.as_ref())
            {
                warning!("{first}");
            }
            for e in merged.damaged() {
                eprintln!(
                    "engine: error: {e}; that file's frames before it were merged, the other files were read on"
                );
            }
            for e in &unopened {
                eprintln!("engine: error: {e}; left out of the merge");
            }
            merge_problems += merged.damaged().len();
        }
        Source::Live(_) | Source::Ebpf(_) => {}
    }
    if all_interfaces_gone {
        eprintln!("engine: error: every interface went away; open flows were flushed");
    }
    if let Some(e) = &capture_error {
        eprintln!("engine: error: {e}; the capture stopped and open flows were flushed");
    }
    if let Some(e) = &damaged {
        eprintln!("engine: error: {e}; flows from the records before it were written");
    }
    let mut lost = 0;
    for (what, export) in [("spans", &export), ("metric data points", &metrics_export)] {
        let Some((target, r)) = export else { continue };
        if r.lost() > 0 {
            lost += r.lost();
            // Printed even with --quiet: losing spans or points is never
            // silent.
            eprintln!(
                "engine: error: {} of {} {what} were not delivered to {target}: \
                 {} rejected by the receiver, {} failed permanently, {} dropped (queue full), \
                 {} still queued at the shutdown deadline",
                r.lost(),
                r.submitted,
                r.rejected,
                r.failed,
                r.dropped,
                r.undelivered
            );
        }
    }
    Ok(if lost > 0 {
        Outcome::SpansLost
    } else if interrupted {
        Outcome::Interrupted
    } else if damaged.is_some()
        || merge_problems > 0
        || all_interfaces_gone
        || capture_error.is_some()
    {
        Outcome::DamagedInput
    } else {
        Outcome::Complete
    })
}

/// With the eBPF backend: the connect tracepoint, which names the process
/// of connections too short-lived for a /proc scan to see. `None` (with a
/// warning) where it cannot be attached.
fn connect_hook() -> Option<host::processes::Connects> {
    match capture_ebpf::connects::ConnectHook::load() {
        Ok(mut hook) => {
            if hook.mounted_tracefs() {
                note!("mounted tracefs at /sys/kernel/tracing for the connect tracepoint");
            }
            let mut warned = false;
            Some(Box::new(move || match hook.take() {
                Ok(connects) => connects
                    .into_iter()
                    .map(|c| host::processes::Connected {
                        protocol: 6,
                        address: c.address,
                        port: c.port,
                        pid: c.pid,
                        name: c.comm,
                        age: c.age,
                    })
                    .collect(),
                Err(e) => {
                    if !warned {
                        warned = true;
                        warning!("{e}; short-lived connections go unattributed");
                    }
                    Vec::new()
                }
            }))
        }
        Err(e) => {
            warning!(
                "{e}; connections that open and close between two process \
                 scans go unattributed"
            );
            None
        }
    }
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
    /// Several capture files, merged in packet-time order.
    Merged(MergedFiles),
    /// Live capture on AF_PACKET rings.
    Live(LiveCapture),
    /// Live capture with the eBPF TC programs.
    Ebpf(Box<EbpfCapture>),
}
