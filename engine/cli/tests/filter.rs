//! Capture filters, flow sampling and record filters through the `engine`
//! binary. tcpdump is the oracle for capture filters: `engine --pcap F
//! --filter E` must write what `tcpdump -r F -w - E | engine --pcap -`
//! does, on the public captures and on our fixtures.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{engine, engine_stdin, root, s, shared_data, skip, spans};

/// Where two outputs' spans first differ, in a line.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (spans(a), spans(b));
    match a.iter().zip(&b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "span {i} of {} and {}: {} against {}",
            a.len(),
            b.len(),
            s(&a[i], "flow.community_id"),
            s(&b[i], "flow.community_id")
        ),
        None => format!("{} spans against {}", a.len(), b.len()),
    }
}

/// `tcpdump -r file -w - expression` with nanosecond timestamps, or `None`
/// if tcpdump refused (an expression that does not apply to the file's
/// link type, or a file libpcap cannot read).
fn tcpdump(file: &Path, expression: &str) -> Option<Vec<u8>> {
    let out = Command::new("tcpdump")
        .args(["--time-stamp-precision=nano", "-r"])
        .arg(file)
        .args(["-w", "-"])
        .args(expression.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .expect("running tcpdump");
    out.status.success().then_some(out.stdout)
}

fn have_tcpdump() -> bool {
    let ok = Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("tcpdump is not installed (Debian package tcpdump): capture filter tests");
    }
    ok
}

#[test]
fn capture_filters_keep_what_tcpdump_keeps() {
    let Some(data) = shared_data() else { return };
    if !have_tcpdump() {
        return;
    }
    let mut files = Vec::new();
    files.extend(common::captures(&data));
    let shared = files.len();
    files.extend(common::captures(&root().join("testdata/pcap")));
    assert!(shared >= 60, "only {shared} public captures found");
    let (mut compared, mut narrowed, mut refused) = (0, 0, 0);
    let mut unread = Vec::new();
    for file in &files {
        // Files libpcap cannot read (pcapng with several link types) are
        // no oracle.
        let Some(_) = tcpdump(file, "") else {
            unread.push(file.display().to_string());
            continue;
        };
        let path = file.to_str().expect("UTF-8 path");
        let all = spans(&engine(&["--pcap", path, "-q", "--workers", "1"]).stdout).len();
        for expression in common::FILTER_EXPRESSIONS {
            let ours = engine(&[
                "--pcap",
                path,
                "-q",
                "--workers",
                "1",
                "--filter",
                expression,
            ]);
            assert_eq!(
                ours.status.code(),
                Some(0),
                "{path} {expression:?}: {}",
                String::from_utf8_lossy(&ours.stderr)
            );
            match tcpdump(file, expression) {
                Some(kept) => {
                    let theirs = engine_stdin(&["--pcap", "-", "-q", "--workers", "1"], &kept);
                    if ours.stdout != theirs.stdout {
                        panic!(
                            "{path}: --filter {expression:?} differs from tcpdump's: {}",
                            first_difference(&ours.stdout, &theirs.stdout)
                        );
                    }
                    compared += 1;
                    let n = spans(&ours.stdout).len();
                    if n > 0 && n < all {
                        narrowed += 1;
                    }
                }
                None => {
                    // tcpdump refuses an expression that does not apply to
                    // the link type; the engine matches nothing there.
                    assert!(
                        spans(&ours.stdout).is_empty(),
                        "{path}: {expression:?}, which tcpdump refuses, kept spans"
                    );
                    refused += 1;
                }
            }
        }
    }
    eprintln!(
        "{compared} file and expression pairs equal to tcpdump's, {narrowed} of them keeping some \
         flows but not all; {refused} refused by tcpdump; files libpcap cannot read: {unread:?}"
    );
    assert!(compared >= 900, "{compared}");
    assert!(narrowed >= 100, "{narrowed}");
}

#[test]
fn filter_words_after_the_options_are_the_filter() {
    if common::skip_without_libpcap() {
        return;
    }
    let file = root().join("testdata/pcap/tunnels.pcap");
    let file = file.to_str().unwrap();
    let a = engine(&["--pcap", file, "-q", "--filter", "udp port 4789"]);
    let b = engine(&["--pcap", file, "-q", "udp", "port", "4789"]);
    assert_eq!(a.status.code(), Some(0));
    assert!(!spans(&a.stdout).is_empty());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn bad_filters_are_one_line_and_exit_2() {
    if common::skip_without_libpcap() {
        return;
    }
    let file = root().join("testdata/pcap/tunnels.pcap");
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--filter", "tcp port"],
            "engine: error: filter \"tcp port\": can't parse filter expression: syntax error",
        ),
        (
            &["--filter", "port 70000"],
            "engine: error: filter \"port 70000\": ",
        ),
        (
            &["--filter", "tcp", "udp"],
            "engine: error: --filter and a filter after the options (\"udp\") are both given; give one",
        ),
        (
            &[file],
            "is a file, not a filter expression; give each capture file with --pcap",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["--pcap", file];
        args.extend_from_slice(extra);
        let out = engine(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn without_libpcap_a_filter_names_the_package() {
    // FLOWSPAN_LIBPCAP names the library to load instead of the system's:
    // here one that does not exist.
    let empty = common::scratch("flowspan-nolibpcap", "dir");
    std::fs::create_dir_all(&empty).unwrap();
    let file = root().join("testdata/pcap/tunnels.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", file.to_str().unwrap(), "--filter", "tcp"])
        .env("FLOWSPAN_LIBPCAP", empty.join("libpcap-absent.so"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("apt-get install libpcap0.8"), "{err}");
    // Without a filter, libpcap is never loaded.
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", file.to_str().unwrap(), "-q"])
        .env("FLOWSPAN_LIBPCAP", empty.join("libpcap-absent.so"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&empty);
}

/// The Community IDs of the spans of `engine args`.
fn kept_flows(args: &[&str]) -> BTreeSet<String> {
    let out = engine(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    spans(&out.stdout)
        .iter()
        .map(|sp| s(sp, "flow.community_id"))
        .collect()
}

#[test]
fn sampled_flows_are_the_same_for_any_worker_count_and_unchanged() {
    let file = root().join("testdata/pcap/tunnels.pcap");
    let file = file.to_str().unwrap();
    let all = engine(&["--pcap", file, "-q", "--workers", "1"]);
    let one = engine(&[
        "--pcap",
        file,
        "-q",
        "--workers",
        "1",
        "--sample-flows",
        "2",
    ]);
    let three = engine(&[
        "--pcap",
        file,
        "-q",
        "--workers",
        "3",
        "--sample-flows",
        "2",
    ]);
    assert_eq!(
        one.stdout, three.stdout,
        "byte-identical for 1 and 3 workers"
    );
    let all = spans(&all.stdout);
    let kept = spans(&one.stdout);
    assert!(
        !kept.is_empty() && kept.len() < all.len(),
        "{} of {}",
        kept.len(),
        all.len()
    );
    // A kept flow's spans are what they are unsampled, with the rate added.
    for sp in &kept {
        let mut a = common::attrs(sp);
        assert_eq!(
            a.remove("flow.sampling.rate"),
            Some(serde_json::json!({"intValue": "2"}))
        );
        let id = s(sp, "flow.community_id");
        let span_id = &sp["spanId"];
        let same = all
            .iter()
            .find(|u| s(u, "flow.community_id") == id && &u["spanId"] == span_id)
            .expect("the kept span is in the unsampled output");
        assert_eq!(a, common::attrs(same));
        assert_eq!(sp["startTimeUnixNano"], same["startTimeUnixNano"]);
        assert_eq!(sp["endTimeUnixNano"], same["endTimeUnixNano"]);
    }
}

#[test]
fn record_rules_keep_and_drop_by_attribute() {
    let file = root().join("testdata/pcap/tunnels.pcap");
    let file = file.to_str().unwrap();
    let all = spans(&engine(&["--pcap", file, "-q"]).stdout);
    let tcp = spans(&engine(&["--pcap", file, "-q", "--keep", "network.transport=tcp"]).stdout);
    let not_tcp = spans(&engine(&["--pcap", file, "-q", "--drop", "network.transport=tcp"]).stdout);
    assert!(!tcp.is_empty() && !not_tcp.is_empty());
    assert_eq!(tcp.len() + not_tcp.len(), all.len());
    assert!(tcp.iter().all(|sp| s(sp, "network.transport") == "tcp"));
    assert!(not_tcp.iter().all(|sp| s(sp, "network.transport") != "tcp"));
    let bad = engine(&["--pcap", file, "--keep", "transport=tcp"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        err.contains("--keep") && err.contains("not a span attribute name"),
        "{err}"
    );
}

/// `capture` (a little-endian microsecond pcap of Ethernet frames) as a
/// second capture point would have taken it: 802.1Q tags taken out and
/// every frame cut to `snaplen` bytes.
fn other_capture_point(capture: &[u8], snaplen: usize) -> Vec<u8> {
    let mut out = capture[..24].to_vec();
    out[16..20].copy_from_slice(&(snaplen as u32).to_le_bytes());
    let mut at = 24;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    while at + 16 <= capture.len() {
        let caplen = u32_at(capture, at + 8) as usize;
        let mut orig = u32_at(capture, at + 12);
        let mut frame = capture[at + 16..at + 16 + caplen].to_vec();
        if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
            frame.drain(12..16);
            orig -= 4;
        }
        frame.truncate(snaplen);
        out.extend_from_slice(&capture[at..at + 8]);
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&orig.to_le_bytes());
        out.extend_from_slice(&frame);
        at += 16 + caplen;
    }
    out
}

#[test]
fn sampling_keeps_the_same_flows_at_every_capture_point_and_about_one_in_n() {
    let dir = common::scratch("flowspan-sampling", "captures");
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.pcap");
    let b = dir.join("b.pcap");
    let mut bytes = Vec::new();
    let options = flowspan_testdata::bigcap::BigcapOptions {
        packets: 150_000,
        duration_secs: 10,
        seed: 7,
        tunnels: false,
    };
    let stats = flowspan_testdata::bigcap::write_bigcap(&mut bytes, options).unwrap();
    std::fs::write(&a, &bytes).unwrap();
    std::fs::write(&b, other_capture_point(&bytes, 80)).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let n = 10;
    let rate = n.to_string();
    let all_a = kept_flows(&["--pcap", a, "-q"]);
    let all_b = kept_flows(&["--pcap", b, "-q"]);
    assert_eq!(all_a.len() as u64, stats.flows);
    assert_eq!(all_a, all_b, "the two capture points see the same flows");
    let one = engine(&["--pcap", a, "-q", "--workers", "1", "--sample-flows", &rate]);
    let two = engine(&["--pcap", a, "-q", "--workers", "2", "--sample-flows", &rate]);
    assert_eq!(one.stdout, two.stdout, "byte-identical for 1 and 2 workers");
    let kept_a = kept_flows(&["--pcap", a, "-q", "--sample-flows", &rate]);
    let kept_b = kept_flows(&["--pcap", b, "-q", "--sample-flows", &rate]);
    assert_eq!(kept_a, kept_b, "both capture points keep the same flows");
    assert!(kept_a.is_subset(&all_a));
    // Binomial(flows, 1/n): within 5 standard deviations of flows/n.
    let flows = all_a.len() as f64;
    let p = 1.0 / f64::from(n);
    let sd = (flows * p * (1.0 - p)).sqrt();
    let kept = kept_a.len() as f64;
    eprintln!(
        "{kept} of {flows} flows kept at 1 in {n} (expected {:.0} ± {sd:.1})",
        flows * p
    );
    assert!((kept - flows * p).abs() <= 5.0 * sd, "{kept} of {flows}");
    // Counted: the summary says how many records were left out.
    let out = engine(&["--pcap", a, "-o", "/dev/null", "--sample-flows", &rate]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(
            |l| l.starts_with(&format!("  flow sampling (1 in {n} flows): "))
                && !l.contains(": 0 records")
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_config_file_sets_filters_and_sampling_as_the_flags_do() {
    let file = root().join("testdata/pcap/tunnels.pcap");
    let file = file.to_str().unwrap();
    let dir = common::scratch("flowspan-filter-config", "dir");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "sample-flows: 2\ndrop:\n  - network.transport=icmp\n  - destination.port=53\nkeep:\n  - network.type=ipv4\n",
    )
    .unwrap();
    let flags = engine(&[
        "--pcap",
        file,
        "-q",
        "--sample-flows",
        "2",
        "--drop",
        "network.transport=icmp",
        "--drop",
        "destination.port=53",
        "--keep",
        "network.type=ipv4",
    ]);
    let from_file = engine(&["--pcap", file, "-q", "--config", config.to_str().unwrap()]);
    assert_eq!(flags.status.code(), Some(0));
    assert!(!spans(&flags.stdout).is_empty());
    assert_eq!(flags.stdout, from_file.stdout);
    // A bad rule in the file names the file, the line and the key.
    std::fs::write(&config, "drop:\n  - port=53\n").unwrap();
    let bad = engine(&["--pcap", file, "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("config.yaml:1: key drop: "), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
