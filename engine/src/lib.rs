//! The flowspan engine: packet decoding, per-worker biflow tables and flow
//! records. No I/O, and no `unsafe` but a prefetch hint.
//!
//! - Capture crates implement [`CaptureSource`]; [`drive`] is the one loop
//!   that takes what a source delivers (frames, or [`FlowObservation`]s
//!   counted elsewhere) into a [`Pipeline`].
//! - [`decode()`] turns a frame into a [`PacketRepr`], reading each header
//!   through a [`wire`] view.
//! - A [`FlowTable`] (or a sharded [`Pipeline`] of them) turns packets and
//!   flow observations into [`FlowRecord`]s, whose endpoints the
//!   [`enrich`] directory describes; the exporter turns records into spans.
//! - Every stage publishes its counters into a [`Registry`], which can be
//!   read while the run goes on.
//!
//! ```
//! use engine::{decode, Decoded, FlowConfig, FlowTable, LinkType};
//!
//! // An IPv4 UDP datagram 192.0.2.1:5353 -> 192.0.2.2:53 as raw IP.
//! let pkt = [
//!     0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
//!     0x14, 0xe9, 0, 53, 0, 8, 0, 0,
//! ];
//! let Decoded::Ip(repr) = decode(LinkType::RAW, &pkt) else { panic!() };
//! let mut table = FlowTable::new(FlowConfig::default());
//! let mut records = Vec::new();
//! table.observe(&repr, 1_000, 1_000, &mut records);
//! table.flush(1_000, &mut records);
//! assert_eq!(records.len(), 1);
//! assert_eq!(records[0].destination_port, 53);
//! assert_eq!(records[0].end_reason.as_str(), "forced_end");
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod bpf;
pub mod community_id;
pub mod decode;
pub mod enrich;
pub mod error;
pub mod flow;
pub mod interfaces;
pub mod names;
pub mod pipeline;
pub mod registry;
mod ring;
pub mod sample;
pub mod snapshot;
pub mod source;
pub mod wire;

pub use community_id::CommunityId;
pub use decode::{Decoded, Fragment, LinkType, PacketRepr, SkipReason, decode};
pub use error::{DecodeError, DecodeErrorKind, Layer};
pub use flow::config::{
    DEFAULT_MAX_FRAGMENTS, FLOW_BYTES, FlowConfig, InterfaceFlows, IpNet, Timeouts,
};
pub use flow::host::{HostSockets, HostView, Listener};
pub use flow::key::FlowKey;
pub use flow::observation::{FlowObservation, ObservedEncap, Opening, SideDelta, TcpSamples};
pub use flow::record::{DirectionRecord, EndReason, FirstPacket, FlowRecord, FlowRole, TcpState};
pub use flow::table::{FlowTable, TableStats};
pub use pipeline::{Pipeline, PipelineClosed, PipelineConfig, Records};
pub use registry::{DecodeCounts, ProgramCounts, Registry, Snapshot};
pub use source::{CaptureSource, Clock, Ended, Frame, Input, Poll, drive};
