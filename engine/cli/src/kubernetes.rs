//! Kubernetes enrichment from the flags: a snapshot file
//! (`--k8s-snapshot`) or watches on an API server (`--kubeconfig`,
//! `--k8s-in-cluster`), with the cluster name, opt-in UIDs and the
//! annotation allow-list.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use engine::enrich::{Directory, EnrichmentView};
use flowspan_cli::args::{Args, OptInGroup};
use k8s::watch::{ClusterAccess, WatchOptions, WatchStats, Watcher};

/// Bad items of a snapshot named one by one; the rest are counted.
const BAD_ITEMS_NAMED: usize = 10;

/// The least time between two directories built from watch events.
const REBUILD_INTERVAL: Duration = Duration::from_millis(500);

/// Enrichment the run has: the view flow workers read, and the watches
/// that keep it current (stopped when this is dropped).
pub struct Enrichment {
    pub view: EnrichmentView,
    pub watcher: Option<Watcher>,
}

fn builder(args: &Args) -> anyhow::Result<k8s::Builder> {
    let has = |group| {
        args.opt_in
            .iter()
            .any(|g| *g == group || *g == OptInGroup::All)
    };
    k8s::Builder::new(k8s::Options {
        cluster_name: args.k8s_cluster_name.clone(),
        uids: has(OptInGroup::K8sUid),
        annotations: args.k8s_annotations.clone(),
        network_policies: has(OptInGroup::NetworkPolicy),
    })
    .map_err(|e| anyhow!(e))
    .context("--k8s-annotation")
}

/// Whether the flags ask for Kubernetes enrichment: what [`enrichment`]
/// starts, known before it starts (flow metrics' default dimensions depend
/// on it).
pub fn requested(args: &Args) -> bool {
    args.k8s_snapshot.is_some() || args.kubeconfig.is_some() || args.k8s_in_cluster
}

/// The enrichment the flags ask for, if any. `watching` gets the watches'
/// counters as soon as they start, before the wait for their first lists
/// (for `/metrics`, which then shows the sync under way, and shows the
/// counters by the time the summary line is printed).
///
/// # Errors
/// The snapshot file or the cluster access cannot be used, or an
/// annotation key makes an attribute name spans cannot carry.
pub fn enrichment(
    args: &Args,
    watching: impl FnOnce(&Arc<WatchStats>),
) -> anyhow::Result<Option<Enrichment>> {
    if !requested(args) {
        return Ok(None);
    }
    if let Some(path) = &args.k8s_snapshot {
        return Ok(Some(Enrichment {
            view: EnrichmentView::new(snapshot_directory(path, args)?),
            watcher: None,
        }));
    }
    let access = match &args.kubeconfig {
        Some(path) => ClusterAccess::Kubeconfig(path.clone()),
        None => ClusterAccess::InCluster,
    };
    let view = EnrichmentView::new(Directory::new());
    let watcher = Watcher::start(
        WatchOptions {
            access,
            rebuild_interval: REBUILD_INTERVAL,
        },
        builder(args)?,
        view.clone(),
        Box::new(|line| warning!("{line}")),
    )
    .map_err(|e| anyhow!(e))?;
    watching(watcher.stats());
    let timeout = Duration::from_nanos(args.k8s_sync_timeout);
    if !watcher.wait_synced(timeout) {
        warning!(
            "Kubernetes: not every kind was listed within --k8s-sync-timeout {:.1} s; \
             flows are enriched with what has arrived and the watches go on ({})",
            timeout.as_secs_f64(),
            watcher.stats().summary()
        );
    } else if !args.quiet {
        note!("{}", watcher.stats().summary());
    }
    Ok(Some(Enrichment {
        view,
        watcher: Some(watcher),
    }))
}

impl Enrichment {
    /// Applies the enrichment settings of `args` (a reload): the snapshot
    /// file is read again (from `--k8s-snapshot`'s path now) and the
    /// directory built with them; the watches take them (and list every
    /// kind again if other annotations are asked for).
    ///
    /// # Errors
    /// The settings or the snapshot cannot be used; nothing changes.
    pub fn reload(&self, args: &Args) -> anyhow::Result<()> {
        match (&self.watcher, &args.k8s_snapshot) {
            (Some(w), _) => w.set_builder(builder(args)?).map_err(|e| anyhow!(e)),
            (None, Some(path)) => {
                self.view.set(snapshot_directory(path, args)?);
                Ok(())
            }
            (None, None) => Err(anyhow!(
                "--k8s-snapshot: no longer set; switching enrichment off needs a restart"
            )),
        }
    }
}

/// The directory of the snapshot at `path`, with the settings of `args`;
/// what was read is said.
fn snapshot_directory(path: &std::path::Path, args: &Args) -> anyhow::Result<Directory> {
    let builder = builder(args)?;
    let loaded = k8s::snapshot::load(path, &builder.keep()).map_err(|e| anyhow!(e))?;
    for bad in loaded.bad.iter().take(BAD_ITEMS_NAMED) {
        warning!(
            "{}: item {}: {}; skipped",
            path.display(),
            bad.index,
            bad.message
        );
    }
    if loaded.bad.len() > BAD_ITEMS_NAMED {
        warning!(
            "{}: {} more items skipped for the same kind of reason",
            path.display(),
            loaded.bad.len() - BAD_ITEMS_NAMED
        );
    }
    let directory = builder.build(&loaded.inventory);
    let kinds: Vec<String> = k8s::directory::counts(&loaded.inventory)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    if !args.quiet {
        note!(
            "Kubernetes snapshot {}: {} ({} addresses and ports known; items skipped: {} of other kinds, {} unreadable)",
            path.display(),
            if kinds.is_empty() {
                "no objects".to_owned()
            } else {
                kinds.join(", ")
            },
            directory.len(),
            loaded.other_kinds,
            loaded.bad.len(),
        );
    }
    Ok(directory)
}
