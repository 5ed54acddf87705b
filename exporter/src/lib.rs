//! Flow records as OpenTelemetry spans, and their delivery.
//!
//! - [`span::flow_span`] maps a [`engine::FlowRecord`] to a [`span::FlowSpan`]
//!   following the Flow Trace semantic conventions; [`span::put_attributes`],
//!   which it uses, is the only place that decides attributes, and
//!   [`span::SpanHead`] names and kinds. [`encode_spans`] writes a span
//!   with one encoding as it is mapped, without the `FlowSpan`.
//! - [`json::JsonEncoder`] and [`proto::ProtoEncoder`] ([`RequestEncoder`]s)
//!   build `ExportTraceServiceRequest`s in OTLP JSON and OTLP protobuf; both
//!   carry the same [`resource::Resource`] and scope, so the JSON output and
//!   what is exported have the same content.
//! - [`otlp::OtlpExporter`] sends encoded requests over OTLP/gRPC or
//!   OTLP/HTTP with retries, a bounded queue and an accounted shutdown; the
//!   transport takes the [`otlp::Signal`] as a parameter.
//! - [`sink::RecordSink`]s are the outputs of the ordered record stream,
//!   fed [`sink::Mapped`] records that the workers encoded once.
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
pub mod metrics;
pub mod otlp;
pub mod proto;
pub mod resource;
pub mod select;
pub mod sink;
pub mod span;

/// `InstrumentationScope.name` of every request.
pub const SCOPE_NAME: &str = "flowspan";
/// `InstrumentationScope.version` of every request.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds one `ExportTraceServiceRequest` at a time, span by span.
pub trait RequestEncoder {
    /// Appends a span to the request being built.
    fn push(&mut self, span: &span::FlowSpan);
    /// Appends a span already encoded by [`encode_spans`], taking the
    /// encoding in this encoder's format.
    fn push_encoded(&mut self, span: &EncodedSpan);
    /// Spans in the request being built.
    fn spans(&self) -> usize;
    /// Appends the request to `out` and starts a new, empty one.
    fn take_request(&mut self, out: &mut Vec<u8>);
}

/// Which encodings [`encode_spans`] produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encodings {
    /// OTLP JSON span object.
    pub json: bool,
    /// OTLP protobuf `ScopeSpans.spans` field.
    pub proto: bool,
}

/// One record's span, mapped and encoded ahead of batching (so that this
/// work can run on the flow workers in parallel), as ranges of a buffer
/// shared by the spans encoded together.
#[derive(Debug, Clone)]
pub struct EncodedSpan {
    buf: std::sync::Arc<SpanBuffer>,
    json: std::ops::Range<u32>,
    proto: std::ops::Range<u32>,
}

impl EncodedSpan {
    /// The OTLP JSON span object (empty if not asked for).
    pub fn json(&self) -> &[u8] {
        &self.buf.bytes[self.json.start as usize..self.json.end as usize]
    }

    /// The protobuf `ScopeSpans.spans` field (empty if not asked for).
    pub fn proto(&self) -> &[u8] {
        &self.buf.bytes[self.proto.start as usize..self.proto.end as usize]
    }
}

/// Spans encoded into one shared buffer. Enough that the allocation is not
/// per span; few enough that buffers all have about the same size, which
/// the allocator then reuses. A buffer per message (thousands of spans when
/// a capture ends) grown by doubling was fresh memory nearly every time:
/// its page faults and cache misses cost more than writing the JSON.
const SPANS_PER_BUFFER: usize = 64;
/// Bytes set aside per span and encoding: a little above the largest spans
/// of `gen-bigcap`'s traffic (2 508 B as JSON, 1 226 B as protobuf; 2 191
/// and 1 058 B on average), so that a buffer rarely grows.
const JSON_SPAN_BYTES: usize = 2560;
const PROTO_SPAN_BYTES: usize = 1280;

/// The bytes of [`SPANS_PER_BUFFER`] encoded spans. When the last of its
/// spans is dropped (written or sent), the memory goes back to a small
/// store of spare buffers that the next spans are encoded into: the span
/// bytes of a run stay in the same few megabytes instead of coming fresh
/// from the allocator, whose page faults cost more than the encoding.
#[derive(Debug)]
struct SpanBuffer {
    bytes: Vec<u8>,
}

/// Spare buffers kept at most: 64 × 64 spans, about 10 MB.
const SPARE_BUFFERS: usize = 64;
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

impl SpanBuffer {
    /// An empty buffer with room for `capacity` bytes: a spare one if any.
    fn take(capacity: usize) -> Vec<u8> {
        let spare = SPARE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut bytes = spare.unwrap_or_default();
        bytes.reserve(capacity);
        bytes
    }
}

impl Drop for SpanBuffer {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        let mut spare = SPARE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spare.len() < SPARE_BUFFERS {
            spare.push(bytes);
        }
    }
}

/// Maps each record to its span and encodes them all, as asked, into
/// buffers shared by 64 spans: one allocation for many
/// spans instead of one per span.
///
/// `mapping` names the interfaces of a live capture
/// (`network.interface.name`) and says which opt-in attributes to write.
/// With one encoding, each attribute is written as it is mapped
/// ([`json::write_record`], [`proto::put_record`]), without the span's
/// attribute list; with both, the span is mapped once and encoded twice.
pub fn encode_spans(
    records: &[engine::FlowRecord],
    encodings: Encodings,
    mapping: &span::Mapping,
) -> Vec<EncodedSpan> {
    if encodings.json != encodings.proto {
        let per_span = if encodings.json {
            JSON_SPAN_BYTES
        } else {
            PROTO_SPAN_BYTES
        };
        return encode_in_buffers(records, per_span, |r, buf| {
            let start = offset(buf);
            if encodings.json {
                json::write_record(buf, r, mapping);
            } else {
                proto::put_record(buf, r, mapping);
            }
            let end = offset(buf);
            let (json, proto) = if encodings.json {
                (start..end, end..end)
            } else {
                (start..start, start..end)
            };
            Some((json, proto, ()))
        })
        .into_iter()
        .flatten()
        .map(|(span, ())| span)
        .collect();
    }
    encode_selected(records, encodings, mapping, &select::RecordRules::default())
        .into_iter()
        .flatten()
        .collect()
}

/// [`encode_spans`], leaving out the spans that `rules` drop: one item per
/// record, `None` for a record left out. A span is mapped once, whether
/// kept or not; only those kept are encoded.
pub fn encode_selected(
    records: &[engine::FlowRecord],
    encodings: Encodings,
    mapping: &span::Mapping,
    rules: &select::RecordRules,
) -> Vec<Option<EncodedSpan>> {
    encode_selected_with(records, encodings, mapping, rules, |_, _| ())
        .into_iter()
        .map(|kept| kept.map(|(span, ())| span))
        .collect()
}

/// [`encode_selected`], also handing each kept record and its mapped span
/// to `also` (e.g. for [`metrics::Dimensions::sample`]), whose result goes
/// with the encoded span.
pub fn encode_selected_with<X>(
    records: &[engine::FlowRecord],
    encodings: Encodings,
    mapping: &span::Mapping,
    rules: &select::RecordRules,
    mut also: impl FnMut(&engine::FlowRecord, &span::FlowSpan) -> X,
) -> Vec<Option<(EncodedSpan, X)>> {
    let per_span = usize::from(encodings.json) * JSON_SPAN_BYTES
        + usize::from(encodings.proto) * PROTO_SPAN_BYTES;
    let mut span = span::FlowSpan::default();
    encode_in_buffers(records, per_span, |r, buf| {
        span::flow_span_into(r, mapping, &mut span);
        if !rules.keeps(&span) {
            return None;
        }
        let start = offset(buf);
        if encodings.json {
            json::write_span(buf, &span);
        }
        let mid = offset(buf);
        if encodings.proto {
            proto::put_span(buf, &span);
        }
        Some((start..mid, mid..offset(buf), also(r, &span)))
    })
}

/// Where the next span starts in a buffer of [`SPANS_PER_BUFFER`] spans.
fn offset(buf: &[u8]) -> u32 {
    u32::try_from(buf.len()).expect("a buffer of 64 spans is small")
}

/// Encodes each record with `encode` into buffers of [`SPANS_PER_BUFFER`]
/// spans, `per_span` bytes set aside for each: `encode` appends a record's
/// encodings to the buffer and returns their ranges (JSON, protobuf) and
/// what goes with them, or `None` for a record left out.
fn encode_in_buffers<X>(
    records: &[engine::FlowRecord],
    per_span: usize,
    mut encode: impl FnMut(
        &engine::FlowRecord,
        &mut Vec<u8>,
    ) -> Option<(std::ops::Range<u32>, std::ops::Range<u32>, X)>,
) -> Vec<Option<(EncodedSpan, X)>> {
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(SPANS_PER_BUFFER) {
        let mut buf = SpanBuffer::take(chunk.len() * per_span);
        let mut ranges = Vec::with_capacity(chunk.len());
        for r in chunk {
            ranges.push(encode(r, &mut buf));
        }
        let buf = std::sync::Arc::new(SpanBuffer { bytes: buf });
        out.extend(ranges.into_iter().map(|r| {
            r.map(|(json, proto, x)| {
                let span = EncodedSpan {
                    buf: std::sync::Arc::clone(&buf),
                    json,
                    proto,
                };
                (span, x)
            })
        }));
    }
    out
}

/// One UDP record, 10.0.0.1:`src_port` → 10.0.0.2:53, as a real flow table
/// makes it from one packet: for the unit tests.
#[cfg(test)]
pub(crate) fn udp_record(src_port: u16) -> engine::FlowRecord {
    let p = engine::PacketRepr {
        src_port,
        dst_port: 53,
        ip_bytes: 60,
        ..engine::PacketRepr::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17)
    };
    let mut table = engine::FlowTable::new(engine::FlowConfig::default());
    let mut records = Vec::new();
    table.observe(&p, 1, 1, &mut records);
    table.flush(1, &mut records);
    records.pop().expect("one record")
}
