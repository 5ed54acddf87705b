//! Bad input and bad flags: one clear line naming the file / position / flag,
//! documented exit codes, and flows before a fault still written.

mod common;

use std::path::PathBuf;

use common::{engine, root, spans};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("flowspan-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("temp file");
        p.to_str().expect("UTF-8 path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("testdata/pcap").join(name)).expect("fixture")
}

fn error_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("engine: error"))
        .map(str::to_string)
        .collect()
}

#[test]
fn not_a_capture_is_one_line_exit_2() {
    let t = TempDir::new("garbage");
    let p = t.file("notes.txt", b"this is not a capture file at all\n");
    let out = engine(&["--pcap", &p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!(
            "{p}: file header (byte 0): not a pcap or pcapng file"
        )),
        "{}",
        errors[0]
    );

    let empty = t.file("empty.pcap", b"");
    let out = engine(&["--pcap", &empty]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_lines(&out.stderr)[0].contains("empty input"));

    let out = engine(&["--pcap", "/nonexistent/trace.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_lines(&out.stderr)[0].contains("/nonexistent/trace.pcap"));
}

/// Issue 16: a section header with an unknown byte-order magic or version
/// 2.0 at byte 0 is not a capture (2), not damage partway through (1).
#[test]
fn regression_16_a_bad_first_section_header_exits_2() {
    let t = TempDir::new("shb");
    let section = |bom: u32, major: u16| {
        let mut b = 0x0a0d_0d0au32.to_le_bytes().to_vec();
        b.extend_from_slice(&28u32.to_le_bytes());
        b.extend_from_slice(&bom.to_le_bytes());
        b.extend_from_slice(&major.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&[0xff; 8]);
        b.extend_from_slice(&28u32.to_le_bytes());
        b
    };
    for (name, bytes, expected) in [
        (
            "bom.pcapng",
            section(0x1122_3344, 1),
            "section header byte-order magic is 0x11223344",
        ),
        (
            "v2.pcapng",
            section(0x1a2b_3c4d, 2),
            "unsupported pcapng version 2.0",
        ),
    ] {
        let p = t.file(name, &bytes);
        let out = engine(&["--pcap", &p]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let errors = error_lines(&out.stderr);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&format!("{p}: record 1 (byte 0): {expected}")),
            "{}",
            errors[0]
        );
    }
}

/// Issue 16: a ring flag asked for tens of GiB of kernel memory (no cgroup
/// charges it) and the OOM killer took unrelated processes. The total is
/// checked before any ring is opened, so even an interface that does not
/// exist, or a run without privileges, gets the answer.
#[test]
fn regression_16_ring_memory_is_bounded_before_anything_is_opened() {
    let out = engine(&["-i", "fsnope0", "--ring-block-size", "1073741824"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--ring-block-size") && stderr.contains("1073741824"),
        "{stderr}"
    );
    assert!(stderr.contains("to 64 MiB (67108864)"), "{stderr}");

    let out = engine(&[
        "-i",
        "fsnope0",
        "-i",
        "fsnope1",
        "--workers",
        "2",
        "--ring-block-size",
        "67108864",
        "--ring-blocks",
        "65536",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(
            "--ring-block-size 67108864 × --ring-blocks 65536 × 4 rings (2 interfaces × --workers 2) = 16384.0 GiB of kernel ring memory"
        ),
        "{}",
        errors[0]
    );
    assert!(
        !errors[0].contains("fsnope"),
        "checked before opening: {}",
        errors[0]
    );
}

/// Issue 16: `engine --pcap big.pcap | head -c 1000` exited 0 without a
/// word while most spans were discarded.
#[test]
fn regression_16_a_closed_output_pipe_is_reported() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let t = TempDir::new("pipe");
    let path = t.file("big.pcap", b"");
    let options = flowspan_testdata::bigcap::BigcapOptions {
        packets: 200_000,
        tunnels: false,
        ..Default::default()
    };
    let mut file = std::fs::File::create(&path).expect("capture file");
    flowspan_testdata::bigcap::write_bigcap(&mut file, options).expect("capture written");
    drop(file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--pcap", &path, "--workers", "1", "--batch-size", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine starts");
    let mut first = [0u8; 1000];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the first spans");
    // The read end is closed here, as `head -c 1000` does.
    let out = child.wait_with_output().expect("engine ends");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("standard output was closed by its reader"))
        .unwrap_or_else(|| panic!("no word of the closed pipe: {stderr}"));
    assert!(warning.starts_with("engine: warning: "), "{warning}");
    assert!(warning.contains("reading stopped after"), "{warning}");
}

#[test]
fn truncated_file_header() {
    let t = TempDir::new("hdr");
    let p = t.file("short.pcap", &fixture("tcp_lifecycle.pcap")[..10]);
    let out = engine(&["--pcap", &p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        error_lines(&out.stderr)[0]
            .ends_with("file header (byte 0): truncated file header (need 24 bytes, 10 left)")
    );
}

#[test]
fn truncated_record_keeps_earlier_flows_and_exits_1() {
    let t = TempDir::new("trunc");
    let full = fixture("tcp_lifecycle.pcap");
    let complete = spans(&engine(&["--pcap", &t.file("full.pcap", &full)]).stdout);
    // Cut in the middle of the 10th record's data, and in the 10th record header.
    let mut offset = 24;
    let mut starts = Vec::new();
    while offset + 16 <= full.len() {
        starts.push(offset);
        let caplen =
            u32::from_le_bytes(full[offset + 8..offset + 12].try_into().expect("4 bytes")) as usize;
        offset += 16 + caplen;
    }
    let tenth = starts[9];
    for (cut, what) in [
        (tenth + 20, "truncated packet data"),
        (tenth + 5, "truncated record header (need 16 bytes, 5 left)"),
    ] {
        let p = t.file("cut.pcap", &full[..cut]);
        let out = engine(&["--pcap", &p]);
        assert_eq!(out.status.code(), Some(1), "cut at {cut}");
        let errors = error_lines(&out.stderr);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&format!("record 10 (byte {tenth}): {what}")),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains("flows from the records before it were written"));
        let got = spans(&out.stdout);
        // The first flow (8 packets) closed normally before the cut.
        assert!(!got.is_empty() && got.len() < complete.len() + 1);
        assert_eq!(
            got[0], complete[0],
            "the first flow is unaffected by the cut"
        );
    }
}

#[test]
fn absurd_record_length_exits_1() {
    let t = TempDir::new("absurd");
    let mut bytes = fixture("icmp_pairs.pcap");
    let first_len: usize = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes")) as usize;
    let second = 24 + 16 + first_len;
    bytes[second + 8..second + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let p = t.file("absurd.pcap", &bytes);
    let out = engine(&["--pcap", &p]);
    assert_eq!(out.status.code(), Some(1));
    let e = &error_lines(&out.stderr)[0];
    assert!(e.contains(&format!("record 2 (byte {second}): captured length 2147483647 is absurd (expected at most 262144 bytes)")), "{e}");
    assert_eq!(
        spans(&out.stdout).len(),
        1,
        "the packet before the fault still makes a flow"
    );
}

#[test]
fn corrupt_pcapng_block_exits_1() {
    let t = TempDir::new("pcapng");
    let mut bytes = fixture("multi_interface.pcapng");
    // Third block (after SHB 28 bytes and first IDB): make its length not a multiple of 4.
    let shb_len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let idb_len =
        u32::from_le_bytes(bytes[shb_len + 4..shb_len + 8].try_into().expect("4 bytes")) as usize;
    let at = shb_len + idb_len;
    bytes[at + 4..at + 8].copy_from_slice(&13u32.to_le_bytes());
    let p = t.file("bad.pcapng", &bytes);
    let out = engine(&["--pcap", &p]);
    assert_eq!(out.status.code(), Some(1));
    let e = &error_lines(&out.stderr)[0];
    assert!(
        e.contains(&format!(
            "record 3 (byte {at}): block total length 13 is invalid"
        )),
        "{e}"
    );

    // A block whose trailing length disagrees.
    let mut bytes = fixture("multi_interface.pcapng");
    bytes[shb_len + idb_len - 4] ^= 0x40;
    let p = t.file("bad2.pcapng", &bytes);
    let out = engine(&["--pcap", &p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_lines(&out.stderr)[0].contains("trailing length"));
}

#[test]
fn bad_flags_name_the_flag() {
    let f = root().join("testdata/pcap/icmp_pairs.pcap");
    let p = f.to_str().expect("UTF-8 path");
    for (args, needle) in [
        (vec!["--pcap", p, "--workers", "0"], "--workers"),
        (
            vec!["--pcap", p, "--local-net", "10.0.0.0/40"],
            "--local-net",
        ),
        (vec!["--pcap", p, "--local-net", "banana"], "--local-net"),
        // Issue 16: host bits below the prefix were accepted silently.
        (vec!["--pcap", p, "--local-net", "10.0.0.1/8"], "10.0.0.0/8"),
        (vec!["--pcap", p, "--idle-timeout", "0"], "--idle-timeout"),
        (vec!["--pcap", p, "--active-timeout=-5"], "--active-timeout"),
        (
            vec!["--pcap", p, "--community-id-seed", "70000"],
            "--community-id-seed",
        ),
        (vec!["--pcap", p, "--flow-memory", "10"], "--flow-memory"),
        (vec!["--pcap", p, "--flow-memory", "2X"], "--flow-memory"),
        (
            vec!["--pcap", p, "--flow-memory", "1G", "--max-flows", "9"],
            "--max-flows",
        ),
        (
            vec!["--pcap", p, "--unestablished-timeout", "0"],
            "--unestablished-timeout",
        ),
        (vec!["--pcap", p, "--bogus"], "--bogus"),
        (vec![], "--pcap"),
        // Issue 16: a negative number read as "unexpected argument '-1'".
        (vec!["--pcap", p, "--workers", "-1"], "'-1' for '--workers"),
        (
            vec!["--pcap", p, "--max-flows", "-3"],
            "'-3' for '--max-flows",
        ),
        (
            vec!["--pcap", p, "--idle-timeout", "-2"],
            "'-2' for '--idle-timeout",
        ),
        (vec!["--pcap", p, "--opt-in", "nope"], "--opt-in"),
        // Issue 19: several files merge, but standard input does not.
        (vec!["--pcap", "-", "--pcap", p], "--pcap -"),
    ] {
        let out = engine(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Issue 16: clap's messages took several lines without the prefix.
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(
            stderr.starts_with("engine: error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    }
    let out = engine(&["--pcap", p, "-o", "/nonexistent/dir/spans.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_lines(&out.stderr)[0].contains("--output /nonexistent/dir/spans.json"));
}

#[test]
fn help_documents_every_flag() {
    let out = engine(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--pcap",
        "--output",
        "--workers",
        "--idle-timeout",
        "--active-timeout",
        "--max-flows",
        "--flow-memory",
        "--unestablished-timeout",
        "--community-id-seed",
        "--local-net",
        "--batch-size",
        "--quiet",
        "--kubeconfig",
        "--k8s-in-cluster",
        "--k8s-snapshot",
        "--k8s-cluster-name",
        "--k8s-annotation",
        "--k8s-sync-timeout",
        "--no-processes",
        "Exit status",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// Standard error closed by its reader (`engine … 2>&1 | head` once `head`
/// has its lines): the summary and error lines are lost, the run is not.
/// std's `eprintln!` panicked there, ending every run with status 101.
#[test]
fn a_closed_standard_error_loses_lines_not_the_run() {
    use std::process::{Command, Stdio};
    let fixture = root().join("testdata/pcap/tcp_lifecycle.pcap");
    for (args, expected) in [
        (vec!["--pcap", fixture.to_str().expect("path")], 0),
        (vec!["--pcap", "/nonexistent/capture.pcap"], 2),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(&args)
            .args(["-o", "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("engine");
        drop(child.stderr.take());
        let status = child.wait().expect("engine ends");
        assert_eq!(status.code(), Some(expected), "{args:?}");
    }
}
