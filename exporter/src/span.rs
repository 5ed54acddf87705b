//! Flow record → flow span mapping, following the Flow Trace semantic
//! conventions (`shared/spec/flow-trace-semantic-conventions.md`).
//!
//! This is the only place that decides span names, kinds and attributes;
//! every encoder renders a [`FlowSpan`].

use std::borrow::Cow;

use engine::names;
use engine::{DirectionRecord, FlowRecord, FlowRole};

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Initiator unknown.
    Internal,
    /// The observer answered the flow.
    Server,
    /// The initiator is known.
    Client,
}

impl SpanKind {
    /// The protobuf enum value.
    pub fn number(self) -> i32 {
        match self {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        }
    }

    /// The protobuf enum name, as the JSON mapping writes it.
    pub fn name(self) -> &'static str {
        match self {
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
        }
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `stringValue`.
    Str(Cow<'static, str>),
    /// `intValue` (semantic-convention type `long`).
    Int(i64),
    /// `arrayValue` of strings (semantic-convention type `string[]`).
    StrArray(Vec<&'static str>),
}

/// One span attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name.
    pub key: &'static str,
    /// Attribute value.
    pub value: Value,
}

/// A flow span, ready to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpan {
    /// Trace id (shared by all records of a flow).
    pub trace_id: [u8; 16],
    /// Span id (one per record).
    pub span_id: [u8; 8],
    /// `flow_<network.type>_<network.transport>`.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// First packet of the record.
    pub start_time_unix_nano: u64,
    /// Last packet of the record.
    pub end_time_unix_nano: u64,
    /// Attributes in a fixed order.
    pub attributes: Vec<Attribute>,
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn push(attrs: &mut Vec<Attribute>, key: &'static str, value: Value) {
    attrs.push(Attribute { key, value });
}

/// Attribute names of one direction.
struct DirectionKeys {
    bytes_delta: &'static str,
    bytes_total: &'static str,
    packets_delta: &'static str,
    packets_total: &'static str,
    ttl: &'static str,
    dscp_id: &'static str,
    dscp_name: &'static str,
    ecn_id: &'static str,
    ecn_name: &'static str,
    flow_label: &'static str,
    icmp_type_id: &'static str,
    icmp_type_name: &'static str,
    icmp_code_id: &'static str,
    icmp_code_name: &'static str,
    tcp_bits: &'static str,
    tcp_tags: &'static str,
}

const FORWARD: DirectionKeys = DirectionKeys {
    bytes_delta: "flow.bytes.delta",
    bytes_total: "flow.bytes.total",
    packets_delta: "flow.packets.delta",
    packets_total: "flow.packets.total",
    ttl: "flow.ip.ttl",
    dscp_id: "flow.ip.dscp.id",
    dscp_name: "flow.ip.dscp.name",
    ecn_id: "flow.ip.ecn.id",
    ecn_name: "flow.ip.ecn.name",
    flow_label: "flow.ip.flow_label",
    icmp_type_id: "flow.icmp.type.id",
    icmp_type_name: "flow.icmp.type.name",
    icmp_code_id: "flow.icmp.code.id",
    icmp_code_name: "flow.icmp.code.name",
    tcp_bits: "flow.tcp.flags.bits",
    tcp_tags: "flow.tcp.flags.tags",
};

const REVERSE: DirectionKeys = DirectionKeys {
    bytes_delta: "flow.reverse.bytes.delta",
    bytes_total: "flow.reverse.bytes.total",
    packets_delta: "flow.reverse.packets.delta",
    packets_total: "flow.reverse.packets.total",
    ttl: "flow.reverse.ip.ttl",
    dscp_id: "flow.reverse.ip.dscp.id",
    dscp_name: "flow.reverse.ip.dscp.name",
    ecn_id: "flow.reverse.ip.ecn.id",
    ecn_name: "flow.reverse.ip.ecn.name",
    flow_label: "flow.reverse.ip.flow_label",
    icmp_type_id: "flow.reverse.icmp.type.id",
    icmp_type_name: "flow.reverse.icmp.type.name",
    icmp_code_id: "flow.reverse.icmp.code.id",
    icmp_code_name: "flow.reverse.icmp.code.name",
    tcp_bits: "flow.reverse.tcp.flags.bits",
    tcp_tags: "flow.reverse.tcp.flags.tags",
};

fn counters(attrs: &mut Vec<Attribute>, k: &DirectionKeys, d: &DirectionRecord) {
    push(attrs, k.bytes_delta, int(d.bytes_delta));
    push(attrs, k.bytes_total, int(d.bytes_total));
    push(attrs, k.packets_delta, int(d.packets_delta));
    push(attrs, k.packets_total, int(d.packets_total));
}

fn ip_fields(attrs: &mut Vec<Attribute>, k: &DirectionKeys, d: &DirectionRecord, ipv6: bool) {
    let Some(first) = d.first else { return };
    push(attrs, k.ttl, int(u64::from(first.ttl)));
    let dscp = first.tos >> 2;
    push(attrs, k.dscp_id, int(u64::from(dscp)));
    if let Some(name) = names::dscp_name(dscp) {
        push(attrs, k.dscp_name, Value::Str(Cow::Borrowed(name)));
    }
    let ecn = first.tos & 3;
    push(attrs, k.ecn_id, int(u64::from(ecn)));
    push(
        attrs,
        k.ecn_name,
        Value::Str(Cow::Borrowed(names::ecn_name(ecn))),
    );
    if ipv6 {
        push(attrs, k.flow_label, int(u64::from(first.flow_label)));
    }
}

fn icmp_fields(attrs: &mut Vec<Attribute>, k: &DirectionKeys, d: &DirectionRecord, protocol: u8) {
    let Some(first) = d.first else { return };
    let (t, c) = (first.icmp_type, first.icmp_code);
    push(attrs, k.icmp_type_id, int(u64::from(t)));
    if let Some(name) = names::icmp_type_name(protocol, t) {
        push(attrs, k.icmp_type_name, Value::Str(Cow::Borrowed(name)));
    }
    push(attrs, k.icmp_code_id, int(u64::from(c)));
    if let Some(name) = names::icmp_code_name(protocol, t, c) {
        push(attrs, k.icmp_code_name, Value::Str(Cow::Borrowed(name)));
    }
}

fn tcp_fields(attrs: &mut Vec<Attribute>, k: &DirectionKeys, d: &DirectionRecord) {
    push(attrs, k.tcp_bits, int(u64::from(d.tcp_flags)));
    push(
        attrs,
        k.tcp_tags,
        Value::StrArray(names::tcp_flag_tags(d.tcp_flags).collect()),
    );
}

/// Maps one flow record to its span.
pub fn flow_span(r: &FlowRecord) -> FlowSpan {
    let protocol = r.key.protocol;
    let transport = names::transport_name(protocol);
    let network_type = r.network_type();
    let ipv6 = network_type == "ipv6";
    let kind = match r.role {
        FlowRole::Client => SpanKind::Client,
        FlowRole::Server => SpanKind::Server,
        FlowRole::Internal => SpanKind::Internal,
    };
    let mut a = Vec::with_capacity(48);
    push(
        &mut a,
        "flow.community_id",
        Value::Str(Cow::Owned(r.community_id.to_string())),
    );
    push(
        &mut a,
        "flow.direction",
        Value::Str(Cow::Borrowed(r.role.direction())),
    );
    push(
        &mut a,
        "flow.end_reason",
        Value::Str(Cow::Borrowed(r.end_reason.as_str())),
    );
    if let Some(state) = r.tcp_state {
        push(
            &mut a,
            "flow.connection.state",
            Value::Str(Cow::Borrowed(state.as_str())),
        );
    }
    push(
        &mut a,
        "source.address",
        Value::Str(Cow::Owned(r.source.to_string())),
    );
    push(&mut a, "source.port", int(u64::from(r.source_port)));
    push(
        &mut a,
        "destination.address",
        Value::Str(Cow::Owned(r.destination.to_string())),
    );
    push(
        &mut a,
        "destination.port",
        int(u64::from(r.destination_port)),
    );
    push(&mut a, "network.transport", Value::Str(transport.clone()));
    push(
        &mut a,
        "network.type",
        Value::Str(Cow::Borrowed(network_type)),
    );
    counters(&mut a, &FORWARD, &r.forward);
    counters(&mut a, &REVERSE, &r.reverse);
    ip_fields(&mut a, &FORWARD, &r.forward, ipv6);
    ip_fields(&mut a, &REVERSE, &r.reverse, ipv6);
    if protocol == 1 || protocol == 58 {
        icmp_fields(&mut a, &FORWARD, &r.forward, protocol);
        icmp_fields(&mut a, &REVERSE, &r.reverse, protocol);
    }
    if protocol == 6 {
        tcp_fields(&mut a, &FORWARD, &r.forward);
        tcp_fields(&mut a, &REVERSE, &r.reverse);
    }
    FlowSpan {
        trace_id: r.trace_id,
        span_id: r.span_id,
        name: format!("flow_{network_type}_{transport}"),
        kind,
        start_time_unix_nano: r.start_ns,
        end_time_unix_nano: r.end_ns,
        attributes: a,
    }
}
