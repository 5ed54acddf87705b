//! Kubernetes enrichment from a real API server (etcd + kube-apiserver, see
//! `common::apiserver`): the generated cluster created through the API,
//! watched by `engine --kubeconfig` with the agent's least-privilege user;
//! pods re-created and the server restarted while a live capture runs.

mod common;

use std::time::{Duration, Instant};

use capture_afpacket::PacketSender;
use capture_afpacket::testnet::VethPair;
use common::apiserver::ApiServer;
use common::cluster::{enrichment, expected, pcap};
use common::live::{interrupt, start_in};
use common::{engine, spans};
use flowspan_testdata::kubernetes::udp_frame;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn watched_objects_enrich_every_span_as_a_snapshot_of_the_same_server_does() {
    let Some(server) = ApiServer::start("watch", None, 16510) else {
        return;
    };
    server.create_cluster();
    let pcap = pcap();
    let agent = server.agent();

    // Before the agent's user is bound to the ClusterRole: every watch is
    // refused; the spans flow without Kubernetes attributes.
    let refused = engine(&[
        "--pcap",
        &pcap,
        "--kubeconfig",
        &agent,
        "--k8s-sync-timeout",
        "2",
    ]);
    let stderr = stderr_of(&refused);
    assert_eq!(refused.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("engine: warning: Kubernetes: watching ")
            && stderr.contains("forbidden")
            && stderr.contains("deploy/kubernetes/clusterrole.yaml")
            && stderr.contains("not every kind was listed within --k8s-sync-timeout 2.0 s"),
        "{stderr}"
    );
    assert_eq!(spans(&refused.stdout).len(), 10);
    assert!(
        enrichment(&refused.stdout)
            .iter()
            .all(|(_, a)| a.is_empty())
    );

    // With the ClusterRole: the attributes of the snapshot test, but for
    // the IPv6 cluster IP, which this server (1.20, no dual-stack) drops.
    server.grant_agent();
    let args = [
        "--pcap",
        &pcap,
        "--kubeconfig",
        &agent,
        "--k8s-cluster-name",
        "test",
    ];
    let watched = engine(&[&args[..], &["--workers", "1"]].concat());
    let stderr = stderr_of(&watched);
    assert_eq!(watched.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(
        stderr.contains("engine: kubernetes: 7 Pod, 5 Service, 1 Endpoints, 2 Node,")
            && stderr.contains("1 CronJob, 2 NetworkPolicy;")
            && stderr.contains("watch errors (retried): 0\n"),
        "{stderr}"
    );
    let mut want = expected();
    let (flow, attributes) = &mut want[7];
    assert_eq!(flow, "fd00:10:244:2::20:42000 -> fd00:10:96::30:80");
    attributes.retain(|a| !a.starts_with("destination."));
    let mut got = enrichment(&watched.stdout);
    for (_, a) in &mut got {
        a.sort();
    }
    assert_eq!(got, want);

    // With UIDs (the server's) and annotations: the same bytes as from a
    // snapshot file listed from the server.
    let dir = std::env::temp_dir().join(format!("flowspan-k8s-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let snap = dir.join("snapshot.json");
    std::fs::write(&snap, server.snapshot()).expect("writing the snapshot");
    let extra = [
        "--opt-in",
        "k8s-uid",
        "--k8s-annotation",
        "team",
        "--workers",
        "2",
    ];
    let watched = engine(&[&args[..], &extra].concat());
    let snap = snap.to_str().expect("UTF-8");
    let from_file = engine(
        &[
            &[
                "--pcap",
                &pcap,
                "--k8s-snapshot",
                snap,
                "--k8s-cluster-name",
                "test",
            ][..],
            &extra,
        ]
        .concat(),
    );
    assert_eq!(
        from_file.status.code(),
        Some(0),
        "{}",
        stderr_of(&from_file)
    );
    assert!(
        watched.stdout == from_file.stdout,
        "watched and snapshot spans differ"
    );
    let uids = enrichment(&watched.stdout)
        .iter()
        .flat_map(|(_, a)| {
            a.iter()
                .filter(|a| a.contains(".uid="))
                .cloned()
                .collect::<Vec<_>>()
        })
        .count();
    assert!(uids > 20, "{uids} UIDs");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one UDP flow from the report pod's address in the left namespace
/// each second until its span (engine output `out`, idle timeout 1 s)
/// names pod `want`, or `deadline`; returns the pods its spans named, in
/// order.
fn report_pod_names(
    sender: &PacketSender,
    out: &std::path::Path,
    port: &mut u16,
    want: &str,
    deadline: Duration,
) -> Vec<String> {
    let until = Instant::now() + deadline;
    loop {
        *port += 1;
        let frame = udp_frame("10.244.1.40", *port, "10.96.0.10", 53, 40);
        sender.send(&frame).expect("sending");
        std::thread::sleep(Duration::from_millis(1500));
        let names = names_of_source_pods(out);
        if names.last().is_some_and(|n| n == want) || Instant::now() > until {
            return names;
        }
    }
}

fn names_of_source_pods(out: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(out).unwrap_or_default();
    enrichment(whole_lines(&bytes))
        .into_iter()
        .map(|(_, a)| {
            a.iter()
                .find_map(|a| a.strip_prefix("source.k8s.pod.name=").map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// The whole lines of `bytes`: a line still being written is not a whole
/// request yet.
fn whole_lines(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(&[][..], |i| &bytes[..=i])
}

/// A new pod for the report Job's address: what a kubelet would report
/// after the old pod was deleted and a new one started.
fn report_pod(name: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&flowspan_testdata::kubernetes::cluster_json()).expect("JSON");
    let mut pod = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["metadata"]["name"] == REPORT)
        .expect("the report pod")
        .clone();
    pod["metadata"]["name"] = serde_json::json!(name);
    pod
}

/// `engine -i b --kubeconfig …` in the right namespace of a veth pair,
/// with the generated cluster on an API server in the same namespace, and
/// a sender on the left end. The server goes before the namespace.
struct LiveAgent {
    server: ApiServer,
    engine: Option<(
        capture_afpacket::testnet::EngineChild,
        std::thread::JoinHandle<String>,
    )>,
    sender: PacketSender,
    out: std::path::PathBuf,
    port: u16,
    /// Held for its lifetime: the namespaces go when it is dropped, last.
    _ns: VethPair,
}

impl LiveAgent {
    fn start(tag: &str, api_port: u16) -> Option<LiveAgent> {
        let ns = VethPair::for_test(tag, Default::default())?;
        let server = ApiServer::start(tag, Some(&ns.right), api_port)?;
        server.create_cluster();
        server.grant_agent();
        let dir = std::env::temp_dir().join(format!("flowspan-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("spans.json");
        let (agent, o) = (server.agent(), out.to_str().expect("UTF-8").to_owned());
        let args = [
            "-i",
            &ns.b,
            "-o",
            &o,
            "--idle-timeout",
            "1",
            "--kubeconfig",
            &agent,
        ];
        let engine = start_in(&ns, &args);
        ns.enter_left();
        let sender = PacketSender::open(&ns.a).expect("sender");
        Some(LiveAgent {
            server,
            engine: Some(engine),
            sender,
            out,
            port: 40000,
            _ns: ns,
        })
    }

    /// The report pod's names in the spans so far, once one names `want`
    /// or after `seconds`.
    fn names(&mut self, want: &str, seconds: u64) -> Vec<String> {
        let deadline = Duration::from_secs(seconds);
        report_pod_names(&self.sender, &self.out, &mut self.port, want, deadline)
    }

    /// Stops the engine (SIGINT); asserts it exited 0; its stderr.
    fn finish(&mut self) -> String {
        let (child, reader) = self.engine.take().expect("running");
        let (status, stderr) = interrupt(child, reader);
        assert_eq!(status.code(), Some(0), "{stderr}");
        stderr
    }
}

impl Drop for LiveAgent {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.engine.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.out.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

const REPORT: &str = "report-29000060-bbbbb";

#[test]
fn a_pod_deleted_and_re_created_with_the_same_address_during_a_live_run() {
    let Some(mut agent) = LiveAgent::start("k8srec", 16520) else {
        return;
    };
    let before = agent.names(REPORT, 10);
    assert_eq!(
        before.last().map(String::as_str),
        Some(REPORT),
        "{before:?}"
    );

    // Deleted: it keeps its address (nothing else has it) for flows that
    // end after it.
    agent.server.delete("pod", "shop", REPORT);
    let gone = agent.names("none expected", 3);
    assert!(gone.len() > before.len(), "{gone:?}");
    assert!(gone[before.len()..].iter().all(|n| n == REPORT), "{gone:?}");
    // Re-created with the same address: the new pod has it.
    agent.server.create(&report_pod("report-29000060-ccccc"));
    let after = agent.names("report-29000060-ccccc", 10);
    let stderr = agent.finish();
    assert_eq!(
        after.last().map(String::as_str),
        Some("report-29000060-ccccc"),
        "{after:?}\n{stderr}"
    );
    // Once the new pod was named, the deleted one never was again.
    let first_new = after
        .iter()
        .position(|n| n.ends_with("ccccc"))
        .expect("named");
    assert!(
        after[first_new..].iter().all(|n| n.ends_with("ccccc")),
        "{after:?}"
    );
    assert!(stderr.contains("watch errors (retried): 0"), "{stderr}");
}

#[test]
fn the_api_server_stopped_and_started_during_a_live_run() {
    let Some(mut agent) = LiveAgent::start("k8sdown", 16530) else {
        return;
    };
    let up = agent.names(REPORT, 10);
    assert_eq!(up.last().map(String::as_str), Some(REPORT), "{up:?}");

    // Down (etcd's data goes too): spans keep flowing, enriched from the
    // last directory.
    agent.server.stop();
    let down = agent.names("none expected", 4);
    assert!(
        down.len() > up.len(),
        "spans flow while the server is down: {down:?}"
    );
    assert!(down[up.len()..].iter().all(|n| n == REPORT), "{down:?}");

    // Up again, empty, then the cluster re-created with the report pod
    // renamed: the watches list again and the new name shows.
    agent.server.start_again();
    agent.server.grant_agent();
    let list: serde_json::Value =
        serde_json::from_str(&flowspan_testdata::kubernetes::cluster_json()).expect("JSON");
    for item in list["items"].as_array().expect("items") {
        let name = &item["metadata"]["name"];
        if name != "kube-system" && name != REPORT {
            agent.server.create(item);
        }
    }
    agent.server.create(&report_pod("report-29000060-ddddd"));
    let again = agent.names("report-29000060-ddddd", 60);
    let stderr = agent.finish();
    assert_eq!(
        again.last().map(String::as_str),
        Some("report-29000060-ddddd"),
        "{again:?}\n{stderr}"
    );
    assert!(
        stderr.contains("engine: warning: Kubernetes: watching "),
        "{stderr}"
    );
    // The summary's count, the last one printed.
    let errors: u64 = stderr
        .rsplit("watch errors (retried): ")
        .next()
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("the summary's watch errors");
    assert!(errors > 0, "{stderr}");
}

/// Issue 19: SIGHUP with a new `k8s-annotation` makes the watches list
/// every kind again, keeping the newly asked annotation, while the run
/// goes on; the flows that end after it carry it. The capture comes on
/// standard input, kept open until the relisted directory is published
/// (seen on `/metrics`).
#[test]
fn a_reload_asking_for_another_annotation_lists_every_kind_again() {
    use std::io::{Read, Write};

    let Some(server) = ApiServer::start("reload", None, 16520) else {
        return;
    };
    server.create_cluster();
    server.grant_agent();
    let dir = std::env::temp_dir().join(format!("flowspan-reload-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("agent.yaml");
    let config = |annotations: &str| {
        format!(
            "pcap: '-'\nkubeconfig: {}\nk8s-annotation: [{annotations}]\nworkers: 1\n\
             metrics-address: 127.0.0.1:16529\n",
            server.agent()
        )
    };
    std::fs::write(&file, config("")).expect("config");
    let mut engine = common::spawn_engine(&["--config", file.to_str().expect("path")]);
    engine.line_starting("engine: kubernetes: ");
    // The capture's file header: the engine opens its input and is then
    // running (its signal thread too).
    let capture = std::fs::read(pcap()).expect("pcap");
    engine
        .stdin
        .write_all(&capture[..24])
        .expect("the file header");
    engine.stdin.flush().expect("flush");
    let updates = || -> u64 {
        use std::net::TcpStream;
        let mut c = TcpStream::connect("127.0.0.1:16529").expect("metrics");
        write!(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut text = String::new();
        c.read_to_string(&mut text).expect("answer");
        text.lines()
            .find_map(|l| l.strip_prefix("flowspan_k8s_directory_updates_total "))
            .and_then(|v| v.parse().ok())
            .expect("the updates counter")
    };
    let before = updates();
    std::fs::write(&file, config("team")).expect("config");
    common::signal(engine.child.id(), "HUP");
    assert_eq!(
        engine.line_starting("engine: SIGHUP"),
        format!(
            "engine: SIGHUP: read {} again: applied k8s-annotation",
            file.display()
        )
    );
    // Published at once with what is held, then after the kinds' new
    // lists (at least one more).
    let started = Instant::now();
    while updates() < before + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no directory from the new lists"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every kind's list in (they come within the rebuild interval).
    std::thread::sleep(Duration::from_secs(2));
    engine
        .stdin
        .write_all(&capture[24..])
        .expect("feeding the capture");
    let (code, stdout) = engine.finish();
    assert_eq!(code, Some(0));
    let spans = spans(&stdout);
    assert_eq!(spans.len(), 10);
    let annotated = spans
        .iter()
        .filter(|s| {
            common::attrs(s)
                .keys()
                .any(|k| k.ends_with(".annotations.team"))
        })
        .count();
    assert!(annotated > 0, "no span carries the annotation asked for");
    let _ = std::fs::remove_dir_all(&dir);
}
