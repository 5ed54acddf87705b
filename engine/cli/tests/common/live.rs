//! Live-capture helpers shared by the AF_PACKET and eBPF tests: the
//! fixtures' frames to replay, starting and stopping `engine -i` inside a
//! namespace, and comparing its spans with pcap mode's.

use std::process::Command;
use std::time::Duration;

use capture_afpacket::testnet::{EngineChild, Setup, VethPair};
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

/// What `engine --pcap … --filter EXPRESSION` makes of `dir/sent.pcap`
/// (written by [`pcap_mode_of`]).
pub fn pcap_mode_filtered(dir: &std::path::Path, expression: &str) -> Vec<u8> {
    let sent = dir.join("sent.pcap");
    let out = super::engine(&[
        "--pcap",
        sent.to_str().expect("path"),
        "-q",
        "--filter",
        expression,
    ]);
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

/// Starts `engine ARGS` inside `ns.right`; returns the child and a handle
/// that yields all of its stderr at the end. Waits for the line saying it
/// is capturing.
pub fn start_in(ns: &VethPair, args: &[&str]) -> (EngineChild, std::thread::JoinHandle<String>) {
    let started = capture_afpacket::testnet::start_engine_in(
        &ns.right,
        std::path::Path::new(env!("CARGO_BIN_EXE_engine")),
        args,
    )
    .expect("starting engine -i");
    let mut first = started.first;
    // What Kubernetes enrichment has listed, and a tracefs mount for the
    // connect tracepoint, the metrics endpoint's address and warnings come
    // before.
    while first.starts_with("engine: kubernetes: ")
        || first.starts_with("engine: mounted tracefs")
        || first.starts_with("engine: serving ")
        || first.starts_with("engine: warning: ")
    {
        first = started
            .lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a line after the ones before capturing");
    }
    assert!(first.starts_with("engine: capturing on "), "{first}");
    (started.child, started.stderr)
}

/// Sends SIGINT to `engine -i` and waits for it; its exit status and stderr.
pub fn interrupt(
    mut child: EngineChild,
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

/// `Tcp: OutSegs` plus `RetransSegs` of namespace `ns` (/proc/net/snmp):
/// TCP segments its stack sent, new and retransmitted, counting each
/// segment of a GSO super-frame.
fn tcp_out_segments(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .expect("reading /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().expect("names"), tcp.next().expect("values"));
    let value = |name: &str| -> u64 {
        let at = names
            .split_whitespace()
            .position(|n| n == name)
            .expect(name);
        values
            .split_whitespace()
            .nth(at)
            .expect("value")
            .parse()
            .expect("number")
    };
    value("OutSegs") + value("RetransSegs")
}

/// A veth pair's setup for [`super_frames_become_their_segments`]:
/// offloads stay on, so that the client's stack sends TSO super-frames of
/// up to 64 KiB through the veth and the capture sees them whole, and the
/// ends have addresses.
pub fn super_frame_setup() -> Setup {
    Setup {
        offloads: true,
        addresses: true,
    }
}

/// A TCP connection between the namespaces of `ns` (made with
/// [`super_frame_setup`]) carries 4 MB one way and 1 MB back while
/// `engine -i b EXTRA…` captures; asserts the flow's packets each way equal
/// the segments each stack sent and its bytes those segments' IP bytes.
/// Returns the engine's stderr.
pub fn super_frames_become_their_segments(ns: &VethPair, extra: &[&str]) -> String {
    use capture_afpacket::testnet::{RIGHT_IP, tcp_bytes_sent};
    use std::io::{Read, Write};
    // Without SACK, every ACK has the same TCP header, even those that
    // answer a retransmission (a D-SACK block would add 12 bytes).
    for n in [&ns.left, &ns.right] {
        let ok = Command::new("ip")
            .args(["netns", "exec", n, "sysctl", "-qw", "net.ipv4.tcp_sack=0"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "turning SACK off in {n}");
    }
    let dir = std::env::temp_dir().join(format!("flowspan-super-{}", ns.b));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("live.json");
    ns.enter_right();
    let listener = std::net::TcpListener::bind((RIGHT_IP, 8000)).expect("bind");
    let (up, down) = (4_000_000usize, 1_000_000usize);
    let (left0, right0) = (tcp_out_segments(&ns.left), tcp_out_segments(&ns.right));
    let mut args = vec!["-i", &ns.b, "-o", json.to_str().expect("path")];
    args.extend_from_slice(extra);
    let (child, reader) = start_in(ns, &args);
    let right = ns.right.clone();
    let server = std::thread::spawn(move || {
        capture_afpacket::testnet::enter_namespace(&right);
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; up];
        conn.read_exact(&mut got).expect("read");
        conn.write_all(&vec![7u8; down]).expect("write");
        conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)
            .expect("read to the client's FIN");
        tcp_bytes_sent(&conn)
    });
    ns.enter_left();
    let mut c = std::net::TcpStream::connect((RIGHT_IP, 8000)).expect("connect");
    c.write_all(&vec![5u8; up]).expect("write");
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("read");
    assert_eq!(back.len(), down);
    // Payload on the wire, retransmissions (e.g. tail loss probes on this
    // busy machine) included.
    let payload_up = tcp_bytes_sent(&c);
    drop(c);
    let payload_down = server.join().expect("server");
    std::thread::sleep(Duration::from_millis(300));
    let sent_left = tcp_out_segments(&ns.left) - left0;
    let sent_right = tcp_out_segments(&ns.right) - right0;
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");

    // The run saw super-frames (else this test shows nothing).
    let line = stderr
        .lines()
        .find(|l| l.contains("super-frames (GSO/GRO): "))
        .unwrap_or_else(|| panic!("no super-frame line in {stderr}"));
    let super_frames: u64 = line
        .split("super-frames (GSO/GRO): ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(super_frames > 0, "{stderr}");

    let spans = spans(&std::fs::read(&json).expect("live output"));
    let span = spans
        .iter()
        .find(|s| super::attrs(s)["destination.port"]["intValue"] == "8000")
        .unwrap_or_else(|| panic!("no span to port 8000 in {spans:#?}"));
    let (fwd, rev) = (
        super::i(span, "flow.packets.total"),
        super::i(span, "flow.reverse.packets.total"),
    );
    assert_eq!(
        (fwd as u64, rev as u64),
        (sent_left, sent_right),
        "packets each way against the senders' TCP OutSegs\n{stderr}"
    );
    // Every segment has 20 bytes of IPv4 header and 32 of TCP header (with
    // timestamps), the SYN and SYN/ACK 8 bytes more of TCP options.
    assert!(payload_up >= up as u64 && payload_down >= down as u64);
    assert_eq!(
        super::i(span, "flow.bytes.total"),
        payload_up as i64 + 52 * fwd + 8,
        "client to server IP bytes"
    );
    assert_eq!(
        super::i(span, "flow.reverse.bytes.total"),
        payload_down as i64 + 52 * rev + 8,
        "server to client IP bytes"
    );
    let _ = std::fs::remove_dir_all(&dir);
    stderr
}
