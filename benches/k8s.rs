//! Kubernetes enrichment's memory and cost, on a synthetic cluster:
//!
//!     k8s-bench [PODS] [SERVICES]        (default 10000 pods, 2000 services)
//!
//! The cluster: PODS pods of two containers (one declaring a port) in 200
//! namespaces, one Deployment and ReplicaSet per 10 pods, SERVICES services
//! each selecting a Deployment's pods, with `Endpoints` listing them, 100
//! nodes and one NetworkPolicy per namespace. Objects are made one at a
//! time and applied to the inventory the way the watches apply them (the
//! full object is dropped once reduced).
//!
//! Prints the process's resident memory (VmRSS, from /proc) after each
//! step and its peak (VmHWM), the time to build a directory, and the cost
//! per record of looking up both endpoints (`Directory::enrich`) and of
//! encoding the attributes that enrichment adds (OTLP JSON).
#![forbid(unsafe_code)]
// The report is the output.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Instant;

use engine::{FlowConfig, FlowRecord, FlowTable, PacketRepr};
use exporter::span::Mapping;
use exporter::{Encodings, encode_spans};
use k8s::inventory::{Inventory, KeepAnnotations, Object};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

const NAMESPACES: usize = 200;
const NODES: usize = 100;
const PODS_PER_DEPLOYMENT: usize = 10;

/// `(VmRSS, VmHWM)` in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid synthetic object")
}

/// Every object of the cluster, made one at a time.
fn objects(pods: usize, services: usize) -> impl Iterator<Item = Object> {
    let deployments = pods.div_ceil(PODS_PER_DEPLOYMENT);
    let ns = |d: usize| format!("team-{}", d % NAMESPACES);
    let last_applied = "x".repeat(1000);
    let nodes = (0..NODES).map(|n| {
        Object::from(typed::<Node>(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": format!("node-{n}"), "uid": format!("uid-node-{n}"),
                          "labels": { "kubernetes.io/hostname": format!("node-{n}") } },
            "status": { "addresses": [{ "type": "InternalIP", "address": format!("192.168.{}.{}", n / 250, n % 250 + 1) }] }
        })))
    });
    let controllers = (0..deployments).flat_map(move |d| {
        let meta = |name: String, owner: Option<&str>| {
            let mut m = json!({ "namespace": ns(d), "name": name, "uid": format!("uid-{name}"),
                                "annotations": { "deployment.kubernetes.io/revision": "3" } });
            if let Some(o) = owner {
                m["ownerReferences"] = json!([{ "apiVersion": "apps/v1", "kind": "Deployment",
                    "name": o, "uid": format!("uid-{o}"), "controller": true }]);
            }
            m
        };
        let spec = json!({ "selector": { "matchLabels": { "app": format!("app-{d}") } },
            "template": { "metadata": { "labels": { "app": format!("app-{d}") } },
                          "spec": { "containers": [{ "name": "main", "image": "registry.example/app:1" }] } } });
        [
            Object::from(typed::<Deployment>(json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": meta(format!("app-{d}"), None), "spec": spec }))),
            Object::from(typed::<ReplicaSet>(json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": meta(format!("app-{d}-5d8f7c9b6"), Some(&format!("app-{d}"))), "spec": spec }))),
        ]
    });
    let pod_objects = (0..pods).map(move |i| {
        let d = i / PODS_PER_DEPLOYMENT;
        let rs = format!("app-{d}-5d8f7c9b6");
        Object::from(typed::<Pod>(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "namespace": ns(d), "name": format!("{rs}-{i:05}"), "uid": format!("uid-pod-{i}"),
                "creationTimestamp": "2026-11-01T10:00:00Z",
                "labels": { "app": format!("app-{d}"), "pod-template-hash": "5d8f7c9b6",
                            "team": ns(d), "tier": "backend", "version": "v1" },
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": last_applied,
                                 "prometheus.io/scrape": "true", "team": ns(d) },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                      "uid": format!("uid-{rs}"), "controller": true }]
            },
            "spec": {
                "nodeName": format!("node-{}", i % NODES),
                "containers": [
                    { "name": "app", "image": format!("registry.example/app-{d}:1.{}", i % 7),
                      "ports": [{ "containerPort": 8080, "protocol": "TCP" }] },
                    { "name": "sidecar", "image": "envoyproxy/envoy:v1.31" }
                ]
            },
            "status": {
                "phase": "Running", "podIP": pod_ip(i).to_string(),
                "podIPs": [{ "ip": pod_ip(i).to_string() }],
                "containerStatuses": [
                    { "name": "app", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                      "containerID": format!("containerd://{:064x}", i) },
                    { "name": "sidecar", "image": "", "imageID": "", "ready": true, "restartCount": 0,
                      "containerID": format!("containerd://{:064x}", i + 1_000_000) }
                ]
            }
        })))
    });
    let service_objects = (0..services).flat_map(move |s| {
        let d = s % deployments;
        let name = format!("svc-{s}");
        let ip = format!("10.96.{}.{}", s / 250, s % 250 + 1);
        let first = d * PODS_PER_DEPLOYMENT;
        let addresses: Vec<serde_json::Value> = (first..(first + PODS_PER_DEPLOYMENT).min(pods))
            .map(|i| json!({ "ip": pod_ip(i).to_string(), "targetRef": { "kind": "Pod", "namespace": ns(d),
                 "name": format!("app-{d}-5d8f7c9b6-{i:05}") } }))
            .collect();
        [
            Object::from(typed::<Service>(json!({ "apiVersion": "v1", "kind": "Service",
                "metadata": { "namespace": ns(d), "name": name, "uid": format!("uid-{name}") },
                "spec": { "clusterIP": ip, "clusterIPs": [ip], "selector": { "app": format!("app-{d}") },
                          "ports": [{ "port": 80, "targetPort": 8080 }] } }))),
            Object::from(typed::<Endpoints>(json!({ "apiVersion": "v1", "kind": "Endpoints",
                "metadata": { "namespace": ns(d), "name": name },
                "subsets": [{ "addresses": addresses, "ports": [{ "port": 8080 }] }] }))),
        ]
    });
    let policies = (0..NAMESPACES).map(move |n| {
        Object::from(typed::<NetworkPolicy>(
            json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "namespace": format!("team-{n}"), "name": "default-deny" },
            "spec": { "podSelector": {}, "policyTypes": ["Ingress", "Egress"] } }),
        ))
    });
    nodes
        .chain(controllers)
        .chain(pod_objects)
        .chain(service_objects)
        .chain(policies)
}

/// Records of TCP flows between pods (every other one to a service's
/// cluster IP, one in ten from outside the cluster).
fn records(pods: usize, services: usize, n: usize) -> Vec<FlowRecord> {
    let mut table = FlowTable::new(FlowConfig::default());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let client = if i % 10 == 0 {
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8))
        } else {
            IpAddr::V4(pod_ip((i * 7919) % pods))
        };
        let server = if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::new(
                10,
                96,
                ((i % services) / 250) as u8,
                ((i % services) % 250 + 1) as u8,
            ))
        } else {
            IpAddr::V4(pod_ip((i * 104_729) % pods))
        };
        let p = PacketRepr {
            src_port: 30000 + (i % 30000) as u16,
            dst_port: if i % 2 == 0 { 80 } else { 8080 },
            ip_bytes: 60,
            ..PacketRepr::new(client, server, 6)
        };
        table.observe(&p, 1, i as u64, &mut out);
    }
    table.flush(n as u64, &mut out);
    out
}

fn main() -> ExitCode {
    let args: Vec<usize> = match std::env::args().skip(1).map(|a| a.parse()).collect() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("usage: k8s-bench [PODS] [SERVICES]");
            return ExitCode::from(2);
        }
    };
    let pods = args.first().copied().unwrap_or(10_000).max(1);
    let services = args.get(1).copied().unwrap_or(2_000).max(1);
    let (start, _) = memory();
    println!("cluster: {pods} pods, {services} services, {NAMESPACES} namespaces, {NODES} nodes");
    println!("resident at start: {:.1} MB", mb(start));

    let keep = KeepAnnotations(vec!["team".into()]);
    let t = Instant::now();
    let mut inventory = Inventory::new();
    let mut count = 0;
    for o in objects(pods, services) {
        inventory.apply(&o, &keep);
        count += 1;
    }
    let (after_inventory, _) = memory();
    println!(
        "inventory of {count} objects: +{:.1} MB resident ({:.2} s to make and reduce them)",
        mb(after_inventory.saturating_sub(start)),
        t.elapsed().as_secs_f64()
    );

    let builder = k8s::Builder::new(k8s::Options {
        cluster_name: Some("bench".into()),
        uids: false,
        annotations: vec!["team".into()],
        network_policies: true,
    })
    .expect("builder");
    let t = Instant::now();
    let directory = builder.build(&inventory);
    let first_build = t.elapsed();
    let (after_directory, _) = memory();
    println!(
        "directory of {} addresses and ports: +{:.1} MB resident; built in {:.1} ms",
        directory.len(),
        mb(after_directory.saturating_sub(after_inventory)),
        first_build.as_secs_f64() * 1e3
    );
    // A rebuild while the old directory is still in use, as the watch does.
    let t = Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        let next = builder.build(&inventory);
        assert_eq!(next.len(), directory.len());
    }
    println!(
        "rebuild: {:.1} ms each (mean of {rounds})",
        t.elapsed().as_secs_f64() * 1e3 / f64::from(rounds)
    );
    let (now, peak) = memory();
    println!(
        "enrichment state: {:.1} MB resident above the start; peak of the process {:.1} MB",
        mb(now.saturating_sub(start)),
        mb(peak)
    );

    // Per record: the lookups, then the encoding of what they add.
    let mut plain = records(pods, services, 100_000);
    let mut enriched = plain.clone();
    let t = Instant::now();
    let passes = 10;
    let mut found = 0usize;
    for _ in 0..passes {
        for r in &mut enriched {
            directory.enrich(r);
            found += usize::from(r.endpoints.is_some());
        }
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / (passes * enriched.len()) as f64;
    println!(
        "lookup of both endpoints: {lookup_ns:.0} ns per record ({} records × {passes}; {:.0} % enriched)",
        enriched.len(),
        100.0 * found as f64 / (passes * enriched.len()) as f64
    );
    let mapping = Mapping::default();
    let encodings = Encodings {
        json: true,
        proto: false,
    };
    let time = |records: &mut Vec<FlowRecord>| {
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..3 {
            bytes = encode_spans(records, encodings, &mapping)
                .iter()
                .map(|s| s.json().len())
                .sum::<usize>();
        }
        (
            t.elapsed().as_nanos() as f64 / (3 * records.len()) as f64,
            bytes / records.len(),
        )
    };
    // Alternate to spread the machine's noise over both.
    let (mut p_ns, mut e_ns) = (f64::MAX, f64::MAX);
    let (mut p_bytes, mut e_bytes) = (0, 0);
    for _ in 0..3 {
        let (ns, b) = time(&mut plain);
        p_ns = p_ns.min(ns);
        p_bytes = b;
        let (ns, b) = time(&mut enriched);
        e_ns = e_ns.min(ns);
        e_bytes = b;
    }
    println!(
        "OTLP JSON encoding: {p_ns:.0} ns and {p_bytes} bytes per span without enrichment, \
         {e_ns:.0} ns and {e_bytes} bytes with it (best of 3 alternating)"
    );
    ExitCode::SUCCESS
}
