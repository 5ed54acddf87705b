//! From flow map snapshots to the engine's flow observations.
//!
//! The kernel's counters are cumulative and never reset (resetting races
//! with the program writing them). [`Tracker`] remembers what it last
//! handed on for each entry and turns the next snapshot into the
//! difference: a [`FlowObservation`] the engine's flow table takes as it
//! takes packets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use engine::decode::{Encap, TunnelHeader, TunnelKind};
use engine::{
    FirstPacket, FlowKey, FlowObservation, ObservedEncap, Opening, SideDelta, TcpSamples,
};

use crate::abi::{FsFlow, FsKey, TUN_GENEVE, TUN_VXLAN, tcp_flags};

/// What was handed on for one entry.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    packets: [u64; 2],
    bytes: [u64; 2],
    tunnel_bytes: [u64; 2],
    samples: u32,
    gap_sum_ns: u64,
    jitter_sum_ns: u64,
    /// Monotonic time of the latest packet handed on.
    last_ns: u64,
    handshake_sent: bool,
    ack_after_sent: bool,
}

/// The differences between successive snapshots of each entry.
#[derive(Debug, Default)]
pub struct Tracker {
    /// foldhash: every entry is looked up on every scan, and SipHash over
    /// an 84-byte key was the scan's largest cost.
    seen: HashMap<FsKey, Seen, foldhash::fast::FixedState>,
}

/// An address as the kernel keeps it: 16 bytes, IPv4 in the first 4.
fn address(bytes: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

/// The tunnel kind of a kernel key, if its packets were tunnelled.
fn tunnel_kind(k: &FsKey) -> Option<TunnelKind> {
    match k.tun_kind {
        TUN_VXLAN => Some(TunnelKind::Vxlan),
        TUN_GENEVE => Some(TunnelKind::Geneve),
        _ => None,
    }
}

/// The engine's key of kernel key `k`, whose entry is `flow` (which holds
/// the tunnel the key has only a hash of).
pub fn flow_key(k: &FsKey, flow: &FsFlow) -> FlowKey {
    let v6 = k.v6 != 0;
    // As the flow table keys a packet (its `key_of`): the tunnels'
    // fingerprint, with the interface mixed in when the program keeps
    // flows apart per interface.
    let tunnel = tunnel_kind(k).map_or(0, |kind| {
        let tv6 = flow.tun_v6 != 0;
        Encap::one_tunnel_fingerprint(
            kind,
            Some(flow.tun_id),
            address(&flow.tun_lo, tv6),
            address(&flow.tun_hi, tv6),
        )
    });
    FlowKey {
        protocol: k.protocol,
        one_way: k.one_way != 0,
        a: address(&k.a, v6),
        a_port: k.a_port,
        b: address(&k.b, v6),
        b_port: k.b_port,
        scope: FlowKey::scoped_to_interface(tunnel, k.ifindex),
    }
}

/// What a tunnelled entry's snapshot says of its tunnel since `seen`.
fn observed_encap(kind: TunnelKind, flow: &FsFlow, seen: &Seen) -> ObservedEncap {
    let tv6 = flow.tun_v6 != 0;
    let (lo, hi) = (address(&flow.tun_lo, tv6), address(&flow.tun_hi, tv6));
    let mut e = ObservedEncap::default();
    for (side, s) in flow.side.iter().enumerate() {
        if s.packets == 0 {
            continue;
        }
        let (src, dst) = if s.tun_from_lo != 0 {
            (lo, hi)
        } else {
            (hi, lo)
        };
        e.tunnel[side] = Some(TunnelHeader {
            kind,
            id: Some(flow.tun_id),
            src,
            dst,
            src_port: s.tun_sport,
            dst_port: s.tun_dport,
            transport: 17,
            src_mac: s.tun_mac,
        });
        e.tunnel_bytes[side] = s.tun_bytes.saturating_sub(seen.tunnel_bytes[side]);
    }
    e
}

impl Tracker {
    /// What changed in entry `key` since it was last observed, as an
    /// observation with wall-clock times (`mono_to_real` added to the
    /// kernel's monotonic ones); `None` if nothing did.
    pub fn observe(
        &mut self,
        key: &FsKey,
        flow: &FsFlow,
        mono_to_real: i64,
    ) -> Option<FlowObservation> {
        let entry = self.seen.entry(*key);
        let first_look = matches!(entry, std::collections::hash_map::Entry::Vacant(_));
        difference(key, flow, entry.or_default(), first_look, mono_to_real)
    }

    /// [`observe`](Self::observe), and forgets the entry: its last read
    /// (the capture ends).
    pub fn observe_last(
        &mut self,
        key: &FsKey,
        flow: &FsFlow,
        mono_to_real: i64,
    ) -> Option<FlowObservation> {
        let (mut seen, first_look) = match self.seen.remove(key) {
            Some(seen) => (seen, false),
            None => (Seen::default(), true),
        };
        difference(key, flow, &mut seen, first_look, mono_to_real)
    }

    /// Forgets entry `key` (deleted from the map).
    pub fn forget(&mut self, key: &FsKey) {
        self.seen.remove(key);
    }
}

/// What changed in entry `key` since `seen` (nothing handed on yet when
/// `first_look`), recorded in `seen`.
fn difference(
    key: &FsKey,
    flow: &FsFlow,
    seen: &mut Seen,
    first_look: bool,
    mono_to_real: i64,
) -> Option<FlowObservation> {
    let real = |mono: u64| mono.saturating_add_signed(mono_to_real);
    let mut o = FlowObservation::new(flow_key(key, flow), 0);
    for (side, s) in flow.side.iter().enumerate() {
        o.sides[side] = SideDelta {
            packets: s.packets.saturating_sub(seen.packets[side]),
            bytes: s.bytes.saturating_sub(seen.bytes[side]),
            tcp_flags: s.tcp_flags,
            first: FirstPacket {
                ttl: s.ttl,
                tos: s.tos,
                flow_label: s.flow_label,
                icmp_type: s.icmp_type,
                icmp_code: s.icmp_code,
            },
        };
    }
    if o.packets() == 0 {
        return None;
    }
    // The first packet of the difference came after the last one
    // handed on; its exact time is not kept.
    o.first_seen_ns = real(if first_look {
        flow.first_ns
    } else {
        seen.last_ns.min(flow.last_ns)
    });
    o.last_seen_ns = real(flow.last_ns);
    o.ifindex = flow.ifindex;
    if first_look {
        let op = &flow.opening;
        o.opening = Some(Opening {
            from_a: op.from_a != 0,
            tcp_flags: op.tcp_flags,
            sctp_chunk: op.sctp_chunk,
            icmp_type: op.icmp_type,
            // The program counts only packets whose transport header
            // is whole.
            has_transport: true,
            src_mac: op.src_mac,
            dst_mac: op.dst_mac,
        });
    }
    if key.protocol == 6 {
        o.tcp = tcp_samples(flow, seen);
    }
    if let Some(kind) = tunnel_kind(key) {
        o.encap = Some(Box::new(observed_encap(kind, flow, seen)));
    }
    // Never backwards: a snapshot older than one already handed on
    // (taken before it, handed on after) adds nothing.
    for side in 0..2 {
        seen.packets[side] = seen.packets[side].max(flow.side[side].packets);
        seen.bytes[side] = seen.bytes[side].max(flow.side[side].bytes);
        seen.tunnel_bytes[side] = seen.tunnel_bytes[side].max(flow.side[side].tun_bytes);
    }
    seen.last_ns = seen.last_ns.max(flow.last_ns);
    Some(o)
}

/// The TCP samples of `flow` not yet handed on, recorded in `seen`.
fn tcp_samples(flow: &FsFlow, seen: &mut Seen) -> TcpSamples {
    let t = &flow.tcp;
    let has = |f: u16| t.flags & f != 0;
    let mut s = TcpSamples {
        established: has(tcp_flags::ESTABLISHED),
        ..TcpSamples::default()
    };
    // `h` only when the engine would report it (tcp.rs `record`): the
    // first packet was the SYN and it was not sent twice.
    if !seen.handshake_sent
        && has(tcp_flags::SYNACK_AT)
        && has(tcp_flags::SYN_FIRST)
        && !has(tcp_flags::SYN_AGAIN)
    {
        s.handshake_ns = Some(t.synack_at_ns);
        seen.handshake_sent = true;
    }
    if !seen.ack_after_sent && has(tcp_flags::ACK_AFTER) {
        s.ack_after_ns = Some(t.ack_after_ns);
        seen.ack_after_sent = true;
    }
    let turns = t.samples.saturating_sub(seen.samples);
    if turns > 0 {
        s.turns = turns;
        s.turn_sum_ns = t.gap_sum_ns.saturating_sub(seen.gap_sum_ns);
        s.jitter_sum_ns = t.jitter_sum_ns.saturating_sub(seen.jitter_sum_ns);
        s.first_turn = seen.samples == 0;
        seen.samples = t.samples;
        seen.gap_sum_ns = seen.gap_sum_ns.max(t.gap_sum_ns);
        seen.jitter_sum_ns = seen.jitter_sum_ns.max(t.jitter_sum_ns);
    }
    s
}

/// Whether entry `flow` has ended for good and may be deleted: frozen, or
/// closed longer than its linger, or idle past its timeout, by more than
/// `margin_ns` at monotonic time `now_ns`, read before the snapshot was
/// taken (`idle_ns` holds the linger once the flow has closed).
///
/// Why no increment is lost: the program writes an entry only under its
/// lock, and only when the entry has not ended by the same rule without the
/// margin, at its own clock reading. Once true in a snapshot, the rule stays
/// true for any later writer: `frozen` and `closed` are never cleared, and a
/// writer that locks after the snapshot read its clock at most `margin_ns`
/// before `now_ns` (a program runs to completion in microseconds), so it
/// sees the entry ended too and sends its packet to userspace instead.
pub fn ended(flow: &FsFlow, now_ns: u64, margin_ns: u64) -> bool {
    let since = if flow.closed != 0 {
        flow.closed_ns
    } else {
        flow.last_ns
    };
    flow.frozen != 0 || now_ns.saturating_sub(since) > flow.idle_ns.saturating_add(margin_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{FsOpening, FsSide, FsTcp};

    fn key() -> FsKey {
        let mut k = FsKey {
            a_port: 40000,
            b_port: 443,
            protocol: 6,
            ..FsKey::default()
        };
        k.a[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.b[..4].copy_from_slice(&[10, 0, 0, 2]);
        k
    }

    fn flow(packets: [u64; 2], samples: u32, gap_sum: u64) -> FsFlow {
        let side = |n: u64| FsSide {
            packets: n,
            bytes: n * 100,
            first_ns: 1,
            tcp_flags: 0x12,
            ttl: 64,
            ..FsSide::default()
        };
        FsFlow {
            first_ns: 1_000,
            last_ns: 1_000 + packets[0] + packets[1],
            idle_ns: 300_000_000_000,
            side: [side(packets[0]), side(packets[1])],
            tcp: FsTcp {
                flags: tcp_flags::SYN_FIRST | tcp_flags::SYNACK_AT | tcp_flags::ESTABLISHED,
                synack_at_ns: 500,
                samples,
                gap_sum_ns: gap_sum,
                jitter_sum_ns: gap_sum / 2,
                initiator: 0,
                ..FsTcp::default()
            },
            opening: FsOpening {
                tcp_flags: 0x02,
                from_a: 1,
                ..FsOpening::default()
            },
            ..FsFlow::default()
        }
    }

    #[test]
    fn successive_snapshots_become_their_differences() {
        let mut t = Tracker::default();
        let k = key();
        let first = t.observe(&k, &flow([3, 2], 1, 40), 0).expect("new traffic");
        assert_eq!(first.key.a, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((first.sides[0].packets, first.sides[1].packets), (3, 2));
        assert_eq!(first.sides[0].bytes, 300);
        assert!(
            first
                .opening
                .is_some_and(|o| o.from_a && o.tcp_flags == 0x02)
        );
        assert_eq!(first.tcp.handshake_ns, Some(500));
        assert_eq!((first.tcp.turns, first.tcp.turn_sum_ns), (1, 40));
        assert!(first.tcp.first_turn && first.tcp.established);

        assert!(
            t.observe(&k, &flow([3, 2], 1, 40), 0).is_none(),
            "nothing new"
        );

        let second = t
            .observe(&k, &flow([5, 4], 3, 100), 7)
            .expect("more traffic");
        assert_eq!((second.sides[0].packets, second.sides[1].packets), (2, 2));
        assert_eq!(second.sides[1].bytes, 200);
        assert!(
            second.opening.is_none(),
            "the opening goes with the first only"
        );
        assert_eq!(second.tcp.handshake_ns, None, "h is handed on once");
        assert_eq!((second.tcp.turns, second.tcp.turn_sum_ns), (2, 60));
        assert_eq!(second.tcp.jitter_sum_ns, 50 - 20);
        assert!(!second.tcp.first_turn);
        assert_eq!(
            second.last_seen_ns,
            1_000 + 9 + 7,
            "monotonic to wall clock"
        );

        assert!(
            t.observe(&k, &flow([4, 3], 2, 70), 0).is_none(),
            "an older snapshot read late adds nothing"
        );
        let third = t
            .observe(&k, &flow([6, 4], 3, 100), 0)
            .expect("more traffic");
        assert_eq!((third.sides[0].packets, third.sides[1].packets), (1, 0));

        t.forget(&k);
        let again = t.observe(&k, &flow([1, 0], 0, 0), 0).expect("a new entry");
        assert!(again.opening.is_some());
        assert_eq!(again.sides[0].packets, 1);

        // The last read hands on the difference and forgets the entry.
        let last = t
            .observe_last(&k, &flow([3, 1], 0, 0), 0)
            .expect("more traffic");
        assert_eq!((last.sides[0].packets, last.sides[1].packets), (2, 1));
        assert!(last.opening.is_none());
        let anew = t.observe(&k, &flow([1, 0], 0, 0), 0).expect("forgotten");
        assert!(anew.opening.is_some(), "a first look again");
    }

    /// An Ethernet/IPv4 frame from `src` to `dst` carrying UDP `payload`.
    fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = u16::try_from(20 + 8 + payload.len()).unwrap();
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(total - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_vxlan_entry_has_the_key_and_tunnel_the_decoder_gives_its_packets() {
        // VXLAN (VNI 0x1234) from 192.0.2.2 to 192.0.2.1 around UDP from
        // 10.1.0.2:5000 to 10.1.0.1:53.
        let inner = udp_frame([10, 1, 0, 2], [10, 1, 0, 1], 5000, 53, &[0; 10]);
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0x12, 0x34, 0];
        vxlan.extend_from_slice(&inner);
        let outer = udp_frame([192, 0, 2, 2], [192, 0, 2, 1], 33333, 4789, &vxlan);
        let engine::Decoded::Ip(p) = engine::decode(engine::LinkType::ETHERNET, &outer) else {
            panic!("decodes");
        };
        let (want, from_a) = FlowKey::from_packet(&p);
        assert!(!from_a, "10.1.0.1 is endpoint a");
        let mut k = FsKey {
            a_port: 53,
            b_port: 5000,
            protocol: 17,
            tun_kind: TUN_VXLAN,
            // Any value: the tunnel itself is in the entry.
            tun_hash: 0x5eed,
            ..FsKey::default()
        };
        k.a[..4].copy_from_slice(&[10, 1, 0, 1]);
        k.b[..4].copy_from_slice(&[10, 1, 0, 2]);
        let mut f = flow([0, 1], 0, 0);
        f.tun_id = 0x1234;
        f.tun_lo[..4].copy_from_slice(&[192, 0, 2, 1]);
        f.tun_hi[..4].copy_from_slice(&[192, 0, 2, 2]);
        assert_eq!(flow_key(&k, &f), want);

        f.side[1].tun_bytes = 50;
        f.side[1].tun_sport = 33333;
        f.side[1].tun_dport = 4789;
        f.side[1].tun_mac = [2, 0, 0, 0, 0, 1];
        f.side[1].tun_from_lo = 0;
        let o = Tracker::default().observe(&k, &f, 0).unwrap();
        let e = o.encap.expect("a tunnelled flow");
        let x = p.extra.as_ref().expect("the decoder's encapsulation");
        assert_eq!(
            e.tunnel[1], x.encap.tunnel,
            "the header as the decoder reads it"
        );
        assert_eq!(e.tunnel[0], None);
        assert_eq!(u64::from(x.encap.tunnel_bytes), 50);
        assert_eq!(e.tunnel_bytes, [0, 50]);
    }

    #[test]
    fn an_entry_ends_when_frozen_lingered_or_idle_past_its_timeout_and_the_margin() {
        let mut f = flow([1, 1], 0, 0);
        f.idle_ns = 10;
        let last = f.last_ns;
        assert!(!ended(&f, last + 10, 5));
        assert!(!ended(&f, last + 15, 5));
        assert!(ended(&f, last + 16, 5));
        assert!(!ended(&f, last - 1, 5), "a clock behind the entry's");
        // Closed: the linger (in idle_ns) runs from the close, not from the
        // latest packet.
        f.closed = 1;
        f.closed_ns = last - 8;
        assert!(!ended(&f, last + 7, 5));
        assert!(ended(&f, last + 8, 5));
        f.frozen = 1;
        assert!(ended(&f, last, 5));
    }

    #[test]
    fn the_handshake_is_not_handed_on_when_the_syn_was_sent_twice() {
        let mut t = Tracker::default();
        let mut f = flow([2, 1], 0, 0);
        f.tcp.flags |= tcp_flags::SYN_AGAIN | tcp_flags::ACK_AFTER;
        f.tcp.ack_after_ns = 70;
        let o = t.observe(&key(), &f, 0).unwrap();
        assert_eq!(o.tcp.handshake_ns, None);
        assert_eq!(o.tcp.ack_after_ns, Some(70));
    }
}
