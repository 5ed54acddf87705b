//! Kubernetes enrichment: the pod, node, namespace, owner chain, service
//! and container behind each flow endpoint's address.
//!
//! - [`inventory`] keeps the few fields enrichment uses of each object,
//!   whether they come from watches or from a file.
//! - [`snapshot`] reads a `kubectl get … -A -o json` file
//!   (`--k8s-snapshot`).
//! - [`directory`] turns an inventory into the [`engine::enrich::Directory`]
//!   that flow workers look endpoints up in, once per record.
//! - [`watch`] keeps an inventory current from the API server's watches
//!   and publishes each new directory.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod directory;
pub mod inventory;
pub mod snapshot;
pub mod watch;

pub use directory::{Builder, Options};
pub use inventory::{Inventory, KeepAnnotations, Kind, Object};
