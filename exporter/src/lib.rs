//! Flow records as OpenTelemetry spans, and their delivery.
//!
//! - [`span::flow_span`] maps a [`engine::FlowRecord`] to a [`span::FlowSpan`]
//!   following the Flow Trace semantic conventions; it is the only place that
//!   decides names, kinds and attributes.
//! - [`json::JsonEncoder`] and [`proto::ProtoEncoder`] ([`RequestEncoder`]s)
//!   build `ExportTraceServiceRequest`s in OTLP JSON and OTLP protobuf; both
//!   carry the same [`resource::Resource`] and scope, so the JSON output and
//!   what is exported have the same content.
//! - [`otlp::OtlpExporter`] sends encoded requests over OTLP/gRPC or
//!   OTLP/HTTP with retries, a bounded queue and an accounted shutdown.
//!
//! ```
//! use exporter::json::OtlpJsonWriter;
//! use exporter::resource::Resource;
//! let writer = OtlpJsonWriter::new(Vec::new(), &Resource::default(), 512);
//! let bytes = writer.finish().unwrap();
//! assert!(bytes.is_empty(), "no spans, no request");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod json;
pub mod otlp;
pub mod proto;
pub mod resource;
pub mod span;

/// `InstrumentationScope.name` of every request.
pub const SCOPE_NAME: &str = "flowspan";
/// `InstrumentationScope.version` of every request.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds one `ExportTraceServiceRequest` at a time, span by span.
pub trait RequestEncoder {
    /// Appends a span to the request being built.
    fn push(&mut self, span: &span::FlowSpan);
    /// Spans in the request being built.
    fn spans(&self) -> usize;
    /// Appends the request to `out` and starts a new, empty one.
    fn take_request(&mut self, out: &mut Vec<u8>);
}
