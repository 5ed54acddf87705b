//! OTLP export against a real collector on loopback: rotel (Streamfold's
//! Rust OpenTelemetry collector), installed by `scripts/install-rotel.sh`
//! from PyPI and started here on ports the test picks. Its detailed debug
//! dump of received spans is compared with the engine's OTLP JSON output of
//! the same run.

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{root, rotel, skip};
use serde_json::Value as Json;

/// A loopback port that is free now and that no other test of this file
/// was given. The tests run in parallel, and the kernel may hand a port
/// just released to the next bind: two tests given the same port had one
/// engine deliver to the other test's collector (a fresh-clone CI run saw
/// it, with the "collector down" test's port taken by a running collector).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("otlp-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A running rotel-agent with the blackhole exporter and a detailed dump of
/// every span it receives in `log`.
struct Collector {
    child: Option<Child>,
    log: PathBuf,
}

impl Collector {
    fn start(grpc: u16, http: u16, log: &Path) -> Collector {
        Collector::start_dumping(grpc, http, log, "traces")
    }

    /// A collector that dumps what it receives of `signal` (`traces`,
    /// `metrics`).
    fn start_dumping(grpc: u16, http: u16, log: &Path, signal: &str) -> Collector {
        let file = fs::File::create(log).expect("collector log");
        let child = Command::new(rotel())
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                signal,
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("starting rotel-agent");
        let c = Collector {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let started = Instant::now();
        while [grpc, http]
            .iter()
            .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "rotel did not listen on {grpc}/{http}: {}",
                fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    /// SIGTERM (rotel shuts down cleanly), then wait for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn dump(&self) -> Dump {
        let bytes = fs::read(&self.log).expect("collector log");
        // rotel may be writing: a last line without its newline is cut
        // (parsed, `Str(ipv` failed a fresh-clone CI run), so leave it out.
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(end) => &bytes[..=end],
            None => &[][..],
        };
        parse_dump(&String::from_utf8_lossy(complete))
    }

    /// Waits until the dump holds `n` spans (rotel batches before it
    /// prints), then a little longer to catch any extra.
    fn wait_for(&self, n: usize) -> Dump {
        let started = Instant::now();
        loop {
            let d = self.dump();
            if d.spans.len() >= n {
                std::thread::sleep(Duration::from_millis(500));
                return self.dump();
            }
            if started.elapsed() > Duration::from_secs(30) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum V {
    Str(String),
    Int(i64),
    StrArray(Vec<String>),
}

type Attrs = Vec<(String, V)>;

/// Everything a span carries that both sides can show.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    trace_id: String,
    span_id: String,
    name: String,
    kind: String,
    start: u64,
    end: u64,
    attrs: Attrs,
}

#[derive(Debug, Default)]
struct Dump {
    resources: Vec<Attrs>,
    spans: Vec<Span>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn inner<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.strip_prefix(prefix)?.strip_suffix(')')
}

/// rotel's value rendering: `Str(x)`, `Int(n)`, `Slice(Str(a), Str(b))`.
fn dump_value(s: &str) -> V {
    if let Some(v) = inner(s, "Str(") {
        V::Str(v.to_string())
    } else if let Some(v) = inner(s, "Int(") {
        V::Int(v.parse().expect("Int value"))
    } else if let Some(v) = inner(s, "Slice(") {
        V::StrArray(
            v.split(", ")
                .filter(|x| !x.is_empty())
                .map(|x| inner(x, "Str(").expect("string element").to_string())
                .collect(),
        )
    } else {
        panic!("unknown value rendering {s:?}")
    }
}

/// Parses rotel's detailed debug dump (`--debug-log-verbosity detailed`).
fn parse_dump(text: &str) -> Dump {
    enum In {
        Nothing,
        Resource,
        Span,
    }
    let mut d = Dump::default();
    let mut at = In::Nothing;
    for line in strip_ansi(text).lines() {
        let field = |name: &str| {
            line.trim_start()
                .strip_prefix(name)
                .map(|rest| rest.trim_start().trim_start_matches(':').trim().to_string())
        };
        if line.starts_with("Resource attributes:") {
            d.resources.push(Vec::new());
            at = In::Resource;
        } else if line.starts_with("ScopeSpans #") {
            at = In::Nothing;
        } else if line.starts_with("Span #") {
            d.spans.push(Span {
                trace_id: String::new(),
                span_id: String::new(),
                name: String::new(),
                kind: String::new(),
                start: 0,
                end: 0,
                attrs: Vec::new(),
            });
            at = In::Span;
        } else if let Some(kv) = line.trim_start().strip_prefix("-> ") {
            let (k, v) = kv.split_once(": ").expect("key: value");
            let entry = (k.to_string(), dump_value(v));
            match at {
                In::Resource => d.resources.last_mut().expect("resource").push(entry),
                In::Span => d.spans.last_mut().expect("span").attrs.push(entry),
                In::Nothing => {}
            }
        } else if let (In::Span, Some(s)) = (&at, d.spans.last_mut()) {
            if let Some(v) = field("Trace ID") {
                s.trace_id = v;
            } else if let Some(v) = field("ID") {
                s.span_id = v;
            } else if let Some(v) = field("Name") {
                s.name = v;
            } else if let Some(v) = field("Kind") {
                s.kind = v;
            } else if let Some(v) = field("Start time") {
                s.start = v.parse().expect("start time");
            } else if let Some(v) = field("End time") {
                s.end = v.parse().expect("end time");
            }
        }
    }
    d
}

fn json_value(v: &Json) -> V {
    if let Some(s) = v.get("stringValue") {
        V::Str(s.as_str().expect("string").into())
    } else if let Some(i) = v.get("intValue") {
        V::Int(i.as_str().expect("int64 string").parse().expect("int"))
    } else if let Some(a) = v.get("arrayValue") {
        V::StrArray(
            a["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x["stringValue"].as_str().expect("string").into())
                .collect(),
        )
    } else {
        panic!("unexpected JSON value {v}")
    }
}

fn json_attrs(v: &Json) -> Attrs {
    v.as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            (
                a["key"].as_str().expect("key").into(),
                json_value(&a["value"]),
            )
        })
        .collect()
}

/// The resources and spans of an OTLP JSON file.
fn json_dump(path: &Path) -> Dump {
    let mut d = Dump::default();
    for line in fs::read_to_string(path).expect("JSON output").lines() {
        let req: Json = serde_json::from_str(line).expect("a JSON request");
        let rs = &req["resourceSpans"][0];
        d.resources.push(json_attrs(&rs["resource"]["attributes"]));
        for s in rs["scopeSpans"][0]["spans"].as_array().expect("spans") {
            let kind = match s["kind"].as_i64().expect("integer kind") {
                1 => "SPAN_KIND_INTERNAL",
                2 => "SPAN_KIND_SERVER",
                3 => "SPAN_KIND_CLIENT",
                k => panic!("unexpected kind {k}"),
            };
            let n = |k: &str| s[k].as_str().expect("u64 string").parse().expect("u64");
            d.spans.push(Span {
                trace_id: s["traceId"].as_str().expect("traceId").into(),
                span_id: s["spanId"].as_str().expect("spanId").into(),
                name: s["name"].as_str().expect("name").into(),
                kind: kind.into(),
                start: n("startTimeUnixNano"),
                end: n("endTimeUnixNano"),
                attrs: json_attrs(&s["attributes"]),
            });
        }
    }
    d
}

fn fixtures() -> Vec<PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(root().join("testdata/pcap"))
        .expect("testdata/pcap")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    paths
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_engine(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running engine")
}

/// Every fixture through one protocol: the collector's spans must equal the
/// JSON output's, span for span, with the same resource.
fn every_fixture_arrives_intact(protocol: &str, compression: &str) {
    let dir = scratch(&protocol.replace('/', "-"));
    let (grpc, http) = (free_port(), free_port());
    let collector = Collector::start(grpc, http, &dir.join("rotel.log"));
    let endpoint = if protocol == "grpc" {
        format!("http://127.0.0.1:{grpc}")
    } else {
        format!("http://127.0.0.1:{http}")
    };
    let mut expected = Dump::default();
    for (n, pcap) in fixtures().iter().enumerate() {
        let json = dir.join(format!("{n}.json"));
        let out = run_engine(
            &[
                "--pcap",
                pcap.to_str().expect("path"),
                "-o",
                json.to_str().expect("path"),
                "--workers",
                "2",
                "--batch-size",
                "7",
                "--resource-attribute",
                &format!("test.protocol={protocol}"),
            ],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", compression),
            ],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", pcap.display());
        assert!(
            stderr.contains("undelivered=0") && stderr.contains("failed=0"),
            "{}: {stderr}",
            pcap.display()
        );
        let d = json_dump(&json);
        expected.resources.extend(d.resources);
        expected.spans.extend(d.spans);
    }
    assert!(expected.spans.len() > 50, "fixtures give spans");

    let mut got = collector.wait_for(expected.spans.len());
    assert_eq!(got.spans.len(), expected.spans.len(), "span count");
    // Same multiset of spans: order across requests is not part of OTLP.
    got.spans.sort();
    expected.spans.sort();
    for (g, e) in got.spans.iter().zip(&expected.spans) {
        assert_eq!(g, e);
    }
    // One resource per request on both sides, all identical, carrying the
    // user-supplied attribute and the detected host.
    let resource = &expected.resources[0];
    assert!(resource.contains(&("test.protocol".into(), V::Str(protocol.into()))));
    assert!(resource.contains(&("service.name".into(), V::Str("flowspan".into()))));
    assert!(resource.iter().any(|(k, _)| k == "host.name"));
    assert!(expected.resources.iter().all(|r| r == resource));
    assert!(!got.resources.is_empty());
    assert!(
        got.resources.iter().all(|r| r == resource),
        "{:?}",
        got.resources
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn grpc_export_equals_the_json_output() {
    every_fixture_arrives_intact("grpc", "gzip");
}

#[test]
fn http_protobuf_export_equals_the_json_output() {
    every_fixture_arrives_intact("http/protobuf", "gzip");
}

#[test]
fn http_json_export_equals_the_json_output() {
    every_fixture_arrives_intact("http/json", "none");
}

/// A nanosecond pcap of `frames` (Ethernet), each shifted by `shift_ns`.
fn pcap_bytes(frames: &[(u64, Vec<u8>)], shift_ns: u64, header: bool) -> Vec<u8> {
    let mut p = flowspan_testdata::Pcap::with(1, true, false);
    let mut bytes = p.take_bytes();
    if !header {
        bytes.clear();
    }
    for (ts, data) in frames {
        p.add(ts + shift_ns, data);
    }
    bytes.extend(p.take_bytes());
    bytes
}

fn ethernet_frames(fixture: &str) -> Vec<(u64, Vec<u8>)> {
    let mut r = capture_pcap::CaptureReader::open(root().join("testdata/pcap").join(fixture))
        .expect("fixture");
    let mut frames = Vec::new();
    while let Some(f) = r.next_frame().expect("fixture reads") {
        assert_eq!(f.link_type, 1, "Ethernet fixture");
        frames.push((f.ts_ns, f.data.to_vec()));
    }
    frames
}

/// The collector goes away after the first spans arrived and comes back on
/// the same port a while later: in pcap mode the engine waits (the queue is
/// small, so reading stops), retries, says so, and every span of its JSON
/// output reaches one of the two collector runs.
#[test]
fn collector_restart_mid_run_loses_no_span() {
    let dir = scratch("restart");
    let mut frames = ethernet_frames("tcp_lifecycle.pcap");
    frames.extend(ethernet_frames("icmp_pairs.pcap"));
    frames.extend(ethernet_frames("udp_sctp_portless.pcap"));
    frames.sort_by_key(|f| f.0);
    // Phases 10 000 s apart: the first packet of a phase ends every flow of
    // the one before (the longest idle timeout is 300 s).
    const PHASE: u64 = 10_000 * 1_000_000_000;
    const PHASES: u64 = 150;
    let mut pcap = pcap_bytes(&frames, 0, true);
    for phase in 1..PHASES {
        pcap.extend(pcap_bytes(&frames, phase * PHASE, false));
    }
    let input = dir.join("phases.pcap");
    fs::write(&input, pcap).expect("write input");

    let (grpc, http) = (free_port(), free_port());
    let mut first = Collector::start(grpc, http, &dir.join("rotel-1.log"));
    let json = dir.join("out.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", input.to_str().expect("path")])
        .args(["-o", json.to_str().expect("path")])
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{grpc}")])
        .args([
            "--batch-size",
            "5",
            "--queue-size",
            "10",
            "--shutdown-timeout",
            "60",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine");
    let stderr = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });

    let started = Instant::now();
    while first.dump().spans.len() < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "spans did not reach the first collector"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("engine status").is_none(),
        "the engine finished while the collector was away: the input is too small \
         for this test to show anything"
    );
    let second = Collector::start(grpc, http, &dir.join("rotel-2.log"));

    let status = child.wait().expect("engine exits");
    let stderr = stderr_reader.join().expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "the outage is reported: {stderr}"
    );
    assert!(
        stderr.contains("delivering again"),
        "the recovery is reported: {stderr}"
    );
    assert!(stderr.contains("undelivered=0"), "{stderr}");

    let mut expected = json_dump(&json).spans;
    let first_spans = first.dump().spans;
    let mut got = first_spans.clone();
    got.extend(second.wait_for(expected.len() - first_spans.len()).spans);
    assert!(
        got.len() > first_spans.len(),
        "the second collector received spans"
    );
    // A request whose answer was lost in the restart may arrive twice; none
    // may be missing, and nothing may arrive that was not in the output.
    expected.sort();
    got.sort();
    got.dedup();
    let mut unique = expected.clone();
    unique.dedup();
    assert_eq!(got.len(), unique.len(), "distinct spans received");
    assert_eq!(got, unique);
    assert!(expected.len() > 1000, "{} spans", expected.len());
    let _ = fs::remove_dir_all(&dir);
}

/// Nothing listens: the queue cannot drain, and at the deadline every span
/// is reported as not delivered, with exit status 3.
#[test]
fn undeliverable_spans_are_counted_and_fail_the_run() {
    let port = free_port();
    let out = run_engine(
        &[
            "--pcap",
            root()
                .join("testdata/pcap/icmp_pairs.pcap")
                .to_str()
                .expect("path"),
            "--otlp-endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--shutdown-timeout",
            "1",
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(out.stdout.is_empty(), "no JSON without -o when exporting");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(
        stderr.contains("11 of 11 spans were not delivered"),
        "{stderr}"
    );
    assert!(stderr.contains("delivered=0"), "{stderr}");
    assert!(stderr.contains("undelivered=11"), "{stderr}");
    // Issue 16: the summary's time included the wait for the collector
    // (the 1 s shutdown timeout here): reading and that wait are apart.
    let seconds = |after: &str| -> f64 {
        stderr
            .split(after)
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("seconds after {after:?} in {stderr}"))
    };
    let reading = seconds(" bytes) in ");
    let finishing = seconds(" s; then ");
    assert!(reading < 0.5, "reading took {reading} s: {stderr}");
    assert!(finishing >= 0.9, "the wait for the collector: {stderr}");
}

/// Bad settings fail before any packet is read, with one line naming the
/// flag or variable.
#[test]
fn bad_export_settings_fail_fast_naming_the_setting() {
    let pcap = root().join("testdata/pcap/icmp_pairs.pcap");
    let pcap = pcap.to_str().expect("path");
    let dir = scratch("badcfg");
    let junk = dir.join("junk.pem");
    fs::write(&junk, "not PEM").expect("write");
    let junk = junk.to_str().expect("path");
    /// Flags, environment, the setting the error must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--otlp-endpoint", "localhost:4317"],
            &[],
            "--otlp-endpoint",
        ),
        (&["--otlp-endpoint", "http://"], &[], "--otlp-endpoint"),
        (
            &[],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:21")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--otlp-protocol",
                "thrift",
            ],
            &[],
            "--otlp-protocol",
        ),
        (
            &["--otlp-endpoint", "http://127.0.0.1:4317"],
            &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/xml")],
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        (
            &[
                "--otlp-endpoint",
                "https://127.0.0.1:4317",
                "--otlp-ca",
                "/nonexistent/ca.pem",
            ],
            &[],
            "--otlp-ca",
        ),
        (
            &[
                "--otlp-endpoint",
                "https://127.0.0.1:4317",
                "--otlp-ca",
                junk,
            ],
            &[],
            "--otlp-ca",
        ),
        (
            &["--otlp-endpoint", "https://127.0.0.1:4317"],
            &[(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "/nonexistent/c.pem",
            )],
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        (
            &["--otlp-endpoint", "http://127.0.0.1:4317"],
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "ten")],
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--otlp-header",
                "novalue",
            ],
            &[],
            "--otlp-header",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--otlp-compression",
                "zstd",
            ],
            &[],
            "--otlp-compression",
        ),
        (
            &[],
            &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
            "OTEL_RESOURCE_ATTRIBUTES",
        ),
        (
            &["--resource-attribute", "novalue"],
            &[],
            "--resource-attribute",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--otlp-timeout",
                "0",
            ],
            &[],
            "--otlp-timeout",
        ),
    ];
    for (args, env, setting) in cases {
        let mut all = vec!["--pcap", pcap];
        all.extend_from_slice(args);
        let started = Instant::now();
        let out = run_engine(&all, env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        // One error line (clap adds a "try --help" hint after its own).
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(errors[0].contains(setting), "{setting} named: {stderr}");
        assert!(out.stdout.is_empty(), "nothing written: {args:?} {env:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "fast: {args:?}");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Issue 16: `https://` to a collector that serves plain HTTP was retried
/// as a temporary failure until the shutdown deadline. It fails at start,
/// one line with a hint, for both of the collector's receivers.
#[test]
fn regression_16_https_to_a_plain_http_collector_fails_fast_with_a_hint() {
    let dir = scratch("plain");
    let (grpc, http) = (free_port(), free_port());
    let mut collector = Collector::start(grpc, http, &dir.join("rotel.log"));
    let pcap = root().join("testdata/pcap/icmp_pairs.pcap");
    for (port, protocol, plain) in [
        (grpc, "grpc", "HTTP/2"),
        (http, "http/protobuf", "HTTP/1.1"),
    ] {
        let endpoint = format!("https://127.0.0.1:{port}");
        let started = Instant::now();
        let out = run_engine(
            &[
                "--pcap",
                pcap.to_str().expect("path"),
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
            ],
            &[],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{protocol}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("engine: error: --otlp-endpoint {endpoint}/")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                ": the receiver answered a TLS hello in plain {plain}: it has no TLS \
                 (use http:// instead of https://, or give it TLS)"
            )),
            "{stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    collector.stop();
    let _ = fs::remove_dir_all(&dir);
}

/// A host that cannot be reached is a configuration error, not a collector
/// that is down. Run in a fresh network namespace whose only interface (lo)
/// is down, so that no packet can leave this machine: every address is
/// unreachable and no name resolves.
#[test]
fn unreachable_host_fails_fast() {
    let probe = Command::new("unshare").args(["--net", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        return skip("unshare --net is not permitted here (needs root)");
    }
    let pcap = root().join("testdata/pcap/icmp_pairs.pcap");
    for endpoint in ["http://192.0.2.1:4317", "http://collector.invalid:4318"] {
        let started = Instant::now();
        let out = Command::new("unshare")
            .args(["--net", env!("CARGO_BIN_EXE_engine"), "--pcap"])
            .arg(&pcap)
            .args(["--otlp-endpoint", endpoint])
            .output()
            .expect("unshare engine");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{endpoint}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("--otlp-endpoint") && stderr.contains(endpoint),
            "{stderr}"
        );
        assert!(
            stderr.contains("unreachable") || stderr.contains("cannot resolve"),
            "{stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// Test PKI: a CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, all signed by the CA, written as PEM files in `dir`.
struct Pki {
    ca: rcgen::Certificate,
    server: (rcgen::Certificate, rcgen::KeyPair),
    ca_pem: PathBuf,
    client_pem: PathBuf,
    client_key_pem: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("flowspan test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");

    let server_key = KeyPair::generate().expect("server key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    server_params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "flowspan engine");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client cert");

    let ca_pem = dir.join(format!("{name}-ca.pem"));
    let client_pem = dir.join(format!("{name}-client.pem"));
    let client_key_pem = dir.join(format!("{name}-client-key.pem"));
    fs::write(&ca_pem, ca.pem()).expect("write");
    fs::write(&client_pem, client.pem()).expect("write");
    fs::write(&client_key_pem, client_key.serialize_pem()).expect("write");
    Pki {
        ca,
        server: (server, server_key),
        ca_pem,
        client_pem,
        client_key_pem,
    }
}

/// A TLS terminator in front of the collector (rotel has no TLS receiver):
/// it requires a client certificate signed by the test CA, and forwards the
/// decrypted bytes to rotel's gRPC port when ALPN chose h2, else to its HTTP
/// port.
struct TlsFront {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

fn tls_front(pki: &Pki, grpc: u16, http: u16) -> TlsFront {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).expect("CA root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let (server, key) = &pki.server;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake (no or untrusted client certificate)
                // just closes the connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let target = if h2 { grpc } else { http };
                if let Ok(mut upstream) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    TlsFront {
        port,
        _runtime: runtime,
    }
}

/// Mutual TLS with a custom CA, for gRPC and HTTP: spans arrive. The same
/// endpoint without the client certificate, or trusting another CA, delivers
/// nothing and says so (exit 3).
#[test]
fn mutual_tls_with_a_custom_ca() {
    let dir = scratch("tls");
    let pki = make_pki(&dir, "good");
    let other = make_pki(&dir, "other");
    let (grpc, http) = (free_port(), free_port());
    let collector = Collector::start(grpc, http, &dir.join("rotel.log"));
    let front = tls_front(&pki, grpc, http);
    let pcap = root().join("testdata/pcap/icmp_pairs.pcap");
    let pcap = pcap.to_str().expect("path");
    let ca = pki.ca_pem.to_str().expect("path");
    let cert = pki.client_pem.to_str().expect("path");
    let key = pki.client_key_pem.to_str().expect("path");

    let mut delivered = 0;
    for (protocol, host) in [("grpc", "localhost"), ("http/protobuf", "127.0.0.1")] {
        let endpoint = format!("https://{host}:{}", front.port);
        // CA by flag, client identity by the standard variables.
        let out = run_engine(
            &[
                "--pcap",
                pcap,
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
                "--otlp-ca",
                ca,
            ],
            &[
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key),
            ],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{protocol}: {stderr}");
        assert!(stderr.contains("delivered=11 "), "{protocol}: {stderr}");
        delivered += 11;
        assert_eq!(collector.wait_for(delivered).spans.len(), delivered);
    }

    let endpoint = format!("https://localhost:{}", front.port);
    // Without a client certificate the failure shows as an alert or as a
    // closed connection, depending on timing (TLS 1.3 checks it after the
    // client's handshake completes), so no reason is asserted.
    let refused: [(&str, &str, Vec<&str>); 2] = [
        ("no client certificate", "", vec!["--otlp-ca", ca]),
        (
            "an untrusted server",
            "UnknownIssuer",
            vec![
                "--otlp-ca",
                other.ca_pem.to_str().expect("path"),
                "--otlp-client-cert",
                cert,
                "--otlp-client-key",
                key,
            ],
        ),
    ];
    for (what, reason, extra) in refused {
        for protocol in ["grpc", "http/protobuf"] {
            let mut args = vec![
                "--pcap",
                pcap,
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
                "--shutdown-timeout",
                "1",
            ];
            args.extend(&extra);
            let out = run_engine(&args, &[]);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{what}, {protocol}: {stderr}");
            assert!(
                stderr.contains("11 of 11 spans were not delivered"),
                "{what}, {protocol}: {stderr}"
            );
            assert!(stderr.contains(reason), "{what}, {protocol}: {stderr}");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        collector.dump().spans.len(),
        delivered,
        "nothing more arrived"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// `tcpdump -w - | engine --pcap - --otlp-endpoint …`: records that are due
/// go out while the pipe stays open and quiet, not when more packets come.
#[test]
fn spans_from_a_quiet_pipe_are_exported_without_waiting_for_more_input() {
    use std::io::Write;
    let dir = scratch("pipe");
    let frames = ethernet_frames("tcp_lifecycle.pcap");
    let phase = 10_000 * 1_000_000_000;
    let (grpc, http) = (free_port(), free_port());
    let collector = Collector::start(grpc, http, &dir.join("rotel.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", "-", "--batch-interval", "0.2", "--workers", "2"])
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{grpc}")])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("engine");
    let mut stdin = child.stdin.take().expect("stdin");
    // Every flow of the fixture, then one packet much later that ends them
    // all; then nothing, with the pipe open.
    stdin
        .write_all(&pcap_bytes(&frames, 0, true))
        .expect("write");
    stdin
        .write_all(&pcap_bytes(&frames[..1], phase, false))
        .expect("write");
    stdin.flush().expect("flush");
    let expected = {
        let out = common::engine(&[
            "--pcap",
            root()
                .join("testdata/pcap/tcp_lifecycle.pcap")
                .to_str()
                .expect("path"),
        ]);
        common::spans(&out.stdout).len()
    };
    let started = Instant::now();
    while collector.dump().spans.len() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "only {} of {expected} spans arrived while the pipe was open",
            collector.dump().spans.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    assert_eq!(child.wait().expect("engine").code(), Some(0));
    // The late packet's own flow is flushed at the end.
    assert_eq!(collector.wait_for(expected + 1).spans.len(), expected + 1);
    let _ = fs::remove_dir_all(&dir);
}

/// Starts `engine --pcap -` exporting to `endpoint`, feeds it `input` and
/// keeps the pipe open; returns the child and its stdin.
fn engine_on_open_pipe(
    endpoint: &str,
    input: &[u8],
    extra: &[&str],
) -> (Child, std::process::ChildStdin) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", "-", "--otlp-endpoint", endpoint])
        .args(extra)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write");
    stdin.flush().expect("flush");
    (child, stdin)
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Waits for the child to exit, at most `limit`; returns its status, stderr
/// and how long it took.
fn wait_with_limit(mut child: Child, limit: Duration) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("status") {
            let mut stderr = String::new();
            let _ =
                std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr);
            return (status.code(), stderr, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("engine still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGINT (and SIGTERM) while a quiet pipe is open: reading stops, every
/// open flow is flushed as forced_end and delivered, exit 130.
#[test]
fn a_signal_flushes_open_flows_and_delivers_them() {
    let dir = scratch("signal");
    let fixture = root().join("testdata/pcap/tcp_lifecycle.pcap");
    let input = fs::read(&fixture).expect("fixture");
    let expected =
        common::spans(&common::engine(&["--pcap", fixture.to_str().expect("path")]).stdout);
    let (grpc, http) = (free_port(), free_port());
    for (n, sig) in ["INT", "TERM"].iter().enumerate() {
        let collector = Collector::start(grpc, http, &dir.join(format!("rotel-{n}.log")));
        let (child, stdin) = engine_on_open_pipe(&format!("http://127.0.0.1:{grpc}"), &input, &[]);
        std::thread::sleep(Duration::from_millis(500));
        signal(&child, sig);
        let (code, stderr, took) = wait_with_limit(child, Duration::from_secs(10));
        drop(stdin);
        assert_eq!(code, Some(130), "SIG{sig}: {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert!(!stderr.contains("error"), "no damage reported: {stderr}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let got = collector.wait_for(expected.len()).spans;
        assert_eq!(got.len(), expected.len(), "SIG{sig}: {stderr}");
        // A signal ends the run like the end of the capture: the same spans
        // (flows still open are ended as forced_end either way).
        let mut got: Vec<(String, V)> = got
            .iter()
            .map(|s| {
                let reason = s.attrs.iter().find(|(k, _)| k == "flow.end_reason");
                (s.span_id.clone(), reason.expect("end reason").1.clone())
            })
            .collect();
        let mut want: Vec<(String, V)> = expected
            .iter()
            .map(|e| {
                (
                    e["spanId"].as_str().expect("id").to_string(),
                    V::Str(common::s(e, "flow.end_reason")),
                )
            })
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "SIG{sig}");
        assert!(want.iter().any(|(_, r)| *r == V::Str("forced_end".into())));
    }
    let _ = fs::remove_dir_all(&dir);
}

/// A signal while the collector is down: the flush is bounded by
/// --shutdown-timeout, and what could not be delivered is counted (exit 3).
#[test]
fn a_signal_with_the_collector_down_is_bounded_and_counted() {
    let fixture = root().join("testdata/pcap/tcp_lifecycle.pcap");
    let input = fs::read(&fixture).expect("fixture");
    let expected =
        common::spans(&common::engine(&["--pcap", fixture.to_str().expect("path")]).stdout);
    let port = free_port();
    let (child, stdin) = engine_on_open_pipe(
        &format!("http://127.0.0.1:{port}"),
        &input,
        &["--shutdown-timeout", "1.5"],
    );
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "TERM");
    let (code, stderr, took) = wait_with_limit(child, Duration::from_secs(10));
    drop(stdin);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        took >= Duration::from_millis(1400),
        "waited for the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "but not longer: {took:?}");
    let n = expected.len();
    assert!(
        stderr.contains(&format!("{n} of {n} spans were not delivered")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("undelivered={n}")), "{stderr}");
}

/// One metric data point, as both rotel's dump and the JSON output show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    metric: String,
    unit: String,
    temporality: String,
    attrs: Vec<(String, String)>,
    start: u64,
    time: u64,
    /// A sum's value, or a histogram's count, sum, min, max, bounds and
    /// buckets (doubles printed the same way on both sides).
    value: String,
}

fn double(s: &str) -> String {
    format!("{}", s.trim().parse::<f64>().expect("a double"))
}

/// The data points in rotel's detailed dump of metrics.
fn parse_metric_dump(text: &str) -> Vec<Point> {
    #[derive(PartialEq)]
    enum In {
        Nothing,
        Descriptor,
        Attributes,
    }
    let mut points: Vec<Point> = Vec::new();
    let mut metric = Point::default();
    let mut at = In::Nothing;
    // Histogram parts, gathered until the point ends.
    let (mut bounds, mut buckets, mut hist) = (Vec::new(), Vec::new(), Vec::new());
    let finish = |points: &mut Vec<Point>,
                  hist: &mut Vec<String>,
                  bounds: &mut Vec<String>,
                  buckets: &mut Vec<String>| {
        if let Some(p) = points.last_mut()
            && !hist.is_empty()
        {
            p.value = format!("{} bounds={bounds:?} buckets={buckets:?}", hist.join(" "));
        }
        hist.clear();
        bounds.clear();
        buckets.clear();
    };
    for line in strip_ansi(text).lines() {
        let t = line.trim_start();
        if t.starts_with("Metric #") || t.starts_with("ResourceMetrics #") {
            finish(&mut points, &mut hist, &mut bounds, &mut buckets);
            metric = Point::default();
            at = In::Nothing;
        } else if t == "Descriptor:" {
            at = In::Descriptor;
        } else if t.starts_with("NumberDataPoints #") || t.starts_with("HistogramDataPoints #") {
            finish(&mut points, &mut hist, &mut bounds, &mut buckets);
            points.push(metric.clone());
            at = In::Nothing;
        } else if t == "Data point attributes:" {
            at = In::Attributes;
        } else if let Some(kv) = t.strip_prefix("-> ") {
            let (k, v) = kv.split_once(": ").expect("key: value");
            match at {
                In::Descriptor => match k {
                    "Name" => metric.name_into(v),
                    "Unit" => metric.unit = v.into(),
                    "AggregationTemporality" => metric.temporality = v.into(),
                    _ => {}
                },
                In::Attributes => {
                    let p = points.last_mut().expect("a point");
                    p.attrs.push((k.into(), v.into()));
                }
                In::Nothing => {}
            }
        } else if let Some(p) = points.last_mut() {
            at = In::Nothing;
            if let Some(v) = t.strip_prefix("StartTimestamp: ") {
                p.start = v.parse().expect("start");
            } else if let Some(v) = t.strip_prefix("Timestamp: ") {
                p.time = v.parse().expect("time");
            } else if let Some(v) = t.strip_prefix("Value: ") {
                p.value = v.into();
            } else if let Some(v) = t.strip_prefix("Count: ") {
                hist.push(format!("count={v}"));
            } else if let Some(v) = t.strip_prefix("Sum: ") {
                hist.push(format!("sum={}", double(v)));
            } else if let Some(v) = t.strip_prefix("Min: ") {
                hist.push(format!("min={}", double(v)));
            } else if let Some(v) = t.strip_prefix("Max: ") {
                hist.push(format!("max={}", double(v)));
            } else if t.starts_with("ExplicitBounds #") {
                bounds.push(double(t.split_once(": ").expect("bound").1));
            } else if t.starts_with("Buckets #") {
                buckets.push(t.split_once("Count: ").expect("bucket").1.to_owned());
            }
        }
    }
    finish(&mut points, &mut hist, &mut bounds, &mut buckets);
    points
}

impl Point {
    fn name_into(&mut self, name: &str) {
        self.metric = name.into();
    }
}

/// The data points of the metric lines of an OTLP JSON file, rendered as
/// rotel renders them.
fn json_metric_points(path: &Path) -> Vec<Point> {
    let mut points = Vec::new();
    for line in fs::read_to_string(path).expect("JSON output").lines() {
        let req: Json = serde_json::from_str(line).expect("a JSON request");
        let Some(rm) = req.get("resourceMetrics") else {
            continue;
        };
        for m in rm[0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .expect("metrics")
        {
            let (data, histogram) = match m.get("sum") {
                Some(sum) => (sum, false),
                None => (&m["histogram"], true),
            };
            let temporality = match data["aggregationTemporality"].as_i64() {
                Some(1) => "AGGREGATION_TEMPORALITY_DELTA",
                Some(2) => "AGGREGATION_TEMPORALITY_CUMULATIVE",
                t => panic!("temporality {t:?}"),
            };
            for p in data["dataPoints"].as_array().expect("points") {
                let n = |k: &str| p[k].as_str().expect("u64 string").parse().expect("u64");
                let attrs = p["attributes"]
                    .as_array()
                    .expect("attributes")
                    .iter()
                    .map(|a| {
                        let v = &a["value"];
                        let shown = if let Some(s) = v.get("stringValue") {
                            format!("Str({})", s.as_str().expect("string"))
                        } else if let Some(i) = v.get("intValue") {
                            format!("Int({})", i.as_str().expect("int64 string"))
                        } else if let Some(b) = v.get("boolValue") {
                            format!("Bool({b})")
                        } else {
                            panic!("unexpected value {v}")
                        };
                        (a["key"].as_str().expect("key").to_owned(), shown)
                    })
                    .collect();
                let value = if histogram {
                    let f = |k: &str| format!("{}", p[k].as_f64().expect("a double"));
                    let list = |k: &str, f: &dyn Fn(&Json) -> String| -> Vec<String> {
                        p[k].as_array().expect("a list").iter().map(f).collect()
                    };
                    format!(
                        "count={} sum={} min={} max={} bounds={:?} buckets={:?}",
                        p["count"].as_u64().expect("count"),
                        f("sum"),
                        f("min"),
                        f("max"),
                        list("explicitBounds", &|b| format!(
                            "{}",
                            b.as_f64().expect("bound")
                        )),
                        list("bucketCounts", &|c| c.as_u64().expect("count").to_string()),
                    )
                } else {
                    p["asInt"].as_i64().expect("asInt").to_string()
                };
                points.push(Point {
                    metric: m["name"].as_str().expect("name").into(),
                    unit: m["unit"].as_str().expect("unit").into(),
                    temporality: temporality.into(),
                    attrs,
                    start: n("startTimeUnixNano"),
                    time: n("timeUnixNano"),
                    value,
                });
            }
        }
    }
    points
}

/// Flow metrics (issue 22) through one protocol: every data point rotel
/// reports equals one of the JSON output's of the same run, and none is
/// missing or extra. With `by_variables`, the metrics' endpoint and
/// protocol come from `OTEL_EXPORTER_OTLP_METRICS_*`, which win over the
/// generic variables that send the spans elsewhere (over gRPC).
fn flow_metrics_arrive_intact(
    protocol: &str,
    temporality: &str,
    extra: &[&str],
    by_variables: bool,
) {
    let dir = scratch(&format!("metrics-{}", protocol.replace('/', "-")));
    let (grpc, http) = (free_port(), free_port());
    let collector = Collector::start_dumping(grpc, http, &dir.join("rotel.log"), "metrics");
    let endpoint = if protocol == "grpc" {
        format!("http://127.0.0.1:{grpc}")
    } else {
        format!("http://127.0.0.1:{http}")
    };
    let grpc_endpoint = format!("http://127.0.0.1:{grpc}");
    let metrics_url = format!("{endpoint}/v1/metrics");
    let mut captures = vec![
        root().join("testdata/pcap/latency.pcap"),
        root().join("testdata/pcap/tunnels.pcap"),
    ];
    captures.extend(common::shared_data().map(|d| d.join("zeek/cisco-fabric-path.pcap")));
    let mut expected = Vec::new();
    for (n, pcap) in captures.iter().enumerate() {
        let json = dir.join(format!("{n}.json"));
        let mut args = vec![
            "--pcap",
            pcap.to_str().expect("path"),
            "-o",
            json.to_str().expect("path"),
            "--metrics",
            "--metrics-interval",
            "1",
        ];
        let mut env = vec![(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            temporality,
        )];
        if by_variables {
            env.extend([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics_url.as_str()),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", protocol),
            ]);
        } else {
            args.extend(["--otlp-endpoint", &endpoint, "--otlp-protocol", protocol]);
        }
        args.extend(extra);
        let out = run_engine(&args, &env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", pcap.display());
        let exported = stderr
            .lines()
            .find(|l| l.contains("metric data points delivered="))
            .unwrap_or_else(|| panic!("a line for the metrics export: {stderr}"));
        assert!(
            exported.contains("undelivered=0") && exported.contains("failed=0"),
            "{exported}"
        );
        assert!(exported.contains(&format!("({protocol}")), "{exported}");
        if by_variables {
            // The spans went to the generic endpoint, over gRPC.
            assert!(
                stderr.contains(&format!(
                    "otlp export to {grpc_endpoint}/ (grpc): delivered="
                )),
                "{stderr}"
            );
        }
        expected.extend(json_metric_points(&json));
    }
    assert!(expected.len() > 50, "{} points", expected.len());
    let started = Instant::now();
    let mut got = parse_metric_dump(&fs::read_to_string(&collector.log).expect("log"));
    while got.len() < expected.len() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        got = parse_metric_dump(&fs::read_to_string(&collector.log).expect("log"));
    }
    std::thread::sleep(Duration::from_millis(500));
    got = parse_metric_dump(&fs::read_to_string(&collector.log).expect("log"));
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "data point count");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    assert!(
        expected.iter().any(|p| p.value.starts_with("count=")),
        "histograms"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn flow_metrics_over_grpc_equal_the_json_output() {
    flow_metrics_arrive_intact("grpc", "delta", &[], false);
}

#[test]
fn flow_metrics_over_http_protobuf_equal_the_json_output() {
    flow_metrics_arrive_intact("http/protobuf", "cumulative", &[], false);
}

/// With chosen dimensions (an integer among them) and the overflow series;
/// the endpoint and protocol from the metrics' own variables.
#[test]
fn flow_metrics_over_http_json_equal_the_json_output() {
    flow_metrics_arrive_intact(
        "http/json",
        "delta",
        &[
            "--metrics-dimension",
            "source.address",
            "--metrics-dimension",
            "destination.port",
            "--metrics-cardinality-limit",
            "4",
        ],
        true,
    );
}
