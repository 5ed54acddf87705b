//! Flow metrics: the OpenTelemetry metrics signal made from the same records
//! as the spans (README "Flow metrics").
//!
//! - [`Dimensions`] are the span attributes that tell series apart. A flow
//!   worker turns each record, with its mapped span, into a [`Sample`]: the
//!   dimension values packed into one byte string, and the record's counts.
//! - An [`Aggregator`] on the output thread adds the samples, in output
//!   order, into at most `cardinality_limit` series (the rest into one
//!   overflow series), and at the end of each collection interval makes a
//!   [`Collection`]: OTLP `Metric`s, encoded as an
//!   `ExportMetricsServiceRequest` in protobuf ([`Collection::to_proto`])
//!   or OTLP JSON ([`Collection::write_json`]) from the same structs.
//! - From a capture file the intervals are in packet time (the records'
//!   due time), `(start, end]` between multiples of the interval since the
//!   epoch (the last one ends at the last record's due time), so the
//!   output depends only on the record stream, which is the same for any
//!   number of workers. Live, they are in wall-clock time.
//!
//! Instruments:
//!
//! | name | kind | unit | attributes besides the dimensions |
//! |---|---|---|---|
//! | `flow.bytes` | monotonic Sum | `By` | `flow.packet.direction` |
//! | `flow.packets` | monotonic Sum | `{packet}` | `flow.packet.direction` |
//! | `flow.records` | monotonic Sum | `{record}` | `flow.end_reason` |
//! | `flow.tcp.handshake.latency` | Histogram | `s` | |
//! | `flow.tcp.rndtrip.latency` | Histogram | `s` | |
//! | `flow.tcp.svc.latency` | Histogram | `s` | |

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::{EndReason, FlowRecord};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use prost::Message;

use crate::json::{write_int, write_int_string, write_json_string};
use crate::resource::Resource;
use crate::span::{FlowSpan, Value};

/// Dimensions when none are chosen.
pub const DEFAULT_DIMENSIONS: [&str; 3] = ["network.transport", "network.type", "flow.direction"];

/// Added to the default dimensions when Kubernetes enrichment is on: the
/// namespace and the workload of each side. A pod has one controller chain,
/// so at most one workload kind is present per side. ReplicaSets, Jobs and
/// pods are left out: their names change with every rollout or run.
pub const K8S_DIMENSIONS: [&str; 10] = [
    "source.k8s.namespace.name",
    "source.k8s.deployment.name",
    "source.k8s.statefulset.name",
    "source.k8s.daemonset.name",
    "source.k8s.cronjob.name",
    "destination.k8s.namespace.name",
    "destination.k8s.deployment.name",
    "destination.k8s.statefulset.name",
    "destination.k8s.daemonset.name",
    "destination.k8s.cronjob.name",
];

/// Series per collection at most, the overflow series included, unless
/// chosen otherwise (OpenTelemetry SDKs' default).
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;
/// The largest limit accepted: 77 MB of series with three dimensions
/// (`benches/README.md`, issue 22).
pub const MAX_CARDINALITY_LIMIT: usize = 100_000;
/// Dimensions at most.
pub const MAX_DIMENSIONS: usize = 32;
/// Series per request at most. A collection of more goes out as several
/// requests (several JSON lines), all with the collection's times. This
/// bounds a request's size, which must stay under receivers' limits
/// (gRPC's default is 4 MB), and the memory a collection takes while it is
/// built and encoded: one request's worth at a time, not the whole
/// collection's (at 100,000 series that was 690 MB).
pub const SERIES_PER_REQUEST: usize = 200;
/// The shortest collection interval: a collection per millisecond is
/// already a line (or a request) per millisecond.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Memory of one series, besides its key: its counters and histograms.
pub const SERIES_BYTES: usize = std::mem::size_of::<Series>();

/// The attribute telling which way the counted packets travelled:
/// `forward` (initiator → responder, the span's `flow.bytes.delta`) or
/// `reverse` (responder → initiator, `flow.reverse.bytes.delta`).
pub const PACKET_DIRECTION: &str = "flow.packet.direction";
/// The attribute of the overflow series, its only one.
pub const OVERFLOW: &str = "otel.metric.overflow";

/// Upper bounds of the latency histograms' buckets, in ns (50 µs to 10 s);
/// a value equal to a bound falls in the bucket it bounds.
pub const LATENCY_BOUNDS_NS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The latency histograms: name, description, which sample.
const LATENCIES: [(&str, &str); 3] = [
    (
        "flow.tcp.handshake.latency",
        "SYN to SYN/ACK of TCP flows (flow.tcp.handshake.latency): one observation per flow, from its first record",
    ),
    (
        "flow.tcp.rndtrip.latency",
        "The client's round trip per turn (flow.tcp.rndtrip.latency): one observation per record that has it, the record's mean",
    ),
    (
        "flow.tcp.svc.latency",
        "The server's time to respond (flow.tcp.svc.latency): one observation per record that has it, the record's mean",
    ),
];

/// Aggregation temporality of the sums and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Temporality {
    /// Each point covers its collection interval only; series not updated
    /// in an interval have no point, and their slots are freed.
    Delta,
    /// Each point covers everything since the start; every series has a
    /// point in every collection.
    #[default]
    Cumulative,
}

impl Temporality {
    /// Reads `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`'s values
    /// (any case): `cumulative`, `delta`, and `lowmemory`, which is delta
    /// for counters and histograms, all that is measured here.
    ///
    /// # Errors
    /// Any other value; the message lists those accepted.
    pub fn parse(s: &str) -> Result<Temporality, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Ok(Temporality::Cumulative),
            "delta" | "lowmemory" => Ok(Temporality::Delta),
            _ => Err(format!(
                "{s:?} is not a temporality (expected cumulative, delta or lowmemory)"
            )),
        }
    }

    fn proto(self) -> i32 {
        match self {
            Temporality::Delta => AggregationTemporality::Delta as i32,
            Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
        }
    }
}

/// The span attributes that make a series, in a fixed order.
#[derive(Debug, Clone)]
pub struct Dimensions {
    names: std::sync::Arc<[String]>,
    /// Seeds the series keys' hashes: random per process, so that traffic
    /// cannot be made to collide in the aggregator's index. (Nothing in the
    /// output depends on it.)
    seed: u64,
}

impl Dimensions {
    /// The dimensions `names`, checked: span attribute names (in the
    /// namespaces the record filters accept), none twice, none a per-record
    /// counter (`*.delta`, `*.total`) which would make every record a
    /// series of its own, at most [`MAX_DIMENSIONS`].
    ///
    /// # Errors
    /// A name that breaks one of those rules, named.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Dimensions, String> {
        if names.len() > MAX_DIMENSIONS {
            return Err(format!(
                "{} dimensions; at most {MAX_DIMENSIONS}",
                names.len()
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(names.len());
        for n in names {
            let n = n.as_ref().trim();
            if !crate::select::NAMESPACES.iter().any(|ns| n.starts_with(ns))
                || n.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')
            {
                return Err(format!(
                    "{n:?} is not a span attribute name (one of {}…)",
                    crate::select::NAMESPACES.join("…, ")
                ));
            }
            if n.ends_with(".delta") || n.ends_with(".total") {
                return Err(format!(
                    "{n:?} is a counter, not a dimension: it is what the metrics add up"
                ));
            }
            if out.iter().any(|o| o == n) {
                return Err(format!("{n:?} is given twice"));
            }
            out.push(n.to_owned());
        }
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u64);
        Ok(Dimensions {
            names: out.into(),
            seed,
        })
    }

    /// The default: [`DEFAULT_DIMENSIONS`], plus [`K8S_DIMENSIONS`] when
    /// Kubernetes enrichment is on.
    pub fn default_for(kubernetes: bool) -> Dimensions {
        let mut names: Vec<&str> = DEFAULT_DIMENSIONS.to_vec();
        if kubernetes {
            names.extend(K8S_DIMENSIONS);
        }
        Dimensions::new(&names).expect("the default dimensions are valid")
    }

    /// The names, in series order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// What `r`, mapped to `span`, adds to the metrics. The series key is
    /// packed and hashed here, on the flow worker, so that the aggregator's
    /// lookup hashes nothing.
    pub fn sample(&self, r: &FlowRecord, span: &FlowSpan) -> Sample {
        thread_local! {
            static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let series = KEY.with_borrow_mut(|key| {
            key.clear();
            self.pack(span, key);
            SeriesKey {
                hash: xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed),
                // One allocation of the exact size.
                bytes: Box::from(&key[..]),
            }
        });
        let tcp = &r.tcp_latency;
        Sample {
            series,
            clock_ns: r.export_clock_ns,
            bytes: [r.forward.bytes_delta, r.reverse.bytes_delta],
            packets: [r.forward.packets_delta, r.reverse.packets_delta],
            end_reason: r.end_reason,
            // The handshake is on every record of the flow: observed once.
            latency_ns: [
                tcp.handshake_ns.filter(|_| r.record_seq == 0),
                tcp.rndtrip_ns,
                tcp.svc_ns,
            ],
        }
    }

    /// Packs the dimension values `span` has into `key`.
    fn pack(&self, span: &FlowSpan, key: &mut Vec<u8>) {
        for (i, name) in self.names.iter().enumerate() {
            let Some(a) = span.attributes.iter().find(|a| a.key == name) else {
                continue;
            };
            key.push(i as u8);
            match &a.value {
                Value::Str(s) => {
                    key.push(b's');
                    put_str(key, s);
                }
                Value::Int(n) => {
                    key.push(b'i');
                    key.extend_from_slice(&n.to_le_bytes());
                }
                Value::StrArray(xs) => put_array(key, xs),
                Value::SharedArray(xs) => put_array(key, xs),
            }
        }
    }
}

fn put_len(key: &mut Vec<u8>, n: usize) {
    key.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(key: &mut Vec<u8>, s: &str) {
    put_len(key, s.len());
    key.extend_from_slice(s.as_bytes());
}

fn put_array<S: AsRef<str>>(key: &mut Vec<u8>, xs: &[S]) {
    key.push(b'a');
    put_len(key, xs.len());
    for x in xs {
        put_str(key, x.as_ref());
    }
}

/// Reads back the attributes a series key packs.
fn series_attributes(names: &[String], mut key: &[u8]) -> Vec<KeyValue> {
    fn take<'a>(key: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (a, b) = key.split_at(n.min(key.len()));
        *key = b;
        a
    }
    fn len(key: &mut &[u8]) -> usize {
        let b = take(key, 4);
        u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize
    }
    fn text(key: &mut &[u8]) -> String {
        let n = len(key);
        String::from_utf8_lossy(take(key, n)).into_owned()
    }
    let mut out = Vec::new();
    while let [i, kind, ..] = *key {
        key = &key[2..];
        let value = match kind {
            b's' => any_value::Value::StringValue(text(&mut key)),
            b'i' => {
                let b = take(&mut key, 8);
                any_value::Value::IntValue(i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            _ => {
                let n = len(&mut key);
                any_value::Value::ArrayValue(ArrayValue {
                    values: (0..n)
                        .map(|_| AnyValue {
                            value: Some(any_value::Value::StringValue(text(&mut key))),
                        })
                        .collect(),
                })
            }
        };
        let name = names.get(usize::from(i)).cloned().unwrap_or_default();
        out.push(kv(name, value));
    }
    out
}

/// A series' packed dimension values, with their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeriesKey {
    hash: u64,
    bytes: Box<[u8]>,
}

impl std::hash::Hash for SeriesKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands on the hash that [`SeriesKey`] carries.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `SeriesKey`; correct for anything else.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// What one record adds to the metrics: made by a flow worker, added in
/// output order by an [`Aggregator`].
#[derive(Debug, Clone)]
pub struct Sample {
    /// The dimension values, packed.
    series: SeriesKey,
    /// The record's due time (packet time): which interval it counts in
    /// from a capture file.
    clock_ns: u64,
    /// `flow.bytes.delta`, `flow.reverse.bytes.delta`.
    bytes: [u64; 2],
    /// `flow.packets.delta`, `flow.reverse.packets.delta`.
    packets: [u64; 2],
    end_reason: EndReason,
    /// Handshake (first record of a flow only), round trip, service time.
    latency_ns: [Option<u64>; 3],
}

/// One latency histogram of one series.
#[derive(Debug, Clone, Default)]
struct LatencyHistogram {
    counts: [u64; LATENCY_BOUNDS_NS.len() + 1],
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

impl LatencyHistogram {
    fn add(&mut self, ns: u64) {
        self.counts[LATENCY_BOUNDS_NS.partition_point(|&b| b < ns)] += 1;
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        self.max_ns = self.max_ns.max(ns);
        self.count += 1;
        self.sum_ns += u128::from(ns);
    }
}

/// The running values of one series.
#[derive(Debug, Clone, Default)]
struct Series {
    bytes: [u64; 2],
    packets: [u64; 2],
    records: [u64; EndReason::ALL.len()],
    latency: [LatencyHistogram; 3],
}

impl Series {
    fn add(&mut self, s: &Sample) {
        for d in 0..2 {
            self.bytes[d] = self.bytes[d].saturating_add(s.bytes[d]);
            self.packets[d] = self.packets[d].saturating_add(s.packets[d]);
        }
        let reason = EndReason::ALL
            .iter()
            .position(|r| *r == s.end_reason)
            .unwrap_or(0);
        self.records[reason] += 1;
        for (h, v) in self.latency.iter_mut().zip(s.latency_ns) {
            if let Some(ns) = v {
                h.add(ns);
            }
        }
    }
}

/// Where collection intervals come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The records' packet time: capture files.
    Packet,
    /// The wall clock: live capture.
    Wall,
}

/// How an [`Aggregator`] collects.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// The series' attributes.
    pub dimensions: Dimensions,
    /// Delta or cumulative.
    pub temporality: Temporality,
    /// The collection interval.
    pub interval: Duration,
    /// Series per collection at most, the overflow series included.
    pub cardinality_limit: usize,
    /// Packet time or wall-clock time.
    pub clock: Clock,
}

/// What an aggregator did, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Samples added.
    pub records: u64,
    /// Of those, added to the overflow series.
    pub overflowed: u64,
    /// Collections made.
    pub collections: u64,
    /// Data points in them.
    pub points: u64,
    /// Most series held at once (the overflow series included).
    pub peak_series: u64,
}

/// One request's worth of a collection's metrics (at most
/// [`SERIES_PER_REQUEST`] series), ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// The instruments that have points, in a fixed order.
    pub metrics: Vec<Metric>,
    /// Data points in all of them.
    pub points: u64,
}

/// Adds samples into series and makes collections.
#[derive(Debug)]
pub struct Aggregator {
    settings: MetricsSettings,
    index: HashMap<SeriesKey, u32, std::hash::BuildHasherDefault<KeyHasher>>,
    series: Vec<Series>,
    overflow: Option<Series>,
    /// Packet clock: the interval under way, `(start, end]`.
    window: Option<(u64, u64)>,
    /// Start of every cumulative point (the first interval's start, or
    /// when a live aggregator started).
    first_start_ns: Option<u64>,
    /// Wall clock: the end of the last collection, and when the next is due.
    last_collection_ns: u64,
    next_due: Instant,
    /// The latest record's clock.
    last_clock_ns: u64,
    stats: AggregatorStats,
    /// Set when the run's first sample goes to the overflow series; taken
    /// by [`take_overflow_news`](Self::take_overflow_news).
    overflow_news: bool,
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Aggregator {
    /// An aggregator with nothing counted yet; a live one starts its first
    /// interval now.
    pub fn new(settings: MetricsSettings) -> Aggregator {
        let now = unix_now_ns();
        let live = settings.clock == Clock::Wall;
        Aggregator {
            next_due: Instant::now() + settings.interval,
            settings,
            index: HashMap::default(),
            series: Vec::new(),
            overflow: None,
            window: None,
            first_start_ns: live.then_some(now),
            last_collection_ns: now,
            last_clock_ns: 0,
            stats: AggregatorStats::default(),
            overflow_news: false,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &MetricsSettings {
        &self.settings
    }

    /// Counts so far.
    pub fn stats(&self) -> AggregatorStats {
        self.stats
    }

    /// Whether the run's first sample went to the overflow series since the
    /// last call: true once per run at most (later ones are only counted,
    /// in [`stats`](Self::stats)).
    pub fn take_overflow_news(&mut self) -> bool {
        std::mem::take(&mut self.overflow_news)
    }

    /// Adds `s`. From a capture file, a sample of a later interval first
    /// ends the one under way: its collection is handed to `emit`, one
    /// request's worth at a time.
    ///
    /// # Errors
    /// The first error `emit` returned; the collection is over all the
    /// same (its series are counted and, for delta, cleared).
    pub fn add<E>(
        &mut self,
        s: &Sample,
        emit: impl FnMut(Collection) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut done = Ok(());
        if self.settings.clock == Clock::Packet {
            let interval = u64::try_from(self.settings.interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
            // Intervals are `(start, end]`: a record due exactly at a
            // multiple of the interval closes the one before, and the last
            // collection, which ends at the last record's due time, is
            // never empty.
            let containing = |t: u64| {
                let start = t.saturating_sub(1) / interval * interval;
                (start, start.saturating_add(interval))
            };
            match self.window {
                None => {
                    let w = containing(s.clock_ns);
                    self.window = Some(w);
                    self.first_start_ns = Some(w.0);
                }
                Some((_, end)) if s.clock_ns > end => {
                    done = self.collect_at(end, emit);
                    self.window = Some(containing(s.clock_ns));
                }
                Some(_) => {}
            }
        }
        self.last_clock_ns = self.last_clock_ns.max(s.clock_ns);
        self.stats.records += 1;
        let series = match self.index.get(&s.series) {
            Some(&i) => &mut self.series[i as usize],
            None if self.series.len() + 1 < self.settings.cardinality_limit => {
                let i = self.series.len();
                self.index.insert(s.series.clone(), i as u32);
                self.series.push(Series::default());
                &mut self.series[i]
            }
            None => {
                if self.stats.overflowed == 0 {
                    self.overflow_news = true;
                }
                self.stats.overflowed += 1;
                self.overflow.get_or_insert_with(Series::default)
            }
        };
        series.add(s);
        let held = self.series.len() + usize::from(self.overflow.is_some());
        self.stats.peak_series = self.stats.peak_series.max(held as u64);
        done
    }

    /// Live: when the next collection is due.
    pub fn due(&self) -> Option<Instant> {
        (self.settings.clock == Clock::Wall).then_some(self.next_due)
    }

    /// Live: the collection due now, if it is, handed to `emit` as for
    /// [`add`](Self::add).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub fn collect_due<E>(
        &mut self,
        emit: impl FnMut(Collection) -> Result<(), E>,
    ) -> Result<(), E> {
        let now = Instant::now();
        if self.settings.clock != Clock::Wall || now < self.next_due {
            return Ok(());
        }
        // On the interval's beat; after a stall, one collection for the
        // time missed, not one per interval missed.
        self.next_due += self.settings.interval;
        if self.next_due <= now {
            self.next_due = now + self.settings.interval;
        }
        self.collect_at(unix_now_ns(), emit)
    }

    /// The last collection, at the end of the input, handed to `emit` as
    /// for [`add`](Self::add): from a capture file it ends at the last
    /// record's due time.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub fn finish<E>(&mut self, emit: impl FnMut(Collection) -> Result<(), E>) -> Result<(), E> {
        let end = match self.settings.clock {
            Clock::Packet => self.last_clock_ns,
            Clock::Wall => unix_now_ns(),
        };
        let done = self.collect_at(end, emit);
        self.window = None;
        done
    }

    /// The metrics of everything added so far (cumulative) or since the
    /// last collection (delta), as of `end_ns`, handed to `emit` one
    /// request's worth at a time; nothing if there is nothing to report.
    fn collect_at<E>(
        &mut self,
        end_ns: u64,
        mut emit: impl FnMut(Collection) -> Result<(), E>,
    ) -> Result<(), E> {
        let temporality = self.settings.temporality;
        let start_ns = match (temporality, self.settings.clock) {
            (Temporality::Cumulative, _) => self.first_start_ns.unwrap_or(end_ns),
            (Temporality::Delta, Clock::Packet) => self.window.map_or(end_ns, |w| w.0),
            (Temporality::Delta, Clock::Wall) => self.last_collection_ns,
        };
        self.last_collection_ns = end_ns;
        if self.series.is_empty() && self.overflow.is_none() {
            return Ok(());
        }
        let names = &self.settings.dimensions.names;
        // In the order the series first came: the index's order is not
        // the same on every run.
        let mut keys: Vec<(u32, &[u8])> =
            self.index.iter().map(|(k, &i)| (i, &k.bytes[..])).collect();
        keys.sort_unstable_by_key(|(i, _)| *i);
        let overflow = self.overflow.as_ref().map(|o| {
            let attrs = vec![kv(OVERFLOW.into(), any_value::Value::BoolValue(true))];
            (attrs, o)
        });
        let mut done = Ok(());
        let mut chunks = keys.chunks(SERIES_PER_REQUEST).peekable();
        let mut overflow_sent = false;
        while done.is_ok() && !overflow_sent {
            // Series' attributes are read back one request at a time.
            let mut all: Vec<(Vec<KeyValue>, &Series)> = chunks
                .next()
                .unwrap_or_default()
                .iter()
                .map(|&(i, k)| (series_attributes(names, k), &self.series[i as usize]))
                .collect();
            if chunks.peek().is_none() {
                // The overflow series goes last, in the last request (which
                // may then hold one series more than the others).
                all.extend(overflow.clone());
                overflow_sent = true;
            }
            let c = build(&all, start_ns, end_ns, temporality, names);
            self.stats.points += c.points;
            done = emit(c);
        }
        self.stats.collections += 1;
        if temporality == Temporality::Delta {
            self.index.clear();
            self.series.clear();
            self.overflow = None;
        }
        done
    }
}

fn kv(key: String, value: any_value::Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn with(attrs: &[KeyValue], key: &str, value: &str) -> Vec<KeyValue> {
    let mut a = attrs.to_vec();
    a.push(kv(key.into(), any_value::Value::StringValue(value.into())));
    a
}

/// The instruments' points for `all` series.
fn build(
    all: &[(Vec<KeyValue>, &Series)],
    start_ns: u64,
    end_ns: u64,
    temporality: Temporality,
    names: &[String],
) -> Collection {
    let point = |attributes: Vec<KeyValue>, v: u64| NumberDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: end_ns,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(v).unwrap_or(i64::MAX),
        )),
        ..NumberDataPoint::default()
    };
    let sum =
        |name: &str, unit: &str, description: &str, data_points: Vec<NumberDataPoint>| Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: temporality.proto(),
                is_monotonic: true,
            })),
            ..Metric::default()
        };
    let mut metrics = Vec::new();
    let mut points = 0u64;
    let directions = ["forward", "reverse"];
    for (name, unit, description, get) in [
        (
            "flow.bytes",
            "By",
            "Bytes of the flows' packets (the spans' flow.bytes.delta and flow.reverse.bytes.delta), by the way they travelled",
            (|s: &Series| s.bytes) as fn(&Series) -> [u64; 2],
        ),
        (
            "flow.packets",
            "{packet}",
            "Packets of the flows (the spans' flow.packets.delta and flow.reverse.packets.delta), by the way they travelled",
            |s| s.packets,
        ),
    ] {
        let mut dps = Vec::new();
        for (attrs, s) in all {
            for ((direction, packets), value) in directions.iter().zip(s.packets).zip(get(s)) {
                // A direction with no packets has nothing to say.
                if packets > 0 {
                    dps.push(point(with(attrs, PACKET_DIRECTION, direction), value));
                }
            }
        }
        if !dps.is_empty() {
            points += dps.len() as u64;
            metrics.push(sum(name, unit, description, dps));
        }
    }
    let reason_is_a_dimension = names.iter().any(|n| n == "flow.end_reason");
    let mut dps = Vec::new();
    for (attrs, s) in all {
        for (r, n) in EndReason::ALL.iter().zip(s.records) {
            if n > 0 {
                let a = if reason_is_a_dimension {
                    attrs.clone()
                } else {
                    with(attrs, "flow.end_reason", r.as_str())
                };
                dps.push(point(a, n));
            }
        }
    }
    if !dps.is_empty() {
        points += dps.len() as u64;
        metrics.push(sum(
            "flow.records",
            "{record}",
            "Flow records (one per span), by flow.end_reason: active_timeout for flows still open, the other reasons for flows that ended",
            dps,
        ));
    }
    for (k, (name, description)) in LATENCIES.iter().enumerate() {
        let dps: Vec<HistogramDataPoint> = all
            .iter()
            .filter(|(_, s)| s.latency[k].count > 0)
            .map(|(attrs, s)| {
                let h = &s.latency[k];
                HistogramDataPoint {
                    attributes: attrs.clone(),
                    start_time_unix_nano: start_ns,
                    time_unix_nano: end_ns,
                    count: h.count,
                    sum: Some(h.sum_ns as f64 / 1e9),
                    bucket_counts: h.counts.to_vec(),
                    explicit_bounds: LATENCY_BOUNDS_NS.iter().map(|&b| b as f64 / 1e9).collect(),
                    min: Some(h.min_ns as f64 / 1e9),
                    max: Some(h.max_ns as f64 / 1e9),
                    ..HistogramDataPoint::default()
                }
            })
            .collect();
        if !dps.is_empty() {
            points += dps.len() as u64;
            metrics.push(Metric {
                name: (*name).into(),
                description: (*description).into(),
                unit: "s".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: dps,
                    aggregation_temporality: temporality.proto(),
                })),
                ..Metric::default()
            });
        }
    }
    Collection { metrics, points }
}

fn resource_attributes(resource: &Resource) -> Vec<KeyValue> {
    resource
        .attributes
        .iter()
        .map(|(k, v)| kv(k.clone(), any_value::Value::StringValue(v.clone())))
        .collect()
}

impl Collection {
    /// The `ExportMetricsServiceRequest` carrying these metrics for
    /// `resource`, in protobuf.
    pub fn to_proto(&self, resource: &Resource) -> Vec<u8> {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: resource_attributes(resource),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: crate::SCOPE_NAME.into(),
                        version: crate::SCOPE_VERSION.into(),
                        ..Default::default()
                    }),
                    metrics: self.metrics.clone(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }

    /// Appends the same request in OTLP JSON, without a newline: field
    /// names in lowerCamelCase, enums as integers, 64-bit integers as
    /// strings (as for spans, [`crate::json`]) except the values: a sum's
    /// `asInt` and a histogram's count and bucket counts are numbers. Every
    /// proto3 JSON parser reads both forms, but receivers built on serde
    /// models of OTLP (rotel) read only numbers there, and drop the value
    /// (or the whole histogram) without a word otherwise.
    pub fn write_json(&self, out: &mut Vec<u8>, resource: &Resource) {
        out.extend_from_slice(b"{\"resourceMetrics\":[{\"resource\":{\"attributes\":");
        write_attributes(out, &resource_attributes(resource));
        out.extend_from_slice(b"},\"scopeMetrics\":[{\"scope\":{\"name\":");
        write_json_string(out, crate::SCOPE_NAME);
        out.extend_from_slice(b",\"version\":");
        write_json_string(out, crate::SCOPE_VERSION);
        out.extend_from_slice(b"},\"metrics\":[");
        for (i, m) in self.metrics.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_metric(out, m);
        }
        out.extend_from_slice(b"]}]}]}");
    }
}

/// A double as JSON: Rust's shortest round-trip form, which never uses an
/// exponent, is a JSON number.
fn write_double(out: &mut Vec<u8>, v: f64) {
    use std::io::Write as _;
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.extend_from_slice(b"0");
    }
}

fn write_any(out: &mut Vec<u8>, v: &AnyValue) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_json_string(out, s);
            out.push(b'}');
        }
        Some(any_value::Value::IntValue(n)) => {
            out.extend_from_slice(b"{\"intValue\":");
            write_int_string(out, *n);
            out.push(b'}');
        }
        Some(any_value::Value::BoolValue(b)) => {
            out.extend_from_slice(if *b {
                b"{\"boolValue\":true}"
            } else {
                b"{\"boolValue\":false}"
            });
        }
        Some(any_value::Value::ArrayValue(a)) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_any(out, x);
            }
            out.extend_from_slice(b"]}}");
        }
        // Not made here.
        _ => out.extend_from_slice(b"{}"),
    }
}

fn write_attributes(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    out.push(b'[');
    for (i, kv) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_json_string(out, &kv.key);
        out.extend_from_slice(b",\"value\":");
        match &kv.value {
            Some(v) => write_any(out, v),
            None => out.extend_from_slice(b"{}"),
        }
        out.push(b'}');
    }
    out.push(b']');
}

fn write_times(out: &mut Vec<u8>, attrs: &[KeyValue], start: u64, time: u64) {
    out.extend_from_slice(b"{\"attributes\":");
    write_attributes(out, attrs);
    out.extend_from_slice(b",\"startTimeUnixNano\":");
    write_int_string(out, start);
    out.extend_from_slice(b",\"timeUnixNano\":");
    write_int_string(out, time);
}

fn write_metric(out: &mut Vec<u8>, m: &Metric) {
    out.extend_from_slice(b"{\"name\":");
    write_json_string(out, &m.name);
    out.extend_from_slice(b",\"description\":");
    write_json_string(out, &m.description);
    out.extend_from_slice(b",\"unit\":");
    write_json_string(out, &m.unit);
    match &m.data {
        Some(metric::Data::Sum(s)) => {
            out.extend_from_slice(b",\"sum\":{\"dataPoints\":[");
            for (i, p) in s.data_points.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_times(out, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                match p.value {
                    Some(number_data_point::Value::AsInt(n)) => {
                        // A number (see `write_json`).
                        out.extend_from_slice(b",\"asInt\":");
                        write_int(out, n);
                    }
                    Some(number_data_point::Value::AsDouble(d)) => {
                        out.extend_from_slice(b",\"asDouble\":");
                        write_double(out, d);
                    }
                    None => {}
                }
                out.push(b'}');
            }
            out.extend_from_slice(b"],\"aggregationTemporality\":");
            write_int(out, s.aggregation_temporality);
            out.extend_from_slice(b",\"isMonotonic\":");
            out.extend_from_slice(if s.is_monotonic { b"true" } else { b"false" });
            out.push(b'}');
        }
        Some(metric::Data::Histogram(h)) => {
            out.extend_from_slice(b",\"histogram\":{\"dataPoints\":[");
            for (i, p) in h.data_points.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_times(out, &p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                // Counts as numbers (see `write_json`).
                out.extend_from_slice(b",\"count\":");
                write_int(out, p.count);
                if let Some(sum) = p.sum {
                    out.extend_from_slice(b",\"sum\":");
                    write_double(out, sum);
                }
                out.extend_from_slice(b",\"bucketCounts\":[");
                for (j, c) in p.bucket_counts.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_int(out, *c);
                }
                out.extend_from_slice(b"],\"explicitBounds\":[");
                for (j, b) in p.explicit_bounds.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_double(out, *b);
                }
                out.push(b']');
                for (key, v) in [(&b",\"min\":"[..], p.min), (&b",\"max\":"[..], p.max)] {
                    if let Some(v) = v {
                        out.extend_from_slice(key);
                        write_double(out, v);
                    }
                }
                out.push(b'}');
            }
            out.extend_from_slice(b"],\"aggregationTemporality\":");
            write_int(out, h.aggregation_temporality);
            out.push(b'}');
        }
        // Not made here.
        _ => {}
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};
    use std::collections::BTreeSet;

    /// One UDP record between the given ports, due at `clock_s` seconds.
    fn record(src_port: u16, clock_s: u64, bytes: [u64; 2]) -> FlowRecord {
        let mut r = crate::udp_record(src_port);
        r.export_clock_ns = clock_s * 1_000_000_000;
        r.forward.bytes_delta = bytes[0];
        r.reverse.bytes_delta = bytes[1];
        r.forward.packets_delta = u64::from(bytes[0] > 0);
        r.reverse.packets_delta = u64::from(bytes[1] > 0);
        r
    }

    fn settings(dims: &[&str], temporality: Temporality, limit: usize) -> MetricsSettings {
        MetricsSettings {
            dimensions: Dimensions::new(dims).unwrap(),
            temporality,
            interval: Duration::from_secs(10),
            cardinality_limit: limit,
            clock: Clock::Packet,
        }
    }

    fn sample(d: &Dimensions, r: &FlowRecord) -> Sample {
        d.sample(r, &crate::span::flow_span(r))
    }

    /// Runs `records` through an aggregator: every collection, as JSON.
    fn run(s: MetricsSettings, records: &[FlowRecord]) -> (Vec<Json>, AggregatorStats) {
        let d = s.dimensions.clone();
        let mut a = Aggregator::new(s);
        let mut out = Vec::new();
        for r in records {
            a.add(&sample(&d, r), |c| {
                out.push(c);
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        a.finish(|c| {
            out.push(c);
            Ok::<_, ()>(())
        })
        .unwrap();
        let json = out
            .iter()
            .map(|c| {
                let mut b = Vec::new();
                c.write_json(&mut b, &Resource::default());
                serde_json::from_slice(&b).expect("valid JSON")
            })
            .collect();
        (json, a.stats())
    }

    /// `(attributes, value)` of every point of `name` in `collection`.
    fn points(collection: &Json, name: &str) -> Vec<(Json, i64)> {
        let metrics = &collection["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
        let Some(m) = metrics
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
        else {
            return Vec::new();
        };
        m["sum"]["dataPoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let v = p["asInt"].as_i64().unwrap();
                (p["attributes"].clone(), v)
            })
            .collect()
    }

    #[test]
    fn delta_points_add_up_to_the_records_and_cumulative_ones_end_there() {
        // Three intervals of 10 s (the second empty), two series.
        let records = [
            record(1000, 3, [100, 10]),
            record(1001, 4, [200, 0]),
            record(1000, 9, [1, 1]),
            record(1001, 25, [7, 70]),
        ];
        let dims = ["network.transport", "source.port"];
        let (delta, stats) = run(settings(&dims, Temporality::Delta, 100), &records);
        assert_eq!(delta.len(), 2, "one collection per interval with records");
        assert_eq!(stats.collections, 2);
        let mut by_series: HashMap<String, i64> = HashMap::new();
        for c in &delta {
            for (attrs, v) in points(c, "flow.bytes") {
                *by_series.entry(attrs.to_string()).or_default() += v;
            }
        }
        let key = |port: i64, dir: &str| {
            json!([
                {"key": "network.transport", "value": {"stringValue": "udp"}},
                {"key": "source.port", "value": {"intValue": port.to_string()}},
                {"key": "flow.packet.direction", "value": {"stringValue": dir}},
            ])
            .to_string()
        };
        assert_eq!(by_series[&key(1000, "forward")], 101);
        assert_eq!(by_series[&key(1000, "reverse")], 11);
        assert_eq!(by_series[&key(1001, "forward")], 207);
        assert_eq!(by_series[&key(1001, "reverse")], 70);
        assert_eq!(by_series.len(), 4, "{by_series:?}");
        // The first interval is [0 s, 10 s); the last ends at the last
        // record's due time.
        let first = &delta[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
        assert_eq!(first["aggregationTemporality"], 1);
        assert_eq!(first["dataPoints"][0]["startTimeUnixNano"], "0");
        assert_eq!(first["dataPoints"][0]["timeUnixNano"], "10000000000");
        let last = &delta[1]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
        assert_eq!(last["dataPoints"][0]["startTimeUnixNano"], "20000000000");
        assert_eq!(last["dataPoints"][0]["timeUnixNano"], "25000000000");

        let (cumulative, _) = run(settings(&dims, Temporality::Cumulative, 100), &records);
        let end: HashMap<String, i64> = points(cumulative.last().unwrap(), "flow.bytes")
            .into_iter()
            .map(|(a, v)| (a.to_string(), v))
            .collect();
        assert_eq!(end, by_series, "the last cumulative points are the totals");
        let sum = &cumulative[1]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
        assert_eq!(sum["aggregationTemporality"], 2);
        assert_eq!(sum["dataPoints"][0]["startTimeUnixNano"], "0");
        // Records: one per record, by end reason.
        let records_total: i64 = delta
            .iter()
            .flat_map(|c| points(c, "flow.records"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(records_total, 4);
    }

    #[test]
    fn series_beyond_the_limit_fold_into_the_overflow_series() {
        let records: Vec<FlowRecord> = (0..5).map(|i| record(2000 + i, 1, [10, 0])).collect();
        let (c, stats) = run(settings(&["source.port"], Temporality::Delta, 3), &records);
        let p = points(&c[0], "flow.bytes");
        assert_eq!(p.len(), 3, "two series and the overflow series: {p:?}");
        let overflow = json!([
            {"key": "otel.metric.overflow", "value": {"boolValue": true}},
            {"key": "flow.packet.direction", "value": {"stringValue": "forward"}},
        ]);
        assert_eq!(p[2], (overflow, 30));
        assert_eq!(stats.overflowed, 3);
        assert_eq!(stats.peak_series, 3);
        assert_eq!(p.iter().map(|x| x.1).sum::<i64>(), 50, "nothing lost");
    }

    #[test]
    fn a_collection_of_many_series_goes_out_in_requests_of_bounded_size() {
        // 450 series in one interval; with a limit of 401, 400 of them and
        // the overflow series.
        let records: Vec<FlowRecord> = (0..450).map(|i| record(3000 + i, 1, [10, 1])).collect();
        for (limit, requests, last) in [(1000, 3, 50), (401, 2, 201)] {
            let (c, stats) = run(
                settings(&["source.port"], Temporality::Delta, limit),
                &records,
            );
            assert_eq!(c.len(), requests, "limit {limit}");
            assert_eq!(
                stats.collections, 1,
                "one collection, in {requests} requests"
            );
            let series = |req: &Json| points(req, "flow.records").len();
            assert!(
                c[..requests - 1]
                    .iter()
                    .all(|r| series(r) == SERIES_PER_REQUEST)
            );
            assert_eq!(series(&c[requests - 1]), last, "limit {limit}");
            let total: i64 = c
                .iter()
                .flat_map(|r| points(r, "flow.bytes"))
                .map(|(_, v)| v)
                .sum();
            assert_eq!(total, 450 * 11, "nothing lost across requests");
            let times: BTreeSet<String> = c
                .iter()
                .map(|r| {
                    r["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]
                        ["timeUnixNano"]
                        .to_string()
                })
                .collect();
            assert_eq!(
                times.len(),
                1,
                "the requests of one collection share its times"
            );
        }
    }

    #[test]
    fn delta_frees_the_slots_each_interval_and_cumulative_keeps_them() {
        let records = [
            record(1, 1, [1, 0]),
            record(2, 11, [1, 0]),
            record(3, 21, [1, 0]),
        ];
        let dims = ["source.port"];
        let (_, delta) = run(settings(&dims, Temporality::Delta, 2), &records);
        assert_eq!(delta.overflowed, 0);
        let (c, cumulative) = run(settings(&dims, Temporality::Cumulative, 2), &records);
        assert_eq!(cumulative.overflowed, 2);
        assert_eq!(
            points(&c[2], "flow.bytes").len(),
            2,
            "port 1 and the overflow"
        );
    }

    #[test]
    fn latencies_fall_in_the_bucket_their_bound_closes() {
        let mut h = LatencyHistogram::default();
        for ns in [1, 50_000, 50_001, 10_000_000_000, 10_000_000_001] {
            h.add(ns);
        }
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[LATENCY_BOUNDS_NS.len() - 1], 1);
        assert_eq!(h.counts[LATENCY_BOUNDS_NS.len()], 1);
        assert_eq!((h.count, h.min_ns, h.max_ns), (5, 1, 10_000_000_001));
    }

    /// The protobuf request, decoded, says what the JSON line says.
    #[test]
    fn the_protobuf_request_carries_what_the_json_line_does() {
        let mut r = record(7, 2, [500, 60]);
        r.key.protocol = 6;
        r.tcp_latency.handshake_ns = Some(1_500_000);
        r.tcp_latency.rndtrip_ns = Some(2_000_000);
        let d = Dimensions::new(&["network.transport", "flow.direction"]).unwrap();
        let mut a = Aggregator::new(MetricsSettings {
            dimensions: d.clone(),
            ..settings(&[], Temporality::Cumulative, 10)
        });
        let mut collections = Vec::new();
        a.add(&sample(&d, &r), |c| {
            collections.push(c);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(collections.is_empty(), "nothing before the end");
        a.finish(|c| {
            collections.push(c);
            Ok::<_, ()>(())
        })
        .unwrap();
        let [c] = &collections[..] else {
            panic!("one request: {collections:?}")
        };
        let resource = Resource::default();
        let mut line = Vec::new();
        c.write_json(&mut line, &resource);
        let json: Json = serde_json::from_slice(&line).unwrap();
        let request =
            ExportMetricsServiceRequest::decode(c.to_proto(&resource).as_slice()).unwrap();
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let jm = json["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "flow.bytes",
                "flow.packets",
                "flow.records",
                "flow.tcp.handshake.latency",
                "flow.tcp.rndtrip.latency"
            ]
        );
        for (m, j) in metrics.iter().zip(jm) {
            assert_eq!(j["name"], m.name.as_str());
            assert_eq!(j["unit"], m.unit.as_str());
            match &m.data {
                Some(metric::Data::Sum(s)) => {
                    for (p, jp) in s
                        .data_points
                        .iter()
                        .zip(j["sum"]["dataPoints"].as_array().unwrap())
                    {
                        let Some(number_data_point::Value::AsInt(v)) = p.value else {
                            panic!("ints only")
                        };
                        assert_eq!(jp["asInt"], v);
                        assert_eq!(
                            jp["attributes"].as_array().unwrap().len(),
                            p.attributes.len()
                        );
                    }
                }
                Some(metric::Data::Histogram(h)) => {
                    let p = &h.data_points[0];
                    let jp = &j["histogram"]["dataPoints"][0];
                    assert_eq!(jp["count"], p.count);
                    assert_eq!(jp["sum"].as_f64(), p.sum);
                    assert_eq!(jp["min"].as_f64(), p.min);
                    let bounds: Vec<f64> = jp["explicitBounds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|b| b.as_f64().unwrap())
                        .collect();
                    assert_eq!(bounds, p.explicit_bounds);
                    assert_eq!(p.bucket_counts.len(), bounds.len() + 1);
                }
                _ => panic!("sums and histograms only"),
            }
        }
        let handshake = &jm[3]["histogram"]["dataPoints"][0];
        assert_eq!(handshake["sum"].as_f64(), Some(0.0015));
        assert_eq!(
            handshake["bucketCounts"][5], 1,
            "1.5 ms is in (1 ms, 2.5 ms]"
        );
    }

    #[test]
    fn bad_dimensions_say_why() {
        let e = |d: &[&str]| Dimensions::new(d).unwrap_err();
        assert!(e(&["transport"]).contains("not a span attribute name"));
        assert!(e(&["flow.bytes.delta"]).contains("is a counter"));
        assert!(e(&["network.type", "network.type"]).contains("twice"));
        assert!(Dimensions::new(&["destination.port", "flow.end_reason"]).is_ok());
        assert_eq!(Dimensions::default_for(true).names().len(), 13);
    }

    #[test]
    fn temporality_preferences() {
        assert_eq!(Temporality::parse("Delta"), Ok(Temporality::Delta));
        assert_eq!(Temporality::parse("lowmemory"), Ok(Temporality::Delta));
        assert_eq!(
            Temporality::parse("cumulative"),
            Ok(Temporality::Cumulative)
        );
        assert!(
            Temporality::parse("weekly")
                .unwrap_err()
                .contains("expected cumulative")
        );
    }
}

#[cfg(test)]
mod size {
    /// README "Flow metrics" states a series' memory from this.
    #[test]
    fn a_series_takes_656_bytes_besides_its_key() {
        assert_eq!(super::SERIES_BYTES, 656);
    }
}
