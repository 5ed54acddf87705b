//! Every file of the public corpus in `../shared/data` (captures, and the
//! reference files beside them, which are not captures) through
//! `engine --pcap`: no panic, no hang, and an exit status the README
//! documents. (`zeek.rs` checks what the captures' output says.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::shared_data;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Runs `engine --pcap FILE -o /dev/null` with 2 workers; its exit status
/// and stderr, or a panic if it runs longer than `limit`.
fn run(file: &Path, limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .arg("--pcap")
        .arg(file)
        .args(["-o", "/dev/null", "--workers", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting engine");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for engine") {
            let out = child.wait_with_output().expect("engine's stderr");
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: still running after {limit:?}", file.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_file_of_the_public_corpus_runs_without_panic_or_hang() {
    let Some(data) = shared_data() else { return };
    let mut all = Vec::new();
    files(&data, &mut all);
    all.sort();
    let captures = all
        .iter()
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .count();
    assert!(captures >= 60, "{captures} captures in {}", data.display());
    for file in &all {
        let (code, stderr) = run(file, Duration::from_secs(60));
        let name = file.display();
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        // 0: read; 1: damaged partway; 2: not a capture.
        assert!(
            matches!(code, Some(0..=2)),
            "{name}: exit {code:?}: {stderr}"
        );
        let is_capture = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("pcap" | "pcapng")
        );
        if is_capture {
            assert!(stderr.contains("engine: summary of "), "{name}: {stderr}");
        } else {
            assert_eq!(code, Some(2), "{name} is not a capture: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        }
    }
}
