//! From flow map snapshots to the engine's flow observations.
//!
//! The kernel's counters are cumulative and never reset (resetting races
//! with the program writing them). [`Tracker`] remembers what it last
//! handed on for each entry and turns the next snapshot into the
//! difference: a [`FlowObservation`] the engine's flow table takes as it
//! takes packets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use engine::FirstPacket;
use engine::FlowKey;
use engine::{FlowObservation, Opening, SideDelta, TcpSamples};

use crate::abi::{FsFlow, FsKey, tcp_flags};

/// What was handed on for one entry.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    packets: [u64; 2],
    bytes: [u64; 2],
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
    seen: HashMap<FsKey, Seen>,
}

/// The engine's key of a kernel key.
pub fn flow_key(k: &FsKey) -> FlowKey {
    let addr = |b: &[u8; 16]| -> IpAddr {
        if k.v6 != 0 {
            IpAddr::V6(Ipv6Addr::from(*b))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
    };
    FlowKey {
        protocol: k.protocol,
        one_way: k.one_way != 0,
        a: addr(&k.a),
        a_port: k.a_port,
        b: addr(&k.b),
        b_port: k.b_port,
        tunnel: 0,
    }
}

impl Tracker {
    /// Entries the tracker remembers (at most the flow map's).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether entry `key` has been observed (and not forgotten).
    pub fn knows(&self, key: &FsKey) -> bool {
        self.seen.contains_key(key)
    }

    /// What changed in entry `key` since it was last observed, as an
    /// observation with wall-clock times (`mono_to_real` added to the
    /// kernel's monotonic ones); `None` if nothing did.
    pub fn observe(
        &mut self,
        key: &FsKey,
        flow: &FsFlow,
        mono_to_real: i64,
    ) -> Option<FlowObservation> {
        let real = |mono: u64| mono.saturating_add_signed(mono_to_real);
        let first_look = !self.seen.contains_key(key);
        let seen = self.seen.entry(*key).or_default();
        let mut o = FlowObservation::new(flow_key(key), 0);
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
        // Never backwards: a snapshot older than one already handed on
        // (taken before it, handed on after) adds nothing.
        for side in 0..2 {
            seen.packets[side] = seen.packets[side].max(flow.side[side].packets);
            seen.bytes[side] = seen.bytes[side].max(flow.side[side].bytes);
        }
        seen.last_ns = seen.last_ns.max(flow.last_ns);
        Some(o)
    }

    /// Forgets entry `key` (deleted from the map).
    pub fn forget(&mut self, key: &FsKey) {
        self.seen.remove(key);
    }
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

/// Whether entry `flow` has ended for good and may be deleted: it is
/// closed, or it has been idle past its timeout by more than `margin_ns`
/// at monotonic time `now_ns`, read before the snapshot was taken.
///
/// Why no increment is lost: the program writes an entry only under its
/// lock, and only when the entry is not closed and its own clock reading
/// is within the entry's idle timeout of the latest packet. Both
/// conditions, once true in a snapshot, stay true for any later writer:
/// `closed` is never cleared, and a writer that locks after the snapshot
/// read its clock at most `margin_ns` before `now_ns` (a program runs to
/// completion in microseconds), so it sees the entry idle too and sends
/// its packet to userspace instead.
pub fn ended(flow: &FsFlow, now_ns: u64, margin_ns: u64) -> bool {
    flow.closed != 0 || now_ns.saturating_sub(flow.last_ns) > flow.idle_ns.saturating_add(margin_ns)
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
        assert!(!t.knows(&k));
        let again = t.observe(&k, &flow([1, 0], 0, 0), 0).expect("a new entry");
        assert!(again.opening.is_some());
        assert_eq!(again.sides[0].packets, 1);
    }

    #[test]
    fn an_entry_ends_when_closed_or_idle_past_its_timeout_and_the_margin() {
        let mut f = flow([1, 1], 0, 0);
        f.idle_ns = 10;
        let last = f.last_ns;
        assert!(!ended(&f, last + 10, 5));
        assert!(!ended(&f, last + 15, 5));
        assert!(ended(&f, last + 16, 5));
        assert!(!ended(&f, last - 1, 5), "a clock behind the entry's");
        f.closed = 1;
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
