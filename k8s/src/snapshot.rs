//! `--k8s-snapshot FILE`: the cluster's objects from a file, as
//! `kubectl get pods,services,… -A -o json` writes them (a `List`), for
//! enrichment that does not depend on a live cluster: tests, post-mortems
//! of a capture.
//!
//! Items of kinds enrichment does not use are counted and skipped. An item
//! that does not parse as its kind is reported with its position and
//! skipped; the rest of the file is used.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use crate::inventory::{Inventory, KeepAnnotations, Kind, Object};

/// The largest snapshot file read, in bytes: a cluster of 10,000 pods
/// lists in well under this.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// Why a snapshot file could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading it failed.
    #[error("{path}: cannot read the Kubernetes snapshot: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("{path}: the Kubernetes snapshot is {size} bytes (at most {MAX_SNAPSHOT_BYTES})")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not JSON.
    #[error(
        "{path}: line {line}, column {column}: not JSON ({message}); expected a List as `kubectl get … -A -o json` writes it"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// Where.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// JSON, but not an object with `items`.
    #[error(
        "{path}: not a Kubernetes List (no \"items\" array); expected what `kubectl get … -A -o json` writes"
    )]
    NotAList {
        /// The file.
        path: PathBuf,
    },
}

/// An item of the file that was skipped because it does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadItem {
    /// Its index in `items` (from 0).
    pub index: usize,
    /// Its kind, namespace/name, and what is wrong.
    pub message: String,
}

/// What loading a snapshot found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects enrichment uses.
    pub inventory: Inventory,
    /// Items of kinds it does not use, skipped.
    pub other_kinds: usize,
    /// Items that do not parse, skipped.
    pub bad: Vec<BadItem>,
}

/// Reads the snapshot at `path`, keeping annotations on `keep`.
///
/// # Errors
/// The file cannot be read, is too large, or is not a JSON List.
pub fn load(path: &Path, keep: &KeepAnnotations) -> Result<Loaded, SnapshotError> {
    let read = |source| SnapshotError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    parse(path, &bytes, keep)
}

/// Parses snapshot `bytes` (named `path` in messages).
///
/// # Errors
/// Not a JSON List.
pub fn parse(path: &Path, bytes: &[u8], keep: &KeepAnnotations) -> Result<Loaded, SnapshotError> {
    let list: Value = serde_json::from_slice(bytes).map_err(|e| SnapshotError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Some(Value::Array(items)) = list.get("items") else {
        return Err(SnapshotError::NotAList {
            path: path.to_owned(),
        });
    };
    let mut loaded = Loaded::default();
    for (index, item) in items.iter().enumerate() {
        let kind_name = item.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = Kind::from_name(kind_name) else {
            loaded.other_kinds += 1;
            continue;
        };
        match object(kind, item) {
            Ok(o) => loaded.inventory.apply(&o, keep),
            Err(e) => loaded.bad.push(BadItem {
                index,
                message: format!("{} {}: {e}", kind.name(), describe(item)),
            }),
        }
    }
    Ok(loaded)
}

/// `namespace/name` of an item, for messages.
fn describe(item: &Value) -> String {
    let meta = item.get("metadata");
    let field = |f| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    match field("namespace") {
        "" => format!("{:?}", field("name")),
        ns => format!("{:?}", format!("{ns}/{}", field("name"))),
    }
}

fn object(kind: Kind, item: &Value) -> Result<Object, serde_json::Error> {
    fn typed<T: serde::de::DeserializeOwned + Into<Object>>(
        item: &Value,
    ) -> Result<Object, serde_json::Error> {
        T::deserialize(item).map(Into::into)
    }
    match kind {
        Kind::Pod => typed::<Pod>(item),
        Kind::Service => typed::<Service>(item),
        Kind::Endpoints => typed::<Endpoints>(item),
        Kind::Node => typed::<Node>(item),
        Kind::Namespace => typed::<Namespace>(item),
        Kind::ReplicaSet => typed::<ReplicaSet>(item),
        Kind::Deployment => typed::<Deployment>(item),
        Kind::StatefulSet => typed::<StatefulSet>(item),
        Kind::DaemonSet => typed::<DaemonSet>(item),
        Kind::Job => typed::<Job>(item),
        Kind::CronJob => {
            // Clusters before 1.21 serve CronJobs as batch/v1beta1 only;
            // enrichment uses their metadata, which is the same.
            let mut item = item.clone();
            if item.get("apiVersion").and_then(Value::as_str) == Some("batch/v1beta1") {
                item["apiVersion"] = Value::from("batch/v1");
            }
            typed::<CronJob>(&item)
        }
        Kind::NetworkPolicy => typed::<NetworkPolicy>(item),
    }
}
