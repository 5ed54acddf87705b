//! `--metrics-address` (issue 19): a real Prometheus (Debian's
//! `prometheus` package) scrapes the engine during a live capture on a veth
//! pair and answers a PromQL query with the number of packets sent; the
//! health endpoints answer while capturing, while the collector (a real
//! rotel) is down and after it comes up, and after an interface goes away;
//! the endpoints serve pcap mode while it reads. The live parts need root,
//! `ip` and `ethtool`; everything skips with a message otherwise, and fails
//! instead in CI or as root.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capture_afpacket::PacketSender;
use capture_afpacket::testnet::{Setup, VethPair, enter_namespace, ip, udp_frame};
use common::live::{interrupt, start_in};
use common::{root, rotel, skip, spans};

/// The engine's metrics port inside a test namespace (each test has its
/// own namespace, so fixed ports do not collide).
const METRICS_PORT: u16 = 9615;

fn scratch(name: &str) -> PathBuf {
    common::scratch("metrics", name)
}

/// `GET path` from 127.0.0.1:`port` in network namespace `ns` (the
/// caller's own with `None`): the status code and body, or `None` if
/// nothing answers.
fn get(ns: Option<&str>, port: u16, path: &str) -> Option<(u16, String)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(ns) = ns {
                enter_namespace(ns);
            }
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .ok()?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            let (head, body) = answer.split_once("\r\n\r\n")?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            Some((status, body.to_owned()))
        })
        .join()
        .expect("request thread")
    })
}

/// Polls `GET path` until `ok` holds for the answer (up to `within`);
/// the last answer.
fn wait_for(
    ns: Option<&str>,
    port: u16,
    path: &str,
    within: Duration,
    ok: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let started = Instant::now();
    loop {
        let answer = get(ns, port, path);
        if let Some((status, body)) = &answer
            && (ok(*status, body) || started.elapsed() > within)
        {
            return (*status, body.clone());
        }
        assert!(
            started.elapsed() < within + Duration::from_secs(5),
            "nothing answered {path} on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample `series` (name and labels as the exposition
/// writes them) in a `/metrics` body.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

/// Sends `n` frames of UDP flow `flow` (requests and replies in turn)
/// into `ns.a`; each arrives on `ns.b`.
fn send(ns: &VethPair, flow: u16, n: usize) {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_left();
            let sender = PacketSender::open(&ns.a).expect("sender");
            for k in 0..n {
                sender
                    .send(&udp_frame(flow, k % 2 == 1, None))
                    .expect("sending");
            }
        });
    });
}

/// A Prometheus server in a network namespace, stopped on drop.
struct Prometheus {
    child: Child,
    ns: String,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus in `ns` on 127.0.0.1:`port`, scraping
    /// 127.0.0.1:[`METRICS_PORT`] every second as job `flowspan`; `None`
    /// (after [`skip`]) where the package is missing.
    fn start(ns: &str, port: u16, dir: &Path) -> Option<Prometheus> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            skip("prometheus is missing (apt-get install --no-install-recommends prometheus)");
            return None;
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: flowspan\n    static_configs:\n\
                 \x20     - targets: ['127.0.0.1:{METRICS_PORT}']\n"
            ),
        )
        .expect("prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let p = Prometheus {
            child,
            ns: ns.to_owned(),
            port,
        };
        wait_for(
            Some(ns),
            port,
            "/-/ready",
            Duration::from_secs(30),
            |s, _| s == 200,
        );
        Some(p)
    }

    /// The value of an instant PromQL query whose answer is one sample.
    fn query(&self, promql: &str) -> Option<f64> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let (status, body) = get(
            Some(&self.ns),
            self.port,
            &format!("/api/v1/query?query={encoded}"),
        )?;
        assert_eq!(status, 200, "{promql}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["status"], "success", "{body}");
        let result = answer["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql}: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // `ip netns exec` execs Prometheus: the child's pid is its own.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_packets_of_a_live_capture() {
    let Some(ns) = VethPair::for_test("pm", Setup::default()) else {
        return;
    };
    let dir = scratch("prometheus");
    let Some(prometheus) = Prometheus::start(&ns.right, 9090, &dir) else {
        return;
    };
    let out = dir.join("out.json");
    let address = format!("127.0.0.1:{METRICS_PORT}");
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "--metrics-address",
            &address,
            "-o",
            out.to_str().expect("path"),
        ],
    );
    const SENT: usize = 1000;
    send(&ns, 7, SENT);
    let packets = format!(
        "flowspan_packets_total{{job=\"flowspan\",input=\"{}\"}}",
        ns.b
    );
    let started = Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(30) {
        seen = prometheus.query(&packets);
        if seen == Some(SENT as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let up = prometheus.query("up{job=\"flowspan\"}");
    let drops = prometheus.query(&format!(
        "flowspan_kernel_drops_total{{interface=\"{}\"}}",
        ns.b
    ));
    let ready = prometheus.query("flowspan_ready");
    let (status, stderr) = interrupt(child, reader);
    drop(prometheus);
    assert_eq!(
        seen,
        Some(SENT as f64),
        "PromQL {packets}; engine: {stderr}"
    );
    assert_eq!(up, Some(1.0));
    assert_eq!(drops, Some(0.0));
    assert_eq!(ready, Some(1.0));
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The spans hold the same packets as the metric.
    let spanned: i64 = spans(&std::fs::read(&out).expect("output"))
        .iter()
        .map(|s| common::i(s, "flow.packets.delta") + common::i(s, "flow.reverse.packets.delta"))
        .sum();
    assert_eq!(spanned, SENT as i64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// rotel in namespace `ns`, listening for OTLP/HTTP on 127.0.0.1:4318;
/// stopped on drop.
struct Rotel(Child);

impl Rotel {
    fn start(ns: &str, log: &Path) -> Rotel {
        let log = std::fs::File::create(log).expect("rotel log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(rotel())
            .args([
                "start",
                "--otlp-grpc-endpoint",
                "127.0.0.1:4317",
                "--otlp-http-endpoint",
                "127.0.0.1:4318",
                "--exporter",
                "blackhole",
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting rotel-agent");
        Rotel(child)
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn health_follows_the_collector_and_the_interfaces() {
    let Some(ns) = VethPair::for_test("ph", Setup::default()) else {
        return;
    };
    let dir = scratch("health");
    // A second interface in the engine's namespace, to take away.
    let id = std::process::id();
    let (x, y) = (format!("fsx{id}"), format!("fsy{id}"));
    assert!(ip(&[
        "-n", &ns.right, "link", "add", &x, "type", "veth", "peer", "name", &y
    ]));
    for dev in [&x, &y] {
        assert!(ip(&["-n", &ns.right, "link", "set", dev, "up"]));
    }
    let address = format!("127.0.0.1:{METRICS_PORT}");
    // Nothing listens on 4318 yet: the collector is down.
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "-i",
            &x,
            "--metrics-address",
            &address,
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-protocol",
            "http/protobuf",
            "--idle-timeout",
            "0.3",
            "--batch-interval",
            "0.1",
        ],
    );
    let right = Some(ns.right.as_str());
    let at = |path| get(right, METRICS_PORT, path).expect("an answer");
    assert_eq!(at("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(at("/readyz"), (200, "ready\n".to_owned()));

    // A flow ends, its span cannot be delivered: not ready.
    send(&ns, 1, 4);
    let (status, body) = wait_for(
        right,
        METRICS_PORT,
        "/readyz",
        Duration::from_secs(20),
        |s, _| s == 503,
    );
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "not ready: OTLP export to http://127.0.0.1:4318/v1/traces (http/protobuf) is failing\n"
        )
    );
    assert_eq!(at("/healthz").0, 200, "alive all the same");
    let metrics = at("/metrics").1;
    let endpoint = "{endpoint=\"http://127.0.0.1:4318/v1/traces (http/protobuf)\"}";
    assert_eq!(
        sample(&metrics, &format!("flowspan_export_failing{endpoint}")),
        Some(1.0),
        "{metrics}"
    );

    // The collector comes up: the retried span is delivered, ready again.
    let _rotel = Rotel::start(&ns.right, &dir.join("rotel.log"));
    let (status, body) = wait_for(
        right,
        METRICS_PORT,
        "/readyz",
        Duration::from_secs(30),
        |s, _| s == 200,
    );
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let metrics = at("/metrics").1;
    assert_eq!(
        sample(
            &metrics,
            &format!("flowspan_spans_exported_total{endpoint}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("flowspan_export_failing{endpoint}")),
        Some(0.0)
    );
    let requests = sample(
        &metrics,
        &format!("flowspan_export_request_duration_seconds_count{endpoint}"),
    )
    .expect("a request count");
    assert!(requests >= 2.0, "one failed, one delivered: {requests}");

    // An interface goes away: still alive and capturing on the other, but
    // not ready.
    assert!(ip(&["-n", &ns.right, "link", "del", &x]));
    let (status, body) = wait_for(
        right,
        METRICS_PORT,
        "/readyz",
        Duration::from_secs(10),
        |s, _| s == 503,
    );
    assert_eq!(
        (status, body),
        (503, format!("not ready: interface {x} went away\n"))
    );
    assert_eq!(at("/healthz").0, 200);
    let metrics = at("/metrics").1;
    assert_eq!(
        sample(
            &metrics,
            &format!("flowspan_interface_up{{interface=\"{x}\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("flowspan_interface_up{{interface=\"{}\"}}", ns.b)
        ),
        Some(1.0)
    );
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `engine --pcap - --metrics-address 127.0.0.1:0 -o /dev/null ARGS` fed
/// `capture` on standard input, which stays open so that the run goes on:
/// the child, its standard input and error (keep the latter open: the
/// engine's last lines go there), and the port it serves on (from its first
/// line).
fn serve_a_piped_capture(
    capture: &[u8],
    args: &[&str],
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::process::ChildStderr,
    u16,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "--pcap",
            "-",
            "--metrics-address",
            "127.0.0.1:0",
            "-o",
            "/dev/null",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine");
    // The port the kernel chose, from the first line.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut first = Vec::new();
    let mut byte = [0u8];
    while stderr.read(&mut byte).expect("stderr") == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).expect("text");
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(capture).expect("feeding the capture");
    stdin.flush().expect("flush");
    (child, stdin, stderr, port)
}

#[test]
fn pcap_mode_serves_its_counters_while_it_reads() {
    let fixture = root().join("testdata/pcap/tcp_lifecycle.pcap");
    let bytes = std::fs::read(&fixture).expect("fixture");
    let frames = {
        let mut r = capture_pcap::CaptureReader::open(&fixture).expect("fixture");
        let mut n = 0u64;
        while r.next_frame().expect("reads").is_some() {
            n += 1;
        }
        n
    };
    let (mut child, stdin, _stderr, port) = serve_a_piped_capture(&bytes, &[]);
    // The input stays open: the run goes on, and the endpoints serve it.
    let series = "flowspan_packets_total{input=\"-\",kind=\"file\"}";
    let (_, metrics) = wait_for(None, port, "/metrics", Duration::from_secs(10), |_, b| {
        sample(b, series) == Some(frames as f64)
    });
    assert_eq!(sample(&metrics, series), Some(frames as f64), "{metrics}");
    assert_eq!(get(None, port, "/readyz").expect("answer").0, 200);
    assert_eq!(get(None, port, "/nothing").expect("answer").0, 404);
    drop(stdin);
    let status = child.wait().expect("engine ends");
    assert_eq!(status.code(), Some(0));
}

/// Flow metrics (`--metrics`, issue 22) have their own counters: the data
/// points made and the records folded into the overflow series, while the
/// run goes on.
#[test]
fn flow_metrics_count_their_points_and_overflow_while_the_run_goes_on() {
    let fixture = root().join("testdata/pcap/tcp_lifecycle.pcap");
    let bytes = std::fs::read(&fixture).expect("fixture");
    let (mut child, stdin, _stderr, port) = serve_a_piped_capture(
        &bytes,
        &[
            "--metrics",
            "--metrics-interval",
            "0.001",
            "--metrics-dimension",
            "source.port",
            "--metrics-cardinality-limit",
            "2",
        ],
    );
    // Two flows end (FIN, then the linger) before the last packet: the
    // first record is in a collection of 1 ms, which the second (in the
    // overflow series) ends: six points (bytes and packets both ways,
    // records, the handshake).
    let points = "flowspan_metric_points_written_total{output=\"/dev/null\"}";
    let overflow = "flowspan_metric_overflow_records_total{output=\"/dev/null\"}";
    let spans = "flowspan_spans_written_total{output=\"/dev/null\"}";
    let (_, metrics) = wait_for(None, port, "/metrics", Duration::from_secs(10), |_, b| {
        sample(b, overflow) == Some(1.0) && sample(b, spans) == Some(2.0)
    });
    assert_eq!(sample(&metrics, overflow), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, points), Some(6.0), "{metrics}");
    assert!(
        !metrics.contains("flowspan_metric_points_exported_total"),
        "no exporter, no export counters: {metrics}"
    );
    // Spans are counted apart from data points.
    assert_eq!(sample(&metrics, spans), Some(2.0), "{metrics}");
    drop(stdin);
    let status = child.wait().expect("engine ends");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_bad_or_busy_metrics_address_is_one_line_naming_the_flag() {
    let fixture = root().join("testdata/pcap/tcp_lifecycle.pcap");
    let fixture = fixture.to_str().expect("path");
    let out = common::engine(&["--pcap", fixture, "--metrics-address", "9615"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--metrics-address") && stderr.contains("expected ADDRESS:PORT"),
        "{stderr}"
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = busy.local_addr().expect("address").to_string();
    let out = common::engine(&["--pcap", fixture, "--metrics-address", &taken]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "engine: error: --metrics-address {taken}: cannot listen: Address already in use (os error 98)"
        )
    );
}
