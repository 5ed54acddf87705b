//! A small cluster and a capture of flows between its addresses, for the
//! Kubernetes enrichment tests: `testdata/k8s/cluster.json` (a `List` as
//! `kubectl get … -A -o json` writes it, statuses included) and
//! `testdata/pcap/kubernetes.pcap`.
//!
//! The cluster has two nodes, a Deployment with a two-container pod and a
//! service selecting it, a Deployment with a dual-stack pod behind a
//! dual-stack service, a StatefulSet pod named only by an `Endpoints`
//! object, a host-network DaemonSet pod, a CronJob's Job pod on an address
//! a finished pod of the previous Job still lists, a bare pod with two
//! containers and no ports, a DNS service without pods, and two network
//! policies. Each flow in the capture exercises one rule of
//! `k8s::directory`.

use serde_json::{Value, json};

use crate::{MS, Pcap, S, T0, eth_ip, ipv4, ipv6, tcp_conversation_v4, tcp_conversation_v6, udp};

const CREATED: &str = "2026-11-01T10:00:00Z";
const LATER: &str = "2026-11-02T10:00:00Z";

fn meta(ns: Option<&str>, name: &str, uid: &str, created: &str) -> Value {
    let mut m = json!({ "name": name, "uid": uid, "creationTimestamp": created });
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m
}

fn owned(mut m: Value, api: &str, kind: &str, name: &str, uid: &str) -> Value {
    m["ownerReferences"] = json!([{
        "apiVersion": api, "kind": kind, "name": name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true
    }]);
    m
}

fn object(api: &str, kind: &str, metadata: Value, rest: Value) -> Value {
    let mut o = json!({ "apiVersion": api, "kind": kind, "metadata": metadata });
    if let Value::Object(fields) = rest {
        for (k, v) in fields {
            o[k] = v;
        }
    }
    o
}

fn container(name: &str, image: &str, ports: &[(u16, &str)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(p, proto)| json!({ "containerPort": p, "protocol": proto }))
        .collect();
    let mut c = json!({ "name": name, "image": image });
    if !ports.is_empty() {
        c["ports"] = json!(ports);
    }
    c
}

/// A pod: namespace, name, uid, owner (kind, name, uid), node, host
/// network, containers with their runtime ids, addresses, phase.
struct PodSpec<'a> {
    ns: &'a str,
    name: &'a str,
    uid: &'a str,
    created: &'a str,
    labels: Value,
    annotations: Value,
    owner: Option<(&'a str, &'a str, &'a str, &'a str)>,
    node: &'a str,
    host_network: bool,
    containers: Vec<(Value, &'a str)>,
    ips: &'a [&'a str],
    phase: &'a str,
}

fn pod(p: PodSpec<'_>) -> Value {
    let mut m = meta(Some(p.ns), p.name, p.uid, p.created);
    m["labels"] = p.labels;
    if p.annotations != Value::Null {
        m["annotations"] = p.annotations;
    }
    if let Some((api, kind, name, uid)) = p.owner {
        m = owned(m, api, kind, name, uid);
    }
    let statuses: Vec<Value> = p
        .containers
        .iter()
        .map(|(c, id)| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": "",
                "containerID": format!("containerd://{id}"),
                "ready": p.phase == "Running", "restartCount": 0, "started": p.phase == "Running"
            })
        })
        .collect();
    let mut spec = json!({
        "nodeName": p.node,
        "containers": p.containers.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
    });
    if p.host_network {
        spec["hostNetwork"] = json!(true);
    }
    object(
        "v1",
        "Pod",
        m,
        json!({
            "spec": spec,
            "status": {
                "phase": p.phase,
                "podIP": p.ips[0],
                "podIPs": p.ips.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>(),
                "hostIP": if p.node == "node-a" { "192.168.50.10" } else { "192.168.50.11" },
                "containerStatuses": statuses,
            }
        }),
    )
}

/// A controller with the least spec the API server accepts: a selector on
/// `labels` and a pod template of one container running `image`.
fn controller(api: &str, kind: &str, m: Value, labels: Value, image: &str) -> Value {
    let pod = json!({ "containers": [{ "name": "main", "image": image }] });
    let template = json!({ "metadata": { "labels": labels }, "spec": pod });
    let job = json!({ "template": { "spec": {
        "restartPolicy": "Never", "containers": pod["containers"]
    } } });
    let spec = match kind {
        "Job" => job,
        "CronJob" => json!({ "schedule": "*/1 * * * *", "jobTemplate": { "spec": job } }),
        _ => {
            let mut spec = json!({ "selector": { "matchLabels": labels }, "template": template });
            if kind == "StatefulSet" {
                spec["serviceName"] = json!("db");
            }
            spec
        }
    };
    object(api, kind, m, json!({ "spec": spec }))
}

fn service(ns: &str, name: &str, uid: &str, ips: &[&str], selector: Value) -> Value {
    let mut spec = json!({
        "clusterIP": ips[0],
        "clusterIPs": ips,
        "ports": [{ "port": 80, "protocol": "TCP" }],
    });
    if selector != Value::Null {
        spec["selector"] = selector;
    }
    let mut m = meta(Some(ns), name, uid, CREATED);
    m["annotations"] = json!({ "team": format!("{name}-owners") });
    object("v1", "Service", m, json!({ "spec": spec }))
}

fn node(name: &str, uid: &str, ip: &str) -> Value {
    let mut m = meta(None, name, uid, CREATED);
    m["annotations"] = json!({ "team": "platform" });
    object(
        "v1",
        "Node",
        m,
        json!({ "status": { "addresses": [
            { "type": "InternalIP", "address": ip },
            { "type": "Hostname", "address": name }
        ] } }),
    )
}

/// The cluster, as `kubectl get … -A -o json` lists it.
pub fn cluster() -> Value {
    let rs = "apps/v1";
    let mut frontend_deploy = meta(Some("shop"), "frontend", "uid-deploy-frontend", CREATED);
    frontend_deploy["annotations"] =
        json!({ "team": "web", "kubectl.kubernetes.io/last-applied-configuration": "{}" });
    let items = vec![
        object(
            "v1",
            "Namespace",
            meta(None, "kube-system", "uid-ns-kube-system", CREATED),
            json!({}),
        ),
        object(
            "v1",
            "Namespace",
            meta(None, "shop", "uid-ns-shop", CREATED),
            json!({}),
        ),
        object(
            "v1",
            "Namespace",
            meta(None, "payments", "uid-ns-payments", CREATED),
            json!({}),
        ),
        node("node-a", "uid-node-a", "192.168.50.10"),
        node("node-b", "uid-node-b", "192.168.50.11"),
        // shop/frontend: Deployment → ReplicaSet → a pod of two containers.
        controller(
            rs,
            "Deployment",
            frontend_deploy,
            json!({ "app": "frontend" }),
            "nginx:1.27",
        ),
        controller(
            rs,
            "ReplicaSet",
            owned(
                meta(
                    Some("shop"),
                    "frontend-6d4cf56db9",
                    "uid-rs-frontend",
                    CREATED,
                ),
                rs,
                "Deployment",
                "frontend",
                "uid-deploy-frontend",
            ),
            json!({ "app": "frontend", "pod-template-hash": "6d4cf56db9" }),
            "nginx:1.27",
        ),
        pod(PodSpec {
            ns: "shop",
            name: "frontend-6d4cf56db9-x7k2p",
            uid: "uid-pod-frontend",
            created: CREATED,
            labels: json!({ "app": "frontend", "pod-template-hash": "6d4cf56db9" }),
            annotations: json!({ "team": "web-pods" }),
            owner: Some((rs, "ReplicaSet", "frontend-6d4cf56db9", "uid-rs-frontend")),
            node: "node-a",
            host_network: false,
            containers: vec![
                (
                    container("web", "nginx:1.27", &[(8080, "TCP")]),
                    "c0ffee0001",
                ),
                (
                    container("proxy", "envoyproxy/envoy:v1.31", &[(15090, "TCP")]),
                    "c0ffee0002",
                ),
            ],
            ips: &["10.244.1.10"],
            phase: "Running",
        }),
        service(
            "shop",
            "frontend",
            "uid-svc-frontend",
            &["10.96.0.20"],
            json!({ "app": "frontend" }),
        ),
        // payments/payments-api: one container, dual stack, behind a
        // dual-stack service.
        controller(
            rs,
            "Deployment",
            meta(
                Some("payments"),
                "payments-api",
                "uid-deploy-payments",
                CREATED,
            ),
            json!({ "app": "payments" }),
            "registry.example/payments:2.1",
        ),
        controller(
            rs,
            "ReplicaSet",
            owned(
                meta(
                    Some("payments"),
                    "payments-api-7f9b8c5d4",
                    "uid-rs-payments",
                    CREATED,
                ),
                rs,
                "Deployment",
                "payments-api",
                "uid-deploy-payments",
            ),
            json!({ "app": "payments", "tier": "api" }),
            "registry.example/payments:2.1",
        ),
        pod(PodSpec {
            ns: "payments",
            name: "payments-api-7f9b8c5d4-q9w8e",
            uid: "uid-pod-payments",
            created: CREATED,
            labels: json!({ "app": "payments", "tier": "api" }),
            annotations: Value::Null,
            owner: Some((
                rs,
                "ReplicaSet",
                "payments-api-7f9b8c5d4",
                "uid-rs-payments",
            )),
            node: "node-b",
            host_network: false,
            containers: vec![(
                container("api", "registry.example/payments:2.1", &[(9000, "TCP")]),
                "c0ffee0003",
            )],
            ips: &["10.244.2.20", "fd00:10:244:2::20"],
            phase: "Running",
        }),
        service(
            "payments",
            "payments",
            "uid-svc-payments",
            &["10.96.0.30", "fd00:10:96::30"],
            json!({ "app": "payments" }),
        ),
        // payments/db: a StatefulSet pod behind a service without a
        // selector, named by its Endpoints.
        controller(
            rs,
            "StatefulSet",
            meta(Some("payments"), "db", "uid-sts-db", CREATED),
            json!({ "role": "db" }),
            "postgres:16",
        ),
        pod(PodSpec {
            ns: "payments",
            name: "db-0",
            uid: "uid-pod-db-0",
            created: CREATED,
            labels: json!({ "role": "db" }),
            annotations: Value::Null,
            owner: Some((rs, "StatefulSet", "db", "uid-sts-db")),
            node: "node-b",
            host_network: false,
            containers: vec![(
                container("postgres", "postgres:16", &[(5432, "TCP")]),
                "c0ffee0004",
            )],
            ips: &["10.244.2.30"],
            phase: "Running",
        }),
        service("payments", "db", "uid-svc-db", &["10.96.0.40"], Value::Null),
        object(
            "v1",
            "Endpoints",
            meta(Some("payments"), "db", "uid-ep-db", CREATED),
            json!({ "subsets": [{
                "addresses": [{ "ip": "10.244.2.30", "targetRef": { "kind": "Pod", "namespace": "payments", "name": "db-0" } }],
                "ports": [{ "port": 5432, "protocol": "TCP" }]
            }] }),
        ),
        // kube-system/node-exporter: a host-network DaemonSet pod.
        controller(
            rs,
            "DaemonSet",
            meta(
                Some("kube-system"),
                "node-exporter",
                "uid-ds-node-exporter",
                CREATED,
            ),
            json!({ "app": "node-exporter" }),
            "prom/node-exporter:v1.8.2",
        ),
        pod(PodSpec {
            ns: "kube-system",
            name: "node-exporter-5xq7z",
            uid: "uid-pod-node-exporter",
            created: CREATED,
            labels: json!({ "app": "node-exporter" }),
            annotations: Value::Null,
            owner: Some((rs, "DaemonSet", "node-exporter", "uid-ds-node-exporter")),
            node: "node-a",
            host_network: true,
            containers: vec![(
                container(
                    "node-exporter",
                    "prom/node-exporter:v1.8.2",
                    &[(9100, "TCP")],
                ),
                "c0ffee0005",
            )],
            ips: &["192.168.50.10"],
            phase: "Running",
        }),
        // shop/report: CronJob → Job → pod; the previous Job's finished pod
        // still lists the same address.
        controller(
            "batch/v1",
            "CronJob",
            meta(Some("shop"), "report", "uid-cj-report", CREATED),
            Value::Null,
            "registry.example/report:1",
        ),
        controller(
            "batch/v1",
            "Job",
            owned(
                meta(Some("shop"), "report-29000000", "uid-job-report-0", CREATED),
                "batch/v1",
                "CronJob",
                "report",
                "uid-cj-report",
            ),
            Value::Null,
            "registry.example/report:1",
        ),
        controller(
            "batch/v1",
            "Job",
            owned(
                meta(Some("shop"), "report-29000060", "uid-job-report-1", LATER),
                "batch/v1",
                "CronJob",
                "report",
                "uid-cj-report",
            ),
            Value::Null,
            "registry.example/report:1",
        ),
        pod(PodSpec {
            ns: "shop",
            name: "report-29000000-aaaaa",
            uid: "uid-pod-report-0",
            created: CREATED,
            labels: json!({ "job-name": "report-29000000" }),
            annotations: Value::Null,
            owner: Some(("batch/v1", "Job", "report-29000000", "uid-job-report-0")),
            node: "node-a",
            host_network: false,
            containers: vec![(
                container("report", "registry.example/report:1", &[]),
                "c0ffee0006",
            )],
            ips: &["10.244.1.40"],
            phase: "Succeeded",
        }),
        pod(PodSpec {
            ns: "shop",
            name: "report-29000060-bbbbb",
            uid: "uid-pod-report-1",
            created: LATER,
            labels: json!({ "job-name": "report-29000060" }),
            annotations: Value::Null,
            owner: Some(("batch/v1", "Job", "report-29000060", "uid-job-report-1")),
            node: "node-a",
            host_network: false,
            containers: vec![(
                container("report", "registry.example/report:1", &[]),
                "c0ffee0007",
            )],
            ips: &["10.244.1.40"],
            phase: "Running",
        }),
        // shop/debug: no owner, two containers, no ports.
        pod(PodSpec {
            ns: "shop",
            name: "debug",
            uid: "uid-pod-debug",
            created: CREATED,
            labels: json!({ "run": "debug" }),
            annotations: Value::Null,
            owner: None,
            node: "node-b",
            host_network: false,
            containers: vec![
                (container("shell", "busybox:1.36", &[]), "c0ffee0008"),
                (
                    container("tools", "nicolaka/netshoot:v0.13", &[]),
                    "c0ffee0009",
                ),
            ],
            ips: &["10.244.2.60"],
            phase: "Running",
        }),
        // kube-system/kube-dns: a service whose pods are not listed.
        service(
            "kube-system",
            "kube-dns",
            "uid-svc-kube-dns",
            &["10.96.0.10"],
            json!({ "k8s-app": "kube-dns" }),
        ),
        object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            meta(
                Some("payments"),
                "api-ingress",
                "uid-np-api-ingress",
                CREATED,
            ),
            json!({ "spec": { "podSelector": { "matchLabels": { "app": "payments" } }, "policyTypes": ["Ingress"] } }),
        ),
        object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            meta(
                Some("payments"),
                "default-deny-egress",
                "uid-np-deny-egress",
                CREATED,
            ),
            json!({ "spec": { "podSelector": {}, "policyTypes": ["Egress"] } }),
        ),
        // A kind enrichment does not use.
        object(
            "v1",
            "ConfigMap",
            meta(Some("shop"), "settings", "uid-cm", CREATED),
            json!({ "data": { "a": "b" } }),
        ),
    ];
    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "" }, "items": items })
}

/// `cluster()` as the file is written: pretty JSON with a final newline.
pub fn cluster_json() -> String {
    let mut s = serde_json::to_string_pretty(&cluster()).unwrap_or_default();
    s.push('\n');
    s
}

/// The flows of the capture, each exercising one rule. Times are 1 s
/// apart so that the output order is the order here.
pub fn kubernetes_pcap() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let mut t = T0;
    let mut conversation = |packets: Vec<Vec<u8>>| {
        for (i, ip) in packets.iter().enumerate() {
            p.add(t + i as u64 * MS, &eth_ip(ip));
        }
        t += S;
    };
    // 1. frontend pod (port not declared, two containers) → payments
    //    service's cluster IP.
    conversation(tcp_conversation_v4("10.244.1.10", 40000, "10.96.0.30", 80));
    // 2. frontend pod → payments pod on its declared port (after DNAT).
    conversation(tcp_conversation_v4(
        "10.244.1.10",
        40001,
        "10.244.2.20",
        9000,
    ));
    // 3. node-b → frontend pod's web container (declared port 8080).
    conversation(tcp_conversation_v4(
        "192.168.50.11",
        51000,
        "10.244.1.10",
        8080,
    ));
    // 4. payments pod → node-exporter, a host-network pod's declared port.
    conversation(tcp_conversation_v4(
        "10.244.2.20",
        41000,
        "192.168.50.10",
        9100,
    ));
    // 5. payments pod → node-a on a port no pod declares: the node.
    conversation(tcp_conversation_v4(
        "10.244.2.20",
        41001,
        "192.168.50.10",
        22,
    ));
    // 6. payments pod → db-0, named by the db service's Endpoints.
    conversation(tcp_conversation_v4(
        "10.244.2.20",
        41002,
        "10.244.2.30",
        5432,
    ));
    // 7. the running report pod (its address also on a finished pod) →
    //    kube-dns over UDP.
    conversation(vec![
        ipv4("10.244.1.40", "10.96.0.10", 17, &udp(53000, 53, 40)),
        ipv4("10.96.0.10", "10.244.1.40", 17, &udp(53, 53000, 80)),
    ]);
    // 8. payments pod over IPv6 → the payments service's IPv6 cluster IP.
    conversation(tcp_conversation_v6(
        "fd00:10:244:2::20",
        42000,
        "fd00:10:96::30",
        80,
    ));
    // 9. an address outside the cluster → debug pod (two containers, the
    //    port not declared).
    conversation(tcp_conversation_v4(
        "198.51.100.7",
        50000,
        "10.244.2.60",
        7777,
    ));
    // 10. an address no object has → outside the cluster: nothing known.
    conversation(vec![ipv6(
        "fd00:10:244:2::99",
        "2001:db8::1",
        17,
        &udp(5000, 443, 30),
    )]);
    p.buf
}

/// An Ethernet frame of UDP from `src`:`sport` to `dst`:`dport` with
/// `payload` zero bytes (IPv4), for tests that send the cluster's flows
/// live.
pub fn udp_frame(src: &str, sport: u16, dst: &str, dport: u16, payload: usize) -> Vec<u8> {
    eth_ip(&ipv4(src, dst, 17, &udp(sport, dport, payload)))
}
