//! `--metrics-address`: the run's counters in Prometheus's text format on
//! `/metrics`, and health on `/healthz` (the process answers) and
//! `/readyz` (capturing, every named interface there, no export failing).
//!
//! A scrape reads the live [`Registry`]: relaxed loads of cells that the
//! packet path publishes into, and short read locks on the lists of cells,
//! which are written only when a part of the run starts. Nothing a scrape
//! does waits for the packet path or makes it wait.

use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow};
use engine::Registry;
use engine::decode::SkipReason;
use engine::error::DecodeError;
use engine::flow::record::EndReason;
use engine::registry::{
    DurationHistogram, METRIC_POINTS, REQUEST_DURATION_BOUNDS_US, SPANS, SourceKind, UP_REASONS,
};
use host::processes::ProcessStats;
use k8s::watch::WatchStats;

/// Connections served at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 8;
/// Bytes of a request's head read at most.
const MAX_REQUEST: usize = 8 << 10;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the run is, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the capture, waiting for enrichment to sync.
    Starting = 0,
    /// Reading packets.
    Capturing = 1,
    /// The input ended or a signal came: flushing flows and spans.
    Finishing = 2,
}

/// What the endpoints serve: the registry, and what the run adds as its
/// parts start.
#[derive(Debug)]
pub struct Endpoints {
    registry: Registry,
    phase: AtomicU8,
    /// Spans the OTLP export queue holds at most.
    queue_capacity: AtomicU64,
    /// The flow limit over all workers (0: none).
    flow_limit: AtomicU64,
    k8s: OnceLock<Arc<WatchStats>>,
    processes: OnceLock<Arc<ProcessStats>>,
    /// `"afpacket"`, `"ebpf"` or `"file"`.
    input_kind: OnceLock<&'static str>,
}

impl Endpoints {
    pub fn new(registry: Registry) -> Arc<Endpoints> {
        Arc::new(Endpoints {
            registry,
            phase: AtomicU8::new(Phase::Starting as u8),
            queue_capacity: AtomicU64::new(0),
            flow_limit: AtomicU64::new(0),
            k8s: OnceLock::new(),
            processes: OnceLock::new(),
            input_kind: OnceLock::new(),
        })
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Capturing,
            _ => Phase::Finishing,
        }
    }

    pub fn set_queue_capacity(&self, spans: u64) {
        self.queue_capacity.store(spans, Ordering::Relaxed);
    }

    pub fn set_flow_limit(&self, flows: u64) {
        self.flow_limit.store(flows, Ordering::Relaxed);
    }

    pub fn set_k8s(&self, stats: Arc<WatchStats>) {
        let _ = self.k8s.set(stats);
    }

    pub fn set_processes(&self, stats: Arc<ProcessStats>) {
        let _ = self.processes.set(stats);
    }

    pub fn set_input_kind(&self, kind: &'static str) {
        let _ = self.input_kind.set(kind);
    }

    /// `Ok` when ready, else why not (one reason a line).
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        self.readiness_of(&self.registry.snapshot())
    }

    /// [`readiness`](Self::readiness) from counters already read.
    fn readiness_of(&self, s: &engine::registry::Snapshot) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        match self.phase() {
            Phase::Starting => why.push("the capture has not started yet".to_owned()),
            Phase::Finishing => why.push("the capture has ended; flushing".to_owned()),
            Phase::Capturing => {}
        }
        for (name, kind, c) in &s.sources {
            if *kind == SourceKind::Interface && c.gone {
                why.push(format!("interface {name} went away"));
            }
        }
        for o in &s.outputs {
            if o.export.is_some_and(|e| e.failing) {
                why.push(format!("OTLP export to {} is failing", o.target));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

/// Listens on `address` and serves the endpoints from a thread of its own
/// for the rest of the process's life; the address bound (the port, when
/// 0 was asked for).
///
/// # Errors
/// The address cannot be bound (in use, not local, a port below 1024
/// without CAP_NET_BIND_SERVICE).
pub fn serve(address: SocketAddr, endpoints: Arc<Endpoints>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .map_err(|e| anyhow!("--metrics-address {address}: cannot listen: {e}"))?;
    let bound = listener.local_addr().context("--metrics-address")?;
    let open = Arc::new(AtomicUsize::new(0));
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    // Out of descriptors and the like: do not spin.
                    thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    let _ = respond(&stream, "503 Service Unavailable", TEXT, b"busy\n", false);
                    continue;
                }
                let (endpoints, ours) = (Arc::clone(&endpoints), Arc::clone(&open));
                let spawned = thread::Builder::new()
                    .name("metrics-conn".into())
                    .spawn(move || {
                        handle(stream, &endpoints);
                        ours.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
        .context("starting the metrics thread")?;
    Ok(bound)
}

const TEXT: &str = "text/plain; charset=utf-8";
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers one request and closes the connection.
fn handle(mut stream: TcpStream, endpoints: &Endpoints) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST {
            let _ = respond(
                &stream,
                "431 Request Header Fields Too Large",
                TEXT,
                b"",
                false,
            );
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let body_too = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            let _ = respond(
                &stream,
                "405 Method Not Allowed",
                TEXT,
                b"GET or HEAD\n",
                true,
            );
            return;
        }
    };
    let (status, kind, body) = match path {
        "/metrics" => ("200 OK", EXPOSITION, render(endpoints)),
        "/healthz" => ("200 OK", TEXT, "ok\n".to_owned()),
        "/readyz" => match endpoints.readiness() {
            Ok(()) => ("200 OK", TEXT, "ready\n".to_owned()),
            Err(why) => (
                "503 Service Unavailable",
                TEXT,
                format!("not ready: {}\n", why.join("; ")),
            ),
        },
        "/" => (
            "200 OK",
            TEXT,
            "flowspan engine: /metrics (Prometheus), /healthz (alive), /readyz (capturing, \
             interfaces there, export not failing)\n"
                .to_owned(),
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "not found; try /metrics\n".to_owned(),
        ),
    };
    let _ = respond(&stream, status, kind, body.as_bytes(), body_too);
}

fn respond(
    mut stream: &TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    send_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if send_body {
        stream.write_all(body)?;
    }
    stream.flush()
}

/// Prometheus's text exposition format, family by family.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (k, (key, v)) in labels.iter().enumerate() {
                if k > 0 {
                    self.0.push(',');
                }
                self.0.push_str(key);
                self.0.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family of one sample without labels.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per `(label value, value)`.
    fn by<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, kind, help);
        for (l, v) in values {
            self.sample(name, &[(label, l)], v);
        }
    }
}

fn seconds_since_epoch_ms(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Every metric now, in Prometheus's text format.
pub fn render(endpoints: &Endpoints) -> String {
    let s = endpoints.registry.snapshot();
    let mut e = Exposition(String::with_capacity(16 << 10));
    e.family(
        "flowspan_build_info",
        "gauge",
        "The engine's version and git revision (value 1).",
    );
    e.sample(
        "flowspan_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", env!("FLOWSPAN_GIT_REV")),
        ],
        1,
    );
    e.one(
        "flowspan_ready",
        "gauge",
        "1 when /readyz answers 200: capturing, every interface named by -i there, no OTLP export failing.",
        u8::from(endpoints.readiness_of(&s).is_ok()),
    );

    // Inputs.
    let kind = |k: SourceKind| match k {
        SourceKind::File => "file",
        SourceKind::Interface => endpoints.input_kind.get().copied().unwrap_or("interface"),
    };
    e.family(
        "flowspan_packets_total",
        "counter",
        "Frames read, by input (a capture file, or an interface's rings); with the eBPF backend, the packets its programs sent to userspace whole (see flowspan_ebpf_packets_total).",
    );
    for (name, k, c) in &s.sources {
        e.sample(
            "flowspan_packets_total",
            &[("input", name), ("kind", kind(*k))],
            c.packets,
        );
    }
    let (gone, retired) = &s.retired;
    if *gone > 0 {
        e.sample(
            "flowspan_packets_total",
            &[
                ("input", "(interfaces gone)"),
                ("kind", kind(SourceKind::Interface)),
            ],
            retired.packets,
        );
    }
    e.family(
        "flowspan_bytes_total",
        "counter",
        "Bytes read from a capture file, or on the wire of the frames captured on an interface.",
    );
    for (name, k, c) in &s.sources {
        e.sample(
            "flowspan_bytes_total",
            &[("input", name), ("kind", kind(*k))],
            c.bytes,
        );
    }
    if *gone > 0 {
        e.sample(
            "flowspan_bytes_total",
            &[
                ("input", "(interfaces gone)"),
                ("kind", kind(SourceKind::Interface)),
            ],
            retired.bytes,
        );
    }
    e.one(
        "flowspan_interfaces_gone_total",
        "counter",
        "Interfaces matched by a -i pattern that went away (their counters are summed under input=\"(interfaces gone)\").",
        *gone,
    );
    let interfaces: Vec<_> = s
        .sources
        .iter()
        .filter(|(_, k, _)| *k == SourceKind::Interface)
        .collect();
    for (name, help, get) in [
        (
            "flowspan_kernel_packets_total",
            "Packets the kernel passed to the interface's rings (AF_PACKET, drops included).",
            (|c: &engine::registry::SourceCounts| c.kernel_packets) as fn(&_) -> u64,
        ),
        (
            "flowspan_kernel_drops_total",
            "Packets the kernel dropped because the interface's ring was full (AF_PACKET).",
            |c| c.kernel_drops,
        ),
        (
            "flowspan_kernel_freezes_total",
            "Times the kernel froze the interface's ring for want of a free block (AF_PACKET).",
            |c| c.kernel_freezes,
        ),
        (
            "flowspan_interface_up",
            "1 while the interface is captured, 0 once it went away.",
            |c| u64::from(!c.gone),
        ),
    ] {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        e.family(name, kind, help);
        for (interface, _, c) in &interfaces {
            e.sample(name, &[("interface", interface)], get(c));
        }
    }

    // Decoding.
    let d = &s.decode;
    e.one(
        "flowspan_packets_decoded_total",
        "counter",
        "Frames decoded into an IP packet of a flow.",
        d.decoded,
    );
    e.one(
        "flowspan_packets_filtered_total",
        "counter",
        "Frames the capture filter (--filter) left out in userspace (those an AF_PACKET socket filter left out in the kernel are not counted anywhere).",
        d.filtered,
    );
    e.by(
        "flowspan_packets_skipped_total",
        "counter",
        "Frames not counted in any flow because they carry no IP packet, by reason.",
        "reason",
        SkipReason::ALL.iter().map(|r| r.reason()).zip(d.skipped),
    );
    e.by(
        "flowspan_packets_malformed_total",
        "counter",
        "Malformed frames, by the first problem found (a packet cut inside its transport header still counts in its IP-level flow).",
        "reason",
        DecodeError::REASONS.iter().copied().zip(d.malformed),
    );
    e.by(
        "flowspan_tunnel_headers_malformed_total",
        "counter",
        "Packets whose tunnel header or inner packet was malformed (counted in the outer flow), by reason.",
        "reason",
        DecodeError::REASONS.iter().copied().zip(d.tunnel_malformed),
    );
    e.one(
        "flowspan_packets_decapsulated_total",
        "counter",
        "Packets taken out of a tunnel and counted in the flow of the packet inside.",
        d.decapsulated,
    );
    e.one(
        "flowspan_flow_observations_total",
        "counter",
        "Flow observations (kernel aggregates of the eBPF backend) taken in.",
        d.flow_observations,
    );

    // Flows.
    let t = &s.table;
    e.one(
        "flowspan_flow_packets_total",
        "counter",
        "Packets counted in flows (kernel aggregates count as their packets).",
        t.packets,
    );
    e.one("flowspan_flows_total", "counter", "Flows created.", t.flows);
    e.one(
        "flowspan_flows_open",
        "gauge",
        "Flows open now.",
        s.open_flows,
    );
    e.one(
        "flowspan_flow_limit",
        "gauge",
        "The most flows open at once (--flow-memory or --max-flows; 0: no limit).",
        endpoints.flow_limit.load(Ordering::Relaxed),
    );
    e.by(
        "flowspan_flow_records_total",
        "counter",
        "Flow records made (one span each), by flow.end_reason.",
        "end_reason",
        EndReason::ALL.iter().map(|r| r.as_str()).zip(t.records),
    );
    e.one(
        "flowspan_records_sampled_out_total",
        "counter",
        "Records of flows flow sampling (--sample-flows) left out.",
        s.sampled_out,
    );
    e.one(
        "flowspan_records_filtered_total",
        "counter",
        "Records the record filters (--keep, --drop) left out.",
        s.filtered_out,
    );
    e.one(
        "flowspan_flows_evicted_total",
        "counter",
        "Flows ended to make room for a new one at the flow limit (lack_of_resources).",
        t.evicted,
    );
    e.one(
        "flowspan_duplicate_packets_total",
        "counter",
        "Packets of a flow seen on an interface other than the flow's, left out (--interface-flows first).",
        t.duplicates,
    );

    // Outputs and export.
    let spans = |o: &&engine::registry::OutputCounts| o.signal == SPANS;
    e.family(
        "flowspan_spans_written_total",
        "counter",
        "Spans written as OTLP JSON, or handed to an OTLP exporter, by output.",
    );
    for o in s.outputs.iter().filter(spans) {
        e.sample(
            "flowspan_spans_written_total",
            &[("output", &o.target)],
            o.written,
        );
    }
    let metric_outputs: Vec<_> = s
        .outputs
        .iter()
        .filter(|o| o.signal == METRIC_POINTS)
        .collect();
    if !metric_outputs.is_empty() {
        for (name, help, get) in [
            (
                "flowspan_metric_points_written_total",
                "Flow metric data points written as OTLP JSON, or handed to an OTLP exporter, by output (--metrics).",
                (|o: &engine::registry::OutputCounts| o.written) as fn(&_) -> u64,
            ),
            (
                "flowspan_metric_overflow_records_total",
                "Records counted in the flow metrics' overflow series (otel.metric.overflow=true) because of --metrics-cardinality-limit, by output.",
                |o| o.overflowed,
            ),
        ] {
            e.family(name, "counter", help);
            for o in &metric_outputs {
                e.sample(name, &[("output", &o.target)], get(o));
            }
        }
        let metric_exports: Vec<_> = metric_outputs
            .iter()
            .filter_map(|o| o.export.map(|c| (o.target.as_str(), c)))
            .collect();
        // No exporter of metrics, no families of its counts.
        if !metric_exports.is_empty() {
            for (name, help, get) in [
                (
                    "flowspan_metric_points_exported_total",
                    "Flow metric data points the OTLP receiver accepted.",
                    (|c: &engine::registry::ExportCounts| c.delivered) as fn(&_) -> u64,
                ),
                (
                    "flowspan_metric_points_lost_total",
                    "Flow metric data points not delivered: rejected, failed permanently, dropped (queue full) or still queued at the shutdown deadline.",
                    |c| c.lost(),
                ),
            ] {
                e.family(name, "counter", help);
                for (target, c) in &metric_exports {
                    e.sample(name, &[("endpoint", target)], get(c));
                }
            }
        }
    }
    let span_exports: Vec<_> = s
        .outputs
        .iter()
        .filter(spans)
        .filter_map(|o| o.export.map(|c| (o.target.as_str(), c)))
        .collect();
    let exports: Vec<_> = s
        .outputs
        .iter()
        .filter_map(|o| o.export.map(|c| (o.target.as_str(), c)))
        .collect();
    let capacity = endpoints.queue_capacity.load(Ordering::Relaxed);
    // Counts of spans are of the span exports; the others of every export.
    for (name, kind, help, get, which) in [
        (
            "flowspan_spans_exported_total",
            "counter",
            "Spans the OTLP receiver accepted.",
            (|c: &engine::registry::ExportCounts| c.delivered) as fn(&_) -> u64,
            &span_exports,
        ),
        (
            "flowspan_spans_rejected_total",
            "counter",
            "Spans the OTLP receiver rejected in a partial success.",
            |c| c.rejected,
            &span_exports,
        ),
        (
            "flowspan_spans_failed_total",
            "counter",
            "Spans in export requests that failed permanently (not retryable).",
            |c| c.failed,
            &span_exports,
        ),
        (
            "flowspan_spans_dropped_total",
            "counter",
            "Spans dropped because the export queue was full (live capture).",
            |c| c.dropped,
            &span_exports,
        ),
        (
            "flowspan_export_requests_total",
            "counter",
            "OTLP export requests sent, retries included.",
            |c| c.requests,
            &exports,
        ),
        (
            "flowspan_export_retries_total",
            "counter",
            "OTLP export requests sent again after a retryable failure.",
            |c| c.retries,
            &exports,
        ),
        (
            "flowspan_export_queue_spans",
            "gauge",
            "Spans waiting in the export queue or in retry.",
            |c| c.queued,
            &span_exports,
        ),
        (
            "flowspan_export_failing",
            "gauge",
            "1 while the last export request failed and none has succeeded since.",
            |c| u64::from(c.failing),
            &exports,
        ),
    ] {
        e.family(name, kind, help);
        for (target, c) in which {
            e.sample(name, &[("endpoint", target)], get(c));
        }
    }
    e.family(
        "flowspan_export_queue_capacity_spans",
        "gauge",
        "Spans the export queue holds at most (--queue-size).",
    );
    for (target, _) in &span_exports {
        e.sample(
            "flowspan_export_queue_capacity_spans",
            &[("endpoint", target)],
            capacity,
        );
    }
    e.family(
        "flowspan_export_request_duration_seconds",
        "histogram",
        "How long OTLP export requests took, from sending to the receiver's answer or the failure.",
    );
    for (target, c) in &exports {
        histogram(
            &mut e,
            "flowspan_export_request_duration_seconds",
            target,
            &c.durations,
        );
    }

    // The eBPF backend's programs.
    if let Some(p) = &s.programs {
        e.one(
            "flowspan_ebpf_packets_total",
            "counter",
            "Packets the eBPF programs ran on.",
            p.packets,
        );
        e.one(
            "flowspan_ebpf_packets_counted_total",
            "counter",
            "Packets the eBPF programs counted in their flow map.",
            p.counted,
        );
        e.by(
            "flowspan_ebpf_packets_to_userspace_total",
            "counter",
            "Packets the eBPF programs sent to userspace whole, by reason.",
            "reason",
            UP_REASONS.iter().copied().zip(p.up),
        );
        e.one(
            "flowspan_ebpf_ring_lost_total",
            "counter",
            "Packets for userspace lost because the eBPF ring buffer was full.",
            p.lost,
        );
        e.one(
            "flowspan_ebpf_flow_map_entries",
            "gauge",
            "Entries in the eBPF flow map now.",
            p.entries,
        );
        e.one(
            "flowspan_ebpf_notices_lost_total",
            "counter",
            "Notices of new and ended flows lost because the ring buffer was full (each costs a read of the whole map).",
            p.notices_lost,
        );
    }

    // Enrichment.
    if let Some(k) = endpoints.k8s.get() {
        e.by(
            "flowspan_k8s_objects",
            "gauge",
            "Kubernetes objects held for enrichment, by kind.",
            "kind",
            k8s::Kind::ALL
                .iter()
                .map(|k| k.name())
                .zip(k.objects.iter().map(|n| n.load(Ordering::Relaxed))),
        );
        e.one(
            "flowspan_k8s_addresses",
            "gauge",
            "Addresses and ports the Kubernetes directory attributes.",
            k.entries.load(Ordering::Relaxed),
        );
        e.one(
            "flowspan_k8s_directory_updates_total",
            "counter",
            "Directories built from the Kubernetes watches and published to the flow workers.",
            k.rebuilds.load(Ordering::Relaxed),
        );
        e.one(
            "flowspan_k8s_directory_timestamp_seconds",
            "gauge",
            "When the last Kubernetes directory was published (Unix time; its age is time() minus this).",
            seconds_since_epoch_ms(k.published_unix_ms.load(Ordering::Relaxed)),
        );
        e.one(
            "flowspan_k8s_watch_errors_total",
            "counter",
            "Kubernetes watch errors, each followed by a new list after a backoff.",
            k.errors.load(Ordering::Relaxed),
        );
        e.one(
            "flowspan_k8s_synced",
            "gauge",
            "1 once every kind has been listed.",
            u8::from(k.synced.load(Ordering::Relaxed)),
        );
    }
    if let Some(p) = endpoints.processes.get() {
        e.one(
            "flowspan_process_sockets",
            "gauge",
            "Sockets the process attribution knows (remembered 10 s after last seen).",
            p.sockets.load(Ordering::Relaxed),
        );
        e.one(
            "flowspan_process_scans_total",
            "counter",
            "Scans of /proc and the network namespaces' sockets.",
            p.scans.load(Ordering::Relaxed),
        );
        e.one(
            "flowspan_process_scan_duration_seconds",
            "gauge",
            "How long the last scan took.",
            p.scan_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
        e.one(
            "flowspan_process_scan_timestamp_seconds",
            "gauge",
            "When the last scan ended (Unix time).",
            seconds_since_epoch_ms(p.scanned_unix_ms.load(Ordering::Relaxed)),
        );
        e.one(
            "flowspan_process_sockets_not_remembered_total",
            "counter",
            "New sockets not remembered because the socket table was full.",
            p.not_remembered.load(Ordering::Relaxed),
        );
    }

    // The process.
    let u = host::usage::usage();
    e.one(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, in seconds.",
        u.cpu_seconds,
    );
    e.one(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        u.resident_bytes,
    );
    e.one(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        u.virtual_bytes,
    );
    e.one(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        u.open_fds,
    );
    e.one(
        "process_max_fds",
        "gauge",
        "The limit on open file descriptors.",
        u.max_fds,
    );
    e.one(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        u.start_time_seconds,
    );
    e.one(
        "process_threads",
        "gauge",
        "Threads of the process.",
        u.threads,
    );
    e.0
}

/// One histogram's samples: cumulative buckets, sum and count.
fn histogram(e: &mut Exposition, name: &str, target: &str, h: &DurationHistogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, n) in REQUEST_DURATION_BOUNDS_US.iter().zip(h.counts) {
        cumulative += n;
        let le = format!("{}", *bound as f64 / 1e6);
        e.sample(&bucket, &[("endpoint", target), ("le", &le)], cumulative);
    }
    cumulative += h.counts[REQUEST_DURATION_BOUNDS_US.len()];
    e.sample(&bucket, &[("endpoint", target), ("le", "+Inf")], cumulative);
    e.sample(
        &format!("{name}_sum"),
        &[("endpoint", target)],
        h.sum_us as f64 / 1e6,
    );
    e.sample(
        &format!("{name}_count"),
        &[("endpoint", target)],
        cumulative,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::registry::{DecodeCounts, SourceCounts};

    /// The families and samples of an exposition, checked against the
    /// format's rules: every sample belongs to the family declared just
    /// before it (a histogram's `_bucket`, `_sum` and `_count` too), each
    /// family is declared once, counters end in `_total`, names are
    /// `flowspan_` or `process_`, and values are numbers.
    fn parse(text: &str) -> std::collections::BTreeMap<String, f64> {
        let mut families = std::collections::BTreeSet::new();
        let mut current = (String::new(), String::new());
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("name and type");
                assert!(families.insert(name.to_owned()), "{name} declared twice");
                assert!(
                    name.starts_with("flowspan_") || name.starts_with("process_"),
                    "{name}"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name}");
                } else {
                    assert!(!name.ends_with("_total"), "{kind} {name}");
                }
                current = (name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let name = series.split('{').next().expect("name");
            let ok = name == current.0
                || (current.1 == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{}{s}", current.0)));
            assert!(ok, "{name} outside its family {}", current.0);
            let value: f64 = value.parse().expect("a number");
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "{series} twice"
            );
        }
        samples
    }

    #[test]
    fn the_registry_is_served_in_prometheus_text_format() {
        let registry = Registry::new();
        let eth0 = registry.source("eth0", SourceKind::Interface);
        let gone = registry.source("veth\"1\\", SourceKind::Interface);
        eth0.publish(&SourceCounts {
            packets: 42,
            kernel_drops: 3,
            ..SourceCounts::default()
        });
        gone.publish(&SourceCounts {
            gone: true,
            ..SourceCounts::default()
        });
        let mut d = DecodeCounts::default();
        d.skip(SkipReason::Arp, 1);
        registry.publish_decode(&d);
        let endpoints = Endpoints::new(registry);
        endpoints.set_input_kind("afpacket");
        let text = render(&endpoints);
        let m = parse(&text);
        assert_eq!(
            m[r#"flowspan_packets_total{input="eth0",kind="afpacket"}"#],
            42.0
        );
        assert_eq!(m[r#"flowspan_kernel_drops_total{interface="eth0"}"#], 3.0);
        // Label values are escaped.
        assert_eq!(
            m[r#"flowspan_interface_up{interface="veth\"1\\"}"#], 0.0,
            "{text}"
        );
        assert_eq!(
            m[r#"flowspan_packets_skipped_total{reason="non_ip_arp"}"#],
            1.0
        );
        assert_eq!(m["flowspan_ready"], 0.0);
        assert!(m["process_resident_memory_bytes"] > 0.0);
        assert_eq!(
            endpoints.readiness(),
            Err(vec![
                "the capture has not started yet".to_owned(),
                "interface veth\"1\\ went away".to_owned()
            ])
        );
    }

    #[test]
    fn request_durations_are_a_cumulative_histogram() {
        let mut h = DurationHistogram::default();
        for us in [500, 1_000, 1_001, 20_000_000] {
            h.counts[DurationHistogram::bucket(us)] += 1;
            h.sum_us += us;
        }
        let mut e = Exposition(String::new());
        e.family("flowspan_x_seconds", "histogram", "x");
        histogram(&mut e, "flowspan_x_seconds", "t", &h);
        let m = parse(&e.0);
        let bucket =
            |le: &str| m[&format!(r#"flowspan_x_seconds_bucket{{endpoint="t",le="{le}"}}"#)];
        assert_eq!(bucket("0.001"), 2.0);
        assert_eq!(bucket("0.0025"), 3.0);
        assert_eq!(bucket("10"), 3.0);
        assert_eq!(bucket("+Inf"), 4.0);
        assert_eq!(m[r#"flowspan_x_seconds_count{endpoint="t"}"#], 4.0);
        assert!((m[r#"flowspan_x_seconds_sum{endpoint="t"}"#] - 20.002501).abs() < 1e-9);
    }

    #[derive(Debug)]
    struct Gauge;

    impl engine::registry::ExportGauge for Gauge {
        fn counts(&self) -> engine::registry::ExportCounts {
            engine::registry::ExportCounts::default()
        }
    }

    /// Issue 19: README's metrics table names every family, with every
    /// part of the run present.
    #[test]
    fn the_readme_lists_every_metric() {
        let registry = Registry::new();
        registry.source("eth0", SourceKind::Interface);
        registry.output(SPANS, "http://c:4317 (grpc)", Some(Arc::new(Gauge)));
        registry.output(
            METRIC_POINTS,
            "http://c:4317 (grpc, metrics)",
            Some(Arc::new(Gauge)),
        );
        registry.programs();
        let endpoints = Endpoints::new(registry);
        endpoints.set_k8s(Arc::default());
        endpoints.set_processes(Arc::default());
        let text = render(&endpoints);
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README");
        let mut families = 0;
        for name in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = name.split(' ').next().expect("name");
            families += 1;
            assert!(
                readme.contains(&format!("`{name}`")),
                "README does not list {name}"
            );
        }
        assert!(families > 50, "{families}");
    }

    #[derive(Debug)]
    struct Delivered(u64);

    impl engine::registry::ExportGauge for Delivered {
        fn counts(&self) -> engine::registry::ExportCounts {
            engine::registry::ExportCounts {
                delivered: self.0,
                requests: 1,
                ..engine::registry::ExportCounts::default()
            }
        }
    }

    /// Issue 22: an exporter of metric data points counts in the metric
    /// families, never in the span ones; the request counters cover both.
    #[test]
    fn metric_points_and_spans_are_counted_apart() {
        let registry = Registry::new();
        let spans = registry.output(SPANS, "t (grpc)", Some(Arc::new(Delivered(7))));
        let points = registry.output(
            METRIC_POINTS,
            "m (grpc, metrics)",
            Some(Arc::new(Delivered(5))),
        );
        spans.publish_written(7);
        points.publish_written(5);
        points.publish_overflowed(2);
        let text = render(&Endpoints::new(registry));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        for expected in [
            "flowspan_spans_written_total{output=\"t (grpc)\"} 7",
            "flowspan_spans_exported_total{endpoint=\"t (grpc)\"} 7",
            "flowspan_metric_points_written_total{output=\"m (grpc, metrics)\"} 5",
            "flowspan_metric_overflow_records_total{output=\"m (grpc, metrics)\"} 2",
            "flowspan_metric_points_exported_total{endpoint=\"m (grpc, metrics)\"} 5",
            "flowspan_metric_points_lost_total{endpoint=\"m (grpc, metrics)\"} 0",
            "flowspan_export_requests_total{endpoint=\"t (grpc)\"} 1",
            "flowspan_export_requests_total{endpoint=\"m (grpc, metrics)\"} 1",
        ] {
            assert!(lines.contains(&expected), "{expected} in\n{text}");
        }
        for l in &lines {
            assert!(
                !(l.starts_with("flowspan_spans_") || l.contains("_spans{"))
                    || !l.contains("metrics)"),
                "a span family counts the metrics exporter: {l}"
            );
        }
    }
}
