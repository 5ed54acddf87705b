//! What enrichment keeps of the cluster's objects: only the fields that
//! attributes come from, so that 10,000 pods stay small (a full `Pod` with
//! its managed fields and last-applied annotation is several kilobytes).
//!
//! Objects arrive as `k8s-openapi` types, from a watch or a snapshot file,
//! and are reduced here by [`Inventory::apply`]; [`Inventory::delete`]
//! forgets one. Every map is ordered by namespace and name, so whatever is
//! built from an inventory does not depend on the order objects arrived in.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints as CoreEndpoints, Namespace, Node as CoreNode, Pod as CorePod, Service as CoreService,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// A namespaced object's key: namespace (empty for cluster objects) and
/// name.
pub type Key = (String, String);

/// The kinds of object enrichment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1/Pod`.
    Pod,
    /// `v1/Service`.
    Service,
    /// `v1/Endpoints`.
    Endpoints,
    /// `v1/Node`.
    Node,
    /// `v1/Namespace`.
    Namespace,
    /// `apps/v1/ReplicaSet`.
    ReplicaSet,
    /// `apps/v1/Deployment`.
    Deployment,
    /// `apps/v1/StatefulSet`.
    StatefulSet,
    /// `apps/v1/DaemonSet`.
    DaemonSet,
    /// `batch/v1/Job`.
    Job,
    /// `batch/v1/CronJob` (or `batch/v1beta1`).
    CronJob,
    /// `networking.k8s.io/v1/NetworkPolicy`.
    NetworkPolicy,
}

impl Kind {
    /// Every kind, in the order the inventory lists them.
    pub const ALL: [Kind; 12] = [
        Kind::Pod,
        Kind::Service,
        Kind::Endpoints,
        Kind::Node,
        Kind::Namespace,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
        Kind::NetworkPolicy,
    ];

    /// The kind's name as objects carry it (`"Pod"`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }

    /// The kind named `name`, if enrichment uses it.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The controller that owns an object (its owner reference with
/// `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its kind (`"ReplicaSet"`).
    pub kind: String,
    /// Its name, in the object's namespace.
    pub name: String,
    /// Its UID.
    pub uid: String,
}

/// What is kept of any object's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The UID (empty when the object has none, as in a hand-written file).
    pub uid: String,
    /// The controller owning it.
    pub owner: Option<Owner>,
    /// The annotations whose keys are on the allow-list, by key.
    pub annotations: Vec<(String, String)>,
}

/// A container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its name in the pod spec.
    pub name: String,
    /// Its image (`nginx:1.27`).
    pub image: Option<String>,
    /// The ports it declares: IP protocol number (6, 17 or 132) and port.
    pub ports: Vec<(u8, u16)>,
    /// The container as the runtime knows it: the id in the pod status,
    /// without its `containerd://` style prefix.
    pub runtime_id: Option<String>,
}

/// What is kept of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Metadata.
    pub meta: Meta,
    /// Its labels (services and network policies select pods by them).
    pub labels: BTreeMap<String, String>,
    /// The node it runs on.
    pub node: Option<String>,
    /// Whether it uses the node's network namespace (and addresses).
    pub host_network: bool,
    /// Its addresses (`status.podIPs`, else `status.podIP`).
    pub ips: Vec<IpAddr>,
    /// Neither finished (`Succeeded`, `Failed`) nor being deleted: an
    /// address held by an active pod and a finished one is the active one's.
    pub active: bool,
    /// When it was created, in seconds since the epoch (0 if unknown): of
    /// two active pods on one address, the newer has it.
    pub created_s: i64,
    /// Its containers, in spec order.
    pub containers: Vec<Container>,
}

/// What is kept of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Metadata.
    pub meta: Meta,
    /// Its cluster IPs (none for a headless service).
    pub cluster_ips: Vec<IpAddr>,
    /// Its pod selector, if it has one.
    pub selector: Option<BTreeMap<String, String>>,
}

/// What is kept of an `Endpoints` object: the pods (by name, in its
/// namespace) and addresses behind the service of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Pods named by the addresses' target references.
    pub pods: Vec<String>,
    /// The addresses.
    pub ips: Vec<IpAddr>,
}

/// What is kept of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Metadata.
    pub meta: Meta,
    /// Its internal and external addresses.
    pub ips: Vec<IpAddr>,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// The label has one of the values (`In`; `matchLabels` is `In` with
    /// one value).
    In(String, Vec<String>),
    /// The label is missing or has none of the values (`NotIn`).
    NotIn(String, Vec<String>),
    /// The label is present (`Exists`).
    Exists(String),
    /// The label is missing (`DoesNotExist`).
    DoesNotExist(String),
    /// An operator this version does not know: matches nothing, as the
    /// API server would refuse it.
    Never,
}

/// A label selector: every requirement holds. An empty one selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Never => false,
        })
    }

    fn from_label_selector(s: &LabelSelector) -> Selector {
        let mut reqs: Vec<Requirement> = s
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for e in s.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let key = e.key.clone();
            reqs.push(match e.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => Requirement::Never,
            });
        }
        Selector(reqs)
    }
}

/// What is kept of a network policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The pods (in its namespace) it applies to.
    pub selector: Selector,
    /// Whether it restricts the selected pods' ingress.
    pub ingress: bool,
    /// Whether it restricts the selected pods' egress.
    pub egress: bool,
}

/// The objects enrichment knows, reduced, by kind and then by namespace and
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Pods.
    pub pods: BTreeMap<Key, Pod>,
    /// Services.
    pub services: BTreeMap<Key, Service>,
    /// Endpoints (named after their service).
    pub endpoints: BTreeMap<Key, Endpoints>,
    /// Nodes (namespace empty).
    pub nodes: BTreeMap<Key, Node>,
    /// Namespaces (namespace empty).
    pub namespaces: BTreeMap<Key, Meta>,
    /// Controllers by kind: ReplicaSets, Deployments, StatefulSets,
    /// DaemonSets, Jobs and CronJobs.
    pub controllers: BTreeMap<(Kind, String, String), Meta>,
    /// Network policies.
    pub policies: BTreeMap<Key, Policy>,
}

/// An object of a kind enrichment uses, as the API gives it.
#[derive(Debug, Clone)]
pub enum Object {
    /// A pod.
    Pod(Box<CorePod>),
    /// A service.
    Service(Box<CoreService>),
    /// An `Endpoints`.
    Endpoints(Box<CoreEndpoints>),
    /// A node.
    Node(Box<CoreNode>),
    /// A namespace or a controller: only the metadata is used.
    Meta(Kind, Box<ObjectMeta>),
    /// A network policy.
    NetworkPolicy(Box<NetworkPolicy>),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::Node(_) => Kind::Node,
            Object::Meta(k, _) => *k,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Meta(_, m) => m,
            Object::NetworkPolicy(o) => &o.metadata,
        }
    }
}

/// Converts from the API types to [`Object`].
macro_rules! from_api {
    ($($api:ty => $variant:ident),* $(,)?) => {$(
        impl From<$api> for Object {
            fn from(o: $api) -> Object {
                Object::$variant(Box::new(o))
            }
        }
    )*};
}
from_api!(
    CorePod => Pod,
    CoreService => Service,
    CoreEndpoints => Endpoints,
    CoreNode => Node,
    NetworkPolicy => NetworkPolicy,
);

macro_rules! controller_from_api {
    ($($api:ty => $kind:ident),* $(,)?) => {$(
        impl From<$api> for Object {
            fn from(o: $api) -> Object {
                Object::Meta(Kind::$kind, Box::new(o.metadata))
            }
        }
    )*};
}
controller_from_api!(
    Namespace => Namespace,
    ReplicaSet => ReplicaSet,
    Deployment => Deployment,
    StatefulSet => StatefulSet,
    DaemonSet => DaemonSet,
    Job => Job,
    CronJob => CronJob,
);

/// The annotation keys to keep (an allow-list; empty keeps none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepAnnotations(pub Vec<String>);

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// Objects held, all kinds.
    pub fn len(&self) -> usize {
        self.pods.len()
            + self.services.len()
            + self.endpoints.len()
            + self.nodes.len()
            + self.namespaces.len()
            + self.controllers.len()
            + self.policies.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Objects held of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Pod => self.pods.len(),
            Kind::Service => self.services.len(),
            Kind::Endpoints => self.endpoints.len(),
            Kind::Node => self.nodes.len(),
            Kind::Namespace => self.namespaces.len(),
            Kind::NetworkPolicy => self.policies.len(),
            k => self.controllers.keys().filter(|(c, _, _)| *c == k).count(),
        }
    }

    /// Adds or replaces `object`, keeping what enrichment uses of it.
    pub fn apply(&mut self, object: &Object, keep: &KeepAnnotations) {
        let key = key_of(object.metadata());
        let meta = || reduce_meta(object.metadata(), keep);
        match object {
            Object::Pod(p) => {
                self.pods.insert(key, reduce_pod(p, meta()));
            }
            Object::Service(s) => {
                self.services.insert(key, reduce_service(s, meta()));
            }
            Object::Endpoints(e) => {
                self.endpoints.insert(key, reduce_endpoints(e));
            }
            Object::Node(n) => {
                self.nodes.insert(key, reduce_node(n, meta()));
            }
            Object::Meta(Kind::Namespace, _) => {
                self.namespaces.insert(key, meta());
            }
            Object::Meta(kind, _) => {
                self.controllers.insert((*kind, key.0, key.1), meta());
            }
            Object::NetworkPolicy(p) => {
                self.policies.insert(key, reduce_policy(p));
            }
        }
    }

    /// Forgets the object of `kind` with `metadata`'s namespace and name.
    pub fn delete(&mut self, kind: Kind, metadata: &ObjectMeta) {
        let key = key_of(metadata);
        match kind {
            Kind::Pod => drop(self.pods.remove(&key)),
            Kind::Service => drop(self.services.remove(&key)),
            Kind::Endpoints => drop(self.endpoints.remove(&key)),
            Kind::Node => drop(self.nodes.remove(&key)),
            Kind::Namespace => drop(self.namespaces.remove(&key)),
            Kind::NetworkPolicy => drop(self.policies.remove(&key)),
            k => drop(self.controllers.remove(&(k, key.0, key.1))),
        }
    }

    /// Marks the pod with `metadata`'s namespace and name deleted but keeps
    /// it, as a pod no longer active, so that flows it had still find it
    /// until an active pod takes its address; its key and UID, to forget it
    /// later with [`Inventory::forget_retired_pod`].
    pub fn retire_pod(&mut self, metadata: &ObjectMeta) -> Option<(Key, String)> {
        let key = key_of(metadata);
        let pod = self.pods.get_mut(&key)?;
        pod.active = false;
        Some((key, pod.meta.uid.clone()))
    }

    /// Forgets the pod a [`Inventory::retire_pod`] kept, unless a pod of
    /// the same name came back since (another UID, or active).
    pub fn forget_retired_pod(&mut self, key: &Key, uid: &str) -> bool {
        let retired = self
            .pods
            .get(key)
            .is_some_and(|p| !p.active && p.meta.uid == uid);
        if retired {
            self.pods.remove(key);
        }
        retired
    }

    /// Replaces every object of `kind` with `fresh`'s (a new list of that
    /// kind, reduced as it arrived), leaving `fresh` without them.
    pub fn replace_kind(&mut self, kind: Kind, fresh: &mut Inventory) {
        use std::mem::take;
        match kind {
            Kind::Pod => self.pods = take(&mut fresh.pods),
            Kind::Service => self.services = take(&mut fresh.services),
            Kind::Endpoints => self.endpoints = take(&mut fresh.endpoints),
            Kind::Node => self.nodes = take(&mut fresh.nodes),
            Kind::Namespace => self.namespaces = take(&mut fresh.namespaces),
            Kind::NetworkPolicy => self.policies = take(&mut fresh.policies),
            k => {
                self.controllers.retain(|(c, _, _), _| *c != k);
                let mut moved: BTreeMap<_, _> = take(&mut fresh.controllers);
                moved.retain(|(c, _, _), _| *c == k);
                self.controllers.append(&mut moved);
            }
        }
    }
}

fn key_of(m: &ObjectMeta) -> Key {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn reduce_meta(m: &ObjectMeta, keep: &KeepAnnotations) -> Meta {
    let owner = m
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        });
    let annotations = match &m.annotations {
        Some(a) if !keep.0.is_empty() => keep
            .0
            .iter()
            .filter_map(|k| a.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
        _ => Vec::new(),
    };
    Meta {
        uid: m.uid.clone().unwrap_or_default(),
        owner,
        annotations,
    }
}

/// An IP protocol number from a port's `protocol` (TCP when absent).
fn protocol_number(p: Option<&str>) -> Option<u8> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(132),
        _ => None,
    }
}

fn parse_ips<'a>(ips: impl Iterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips {
        if let Ok(a) = ip.parse::<IpAddr>()
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

fn reduce_pod(p: &CorePod, meta: Meta) -> Pod {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let ips = status.map_or_else(Vec::new, |s| {
        let listed = s.pod_ips.iter().flatten().map(|i| i.ip.as_str());
        parse_ips(listed.chain(s.pod_ip.as_deref()))
    });
    let phase = status.and_then(|s| s.phase.as_deref());
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    let statuses = status.and_then(|s| s.container_statuses.as_ref());
    let containers = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| Container {
            name: c.name.clone(),
            image: c.image.clone(),
            ports: c
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let port = u16::try_from(p.container_port).ok()?;
                    Some((protocol_number(p.protocol.as_deref())?, port))
                })
                .collect(),
            runtime_id: statuses
                .and_then(|ss| ss.iter().find(|s| s.name == c.name))
                .and_then(|s| s.container_id.as_deref())
                .map(|id| id.split_once("://").map_or(id, |(_, id)| id).to_owned())
                .filter(|id| !id.is_empty()),
        })
        .collect();
    Pod {
        meta,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        ips,
        active: !finished && p.metadata.deletion_timestamp.is_none(),
        created_s: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        containers,
    }
}

fn reduce_service(s: &CoreService, meta: Meta) -> Service {
    let spec = s.spec.as_ref();
    let cluster_ips = spec.map_or_else(Vec::new, |s| {
        let listed = s.cluster_ips.iter().flatten().map(String::as_str);
        // "None" marks a headless service and does not parse.
        parse_ips(listed.chain(s.cluster_ip.as_deref()))
    });
    Service {
        meta,
        cluster_ips,
        selector: spec
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty()),
    }
}

fn reduce_endpoints(e: &CoreEndpoints) -> Endpoints {
    let mut out = Endpoints::default();
    for subset in e.subsets.iter().flatten() {
        let ready = subset.addresses.iter().flatten();
        let not_ready = subset.not_ready_addresses.iter().flatten();
        for a in ready.chain(not_ready) {
            if let Ok(ip) = a.ip.parse::<IpAddr>()
                && !out.ips.contains(&ip)
            {
                out.ips.push(ip);
            }
            if let Some(t) = &a.target_ref
                && t.kind.as_deref() == Some("Pod")
                && let Some(name) = &t.name
                && !out.pods.contains(name)
            {
                out.pods.push(name.clone());
            }
        }
    }
    out
}

fn reduce_node(n: &CoreNode, meta: Meta) -> Node {
    let addresses = n.status.as_ref().and_then(|s| s.addresses.as_ref());
    let ips = parse_ips(
        addresses
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .map(|a| a.address.as_str()),
    );
    Node { meta, ips }
}

fn reduce_policy(p: &NetworkPolicy) -> Policy {
    let spec = p.spec.as_ref();
    let selector = spec
        .and_then(|s| s.pod_selector.as_ref())
        .map(Selector::from_label_selector)
        .unwrap_or_default();
    let types = spec.and_then(|s| s.policy_types.as_ref());
    // Without policyTypes a policy restricts ingress, and egress when it
    // has egress rules (the API's defaulting).
    let (ingress, egress) = match types {
        Some(t) => (
            t.iter().any(|t| t == "Ingress"),
            t.iter().any(|t| t == "Egress"),
        ),
        None => (true, spec.is_some_and(|s| s.egress.is_some())),
    };
    Policy {
        selector,
        ingress,
        egress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_follow_the_api_s_operators() {
        let s: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": { "app": "web" },
            "matchExpressions": [
                { "key": "tier", "operator": "In", "values": ["a", "b"] },
                { "key": "canary", "operator": "DoesNotExist" },
                { "key": "zone", "operator": "NotIn", "values": ["x"] },
                { "key": "team", "operator": "Exists" }
            ]
        }))
        .expect("selector");
        let s = Selector::from_label_selector(&s);
        let ok = labels(&[("app", "web"), ("tier", "b"), ("team", "t")]);
        assert!(s.matches(&ok));
        for (k, v) in [("app", "db"), ("tier", "c"), ("zone", "x")] {
            let mut l = ok.clone();
            l.insert(k.into(), v.into());
            assert!(!s.matches(&l), "{k}={v}");
        }
        let mut l = ok.clone();
        l.insert("canary".into(), "1".into());
        assert!(!s.matches(&l));
        l = ok.clone();
        l.remove("team");
        assert!(!s.matches(&l));
        assert!(
            Selector::default().matches(&BTreeMap::new()),
            "empty selects all"
        );
        assert!(!Selector(vec![Requirement::Never]).matches(&ok));
    }

    #[test]
    fn policy_types_default_as_the_api_defaults_them() {
        let policy = |spec: serde_json::Value| {
            let p: NetworkPolicy = serde_json::from_value(serde_json::json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": { "name": "p" }, "spec": spec
            }))
            .expect("policy");
            let r = reduce_policy(&p);
            (r.ingress, r.egress)
        };
        assert_eq!(
            policy(serde_json::json!({ "podSelector": {} })),
            (true, false)
        );
        assert_eq!(
            policy(serde_json::json!({ "podSelector": {}, "egress": [] })),
            (true, true)
        );
        assert_eq!(
            policy(serde_json::json!({ "podSelector": {}, "policyTypes": ["Egress"] })),
            (false, true)
        );
    }

    #[test]
    fn a_new_list_replaces_its_kind_only() {
        let meta = |ns: &str, name: &str| ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        };
        let keep = KeepAnnotations::default();
        let mut inv = Inventory::new();
        inv.apply(
            &Object::Meta(Kind::ReplicaSet, Box::new(meta("a", "old"))),
            &keep,
        );
        inv.apply(&Object::Meta(Kind::Job, Box::new(meta("a", "job"))), &keep);
        let mut fresh = Inventory::new();
        fresh.apply(
            &Object::Meta(Kind::ReplicaSet, Box::new(meta("a", "new"))),
            &keep,
        );
        inv.replace_kind(Kind::ReplicaSet, &mut fresh);
        let names: Vec<&str> = inv.controllers.keys().map(|(_, _, n)| n.as_str()).collect();
        assert_eq!(names, ["new", "job"]);
        assert!(fresh.is_empty());
    }
}
