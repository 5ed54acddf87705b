//! The config file (issue 19): the layers (defaults < file < environment
//! < flags) as `--print-config` shows them, errors that name the file, line
//! and key, a run configured by a file equal to one configured by flags,
//! and SIGHUP applying new export headers on a live capture (seen on the
//! wire by a listener in the engine's namespace) while saying which
//! changed settings need a restart.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use capture_afpacket::PacketSender;
use capture_afpacket::testnet::{Setup, VethPair, enter_namespace, udp_frame};
use common::live::{interrupt, start_in};
use common::{root, signal, spawn_engine};

fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch("config", name)
}

fn engine_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running engine")
}

fn fixture(name: &str) -> String {
    root()
        .join("testdata/pcap")
        .join(name)
        .to_str()
        .expect("path")
        .to_owned()
}

#[test]
fn print_config_shows_every_setting_and_its_origin() {
    let dir = scratch("print");
    let file = dir.join("agent.yaml");
    std::fs::write(
        &file,
        "# a node agent\ninterface: ['veth*', eth0]\nworkers: 3\nmetrics-address: ':9615'\n\
         otlp-endpoint: http://collector:4317\n",
    )
    .expect("config");
    let path = file.to_str().expect("path");
    let out = engine_env(
        &["--config", path, "--print-config", "--batch-size", "64"],
        &[
            ("FLOWSPAN_WORKERS", "2"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("text");
    for line in [
        format!("interface: ['veth*', eth0]    # {path}:2"),
        "workers: 2    # FLOWSPAN_WORKERS".to_owned(),
        format!("metrics-address: ':9615'    # {path}:4"),
        "otlp-endpoint: 'http://env:4317'    # OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
        "batch-size: 64    # --batch-size".to_owned(),
        "active-timeout: 60    # default".to_owned(),
        "# output:    # not set".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    // Every flag of --help has its line.
    let help = String::from_utf8(engine_env(&["--help"], &[]).stdout).expect("help");
    let mut flags: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        // `--name` or `-n, --name` at the start of a line.
        .filter_map(|l| {
            l.strip_prefix("--").or_else(|| {
                l.get(4..)
                    .filter(|_| l.get(2..4) == Some(", "))
                    .and_then(|r| r.strip_prefix("--"))
            })
        })
        .filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
        })
        .filter(|f| !["config", "print-config", "help", "version"].contains(f))
        .collect();
    flags.sort_unstable();
    flags.dedup();

    let settings = text
        .lines()
        .filter(|l| !l.starts_with("# flowspan"))
        .count();
    assert_eq!(settings, flags.len(), "{flags:?}\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_name_the_file_line_and_key() {
    let dir = scratch("bad");
    let file = dir.join("bad.yaml");
    let path = file.to_str().expect("path");
    for (text, want) in [
        (
            "pcap: x.pcap\nidle-timeout: soon\n".to_owned(),
            format!(
                "engine: error: {path}:2: key idle-timeout: invalid value 'soon' for '--idle-timeout <SECS>': \"soon\" is not a number of seconds"
            ),
        ),
        (
            "pcap: x.pcap\n\nmax_flows: 3\n".to_owned(),
            format!(
                "engine: error: {path}:3: unknown key \"max_flows\"; did you mean max-flows? (the keys are the flags' long names: engine --help)"
            ),
        ),
        (
            format!(
                "pcap: {}\notlp-endpoint: 'collector:4317'\n",
                fixture("icmp_pairs.pcap")
            ),
            format!("engine: error: {path}:2: key otlp-endpoint: "),
        ),
    ] {
        std::fs::write(&file, &text).expect("config");
        let out = engine_env(&["--config", path], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&want),
            "{text}\nwant {want}\ngot  {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_config_file_configures_a_run_as_the_flags_do() {
    let dir = scratch("same");
    let file = dir.join("run.yaml");
    let pcap = fixture("tcp_lifecycle.pcap");
    std::fs::write(
        &file,
        format!(
            "pcap: {pcap}\nlocal-net: [10.0.0.0/8]\nidle-timeout: 5\ncommunity-id-seed: 7\nopt-in: [tunnel]\nquiet: true\n"
        ),
    )
    .expect("config");
    let by_file = engine_env(&["--config", file.to_str().expect("path")], &[]);
    let by_flags = engine_env(
        &[
            "--pcap",
            &pcap,
            "--local-net",
            "10.0.0.0/8",
            "--idle-timeout",
            "5",
            "--community-id-seed",
            "7",
            "--opt-in",
            "tunnel",
            "-q",
        ],
        &[],
    );
    assert_eq!(by_file.status.code(), Some(0), "{by_file:?}");
    assert!(!by_file.stdout.is_empty());
    assert!(by_file.stdout == by_flags.stdout, "the same spans");
    assert!(by_file.stderr.is_empty(), "quiet from the file");
    // And FLOWSPAN_CONFIG names the file as --config does.
    let by_env = engine_env(&[], &[("FLOWSPAN_CONFIG", file.to_str().expect("path"))]);
    assert!(by_env.stdout == by_flags.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Accepts OTLP/HTTP requests in namespace `ns` on 127.0.0.1:4318,
/// answers each 200 with an empty (fully accepted) protobuf response, and
/// sends each request's `authorization` header on the channel.
fn header_listener(ns: String) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        enter_namespace(&ns);
        let listener = TcpListener::bind("127.0.0.1:4318").expect("listening");
        ready_tx.send(()).expect("ready");
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let (mut auth, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                    if tx.send(std::mem::take(&mut auth)).is_err() {
                        return;
                    }
                    length = 0;
                    continue;
                }
                if let Some((k, v)) = line.split_once(':') {
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_owned(),
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(5))
        .expect("listener up");
    rx
}

fn send(ns: &VethPair, flow: u16) {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_left();
            let sender = PacketSender::open(&ns.a).expect("sender");
            for k in 0..4 {
                sender
                    .send(&udp_frame(flow, k % 2 == 1, None))
                    .expect("send");
            }
        });
    });
}

#[test]
fn sighup_applies_new_export_headers_and_names_what_needs_a_restart() {
    let Some(ns) = VethPair::for_test("hup", Setup::default()) else {
        return;
    };
    let dir = scratch("hup");
    let file = dir.join("agent.yaml");
    let config = |token: &str, workers: u16, level: &str| {
        format!(
            "interface: [{}]\nworkers: {workers}\notlp-endpoint: http://127.0.0.1:4318\n\
             otlp-protocol: http/protobuf\notlp-header: ['authorization=Bearer%20{token}']\n\
             idle-timeout: 0.3\nbatch-interval: 0.1\nlog-level: {level}\n",
            ns.b
        )
    };
    std::fs::write(&file, config("one", 1, "info")).expect("config");
    let requests = header_listener(ns.right.clone());
    let (child, reader) = start_in(&ns, &["--config", file.to_str().expect("path")]);
    send(&ns, 1);
    let first = requests
        .recv_timeout(Duration::from_secs(20))
        .expect("a request");
    assert_eq!(first, "Bearer one");

    std::fs::write(&file, config("two", 2, "error")).expect("config");
    signal(child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(300));
    send(&ns, 2);
    let second = requests
        .recv_timeout(Duration::from_secs(20))
        .expect("a request after SIGHUP");
    assert_eq!(second, "Bearer two");

    // A file that no longer reads: said, and the running settings stay.
    std::fs::write(&file, "workers: many\n").expect("config");
    signal(child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(300));
    send(&ns, 3);
    let third = requests
        .recv_timeout(Duration::from_secs(20))
        .expect("a request after the bad reload");
    assert_eq!(third, "Bearer two");

    let (status, stderr) = interrupt(child, reader);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let path = file.display();
    assert!(
        stderr.lines().any(|l| l
            == format!(
                "engine: SIGHUP: read {path} again: applied otlp-header, log-level; changed but applied only by a restart: workers"
            )),
        "{stderr}"
    );
    // At --log-level error the notes stop: the interrupt's among them.
    assert!(!stderr.contains("engine: interrupted"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!(
            "engine: error: SIGHUP: {path}:1: key workers: invalid value 'many'"
        )) && l.ends_with("the running configuration stays")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP applies enrichment settings: with a snapshot, the directory is
/// built again with the new cluster name, and the flows that end after it
/// carry it. The capture comes on standard input: its file header, then,
/// once the reload has been said, its packets.
#[test]
fn sighup_applies_new_enrichment_settings() {
    let dir = scratch("hup-k8s");
    let file = dir.join("run.yaml");
    let write = |name: &str| {
        std::fs::write(
            &file,
            format!(
                "pcap: '-'\nk8s-snapshot: {}\nk8s-cluster-name: {name}\nworkers: 1\n",
                common::cluster::snapshot()
            ),
        )
        .expect("config");
    };
    write("before");
    let mut engine = spawn_engine(&["--config", file.to_str().expect("path")]);
    // Started: the snapshot is read before the capture is opened.
    engine.line_starting("engine: Kubernetes snapshot");
    write("after");
    // The capture's file header only: the engine opens its input and runs
    // (a SIGHUP that comes before its signal thread is kept for it), but
    // no flow ends before the reload.
    let capture = std::fs::read(common::cluster::pcap()).expect("pcap");
    engine
        .stdin
        .write_all(&capture[..24])
        .expect("the file header");
    engine.stdin.flush().expect("flush");
    signal(engine.child.id(), "HUP");
    assert_eq!(
        engine.line_starting("engine: SIGHUP"),
        format!(
            "engine: SIGHUP: read {} again: applied k8s-cluster-name",
            file.display()
        )
    );
    engine
        .stdin
        .write_all(&capture[24..])
        .expect("feeding the capture");
    let (code, stdout) = engine.finish();
    assert_eq!(code, Some(0));
    let spans = common::spans(&stdout);
    assert!(!spans.is_empty());
    let names: std::collections::BTreeSet<String> = spans
        .iter()
        .flat_map(|s| {
            let attrs = common::attrs(s);
            ["source.k8s.cluster.name", "destination.k8s.cluster.name"]
                .into_iter()
                .filter_map(|k| attrs.get(k)?["stringValue"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, ["after".to_owned()].into());
    let _ = std::fs::remove_dir_all(&dir);
}
