//! The names of the interfaces a live capture reads, by index, shared
//! between the capture (which attaches and detaches interfaces as they
//! come and go) and the workers that name them in spans.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How long the name of an interface that went away stays known: its
/// flows' last records are made and mapped right after it goes.
const KEEP_GONE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    index: u32,
    name: Arc<str>,
    gone_at: Option<Instant>,
}

/// Interface names by index; clones share the table. Names of interfaces
/// that went away are forgotten a minute later (when another changes), so
/// the table stays as small as the set of interfaces captured.
#[derive(Debug, Clone, Default)]
pub struct InterfaceNames(Arc<RwLock<Vec<Entry>>>);

impl InterfaceNames {
    /// A table holding `names`.
    pub fn new(names: Vec<(u32, String)>) -> InterfaceNames {
        let table = InterfaceNames::default();
        for (index, name) in names {
            table.add(index, &name);
        }
        table
    }

    /// The name of interface `index`, if known.
    pub fn get(&self, index: u32) -> Option<Arc<str>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|e| e.index == index)
            .map(|e| Arc::clone(&e.name))
    }

    /// Names interface `index` (replacing what that index named before).
    pub fn add(&self, index: u32, name: &str) {
        let mut entries = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|e| e.index != index && e.gone_at.is_none_or(|t| now - t < KEEP_GONE));
        entries.push(Entry {
            index,
            name: name.into(),
            gone_at: None,
        });
    }

    /// Interface `index` went away: its name is forgotten later.
    pub fn gone(&self, index: u32) {
        let mut entries = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for e in entries.iter_mut().filter(|e| e.index == index) {
            e.gone_at.get_or_insert_with(Instant::now);
        }
    }

    /// The names known now, by index.
    pub fn list(&self) -> Vec<(u32, String)> {
        let mut list: Vec<(u32, String)> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|e| (e.index, e.name.to_string()))
            .collect();
        list.sort();
        list
    }
}

impl PartialEq for InterfaceNames {
    fn eq(&self, other: &InterfaceNames) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.list() == other.list()
    }
}

impl Eq for InterfaceNames {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_interfaces_that_come_and_go() {
        let names = InterfaceNames::new(vec![(2, "eth0".into())]);
        let shared = names.clone();
        shared.add(7, "veth1");
        assert_eq!(names.get(7).as_deref(), Some("veth1"));
        shared.gone(7);
        assert_eq!(names.get(7).as_deref(), Some("veth1"), "kept a while");
        shared.add(7, "veth2");
        assert_eq!(names.get(7).as_deref(), Some("veth2"), "an index reused");
        assert_eq!(names.list(), [(2, "eth0".into()), (7, "veth2".into())]);
        assert_eq!(names.get(3), None);
    }
}
