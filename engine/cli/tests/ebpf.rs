//! `engine -i IF --backend ebpf` on real kernel paths (issue 17): two
//! network namespaces joined by a veth pair with offloads off (deleted
//! afterwards), the TC programs attached to end `b`, frames sent into end
//! `a`. Needs root, `ip` and `ethtool`, and a build with clang; skips with
//! a message otherwise, and fails instead in CI or as root (README, "What
//! the tests need").

mod common;

use std::time::Duration;

use capture_afpacket::PacketSender;
use capture_afpacket::testnet::{Setup, VethPair};
use common::live::{assert_same_spans, fixture_frames, interrupt, start_in};
use common::{engine, spans};

/// A veth pair between two namespaces, or `None` (with a message) where
/// the test cannot run.
fn namespace(tag: &str) -> Option<VethPair> {
    VethPair::for_test(tag, Setup::default())
}

/// A scratch directory for one test.
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flowspan-ebpf-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn ebpf_capture_on_a_veth_gives_the_spans_of_pcap_mode() {
    let Some(ns) = namespace("e") else { return };
    let frames = fixture_frames();
    assert!(frames.len() > 200, "{} frames", frames.len());
    let dir = scratch("fixtures");
    let sent_pcap = dir.join("sent.pcap");
    let mut pcap = flowspan_testdata::Pcap::new(1);
    for (k, f) in frames.iter().enumerate() {
        pcap.add(1_700_000_000_000_000_000 + k as u64 * 1000, f);
    }
    std::fs::write(&sent_pcap, pcap.take_bytes()).expect("writing sent.pcap");
    let from_pcap = engine(&["--pcap", sent_pcap.to_str().expect("path"), "-q"]);
    assert_eq!(from_pcap.status.code(), Some(0));

    let live_json = dir.join("ebpf.json");
    let out = live_json.to_str().expect("path");
    let (child, reader) = start_in(&ns, &["-i", &ns.b, "--backend", "ebpf", "-o", out]);
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("sender");
    for f in &frames {
        sender.send(f).expect("sending a frame");
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let live = std::fs::read(&live_json).expect("ebpf output");
    assert_same_spans(&from_pcap.stdout, &live);
    assert!(!spans(&live).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
