//! OTLP JSON: the protobuf JSON mapping of `ExportTraceServiceRequest`, one
//! request per line.
//!
//! Shape: `{"resourceSpans":[{"resource":{"attributes":[…]},"scopeSpans":
//! [{"scope":{…},"spans":[…]}]}]}`. Field names are lowerCamelCase, trace and
//! span ids are hex (as OTLP/JSON requires), 64-bit integers are strings, and
//! the span kind is the enum's integer value (`3` for CLIENT): the OTLP
//! specification requires integers for enums in OTLP/JSON, and receivers
//! built on the protobuf JSON mapping (rotel, for one) reject the enum names
//! the spec's example shows. Output is a pure function of the spans and the
//! resource: the same spans give the same bytes.

use std::io::{self, Write};

use crate::RequestEncoder;
use crate::resource::Resource;
use crate::span::{
    AttributeSink, FlowSpan, Key, Mapping, SpanHead, SpanKind, Text, Value, put_attributes,
};

/// Writes JSON-escaped `s` between quotes.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_json_str_body(out, s);
    out.push(b'"');
}

/// The bytes JSON escapes in a string: control characters, `"` and `\`.
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Writes JSON-escaped `s`, without the quotes.
fn write_json_str_body(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    // Almost every string written here needs no escape: check that first,
    // one table load per byte, and copy it whole.
    if !bytes.iter().any(|&b| ESCAPED[usize::from(b)]) {
        out.extend_from_slice(bytes);
        return;
    }
    // Otherwise copy the runs between escapes in one go. Bytes of multi-byte
    // UTF-8 characters are all >= 0x80 and are copied as they are.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

/// `bytes` as a quoted hex string: an id of 16 bytes at most.
fn write_hex<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const { assert!(N <= 16, "ids have 16 bytes at most") };
    // Built on the stack and copied once, not pushed a digit at a time.
    let mut text = [b'"'; 34];
    for (pair, b) in text[1..].chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    out.extend_from_slice(&text[..2 * N + 2]);
}

/// A 64-bit integer as a JSON string, as the protobuf JSON mapping writes them.
pub(crate) fn write_int_string(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.push(b'"');
    write_int(out, v);
    out.push(b'"');
}

/// An integer as a bare JSON number.
pub(crate) fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Appends one span object.
pub fn write_span(out: &mut Vec<u8>, span: &FlowSpan) {
    write_head(
        out,
        &span.trace_id,
        &span.span_id,
        &[&span.name],
        span.kind,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
    );
    let mut attributes = JsonAttributes { out, first: true };
    for a in &span.attributes {
        attributes.write(a.key, &a.value);
    }
    out.extend_from_slice(b"]}");
}

/// Appends record `r`'s span object, each attribute written as the mapping
/// makes it: the same bytes as [`write_span`] of [`crate::span::flow_span_into`]'s
/// span, without building the attribute list in between.
pub fn write_record(out: &mut Vec<u8>, r: &engine::FlowRecord, mapping: &Mapping) {
    let head = SpanHead::of(r);
    write_head(
        out,
        &head.trace_id,
        &head.span_id,
        &head.name(),
        head.kind,
        head.start_time_unix_nano,
        head.end_time_unix_nano,
    );
    put_attributes(r, mapping, &mut JsonAttributes { out, first: true });
    out.extend_from_slice(b"]}");
}

/// A span object up to the opening bracket of its attributes; `name` in
/// parts, written as one string.
fn write_head(
    out: &mut Vec<u8>,
    trace_id: &[u8; 16],
    span_id: &[u8; 8],
    name: &[&str],
    kind: SpanKind,
    start: u64,
    end: u64,
) {
    out.extend_from_slice(b"{\"traceId\":");
    write_hex(out, trace_id);
    out.extend_from_slice(b",\"spanId\":");
    write_hex(out, span_id);
    out.extend_from_slice(b",\"name\":\"");
    for part in name {
        write_json_str_body(out, part);
    }
    out.extend_from_slice(b"\",\"kind\":");
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(kind.number()).as_bytes());
    out.extend_from_slice(b",\"startTimeUnixNano\":");
    write_int_string(out, start);
    out.extend_from_slice(b",\"endTimeUnixNano\":");
    write_int_string(out, end);
    out.extend_from_slice(b",\"attributes\":[");
}

/// Writes attributes as the elements of a JSON array.
struct JsonAttributes<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl AttributeSink for JsonAttributes<'_> {
    fn put(&mut self, key: &'static str, value: Value) {
        self.write(key, &value);
    }

    fn put_key(&mut self, key: &'static Key, value: Value) {
        write_value(self.open_key(key), &value);
    }

    fn put_int(&mut self, key: &'static Key, value: i64) {
        write_int_value(self.open_key(key), value);
    }

    fn put_static(&mut self, key: &'static Key, value: &'static str) {
        let out = self.open_key(key);
        out.extend_from_slice(b"\"stringValue\":\"");
        write_json_str_body(out, value);
        out.extend_from_slice(b"\"}}");
    }
}

impl JsonAttributes<'_> {
    /// The buffer, after the comma that separates this attribute from the
    /// one before.
    fn open(&mut self) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out
    }

    /// The buffer after `key`'s opening, `{"key":"<name>","value":{`.
    #[inline]
    fn open_key(&mut self, key: &'static Key) -> &mut Vec<u8> {
        let out = self.open();
        // The whole padded array, then back to the end of the opening:
        // fixed-size stores instead of a copy of the name's length.
        let end = out.len() + key.json_len();
        out.extend_from_slice(key.json_padded());
        out.truncate(end);
        out
    }

    fn write(&mut self, key: &str, value: &Value) {
        let out = self.open();
        // Keys are names from the conventions: nothing to escape.
        debug_assert!(key.bytes().all(|b| b > 0x20 && b != b'"' && b != b'\\'));
        out.extend_from_slice(b"{\"key\":\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\",\"value\":{");
        write_value(out, value);
    }
}

/// The rest of an attribute object after `"value":{`. The fixed parts in
/// as few copies as possible: this runs about 40 times per span.
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(Text::Inline {
            len,
            bytes,
            plain: true,
        }) => {
            let text = &bytes[..usize::from(*len)];
            debug_assert!(!text.iter().any(|&b| ESCAPED[usize::from(b)]));
            out.extend_from_slice(b"\"stringValue\":\"");
            out.extend_from_slice(text);
            out.extend_from_slice(b"\"}}");
        }
        Value::Str(s) => {
            out.extend_from_slice(b"\"stringValue\":");
            write_json_string(out, s);
            out.extend_from_slice(b"}}");
        }
        Value::Int(v) => write_int_value(out, *v),
        Value::StrArray(values) => write_json_array(out, values),
        Value::SharedArray(values) => write_json_array(out, values),
    }
}

/// The rest of an attribute after `"value":{` for an `intValue`.
#[inline]
fn write_int_value(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(b"\"intValue\":\"");
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// The rest of an attribute whose value is an `arrayValue` of strings.
fn write_json_array<S: AsRef<str>>(out: &mut Vec<u8>, values: &[S]) {
    out.extend_from_slice(b"\"arrayValue\":{\"values\":[");
    for (j, s) in values.iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stringValue\":");
        write_json_string(out, s.as_ref());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}}}");
}

/// Builds OTLP JSON `ExportTraceServiceRequest`s for one resource, one span
/// at a time.
#[derive(Debug, Clone)]
pub struct JsonEncoder {
    prefix: Vec<u8>,
    spans: Vec<u8>,
    count: usize,
}

/// Closes a request.
const SUFFIX: &[u8] = b"]}]}]}";

impl JsonEncoder {
    /// An encoder of requests carrying `resource` and the flowspan scope.
    pub fn new(resource: &Resource) -> Self {
        let mut prefix = Vec::new();
        prefix.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
        for (i, (k, v)) in resource.attributes.iter().enumerate() {
            if i > 0 {
                prefix.push(b',');
            }
            prefix.extend_from_slice(b"{\"key\":");
            write_json_string(&mut prefix, k);
            prefix.extend_from_slice(b",\"value\":{\"stringValue\":");
            write_json_string(&mut prefix, v);
            prefix.extend_from_slice(b"}}");
        }
        prefix.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":");
        write_json_string(&mut prefix, crate::SCOPE_NAME);
        prefix.extend_from_slice(b",\"version\":");
        write_json_string(&mut prefix, crate::SCOPE_VERSION);
        prefix.extend_from_slice(b"},\"spans\":[");
        JsonEncoder {
            prefix,
            spans: Vec::with_capacity(1 << 16),
            count: 0,
        }
    }
}

impl RequestEncoder for JsonEncoder {
    fn push(&mut self, span: &FlowSpan) {
        if self.count > 0 {
            self.spans.push(b',');
        }
        write_span(&mut self.spans, span);
        self.count += 1;
    }

    fn push_encoded(&mut self, span: &crate::EncodedSpan) {
        if self.count > 0 {
            self.spans.push(b',');
        }
        self.spans.extend_from_slice(span.json());
        self.count += 1;
    }

    fn spans(&self) -> usize {
        self.count
    }

    fn take_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.spans);
        out.extend_from_slice(SUFFIX);
        self.spans.clear();
        self.count = 0;
    }
}

impl JsonEncoder {
    /// Writes the request straight to `out`, then `tail`, without first
    /// gathering it in one buffer, and starts a new one.
    ///
    /// # Errors
    /// Writing failed; the request's spans are dropped.
    fn write_request(&mut self, out: &mut impl Write, tail: &[u8]) -> io::Result<()> {
        let result = out
            .write_all(&self.prefix)
            .and_then(|()| out.write_all(&self.spans))
            .and_then(|()| out.write_all(SUFFIX))
            .and_then(|()| out.write_all(tail));
        self.spans.clear();
        self.count = 0;
        result
    }
}

/// Writes every byte of `slices` (`Write::write_all_vectored` is not
/// stable yet).
fn write_all_vectored(out: &mut impl Write, mut slices: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes OTLP JSON, one request of at most `batch_size` spans per line.
///
/// Spans encoded by the workers ([`write_encoded`](Self::write_encoded))
/// are not copied into a request buffer: the line is written from their
/// own buffers with vectored writes.
#[derive(Debug)]
pub struct OtlpJsonWriter<W: Write> {
    out: W,
    encoder: JsonEncoder,
    /// Encoded spans of the line under way, written when it ends. When it
    /// holds any, the encoder holds none.
    pending: Vec<crate::EncodedSpan>,
    batch_size: usize,
    spans: u64,
    requests: u64,
}

impl<W: Write> OtlpJsonWriter<W> {
    /// A writer of requests carrying `resource`, at most `batch_size` spans
    /// each.
    pub fn new(out: W, resource: &Resource, batch_size: usize) -> Self {
        OtlpJsonWriter {
            out,
            encoder: JsonEncoder::new(resource),
            pending: Vec::new(),
            batch_size: batch_size.max(1),
            spans: 0,
            requests: 0,
        }
    }

    /// Adds one span; writes a line when the batch is full.
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn write_span(&mut self, span: &FlowSpan) -> io::Result<()> {
        // Keep the line's order: encoded spans before this one go first.
        for p in self.pending.drain(..) {
            self.encoder.push_encoded(&p);
        }
        self.encoder.push(span);
        self.added()
    }

    /// Adds one span encoded by [`crate::encode_spans`] (with its JSON);
    /// writes a line when the batch is full.
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn write_encoded(&mut self, span: &crate::EncodedSpan) -> io::Result<()> {
        if self.encoder.spans() > 0 {
            self.encoder.push_encoded(span);
        } else {
            self.pending.push(span.clone());
        }
        self.added()
    }

    /// Spans in the line under way.
    fn in_line(&self) -> usize {
        self.encoder.spans() + self.pending.len()
    }

    /// Counts the span just added; ends the line when the batch is full.
    fn added(&mut self) -> io::Result<()> {
        self.spans += 1;
        if self.in_line() >= self.batch_size {
            self.end_batch()?;
        }
        Ok(())
    }

    /// Writes the spans added so far as one line (nothing if there are none).
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn end_batch(&mut self) -> io::Result<()> {
        if self.in_line() == 0 {
            return Ok(());
        }
        if self.pending.is_empty() {
            self.encoder.write_request(&mut self.out, b"\n")?;
        } else {
            let result = self.write_pending();
            self.pending.clear();
            result?;
        }
        self.requests += 1;
        Ok(())
    }

    /// Writes the line of the pending spans: the request's prefix, the
    /// spans with commas between them, the suffix and the newline, as
    /// slices of their own buffers.
    fn write_pending(&mut self) -> io::Result<()> {
        let mut slices = Vec::with_capacity(2 * self.pending.len() + 2);
        slices.push(io::IoSlice::new(&self.encoder.prefix));
        for (i, span) in self.pending.iter().enumerate() {
            if i > 0 {
                slices.push(io::IoSlice::new(b","));
            }
            slices.push(io::IoSlice::new(span.json()));
        }
        slices.push(io::IoSlice::new(SUFFIX));
        slices.push(io::IoSlice::new(b"\n"));
        write_all_vectored(&mut self.out, &mut slices)
    }

    /// Writes the spans added so far as one line, and flushes the output:
    /// what a live capture does after each batch of records, so that a
    /// reader of the file or pipe sees them at once.
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn flush(&mut self) -> io::Result<()> {
        self.end_batch()?;
        self.out.flush()
    }

    /// Writes `line`, a whole line of another request (flow metrics), as it
    /// is. The spans of the line under way stay in it: span lines come out
    /// the same with or without such lines between them.
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }

    /// Spans added so far.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Request lines written so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Writes the last partial batch, flushes, and returns the output.
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn finish(mut self) -> io::Result<W> {
        self.end_batch()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_a_json_parser() {
        for s in [
            "",
            "plain ascii",
            "quote \" backslash \\ slash /",
            "newline \n tab \t return \r",
            "controls \u{0} \u{1} \u{1f} \u{7f}",
            "unicode é ✓ 🦀",
            "\"\\\u{1}",
        ] {
            let mut out = Vec::new();
            write_json_string(&mut out, s);
            let back: String = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(back, s);
        }
        let mut out = Vec::new();
        write_json_string(&mut out, "a\u{1}b");
        assert_eq!(out, b"\"a\\u0001b\"");
    }

    /// A plain inline text is copied as it is; any other is checked and
    /// escaped. Same bytes for the same string either way.
    #[test]
    fn plain_and_checked_texts_write_alike() {
        let addr = Text::from("2001:db8::1".to_owned());
        let mut bytes = [0u8; 46];
        bytes[..11].copy_from_slice(b"2001:db8::1");
        let plain = Text::Inline {
            len: 11,
            bytes,
            plain: true,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_value(&mut a, &Value::Str(addr));
        write_value(&mut b, &Value::Str(plain));
        assert_eq!(a, b);
        assert_eq!(a, b"\"stringValue\":\"2001:db8::1\"}}");
        let mut quoted = Vec::new();
        let mut with_quote = [0u8; 46];
        with_quote[..3].copy_from_slice(b"a\"b");
        let not_plain = Text::Inline {
            len: 3,
            bytes: with_quote,
            plain: false,
        };
        write_value(&mut quoted, &Value::Str(not_plain));
        assert_eq!(quoted, b"\"stringValue\":\"a\\\"b\"}}");
    }
}
