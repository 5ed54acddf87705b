//! Several capture files in one run (issue 19): `--pcap` repeated or given
//! a glob reads the files merged in packet-time order, as one stream whose
//! flows go on across files. Every fixture's frames, 1 µs apart, are split
//! among files (interleaved, and rotated into consecutive parts); each
//! split gives byte for byte the output of the whole. A file that is not a
//! capture, or is damaged part-way, is reported, the others are read on,
//! and the exit status is 1.

mod common;

use std::path::{Path, PathBuf};

use common::engine;
use common::live::fixture_frames;

const T0: u64 = 1_700_000_000_000_000_000;

fn scratch(name: &str) -> PathBuf {
    common::scratch("merge", name)
}

/// Writes frames `(index, frame)` to `path`, frame k at T0 + k µs.
fn write(path: &Path, frames: &[(usize, &Vec<u8>)]) -> String {
    let mut pcap = flowspan_testdata::Pcap::new(1);
    for (k, f) in frames {
        pcap.add(T0 + *k as u64 * 1000, f);
    }
    std::fs::write(path, pcap.take_bytes()).expect("writing a part");
    path.to_str().expect("path").to_owned()
}

fn run(args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = engine(&[args, &["-q"]].concat());
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn split_captures_merge_back_into_the_whole() {
    let dir = scratch("split");
    let frames = fixture_frames();
    let all: Vec<(usize, &Vec<u8>)> = frames.iter().enumerate().collect();
    let whole = write(&dir.join("whole.pcap"), &all);
    let (status, want, stderr) = run(&["--pcap", &whole]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(common::spans(&want).len() > 40);

    // Interleaved: frame k in file k % 3, each file given by a flag.
    let parts: Vec<String> = (0..3)
        .map(|p| {
            let mine: Vec<_> = all.iter().filter(|(k, _)| k % 3 == p).copied().collect();
            write(&dir.join(format!("inter-{p}.pcap")), &mine)
        })
        .collect();
    let mut args = Vec::new();
    for p in &parts {
        args.extend(["--pcap", p.as_str()]);
    }
    let (status, got, stderr) = run(&args);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        got == want,
        "interleaved files do not give the whole's output"
    );
    // Given in another order: the same (packet time decides).
    let (_, got, _) = run(&[
        "--pcap", &parts[2], "--pcap", &parts[0], "--pcap", &parts[1],
    ]);
    assert!(got == want, "the order of the files changed the output");

    // Rotated: consecutive parts, one glob.
    let chunk = all.len().div_ceil(4);
    for (n, part) in all.chunks(chunk).enumerate() {
        write(&dir.join(format!("rotated-{n}.pcap")), part);
    }
    let pattern = dir.join("rotated-*.pcap");
    let (status, got, stderr) = run(&["--pcap", pattern.to_str().expect("path"), "--workers", "3"]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(got == want, "rotated files do not give the whole's output");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_file_is_reported_and_the_others_are_read_on() {
    let dir = scratch("bad");
    let frames = fixture_frames();
    let all: Vec<(usize, &Vec<u8>)> = frames.iter().enumerate().collect();
    let odd: Vec<_> = all.iter().filter(|(k, _)| k % 2 == 1).copied().collect();
    let even: Vec<_> = all.iter().filter(|(k, _)| k % 2 == 0).copied().collect();
    let odd_path = write(&dir.join("odd.pcap"), &odd);
    // The even frames, cut inside a record two thirds of the way in; and
    // what comes before the cut, as a file of its own.
    let keep = even.len() * 2 / 3;
    let head = write(&dir.join("even-head.pcap"), &even[..keep]);
    let mut damaged = std::fs::read(&head).expect("head");
    let rest = {
        let full = write(&dir.join("even-full.pcap"), &even);
        std::fs::read(full).expect("full")
    };
    damaged.extend_from_slice(&rest[damaged.len()..damaged.len() + 20]);
    let damaged_path = dir.join("even-damaged.pcap");
    std::fs::write(&damaged_path, &damaged).expect("damaged");
    let garbage = dir.join("notes.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").expect("garbage");

    let (status, want, stderr) = run(&["--pcap", &odd_path, "--pcap", &head]);
    assert_eq!(status, Some(0), "{stderr}");
    let (status, got, stderr) = run(&[
        "--pcap",
        &odd_path,
        "--pcap",
        garbage.to_str().expect("path"),
        "--pcap",
        damaged_path.to_str().expect("path"),
    ]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(got == want, "the good files and the damaged one's head");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("engine: error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("even-damaged.pcap: record")
                && l.ends_with("the other files were read on")),
        "{stderr}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("notes.pcap") && l.ends_with("left out of the merge")),
        "{stderr}"
    );

    // Nothing readable at all, or nothing matching: exit 2, one line.
    let (status, _, stderr) = run(&[
        "--pcap",
        garbage.to_str().expect("path"),
        "--pcap",
        garbage
            .with_file_name("missing.pcap")
            .to_str()
            .expect("path"),
    ]);
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("engine: error: --pcap: none of the 2 files could be read")
    );
    let nothing = dir.join("none-*.pcap");
    let (status, _, stderr) = run(&["--pcap", nothing.to_str().expect("path")]);
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "engine: error: --pcap {:?}: no file matches this pattern",
            nothing.to_str().expect("path")
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}
