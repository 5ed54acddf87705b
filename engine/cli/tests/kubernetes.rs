//! Kubernetes enrichment from a snapshot file (`--k8s-snapshot`): the
//! generated capture of flows between the addresses of the generated
//! cluster (`testdata/k8s/cluster.json`), with the attributes every span
//! must carry written out here, one rule of `k8s::directory` per flow.

mod common;

use std::collections::BTreeMap;

use common::cluster::{enrichment, expected, pcap, snapshot};
use common::{attrs, engine, spans};

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

#[test]
fn an_unreachable_api_server_leaves_spans_flowing_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("flowspan-k8s-down-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Port 9 (discard) on loopback: nothing listens there.
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .expect("writing");
    let pcap = pcap();
    let k = kubeconfig.to_str().expect("UTF-8");
    let out = engine(&[
        "--pcap",
        &pcap,
        "--kubeconfig",
        k,
        "--k8s-sync-timeout",
        "1.5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(spans(&out.stdout).len(), 10);
    assert!(enrichment(&out.stdout).iter().all(|(_, a)| a.is_empty()));
    assert!(
        stderr.contains("engine: warning: Kubernetes: watching ")
            && stderr.contains("Connection refused")
            && stderr.contains("not every kind was listed within --k8s-sync-timeout 1.5 s")
            && stderr.contains("never in sync"),
        "{stderr}"
    );
    // One warning about the errors, however many watches failed.
    assert_eq!(stderr.matches("watching ").count(), 1, "{stderr}");

    // A kubeconfig that is missing or not one: one line, exit 2.
    std::fs::write(dir.join("bad"), "clusters: [").expect("writing");
    for (file, expect) in [("missing", "No such file"), ("bad", "")] {
        let p = dir.join(file);
        let p = p.to_str().expect("UTF-8");
        let out = engine(&["--pcap", &pcap, "--kubeconfig", p]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let lines = error_lines(&out.stderr);
        assert_eq!(lines.len(), 1, "{file}: {lines:?}");
        assert!(
            lines[0].starts_with(&format!("engine: error: --kubeconfig {p}: "))
                && lines[0].contains(expect),
            "{file}: {lines:?}"
        );
    }
    // Not in a pod: --k8s-in-cluster says what it looked for.
    let out = engine(&["--pcap", &pcap, "--k8s-in-cluster"]);
    assert_eq!(out.status.code(), Some(2));
    let lines = error_lines(&out.stderr);
    assert!(
        lines.len() == 1 && lines[0].contains("KUBERNETES_SERVICE_HOST"),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn network_policies_are_written_when_asked_for() {
    let (pcap, snap) = (pcap(), snapshot());
    let args = ["--pcap", &pcap, "--k8s-snapshot", &snap];
    let out = engine(&[&args[..], &["--opt-in", "network-policy"]].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policies = |a: &[String]| -> Vec<String> {
        a.iter()
            .filter(|a| a.starts_with("network.policy."))
            .cloned()
            .collect()
    };
    let list = |names: &[&str]| {
        let values: Vec<String> = names
            .iter()
            .map(|n| format!("{{\"stringValue\":\"{n}\"}}"))
            .collect();
        format!("{{\"arrayValue\":{{\"values\":[{}]}}}}", values.join(","))
    };
    let got = enrichment(&out.stdout);
    // frontend (shop, no policies) → payments pod (selected for ingress by
    // api-ingress).
    assert_eq!(
        policies(&got[1].1),
        [format!("network.policy.ingress={}", list(&["api-ingress"]))]
    );
    // payments pod (every pod of its namespace is selected for egress by
    // default-deny-egress) → a host-network pod (no policies apply).
    assert_eq!(
        policies(&got[3].1),
        [format!(
            "network.policy.egress={}",
            list(&["default-deny-egress"])
        )]
    );
    // payments pod → db-0 (not selected by api-ingress).
    assert_eq!(
        policies(&got[5].1),
        [format!(
            "network.policy.egress={}",
            list(&["default-deny-egress"])
        )]
    );
    // An address outside the cluster → a pod no policy selects.
    assert!(policies(&got[8].1).is_empty());
    // Without the group, none.
    let plain = engine(&args);
    assert!(
        enrichment(&plain.stdout)
            .iter()
            .all(|(_, a)| policies(a).is_empty())
    );
}
