//! The hand-written protobuf encoder against `opentelemetry-proto`'s
//! generated (prost) types: every fixture's spans, encoded both ways (our
//! protobuf decoded by prost, and our OTLP JSON parsed as JSON), must carry
//! the same resource, scope and spans with the same typed attributes. And
//! the ways of writing a span (alone, in a shared buffer, as JSON lines from
//! either) give the same bytes.

use std::path::{Path, PathBuf};

use engine::{Decoded, FlowConfig, FlowRecord, FlowTable, LinkType, decode};
use exporter::RequestEncoder;
use exporter::json::{JsonEncoder, OtlpJsonWriter};
use exporter::proto::ProtoEncoder;
use exporter::resource::Resource;
use exporter::span::flow_span;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use serde_json::Value as Json;

/// A typed attribute value, as both encodings must carry it.
#[derive(Debug, PartialEq, Eq)]
enum V {
    Str(String),
    Int(i64),
    StrArray(Vec<String>),
}

/// `(trace_id, span_id, name, kind, start, end, attributes)`.
type Span = (String, String, String, i64, u64, u64, Vec<(String, V)>);

fn records_of(path: &Path) -> Vec<FlowRecord> {
    let mut reader = capture_pcap::CaptureReader::open(path).expect("fixture opens");
    let mut table = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    let mut clock = 0;
    while let Some(f) = reader.next_frame().expect("fixture reads") {
        if let Decoded::Ip(p) = decode(LinkType(f.link_type), f.data) {
            clock = clock.max(f.ts_ns);
            table.observe(&p, f.ts_ns, clock, &mut out);
        }
    }
    table.flush(clock, &mut out);
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_any(v: &AnyValue) -> V {
    match v.value.as_ref().expect("a value") {
        Any::StringValue(s) => V::Str(s.clone()),
        Any::IntValue(i) => V::Int(*i),
        Any::ArrayValue(a) => V::StrArray(
            a.values
                .iter()
                .map(|v| match from_any(v) {
                    V::Str(s) => s,
                    other => panic!("array of strings expected, got {other:?}"),
                })
                .collect(),
        ),
        other => panic!("unexpected value type {other:?}"),
    }
}

fn from_kv(kv: &[KeyValue]) -> Vec<(String, V)> {
    kv.iter()
        .map(|a| (a.key.clone(), from_any(a.value.as_ref().expect("value"))))
        .collect()
}

fn from_json_value(v: &Json) -> V {
    if let Some(s) = v.get("stringValue") {
        V::Str(s.as_str().expect("string").to_string())
    } else if let Some(i) = v.get("intValue") {
        V::Int(
            i.as_str()
                .expect("int64 as string")
                .parse()
                .expect("integer"),
        )
    } else if let Some(a) = v.get("arrayValue") {
        V::StrArray(
            a["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x["stringValue"].as_str().expect("string").to_string())
                .collect(),
        )
    } else {
        panic!("unexpected JSON value {v}")
    }
}

fn json_attrs(list: &Json) -> Vec<(String, V)> {
    list.as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            (
                a["key"].as_str().expect("key").to_string(),
                from_json_value(&a["value"]),
            )
        })
        .collect()
}

fn int_string(v: &Json) -> u64 {
    v.as_str()
        .expect("uint64 as string")
        .parse()
        .expect("integer")
}

/// The generated fixtures in `testdata/pcap`, in name order.
fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/pcap")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    paths
}

#[test]
fn protobuf_and_json_carry_the_same_spans_for_every_fixture() {
    let paths = fixtures();
    assert!(paths.len() >= 20, "fixtures present");

    let mut resource = Resource::default();
    resource.set("host.name", "oracle \"quoted\" \u{e9}");
    let mut total = 0;
    for path in &paths {
        let spans: Vec<_> = records_of(path).iter().map(flow_span).collect();
        if spans.is_empty() {
            continue;
        }
        let mut proto = ProtoEncoder::new(&resource);
        let mut json = JsonEncoder::new(&resource);
        for s in &spans {
            proto.push(s);
            json.push(s);
        }
        assert_eq!(proto.spans(), spans.len());
        let mut pb = Vec::new();
        proto.take_request(&mut pb);
        let mut js = Vec::new();
        json.take_request(&mut js);
        assert_eq!(proto.spans(), 0, "take_request starts a new request");

        let req = ExportTraceServiceRequest::decode(pb.as_slice()).unwrap_or_else(|e| {
            panic!("{}: prost cannot decode our protobuf: {e}", path.display())
        });
        // Re-encoding with prost gives the same bytes: same fields, same
        // order, no stray data.
        assert_eq!(req.encode_to_vec(), pb, "{}", path.display());
        let json: Json = serde_json::from_slice(&js).expect("our JSON parses");

        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let jrs = &json["resourceSpans"][0];
        assert_eq!(
            from_kv(&rs.resource.as_ref().expect("resource").attributes),
            json_attrs(&jrs["resource"]["attributes"])
        );
        assert_eq!(rs.scope_spans.len(), 1);
        let ss = &rs.scope_spans[0];
        let jss = &jrs["scopeSpans"][0];
        let scope = ss.scope.as_ref().expect("scope");
        assert_eq!(scope.name, jss["scope"]["name"].as_str().unwrap());
        assert_eq!(scope.version, jss["scope"]["version"].as_str().unwrap());

        let from_proto: Vec<Span> = ss
            .spans
            .iter()
            .map(|s| {
                (
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    s.name.clone(),
                    i64::from(s.kind),
                    s.start_time_unix_nano,
                    s.end_time_unix_nano,
                    from_kv(&s.attributes),
                )
            })
            .collect();
        let from_json: Vec<Span> = jss["spans"]
            .as_array()
            .expect("spans")
            .iter()
            .map(|s| {
                (
                    s["traceId"].as_str().unwrap().to_string(),
                    s["spanId"].as_str().unwrap().to_string(),
                    s["name"].as_str().unwrap().to_string(),
                    s["kind"].as_i64().expect("kind is an integer in OTLP/JSON"),
                    int_string(&s["startTimeUnixNano"]),
                    int_string(&s["endTimeUnixNano"]),
                    json_attrs(&s["attributes"]),
                )
            })
            .collect();
        assert_eq!(from_proto.len(), spans.len());
        assert_eq!(from_proto, from_json, "{}", path.display());
        total += spans.len();
    }
    assert!(total > 50, "compared {total} spans");
}

#[test]
fn spans_encoded_in_shared_buffers_are_each_span_encoded_alone() {
    // Every fixture's records in one message: more than one buffer's worth
    // (64 spans), with a last buffer that is not full.
    let paths = fixtures();
    let records: Vec<FlowRecord> = paths.iter().flat_map(|p| records_of(p)).collect();
    assert!(
        records.len() > 2 * 64 && !records.len().is_multiple_of(64),
        "{} records",
        records.len()
    );
    let both = exporter::Encodings {
        json: true,
        proto: true,
    };
    let mapping = exporter::span::Mapping::default();
    // The second time, in reverse, the spans go into the buffers the first
    // time's spans gave back, which held other bytes.
    let reversed: Vec<FlowRecord> = records.iter().rev().cloned().collect();
    for records in [&records, &reversed] {
        let encoded = exporter::encode_spans(records, both, &mapping);
        assert_eq!(encoded.len(), records.len());
        for (r, e) in records.iter().zip(&encoded) {
            let span = flow_span(r);
            let (mut json, mut proto) = (Vec::new(), Vec::new());
            exporter::json::write_span(&mut json, &span);
            exporter::proto::put_span(&mut proto, &span);
            assert_eq!(e.json(), json.as_slice());
            assert_eq!(e.proto(), proto.as_slice());
        }
    }
}

/// Takes at most 1000 bytes per write, like a pipe that is nearly full:
/// vectored writes must carry on where a short write stopped.
struct Trickle(Vec<u8>);

impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1000);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(1000 - n);
            self.0.extend_from_slice(&b[..take]);
            n += take;
            if n == 1000 {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn json_lines_are_the_same_from_encoded_spans_as_from_spans() {
    // Spans encoded by the workers are written from their own buffers;
    // spans mapped here go through the request buffer. Either way, and
    // mixed, the lines must be the same bytes.
    let records: Vec<FlowRecord> = fixtures().iter().flat_map(|p| records_of(p)).collect();
    let json = exporter::Encodings {
        json: true,
        proto: false,
    };
    let encoded = exporter::encode_spans(&records, json, &exporter::span::Mapping::default());
    let spans: Vec<_> = records.iter().map(flow_span).collect();
    let resource = Resource::default();
    let lines = |pick: &dyn Fn(usize) -> bool| {
        let mut w = OtlpJsonWriter::new(Trickle(Vec::new()), &resource, 7);
        for (i, (span, e)) in spans.iter().zip(&encoded).enumerate() {
            if pick(i) {
                w.write_encoded(e).expect("written");
            } else {
                w.write_span(span).expect("written");
            }
        }
        let requests = w.requests();
        (w.finish().expect("finished").0, requests)
    };
    let (copied, _) = lines(&|_| false);
    assert_eq!(
        copied.iter().filter(|&&b| b == b'\n').count(),
        spans.len().div_ceil(7)
    );
    for line in copied.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<Json>(line).expect("each line is one JSON request");
    }
    assert_eq!(lines(&|_| true).0, copied, "all encoded");
    assert_eq!(lines(&|i| i % 3 != 0).0, copied, "mixed");
    assert_eq!(lines(&|i| i % 10 < 5).0, copied, "mixed in runs");
}

#[test]
fn spans_written_as_mapped_are_the_mapped_spans_bytes_with_every_option() {
    // One encoding alone is written attribute by attribute as the mapping
    // makes them (`json::write_record`, `proto::put_record`); it must be
    // the bytes of the span the mapping builds, whatever the mapping writes: opt-in groups, the
    // sampling rate, interface names and MACs, and endpoints' attributes
    // on either side or both (`process.pid`: once, the source's).
    use engine::enrich::{AttributeName, AttributeValue, Endpoint, EndpointAttribute};
    use exporter::span::{InterfaceNames, Mapping, OptIn, flow_span_into};
    use std::sync::Arc;

    // An attribute of the span that either endpoint may give, and one that
    // only the destination's side writes.
    let endpoint = |namespace: &str, pid: i64, policy: &str| {
        let mut e = Endpoint::default()
            .with_str("k8s.namespace.name", namespace)
            .expect("a known name");
        for (name, value) in [
            (
                AttributeName::sided("process.pid", "process.pid"),
                AttributeValue::Int(pid),
            ),
            (
                AttributeName::sided("", "network.policy.ingress"),
                AttributeValue::StrList(vec![Arc::<str>::from(policy)].into()),
            ),
        ] {
            e.attributes.push(EndpointAttribute { name, value });
        }
        Arc::new(e)
    };
    let source = endpoint("shop", 7, "allow-web");
    let destination = endpoint("db", 9, "allow-shop");
    // A span of more than 16 KB, whose protobuf length takes three bytes.
    let long = endpoint(&"n".repeat(20_000), 7, "allow-web");

    let mut records: Vec<FlowRecord> = fixtures().iter().flat_map(|p| records_of(p)).collect();
    for (i, r) in records.iter_mut().enumerate() {
        r.interface_index = Some(1 + (i % 3) as u32);
        r.interface_mac = (i % 2 == 0).then_some([2, 0, 0, 0, 0, i as u8]);
        r.endpoints = match i % 4 {
            0 => None,
            1 => Some(Box::new([Some(Arc::clone(&source)), None])),
            2 => Some(Box::new([None, Some(Arc::clone(&destination))])),
            _ => Some(Box::new([
                Some(Arc::clone(if i == 3 { &long } else { &source })),
                Some(Arc::clone(&destination)),
            ])),
        };
    }
    let plain = Mapping::default();
    let full = Mapping {
        interfaces: InterfaceNames::new(vec![(1, "eth0".into()), (2, "veth \"q\"".into())]),
        opt_in: OptIn {
            tunnel: true,
            ipsec: true,
        },
        sampling_rate: Some(10),
    };
    let mut span = exporter::span::FlowSpan::default();
    let mut longest = 0;
    for (mapping, json) in [
        (&plain, true),
        (&full, true),
        (&plain, false),
        (&full, false),
    ] {
        let encodings = exporter::Encodings { json, proto: !json };
        let encoded = exporter::encode_spans(&records, encodings, mapping);
        assert_eq!(encoded.len(), records.len());
        for (i, (r, e)) in records.iter().zip(&encoded).enumerate() {
            flow_span_into(r, mapping, &mut span);
            let mut expected = Vec::new();
            if json {
                exporter::json::write_span(&mut expected, &span);
                assert_eq!(
                    String::from_utf8_lossy(e.json()),
                    String::from_utf8_lossy(&expected)
                );
                assert!(e.proto().is_empty());
            } else {
                exporter::proto::put_span(&mut expected, &span);
                assert_eq!(e.proto(), expected.as_slice(), "record {i}");
                assert!(e.json().is_empty());
                longest = longest.max(expected.len());
            }
            // One `process.pid` whichever endpoints have one: with both,
            // the source's.
            let pids: Vec<_> = span
                .attributes
                .iter()
                .filter(|a| a.key.contains("process.pid"))
                .map(|a| &a.value)
                .collect();
            let expected = match i % 4 {
                0 => vec![],
                2 => vec![&exporter::span::Value::Int(9)],
                _ => vec![&exporter::span::Value::Int(7)],
            };
            assert_eq!(pids, expected, "record {i}");
        }
    }
    assert!(longest > 20_000, "the longest span: {longest} bytes");
}
