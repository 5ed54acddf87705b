//! Writes flowspan's pcap fixtures: `gen-fixtures [DIR]` (default `testdata/pcap`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("testdata/pcap"), PathBuf::from);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("gen-fixtures: error: {}: cannot create: {e}", dir.display());
        return ExitCode::from(2);
    }
    for f in flowspan_testdata::fixtures() {
        let path = dir.join(f.name);
        if let Err(e) = std::fs::write(&path, &f.bytes) {
            eprintln!("gen-fixtures: error: {}: cannot write: {e}", path.display());
            return ExitCode::from(2);
        }
        eprintln!(
            "wrote {} ({} bytes): {}",
            path.display(),
            f.bytes.len(),
            f.about
        );
    }
    // The Kubernetes enrichment fixture: a capture and the cluster it
    // was taken in, beside the other fixtures.
    let k8s_dir = dir.join("../k8s");
    let files = [
        (
            dir.join("kubernetes.pcap"),
            flowspan_testdata::kubernetes::kubernetes_pcap(),
        ),
        (
            k8s_dir.join("cluster.json"),
            flowspan_testdata::kubernetes::cluster_json().into_bytes(),
        ),
    ];
    for (path, bytes) in files {
        let written =
            std::fs::create_dir_all(&k8s_dir).and_then(|()| std::fs::write(&path, &bytes));
        if let Err(e) = written {
            eprintln!("gen-fixtures: error: {}: cannot write: {e}", path.display());
            return ExitCode::from(2);
        }
        eprintln!(
            "wrote {} ({} bytes): Kubernetes enrichment",
            path.display(),
            bytes.len()
        );
    }
    ExitCode::SUCCESS
}
