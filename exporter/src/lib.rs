//! Flow records as OpenTelemetry spans.
//!
//! [`span::flow_span`] maps a [`engine::FlowRecord`] to a [`span::FlowSpan`]
//! following the Flow Trace semantic conventions; [`json::OtlpJsonWriter`]
//! renders spans as OTLP JSON, one `ExportTraceServiceRequest` per line.
//!
//! ```
//! use exporter::json::{OtlpJsonWriter, Resource};
//! let writer = OtlpJsonWriter::new(Vec::new(), &Resource::default(), 512);
//! let bytes = writer.finish().unwrap();
//! assert!(bytes.is_empty(), "no records, no request");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod json;
pub mod span;
