//! OTLP JSON: the protobuf JSON mapping of `ExportTraceServiceRequest`, one
//! request per line.
//!
//! Shape: `{"resourceSpans":[{"resource":{"attributes":[…]},"scopeSpans":
//! [{"scope":{…},"spans":[…]}]}]}`. Field names are lowerCamelCase, trace and
//! span ids are hex (as OTLP/JSON requires), 64-bit integers are strings, and
//! the span kind is the enum name (`SPAN_KIND_CLIENT`), as in the spec's
//! example. Output is a pure function of the records and the resource: the
//! same records give the same bytes.

use std::io::{self, Write};

use engine::FlowRecord;

use crate::span::{FlowSpan, Value, flow_span};

/// Resource and scope attributes written with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `(key, value)` string attributes, in output order.
    pub attributes: Vec<(String, String)>,
}

impl Default for Resource {
    fn default() -> Self {
        Resource {
            attributes: vec![
                ("service.name".into(), "flowspan".into()),
                ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
            ],
        }
    }
}

/// Writes JSON-escaped `s` between quotes.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
    out.push(b'"');
}

/// A 64-bit integer as a JSON string, as the protobuf JSON mapping writes them.
fn write_int_string(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    out.push(b'"');
    out.extend_from_slice(b.format(v).as_bytes());
    out.push(b'"');
}

/// Appends one span object.
pub fn write_span(out: &mut Vec<u8>, span: &FlowSpan) {
    out.extend_from_slice(b"{\"traceId\":");
    write_hex(out, &span.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    write_hex(out, &span.span_id);
    out.extend_from_slice(b",\"name\":");
    write_json_string(out, &span.name);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(span.kind.name().as_bytes());
    out.extend_from_slice(b"\",\"startTimeUnixNano\":");
    write_int_string(out, span.start_time_unix_nano);
    out.extend_from_slice(b",\"endTimeUnixNano\":");
    write_int_string(out, span.end_time_unix_nano);
    out.extend_from_slice(b",\"attributes\":[");
    for (i, a) in span.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_json_string(out, a.key);
        out.extend_from_slice(b",\"value\":");
        match &a.value {
            Value::Str(s) => {
                out.extend_from_slice(b"{\"stringValue\":");
                write_json_string(out, s);
                out.push(b'}');
            }
            Value::Int(v) => {
                out.extend_from_slice(b"{\"intValue\":");
                write_int_string(out, *v);
                out.push(b'}');
            }
            Value::StrArray(values) => {
                out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
                for (j, s) in values.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"stringValue\":");
                    write_json_string(out, s);
                    out.push(b'}');
                }
                out.extend_from_slice(b"]}}");
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Streams records as OTLP JSON requests of at most `batch_size` spans, one
/// request per line.
#[derive(Debug)]
pub struct OtlpJsonWriter<W: Write> {
    out: W,
    prefix: Vec<u8>,
    line: Vec<u8>,
    in_line: usize,
    batch_size: usize,
    spans: u64,
    requests: u64,
}

/// Closes a request line.
const SUFFIX: &[u8] = b"]}]}]}\n";

impl<W: Write> OtlpJsonWriter<W> {
    /// A writer of requests with `resource`, at most `batch_size` spans each.
    pub fn new(out: W, resource: &Resource, batch_size: usize) -> Self {
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
        prefix.extend_from_slice(
            b"]},\"scopeSpans\":[{\"scope\":{\"name\":\"flowspan\",\"version\":",
        );
        write_json_string(&mut prefix, env!("CARGO_PKG_VERSION"));
        prefix.extend_from_slice(b"},\"spans\":[");
        OtlpJsonWriter {
            out,
            prefix,
            line: Vec::with_capacity(1 << 16),
            in_line: 0,
            batch_size: batch_size.max(1),
            spans: 0,
            requests: 0,
        }
    }

    /// Adds one record; writes a request line when the batch is full.
    ///
    /// # Errors
    /// Writing to the output failed.
    pub fn write_record(&mut self, record: &FlowRecord) -> io::Result<()> {
        if self.in_line == 0 {
            self.line.clear();
            self.line.extend_from_slice(&self.prefix);
        } else {
            self.line.push(b',');
        }
        write_span(&mut self.line, &flow_span(record));
        self.in_line += 1;
        self.spans += 1;
        if self.in_line >= self.batch_size {
            self.end_line()?;
        }
        Ok(())
    }

    fn end_line(&mut self) -> io::Result<()> {
        if self.in_line == 0 {
            return Ok(());
        }
        self.line.extend_from_slice(SUFFIX);
        self.out.write_all(&self.line)?;
        self.in_line = 0;
        self.requests += 1;
        Ok(())
    }

    /// Spans written so far (including a partial batch).
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
        self.end_line()?;
        self.out.flush()?;
        Ok(self.out)
    }
}
