//! From an [`Inventory`] to the [`Directory`] that flow workers look
//! endpoints up in: what each address (and each declared port) belongs to.
//!
//! - A pod's address gives the pod, its node and namespace, its owner chain
//!   (ReplicaSet → Deployment, StatefulSet, DaemonSet, Job → CronJob) and
//!   the first service, by name, that selects it or lists it in its
//!   `Endpoints`. The container is the one that declares the port, or the
//!   pod's only container; with it come `container.image.name` from the
//!   spec and `container.name`, the runtime's id from the pod status.
//! - A host-network pod shares its node's address: the address gives the
//!   node, and only a port the pod declares gives the pod.
//! - A service's cluster IP gives the service and its namespace.
//! - A node's internal and external addresses give the node.
//!
//! When several objects claim one address, an active pod wins over a
//! service, a service over a finished pod (or one deleted less than
//! `watch::POD_GRACE` ago), and any of them over a node; of two active pods
//! the newer wins (a pod deleted and re-created with the same IP). The directory depends only on the inventory and the options,
//! so a snapshot file enriches deterministically.

use std::collections::HashMap;

/// Maps of one build, hashed with foldhash (SipHash took a tenth of a
/// build).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use engine::enrich::{
    AttributeName, AttributeValue, Directory, Endpoint, EndpointAttribute, NameError,
};

use crate::inventory::{Container, Inventory, KeepAnnotations, Kind, Meta, Pod, Service};

/// What enrichment adds beside the recommended attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `k8s.cluster.name` on every enriched endpoint.
    pub cluster_name: Option<String>,
    /// The opt-in `*.uid` attributes (the cluster's is the `kube-system`
    /// namespace's UID).
    pub uids: bool,
    /// Annotation keys written as `k8s.<kind>.annotations.<key>`.
    pub annotations: Vec<String>,
    /// The opt-in `network.policy.ingress` (the destination pod's
    /// policies) and `network.policy.egress` (the source pod's).
    pub network_policies: bool,
}

/// `network.policy.egress`: written when the pod is the record's source.
const POLICY_EGRESS: AttributeName = AttributeName::sided("network.policy.egress", "");
/// `network.policy.ingress`: written when the pod is the record's
/// destination.
const POLICY_INGRESS: AttributeName = AttributeName::sided("", "network.policy.ingress");

/// The owner kinds in the order the specification lists their attributes.
const OWNER_KINDS: [(Kind, &str); 6] = [
    (Kind::Deployment, "deployment"),
    (Kind::ReplicaSet, "replicaset"),
    (Kind::StatefulSet, "statefulset"),
    (Kind::DaemonSet, "daemonset"),
    (Kind::Job, "job"),
    (Kind::CronJob, "cronjob"),
];

/// The names of one kind's attributes: `k8s.<kind>.name`, `.uid` and the
/// allowed annotations.
#[derive(Debug, Clone)]
struct KindNames {
    name: AttributeName,
    uid: AttributeName,
    annotations: Vec<(String, AttributeName)>,
}

impl KindNames {
    fn new(kind: &str, annotations: &[String]) -> Result<KindNames, NameError> {
        Ok(KindNames {
            name: AttributeName::new(&format!("k8s.{kind}.name"))?,
            uid: AttributeName::new(&format!("k8s.{kind}.uid"))?,
            annotations: annotations
                .iter()
                .map(|k| {
                    Ok((
                        k.clone(),
                        AttributeName::new(&format!("k8s.{kind}.annotations.{k}"))?,
                    ))
                })
                .collect::<Result<_, NameError>>()?,
        })
    }
}

/// Builds directories from inventories, with the attribute names interned
/// once.
#[derive(Debug, Clone)]
pub struct Builder {
    options: Options,
    cluster: KindNames,
    node: KindNames,
    namespace: AttributeName,
    pod: KindNames,
    k8s_container: AttributeName,
    owners: Vec<(Kind, KindNames)>,
    service: KindNames,
    container: AttributeName,
    image: AttributeName,
}

impl Builder {
    /// A builder for `options`.
    ///
    /// # Errors
    /// An annotation key makes an attribute name spans cannot carry.
    pub fn new(options: Options) -> Result<Builder, NameError> {
        let a = &options.annotations;
        Ok(Builder {
            cluster: KindNames::new("cluster", &[])?,
            node: KindNames::new("node", a)?,
            namespace: AttributeName::new("k8s.namespace.name")?,
            pod: KindNames::new("pod", a)?,
            k8s_container: AttributeName::new("k8s.container.name")?,
            owners: OWNER_KINDS
                .iter()
                .map(|(k, n)| Ok((*k, KindNames::new(n, a)?)))
                .collect::<Result<_, NameError>>()?,
            service: KindNames::new("service", a)?,
            container: AttributeName::new("container.name")?,
            image: AttributeName::new("container.image.name")?,
            options,
        })
    }

    /// The annotations the inventory must keep.
    pub fn keep(&self) -> KeepAnnotations {
        KeepAnnotations(self.options.annotations.clone())
    }

    /// The directory for `inventory`.
    pub fn build(&self, inventory: &Inventory) -> Directory {
        Build::new(self, inventory).run()
    }
}

/// One build: shared strings and indexes over the inventory.
struct Build<'a> {
    b: &'a Builder,
    inv: &'a Inventory,
    strings: Map<&'a str, Arc<str>>,
    cluster_uid: Option<&'a str>,
    /// Services with a selector, by namespace and their first selector
    /// label: a pod is checked only against services that could select it.
    selecting: Map<(&'a str, &'a str, &'a str), Vec<&'a str>>,
    /// Services whose `Endpoints` name a pod, by namespace and pod name.
    listing: Map<(&'a str, &'a str), Vec<&'a str>>,
    /// Network policies by namespace, in name order (only with
    /// [`Options::network_policies`]).
    policies: Map<&'a str, Vec<(&'a str, &'a crate::inventory::Policy)>>,
    /// The inventory's maps by borrowed keys: lookups without allocating.
    services: Map<(&'a str, &'a str), &'a Service>,
    nodes: Map<&'a str, &'a crate::inventory::Node>,
    controllers: Map<(Kind, &'a str, &'a str), &'a Meta>,
}

impl<'a> Build<'a> {
    fn new(b: &'a Builder, inv: &'a Inventory) -> Build<'a> {
        let mut selecting: Map<_, Vec<&str>> = Map::default();
        for ((ns, name), s) in &inv.services {
            if let Some((k, v)) = s.selector.as_ref().and_then(|s| s.iter().next()) {
                selecting
                    .entry((ns.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(name);
            }
        }
        let services: Map<(&str, &str), &Service> = inv
            .services
            .iter()
            .map(|((ns, name), s)| ((ns.as_str(), name.as_str()), s))
            .collect();
        let mut listing: Map<_, Vec<&str>> = Map::default();
        for ((ns, name), e) in &inv.endpoints {
            if !services.contains_key(&(ns.as_str(), name.as_str())) {
                continue;
            }
            for pod in &e.pods {
                listing
                    .entry((ns.as_str(), pod.as_str()))
                    .or_default()
                    .push(name);
            }
        }
        let mut policies: Map<&str, Vec<_>> = Map::default();
        if b.options.network_policies {
            for ((ns, name), p) in &inv.policies {
                policies
                    .entry(ns.as_str())
                    .or_default()
                    .push((name.as_str(), p));
            }
        }
        let cluster_uid = inv
            .namespaces
            .iter()
            .find(|((_, name), _)| name == "kube-system")
            .map(|(_, m)| m.uid.as_str())
            .filter(|u| !u.is_empty());
        Build {
            b,
            inv,
            strings: Map::default(),
            cluster_uid,
            selecting,
            listing,
            policies,
            services,
            nodes: inv
                .nodes
                .iter()
                .map(|((_, n), node)| (n.as_str(), node))
                .collect(),
            controllers: inv
                .controllers
                .iter()
                .map(|((k, ns, n), m)| ((*k, ns.as_str(), n.as_str()), m))
                .collect(),
        }
    }

    /// The names of the policies in `ns` that select `pod`, for ingress
    /// and for egress.
    fn policies_of(&self, ns: &str, pod: &Pod) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        let (mut ingress, mut egress) = (Vec::new(), Vec::new());
        for (name, p) in self.policies.get(ns).into_iter().flatten() {
            if !p.selector.matches(&pod.labels) {
                continue;
            }
            if p.ingress {
                ingress.push(Arc::from(*name));
            }
            if p.egress {
                egress.push(Arc::from(*name));
            }
        }
        (ingress, egress)
    }

    /// `s` as a string shared by every endpoint that carries it.
    fn shared(&mut self, s: &'a str) -> AttributeValue {
        let v = self.strings.entry(s).or_insert_with(|| s.into());
        AttributeValue::Str(Arc::clone(v))
    }

    fn push(&mut self, e: &mut Endpoint, name: AttributeName, value: &'a str) {
        let value = self.shared(value);
        e.attributes.push(EndpointAttribute { name, value });
    }

    /// `k8s.<kind>.name`, its uid (opt-in) and allowed annotations.
    fn object(
        &mut self,
        e: &mut Endpoint,
        names: &KindNames,
        name: &'a str,
        meta: Option<&'a Meta>,
    ) {
        let (uid, annotations) =
            meta.map_or(("", &[][..]), |m| (m.uid.as_str(), &m.annotations[..]));
        self.object_parts(e, names, name, uid, annotations);
    }

    fn object_parts(
        &mut self,
        e: &mut Endpoint,
        names: &KindNames,
        name: &'a str,
        uid: &'a str,
        annotations: &'a [(String, String)],
    ) {
        self.push(e, names.name, name);
        if self.b.options.uids && !uid.is_empty() {
            self.push(e, names.uid, uid);
        }
        for (key, attr) in &names.annotations {
            if let Some((_, v)) = annotations.iter().find(|(k, _)| k == key) {
                self.push(e, *attr, v);
            }
        }
    }

    fn cluster(&mut self, e: &mut Endpoint) {
        let b = self.b;
        if let Some(name) = &b.options.cluster_name {
            self.push(e, b.cluster.name, name);
        }
        if b.options.uids
            && let Some(uid) = self.cluster_uid
        {
            self.push(e, b.cluster.uid, uid);
        }
    }

    fn node(&mut self, e: &mut Endpoint, name: &'a str) {
        let meta = self.nodes.get(name).map(|n| &n.meta);
        self.object(e, &self.b.node, name, meta);
    }

    /// The service in front of pod `name` in `ns`: the first by name that
    /// selects it or whose `Endpoints` list it.
    fn service_of(&self, ns: &'a str, name: &'a str, pod: &'a Pod) -> Option<&'a str> {
        let selected = pod.labels.iter().flat_map(|(k, v)| {
            self.selecting
                .get(&(ns, k.as_str(), v.as_str()))
                .into_iter()
                .flatten()
                .copied()
                .filter(|s| {
                    self.services.get(&(ns, *s)).is_some_and(|svc| {
                        svc.selector
                            .iter()
                            .flatten()
                            .all(|(k, v)| pod.labels.get(k) == Some(v))
                    })
                })
        });
        let listed = self.listing.get(&(ns, name)).into_iter().flatten().copied();
        selected.chain(listed).min()
    }

    /// The endpoint of pod `ns/name`, with `container` when one is known.
    fn pod_endpoint(
        &mut self,
        ns: &'a str,
        name: &'a str,
        pod: &'a Pod,
        container: Option<&'a Container>,
    ) -> Endpoint {
        let b = self.b;
        let mut e = Endpoint::default();
        self.cluster(&mut e);
        if let Some(node) = &pod.node {
            self.node(&mut e, node);
        }
        self.push(&mut e, b.namespace, ns);
        self.object(&mut e, &b.pod, name, Some(&pod.meta));
        if let Some(c) = container {
            self.push(&mut e, b.k8s_container, &c.name);
        }
        self.owners(&mut e, ns, &pod.meta);
        if let Some(s) = self.service_of(ns, name, pod) {
            let meta = self.services.get(&(ns, s)).map(|s| &s.meta);
            self.object(&mut e, &b.service, s, meta);
        }
        // Network policies select pods in the pod network only.
        if b.options.network_policies && !pod.host_network {
            let (ingress, egress) = self.policies_of(ns, pod);
            for (name, list) in [(POLICY_EGRESS, egress), (POLICY_INGRESS, ingress)] {
                if !list.is_empty() {
                    e.attributes.push(EndpointAttribute {
                        name,
                        value: AttributeValue::StrList(list.into()),
                    });
                }
            }
        }
        if let Some(c) = container {
            if let Some(id) = &c.runtime_id {
                self.push(&mut e, b.container, id);
            }
            if let Some(image) = &c.image {
                self.push(&mut e, b.image, image);
            }
        }
        e
    }

    /// The owner chain of `meta`: its controller, and the controller's
    /// (a ReplicaSet's Deployment, a Job's CronJob), in the
    /// specification's order.
    fn owners(&mut self, e: &mut Endpoint, ns: &'a str, meta: &'a Meta) {
        // Kind, name, UID and (when the owner's object is known) its
        // metadata. The reference names the owner even before (or without)
        // a watch on its kind, and gives its UID.
        let mut chain: Vec<(Kind, &'a str, &'a str, Option<&'a Meta>)> = Vec::with_capacity(2);
        let mut next = meta.owner.as_ref();
        while let Some(o) = next {
            let Some(kind) = Kind::from_name(&o.kind).filter(|k| {
                OWNER_KINDS.iter().any(|(o, _)| o == k) && !chain.iter().any(|(c, ..)| c == k)
            }) else {
                break;
            };
            let known = self.controllers.get(&(kind, ns, o.name.as_str())).copied();
            chain.push((kind, &o.name, &o.uid, known));
            next = known.and_then(|m| m.owner.as_ref());
        }
        let b = self.b;
        for (kind, names) in &b.owners {
            if let Some((_, name, uid, known)) = chain.iter().find(|(k, ..)| k == kind) {
                let annotations = known.map_or(&[][..], |m| &m.annotations[..]);
                let uid = known.map_or(*uid, |m| if m.uid.is_empty() { uid } else { &m.uid });
                self.object_parts(e, names, name, uid, annotations);
            }
        }
    }

    fn run(mut self) -> Directory {
        let b = self.b;
        let inv = self.inv;
        let mut d = Directory::new();
        for ((_, name), node) in &inv.nodes {
            let mut e = Endpoint::default();
            self.cluster(&mut e);
            self.object(&mut e, &b.node, name, Some(&node.meta));
            let e = Arc::new(e);
            for ip in &node.ips {
                d.insert_address(*ip, Arc::clone(&e));
            }
        }
        let (active, finished): (Vec<_>, Vec<_>) = inv.pods.iter().partition(|(_, p)| p.active);
        for ((ns, name), pod) in finished.iter().filter(|(_, p)| !p.host_network) {
            let e = self.pod_endpoint(ns, name, pod, only_container(pod));
            let e = Arc::new(e);
            for ip in &pod.ips {
                d.insert_address(*ip, Arc::clone(&e));
            }
        }
        for ((ns, name), s) in &inv.services {
            let e = Arc::new(self.service_endpoint(ns, name, s));
            for ip in &s.cluster_ips {
                d.insert_address(*ip, Arc::clone(&e));
            }
        }
        let mut active = active;
        // Newest last, so that it keeps an address two active pods claim.
        active.sort_by_key(|(_, p)| p.created_s);
        for ((ns, name), pod) in active {
            let only = only_container(pod);
            if !pod.host_network {
                let e = Arc::new(self.pod_endpoint(ns, name, pod, only));
                for ip in &pod.ips {
                    d.insert_address(*ip, Arc::clone(&e));
                }
            }
            // A port a container declares names the container, and on a
            // host-network pod it is the only way to tell the pod from the
            // node. (A single-container pod's address entry says it all.)
            if only.is_some() && !pod.host_network {
                continue;
            }
            for c in &pod.containers {
                if c.ports.is_empty() {
                    continue;
                }
                let e = Arc::new(self.pod_endpoint(ns, name, pod, Some(c)));
                for (protocol, port) in &c.ports {
                    for ip in &pod.ips {
                        d.insert_socket(*protocol, *ip, *port, Arc::clone(&e));
                    }
                }
            }
        }
        d
    }

    fn service_endpoint(&mut self, ns: &'a str, name: &'a str, s: &'a Service) -> Endpoint {
        let b = self.b;
        let mut e = Endpoint::default();
        self.cluster(&mut e);
        self.push(&mut e, b.namespace, ns);
        self.object(&mut e, &b.service, name, Some(&s.meta));
        e
    }
}

fn only_container(pod: &Pod) -> Option<&Container> {
    match pod.containers.as_slice() {
        [c] => Some(c),
        _ => None,
    }
}

/// Objects by kind, for the summary.
pub fn counts(inventory: &Inventory) -> Vec<(&'static str, usize)> {
    Kind::ALL
        .into_iter()
        .map(|k| (k.name(), inventory.count(k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Object;
    use k8s_openapi::api::core::v1::Pod as CorePod;
    use serde_json::json;

    fn pod(name: &str, ip: &str, created: &str, phase: &str) -> Object {
        let p: CorePod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "namespace": "ns", "name": name, "uid": format!("uid-{name}"),
                "creationTimestamp": created,
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs-1", "uid": "uid-rs-1", "controller": true }]
            },
            "spec": { "containers": [
                { "name": "a", "ports": [{ "containerPort": 53, "protocol": "UDP" }] },
                { "name": "b", "ports": [{ "containerPort": 80 }] }
            ] },
            "status": { "phase": phase, "podIP": ip, "containerStatuses": [
                { "name": "b", "containerID": "cri-o://abc", "image": "", "imageID": "",
                  "ready": true, "restartCount": 0 }
            ] }
        }))
        .expect("a pod");
        Object::from(p)
    }

    fn names(d: &Directory, protocol: u8, ip: &str, port: u16) -> Vec<String> {
        d.lookup(protocol, ip.parse().expect("ip"), port)
            .map(|e| {
                e.attributes
                    .iter()
                    .map(|a| match &a.value {
                        AttributeValue::Str(s) => format!("{}={s}", a.name.source),
                        AttributeValue::Int(n) => format!("{}={n}", a.name.source),
                        AttributeValue::StrList(l) => format!("{}={l:?}", a.name.source),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn builder() -> Builder {
        Builder::new(Options {
            uids: true,
            ..Options::default()
        })
        .expect("builder")
    }

    #[test]
    fn of_two_active_pods_on_one_address_the_newer_has_it_and_finished_pods_lose() {
        let keep = KeepAnnotations::default();
        let mut inv = Inventory::new();
        inv.apply(
            &pod("old", "10.0.0.5", "2026-01-01T00:00:00Z", "Running"),
            &keep,
        );
        inv.apply(
            &pod("new", "10.0.0.5", "2026-01-02T00:00:00Z", "Running"),
            &keep,
        );
        inv.apply(
            &pod("done", "10.0.0.5", "2026-01-03T00:00:00Z", "Succeeded"),
            &keep,
        );
        let d = builder().build(&inv);
        assert!(names(&d, 6, "10.0.0.5", 1).contains(&"source.k8s.pod.name=new".to_owned()));
        // Deleted: the old pod has it again; then only the finished one.
        let meta = |n: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(n.into()),
            ..Default::default()
        };
        inv.delete(Kind::Pod, &meta("new"));
        let d = builder().build(&inv);
        assert!(names(&d, 6, "10.0.0.5", 1).contains(&"source.k8s.pod.name=old".to_owned()));
        inv.delete(Kind::Pod, &meta("old"));
        let d = builder().build(&inv);
        assert!(names(&d, 6, "10.0.0.5", 1).contains(&"source.k8s.pod.name=done".to_owned()));
    }

    #[test]
    fn a_deleted_pod_keeps_its_address_until_an_active_pod_takes_it_or_it_is_forgotten() {
        let keep = KeepAnnotations::default();
        let meta = |n: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(n.into()),
            ..Default::default()
        };
        let mut inv = Inventory::new();
        inv.apply(
            &pod("gone", "10.0.0.7", "2026-01-01T00:00:00Z", "Running"),
            &keep,
        );
        let (key, uid) = inv.retire_pod(&meta("gone")).expect("known");
        let named = |inv: &Inventory, n: &str| {
            names(&builder().build(inv), 6, "10.0.0.7", 1)
                .contains(&format!("source.k8s.pod.name={n}"))
        };
        assert!(
            named(&inv, "gone"),
            "kept while nothing else has the address"
        );
        inv.apply(
            &pod("new", "10.0.0.7", "2026-01-01T00:00:00Z", "Running"),
            &keep,
        );
        assert!(named(&inv, "new"), "an active pod takes the address");
        assert!(inv.forget_retired_pod(&key, &uid));
        assert!(named(&inv, "new"));
        // A pod re-created with the same name (a StatefulSet's) is not
        // forgotten with the one deleted before it.
        let (key, uid) = inv.retire_pod(&meta("new")).expect("known");
        let mut again = pod("new", "10.0.0.7", "2026-01-01T00:00:00Z", "Running");
        if let Object::Pod(p) = &mut again {
            p.metadata.uid = Some("uid-new-2".into());
        }
        inv.apply(&again, &keep);
        assert!(!inv.forget_retired_pod(&key, &uid));
        assert!(named(&inv, "new"));
    }

    #[test]
    fn a_declared_port_names_its_container_by_protocol_and_an_unknown_owner_comes_from_the_reference()
     {
        let keep = KeepAnnotations::default();
        let mut inv = Inventory::new();
        inv.apply(
            &pod("p", "10.0.0.6", "2026-01-01T00:00:00Z", "Running"),
            &keep,
        );
        let d = builder().build(&inv);
        let udp = names(&d, 17, "10.0.0.6", 53);
        assert!(
            udp.contains(&"source.k8s.container.name=a".to_owned()),
            "{udp:?}"
        );
        assert!(
            !udp.iter().any(|a| a.starts_with("source.container.name")),
            "{udp:?}"
        );
        let tcp = names(&d, 6, "10.0.0.6", 80);
        assert!(
            tcp.contains(&"source.k8s.container.name=b".to_owned()),
            "{tcp:?}"
        );
        // The runtime's id without its scheme.
        assert!(
            tcp.contains(&"source.container.name=abc".to_owned()),
            "{tcp:?}"
        );
        // TCP 53 is not declared: the pod without a container.
        let other = names(&d, 6, "10.0.0.6", 53);
        assert!(!other.iter().any(|a| a.contains("container")), "{other:?}");
        // The ReplicaSet object is not known: name and UID from the
        // reference, and no Deployment.
        assert!(other.contains(&"source.k8s.replicaset.name=rs-1".to_owned()));
        assert!(other.contains(&"source.k8s.replicaset.uid=uid-rs-1".to_owned()));
        assert!(!other.iter().any(|a| a.contains("deployment")), "{other:?}");
    }

    #[test]
    fn an_annotation_key_that_makes_a_bad_attribute_name_is_refused() {
        let e = Builder::new(Options {
            annotations: vec!["has space".into()],
            ..Options::default()
        })
        .expect_err("refused");
        assert!(
            e.to_string().contains("k8s.node.annotations.has space"),
            "{e}"
        );
    }
}
