//! OTLP protobuf: `ExportTraceServiceRequest` encoded straight from
//! [`FlowSpan`]s, or from records as they are mapped ([`put_record`]),
//! without building intermediate message structs.
//!
//! Every length is computed arithmetically before its bytes are written (a
//! span written as mapped gets its length in two bytes set aside before it,
//! filled in at its end; the body moves only when the length needs another
//! number of bytes), so a request costs one pass over the spans plus one
//! copy of the span bytes into the request. The resource and scope parts are encoded once per encoder.
//! `tests/proto_oracle.rs` decodes the output with `opentelemetry-proto`'s
//! generated types and checks it against the OTLP JSON of the same spans.
//!
//! Messages and field numbers (opentelemetry/proto, v1):
//!
//! | message | fields written |
//! |---|---|
//! | ExportTraceServiceRequest | 1 resource_spans |
//! | ResourceSpans | 1 resource, 2 scope_spans |
//! | Resource | 1 attributes |
//! | ScopeSpans | 1 scope, 2 spans |
//! | InstrumentationScope | 1 name, 2 version |
//! | Span | 1 trace_id, 2 span_id, 5 name, 6 kind, 7 start (fixed64), 8 end (fixed64), 9 attributes |
//! | KeyValue | 1 key, 2 value |
//! | AnyValue | 1 string_value, 3 int_value, 5 array_value |
//! | ArrayValue | 1 values |

use crate::RequestEncoder;
use crate::resource::Resource;
use crate::span::{
    AttributeSink, FlowSpan, Key, Mapping, SpanHead, SpanKind, Value, put_attributes,
};

const LEN: u8 = 2;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;

const fn tag(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 significant bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of a length-delimited field (tag, length, body) with a one-byte tag.
fn field_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(tag(field, LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The `AnyValue` of a `string_value` whose UTF-8 is `s`, and the other
/// kinds below: the lengths both `span_len` and the writers use.
fn string_any_len(s: &[u8]) -> usize {
    field_len(s.len())
}

/// An `int_value` of two's-complement `bits`: its tag and varint.
fn int_any_len(bits: u64) -> usize {
    1 + varint_len(bits)
}

fn array_any_len<S: AsRef<str>>(values: &[S]) -> usize {
    field_len(array_len(values))
}

fn any_value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => string_any_len(s.as_bytes()),
        Value::Int(i) => int_any_len(*i as u64),
        Value::StrArray(values) => array_any_len(values),
        Value::SharedArray(values) => array_any_len(values),
    }
}

fn array_len<S: AsRef<str>>(values: &[S]) -> usize {
    values
        .iter()
        .map(|s| field_len(string_any_len(s.as_ref().as_bytes())))
        .sum()
}

fn put_array<S: AsRef<str>>(out: &mut Vec<u8>, values: &[S]) {
    out.push(tag(5, LEN));
    put_varint(out, array_len(values) as u64);
    for s in values {
        let s = s.as_ref();
        out.push(tag(1, LEN));
        put_varint(out, string_any_len(s.as_bytes()) as u64);
        put_bytes(out, 1, s.as_bytes());
    }
}

fn key_value_len(key: &str, value: &Value) -> usize {
    field_len(key.len()) + field_len(any_value_len(value))
}

fn put_key_value(out: &mut Vec<u8>, field: u8, key: &str, value: &Value) {
    match value {
        Value::Str(s) => put_str_key_value(out, field, key, s.as_bytes()),
        Value::Int(i) => put_int_key_value(out, field, key, *i),
        Value::StrArray(values) => put_array_key_value(out, field, key, values),
        Value::SharedArray(values) => put_array_key_value(out, field, key, values),
    }
}

/// A `KeyValue` as field `field`: `key`, then an `AnyValue` of `any_len`
/// bytes, which `put_any` writes.
#[inline]
fn put_key_value_with(
    out: &mut Vec<u8>,
    field: u8,
    key: &str,
    any_len: usize,
    put_any: impl FnOnce(&mut Vec<u8>),
) {
    out.push(tag(field, LEN));
    put_varint(out, (field_len(key.len()) + field_len(any_len)) as u64);
    put_bytes(out, 1, key.as_bytes());
    out.push(tag(2, LEN));
    put_varint(out, any_len as u64);
    put_any(out);
}

/// [`put_key_value`] of an `int_value`.
fn put_int_key_value(out: &mut Vec<u8>, field: u8, key: &str, v: i64) {
    // int64 is encoded as its two's-complement bits.
    let bits = v as u64;
    put_key_value_with(out, field, key, int_any_len(bits), |out| {
        out.push(tag(3, VARINT));
        put_varint(out, bits);
    });
}

/// [`put_key_value`] of a `string_value` whose UTF-8 is `s`.
fn put_str_key_value(out: &mut Vec<u8>, field: u8, key: &str, s: &[u8]) {
    put_key_value_with(out, field, key, string_any_len(s), |out| {
        put_bytes(out, 1, s);
    });
}

/// [`put_key_value`] of an `array_value` of strings.
fn put_array_key_value<S: AsRef<str>>(out: &mut Vec<u8>, field: u8, key: &str, values: &[S]) {
    put_key_value_with(out, field, key, array_any_len(values), |out| {
        put_array(out, values);
    });
}

fn span_len(span: &FlowSpan) -> usize {
    let kind = span.kind.number() as u64;
    field_len(span.trace_id.len())
        + field_len(span.span_id.len())
        + field_len(span.name.len())
        + 1
        + varint_len(kind)
        + 2 * (1 + 8)
        + span
            .attributes
            .iter()
            .map(|a| field_len(key_value_len(a.key, &a.value)))
            .sum::<usize>()
}

/// Appends `span` as field 2 (`spans`) of a `ScopeSpans`.
pub fn put_span(out: &mut Vec<u8>, span: &FlowSpan) {
    out.push(tag(2, LEN));
    put_varint(out, span_len(span) as u64);
    put_head(
        out,
        &span.trace_id,
        &span.span_id,
        &[&span.name],
        span.kind,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
    );
    for a in &span.attributes {
        put_key_value(out, 9, a.key, &a.value);
    }
}

/// A span's fields before its attributes; `name` in parts, written as one
/// string.
fn put_head(
    out: &mut Vec<u8>,
    trace_id: &[u8; 16],
    span_id: &[u8; 8],
    name: &[&str],
    kind: SpanKind,
    start: u64,
    end: u64,
) {
    put_bytes(out, 1, trace_id);
    put_bytes(out, 2, span_id);
    out.push(tag(5, LEN));
    put_varint(out, name.iter().map(|p| p.len()).sum::<usize>() as u64);
    for part in name {
        out.extend_from_slice(part.as_bytes());
    }
    out.push(tag(6, VARINT));
    put_varint(out, kind.number() as u64);
    out.push(tag(7, FIXED64));
    out.extend_from_slice(&start.to_le_bytes());
    out.push(tag(8, FIXED64));
    out.extend_from_slice(&end.to_le_bytes());
}

/// Appends record `r`'s span as field 2 (`spans`) of a `ScopeSpans`, each
/// attribute written as the mapping makes it: the same bytes as
/// [`put_span`] of [`crate::span::flow_span_into`]'s span, without
/// building the attribute list in between.
pub fn put_record(out: &mut Vec<u8>, r: &engine::FlowRecord, mapping: &Mapping) {
    let head = SpanHead::of(r);
    out.push(tag(2, LEN));
    // The span's length comes before it and is known only at its end: room
    // for two bytes (128 B to 16 KB, nearly every span), the body moved if
    // it needs another number.
    const GUESS: usize = 2;
    let at = out.len();
    out.extend_from_slice(&[0; GUESS]);
    put_head(
        out,
        &head.trace_id,
        &head.span_id,
        &head.name(),
        head.kind,
        head.start_time_unix_nano,
        head.end_time_unix_nano,
    );
    put_attributes(r, mapping, &mut ProtoAttributes(out));
    let body = (out.len() - at - GUESS) as u64;
    let n = varint_len(body);
    if n != GUESS {
        out.splice(at..at + GUESS, std::iter::repeat_n(0, n));
    }
    let mut v = body;
    for b in &mut out[at..at + n] {
        // Seven bits per byte, low first; the high bit says more follow.
        *b = (v as u8 & 0x7f) | if v >= 0x80 { 0x80 } else { 0 };
        v >>= 7;
    }
}

/// Writes attributes as `Span.attributes` fields.
struct ProtoAttributes<'a>(&'a mut Vec<u8>);

impl AttributeSink for ProtoAttributes<'_> {
    fn put(&mut self, key: &'static str, value: Value) {
        put_key_value(self.0, 9, key, &value);
    }

    fn put_int(&mut self, key: &'static Key, value: i64) {
        put_int_key_value(self.0, 9, key.name, value);
    }

    fn put_static(&mut self, key: &'static Key, value: &'static str) {
        put_str_key_value(self.0, 9, key.name, value.as_bytes());
    }
}

/// Builds OTLP protobuf `ExportTraceServiceRequest`s for one resource, one
/// span at a time.
#[derive(Debug, Clone)]
pub struct ProtoEncoder {
    /// `ResourceSpans.resource`, tag included.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, tag included.
    scope: Vec<u8>,
    /// Encoded spans of the request being built.
    spans: Vec<u8>,
    count: usize,
}

impl ProtoEncoder {
    /// An encoder of requests carrying `resource` and the flowspan scope.
    pub fn new(resource: &Resource) -> Self {
        let mut attrs = Vec::new();
        for (k, v) in &resource.attributes {
            put_key_value(&mut attrs, 1, k, &Value::Str(v.clone().into()));
        }
        let mut res = Vec::new();
        put_bytes(&mut res, 1, &attrs);
        let mut scope_body = Vec::new();
        put_bytes(&mut scope_body, 1, crate::SCOPE_NAME.as_bytes());
        put_bytes(&mut scope_body, 2, crate::SCOPE_VERSION.as_bytes());
        let mut scope = Vec::new();
        put_bytes(&mut scope, 1, &scope_body);
        ProtoEncoder {
            resource: res,
            scope,
            spans: Vec::with_capacity(1 << 16),
            count: 0,
        }
    }
}

impl RequestEncoder for ProtoEncoder {
    fn push(&mut self, span: &FlowSpan) {
        put_span(&mut self.spans, span);
        self.count += 1;
    }

    fn push_encoded(&mut self, span: &crate::EncodedSpan) {
        self.spans.extend_from_slice(span.proto());
        self.count += 1;
    }

    fn spans(&self) -> usize {
        self.count
    }

    fn take_request(&mut self, out: &mut Vec<u8>) {
        let scope_spans = self.scope.len() + self.spans.len();
        let resource_spans = self.resource.len() + field_len(scope_spans);
        out.reserve(field_len(resource_spans));
        out.push(tag(1, LEN));
        put_varint(out, resource_spans as u64);
        out.extend_from_slice(&self.resource);
        out.push(tag(2, LEN));
        put_varint(out, scope_spans as u64);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(&self.spans);
        self.spans.clear();
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
            (-1i64) as u64,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }
}
