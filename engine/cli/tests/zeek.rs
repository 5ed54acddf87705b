//! Every capture in `../shared/data/zeek/` runs clean: exit 0, only link types
//! we support, no malformed packets except in the deliberately truncated
//! captures, only explainable non-IP frames, and identical output with 1 and
//! 2 workers.

mod common;

use common::{engine, shared_data, spans};

/// Truncated on purpose by their authors: malformed counters are expected.
const TRUNCATED: [&str; 3] = [
    "trunc/ip-discarder-truncated-tcp-oob.pcapng",
    "trunc/ip6-ext-trunc.pcap",
    "trunc/ip6-trunc.pcap",
];

/// Non-IP frames these captures really contain (checked with tshark).
const EXPLAINED_SKIPS: [&str; 3] = ["non_ip_arp", "non_ip_ppp", "non_ip_other_ethertype"];

fn counter_line<'a>(stderr: &'a str, label: &str) -> &'a str {
    stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stderr}"))
}

#[test]
fn every_zeek_capture_runs_without_bug_counters() {
    let Some(data) = shared_data() else { return };
    let root = data.join("zeek");
    let mut files = Vec::new();
    files.extend(common::captures(&root));
    files.sort();
    assert!(
        files.len() >= 57,
        "expected the 57 zeek captures, found {}",
        files.len()
    );
    let mut total_spans = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .expect("under zeek/")
            .to_string_lossy()
            .to_string();
        let p = file.to_str().expect("UTF-8 path");
        let one = engine(&["--pcap", p, "--workers", "1"]);
        let two = engine(&["--pcap", p, "--workers", "2", "-q"]);
        let stderr = String::from_utf8_lossy(&one.stderr).to_string();
        assert_eq!(one.status.code(), Some(0), "{rel}: {stderr}");
        assert!(
            one.stdout == two.stdout,
            "{rel}: output differs between 1 and 2 workers"
        );
        assert!(
            !stderr.contains("unsupported link types"),
            "{rel}: {stderr}"
        );
        assert!(!stderr.contains("warning"), "{rel}: {stderr}");
        let malformed = counter_line(&stderr, "packets malformed:");
        if TRUNCATED.contains(&rel.as_str()) {
            assert_ne!(
                malformed.trim(),
                "none",
                "{rel}: its truncation went unnoticed"
            );
        } else {
            assert_eq!(malformed.trim(), "none", "{rel}: malformed packets");
        }
        let skipped = counter_line(&stderr, "packets skipped:");
        for reason in skipped.split_whitespace().filter(|r| *r != "none") {
            let name = reason.split('=').next().unwrap_or_default();
            assert!(
                EXPLAINED_SKIPS.contains(&name),
                "{rel}: unexpected skip reason {reason}"
            );
        }
        assert!(
            counter_line(&stderr, "capture problems:")
                .contains("unknown_interface=0 bad_packet_block=0"),
            "{rel}: {stderr}"
        );
        total_spans += spans(&one.stdout).len();
    }
    assert!(
        total_spans > 150,
        "only {total_spans} spans from the whole corpus"
    );
}

#[test]
fn fabricpath_and_pppoe_over_qinq_decode() {
    let Some(data) = shared_data() else { return };
    let f = data.join("zeek/cisco-fabric-path.pcap");
    let out = engine(&["--pcap", f.to_str().expect("UTF-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 130 frames: 128 IP (64 plain, 64 inside FabricPath) and 2 unknown EtherTypes.
    assert!(stderr.contains("packets decoded: 128"), "{stderr}");
    let f = data.join("zeek/pppoe-over-qinq.pcap");
    let out = engine(&["--pcap", f.to_str().expect("UTF-8 path")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("packets decoded: 86"));
}
