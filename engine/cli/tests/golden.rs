//! Golden tests: every generated fixture through `engine --pcap`, compared
//! with `testdata/golden/`. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p flowspan-cli --test golden`.

mod common;

use common::{engine, engine_stdin, root, spans};

/// The summary without its first line (which has the elapsed time), with
/// the fixture's path (which depends on the checkout) replaced by its name.
fn stable_summary(stderr: &[u8], path: &str, name: &str) -> String {
    let text = String::from_utf8_lossy(stderr).replace(path, name);
    text.lines()
        .filter(|l| !l.starts_with("engine: summary of "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn render(stdout: &[u8], stderr: &[u8], path: &str, name: &str) -> String {
    let mut out = String::new();
    for span in spans(stdout) {
        out.push_str(&serde_json::to_string(&span).expect("serializable"));
        out.push('\n');
    }
    out.push_str("# stderr\n");
    out.push_str(&stable_summary(stderr, path, name));
    out
}

#[test]
fn committed_fixtures_are_what_the_generator_makes() {
    for f in flowspan_testdata::fixtures() {
        let path = root().join("testdata/pcap").join(f.name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo run -p flowspan-testdata`)",
                path.display()
            )
        });
        assert!(
            committed == f.bytes,
            "{} differs from the generator's output; run `cargo run -p flowspan-testdata`",
            f.name
        );
    }
}

#[test]
fn fixtures_match_golden_output_for_1_and_3_workers() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let golden_dir = root().join("testdata/golden");
    let mut mismatches = Vec::new();
    for f in flowspan_testdata::fixtures() {
        let path = root().join("testdata/pcap").join(f.name);
        let path = path.to_str().expect("UTF-8 path");
        let mut args = vec!["--pcap", path];
        args.extend_from_slice(f.args);
        let one = engine(&[args.as_slice(), &["--workers", "1"]].concat());
        let three = engine(&[args.as_slice(), &["--workers", "3"]].concat());
        assert_eq!(
            one.status.code(),
            Some(0),
            "{}: {}",
            f.name,
            String::from_utf8_lossy(&one.stderr)
        );
        // `--max-flows` is a per-table cap (split among workers): which flow
        // is evicted depends on sharding, the one documented exception.
        if f.args.contains(&"--max-flows") {
            let again = engine(&[args.as_slice(), &["--workers", "1"]].concat());
            assert!(
                one.stdout == again.stdout,
                "{}: output differs run to run",
                f.name
            );
        } else {
            assert!(
                one.stdout == three.stdout,
                "{}: output differs between 1 and 3 workers",
                f.name
            );
        }
        assert!(!one.stdout.is_empty(), "{}: no spans", f.name);
        let rendered = render(&one.stdout, &one.stderr, path, f.name);
        let golden = golden_dir.join(format!("{}.golden", f.name));
        if update {
            std::fs::create_dir_all(&golden_dir).expect("creating testdata/golden");
            std::fs::write(&golden, &rendered).expect("writing golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()));
        if expected != rendered {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}\n+++ got\n{rendered}",
                f.name
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn output_is_identical_run_to_run_from_stdin_and_with_small_batches() {
    let path = root().join("testdata/pcap/tcp_lifecycle.pcap");
    let bytes = std::fs::read(&path).expect("fixture");
    let p = path.to_str().expect("UTF-8 path");
    let a = engine(&["--pcap", p]);
    let b = engine(&["--pcap", p]);
    assert!(a.stdout == b.stdout);
    let c = engine_stdin(&["--pcap", "-"], &bytes);
    assert_eq!(c.status.code(), Some(0));
    assert!(
        a.stdout == c.stdout,
        "stdin output differs from file output"
    );
    // Smaller requests: same spans, more lines.
    let d = engine(&["--pcap", p, "--batch-size", "2"]);
    assert_eq!(spans(&a.stdout), spans(&d.stdout));
    assert!(d.stdout.iter().filter(|b| **b == b'\n').count() > 1);
}

#[test]
fn output_file_equals_stdout() {
    let path = root().join("testdata/pcap/icmp_pairs.pcap");
    let p = path.to_str().expect("UTF-8 path");
    let dir = std::env::temp_dir().join(format!("flowspan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("spans.json");
    let o = out.to_str().expect("UTF-8 path");
    let to_file = engine(&["--pcap", p, "-o", o, "-q"]);
    assert_eq!(to_file.status.code(), Some(0));
    assert!(
        to_file.stdout.is_empty() && to_file.stderr.is_empty(),
        "-q prints nothing"
    );
    let to_stdout = engine(&["--pcap", p]);
    assert!(std::fs::read(&out).expect("output file") == to_stdout.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}
