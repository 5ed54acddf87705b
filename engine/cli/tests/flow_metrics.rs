//! Flow metrics (`--metrics`, issue 22) from capture files: on every
//! fixture and every public capture, what the metrics add up to equals what
//! the spans of the same run say, per series and per direction; the output
//! is the same for any number of workers; the cardinality limit folds
//! series into the overflow series without losing a count; bad settings
//! fail with one line. (The real collector's view is in `otlp_export.rs`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{captures, engine, root, shared_data};
// The latency histograms' bucket bounds, in ns: the engine's, which the
// output must also state (checked in `add_point`).
use exporter::metrics::LATENCY_BOUNDS_NS as BOUNDS_NS;
use serde_json::Value as Json;

/// A series: its dimension attributes, `(key, value as JSON text)`.
type Key = Vec<(String, String)>;

/// What one series adds up to.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    /// Forward, reverse.
    bytes: [i64; 2],
    packets: [i64; 2],
    records: BTreeMap<String, i64>,
    /// Handshake, round trip, service: count, sum of ns, bucket counts.
    latency: [Latency; 3],
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Latency {
    count: u64,
    /// From spans: exact ns. From metrics: the points' sums in s, added.
    sum_s: f64,
    buckets: Vec<u64>,
}

const LATENCIES: [&str; 3] = [
    "flow.tcp.handshake.latency",
    "flow.tcp.rndtrip.latency",
    "flow.tcp.svc.latency",
];

/// The spans and the metric requests of OTLP JSON output.
struct Lines {
    spans: Vec<Json>,
    metrics: Vec<Json>,
    span_lines: Vec<String>,
}

fn lines(stdout: &[u8]) -> Lines {
    let mut out = Lines {
        spans: Vec::new(),
        metrics: Vec::new(),
        span_lines: Vec::new(),
    };
    for line in std::str::from_utf8(stdout).expect("UTF-8").lines() {
        let req: Json = serde_json::from_str(line).expect("each line is one JSON request");
        if req.get("resourceMetrics").is_some() {
            out.metrics.push(req);
        } else {
            let spans = req["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .expect("a span or a metric request")
                .clone();
            out.spans.extend(spans);
            out.span_lines.push(line.to_owned());
        }
    }
    out
}

fn attr<'a>(attrs: &'a Json, key: &str) -> Option<&'a Json> {
    attrs
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn int(v: &Json) -> i64 {
    v["intValue"]
        .as_str()
        .expect("an intValue")
        .parse()
        .expect("an int64")
}

/// What the spans add up to, per series of `dims`.
fn from_spans(spans: &[Json], dims: &[&str]) -> BTreeMap<Key, Tally> {
    let mut out: BTreeMap<Key, Tally> = BTreeMap::new();
    let mut flows_seen = BTreeSet::new();
    for s in spans {
        let a = &s["attributes"];
        let key: Key = dims
            .iter()
            .filter_map(|d| attr(a, d).map(|v| (d.to_string(), v.to_string())))
            .collect();
        let t = out.entry(key).or_default();
        let get = |k: &str| attr(a, k).map_or(0, int);
        t.bytes[0] += get("flow.bytes.delta");
        t.bytes[1] += get("flow.reverse.bytes.delta");
        t.packets[0] += get("flow.packets.delta");
        t.packets[1] += get("flow.reverse.packets.delta");
        let reason = attr(a, "flow.end_reason").expect("flow.end_reason")["stringValue"]
            .as_str()
            .expect("a string")
            .to_owned();
        *t.records.entry(reason).or_default() += 1;
        // A flow's records share its trace; its first comes out first.
        let first_of_flow = flows_seen.insert(s["traceId"].as_str().expect("traceId").to_owned());
        for (k, name) in LATENCIES.iter().enumerate() {
            let Some(v) = attr(a, name) else { continue };
            if k == 0 && !first_of_flow {
                continue;
            }
            let ns = u64::try_from(int(v)).expect("a latency is not negative");
            let l = &mut t.latency[k];
            l.count += 1;
            l.sum_s += ns as f64 / 1e9;
            l.buckets.resize(BOUNDS_NS.len() + 1, 0);
            l.buckets[BOUNDS_NS.partition_point(|&b| b < ns)] += 1;
        }
    }
    out
}

/// What the metric points add up to (delta), or their last values
/// (cumulative: each point replaces the one before it), per series.
fn from_metrics(requests: &[Json], dims: &[&str], cumulative: bool) -> BTreeMap<Key, Tally> {
    let mut out: BTreeMap<Key, Tally> = BTreeMap::new();
    // Cumulative: the last value of each point, by series and attributes.
    let mut last: BTreeMap<(String, Key, String), Json> = BTreeMap::new();
    for req in requests {
        for m in req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .expect("metrics")
        {
            let name = m["name"].as_str().expect("name").to_owned();
            let (points, extra_key) = match name.as_str() {
                "flow.bytes" | "flow.packets" => (&m["sum"]["dataPoints"], "flow.packet.direction"),
                "flow.records" => (&m["sum"]["dataPoints"], "flow.end_reason"),
                _ => (&m["histogram"]["dataPoints"], ""),
            };
            for p in points.as_array().expect("dataPoints") {
                let mut key = Vec::new();
                let mut extra = String::new();
                for a in p["attributes"].as_array().expect("attributes") {
                    let k = a["key"].as_str().expect("key");
                    if k == extra_key {
                        extra = a["value"]["stringValue"].as_str().expect("a string").into();
                    }
                    if k != extra_key || dims.contains(&k) {
                        key.push((k.to_owned(), a["value"].to_string()));
                    }
                }
                if name == "flow.records" && extra.is_empty() {
                    // flow.end_reason is a dimension: not written twice.
                    let (_, v) = key
                        .iter()
                        .find(|(k, _)| k == "flow.end_reason")
                        .expect("flow.end_reason, as a dimension or beside them");
                    let v: Json = serde_json::from_str(v).expect("JSON");
                    extra = v["stringValue"].as_str().expect("a string").into();
                }
                if cumulative {
                    last.insert((name.clone(), key, extra), p.clone());
                } else {
                    add_point(&mut out, &name, key, &extra, p);
                }
            }
        }
    }
    for ((name, key, extra), p) in last {
        add_point(&mut out, &name, key, &extra, &p);
    }
    out
}

fn add_point(out: &mut BTreeMap<Key, Tally>, name: &str, key: Key, extra: &str, p: &Json) {
    let t = out.entry(key).or_default();
    let direction = usize::from(extra == "reverse");
    let value = || -> i64 { p["asInt"].as_i64().expect("asInt, a number") };
    match name {
        "flow.bytes" => t.bytes[direction] += value(),
        "flow.packets" => t.packets[direction] += value(),
        "flow.records" => *t.records.entry(extra.to_owned()).or_default() += value(),
        _ => {
            let k = LATENCIES
                .iter()
                .position(|l| *l == name)
                .expect("a known instrument");
            let bounds: Vec<u64> = p["explicitBounds"]
                .as_array()
                .expect("bounds")
                .iter()
                .map(|b| (b.as_f64().expect("a bound") * 1e9).round() as u64)
                .collect();
            assert_eq!(bounds, BOUNDS_NS, "{name}'s bounds");
            let l = &mut t.latency[k];
            l.count += p["count"].as_u64().expect("count, a number");
            l.sum_s += p["sum"].as_f64().expect("sum");
            let buckets: Vec<u64> = p["bucketCounts"]
                .as_array()
                .expect("bucketCounts")
                .iter()
                .map(|c| c.as_u64().expect("a count, a number"))
                .collect();
            l.buckets.resize(buckets.len(), 0);
            for (b, c) in l.buckets.iter_mut().zip(buckets) {
                *b += c;
            }
            assert!(p["min"].as_f64() <= p["max"].as_f64(), "{p}");
        }
    }
}

/// Whether two tallies agree: counts exactly, latency sums to within
/// rounding (a sum of seconds as doubles).
fn agree(a: &BTreeMap<Key, Tally>, b: &BTreeMap<Key, Tally>) -> Result<(), String> {
    let keys: BTreeSet<&Key> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (Some(x), Some(y)) = (a.get(k), b.get(k)) else {
            return Err(format!("series {k:?} only on one side"));
        };
        if (x.bytes, x.packets, &x.records) != (y.bytes, y.packets, &y.records) {
            return Err(format!("series {k:?}: {x:?} != {y:?}"));
        }
        for (l, m) in x.latency.iter().zip(&y.latency) {
            if l.count != m.count
                || l.buckets != m.buckets
                || (l.sum_s - m.sum_s).abs() > 1e-9 * (1.0 + l.sum_s.abs())
            {
                return Err(format!("series {k:?}: latency {l:?} != {m:?}"));
            }
        }
    }
    Ok(())
}

fn run(args: &[&str]) -> Output {
    let out = engine(args);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "engine {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every fixture, and every public capture.
fn all_captures() -> Vec<PathBuf> {
    let mut all = captures(&root().join("testdata/pcap"));
    let public = shared_data().map(|d| captures(&d)).unwrap_or_default();
    assert!(
        public.len() > 10 || std::env::var_os("CI").is_none(),
        "the public captures are missing"
    );
    all.extend(public);
    all
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

const DEFAULT: [&str; 3] = ["network.transport", "network.type", "flow.direction"];
/// Chosen dimensions: an integer, the end reason (then not added again to
/// flow.records) and an address.
const CHOSEN: [&str; 4] = [
    "destination.port",
    "flow.end_reason",
    "network.transport",
    "source.address",
];

#[test]
fn metric_sums_equal_the_spans_on_every_fixture_and_every_public_capture() {
    let mut checked = 0;
    let mut with_latency = 0;
    for capture in all_captures() {
        for (dims, chosen) in [(&DEFAULT[..], false), (&CHOSEN[..], true)] {
            let mut args = vec![
                "--pcap",
                path(&capture),
                "--metrics",
                "--metrics-temporality",
                "delta",
                "--metrics-interval",
                "1",
                "-q",
                "-o",
                "-",
            ];
            if chosen {
                for d in dims {
                    args.extend(["--metrics-dimension", d]);
                }
            }
            let out = run(&args);
            let l = lines(&out.stdout);
            let expected = from_spans(&l.spans, dims);
            let got = from_metrics(&l.metrics, dims, false);
            if let Err(e) = agree(&expected, &got) {
                panic!("{} ({dims:?}): {e}", capture.display());
            }
            // One interval of packet time per collection, aligned.
            let mut ends = Vec::new();
            for req in &l.metrics {
                let p = &req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"]
                    [0];
                let n = |k: &str| p[k].as_str().unwrap().parse::<u64>().unwrap();
                let (start, time) = (n("startTimeUnixNano"), n("timeUnixNano"));
                assert_eq!(start % 1_000_000_000, 0, "{}", capture.display());
                assert!(start <= time && time - start <= 1_000_000_000);
                ends.push(time);
            }
            // A collection of many series is several lines with its times.
            ends.dedup();
            assert!(ends.windows(2).all(|w| w[0] < w[1]), "intervals in order");
            checked += 1;
            with_latency += usize::from(
                expected
                    .values()
                    .any(|t| t.latency.iter().any(|l| l.count > 0)),
            );
            assert_eq!(l.spans.is_empty(), l.metrics.is_empty());
        }
    }
    eprintln!("{checked} runs checked, {with_latency} with TCP latencies");
    assert!(with_latency >= 4, "the latency histograms were exercised");
}

#[test]
fn cumulative_points_end_at_the_span_totals() {
    let mut captures = vec![root().join("testdata/pcap/latency.pcap")];
    captures.extend(shared_data().map(|d| d.join("zeek/ssh/ssh.pcap")));
    for capture in captures {
        let out = run(&[
            "--pcap",
            path(&capture),
            "--metrics",
            "--metrics-interval",
            "0.5",
            "-q",
            "-o",
            "-",
        ]);
        let l = lines(&out.stdout);
        assert!(!l.metrics.is_empty());
        if capture.ends_with("latency.pcap") {
            assert!(l.metrics.len() > 5, "several collections");
        }
        // Points per collection (a collection may take several lines, all
        // with its time).
        let mut collections: Vec<(Json, usize)> = Vec::new();
        let mut start = None;
        for req in &l.metrics {
            let bytes = &req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
            assert_eq!(bytes["name"], "flow.bytes");
            assert_eq!(bytes["sum"]["aggregationTemporality"], 2, "cumulative");
            let points = bytes["sum"]["dataPoints"].as_array().unwrap();
            let time = points[0]["timeUnixNano"].clone();
            match collections.last_mut() {
                Some((t, n)) if *t == time => *n += points.len(),
                _ => collections.push((time, points.len())),
            }
            for p in points {
                let s = p["startTimeUnixNano"].clone();
                assert_eq!(start.get_or_insert(s.clone()), &s, "one start for all");
            }
        }
        // Every series of a collection is in the later ones.
        assert!(
            collections.windows(2).all(|w| w[0].1 <= w[1].1),
            "{collections:?}"
        );
        let expected = from_spans(&l.spans, &DEFAULT);
        if let Err(e) = agree(&expected, &from_metrics(&l.metrics, &DEFAULT, true)) {
            panic!("{}: {e}", capture.display());
        }
    }
}

#[test]
fn metrics_from_a_file_are_the_same_for_any_worker_count_and_leave_the_spans_alone() {
    let mut captures = vec![
        root().join("testdata/pcap/latency.pcap"),
        root().join("testdata/pcap/tunnels.pcap"),
        root().join("testdata/pcap/timeouts.pcap"),
    ];
    captures.extend(shared_data().map(|d| d.join("zeek/smb/smb3_multichannel.pcap")));
    for capture in captures {
        for temporality in ["delta", "cumulative"] {
            let outputs: Vec<Vec<u8>> = ["1", "2", "3"]
                .iter()
                .map(|w| {
                    run(&[
                        "--pcap",
                        path(&capture),
                        "--metrics",
                        "--metrics-temporality",
                        temporality,
                        "--metrics-interval",
                        "2",
                        "--workers",
                        w,
                        "-q",
                        "-o",
                        "-",
                    ])
                    .stdout
                })
                .collect();
            assert!(!lines(&outputs[0]).metrics.is_empty());
            assert!(
                outputs.windows(2).all(|w| w[0] == w[1]),
                "{} ({temporality}): output differs between worker counts",
                capture.display()
            );
            let without = run(&["--pcap", path(&capture), "-q", "-o", "-"]).stdout;
            assert_eq!(
                lines(&outputs[0]).span_lines,
                lines(&without).span_lines,
                "{}: the span lines are the same with --metrics",
                capture.display()
            );
        }
    }
}

#[test]
fn series_beyond_the_cardinality_limit_are_folded_counted_and_warned_about() {
    let Some(data) = shared_data() else { return };
    // 64 records from 30 addresses.
    let capture = data.join("zeek/cisco-fabric-path.pcap");
    for temporality in ["delta", "cumulative"] {
        let out = run(&[
            "--pcap",
            path(&capture),
            "--metrics",
            "--metrics-dimension",
            "source.address",
            "--metrics-cardinality-limit",
            "5",
            "--metrics-temporality",
            temporality,
            "-o",
            "-",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("more than 4 series (--metrics-cardinality-limit 5)")
                && stderr.contains("otel.metric.overflow=true"),
            "{stderr}"
        );
        let l = lines(&out.stdout);
        let overflow_key = vec![(
            "otel.metric.overflow".to_owned(),
            r#"{"boolValue":true}"#.to_owned(),
        )];
        for req in &l.metrics {
            for m in req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                .as_array()
                .unwrap()
            {
                let points = m["sum"]["dataPoints"]
                    .as_array()
                    .or(m["histogram"]["dataPoints"].as_array())
                    .unwrap();
                let series: BTreeSet<String> = points
                    .iter()
                    .map(|p| {
                        p["attributes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|a| {
                                a["key"] == "source.address" || a["key"] == "otel.metric.overflow"
                            })
                            .map(|a| a.to_string())
                            .collect()
                    })
                    .collect();
                assert!(series.len() <= 5, "{} series", series.len());
            }
        }
        // Nothing is lost: the spans' totals, with every series beyond the
        // limit in the overflow series.
        let got = from_metrics(&l.metrics, &["source.address"], temporality == "cumulative");
        let overflow = got.get(&overflow_key).expect("an overflow series");
        let expected = from_spans(&l.spans, &["source.address"]);
        let total = |m: &BTreeMap<Key, Tally>| -> (i64, i64, i64) {
            m.values().fold((0, 0, 0), |(b, p, r), t| {
                (
                    b + t.bytes[0] + t.bytes[1],
                    p + t.packets[0] + t.packets[1],
                    r + t.records.values().sum::<i64>(),
                )
            })
        };
        assert_eq!(total(&got), total(&expected), "{temporality}");
        let folded = overflow.records.values().sum::<i64>();
        let summary = stderr
            .lines()
            .find(|l| l.contains("records counted in the overflow series"))
            .expect("the summary's metrics line");
        assert!(
            summary.contains(&format!("; {folded} of {} records", l.spans.len())),
            "{summary}"
        );
    }
}

#[test]
fn bad_metrics_settings_fail_with_one_line_naming_the_setting() {
    let capture = root().join("testdata/pcap/latency.pcap");
    let p = path(&capture);
    for (args, env, expected) in [
        (
            vec!["--metrics", "--metrics-dimension", "transport"],
            None,
            "--metrics-dimension \"transport\" is not a span attribute name",
        ),
        (
            vec!["--metrics", "--metrics-dimension", "flow.bytes.delta"],
            None,
            "is a counter, not a dimension",
        ),
        (
            vec!["--metrics", "--metrics-temporality", "weekly"],
            None,
            "--metrics-temporality: \"weekly\" is not a temporality (expected cumulative, delta or lowmemory)",
        ),
        (
            vec!["--metrics"],
            Some((
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes",
            )),
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: \"sometimes\" is not a temporality",
        ),
        (
            vec!["--metrics"],
            Some(("OTEL_METRIC_EXPORT_INTERVAL", "1m")),
            "OTEL_METRIC_EXPORT_INTERVAL: \"1m\" is not a number of milliseconds above 0",
        ),
        (
            vec!["--metrics", "--metrics-interval", "0.0001"],
            None,
            "--metrics-interval: 0.0001 s is shorter than the shortest collection interval, 0.001 s",
        ),
        (
            vec!["--metrics", "--metrics-cardinality-limit", "0"],
            None,
            "--metrics-cardinality-limit",
        ),
        (
            vec!["--metrics", "--metrics-cardinality-limit", "1000000"],
            None,
            "--metrics-cardinality-limit",
        ),
    ] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_engine"));
        c.args(["--pcap", p, "-o", "/dev/null"]).args(&args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().expect("running engine");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.starts_with("engine: error: "), "{stderr}");
    }
}

#[test]
fn the_interval_comes_from_the_standard_variable_in_milliseconds() {
    let capture = root().join("testdata/pcap/latency.pcap");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", path(&capture), "--metrics", "-q", "-o", "-"])
        .env("OTEL_METRIC_EXPORT_INTERVAL", "250")
        .env(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "LowMemory",
        )
        .output()
        .expect("running engine");
    assert!(out.status.success());
    let metrics = lines(&out.stdout).metrics;
    // Its records fall in 11 intervals of 250 ms (in 3 of the default 60 s):
    // a run that ignored the variable would fail here.
    assert_eq!(metrics.len(), 11, "one collection per 250 ms with records");
    for req in metrics {
        let sum = &req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
        assert_eq!(sum["aggregationTemporality"], 1, "lowmemory is delta");
        let p = &sum["dataPoints"][0];
        let n = |k: &str| p[k].as_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(n("startTimeUnixNano") % 250_000_000, 0);
        assert!(n("timeUnixNano") - n("startTimeUnixNano") <= 250_000_000);
    }
}

/// With Kubernetes enrichment, the default dimensions add each side's
/// namespace and workload (Deployment, StatefulSet, DaemonSet, CronJob).
#[test]
fn with_kubernetes_enrichment_the_series_have_each_sides_namespace_and_workload() {
    let pcap = root().join("testdata/pcap/kubernetes.pcap");
    let snapshot = root().join("testdata/k8s/cluster.json");
    let out = run(&[
        "--pcap",
        path(&pcap),
        "--k8s-snapshot",
        path(&snapshot),
        "--metrics",
        "-q",
        "-o",
        "-",
    ]);
    let l = lines(&out.stdout);
    let k8s: Vec<String> = ["source", "destination"]
        .iter()
        .flat_map(|side| {
            [
                "namespace",
                "deployment",
                "statefulset",
                "daemonset",
                "cronjob",
            ]
            .map(|a| format!("{side}.k8s.{a}.name"))
        })
        .collect();
    let dims: Vec<&str> = DEFAULT
        .iter()
        .copied()
        .chain(k8s.iter().map(String::as_str))
        .collect();
    let got = from_metrics(&l.metrics, &dims, true);
    if let Err(e) = agree(&from_spans(&l.spans, &dims), &got) {
        panic!("{e}");
    }
    let keys: BTreeSet<&str> = got
        .keys()
        .flat_map(|k| k.iter().map(|(name, _)| name.as_str()))
        .collect();
    for workload in [
        "source.k8s.namespace.name",
        "source.k8s.deployment.name",
        "source.k8s.cronjob.name",
        "destination.k8s.namespace.name",
        "destination.k8s.statefulset.name",
        "destination.k8s.daemonset.name",
    ] {
        assert!(keys.contains(workload), "{workload} in {keys:?}");
    }
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("pod") || k.contains("replicaset")),
        "{keys:?}"
    );
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// Live, the intervals are the wall clock's: collections reach the output
/// while the capture runs, even when no record ends, one after the other;
/// and what they add up to is what the spans say. Needs root (a veth pair
/// between two namespaces; skips otherwise, fails in CI).
#[test]
fn live_metrics_come_by_the_wall_clock_and_add_up_to_the_spans() {
    use capture_afpacket::PacketSender;
    use capture_afpacket::testnet::{Setup, VethPair, udp_frame};
    use common::live::{interrupt, start_in};

    let Some(ns) = VethPair::for_test("m", Setup::default()) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("flowspan-metrics-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("live.json");
    let started = unix_now_ns();
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "--metrics",
            "--metrics-interval",
            "0.4",
            "--metrics-temporality",
            "delta",
            "--active-timeout",
            "0.3",
            "-o",
            json.to_str().expect("path"),
        ],
    );
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    // Records every 0.3 s (the active timeout) for 1.6 s.
    for _ in 0..16 {
        for flow in 1..=3 {
            sender.send(&udp_frame(flow, false, None)).expect("send");
            sender.send(&udp_frame(flow, true, None)).expect("send");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Collections come every 0.4 s while the capture runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while std::time::Instant::now() < deadline && seen < 3 {
        seen = lines(&std::fs::read(&json).unwrap_or_default())
            .metrics
            .len();
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, stderr) = interrupt(child, reader);
    let stopped = unix_now_ns();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(seen >= 3, "{seen} collections while capturing: {stderr}");
    let l = lines(&std::fs::read(&json).expect("live output"));
    let packets: i64 = l
        .spans
        .iter()
        .map(|s| {
            let a = &s["attributes"];
            int(attr(a, "flow.packets.delta").expect("packets"))
                + int(attr(a, "flow.reverse.packets.delta").expect("packets"))
        })
        .sum();
    assert_eq!(packets, 96, "{stderr}");
    if let Err(e) = agree(
        &from_spans(&l.spans, &DEFAULT),
        &from_metrics(&l.metrics, &DEFAULT, false),
    ) {
        panic!("{e}");
    }
    // Delta intervals follow one another, inside the run, by the clock.
    let mut previous: Option<(u64, u64)> = None;
    for req in &l.metrics {
        let p = &req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0];
        let n = |k: &str| p[k].as_str().unwrap().parse::<u64>().unwrap();
        let (start, time) = (n("startTimeUnixNano"), n("timeUnixNano"));
        assert!(started <= start && start < time && time <= stopped, "{p}");
        match previous {
            // Another request of the same collection.
            Some(same) if same == (start, time) => {}
            Some((_, end)) => assert!(start >= end, "intervals do not overlap: {p}"),
            None => {}
        }
        previous = Some((start, time));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The config file turns metrics on and sets them like the flags; metrics
/// settings while metrics are off have no effect, and a warning says so.
#[test]
fn the_config_file_sets_metrics_and_settings_without_metrics_are_warned_about() {
    let dir = std::env::temp_dir().join(format!("flowspan-metrics-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("engine.yaml");
    std::fs::write(
        &config,
        "metrics: true\nmetrics-dimension: [network.transport, destination.port]\n\
         metrics-temporality: delta\nmetrics-interval: 5\n",
    )
    .expect("config");
    let capture = root().join("testdata/pcap/latency.pcap");
    let out = run(&[
        "--config",
        path(&config),
        "--pcap",
        path(&capture),
        "-q",
        "-o",
        "-",
    ]);
    let l = lines(&out.stdout);
    assert!(!l.metrics.is_empty());
    let dims = ["network.transport", "destination.port"];
    if let Err(e) = agree(
        &from_spans(&l.spans, &dims),
        &from_metrics(&l.metrics, &dims, false),
    ) {
        panic!("{e}");
    }
    for req in &l.metrics {
        let sum = &req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
        assert_eq!(sum["aggregationTemporality"], 1, "delta, from the file");
    }
    // Off: the settings are there, and said to do nothing.
    let out = run(&[
        "--pcap",
        path(&capture),
        "--metrics-interval",
        "5",
        "--metrics-dimension",
        "destination.port",
        "-q",
        "-o",
        "-",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(lines(&out.stdout).metrics.is_empty());
    for flag in ["--metrics-interval", "--metrics-dimension"] {
        assert!(
            stderr.contains(&format!(
                "engine: warning: {flag} has no effect: flow metrics are off (--metrics turns them on)"
            )),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
