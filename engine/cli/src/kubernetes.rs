//! Kubernetes enrichment from the flags: `--k8s-snapshot`, the cluster
//! name, opt-in UIDs and the annotation allow-list.

use anyhow::{Context, anyhow};
use engine::enrich::EnrichmentView;
use flowspan_cli::args::{Args, OptInGroup};

/// Bad items of a snapshot named one by one; the rest are counted.
const BAD_ITEMS_NAMED: usize = 10;

/// The enrichment view the flags ask for, if any.
///
/// # Errors
/// The snapshot file cannot be used, or an annotation key makes an
/// attribute name spans cannot carry.
pub fn enrichment(args: &Args) -> anyhow::Result<Option<EnrichmentView>> {
    let Some(path) = &args.k8s_snapshot else {
        return Ok(None);
    };
    let uids = args
        .opt_in
        .iter()
        .any(|g| matches!(g, OptInGroup::K8sUid | OptInGroup::All));
    let builder = k8s::Builder::new(k8s::Options {
        cluster_name: args.k8s_cluster_name.clone(),
        uids,
        annotations: args.k8s_annotations.clone(),
    })
    .map_err(|e| anyhow!(e))
    .context("--k8s-annotation")?;
    let loaded = k8s::snapshot::load(path, &builder.keep()).map_err(|e| anyhow!(e))?;
    for bad in loaded.bad.iter().take(BAD_ITEMS_NAMED) {
        eprintln!(
            "engine: warning: {}: item {}: {}; skipped",
            path.display(),
            bad.index,
            bad.message
        );
    }
    if loaded.bad.len() > BAD_ITEMS_NAMED {
        eprintln!(
            "engine: warning: {}: {} more items skipped for the same kind of reason",
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
    eprintln!(
        "engine: Kubernetes snapshot {}: {} ({} addresses and ports known; items skipped: {} of other kinds, {} unreadable)",
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
    Ok(Some(EnrichmentView::new(directory)))
}
