//! Writes every frame of capture files as a file of its own, for fuzzing
//! a decoder: `split-frames OUT [--per-file N] FILE...` writes, for each
//! distinct frame, `OUT/<n>` holding its link type (2 bytes, big-endian), a
//! zero options byte and the frame's bytes. At most N frames (default 64)
//! are taken from each file.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use capture_pcap::CaptureReader;

fn main() -> ExitCode {
    let mut args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!("usage: split-frames OUT [--per-file N] FILE...");
        return ExitCode::from(2);
    }
    let out = args.remove(0);
    let mut per_file = 64;
    if args.first().is_some_and(|a| a.as_os_str() == "--per-file") {
        match args.get(1).and_then(|n| n.to_str()?.parse().ok()) {
            Some(n) => per_file = n,
            None => {
                eprintln!("split-frames: error: --per-file needs a number");
                return ExitCode::from(2);
            }
        }
        args.drain(..2);
    }
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("split-frames: error: {}: {e}", out.display());
        return ExitCode::from(2);
    }
    let mut seen = HashSet::new();
    let mut written = 0usize;
    for path in &args {
        let mut reader = match CaptureReader::open(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("split-frames: warning: {e}; skipped");
                continue;
            }
        };
        let mut taken = 0;
        while taken < per_file {
            let Ok(Some(frame)) = reader.next_frame() else {
                break;
            };
            let Ok(link) = u16::try_from(frame.link_type) else {
                continue;
            };
            let mut seed = link.to_be_bytes().to_vec();
            seed.push(0);
            seed.extend_from_slice(frame.data);
            if seen.insert(seed.clone()) {
                if let Err(e) = std::fs::write(out.join(written.to_string()), &seed) {
                    eprintln!("split-frames: error: {}: {e}", out.display());
                    return ExitCode::from(2);
                }
                written += 1;
                taken += 1;
            }
        }
    }
    eprintln!("split-frames: {written} frames from {} files", args.len());
    ExitCode::SUCCESS
}
