//! Helpers shared by the `engine` binary's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub use capture_afpacket::testnet::skip;

pub mod apiserver;
pub mod cluster;
pub mod live;

/// `../shared/data` beside the checkout, or `None` (tests then skip; in CI
/// they fail).
pub fn shared_data() -> Option<PathBuf> {
    let dir = root().join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!(
            "{} is absent (a clone outside CI): tests on the public pcaps",
            dir.display()
        ));
        None
    }
}

/// Every capture file (`.pcap`, `.pcapng`) under `dir`, recursively,
/// sorted.
pub fn captures(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Capture filter expressions of the kinds issue 20 names: ports, hosts,
/// nets, `vlan`, `ip6`, `icmp`, `tcp[tcpflags]`, and lengths and header
/// fields (none names a host, which libpcap would resolve).
pub const FILTER_EXPRESSIONS: [&str; 12] = [
    "tcp port 80",
    "udp and not port 53",
    "host 192.168.1.1 or host 10.0.0.1",
    "net 10.0.0.0/8 or net 192.168.0.0/16",
    "ip6",
    "icmp or icmp6",
    "vlan",
    "vlan and tcp",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
    "greater 200",
    "ip[8] < 64",
    "ip6 and tcp port 80",
];

/// Whether libpcap is missing (then the caller skips; in CI and as root
/// [`skip`] fails).
pub fn skip_without_libpcap() -> bool {
    match capture_filter::Libpcap::load() {
        Ok(_) => false,
        Err(e) => {
            skip(&format!("{e}: capture filter tests"));
            true
        }
    }
}

/// Runs the `engine` binary with `args`.
pub fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running engine")
}

/// Runs `engine` with `input` on standard input.
pub fn engine_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running engine");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("waiting for engine");
    feeder.join().expect("stdin feeder");
    out
}

/// The spans of OTLP JSON output, each as a JSON value, in output order.
pub fn spans(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(stdout).expect("UTF-8 output");
    let mut spans = Vec::new();
    for line in text.lines() {
        let req: serde_json::Value =
            serde_json::from_str(line).expect("each line is one JSON request");
        let rs = &req["resourceSpans"];
        assert_eq!(
            rs.as_array().map(Vec::len),
            Some(1),
            "one resourceSpans per request"
        );
        let ss = &rs[0]["scopeSpans"];
        assert_eq!(
            ss.as_array().map(Vec::len),
            Some(1),
            "one scopeSpans per request"
        );
        for s in ss[0]["spans"].as_array().expect("spans array") {
            spans.push(s.clone());
        }
    }
    spans
}

/// A span's attributes as `key -> value object`.
pub fn attrs(span: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    span["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            (
                a["key"].as_str().expect("key").to_string(),
                a["value"].clone(),
            )
        })
        .collect()
}

/// A string attribute.
pub fn s(span: &serde_json::Value, key: &str) -> String {
    attrs(span)
        .get(key)
        .and_then(|v| v["stringValue"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no string attribute {key}"))
}

/// An int attribute (OTLP JSON writes them as strings).
pub fn i(span: &serde_json::Value, key: &str) -> i64 {
    attrs(span)
        .get(key)
        .and_then(|v| v["intValue"].as_str().and_then(|x| x.parse().ok()))
        .unwrap_or_else(|| panic!("no int attribute {key}"))
}

/// The rotel-agent binary, installed once per test run.
pub fn rotel() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("FLOWSPAN_ROTEL") {
            return PathBuf::from(p);
        }
        let out = Command::new(root().join("scripts/install-rotel.sh"))
            .output()
            .expect("running scripts/install-rotel.sh");
        assert!(
            out.status.success(),
            "installing rotel failed (it comes from PyPI; or set FLOWSPAN_ROTEL to a \
             rotel-agent binary): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("path").trim())
    })
}

/// An empty scratch directory `PREFIX-NAME-PID` under the tests' target
/// directory.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Sends signal `name` (`HUP`, `INT`, …) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -{name} {pid}");
}

/// `engine ARGS` running with its standard streams piped.
pub struct Spawned {
    pub child: std::process::Child,
    pub stdin: std::process::ChildStdin,
    /// All of its standard output, once it ends.
    pub stdout: std::thread::JoinHandle<Vec<u8>>,
    /// Its stderr lines as they come.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Spawned {
    /// Closes its standard input and waits for it to end: its exit code
    /// and all of its standard output.
    pub fn finish(self) -> (Option<i32>, Vec<u8>) {
        let Spawned {
            mut child,
            stdin,
            stdout,
            ..
        } = self;
        drop(stdin);
        let status = child.wait().expect("engine ends");
        (status.code(), stdout.join().expect("stdout"))
    }

    /// Waits up to 20 s for a stderr line starting with `prefix`; it.
    pub fn line_starting(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no stderr line starting {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

/// Starts `engine ARGS` with its standard streams piped.
pub fn spawn_engine(args: &[&str]) -> Spawned {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting engine");
    let mut out = child.stdout.take().expect("stdout");
    let stdout = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = out.read_to_end(&mut all);
        all
    });
    let (tx, lines) = std::sync::mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stdin = child.stdin.take().expect("stdin");
    Spawned {
        child,
        stdin,
        stdout,
        lines,
    }
}
