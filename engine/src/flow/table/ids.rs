//! Records from flows: the trace and span ids and the record's fields.

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use super::state::{Flow, FlowExtra};
use crate::flow::record::{EndReason, FlowRecord, TcpLatency};

/// The record of flow `f` so far. `scratch` is reused for hashing.
pub(super) fn make_record(
    f: &Flow,
    extra: Option<&FlowExtra>,
    community_id_seed: u16,
    scratch: &mut Vec<u8>,
    reason: EndReason,
    export_clock_ns: u64,
) -> FlowRecord {
    let k = &f.key;
    // The trace id: XXH3-128 of the key and the flow's first packet time,
    // so every record of a flow shares it. Not a cryptographic hash (the
    // ids are not secrets, and SHA-1 cost two of the three hashes per
    // record); 128 bits keep them unique.
    scratch.clear();
    k.write_bytes(scratch);
    scratch.extend_from_slice(&f.flow_start_ns.to_be_bytes());
    let mut trace_id = xxh3_128(scratch).to_be_bytes();
    if trace_id == [0; 16] {
        trace_id[15] = 1;
    }
    let ((src, sport), (dst, dport)) = if f.initiator_is_a {
        ((k.a, k.a_port), (k.b, k.b_port))
    } else {
        ((k.b, k.b_port), (k.a, k.a_port))
    };
    let (sport, dport) = if k.has_ports() {
        (sport, dport)
    } else {
        (0, 0)
    };
    // The span id: XXH3-64 of the trace id and the record number.
    let mut id_input = [0u8; 20];
    id_input[..16].copy_from_slice(&trace_id);
    id_input[16..].copy_from_slice(&f.record_seq.to_be_bytes());
    let mut span_id = xxh3_64(&id_input).to_be_bytes();
    if span_id == [0; 8] {
        span_id[7] = 1;
    }
    FlowRecord {
        key: f.key,
        source: src,
        source_port: sport,
        destination: dst,
        destination_port: dport,
        community_id: k.community_id(community_id_seed),
        role: f.role,
        end_reason: reason,
        tcp_state: f.tcp_state(),
        tcp_latency: if k.protocol == 6 {
            f.tcp.record()
        } else {
            TcpLatency::default()
        },
        start_ns: f.record_start_ns,
        end_ns: f.record_end_ns,
        flow_start_ns: f.flow_start_ns,
        record_seq: f.record_seq,
        forward: f.fwd.record(f.tcp_flags[0]),
        reverse: f.rev.record(f.tcp_flags[1]),
        trace_id,
        span_id,
        export_clock_ns,
        interface_index: (f.ifindex != 0).then_some(f.ifindex),
        interface_mac: (f.mac != [0; 6]).then_some(f.mac),
        endpoints: None,
        encap: extra.map(|x| Box::new(x.record(usize::from(!f.initiator_is_a)))),
    }
}
