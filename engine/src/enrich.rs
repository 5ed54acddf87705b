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
/// life of the process, at most [`MAX_ATTRIBUTE_NAMES`] of them (the
/// specification's, or a configured allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttributeName {
    /// The name on the source endpoint.
    pub source: &'static str,
    /// The name on the destination endpoint.
    pub destination: &'static str,
}

/// Distinct attribute names interned at most: the specification's
/// endpoint attributes and a configured allow-list are far fewer. Names
/// are leaked (they live as long as the process), so the table is bounded.
pub const MAX_ATTRIBUTE_NAMES: usize = 1024;

/// The longest attribute name, in bytes (without `source.`).
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 256;

/// Why an attribute name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// More distinct names than [`MAX_ATTRIBUTE_NAMES`].
    #[error(
        "attribute {name:?} would be name number {limit} + 1 (at most {limit} distinct attribute names)"
    )]
    TooMany {
        /// The name refused.
        name: String,
        /// The limit.
        limit: usize,
    },
    /// Not a name the spans can carry as it is: empty, longer than
    /// [`MAX_ATTRIBUTE_NAME_LEN`], or with a byte that is not printable
    /// ASCII, a space, a quote or a backslash. (Span encoders write names
    /// without escaping them.)
    #[error(
        "attribute name {name:?} is not 1 to 256 printable ASCII characters without spaces, quotes or backslashes"
    )]
    Invalid {
        /// The name refused.
        name: String,
    },
}

impl AttributeName {
    /// An attribute of the span, not of an endpoint, that one endpoint
    /// decides: written as `source` when the endpoint is the record's
    /// source, as `destination` when it is its destination, and not at all
    /// on a side whose name is empty. (`network.policy.egress` comes from
    /// the policies of the source pod, `network.policy.ingress` from the
    /// destination pod's.)
    pub const fn sided(source: &'static str, destination: &'static str) -> AttributeName {
        AttributeName {
            source,
            destination,
        }
    }

    /// The attribute `name` (without `source.` or `destination.`).
    ///
    /// # Errors
    /// `name` is not a valid name ([`NameError::Invalid`]), or it is new
    /// and [`MAX_ATTRIBUTE_NAMES`] names are interned already.
    pub fn new(name: &str) -> Result<AttributeName, NameError> {
        static NAMES: OnceLock<Mutex<HashMap<String, AttributeName>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        intern(&mut names, name, MAX_ATTRIBUTE_NAMES)
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for AttributeName {
    /// An arbitrary name, or a specification one once the table is full.
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let name: &str = u.arbitrary()?;
        AttributeName::new(name)
            .or_else(|_| AttributeName::new("k8s.pod.name"))
            .map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

/// Looks `name` up in `names`, adding it (checked against `limit` before
/// anything is allocated) if it is new.
fn intern(
    names: &mut HashMap<String, AttributeName>,
    name: &str,
    limit: usize,
) -> Result<AttributeName, NameError> {
    if let Some(n) = names.get(name) {
        return Ok(*n);
    }
    let valid = (1..=MAX_ATTRIBUTE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if !valid {
        return Err(NameError::Invalid {
            name: name.chars().take(MAX_ATTRIBUTE_NAME_LEN).collect(),
        });
    }
    if names.len() >= limit {
        return Err(NameError::TooMany {
            name: name.to_owned(),
            limit,
        });
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let n = AttributeName {
        source: leak(format!("source.{name}")),
        destination: leak(format!("destination.{name}")),
    };
    names.insert(name.to_owned(), n);
    Ok(n)
}

/// An attribute value.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A string, shared by every record of the endpoint.
    Str(Arc<str>),
    /// An integer.
    Int(i64),
    /// A list of strings (`string[]`), shared by every record of the
    /// endpoint.
    StrList(Arc<[Arc<str>]>),
}

/// One attribute of an endpoint.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAttribute {
    /// Its name.
    pub name: AttributeName,
    /// Its value.
    pub value: AttributeValue,
}

/// What is known about one endpoint, in the order the span writes it.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The attributes.
    pub attributes: Vec<EndpointAttribute>,
}

impl Endpoint {
    /// Adds a string attribute.
    ///
    /// # Errors
    /// See [`AttributeName::new`].
    pub fn with_str(mut self, name: &str, value: &str) -> Result<Endpoint, NameError> {
        self.attributes.push(EndpointAttribute {
            name: AttributeName::new(name)?,
            value: AttributeValue::Str(value.into()),
        });
        Ok(self)
    }

    /// Adds an integer attribute.
    ///
    /// # Errors
    /// See [`AttributeName::new`].
    pub fn with_int(mut self, name: &str, value: i64) -> Result<Endpoint, NameError> {
        self.attributes.push(EndpointAttribute {
            name: AttributeName::new(name)?,
            value: AttributeValue::Int(value),
        });
        Ok(self)
    }
}

/// The endpoints of one record: `[source, destination]`.
pub type Endpoints = [Option<Arc<Endpoint>>; 2];

/// Endpoints by socket (protocol, address, port) and by address: one
/// snapshot, built in the background and never changed once published.
///
/// A lookup is one hash lookup by address, and a second by socket only
/// for addresses that have socket entries. A directory may lay its entries
/// over another's ([`Directory::over`]): what it does not know, the one
/// below answers (the host's sockets over the cluster's addresses).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    by_address: hashbrown::HashMap<IpAddr, Address, foldhash::fast::RandomState>,
    by_socket: hashbrown::HashMap<(u8, IpAddr, u16), Arc<Endpoint>, foldhash::fast::RandomState>,
    below: Option<Arc<Directory>>,
}

/// What is known at one address.
#[derive(Debug, Clone, Default)]
struct Address {
    /// Every socket's endpoint, unless the socket has its own.
    endpoint: Option<Arc<Endpoint>>,
    /// Whether some socket on it has an entry of its own.
    sockets: bool,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    /// What is known about every socket on `address` (a pod, a host).
    pub fn insert_address(&mut self, address: IpAddr, endpoint: Arc<Endpoint>) {
        self.by_address.entry(address).or_default().endpoint = Some(endpoint);
    }

    /// What is known about one socket (a process's), which takes
    /// precedence over its address's.
    pub fn insert_socket(&mut self, protocol: u8, address: IpAddr, port: u16, e: Arc<Endpoint>) {
        self.by_address.entry(address).or_default().sockets = true;
        self.by_socket.insert((protocol, address, port), e);
    }

    /// This directory's entries laid over `below`'s.
    pub fn over(mut self, below: Arc<Directory>) -> Directory {
        self.below = Some(below);
        self
    }

    /// Entries held (not counting a directory below): addresses with an
    /// endpoint, and sockets.
    pub fn len(&self) -> usize {
        self.by_socket.len()
            + self
                .by_address
                .values()
                .filter(|a| a.endpoint.is_some())
                .count()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint at `address`:`port` for `protocol`: the socket's entry,
    /// else the address's.
    pub fn lookup(&self, protocol: u8, address: IpAddr, port: u16) -> Option<Arc<Endpoint>> {
        let own = self.by_address.get(&address).and_then(|a| {
            if a.sockets
                && let Some(e) = self.by_socket.get(&(protocol, address, port))
            {
                return Some(Arc::clone(e));
            }
            a.endpoint.clone()
        });
        match (&own, &self.below) {
            (None, Some(below)) => below.lookup(protocol, address, port),
            _ => own,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once_and_bounded() {
        let mut names = HashMap::new();
        let a = intern(&mut names, "k8s.pod.name", 2).unwrap();
        assert_eq!(a.source, "source.k8s.pod.name");
        assert_eq!(a.destination, "destination.k8s.pod.name");
        let again = intern(&mut names, "k8s.pod.name", 2).unwrap();
        assert!(std::ptr::eq(a.source, again.source), "not allocated twice");
        intern(&mut names, "process.pid", 2).unwrap();
        let e = intern(&mut names, "k8s.node.name", 2).unwrap_err();
        assert!(matches!(e, NameError::TooMany { limit: 2, .. }), "{e}");
        assert_eq!(names.len(), 2, "refused before anything was added");
        // Known names still resolve at the limit.
        assert!(intern(&mut names, "process.pid", 2).is_ok());
    }

    /// Found by the `encode_spans` fuzz target: a name with a quote made
    /// invalid JSON (span encoders write names as they are).
    #[test]
    fn names_that_spans_cannot_carry_as_they_are_are_refused() {
        let mut names = HashMap::new();
        for bad in [
            "",
            "a\"b",
            "a\\b",
            "a b",
            "k8s.pod.label.é",
            "\n",
            &"x".repeat(257),
        ] {
            let e = intern(&mut names, bad, 10).unwrap_err();
            assert!(matches!(e, NameError::Invalid { .. }), "{bad:?}: {e}");
        }
        assert!(names.is_empty());
        assert!(intern(&mut names, "k8s.pod.label.app.kubernetes.io/name", 10).is_ok());
    }
}
