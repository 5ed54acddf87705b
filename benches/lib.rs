//! Benchmark helpers: the generated fixtures as in-memory frames.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::Path;

/// One frame of a fixture: link type, timestamp, bytes.
pub type OwnedFrame = (u32, u64, Vec<u8>);

/// The captures in `testdata/pcap/`, sorted.
fn fixture_paths() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/pcap exists")
        .map(|e| e.expect("directory entry").path())
        .collect();
    paths.sort();
    paths
}

/// Reads every frame of every capture in `testdata/pcap/`.
///
/// # Panics
/// If the fixtures are missing, unreadable or damaged (run
/// `./scripts/regenerate-testdata.sh`): a bench must not quietly run on less.
pub fn fixture_frames() -> Vec<OwnedFrame> {
    let mut frames = Vec::new();
    for path in fixture_paths() {
        let mut r = capture_pcap::CaptureReader::open(&path).expect("fixture opens");
        while let Some(f) = r.next_frame().expect("fixture reads to the end") {
            frames.push((f.link_type, f.ts_ns, f.data.to_vec()));
        }
    }
    frames
}

/// The flow records of every fixture, each capture metered on its own with
/// the default configuration and flushed at its end.
///
/// # Panics
/// As [`fixture_frames`].
pub fn fixture_records() -> Vec<engine::FlowRecord> {
    use engine::{Decoded, FlowConfig, FlowTable, LinkType, decode};
    let mut records = Vec::new();
    for path in fixture_paths() {
        let mut r = capture_pcap::CaptureReader::open(&path).expect("fixture opens");
        let mut table = FlowTable::new(FlowConfig::default());
        let mut clock = 0;
        while let Some(f) = r.next_frame().expect("fixture reads to the end") {
            if let Decoded::Ip(p) = decode(LinkType(f.link_type), f.data) {
                clock = clock.max(f.ts_ns);
                table.observe(&p, f.ts_ns, clock, &mut records);
            }
        }
        table.flush(clock, &mut records);
    }
    records
}

/// The first `count` Ethernet frames of at most 1514 bytes (what a veth
/// carries) of the capture at `path`, for the live-capture benches. With
/// `whole`, each frame is padded with zeros to its original length (a
/// headers-only capture replayed as the wire carried it).
///
/// # Errors
/// The capture cannot be opened or read: the reader's message.
pub fn wire_frames(path: &str, count: usize, whole: bool) -> Result<Vec<Vec<u8>>, String> {
    let mut frames = Vec::with_capacity(count);
    let mut reader = capture_pcap::CaptureReader::open(path).map_err(|e| e.to_string())?;
    while frames.len() < count {
        let Some(f) = reader.next_frame().map_err(|e| e.to_string())? else {
            break;
        };
        let len = if whole {
            f.orig_len as usize
        } else {
            f.data.len()
        };
        if f.link_type == 1 && (14..=1514).contains(&len) {
            let mut frame = f.data.to_vec();
            frame.resize(len, 0);
            frames.push(frame);
        }
    }
    Ok(frames)
}
