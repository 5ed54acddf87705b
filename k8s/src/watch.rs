//! Watches on the API server keep an [`Inventory`] current and publish a
//! new [`Directory`](engine::enrich::Directory) into the
//! [`EnrichmentView`] whenever it changed, at most every
//! [`WatchOptions::rebuild_interval`].
//!
//! One watch per kind (list, then watch from the list's resource version;
//! kube-rs relists when the version is too old). Controllers are watched as
//! metadata only. Everything runs on a thread of its own with a
//! single-threaded async runtime: flow workers never wait for it, and what
//! they read is the last directory published.
//!
//! When the API server cannot be reached, refuses a watch, or a watch
//! breaks, that kind's watch starts again from a new list after a backoff
//! (0.8 s doubling to 30 s, with jitter, back to 0.8 s after a list
//! succeeds). Errors are counted, and warned about at most once a minute;
//! spans keep flowing with the last directory published.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::enrich::EnrichmentView;
use engine::error::one_line as chain;
use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;

use crate::directory::Builder;
use crate::inventory::{Inventory, Kind, Object};

/// Where the API server and credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAccess {
    /// A kubeconfig file (`--kubeconfig`), its current context.
    Kubeconfig(PathBuf),
    /// The pod's service account (`--k8s-in-cluster`).
    InCluster,
}

/// How the watches run.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The cluster.
    pub access: ClusterAccess,
    /// The least time between two directories published (more when a
    /// build takes longer than a tenth of it).
    pub rebuild_interval: Duration,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The kubeconfig file cannot be used.
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// kube-rs's message, with its causes.
        message: String,
    },
    /// Not in a pod, or its service account is not mounted.
    #[error(
        "--k8s-in-cluster: {0} (expected KUBERNETES_SERVICE_HOST and a service account token in /var/run/secrets/kubernetes.io/serviceaccount)"
    )]
    InCluster(String),
    /// The client could not be built or its thread started.
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// What the watches did, for the summary and metrics.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Objects held, by [`Kind::ALL`] index, as of the last directory.
    pub objects: [AtomicU64; Kind::ALL.len()],
    /// Addresses and ports in the last directory.
    pub entries: AtomicU64,
    /// Directories published.
    pub rebuilds: AtomicU64,
    /// Watch errors (each followed by a retry).
    pub errors: AtomicU64,
    /// Every kind has been listed once.
    pub synced: AtomicBool,
    /// When the last directory was published, in milliseconds since the
    /// Unix epoch (0: never).
    pub published_unix_ms: AtomicU64,
}

impl WatchStats {
    /// One line for the summary.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .zip(&self.objects)
            .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
            .map(|(k, n)| format!("{} {}", n.load(Ordering::Relaxed), k.name()))
            .collect();
        format!(
            "kubernetes: {}; {} addresses and ports known; directory published {} times; watch errors (retried): {}{}",
            if kinds.is_empty() {
                "no objects".to_owned()
            } else {
                kinds.join(", ")
            },
            self.entries.load(Ordering::Relaxed),
            self.rebuilds.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            if self.synced.load(Ordering::Relaxed) {
                ""
            } else {
                "; never in sync"
            }
        )
    }
}

/// The watches, running on their own thread until dropped.
#[derive(Debug)]
pub struct Watcher {
    stats: Arc<WatchStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// New attribution settings for the watch thread.
    builders: tokio::sync::mpsc::Sender<Builder>,
    thread: Option<JoinHandle<()>>,
}

/// A warning sink: called from the watch thread.
pub type Warn = Box<dyn Fn(String) + Send + Sync + 'static>;

impl Watcher {
    /// Reads the cluster access and starts watching, publishing into
    /// `view`.
    ///
    /// # Errors
    /// The kubeconfig or in-cluster configuration cannot be used. An API
    /// server that does not answer is not an error: the watches retry.
    pub fn start(
        options: WatchOptions,
        builder: Builder,
        view: EnrichmentView,
        warn: Warn,
    ) -> Result<Watcher, WatchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| WatchError::Client(format!("cannot start its runtime: {e}")))?;
        let config = match &options.access {
            ClusterAccess::Kubeconfig(path) => {
                let bad = |message| WatchError::Kubeconfig {
                    path: path.clone(),
                    message,
                };
                let kc = Kubeconfig::read_from(path).map_err(|e| bad(chain(&e)))?;
                runtime
                    .block_on(Config::from_custom_kubeconfig(
                        kc,
                        &KubeConfigOptions::default(),
                    ))
                    .map_err(|e| bad(chain(&e)))?
            }
            ClusterAccess::InCluster => {
                Config::incluster().map_err(|e| WatchError::InCluster(chain(&e)))?
            }
        };
        let client = {
            let _guard = runtime.enter();
            Client::try_from(config).map_err(|e| WatchError::Client(chain(&e)))?
        };
        let stats = Arc::new(WatchStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (builders, new_builders) = tokio::sync::mpsc::channel(4);
        let thread = {
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("k8s-watch".into())
                .spawn(move || {
                    runtime.block_on(run(
                        client,
                        options,
                        builder,
                        Channels {
                            view,
                            stats,
                            warn,
                            stopped,
                            builders: new_builders,
                        },
                    ));
                })
                .map_err(|e| WatchError::Client(format!("cannot start its thread: {e}")))?
        };
        Ok(Watcher {
            stats,
            stop: Some(stop),
            builders,
            thread: Some(thread),
        })
    }

    /// New attribution settings (a reload): the directory is built again
    /// with them at once; when they keep other annotations than before,
    /// every kind is listed again first (objects are held reduced to the
    /// annotations asked for), while the current directory stays in use.
    ///
    /// # Errors
    /// The watch thread has stopped, or has not taken the last settings
    /// yet.
    pub fn set_builder(&self, builder: Builder) -> Result<(), String> {
        self.builders
            .try_send(builder)
            .map_err(|e| format!("the Kubernetes watches cannot take new settings now ({e})"))
    }

    /// Waits until every kind has been listed once and the directory
    /// published, or `timeout`; whether that happened.
    pub fn wait_synced(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.stats.synced.load(Ordering::Acquire) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// What the watches did so far (shared, for a metrics endpoint).
    pub fn stats(&self) -> &Arc<WatchStats> {
        &self.stats
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type KindEvents = BoxStream<'static, (Kind, Result<Event<Object>, String>)>;

fn map_event<K>(e: Event<K>, f: impl Fn(K) -> Object) -> Event<Object> {
    match e {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// The events of one kind, as [`Object`]s.
fn events<K, F>(api: Api<K>, kind: Kind, f: F) -> KindEvents
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(K) -> Object + Copy + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .map(move |r| {
            (
                kind,
                r.map(|e| map_event(e, f))
                    .map_err(|e| format!("{}{}", chain(&e), hint(&e))),
            )
        })
        .boxed()
}

/// A kind of which only the metadata is used.
fn controller<K>(client: &Client, kind: Kind) -> KindEvents
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    events(api, kind, move |m: PartialObjectMeta<K>| {
        Object::Meta(kind, Box::new(m.metadata))
    })
}

/// CronJobs: `batch/v1` where the server has it, else `batch/v1beta1`
/// (before Kubernetes 1.21). Which one is asked of the server each time
/// the watch starts.
fn cron_jobs(client: Client) -> KindEvents {
    let discover = async move {
        match client.list_api_group_resources("batch/v1").await {
            Ok(list) if list.resources.iter().any(|r| r.name == "cronjobs") => {
                controller::<CronJob>(&client, Kind::CronJob)
            }
            Ok(_) => {
                let ar = ApiResource {
                    group: "batch".into(),
                    version: "v1beta1".into(),
                    api_version: "batch/v1beta1".into(),
                    kind: "CronJob".into(),
                    plural: "cronjobs".into(),
                };
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                events(api, Kind::CronJob, |o: DynamicObject| {
                    Object::Meta(Kind::CronJob, Box::new(o.metadata))
                })
            }
            Err(e) => {
                let message = format!("finding the CronJob API version: {}", chain(&e));
                stream::once(async move { (Kind::CronJob, Err(message)) }).boxed()
            }
        }
    };
    stream::once(discover).flatten().boxed()
}

/// What a watch error most likely means, for the warning.
fn hint(e: &watcher::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("403") || text.contains("forbidden") || text.contains("Forbidden") {
        "; the agent needs get, list and watch on it (deploy/kubernetes/clusterrole.yaml)"
    } else {
        ""
    }
}

/// A minute between two warnings.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The first wait before a watch that failed starts again; it doubles up
/// to [`BACKOFF_MAX`] and starts over once a list succeeds.
const BACKOFF_FIRST: Duration = Duration::from_millis(800);
/// The longest wait before a watch starts again.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long a deleted pod keeps its address (as a pod no longer active,
/// which any active pod given the address replaces): flows that were
/// talking to it end, and are recorded, after it is gone.
pub const POD_GRACE: Duration = Duration::from_secs(120);

/// Watch events waiting for the loop that applies them; a watch waits
/// while it is full.
const EVENT_QUEUE: usize = 1024;

/// `d` scaled by a factor in [0.5, 1.5), so that watches that failed
/// together do not all start again together.
fn jitter(d: Duration, salt: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let mixed = (u64::from(nanos) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 1000;
    d.mul_f64(0.5 + mixed as f64 / 1000.0)
}

/// Runs the watch `start` makes, forwarding its events, and after any
/// error starts a new one (which lists everything again) after a backoff.
///
/// A new watch rather than resuming the old one: an API server that came
/// back with another etcd has no notion of the old resource version, and a
/// watch from a version it has not reached yet waits silently.
async fn supervise(
    kind: Kind,
    start: impl Fn() -> KindEvents,
    events: tokio::sync::mpsc::Sender<(Kind, Result<Event<Object>, String>)>,
) {
    let mut delay = BACKOFF_FIRST;
    loop {
        let mut watch = start();
        while let Some((_, item)) = watch.next().await {
            let failed = item.is_err();
            if matches!(item, Ok(Event::InitDone)) {
                delay = BACKOFF_FIRST;
            }
            if events.send((kind, item)).await.is_err() {
                return;
            }
            if failed {
                break;
            }
        }
        tokio::time::sleep(jitter(delay, kind as u64)).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// Warnings about watch errors, at most one a [`WARN_EVERY`]; the errors
/// in between are counted and named in the next one.
struct Warnings {
    warn: Warn,
    last: Option<Instant>,
    held: u64,
}

impl Warnings {
    fn error(&mut self, kind: Kind, message: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            self.held += 1;
            return;
        }
        let more = match std::mem::take(&mut self.held) {
            0 => String::new(),
            n => format!(" ({n} more watch errors since the last warning)"),
        };
        (self.warn)(format!(
            "Kubernetes: watching {}: {message}{more}; retrying with backoff, spans go on without what it would add",
            kind.name()
        ));
        self.last = Some(now);
    }
}

/// What the watch thread talks through.
struct Channels {
    view: EnrichmentView,
    stats: Arc<WatchStats>,
    warn: Warn,
    stopped: tokio::sync::oneshot::Receiver<()>,
    builders: tokio::sync::mpsc::Receiver<Builder>,
}

/// One supervised watch per kind, sending into `tx`.
fn spawn_watches(
    client: &Client,
    tx: &tokio::sync::mpsc::Sender<(Kind, Result<Event<Object>, String>)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    macro_rules! watch {
        ($kind:expr, $start:expr) => {{
            let c = client.clone();
            let start = move || $start(&c);
            tasks.push(tokio::spawn(supervise($kind, start, tx.clone())));
        }};
    }
    watch!(Kind::Pod, |c: &Client| events(
        Api::<Pod>::all(c.clone()),
        Kind::Pod,
        Object::from
    ));
    watch!(Kind::Service, |c: &Client| events(
        Api::<Service>::all(c.clone()),
        Kind::Service,
        Object::from
    ));
    watch!(Kind::Endpoints, |c: &Client| events(
        Api::<Endpoints>::all(c.clone()),
        Kind::Endpoints,
        Object::from
    ));
    watch!(Kind::Node, |c: &Client| events(
        Api::<Node>::all(c.clone()),
        Kind::Node,
        Object::from
    ));
    watch!(Kind::Namespace, |c: &Client| controller::<Namespace>(
        c,
        Kind::Namespace
    ));
    watch!(Kind::ReplicaSet, |c: &Client| controller::<ReplicaSet>(
        c,
        Kind::ReplicaSet
    ));
    watch!(Kind::Deployment, |c: &Client| controller::<Deployment>(
        c,
        Kind::Deployment
    ));
    watch!(Kind::StatefulSet, |c: &Client| controller::<StatefulSet>(
        c,
        Kind::StatefulSet
    ));
    watch!(Kind::DaemonSet, |c: &Client| controller::<DaemonSet>(
        c,
        Kind::DaemonSet
    ));
    watch!(Kind::Job, |c: &Client| controller::<Job>(c, Kind::Job));
    watch!(Kind::CronJob, |c: &Client| cron_jobs(c.clone()));
    watch!(Kind::NetworkPolicy, |c: &Client| events(
        Api::<NetworkPolicy>::all(c.clone()),
        Kind::NetworkPolicy,
        Object::from
    ));
    tasks
}

async fn run(client: Client, options: WatchOptions, mut builder: Builder, channels: Channels) {
    let Channels {
        view,
        stats,
        warn,
        mut stopped,
        mut builders,
    } = channels;
    let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
    let mut tasks = spawn_watches(&client, &tx);
    let mut warnings = Warnings {
        warn,
        last: None,
        held: 0,
    };
    let mut keep = builder.keep();
    let mut inventory = Inventory::new();
    // A kind being listed again, reduced as its objects arrive (not held
    // whole: a first list of 10,000 pods would be tens of megabytes).
    let mut relisting: HashMap<Kind, Inventory> = HashMap::new();
    // Deleted pods kept for POD_GRACE, oldest first.
    let mut retired: std::collections::VecDeque<(Instant, (String, String), String)> =
        std::collections::VecDeque::new();
    let mut listed: Vec<Kind> = Vec::new();
    let mut dirty = false;
    let mut last_publish = Instant::now() - options.rebuild_interval;
    // At least the configured interval, and ten builds' time: rebuilding
    // for a cluster in constant churn takes at most a tenth of a core.
    let mut interval = options.rebuild_interval;
    loop {
        let due = tokio::time::Instant::from_std(last_publish + interval);
        let expiry = retired
            .front()
            .map(|(at, _, _)| tokio::time::Instant::from_std(*at + POD_GRACE));
        tokio::select! {
            _ = &mut stopped => break,
            Some(next) = builders.recv() => {
                let next_keep = next.keep();
                builder = next;
                if next_keep != keep {
                    // Every kind listed again with the new annotations;
                    // the directory follows each kind's new list.
                    keep = next_keep;
                    for t in tasks.drain(..) {
                        t.abort();
                    }
                    relisting.clear();
                    tasks = spawn_watches(&client, &tx);
                }
                let took = publish(&builder, &inventory, &view, &stats);
                interval = options.rebuild_interval.max(took * 10);
                last_publish = Instant::now();
                dirty = false;
            }
            () = tokio::time::sleep_until(expiry.unwrap_or(due)), if expiry.is_some() => {
                let now = Instant::now();
                while let Some((at, key, uid)) = retired.front() {
                    if now.duration_since(*at) < POD_GRACE {
                        break;
                    }
                    dirty |= inventory.forget_retired_pod(key, uid);
                    retired.pop_front();
                }
            }
            () = tokio::time::sleep_until(due), if dirty => {
                let took = publish(&builder, &inventory, &view, &stats);
                interval = options.rebuild_interval.max(took * 10);
                last_publish = Instant::now();
                dirty = false;
            }
            next = rx.recv() => {
                // `tx` is held here: the queue never closes.
                let Some((kind, event)) = next else { break };
                match event {
                    Err(message) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        relisting.remove(&kind);
                        warnings.error(kind, &message);
                    }
                    Ok(Event::Init) => {
                        relisting.insert(kind, Inventory::new());
                    }
                    Ok(Event::InitApply(o)) => relisting.entry(kind).or_default().apply(&o, &keep),
                    Ok(Event::InitDone) => {
                        let mut fresh = relisting.remove(&kind).unwrap_or_default();
                        inventory.replace_kind(kind, &mut fresh);
                        dirty = true;
                        if !listed.contains(&kind) {
                            listed.push(kind);
                            if listed.len() == Kind::ALL.len() {
                                // In sync: publish now, not after the interval.
                                let took = publish(&builder, &inventory, &view, &stats);
                                interval = options.rebuild_interval.max(took * 10);
                                last_publish = Instant::now();
                                dirty = false;
                                stats.synced.store(true, Ordering::Release);
                            }
                        }
                    }
                    Ok(Event::Apply(o)) => {
                        inventory.apply(&o, &keep);
                        dirty = true;
                    }
                    Ok(Event::Delete(o)) if o.kind() == Kind::Pod => {
                        if let Some((key, uid)) = inventory.retire_pod(o.metadata()) {
                            retired.push_back((Instant::now(), key, uid));
                        }
                        dirty = true;
                    }
                    Ok(Event::Delete(o)) => {
                        inventory.delete(o.kind(), o.metadata());
                        dirty = true;
                    }
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
}

/// Builds and publishes a directory; how long building took.
fn publish(
    builder: &Builder,
    inventory: &Inventory,
    view: &EnrichmentView,
    stats: &WatchStats,
) -> Duration {
    let started = Instant::now();
    let directory = builder.build(inventory);
    let took = started.elapsed();
    for (n, kind) in stats.objects.iter().zip(Kind::ALL) {
        n.store(inventory.count(kind) as u64, Ordering::Relaxed);
    }
    stats
        .entries
        .store(directory.len() as u64, Ordering::Relaxed);
    view.set(directory);
    stats.rebuilds.fetch_add(1, Ordering::Relaxed);
    stats.published_unix_ms.store(unix_ms(), Ordering::Relaxed);
    took
}

/// Milliseconds since the Unix epoch now.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
