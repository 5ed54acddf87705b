//! Live-capture helpers shared by the AF_PACKET and eBPF tests: the
//! fixtures' frames to replay, starting and stopping `engine -i` inside a
//! namespace, and comparing its spans with pcap mode's.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use capture_afpacket::testnet::VethPair;
use capture_pcap::CaptureReader;

use super::{root, spans};

/// Every Ethernet frame of the generated fixtures, in order, except frames
/// the wire cannot carry and VLAN frames cut inside their tag (the
/// receiving kernel drops those before any socket sees them).
pub fn fixture_frames() -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for f in flowspan_testdata::fixtures() {
        let path = root().join("testdata/pcap").join(f.name);
        let mut r = CaptureReader::open(&path).expect("fixture");
        while let Some(frame) = r.next_frame().expect("fixture reads") {
            let d = frame.data;
            let vlan_cut =
                d.len() < 18 && matches!(d.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]));
            if frame.link_type == 1 && (14..=1514).contains(&d.len()) && !vlan_cut {
                frames.push(frame.data.to_vec());
            }
        }
    }
    frames
}

/// Writes `frames` to `dir/sent.pcap`, 1 µs apart (so that no timeout
/// splits a flow, as on the wire of a replay), and returns what
/// `engine --pcap` makes of it (OTLP JSON).
pub fn pcap_mode_of(frames: &[Vec<u8>], dir: &std::path::Path) -> Vec<u8> {
    let sent_pcap = dir.join("sent.pcap");
    let mut pcap = flowspan_testdata::Pcap::new(1);
    for (k, f) in frames.iter().enumerate() {
        pcap.add(1_700_000_000_000_000_000 + k as u64 * 1000, f);
    }
    std::fs::write(&sent_pcap, pcap.take_bytes()).expect("writing sent.pcap");
    let out = super::engine(&["--pcap", sent_pcap.to_str().expect("path"), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    out.stdout
}

/// A span without what depends on when its packets were seen (times, the
/// ids derived from the first packet's time, and the values of the TCP
/// latency metrics, of which only the presence is kept) or where (the
/// live-only `network.interface.*`): its name, kind and every other
/// attribute.
pub fn timeless(span: &serde_json::Value) -> String {
    let mut attrs = super::attrs(span);
    attrs.retain(|k, _| !k.starts_with("network.interface."));
    for (k, v) in &mut attrs {
        if k.starts_with("flow.tcp.") && (k.ends_with(".latency") || k.ends_with(".jitter")) {
            *v = serde_json::Value::from("measured");
        }
    }
    format!("{} {} {:?}", span["name"], span["kind"], attrs)
}

/// A span's `network.interface.index` and `.name`, if present.
pub fn interface(span: &serde_json::Value) -> (Option<String>, Option<String>) {
    let attrs = super::attrs(span);
    let get = |k: &str, field: &str| {
        attrs
            .get(k)
            .and_then(|v| v[field].as_str())
            .map(str::to_owned)
    };
    (
        get("network.interface.index", "intValue"),
        get("network.interface.name", "stringValue"),
    )
}

/// Asserts that `live` (OTLP JSON lines) holds the spans of `pcap`, apart
/// from times, latency values and interface attributes; shows the
/// differences otherwise.
pub fn assert_same_spans(pcap: &[u8], live: &[u8]) {
    assert_same_spans_of(pcap, live, 41);
}

/// [`assert_same_spans`] where pcap mode gives at least `at_least` spans.
pub fn assert_same_spans_of(pcap: &[u8], live: &[u8], at_least: usize) {
    let mut want: Vec<String> = spans(pcap).iter().map(timeless).collect();
    let mut got: Vec<String> = spans(live).iter().map(timeless).collect();
    want.sort();
    got.sort();
    assert!(want.len() >= at_least, "{} spans", want.len());
    if got != want {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            let mut b = b.to_vec();
            a.iter()
                .filter(|x| match b.iter().position(|y| y == *x) {
                    Some(i) => {
                        b.remove(i);
                        false
                    }
                    None => true,
                })
                .cloned()
                .collect()
        };
        panic!(
            "live and pcap records differ\nonly in pcap mode:\n{}\nonly live:\n{}",
            only(&want, &got).join("\n"),
            only(&got, &want).join("\n")
        );
    }
}

/// Starts `engine ARGS` inside `ns.right` with stderr piped; returns the
/// child, a receiver of its stderr lines, and a handle that yields all of
/// stderr at the end. Waits for the line saying it is capturing.
pub fn start_in(
    ns: &VethPair,
    args: &[&str],
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.right, env!("CARGO_BIN_EXE_engine")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting engine -i");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Warnings may come first (the reader keeps them for the caller).
    let first = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("engine -i says it is capturing");
        if !line.starts_with("engine: warning: ") {
            break line;
        }
    };
    assert!(first.starts_with("engine: capturing on "), "{first}");
    (child, reader)
}

/// Sends SIGINT to `engine -i` and waits for it; its exit status and stderr.
pub fn interrupt(
    mut child: std::process::Child,
    reader: std::thread::JoinHandle<String>,
) -> (std::process::ExitStatus, String) {
    // `ip netns exec` runs the engine in its own process (exec): signal it.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("engine -i exits");
    (status, reader.join().expect("stderr reader"))
}
