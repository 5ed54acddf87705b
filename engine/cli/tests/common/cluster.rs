//! The generated cluster's expected enrichment: what each span of
//! `testdata/pcap/kubernetes.pcap` carries when enriched from
//! `testdata/k8s/cluster.json`, written out flow by flow.

use super::{attrs, root, spans};

/// `testdata/pcap/kubernetes.pcap`.
pub fn pcap() -> String {
    fixture("testdata/pcap/kubernetes.pcap")
}

/// `testdata/k8s/cluster.json`.
pub fn snapshot() -> String {
    fixture("testdata/k8s/cluster.json")
}

fn fixture(path: &str) -> String {
    root().join(path).to_str().expect("UTF-8 path").to_owned()
}

/// Each span's endpoint and enrichment attributes: `source.address:port
/// -> destination.address:port` and the `k8s`/`container` attributes as
/// `key=value`, in span order.
pub fn enrichment(stdout: &[u8]) -> Vec<(String, Vec<String>)> {
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
pub fn pod(side: &str, node: &str, ns: &str, pod: &str, rest: &[(&str, &str)]) -> Vec<String> {
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

pub fn service(side: &str, ns: &str, name: &str) -> Vec<String> {
    vec![
        format!("{side}.k8s.cluster.name=test"),
        format!("{side}.k8s.namespace.name={ns}"),
        format!("{side}.k8s.service.name={name}"),
    ]
}

pub fn node(side: &str, name: &str) -> Vec<String> {
    vec![
        format!("{side}.k8s.cluster.name=test"),
        format!("{side}.k8s.node.name={name}"),
    ]
}

pub fn both(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    let mut v: Vec<String> = a.into_iter().chain(b).collect();
    v.sort();
    v
}

pub fn expected() -> Vec<(String, Vec<String>)> {
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
