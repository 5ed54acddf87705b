//! The enrichment seam: attributes of a record's two endpoints (process,
//! container, Kubernetes), looked up once per record when the record is
//! made, never per packet.
//!
//! Whatever knows about endpoints (a process scanner, Kubernetes watchers)
//! builds a [`Directory`] in the background and swaps it into an
//! [`EnrichmentView`] whole. Each flow worker takes the newest directory
//! between batches and looks up both endpoints of every record it emits
//! ([`Directory::lookup`]: two hash lookups); the span mapper writes what
//! it found as `source.*` and `destination.*` attributes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::flow::record::FlowRecord;
use crate::snapshot::Swap;

/// An attribute name without its side, with the names it takes on each
/// side (`k8s.pod.name` → `source.k8s.pod.name`, `destination.k8s.pod.name`).
/// The names are interned: each distinct name is allocated once for the
/// life of the process, so names must come from a bounded set (the
/// specification's, or a configured allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttributeName {
    /// The name on the source endpoint.
    pub source: &'static str,
    /// The name on the destination endpoint.
    pub destination: &'static str,
}

impl AttributeName {
    /// The attribute `name` (without `source.` or `destination.`).
    pub fn new(name: &str) -> AttributeName {
        static NAMES: OnceLock<Mutex<HashMap<String, AttributeName>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = names.get(name) {
            return *n;
        }
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let n = AttributeName {
            source: leak(format!("source.{name}")),
            destination: leak(format!("destination.{name}")),
        };
        names.insert(name.to_owned(), n);
        n
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A string, shared by every record of the endpoint.
    Str(Arc<str>),
    /// An integer.
    Int(i64),
}

/// One attribute of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAttribute {
    /// Its name.
    pub name: AttributeName,
    /// Its value.
    pub value: AttributeValue,
}

/// What is known about one endpoint, in the order the span writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The attributes.
    pub attributes: Vec<EndpointAttribute>,
}

impl Endpoint {
    /// Adds a string attribute.
    pub fn with_str(mut self, name: &str, value: &str) -> Endpoint {
        self.attributes.push(EndpointAttribute {
            name: AttributeName::new(name),
            value: AttributeValue::Str(value.into()),
        });
        self
    }

    /// Adds an integer attribute.
    pub fn with_int(mut self, name: &str, value: i64) -> Endpoint {
        self.attributes.push(EndpointAttribute {
            name: AttributeName::new(name),
            value: AttributeValue::Int(value),
        });
        self
    }
}

/// The endpoints of one record: `[source, destination]`.
pub type Endpoints = [Option<Arc<Endpoint>>; 2];

/// Endpoints by socket (protocol, address, port) and by address: one
/// snapshot, built in the background and never changed once published.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    by_socket: HashMap<(u8, IpAddr, u16), Arc<Endpoint>>,
    by_address: HashMap<IpAddr, Arc<Endpoint>>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    /// What is known about every socket on `address` (a pod, a host).
    pub fn insert_address(&mut self, address: IpAddr, endpoint: Arc<Endpoint>) {
        self.by_address.insert(address, endpoint);
    }

    /// What is known about one socket (a process's), which takes
    /// precedence over its address's.
    pub fn insert_socket(&mut self, protocol: u8, address: IpAddr, port: u16, e: Arc<Endpoint>) {
        self.by_socket.insert((protocol, address, port), e);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.by_socket.len() + self.by_address.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint at `address`:`port` for `protocol`: the socket's entry,
    /// else the address's.
    pub fn lookup(&self, protocol: u8, address: IpAddr, port: u16) -> Option<Arc<Endpoint>> {
        if !self.by_socket.is_empty()
            && let Some(e) = self.by_socket.get(&(protocol, address, port))
        {
            return Some(Arc::clone(e));
        }
        self.by_address.get(&address).cloned()
    }

    /// Fills in the endpoints of `record`.
    pub fn enrich(&self, record: &mut FlowRecord) {
        let p = record.key.protocol;
        let found = [
            self.lookup(p, record.source, record.source_port),
            self.lookup(p, record.destination, record.destination_port),
        ];
        record.endpoints = (found != [None, None]).then(|| Box::new(found));
    }
}

/// The current [`Directory`], replaced whole by whatever keeps it.
pub type EnrichmentView = Swap<Directory>;
