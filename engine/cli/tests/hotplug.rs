//! Interfaces that come and go (issue 19): `engine -i 'hp*'` attaches the
//! veths created while it runs, and detaches the ones deleted, ending their
//! flows at once (`forced_end`), without a restart; with either backend.
//! Needs root, `ip` and `ethtool` (and clang for the eBPF backend); skips
//! with a message otherwise, and fails instead in CI or as root.

mod common;

use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use capture_afpacket::PacketSender;
use capture_afpacket::testnet::{Setup, VethPair, enter_namespace, ip, udp_frame};
use common::spans;

/// Creates veth `inner` in `ns.right` with its peer `outer` in `ns.left`,
/// offloads off, both up.
fn add_veth(ns: &VethPair, inner: &str, outer: &str) {
    add_veth_down(ns, inner, outer);
    bring_up(ns, inner, outer);
}

/// A veth pair, left down as a new one is.
fn add_veth_down(ns: &VethPair, inner: &str, outer: &str) {
    assert!(ip(&[
        "-n", &ns.left, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns",
        &ns.right
    ]));
}

fn bring_up(ns: &VethPair, inner: &str, outer: &str) {
    for (n, dev) in [(&ns.left, outer), (&ns.right, inner)] {
        let ok = Command::new("ip")
            .args(["netns", "exec", n, "ethtool", "-K", dev])
            .args([
                "rx", "off", "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "ethtool -K {dev}");
        assert!(ip(&["-n", n, "link", "set", dev, "up"]));
    }
}

/// Sends `n` frames of UDP flow `flow` into `outer` (in `ns.left`).
fn send(ns: &VethPair, outer: &str, flow: u16, n: usize) {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(&ns.left);
            let sender = PacketSender::open(outer).expect("sender");
            for k in 0..n {
                sender
                    .send(&udp_frame(flow, k % 2 == 1, None))
                    .expect("sending");
            }
        });
    });
}

/// Waits up to 10 s for a stderr line that `ok` accepts; all lines read.
fn wait_line(lines: &Receiver<String>, seen: &mut Vec<String>, ok: impl Fn(&str) -> bool) {
    let started = Instant::now();
    while !seen.iter().any(|l| ok(l)) {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no such line within 10 s; got:\n{}", seen.join("\n")),
        }
    }
}

/// `(interface name, end reason, packets both ways)` of each UDP span in
/// the OTLP JSON file `path`.
fn udp_spans(path: &std::path::Path) -> Vec<(String, String, i64)> {
    let mut out: Vec<_> = spans(&std::fs::read(path).unwrap_or_default())
        .iter()
        .filter(|s| common::s(s, "network.transport") == "udp")
        .map(|s| {
            (
                common::s(s, "network.interface.name"),
                common::s(s, "flow.end_reason"),
                common::i(s, "flow.packets.delta") + common::i(s, "flow.reverse.packets.delta"),
            )
        })
        .collect();
    out.sort();
    out
}

/// `GET path` on the engine's metrics port inside `ns`.
fn get(ns: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(ns);
            let mut c = std::net::TcpStream::connect("127.0.0.1:9615").expect("metrics port");
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
            let mut answer = String::new();
            c.read_to_string(&mut answer).expect("answer");
            let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status");
            (status, body.to_owned())
        })
        .join()
        .expect("request thread")
    })
}

#[test]
fn veths_matching_a_pattern_are_attached_and_detached_as_they_come_and_go() {
    come_and_go("hp", "afpacket");
}

#[test]
fn the_ebpf_backend_follows_a_pattern_too() {
    if let Err(e) = capture_ebpf::available() {
        capture_afpacket::testnet::skip(&e.to_string());
        return;
    }
    come_and_go("he", "ebpf");
}

fn come_and_go(tag: &str, backend: &str) {
    let Some(ns) = VethPair::for_test(tag, Setup::default()) else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hotplug-{backend}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("out.json");
    let started = capture_afpacket::testnet::start_engine_in(
        &ns.right,
        std::path::Path::new(env!("CARGO_BIN_EXE_engine")),
        &[
            "-i",
            "hp*",
            "-o",
            out.to_str().expect("path"),
            "--metrics-address",
            "127.0.0.1:9615",
            "--backend",
            backend,
        ],
    )
    .expect("engine -i 'hp*'");
    let mut seen = vec![started.first.clone()];
    wait_line(&started.lines, &mut seen, |l| {
        l.starts_with(
            "engine: capturing on no interface yet, and interfaces matching hp* as they come (",
        )
    });
    assert_eq!(get(&ns.right, "/readyz"), (200, "ready\n".into()));

    // A veth appears: attached; its traffic is captured.
    add_veth(&ns, "hp1", "hq1");
    wait_line(&started.lines, &mut seen, |l| {
        l == "engine: capturing on hp1 too: it matches \"hp*\""
    });
    send(&ns, "hq1", 1, 10);
    // It goes away: detached, and its flow ends now, not after 60 s idle.
    std::thread::sleep(Duration::from_millis(300));
    assert!(ip(&["-n", &ns.right, "link", "del", "hp1"]));
    wait_line(&started.lines, &mut seen, |l| {
        l.starts_with("engine: capture on \"hp1\" stopped: ")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while udp_spans(&out).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        udp_spans(&out),
        [("hp1".to_owned(), "forced_end".to_owned(), 10)]
    );
    assert_eq!(
        get(&ns.right, "/readyz").0,
        200,
        "a pattern's interface may go"
    );

    // Another comes: attached too, without a restart, while it is still
    // down (as a new interface is): down is not gone, and its rings take
    // its traffic once it is up (its counters and the one interface gone
    // below say so).
    add_veth_down(&ns, "hp2", "hq2");
    wait_line(&started.lines, &mut seen, |l| {
        l == "engine: capturing on hp2 too: it matches \"hp*\""
    });
    std::thread::sleep(Duration::from_millis(300));
    bring_up(&ns, "hp2", "hq2");
    send(&ns, "hq2", 2, 6);
    // With eBPF, packets counted in the kernel are not frames read.
    let read = |n| if backend == "afpacket" { n } else { "0" };
    let want = [
        format!(
            "flowspan_packets_total{{input=\"hp2\",kind=\"{backend}\"}} {}",
            read("6")
        ),
        format!(
            "flowspan_packets_total{{input=\"(interfaces gone)\",kind=\"{backend}\"}} {}",
            read("10")
        ),
        "flowspan_interfaces_gone_total 1".to_owned(),
    ];
    // The counters are published as the capture loop goes: wait for them
    // (a fixed pause once read them too early on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = get(&ns.right, "/metrics").1;
        let all = want.iter().all(|w| metrics.lines().any(|l| l == w));
        if all || Instant::now() >= deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for w in &want {
        assert!(metrics.lines().any(|l| l == w), "{w} in\n{metrics}");
    }
    assert!(!metrics.contains("input=\"hp1\""), "hp1 was forgotten");

    common::signal(started.child.id(), "INT");
    let mut child = started.child;
    let status = child.wait().expect("engine exits");
    let stderr = started.stderr.join().expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        udp_spans(&out),
        [
            ("hp1".to_owned(), "forced_end".to_owned(), 10),
            ("hp2".to_owned(), "forced_end".to_owned(), 6)
        ],
        "{stderr}"
    );
    let gone = if backend == "afpacket" {
        "1 interfaces matched by a pattern and gone since: kernel passed 10 packets"
    } else {
        "1 interfaces matched by a pattern and gone since: 0 packets (0 bytes) sent to userspace whole"
    };
    assert!(stderr.contains(gone), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
