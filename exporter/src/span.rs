//! Flow record → flow span mapping, following the Flow Trace semantic
//! conventions (`shared/spec/flow-trace-semantic-conventions.md`).
//!
//! This is the only place that decides span names, kinds and attributes.
//! [`put_attributes`] puts a record's attributes, in order, into an
//! [`AttributeSink`]: a [`FlowSpan`]'s list (for record rules, flow metrics
//! and encoding twice), or an encoder that writes each one as it comes
//! (one encoding alone, the engine's usual path). Either way the encoders
//! write the same bytes.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use engine::enrich::{AttributeValue, Endpoints};
use engine::flow::record::{EncapRecord, OverheadBytes, TcpLatency};
use engine::names;
use engine::{DirectionRecord, FlowRecord, FlowRole};

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanKind {
    /// Initiator unknown.
    #[default]
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

/// Longest [`Text::Inline`]: an IPv6 address with an embedded IPv4 one
/// (45 characters) fits, and so does a Community ID (30).
const INLINE: usize = 46;

/// A string attribute value. Those made per span (addresses, the Community
/// ID) are short and kept inline, so mapping a span allocates no strings.
#[derive(Clone)]
pub enum Text {
    /// A fixed string.
    Static(&'static str),
    /// Up to 46 bytes of UTF-8, held in place.
    Inline {
        /// Bytes used.
        len: u8,
        /// The string in `bytes[..len]`.
        bytes: [u8; INLINE],
        /// Made by the mapping's own formatting of an address or an id:
        /// ASCII with nothing that JSON escapes, so the JSON encoder copies
        /// it as it is, without checking it.
        plain: bool,
    },
    /// Any other string.
    Owned(String),
    /// A string shared with other spans (enrichment values).
    Shared(std::sync::Arc<str>),
}

impl Text {
    /// The string's UTF-8 bytes, without the check [`as_str`](Self::as_str)
    /// makes of inline text (encoders write bytes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Static(s) => s.as_bytes(),
            Text::Inline { len, bytes, .. } => &bytes[..usize::from(*len)],
            Text::Owned(s) => s.as_bytes(),
            Text::Shared(s) => s.as_bytes(),
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            // Only whole `str`s are ever written there (see `inline`).
            Text::Inline { len, bytes, .. } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Text::Owned(s) => s,
            Text::Shared(s) => s,
        }
    }

    /// `v` rendered with `Display`, inline if it fits.
    fn display(v: impl std::fmt::Display) -> Text {
        let mut t = InlineWriter {
            len: 0,
            bytes: [0; INLINE],
        };
        if write!(t, "{v}").is_ok() {
            Text::Inline {
                len: t.len as u8,
                bytes: t.bytes,
                plain: false,
            }
        } else {
            Text::Owned(v.to_string())
        }
    }

    /// A Community ID in its canonical base64 form.
    fn community_id(id: engine::CommunityId) -> Text {
        let mut bytes = [0u8; INLINE];
        bytes[..30].copy_from_slice(&id.to_ascii());
        Text::Inline {
            len: 30,
            bytes,
            plain: true,
        }
    }

    /// A MAC address as the spec writes it: lowercase hex pairs joined by
    /// colons.
    fn mac(mac: [u8; 6]) -> Text {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; INLINE];
        for (i, b) in mac.into_iter().enumerate() {
            bytes[i * 3] = HEX[usize::from(b >> 4)];
            bytes[i * 3 + 1] = HEX[usize::from(b & 15)];
            if i < 5 {
                bytes[i * 3 + 2] = b':';
            }
        }
        Text::Inline {
            len: 17,
            bytes,
            plain: true,
        }
    }

    /// An IP address in its standard text form (IPv4 without the general
    /// formatting machinery, which is slow).
    fn ip(addr: IpAddr) -> Text {
        let IpAddr::V4(v4) = addr else {
            // Hex digits, colons and dots, and at most 45 of them.
            return match Text::display(addr) {
                Text::Inline { len, bytes, .. } => Text::Inline {
                    len,
                    bytes,
                    plain: true,
                },
                other => other,
            };
        };
        let mut bytes = [0u8; INLINE];
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                bytes[len] = b'.';
                len += 1;
            }
            let mut buf = itoa::Buffer::new();
            let digits = buf.format(octet).as_bytes();
            bytes[len..len + digits.len()].copy_from_slice(digits);
            len += digits.len();
        }
        Text::Inline {
            len: len as u8,
            bytes,
            plain: true,
        }
    }
}

/// Writes into an inline buffer; fails when it is full (without writing a
/// partial character, so the bytes written are always whole UTF-8).
struct InlineWriter {
    len: usize,
    bytes: [u8; INLINE],
}

impl std::fmt::Write for InlineWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Owned(s)
    }
}

impl From<Cow<'static, str>> for Text {
    fn from(s: Cow<'static, str>) -> Text {
        match s {
            Cow::Borrowed(s) => Text::Static(s),
            Cow::Owned(s) => Text::Owned(s),
        }
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `stringValue`.
    Str(Text),
    /// `intValue` (semantic-convention type `long`).
    Int(i64),
    /// `arrayValue` of strings (semantic-convention type `string[]`).
    StrArray(&'static [&'static str]),
    /// `arrayValue` of strings shared with other spans (enrichment values).
    SharedArray(std::sync::Arc<[std::sync::Arc<str>]>),
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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

/// `v` as an `intValue` (a signed 64-bit integer): counts past its range,
/// which no real flow reaches, stay at its largest value.
fn clamped(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Where mapping puts a span's attributes, one at a time and in their
/// order: a [`FlowSpan`]'s list, or an encoder that writes each one as it
/// comes ([`crate::json::write_record`]), so that the two cannot differ.
pub trait AttributeSink {
    /// Adds attribute `key` with `value`.
    fn put(&mut self, key: &'static str, value: Value);

    /// [`put`](Self::put) for a name the mapping knows in advance, which
    /// comes with its JSON made at compile time.
    fn put_key(&mut self, key: &'static Key, value: Value) {
        self.put(key.name, value);
    }

    /// [`put_key`](Self::put_key) of an `intValue`, the most common kind
    /// (counters, ports, header fields), without a [`Value`] to build, match
    /// and drop.
    fn put_int(&mut self, key: &'static Key, value: i64) {
        self.put_key(key, Value::Int(value));
    }

    /// [`put_key`](Self::put_key) of a fixed `stringValue` (the name of
    /// an enum's value), without a [`Value`] to build, match and drop.
    fn put_static(&mut self, key: &'static Key, value: &'static str) {
        self.put_key(key, Value::Str(Text::Static(value)));
    }
}

impl AttributeSink for Vec<Attribute> {
    fn put(&mut self, key: &'static str, value: Value) {
        self.push(Attribute { key, value });
    }
}

/// Bytes a [`Key`] keeps of its JSON opening (padded with zeros).
pub const KEY_JSON: usize = 64;

/// An attribute name of the conventions, with the opening of its OTLP JSON
/// object, `{"key":"<name>","value":{`, made at compile time and padded
/// with zeros to [`KEY_JSON`] bytes: the JSON encoder copies the whole
/// array, a few fixed-size stores instead of a call to copy the name, and
/// keeps the opening's bytes of it (8.6 % less time to encode the
/// fixtures' spans, criterion `encode/worker_json`).
#[derive(Debug)]
pub struct Key {
    /// The attribute's name.
    pub name: &'static str,
    json: [u8; KEY_JSON],
    json_len: u8,
}

impl Key {
    /// The key of attribute `name`. Fails to compile (in a constant) if
    /// `name` has a character that JSON would escape, or is too long.
    pub const fn new(name: &'static str) -> Key {
        const HEAD: &[u8] = b"{\"key\":\"";
        const TAIL: &[u8] = b"\",\"value\":{";
        let n = name.as_bytes();
        assert!(
            HEAD.len() + n.len() + TAIL.len() <= KEY_JSON,
            "attribute name too long for Key"
        );
        let mut json = [0u8; KEY_JSON];
        let mut at = 0;
        let mut i = 0;
        while i < HEAD.len() {
            json[at] = HEAD[i];
            at += 1;
            i += 1;
        }
        i = 0;
        while i < n.len() {
            assert!(
                n[i] > 0x20 && n[i] != b'"' && n[i] != b'\\',
                "attribute names have nothing to escape"
            );
            json[at] = n[i];
            at += 1;
            i += 1;
        }
        i = 0;
        while i < TAIL.len() {
            json[at] = TAIL[i];
            at += 1;
            i += 1;
        }
        Key {
            name,
            json,
            json_len: at as u8,
        }
    }

    /// `{"key":"<name>","value":{` and the zeros after it.
    pub(crate) fn json_padded(&self) -> &[u8; KEY_JSON] {
        &self.json
    }

    /// How many bytes of [`json_padded`](Self::json_padded) are the opening.
    pub(crate) fn json_len(&self) -> usize {
        usize::from(self.json_len)
    }
}

/// The `&'static` [`Key`] of attribute name `$name`, made at compile time.
macro_rules! key {
    ($name:literal) => {{
        const KEY: &Key = &Key::new($name);
        KEY
    }};
}

fn push(attrs: &mut impl AttributeSink, key: &'static Key, value: Value) {
    attrs.put_key(key, value);
}

fn push_int(attrs: &mut impl AttributeSink, key: &'static Key, v: u64) {
    attrs.put_int(key, clamped(v));
}

fn push_static(attrs: &mut impl AttributeSink, key: &'static Key, v: &'static str) {
    attrs.put_static(key, v);
}

/// Attribute names of one direction.
struct DirectionKeys {
    bytes_delta: &'static Key,
    bytes_total: &'static Key,
    packets_delta: &'static Key,
    packets_total: &'static Key,
    ttl: &'static Key,
    dscp_id: &'static Key,
    dscp_name: &'static Key,
    ecn_id: &'static Key,
    ecn_name: &'static Key,
    flow_label: &'static Key,
    icmp_type_id: &'static Key,
    icmp_type_name: &'static Key,
    icmp_code_id: &'static Key,
    icmp_code_name: &'static Key,
    tcp_bits: &'static Key,
    tcp_tags: &'static Key,
}

const FORWARD: DirectionKeys = DirectionKeys {
    bytes_delta: key!("flow.bytes.delta"),
    bytes_total: key!("flow.bytes.total"),
    packets_delta: key!("flow.packets.delta"),
    packets_total: key!("flow.packets.total"),
    ttl: key!("flow.ip.ttl"),
    dscp_id: key!("flow.ip.dscp.id"),
    dscp_name: key!("flow.ip.dscp.name"),
    ecn_id: key!("flow.ip.ecn.id"),
    ecn_name: key!("flow.ip.ecn.name"),
    flow_label: key!("flow.ip.flow_label"),
    icmp_type_id: key!("flow.icmp.type.id"),
    icmp_type_name: key!("flow.icmp.type.name"),
    icmp_code_id: key!("flow.icmp.code.id"),
    icmp_code_name: key!("flow.icmp.code.name"),
    tcp_bits: key!("flow.tcp.flags.bits"),
    tcp_tags: key!("flow.tcp.flags.tags"),
};

const REVERSE: DirectionKeys = DirectionKeys {
    bytes_delta: key!("flow.reverse.bytes.delta"),
    bytes_total: key!("flow.reverse.bytes.total"),
    packets_delta: key!("flow.reverse.packets.delta"),
    packets_total: key!("flow.reverse.packets.total"),
    ttl: key!("flow.reverse.ip.ttl"),
    dscp_id: key!("flow.reverse.ip.dscp.id"),
    dscp_name: key!("flow.reverse.ip.dscp.name"),
    ecn_id: key!("flow.reverse.ip.ecn.id"),
    ecn_name: key!("flow.reverse.ip.ecn.name"),
    flow_label: key!("flow.reverse.ip.flow_label"),
    icmp_type_id: key!("flow.reverse.icmp.type.id"),
    icmp_type_name: key!("flow.reverse.icmp.type.name"),
    icmp_code_id: key!("flow.reverse.icmp.code.id"),
    icmp_code_name: key!("flow.reverse.icmp.code.name"),
    tcp_bits: key!("flow.reverse.tcp.flags.bits"),
    tcp_tags: key!("flow.reverse.tcp.flags.tags"),
};

fn counters(attrs: &mut impl AttributeSink, k: &DirectionKeys, d: &DirectionRecord) {
    push_int(attrs, k.bytes_delta, d.bytes_delta);
    push_int(attrs, k.bytes_total, d.bytes_total);
    push_int(attrs, k.packets_delta, d.packets_delta);
    push_int(attrs, k.packets_total, d.packets_total);
}

fn ip_fields(attrs: &mut impl AttributeSink, k: &DirectionKeys, d: &DirectionRecord, ipv6: bool) {
    let Some(first) = d.first else { return };
    push_int(attrs, k.ttl, u64::from(first.ttl));
    let dscp = first.tos >> 2;
    push_int(attrs, k.dscp_id, u64::from(dscp));
    if let Some(name) = names::dscp_name(dscp) {
        push_static(attrs, k.dscp_name, name);
    }
    let ecn = first.tos & 3;
    push_int(attrs, k.ecn_id, u64::from(ecn));
    push_static(attrs, k.ecn_name, names::ecn_name(ecn));
    if ipv6 {
        push_int(attrs, k.flow_label, u64::from(first.flow_label));
    }
}

fn icmp_fields(
    attrs: &mut impl AttributeSink,
    k: &DirectionKeys,
    d: &DirectionRecord,
    protocol: u8,
) {
    let Some(first) = d.first else { return };
    let (t, c) = (first.icmp_type, first.icmp_code);
    push_int(attrs, k.icmp_type_id, u64::from(t));
    if let Some(name) = names::icmp_type_name(protocol, t) {
        push_static(attrs, k.icmp_type_name, name);
    }
    push_int(attrs, k.icmp_code_id, u64::from(c));
    if let Some(name) = names::icmp_code_name(protocol, t, c) {
        push_static(attrs, k.icmp_code_name, name);
    }
}

/// The TCP latency metrics the record has samples for, in ns.
fn latency_fields(attrs: &mut impl AttributeSink, l: &TcpLatency) {
    for (key, value) in [
        (key!("flow.tcp.handshake.latency"), l.handshake_ns),
        (key!("flow.tcp.svc.latency"), l.svc_ns),
        (key!("flow.tcp.svc.jitter"), l.svc_jitter_ns),
        (key!("flow.tcp.rndtrip.latency"), l.rndtrip_ns),
        (key!("flow.tcp.rndtrip.jitter"), l.rndtrip_jitter_ns),
    ] {
        if let Some(ns) = value {
            push_int(attrs, key, ns);
        }
    }
}

fn tcp_fields(attrs: &mut impl AttributeSink, k: &DirectionKeys, d: &DirectionRecord) {
    push_int(attrs, k.tcp_bits, u64::from(d.tcp_flags));
    push(
        attrs,
        k.tcp_tags,
        Value::StrArray(names::tcp_flag_tag_list(d.tcp_flags)),
    );
}

/// `tunnel.*`, `ipip.*` and `flow.ipsec.*`. Byte counters and the tunnel's
/// MAC (conditionally required and recommended) are always written when
/// there is a tunnel; the rest only when opted in.
fn encap_fields(a: &mut impl AttributeSink, e: &EncapRecord, opt_in: OptIn) {
    fn bytes(a: &mut impl AttributeSink, keys: [&'static Key; 4], b: &OverheadBytes) {
        push_int(a, keys[0], b.delta);
        push_int(a, keys[1], b.total);
        push_int(a, keys[2], b.reverse_delta);
        push_int(a, keys[3], b.reverse_total);
    }
    let ip_type = |addr| Value::Str(Text::Static(names::network_type(addr)));
    if let Some(t) = &e.tunnel {
        if opt_in.tunnel {
            push_static(a, key!("tunnel.type"), t.kind.as_str());
            if let Some(id) = t.id {
                push(a, key!("tunnel.id"), Value::Str(Text::display(id)));
            }
            push(
                a,
                key!("tunnel.source.address"),
                Value::Str(Text::ip(t.src)),
            );
            push(
                a,
                key!("tunnel.destination.address"),
                Value::Str(Text::ip(t.dst)),
            );
            if t.transport == 17 {
                push_int(a, key!("tunnel.source.port"), u64::from(t.src_port));
                push_int(a, key!("tunnel.destination.port"), u64::from(t.dst_port));
            }
            push(a, key!("tunnel.network.type"), ip_type(t.src));
            push(
                a,
                key!("tunnel.network.transport"),
                Value::Str(names::transport_name(t.transport).into()),
            );
        }
        if t.src_mac != [0; 6] {
            push(
                a,
                key!("tunnel.network.interface.mac"),
                Value::Str(Text::mac(t.src_mac)),
            );
        }
        bytes(
            a,
            [
                key!("tunnel.bytes.delta"),
                key!("tunnel.bytes.total"),
                key!("tunnel.reverse.bytes.delta"),
                key!("tunnel.reverse.bytes.total"),
            ],
            &e.tunnel_bytes,
        );
    }
    if let Some(t) = &e.ipip {
        if opt_in.tunnel {
            push(a, key!("ipip.network.type"), ip_type(t.src));
            push(
                a,
                key!("ipip.network.transport"),
                Value::Str(names::transport_name(t.protocol).into()),
            );
            push(a, key!("ipip.source.address"), Value::Str(Text::ip(t.src)));
            push(
                a,
                key!("ipip.destination.address"),
                Value::Str(Text::ip(t.dst)),
            );
        }
        bytes(
            a,
            [
                key!("ipip.bytes.delta"),
                key!("ipip.bytes.total"),
                key!("ipip.reverse.bytes.delta"),
                key!("ipip.reverse.bytes.total"),
            ],
            &e.ipip_bytes,
        );
    }
    if opt_in.ipsec {
        let ids = [
            (key!("tunnel.ipsec.ah.spi"), e.tunnel_ah_spi),
            (key!("flow.ipsec.ah.spi"), e.ah_spi),
            (key!("flow.ipsec.esp.spi"), e.esp_spi),
            (key!("flow.ipsec.sender_index"), e.wg_sender_index),
            (key!("flow.ipsec.receiver_index"), e.wg_receiver_index),
        ];
        for (key, v) in ids {
            if let Some(v) = v {
                push_int(a, key, u64::from(v));
            }
        }
    }
}

/// What enrichment knows about the endpoints: `source.*` and
/// `destination.*` attributes, in the order the directory holds them.
fn endpoint_fields(a: &mut impl AttributeSink, endpoints: &Endpoints) {
    let [source, destination] = endpoints;
    for (endpoint, source_side) in [(source, true), (destination, false)] {
        let Some(e) = endpoint else { continue };
        for attr in &e.attributes {
            // An attribute of the span that either endpoint may give
            // (`process.pid` when both sockets are on this host): the
            // source's, once.
            if !source_side
                && attr.name.source == attr.name.destination
                && source.as_ref().is_some_and(|s| {
                    s.attributes
                        .iter()
                        .any(|x| x.name.source == attr.name.destination)
                })
            {
                continue;
            }
            let key = if source_side {
                attr.name.source
            } else {
                attr.name.destination
            };
            let value = match &attr.value {
                AttributeValue::Str(s) => Value::Str(Text::Shared(std::sync::Arc::clone(s))),
                AttributeValue::Int(n) => Value::Int(*n),
                AttributeValue::StrList(l) => Value::SharedArray(std::sync::Arc::clone(l)),
            };
            // A name empty on this side: the attribute belongs to the other.
            if !key.is_empty() {
                a.put(key, value);
            }
        }
    }
}

/// Interface names by index, shared with the live capture that keeps
/// them current.
pub use engine::interfaces::InterfaceNames;

/// Groups of the specification's opt-in attributes (marked ○), which are
/// written only when asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptIn {
    /// `tunnel.type`, `tunnel.id`, the tunnel's and the IP-in-IP header's
    /// addresses, ports, `network.type` and `network.transport`.
    pub tunnel: bool,
    /// `flow.ipsec.*` (AH and ESP SPIs, WireGuard indices) and
    /// `tunnel.ipsec.ah.spi`.
    pub ipsec: bool,
}

/// What mapping needs beside the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// Names of the interfaces of live capture.
    pub interfaces: InterfaceNames,
    /// Opt-in attribute groups to write.
    pub opt_in: OptIn,
    /// With flow sampling (`--sample-flows N`), N: written as
    /// `flow.sampling.rate` on every span.
    pub sampling_rate: Option<u32>,
}

/// Maps one flow record to its span, without opt-in attributes.
pub fn flow_span(r: &FlowRecord) -> FlowSpan {
    let mut span = FlowSpan::default();
    flow_span_into(r, &Mapping::default(), &mut span);
    span
}

/// [`flow_span`] into `span`, reusing its memory: mapping many records into
/// one `FlowSpan` allocates only when a span has more attributes than any
/// before it.
pub fn flow_span_into(r: &FlowRecord, mapping: &Mapping, span: &mut FlowSpan) {
    let a = &mut span.attributes;
    a.clear();
    a.reserve(48);
    put_attributes(r, mapping, a);
    let head = SpanHead::of(r);
    span.trace_id = head.trace_id;
    span.span_id = head.span_id;
    span.name.clear();
    for part in head.name() {
        span.name.push_str(part);
    }
    span.kind = head.kind;
    span.start_time_unix_nano = head.start_time_unix_nano;
    span.end_time_unix_nano = head.end_time_unix_nano;
}

/// What a record's span has besides its attributes.
#[derive(Debug, Clone)]
pub struct SpanHead {
    /// Trace id (shared by all records of a flow).
    pub trace_id: [u8; 16],
    /// Span id (one per record).
    pub span_id: [u8; 8],
    /// `network.type`, for the name.
    network_type: &'static str,
    /// `network.transport`, for the name.
    transport: Cow<'static, str>,
    /// Span kind.
    pub kind: SpanKind,
    /// First packet of the record.
    pub start_time_unix_nano: u64,
    /// Last packet of the record.
    pub end_time_unix_nano: u64,
}

impl SpanHead {
    /// The head of `r`'s span.
    pub fn of(r: &FlowRecord) -> SpanHead {
        SpanHead {
            trace_id: r.trace_id,
            span_id: r.span_id,
            network_type: r.network_type(),
            transport: names::transport_name(r.key.protocol),
            kind: match r.role {
                FlowRole::Client => SpanKind::Client,
                FlowRole::Server => SpanKind::Server,
                FlowRole::Internal => SpanKind::Internal,
            },
            start_time_unix_nano: r.start_ns,
            end_time_unix_nano: r.end_ns,
        }
    }

    /// The span's name, `flow_<network.type>_<network.transport>`, in
    /// parts.
    pub fn name(&self) -> [&str; 4] {
        ["flow_", self.network_type, "_", &self.transport]
    }
}

/// Maps record `r`'s attributes into `a`, in the span's order.
pub fn put_attributes(r: &FlowRecord, mapping: &Mapping, a: &mut impl AttributeSink) {
    let interfaces = &mapping.interfaces;
    let protocol = r.key.protocol;
    let transport = names::transport_name(protocol);
    let network_type = r.network_type();
    let ipv6 = network_type == "ipv6";
    push(
        a,
        key!("flow.community_id"),
        Value::Str(Text::community_id(r.community_id)),
    );
    push_static(a, key!("flow.direction"), r.role.direction());
    push_static(a, key!("flow.end_reason"), r.end_reason.as_str());
    if let Some(state) = r.tcp_state {
        push_static(a, key!("flow.connection.state"), state.as_str());
    }
    if let Some(n) = mapping.sampling_rate {
        push_int(a, key!("flow.sampling.rate"), u64::from(n));
    }
    push(a, key!("source.address"), Value::Str(Text::ip(r.source)));
    push_int(a, key!("source.port"), u64::from(r.source_port));
    push(
        a,
        key!("destination.address"),
        Value::Str(Text::ip(r.destination)),
    );
    push_int(a, key!("destination.port"), u64::from(r.destination_port));
    push(a, key!("network.transport"), Value::Str(transport.into()));
    push_static(a, key!("network.type"), network_type);
    if let Some(index) = r.interface_index {
        push_int(a, key!("network.interface.index"), u64::from(index));
        if let Some(name) = interfaces.get(index) {
            push(
                a,
                key!("network.interface.name"),
                Value::Str(Text::display(&name)),
            );
        }
    }
    if let Some(mac) = r.interface_mac {
        push(a, key!("network.interface.mac"), Value::Str(Text::mac(mac)));
    }
    counters(a, &FORWARD, &r.forward);
    counters(a, &REVERSE, &r.reverse);
    ip_fields(a, &FORWARD, &r.forward, ipv6);
    ip_fields(a, &REVERSE, &r.reverse, ipv6);
    if protocol == 1 || protocol == 58 {
        icmp_fields(a, &FORWARD, &r.forward, protocol);
        icmp_fields(a, &REVERSE, &r.reverse, protocol);
    }
    if protocol == 6 {
        tcp_fields(a, &FORWARD, &r.forward);
        tcp_fields(a, &REVERSE, &r.reverse);
        latency_fields(a, &r.tcp_latency);
    }
    if let Some(e) = &r.encap {
        encap_fields(a, e, mapping.opt_in);
    }
    if let Some(e) = &r.endpoints {
        endpoint_fields(a, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn endpoint_attributes_are_written_on_their_side() {
        use engine::enrich::{AttributeName, Endpoint, EndpointAttribute};
        use std::sync::Arc;
        let mut r = crate::udp_record(40000);
        r.endpoints = Some(Box::new([
            Some(Arc::new(
                Endpoint::default()
                    .with_str("k8s.namespace.name", "shop")
                    .expect("a known name"),
            )),
            Some(Arc::new({
                let mut e = Endpoint::default()
                    .with_int("process.pid", 7)
                    .expect("a known name");
                // Decided by an endpoint, written only on one side.
                for (name, value) in [
                    (AttributeName::sided("", "network.policy.ingress"), "in"),
                    (AttributeName::sided("network.policy.egress", ""), "out"),
                ] {
                    e.attributes.push(EndpointAttribute {
                        name,
                        value: AttributeValue::StrList(vec![Arc::<str>::from(value)].into()),
                    });
                }
                e
            })),
        ]));
        let span = flow_span(&r);
        let get = |k: &str| {
            span.attributes
                .iter()
                .find(|a| a.key == k)
                .map(|a| a.value.clone())
        };
        assert_eq!(
            get("source.k8s.namespace.name"),
            Some(Value::Str(Text::Static("shop")))
        );
        assert_eq!(get("destination.process.pid"), Some(Value::Int(7)));
        assert_eq!(get("source.process.pid"), None);
        assert_eq!(
            get("network.policy.ingress"),
            Some(Value::SharedArray(vec![Arc::<str>::from("in")].into()))
        );
        assert_eq!(get("network.policy.egress"), None);
        assert!(span.attributes.iter().all(|a| !a.key.is_empty()));
    }

    proptest! {
        #[test]
        fn addresses_read_as_display_writes_them(v4 in any::<u32>(), v6 in any::<u128>(), short in 0u32..0x1_0000) {
            for addr in [
                IpAddr::V4(Ipv4Addr::from(v4)),
                IpAddr::V6(Ipv6Addr::from(v6)),
                // Mostly zeros (compressed) and IPv4-mapped forms.
                IpAddr::V6(Ipv6Addr::from(u128::from(short))),
                IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped()),
            ] {
                let text = Text::ip(addr);
                let plain = matches!(text, Text::Inline { plain: true, .. });
                prop_assert!(plain, "{} is not inline and plain", addr);
                prop_assert_eq!(text.as_str(), addr.to_string());
                prop_assert!(needs_no_escape(&text));
            }
        }
    }

    /// What a plain [`Text::Inline`] promises the JSON encoder.
    fn needs_no_escape(t: &Text) -> bool {
        t.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }

    #[test]
    fn ids_and_macs_are_plain() {
        for t in [
            Text::mac([0xff; 6]),
            Text::mac([0; 6]),
            Text::community_id(engine::CommunityId([0xff; 20])),
            Text::community_id(engine::CommunityId([0; 20])),
            Text::community_id(engine::CommunityId([0xfb; 20])),
        ] {
            assert!(matches!(t, Text::Inline { plain: true, .. }));
            assert!(needs_no_escape(&t), "{t:?}");
        }
        // A name from elsewhere is checked by the encoder.
        assert!(matches!(
            Text::display("eth0"),
            Text::Inline { plain: false, .. }
        ));
    }

    #[test]
    fn macs_are_lowercase_colon_separated_hex() {
        let mac = [0x02, 0xf5, 0x0a, 0xb0, 0x00, 0xff];
        assert_eq!(Text::mac(mac).as_str(), "02:f5:0a:b0:00:ff");
        let via_format = mac.map(|b| format!("{b:02x}")).join(":");
        assert_eq!(Text::mac(mac).as_str(), via_format);
    }

    #[test]
    fn the_longest_forms_fit_inline() {
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let addr: IpAddr = longest.parse().unwrap();
        assert_eq!(Text::ip(addr).as_str(), longest);
        let id = engine::CommunityId([0xff; 20]);
        let text = Text::display(id);
        assert!(matches!(text, Text::Inline { .. }));
        assert_eq!(text.as_str(), id.to_string());
    }

    #[test]
    fn text_too_long_to_inline_is_owned_and_whole() {
        let long = "é".repeat(40);
        let text = Text::display(&long);
        assert!(matches!(text, Text::Owned(_)));
        assert_eq!(text.as_str(), long);
    }
}
