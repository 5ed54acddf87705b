//! What the fuzz targets share: a small flow table that meters decoded
//! packets, and the checks every encoded span must pass.
#![forbid(unsafe_code)]

use engine::decode::{Decoded, Decoder};
use engine::{FlowConfig, FlowRecord, FlowTable, LinkType, Timeouts};
use exporter::json::JsonEncoder;
use exporter::proto::ProtoEncoder;
use exporter::resource::Resource;
use exporter::span::Mapping;
use exporter::{Encodings, RequestEncoder, encode_spans};
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, TracesData};
use prost::Message;

/// A flow table with short timeouts and a small flow limit, so that every
/// way a flow ends is reached by small inputs.
pub fn small_table() -> FlowTable {
    FlowTable::new(FlowConfig {
        timeouts: Timeouts {
            tcp_idle_ns: 3_000_000_000,
            udp_idle_ns: 2_000_000_000,
            icmp_idle_ns: 1_000_000_000,
            other_idle_ns: 2_000_000_000,
            active_ns: 1_500_000_000,
            tcp_end_linger_ns: 500_000_000,
            unestablished_idle_ns: 1_200_000_000,
            fragment_ns: 1_000_000_000,
            fragment_v6_ns: 2_000_000_000,
        },
        max_flows: 16,
        max_fragments: 8,
        ..FlowConfig::default()
    })
}

/// Decodes `frame` and meters it at `ts_ns` on a capture clock that never
/// goes back.
pub fn meter(
    table: &mut FlowTable,
    decoder: &Decoder,
    link: LinkType,
    frame: &[u8],
    ts_ns: u64,
    clock: &mut u64,
    out: &mut Vec<FlowRecord>,
) {
    *clock = (*clock).max(ts_ns);
    if let Decoded::Ip(p) = decoder.decode(link, frame) {
        assert!(p.segments >= 1, "a packet is at least one segment: {p:?}");
        table.observe(&p, ts_ns, *clock, out);
    }
}

/// Encodes `records` as OTLP JSON and protobuf spans and checks both: each
/// JSON span parses, each protobuf span decodes, the two carry the same
/// name and attribute keys in the same order, and whole requests of each
/// encoding parse. Each encoding alone (written attribute by attribute as
/// mapped) gives the same bytes as both together (mapped into a span's
/// attribute list first).
pub fn check_spans(records: &[FlowRecord], mapping: &Mapping) {
    let encodings = Encodings {
        json: true,
        proto: true,
    };
    let spans = encode_spans(records, encodings, mapping);
    assert_eq!(spans.len(), records.len());
    for json in [true, false] {
        let alone = Encodings { json, proto: !json };
        let direct = encode_spans(records, alone, mapping);
        for ((d, s), record) in direct.iter().zip(&spans).zip(records) {
            if json {
                assert_eq!(d.json(), s.json(), "{record:?}");
            } else {
                assert_eq!(d.proto(), s.proto(), "{record:?}");
            }
        }
    }
    let resource = Resource::default();
    let mut json_request = JsonEncoder::new(&resource);
    let mut proto_request = ProtoEncoder::new(&resource);
    for (span, record) in spans.iter().zip(records) {
        let json: serde_json::Value = serde_json::from_slice(span.json())
            .unwrap_or_else(|e| panic!("span JSON does not parse ({e}): {record:?}"));
        let proto = ScopeSpans::decode(span.proto())
            .unwrap_or_else(|e| panic!("span protobuf does not decode ({e}): {record:?}"));
        assert_eq!(proto.spans.len(), 1, "{record:?}");
        let proto = &proto.spans[0];
        assert_eq!(json["name"].as_str(), Some(proto.name.as_str()));
        let json_keys: Vec<&str> = json["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|a| a["key"].as_str().expect("key"))
            .collect();
        let proto_keys: Vec<&str> = proto.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(json_keys, proto_keys, "{record:?}");
        json_request.push_encoded(span);
        proto_request.push_encoded(span);
    }
    let mut body = Vec::new();
    json_request.take_request(&mut body);
    if !records.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&body).expect("JSON request parses");
    }
    body.clear();
    proto_request.take_request(&mut body);
    let data = TracesData::decode(body.as_slice()).expect("protobuf request decodes");
    let n: usize = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(n, records.len());
}
