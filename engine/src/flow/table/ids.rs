//! Records from flows: the trace and span ids and the record's fields.

use sha1::{Digest, Sha1};

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
    // The trace id: SHA-1 of the key and the flow's first packet time,
    // so every record of a flow shares it.
    scratch.clear();
    k.write_bytes(scratch);
    scratch.extend_from_slice(&f.flow_start_ns.to_be_bytes());
    let digest: [u8; 20] = Sha1::digest(&scratch).into();
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&digest[..16]);
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
    let mut h = Sha1::new();
    h.update(trace_id);
    h.update(f.record_seq.to_be_bytes());
    let digest: [u8; 20] = h.finalize().into();
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&digest[..8]);
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
