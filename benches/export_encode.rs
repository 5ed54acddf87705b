//! What one flow span costs to encode for export, three ways (criterion,
//! `cargo bench -p flowspan-benches --bench export_encode`):
//!
//! - `flowspan_proto`: the exporter's own encoder, straight from `FlowSpan`
//!   to protobuf bytes (what `engine` uses).
//! - `prost_structs`: build `opentelemetry-proto`'s generated structs from
//!   the same spans and encode them with prost.
//! - `sdk_spandata`: build the OpenTelemetry SDK's `SpanData` (what a tracer
//!   hands to an exporter), convert it with `opentelemetry-proto`'s
//!   transform, as the SDK's OTLP exporter does, and encode. This leaves out
//!   the tracer and span processor, so the SDK path costs at least this.
//! - `flowspan_json`: the OTLP JSON encoder, for comparison.
//!
//! Each iteration maps every fixture record to a span (`flow_span`) and
//! encodes them in requests of 512 spans: throughput is spans.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::FlowRecord;
use exporter::RequestEncoder;
use exporter::json::JsonEncoder;
use exporter::proto::ProtoEncoder;
use exporter::resource::Resource;
use exporter::span::{FlowSpan, SpanKind, Value, flow_span};
use flowspan_benches::fixture_records;
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope as ProtoScope, KeyValue as ProtoKeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message;

const BATCH: usize = 512;

fn string_array<S: AsRef<str>>(a: &[S]) -> any_value::Value {
    any_value::Value::ArrayValue(ArrayValue {
        values: a
            .iter()
            .map(|s| AnyValue {
                value: Some(any_value::Value::StringValue(s.as_ref().to_owned())),
            })
            .collect(),
    })
}

fn proto_value(v: &Value) -> AnyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::StrArray(a) => string_array(a),
        Value::SharedArray(a) => string_array(a),
    };
    AnyValue { value: Some(value) }
}

fn prost_span(s: &FlowSpan) -> Span {
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        name: s.name.clone(),
        kind: s.kind.number(),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: s
            .attributes
            .iter()
            .map(|a| ProtoKeyValue {
                key: a.key.to_string(),
                value: Some(proto_value(&a.value)),
                ..ProtoKeyValue::default()
            })
            .collect(),
        ..Span::default()
    }
}

fn prost_request(resource: &Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(ProtoResource {
                attributes: resource
                    .attributes
                    .iter()
                    .map(|(k, v)| ProtoKeyValue {
                        key: k.clone(),
                        value: Some(proto_value(&Value::Str(v.clone().into()))),
                        ..ProtoKeyValue::default()
                    })
                    .collect(),
                ..ProtoResource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(ProtoScope {
                    name: exporter::SCOPE_NAME.into(),
                    version: exporter::SCOPE_VERSION.into(),
                    ..ProtoScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn sdk_span(s: &FlowSpan, scope: &InstrumentationScope) -> SpanData {
    let kind = match s.kind {
        SpanKind::Internal => opentelemetry::trace::SpanKind::Internal,
        SpanKind::Server => opentelemetry::trace::SpanKind::Server,
        SpanKind::Client => opentelemetry::trace::SpanKind::Client,
    };
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id),
            SpanId::from_bytes(s.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(s.name.clone()),
        start_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(s.start_time_unix_nano),
        end_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(s.end_time_unix_nano),
        attributes: s
            .attributes
            .iter()
            .map(|a| match &a.value {
                Value::Str(v) => KeyValue::new(a.key, v.to_string()),
                Value::Int(v) => KeyValue::new(a.key, *v),
                Value::StrArray(v) => KeyValue::new(
                    a.key,
                    opentelemetry::Value::Array(Array::String(
                        v.iter().map(|x| StringValue::from(*x)).collect(),
                    )),
                ),
                Value::SharedArray(v) => KeyValue::new(
                    a.key,
                    opentelemetry::Value::Array(Array::String(
                        v.iter().map(|x| StringValue::from(x.to_string())).collect(),
                    )),
                ),
            })
            .collect(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// Maps and encodes every record with `enc` in requests of [`BATCH`];
/// returns the bytes written.
fn encode_all(enc: &mut impl RequestEncoder, records: &[FlowRecord], out: &mut Vec<u8>) -> usize {
    out.clear();
    for r in records {
        enc.push(&flow_span(r));
        if enc.spans() == BATCH {
            enc.take_request(out);
        }
    }
    enc.take_request(out);
    out.len()
}

fn bench(c: &mut Criterion) {
    let records = fixture_records();
    let resource = Resource::detect();
    let mut g = c.benchmark_group("export_encode");
    g.throughput(Throughput::Elements(records.len() as u64));

    g.bench_function("flowspan_proto", |b| {
        let mut enc = ProtoEncoder::new(&resource);
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| black_box(encode_all(&mut enc, &records, &mut out)))
    });

    g.bench_function("flowspan_json", |b| {
        let mut enc = JsonEncoder::new(&resource);
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| black_box(encode_all(&mut enc, &records, &mut out)))
    });

    g.bench_function("prost_structs", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for chunk in records.chunks(BATCH) {
                let spans = chunk.iter().map(|r| prost_span(&flow_span(r))).collect();
                bytes += prost_request(&resource, spans).encode_to_vec().len();
            }
            black_box(bytes)
        })
    });

    let scope = InstrumentationScope::builder(exporter::SCOPE_NAME)
        .with_version(exporter::SCOPE_VERSION)
        .build();
    let sdk_resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            resource
                .attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let with_schema = ResourceAttributesWithSchema::from(&sdk_resource);
    g.bench_function("sdk_spandata", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for chunk in records.chunks(BATCH) {
                let spans = chunk
                    .iter()
                    .map(|r| sdk_span(&flow_span(r), &scope))
                    .collect();
                let request = ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(spans, &with_schema),
                };
                bytes += request.encode_to_vec().len();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
