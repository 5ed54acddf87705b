//! Kubernetes enrichment from a snapshot file (`--k8s-snapshot`): the
//! generated capture of flows between the addresses of the generated
//! cluster (`testdata/k8s/cluster.json`), with the attributes every span
//! must carry written out here, one rule of `k8s::directory` per flow.

mod common;

use std::collections::BTreeMap;

use common::{attrs, engine, root, spans};

fn pcap() -> String {
    root()
        .join("testdata/pcap/kubernetes.pcap")
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

fn snapshot() -> String {
    root()
        .join("testdata/k8s/cluster.json")
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

/// Each span's endpoint and enrichment attributes: `source.address:port
/// -> destination.address:port` and the `k8s`/`container` attributes as
/// `key=value`, in span order.
fn enrichment(stdout: &[u8]) -> Vec<(String, Vec<String>)> {
    spans(stdout)
        .iter()
        .map(|span| {
            let a = attrs(span);
            let text = |k: &str| {
                let v = &a[k];
                v["stringValue"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| v["intValue"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| v.to_string())
            };
            let flow = format!(
                "{}:{} -> {}:{}",
                text("source.address"),
                text("source.port"),
                text("destination.address"),
                text("destination.port")
            );
            let found = a
                .keys()
                .filter(|k| {
                    k.contains(".k8s.")
                        || k.contains(".container.")
                        || k.starts_with("network.policy")
                })
                .map(|k| format!("{k}={}", text(k)))
                .collect();
            (flow, found)
        })
        .collect()
}

/// What a pod endpoint of the fixture carries, on `side`.
fn pod(side: &str, node: &str, ns: &str, pod: &str, rest: &[(&str, &str)]) -> Vec<String> {
    let mut v = vec![
        format!("{side}.k8s.cluster.name=test"),
        format!("{side}.k8s.node.name={node}"),
        format!("{side}.k8s.namespace.name={ns}"),
        format!("{side}.k8s.pod.name={pod}"),
    ];
    v.extend(rest.iter().map(|(k, val)| format!("{side}.{k}={val}")));
    v
}

fn frontend(side: &str, container: Option<(&str, &str, &str)>) -> Vec<String> {
    let mut rest = vec![
        ("k8s.deployment.name", "frontend"),
        ("k8s.replicaset.name", "frontend-6d4cf56db9"),
        ("k8s.service.name", "frontend"),
    ];
    if let Some((name, id, image)) = container {
        rest.extend([
            ("k8s.container.name", name),
            ("container.name", id),
            ("container.image.name", image),
        ]);
    }
    pod(side, "node-a", "shop", "frontend-6d4cf56db9-x7k2p", &rest)
}

fn payments(side: &str) -> Vec<String> {
    pod(
        side,
        "node-b",
        "payments",
        "payments-api-7f9b8c5d4-q9w8e",
        &[
            ("k8s.container.name", "api"),
            ("k8s.deployment.name", "payments-api"),
            ("k8s.replicaset.name", "payments-api-7f9b8c5d4"),
            ("k8s.service.name", "payments"),
            ("container.name", "c0ffee0003"),
            ("container.image.name", "registry.example/payments:2.1"),
        ],
    )
}

fn service(side: &str, ns: &str, name: &str) -> Vec<String> {
    vec![
        format!("{side}.k8s.cluster.name=test"),
        format!("{side}.k8s.namespace.name={ns}"),
        format!("{side}.k8s.service.name={name}"),
    ]
}

fn node(side: &str, name: &str) -> Vec<String> {
    vec![
        format!("{side}.k8s.cluster.name=test"),
        format!("{side}.k8s.node.name={name}"),
    ]
}

fn both(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    let mut v: Vec<String> = a.into_iter().chain(b).collect();
    v.sort();
    v
}

fn expected() -> Vec<(String, Vec<String>)> {
    let d = "destination";
    let s = "source";
    vec![
        // A pod port no container declares, on a pod of two containers: no
        // container. A cluster IP: the service.
        (
            "10.244.1.10:40000 -> 10.96.0.30:80",
            both(frontend(s, None), service(d, "payments", "payments")),
        ),
        // A single-container pod: its container, on any port.
        (
            "10.244.1.10:40001 -> 10.244.2.20:9000",
            both(frontend(s, None), payments(d)),
        ),
        // A node's address; the container that declares the port.
        (
            "192.168.50.11:51000 -> 10.244.1.10:8080",
            both(
                node(s, "node-b"),
                frontend(d, Some(("web", "c0ffee0001", "nginx:1.27"))),
            ),
        ),
        // A host-network pod, on the port it declares.
        (
            "10.244.2.20:41000 -> 192.168.50.10:9100",
            both(
                payments(s),
                pod(
                    d,
                    "node-a",
                    "kube-system",
                    "node-exporter-5xq7z",
                    &[
                        ("k8s.container.name", "node-exporter"),
                        ("k8s.daemonset.name", "node-exporter"),
                        ("container.name", "c0ffee0005"),
                        ("container.image.name", "prom/node-exporter:v1.8.2"),
                    ],
                ),
            ),
        ),
        // The same address on another port: the node only.
        (
            "10.244.2.20:41001 -> 192.168.50.10:22",
            both(payments(s), node(d, "node-a")),
        ),
        // A StatefulSet pod behind a service without a selector, named by
        // its Endpoints.
        (
            "10.244.2.20:41002 -> 10.244.2.30:5432",
            both(
                payments(s),
                pod(
                    d,
                    "node-b",
                    "payments",
                    "db-0",
                    &[
                        ("k8s.container.name", "postgres"),
                        ("k8s.statefulset.name", "db"),
                        ("k8s.service.name", "db"),
                        ("container.name", "c0ffee0004"),
                        ("container.image.name", "postgres:16"),
                    ],
                ),
            ),
        ),
        // The running pod of the newer Job, not the finished one with the
        // same address; Job → CronJob.
        (
            "10.244.1.40:53000 -> 10.96.0.10:53",
            both(
                pod(
                    s,
                    "node-a",
                    "shop",
                    "report-29000060-bbbbb",
                    &[
                        ("k8s.container.name", "report"),
                        ("k8s.job.name", "report-29000060"),
                        ("k8s.cronjob.name", "report"),
                        ("container.name", "c0ffee0007"),
                        ("container.image.name", "registry.example/report:1"),
                    ],
                ),
                service(d, "kube-system", "kube-dns"),
            ),
        ),
        // IPv6: the pod's second address, the service's second cluster IP.
        (
            "fd00:10:244:2::20:42000 -> fd00:10:96::30:80",
            both(payments(s), service(d, "payments", "payments")),
        ),
        // Outside the cluster → a bare pod of two containers.
        (
            "198.51.100.7:50000 -> 10.244.2.60:7777",
            both(Vec::new(), pod(d, "node-b", "shop", "debug", &[])),
        ),
        // Nothing known on either side.
        ("fd00:10:244:2::99:5000 -> 2001:db8::1:443", Vec::new()),
    ]
    .into_iter()
    .map(|(f, mut a)| {
        a.sort();
        (f.to_owned(), a)
    })
    .collect()
}

#[test]
fn committed_kubernetes_fixture_is_what_the_generator_makes() {
    let pcap =
        std::fs::read(pcap()).expect("kubernetes.pcap (run `cargo run -p flowspan-testdata`)");
    assert!(
        pcap == flowspan_testdata::kubernetes::kubernetes_pcap(),
        "run `cargo run -p flowspan-testdata`"
    );
    let json = std::fs::read_to_string(snapshot()).expect("cluster.json");
    assert!(
        json == flowspan_testdata::kubernetes::cluster_json(),
        "run `cargo run -p flowspan-testdata`"
    );
}

#[test]
fn every_span_carries_the_kubernetes_attributes_of_both_endpoints() {
    let (pcap, snap) = (pcap(), snapshot());
    let args = [
        "--pcap",
        &pcap,
        "--k8s-snapshot",
        &snap,
        "--k8s-cluster-name",
        "test",
    ];
    let out = engine(&[&args[..], &["--workers", "1"]].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = enrichment(&out.stdout);
    for (_, a) in &mut got {
        a.sort();
    }
    let expected = expected();
    assert_eq!(got.len(), expected.len(), "one span per flow");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    // The same, byte for byte, with three workers.
    let three = engine(&[&args[..], &["--workers", "3"]].concat());
    assert!(
        out.stdout == three.stdout,
        "output differs between 1 and 3 workers"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("7 Pod, 4 Service, 1 Endpoints, 2 Node, 3 Namespace, 2 ReplicaSet, 2 Deployment, 1 StatefulSet, 1 DaemonSet, 2 Job, 1 CronJob, 2 NetworkPolicy")
            && stderr.contains("items skipped: 1 of other kinds, 0 unreadable"),
        "{stderr}"
    );
}

#[test]
fn without_enrichment_the_spans_are_the_same_apart_from_the_endpoints_attributes() {
    let (pcap, snap) = (pcap(), snapshot());
    let plain = engine(&["--pcap", &pcap]);
    let enriched = engine(&["--pcap", &pcap, "--k8s-snapshot", &snap]);
    let strip = |stdout: &[u8]| -> Vec<BTreeMap<String, serde_json::Value>> {
        spans(stdout)
            .iter()
            .map(|s| {
                let mut a = attrs(s);
                a.retain(|k, _| !k.contains(".k8s.") && !k.contains(".container."));
                a
            })
            .collect()
    };
    assert_eq!(strip(&plain.stdout), strip(&enriched.stdout));
    assert!(enrichment(&plain.stdout).iter().all(|(_, a)| a.is_empty()));
    // No --k8s-cluster-name: no cluster name.
    assert!(
        enrichment(&enriched.stdout)
            .iter()
            .flat_map(|(_, a)| a)
            .all(|a| !a.contains("cluster.name"))
    );
}

#[test]
fn uids_and_annotations_are_written_when_asked_for() {
    let (pcap, snap) = (pcap(), snapshot());
    let out = engine(&[
        "--pcap",
        &pcap,
        "--k8s-snapshot",
        &snap,
        "--opt-in",
        "k8s-uid",
        "--k8s-annotation",
        "team",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = enrichment(&out.stdout);
    let (flow, a) = &got[2];
    assert_eq!(flow, "192.168.50.11:51000 -> 10.244.1.10:8080");
    for want in [
        "source.k8s.cluster.uid=uid-ns-kube-system",
        "source.k8s.node.uid=uid-node-b",
        "source.k8s.node.annotations.team=platform",
        "destination.k8s.pod.uid=uid-pod-frontend",
        "destination.k8s.pod.annotations.team=web-pods",
        "destination.k8s.replicaset.uid=uid-rs-frontend",
        "destination.k8s.deployment.uid=uid-deploy-frontend",
        "destination.k8s.deployment.annotations.team=web",
        "destination.k8s.service.uid=uid-svc-frontend",
        "destination.k8s.service.annotations.team=frontend-owners",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} missing from {a:#?}");
    }
    // Only allowed annotations: the last-applied configuration is not.
    assert!(a.iter().all(|x| !x.contains("last-applied")), "{a:#?}");
    // The job's CronJob: its UID from the Job's owner reference.
    let (_, report) = &got[6];
    assert!(
        report
            .iter()
            .any(|x| x == "source.k8s.cronjob.uid=uid-cj-report"),
        "{report:#?}"
    );
}

fn error_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_bad_snapshot_is_one_line_naming_the_file_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("flowspan-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pcap = pcap();
    let cases: [(&str, &str, &str); 3] = [
        (
            "broken.json",
            "{\"items\": [\n  {\"kind\": \"Pod\",}\n]}",
            "line 2, column 18: not JSON",
        ),
        (
            "object.json",
            "{\"kind\": \"Pod\"}",
            "not a Kubernetes List (no \"items\" array)",
        ),
        ("missing.json", "", "cannot read the Kubernetes snapshot"),
    ];
    for (name, text, expect) in cases {
        let path = dir.join(name);
        if !text.is_empty() {
            std::fs::write(&path, text).expect("writing");
        }
        let p = path.to_str().expect("UTF-8");
        let out = engine(&["--pcap", &pcap, "--k8s-snapshot", p]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let lines = error_lines(&out.stderr);
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(
            lines[0].contains(p) && lines[0].contains(expect),
            "{name}: {lines:?}"
        );
        assert!(out.stdout.is_empty(), "{name}: nothing captured");
    }
    // An item that is not what its kind says: named, skipped, the rest used.
    let path = dir.join("bad-item.json");
    let mut list: serde_json::Value =
        serde_json::from_str(&flowspan_testdata::kubernetes::cluster_json()).expect("JSON");
    list["items"][7]["spec"]["containers"] = serde_json::json!("not a list");
    std::fs::write(&path, list.to_string()).expect("writing");
    let p = path.to_str().expect("UTF-8");
    let out = engine(&["--pcap", &pcap, "--k8s-snapshot", p]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "engine: warning: {p}: item 7: Pod \"shop/frontend-6d4cf56db9-x7k2p\": invalid type: string \"not a list\""
        )) && stderr.contains("1 unreadable"),
        "{stderr}"
    );
    // The frontend pod is unknown now; the others are still enriched.
    let got = enrichment(&out.stdout);
    assert!(
        got[0].1.iter().all(|a| !a.starts_with("source.")),
        "{:?}",
        got[0]
    );
    assert!(
        got[1]
            .1
            .iter()
            .any(|a| a.starts_with("destination.k8s.pod.name="))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
