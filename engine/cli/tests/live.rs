//! `engine -i` against `engine --pcap` on the same traffic (issue 5): the
//! test creates two network namespaces joined by a veth pair with offloads
//! off (deleted afterwards), starts `engine -i` on end `b` inside namespace
//! `right`, sends the generated fixtures'
//! Ethernet frames into end `a` with the project's raw sender, stops
//! the engine with SIGINT, and compares its spans with those of
//! `engine --pcap` on a capture of exactly the frames sent. Needs root and
//! `ip` and `ethtool`; skips with a message otherwise (fails instead in CI
//! or as root: README, "What the tests need").

mod common;

use std::process::Command;
use std::time::Duration;

use capture_afpacket::PacketSender;
use capture_afpacket::testnet::{Setup, VethPair, udp_frame};
use common::live::{
    assert_same_spans, assert_same_spans_of, fixture_frames, interface, interrupt, pcap_mode_of,
    start_in, super_frame_setup, super_frames_become_their_segments,
};
use common::{engine, spans};

/// A veth pair between two namespaces, or `None` (with a message) where
/// the test cannot run.
fn namespace(tag: &str) -> Option<VethPair> {
    VethPair::for_test(tag, Setup::default())
}

#[test]
fn live_capture_on_a_veth_gives_the_spans_of_pcap_mode() {
    let Some(ns) = namespace("l") else { return };
    let frames = fixture_frames();
    assert!(frames.len() > 200, "{} frames", frames.len());

    // What pcap mode makes of those frames, 1 µs apart (so that no timeout
    // splits a flow, as on the wire here).
    let dir = std::env::temp_dir().join(format!("flowspan-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let from_pcap = pcap_mode_of(&frames, &dir);

    // engine -i on end b, inside namespace `right`.
    let live_json = dir.join("live.json");
    let out = live_json.to_str().expect("path");
    let (child, reader) = start_in(&ns, &["-i", &ns.b, "--workers", "2", "-o", out]);

    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    for f in &frames {
        sender.send(f).expect("sending a frame");
    }
    // Blocks are handed over within 10 ms; leave ample time.
    std::thread::sleep(Duration::from_millis(500));
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "kernel passed {} packets, dropped 0 (ring full), ring froze 0 times",
            frames.len()
        )),
        "{stderr}"
    );

    let live = std::fs::read(&live_json).expect("live output");
    // Live spans say where they were captured; pcap spans cannot.
    let ifindex = Command::new("ip")
        .args(["netns", "exec", &ns.right, "cat"])
        .arg(format!("/sys/class/net/{}/ifindex", ns.b))
        .output()
        .expect("reading b's ifindex");
    let ifindex = String::from_utf8_lossy(&ifindex.stdout).trim().to_owned();
    for span in spans(&live) {
        let (index, name) = interface(&span);
        assert_eq!(name.as_deref(), Some(ns.b.as_str()), "{span}");
        assert_eq!(index.as_deref(), Some(ifindex.as_str()), "{span}");
    }
    assert!(
        spans(&from_pcap)
            .iter()
            .all(|s| interface(s) == (None, None))
    );
    assert_same_spans(&from_pcap, &live);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interface_that_goes_away_ends_the_run_with_status_1() {
    let Some(ns) = namespace("g") else { return };
    let (mut child, reader) = start_in(&ns, &["-i", &ns.b, "--workers", "2"]);
    assert!(capture_afpacket::testnet::ip(&[
        "-n", &ns.left, "link", "del", &ns.a
    ]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("engine -i still running 10 s after its interface went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("engine: warning: capture on {:?} stopped: ", ns.b)),
        "{stderr}"
    );
    assert!(
        stderr.contains("engine: error: every interface went away; open flows were flushed"),
        "{stderr}"
    );
}

/// Issue 16: packets still in the ring when the interface went away were
/// lost without a word (the kernel passed 14, 12 were read). Frames sent up
/// to the moment the link is deleted are all read, or counted as not read.
#[test]
fn regression_16_packets_in_the_ring_when_an_interface_goes_away_are_read() {
    let Some(ns) = namespace("d") else { return };
    let (mut child, reader) = start_in(&ns, &["-i", &ns.b, "--workers", "2", "-o", "/dev/null"]);
    // Frames of many flows (so both rings get some) until the link goes.
    let sender = in_namespace(&ns.left, {
        let a = ns.a.clone();
        move || {
            let sender = PacketSender::open(&a).expect("sender");
            let mut sent = 0u32;
            while sender
                .send(&udp_frame((sent % 512) as u16, false, None))
                .is_ok()
            {
                sent += 1;
            }
            sent
        }
    });
    std::thread::sleep(Duration::from_millis(30));
    assert!(capture_afpacket::testnet::ip(&[
        "-n", &ns.left, "link", "del", &ns.a
    ]));
    let sent = sender.join().expect("sender thread");
    let status = child.wait().expect("engine exits");
    let stderr = reader.join().expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let number = |before: &str, after: &str| -> u64 {
        stderr
            .split(after)
            .next()
            .and_then(|head| head.rsplit(before).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{before}N{after} in {stderr}"))
    };
    let passed = number("kernel passed", " packets, dropped");
    let dropped = number("dropped", " (ring full)");
    let read = number(":", " packets read");
    eprintln!("sent {sent}, kernel passed {passed}, dropped {dropped}, read {read}");
    assert!(passed > 0 && read > 0, "{stderr}");
    assert_eq!(read, passed - dropped, "{stderr}");
    assert!(stderr.contains(", not read 0\n"), "{stderr}");
}

#[test]
fn missing_privileges_and_unknown_interfaces_are_one_line_errors() {
    let unknown = engine(&["-i", "no-such-if0"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "engine: warning: not capturing on \"no-such-if0\": interface \"no-such-if0\" does not exist\n\
         engine: error: no interface to capture on (-i): every one given failed to open\n"
    );
    // Without CAP_NET_RAW: as root, drop it from the bounding set first.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if is_root {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--"])
            .arg(env!("CARGO_BIN_EXE_engine"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_engine"))
    };
    let out = cmd.args(["-i", "lo"]).output().expect("running engine");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "engine: error: opening a packet socket on \"lo\" was refused: live capture needs CAP_NET_RAW \
         (run as root or grant it with `setcap cap_net_raw+ep`)\n"
    );
}

#[test]
fn flows_time_out_by_the_wall_clock_while_capturing() {
    let Some(ns) = namespace("t") else { return };
    let dir = std::env::temp_dir().join(format!("flowspan-live-t-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("live.json");
    let out = json.to_str().expect("path");
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "--idle-timeout",
            "0.3",
            "--active-timeout",
            "0.4",
            "-o",
            out,
        ],
    );
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    // Flow 1: one packet, then silence: it must end by the idle timeout
    // while the capture runs, not by the flush at SIGINT.
    sender.send(&udp_frame(1, false, None)).expect("send");
    // Flow 2: a packet every 100 ms for 1.3 s: active-timeout records.
    for _ in 0..13 {
        sender.send(&udp_frame(2, false, None)).expect("send");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(600));
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let spans = spans(&std::fs::read(&json).expect("live output"));
    let reasons = |port: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|s| common::attrs(s)["source.port"]["intValue"] == port)
            .map(|s| common::s(s, "flow.end_reason"))
            .collect()
    };
    assert_eq!(reasons("40001"), ["idle_timeout"], "{stderr}");
    // Flow 2 ends while the capture runs, not by the flush at SIGINT: its
    // last record is an idle timeout's, or, when its active timeout came
    // first (the earlier deadline decides, and which one comes first
    // depends on where the last packet fell in the record), an active
    // timeout's, after which the flow ends without another record. Every
    // packet is in exactly one record.
    let flow2 = reasons("40002");
    assert!(
        flow2.iter().filter(|r| *r == "active_timeout").count() >= 2
            && flow2
                .iter()
                .all(|r| r == "active_timeout" || r == "idle_timeout"),
        "flow 2 ends: {flow2:?}"
    );
    let packets: i64 = spans
        .iter()
        .filter(|s| common::attrs(s)["source.port"]["intValue"] == "40002")
        .map(|s| common::i(s, "flow.packets.delta"))
        .sum();
    assert_eq!(packets, 13, "flow 2 ends: {flow2:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16: live JSON sat in a 64 KiB buffer until SIGINT, so `tail -f`,
/// a consumer on a pipe, or a crash lost every span of the run so far.
#[test]
fn regression_16_live_json_reaches_the_file_while_capturing() {
    let Some(ns) = namespace("j") else { return };
    let dir = std::env::temp_dir().join(format!("flowspan-live-j-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("live.json");
    let out = json.to_str().expect("path");
    let (child, reader) = start_in(&ns, &["-i", &ns.b, "--idle-timeout", "0.2", "-o", out]);
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    sender.send(&udp_frame(1, false, None)).expect("send");
    // The flow ends by its idle timeout 0.2 s on; its span must be in the
    // file well before the engine stops.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        seen = spans(&std::fs::read(&json).unwrap_or_default());
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        seen.len(),
        1,
        "no span in the file while capturing: {stderr}"
    );
    assert_eq!(common::s(&seen[0], "flow.end_reason"), "idle_timeout");
    // The file is whole lines of JSON at every moment it was read.
    let text = std::fs::read_to_string(&json).expect("live output");
    assert!(text.ends_with('\n'), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` on a new thread inside namespace `ns` and returns its handle.
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        capture_afpacket::testnet::enter_namespace(&ns);
        f()
    })
}

/// Accepts one connection on `listener` and reads it to the end.
fn serve_one(listener: std::net::TcpListener) {
    use std::io::Read;
    let (mut conn, _) = listener.accept().expect("accept");
    let mut sink = Vec::new();
    conn.read_to_end(&mut sink).expect("read");
}

/// Connects to `to`, writes a little and closes.
fn connect_and_say_hello(to: &str) {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(to).expect("connect");
    c.write_all(b"hello").expect("write");
}

#[test]
fn flows_the_host_answers_are_server_spans_and_flows_it_opens_client_spans() {
    use capture_afpacket::testnet::{LEFT_IP, RIGHT_IP, Setup, icmp_echo_frame, mac_of};
    let setup = Setup {
        addresses: true,
        ..Setup::default()
    };
    let Some(ns) = VethPair::for_test("k", setup) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("flowspan-live-k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("live.json");
    // The engine's host (namespace `right`, address RIGHT_IP) listens on
    // TCP 8000 from the start; the peer (`left`) on TCP 9000.
    ns.enter_right();
    let early = std::net::TcpListener::bind((RIGHT_IP, 8000)).expect("bind 8000");
    ns.enter_left();
    let peer = std::net::TcpListener::bind((LEFT_IP, 9000)).expect("bind 9000");
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "--host-refresh",
            "0.2",
            "-o",
            json.to_str().expect("path"),
        ],
    );

    // The peer connects to the host's listener: SERVER.
    let server = in_namespace(&ns.right, move || serve_one(early));
    connect_and_say_hello(&format!("{RIGHT_IP}:8000"));
    server.join().expect("server 8000");
    // The host connects to the peer's: CLIENT.
    let server = std::thread::spawn(move || serve_one(peer));
    in_namespace(&ns.right, || {
        connect_and_say_hello(&format!("{LEFT_IP}:9000"))
    })
    .join()
    .expect("client to 9000");
    server.join().expect("server 9000");
    // A listener opened during the capture, on a port no port rule knows,
    // is learnt at the next refresh: SERVER.
    let late = in_namespace(&ns.right, || {
        std::net::TcpListener::bind((RIGHT_IP, 47000)).expect("bind 47000")
    })
    .join()
    .expect("bind");
    std::thread::sleep(Duration::from_millis(600));
    let server = in_namespace(&ns.right, move || serve_one(late));
    connect_and_say_hello(&format!("{RIGHT_IP}:47000"));
    server.join().expect("server 47000");
    // The peer pings the host, which answers: SERVER.
    let sender = PacketSender::open(&ns.a).expect("sender");
    let ip4 = |s: &str| s.parse::<std::net::Ipv4Addr>().expect("IPv4").octets();
    sender
        .send(&icmp_echo_frame(
            mac_of(&ns.left, &ns.a),
            mac_of(&ns.right, &ns.b),
            ip4(LEFT_IP),
            ip4(RIGHT_IP),
            0x4242,
        ))
        .expect("send echo request");
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");

    let spans = spans(&std::fs::read(&json).expect("live output"));
    let kind_of = |protocol: &str, port: &str| -> (String, String, String) {
        let span = spans
            .iter()
            .find(|s| {
                let a = common::attrs(s);
                a["network.transport"]["stringValue"] == protocol
                    && (a.get("destination.port").map(|v| v["intValue"].clone())
                        == Some(port.into()))
            })
            .unwrap_or_else(|| panic!("no {protocol} span to port {port} in {spans:#?}"));
        (
            span["kind"].to_string(),
            common::s(span, "flow.direction"),
            common::s(span, "source.address"),
        )
    };
    // network.interface.mac is the initiator's (source.*) address.
    let mac_text = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
    let (mac_a, mac_b) = (
        mac_text(mac_of(&ns.left, &ns.a)),
        mac_text(mac_of(&ns.right, &ns.b)),
    );
    for span in &spans {
        let want = if common::s(span, "source.address") == LEFT_IP {
            &mac_a
        } else {
            &mac_b
        };
        assert_eq!(&common::s(span, "network.interface.mac"), want, "{span}");
    }
    let server = ("2".to_owned(), "reverse".to_owned(), LEFT_IP.to_owned());
    let client = ("3".to_owned(), "forward".to_owned(), RIGHT_IP.to_owned());
    assert_eq!(kind_of("tcp", "8000"), server);
    assert_eq!(kind_of("tcp", "9000"), client);
    assert_eq!(
        kind_of("tcp", "47000"),
        server,
        "a listener learnt while running"
    );
    let echo = spans
        .iter()
        .find(|s| common::s(s, "network.transport") == "icmp")
        .unwrap_or_else(|| panic!("no ICMP span in {spans:#?}"));
    assert_eq!(
        (echo["kind"].to_string(), common::s(echo, "flow.direction")),
        ("2".to_owned(), "reverse".to_owned()),
        "{echo}"
    );
    assert_eq!(
        common::i(echo, "flow.reverse.packets.delta"),
        1,
        "the host answered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn super_frames_count_as_the_segments_the_wire_carries() {
    let Some(ns) = VethPair::for_test("s", super_frame_setup()) else {
        return;
    };
    super_frames_become_their_segments(&ns, &[]);
}

/// An Ethernet/IPv4/TCP SYN from `src`:`sport` to 10.9.0.2:443 (checksums
/// left 0: nothing on the receiving end answers it).
fn syn_frame(src: [u8; 4], sport: u16) -> Vec<u8> {
    use capture_afpacket::testnet::{DST_MAC, SRC_MAC};
    let mut f = Vec::with_capacity(54);
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[10, 9, 0, 2]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&443u16.to_be_bytes());
    // Sequence number, acknowledgment, offset 5, SYN, window, checksum, urgent.
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// A field of `/proc/PID/status` in bytes (`VmHWM`, `VmRSS`...).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// Issue 16: a flood of new flows grew a live agent's memory without
/// bound. A million SYNs from random sources, none answered, into an
/// engine given 16 MiB for flows: the table stops at its limit, evicts
/// (counted, `lack_of_resources`), and the process grows by about the
/// budget, not by the ~300 MB a million flows would take.
#[test]
fn regression_16_a_syn_flood_from_a_million_sources_stays_within_the_flow_memory() {
    const FLOODERS: u32 = 1_000_000;
    const BUDGET: u64 = 16 << 20;
    let Some(ns) = namespace("f") else { return };
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "--workers",
            "2",
            "--flow-memory",
            "16M",
            "-o",
            "/dev/null",
        ],
    );
    let pid = child.id();
    let before = proc_status_bytes(pid, "VmRSS");
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    // xorshift32: a million distinct sources (it has period 2^32 - 1).
    let mut x: u32 = 0x9e37_79b9;
    let mut frames = Vec::with_capacity(1024);
    // At most 250,000 a second, which the engine keeps up with here while
    // it evicts and writes a span for each flow it ends.
    let started = std::time::Instant::now();
    for n in 0..FLOODERS {
        let due = started + Duration::from_micros(u64::from(n) * 4);
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now())
            && n % 1024 == 0
        {
            std::thread::sleep(wait);
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        frames.push(syn_frame(x.to_be_bytes(), 1024 + (x % 60_000) as u16));
        if frames.len() == frames.capacity() {
            sender.send_all(&frames).expect("sending SYNs");
            frames.clear();
        }
    }
    sender.send_all(&frames).expect("sending SYNs");
    std::thread::sleep(Duration::from_millis(500));
    let peak = proc_status_bytes(pid, "VmHWM");
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let limit = BUDGET / engine::FLOW_BYTES;
    let number_after = |label: &str| -> u64 {
        let at = stderr
            .find(label)
            .unwrap_or_else(|| panic!("{label:?} in {stderr}"))
            + label.len();
        stderr[at..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|n| !n.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {label:?} in {stderr}"))
    };
    let read: u64 = stderr
        .split(" packets read")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("packets read in {stderr}"));
    let table_mb: f64 = stderr
        .split("flow table memory at that peak: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flow table memory in {stderr}"));
    let evicted = number_after("flows ended to make room: ");
    let table_peak = number_after("most open at once, summed over workers: ");
    eprintln!(
        "engine read {read} SYNs; {evicted} flows evicted; table peak {table_peak} flows; \
         engine RSS {} MiB before, peak {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(
        stderr.contains(&format!(
            "flow limit: {limit} open flows (--flow-memory 16 MiB"
        )),
        "{stderr}"
    );
    // Most of the flood reached the engine (the ring drops some while the
    // machine is busy with other tests), nine times the limit or more.
    assert!(read > u64::from(FLOODERS) / 2, "{stderr}");
    assert!(table_peak <= limit, "{stderr}");
    assert_eq!(evicted, read - limit, "{stderr}");
    assert!(table_mb * 1e6 <= BUDGET as f64, "{stderr}");
    // The process: the budget, and spans on their way out (bounded queues
    // of encoded spans, 25-45 MiB here while a span is made for every
    // flow evicted) with the heap's slack. Without the budget it grows by
    // ~270 MiB.
    assert!(
        peak - before <= BUDGET + (80 << 20),
        "the engine grew by {} MiB with a flow budget of 16 MiB",
        (peak - before) >> 20
    );
}

/// Whether a frame carries an 802.1Q or 802.1ad tag, which the receiving
/// veth takes out of the frame into the packet's metadata.
fn tagged(frame: &[u8]) -> bool {
    matches!(frame.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]))
}

#[test]
fn a_capture_filter_runs_in_the_kernel_and_gives_the_spans_of_pcap_mode() {
    if common::skip_without_libpcap() {
        return;
    }
    let Some(ns) = namespace("f") else { return };
    // TCP, plus UDP in VLANs: untagged frames are decided in the kernel,
    // tagged ones (whose tag the veth takes out) in userspace with the tag
    // put back.
    let expression = "tcp or (vlan and udp)";
    let filter = capture_filter::compile(expression).expect("compiles");
    let frames = fixture_frames();
    let dir = common::scratch("flowspan-live-filter", "dir");
    std::fs::create_dir_all(&dir).expect("temp dir");
    pcap_mode_of(&frames, &dir);
    let pcap = common::live::pcap_mode_filtered(&dir, expression);

    let matching = |f: &Vec<u8>| filter.matches(1, f, f.len() as u32);
    let queued = frames.iter().filter(|f| tagged(f) || matching(f)).count();
    let left_out_here = frames.iter().filter(|f| tagged(f) && !matching(f)).count();
    assert!(
        queued < frames.len() && left_out_here > 0,
        "{queued} {left_out_here}"
    );
    eprintln!(
        "{} frames to send; {queued} should reach the rings, {left_out_here} of them to be left out in userspace",
        frames.len()
    );

    let live_json = dir.join("live.json");
    let out = live_json.to_str().expect("path");
    let (child, reader) = start_in(
        &ns,
        &[
            "-i",
            &ns.b,
            "--workers",
            "2",
            "-o",
            out,
            "--filter",
            expression,
        ],
    );
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    for f in &frames {
        sender.send(f).expect("sending a frame");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The kernel's own statistics: packets the filter left out were never
    // queued to the rings.
    assert!(
        stderr.contains(&format!(
            "kernel passed {queued} packets, dropped 0 (ring full), ring froze 0 times"
        )),
        "{} frames sent, {queued} expected in the rings: {stderr}",
        frames.len()
    );
    assert!(
        stderr.contains(&format!(
            "capture filter \"{expression}\": {left_out_here} packets left out here"
        )),
        "{stderr}"
    );
    let live = std::fs::read(&live_json).expect("live output");
    assert_same_spans_of(&pcap, &live, 10);
    let _ = std::fs::remove_dir_all(&dir);
}
