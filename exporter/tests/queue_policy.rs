//! The live-capture queue policy: with the receiver away, a full queue drops
//! new requests and counts every dropped span; nothing is lost uncounted.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exporter::otlp::{ExportOptions, OtlpConfig, OtlpExporter, OtlpFlags, QueuePolicy};

#[test]
fn a_full_queue_drops_and_counts_when_the_receiver_is_away() {
    // A port nobody listens on: connections are refused, and retried.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let flags = OtlpFlags {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..OtlpFlags::default()
    };
    let config = OtlpConfig::resolve(exporter::otlp::Signal::Traces, &flags, &|_| None)
        .expect("valid")
        .expect("endpoint");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    let exporter = OtlpExporter::start(
        &config,
        ExportOptions {
            queue_requests: 2,
            policy: QueuePolicy::DropWhenFull,
            concurrency: 1,
        },
        Arc::new(move |l: &str| sink.lock().expect("log").push(l.to_string())),
    )
    .expect("exporter starts");
    let started = Instant::now();
    for _ in 0..10 {
        exporter.submit(vec![0; 16], 5);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "submitting never waits under DropWhenFull"
    );
    let report = exporter.finish(Duration::from_millis(500));
    assert_eq!(report.submitted, 50);
    assert_eq!(report.delivered, 0);
    // At most one request in retry and two queued: the rest were dropped.
    assert!(report.dropped >= 35, "{report:?}");
    assert_eq!(report.dropped + report.undelivered, 50, "{report:?}");
    assert_eq!(report.lost(), 50);
    assert!(report.retries >= 1, "{report:?}");
    let lines = lines.lock().expect("log");
    assert!(
        lines.iter().any(|l| l.contains("Connection refused")),
        "{lines:?}"
    );
}
