//! Flow-level input: [`FlowObservation`]s, flows counted elsewhere (a
//! kernel aggregate), taken in as deltas. They share everything with
//! packets but the counting: the lookup, timeouts on arrival, the flow
//! limit, the initiator inference and the timer lists.

use std::hash::BuildHasher;

use super::{CLASS_CLOSING, FlowTable};
use crate::flow::observation::{FlowObservation, Opening};
use crate::flow::record::FlowRecord;
use crate::flow::tcp::{ACK, SYN};

impl FlowTable {
    /// Accounts what `o` says happened to its flow since its last
    /// observation; `clock_ns` is the capture clock (at least
    /// `o.last_seen_ns` normally). Records that become due are appended to
    /// `out`. An observation without packets changes nothing.
    pub fn observe_flow(&mut self, o: &FlowObservation, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        let packets = o.packets();
        if packets == 0 {
            return;
        }
        self.stats.packets += packets;
        // Its source keyed it as the table does (`key_of`).
        let key = o.key;
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let mut slot = self.index.find(hash, |i| slots.key_is(i, &key));
        if let Some(i) = slot {
            let new_syn = key.protocol == 6
                && o.opening
                    .is_some_and(|op| op.tcp_flags & (SYN | ACK) == SYN);
            slot = self.check_due_on_arrival(i, new_syn, clock_ns, out);
        }
        let i = match slot {
            Some(i) => i,
            None => {
                self.make_room(clock_ns, out);
                // Seen from the middle: the first side that sent anything
                // opened it, as far as anyone can tell.
                let opening = o.opening.unwrap_or(Opening {
                    from_a: o.sides[0].packets > 0,
                    ..Opening::default()
                });
                self.insert(key, hash, &opening, o.ifindex, o.first_seen_ns, clock_ns)
            }
        };
        if self.flow(i).ifindex != o.ifindex {
            // Only with `InterfaceFlows::First`: seen on another interface.
            self.stats.duplicates += packets;
            return;
        }
        if let Some(x) = &o.encap {
            self.flow_mut(i).extra = true;
            self.extras.entry(i).or_default().merge(x);
        }
        let active_enabled = self.config.timeouts.active_ns > 0;
        let f = self.flow_mut(i);
        if !f.record_has_packets() {
            f.record_start_ns = o.first_seen_ns;
            f.record_end_ns = o.last_seen_ns;
        } else {
            f.record_start_ns = f.record_start_ns.min(o.first_seen_ns);
            f.record_end_ns = f.record_end_ns.max(o.last_seen_ns);
        }
        for (side, delta) in o.sides.iter().enumerate() {
            if delta.packets == 0 {
                continue;
            }
            let forward = (side == 0) == f.initiator_is_a;
            let d = if forward { &mut f.fwd } else { &mut f.rev };
            if d.packets_delta == 0 {
                d.first = delta.first;
            }
            d.packets_delta += delta.packets;
            d.packets_total += delta.packets;
            d.bytes_delta += delta.bytes;
            d.bytes_total += delta.bytes;
            f.tcp_flags[usize::from(!forward)] |= delta.tcp_flags;
        }
        f.last_clock = clock_ns;
        let closing_now = f.closes_now(CLASS_CLOSING as u8);
        if key.protocol == 6 {
            f.tcp.merge(&o.tcp);
        }
        // The record's active timeout runs from its first packet, as if
        // the packets had come one by one.
        let r = Self::mark(f, closing_now, active_enabled, clock_ns);
        self.relink(i, r, o.first_seen_ns.min(clock_ns), clock_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::PacketRepr;
    use crate::flow::config::{FlowConfig, Timeouts};
    use crate::flow::key::FlowKey;
    use crate::flow::observation::TcpSamples;
    use crate::flow::record::FirstPacket;
    use crate::flow::tcp::FIN;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    /// A TCP segment with real sequence numbers and `len` payload bytes.
    fn tcp(client: bool, flags: u16, seq: u32, ack: u32, len: u32) -> PacketRepr {
        let (src, dst, sp, dp) = if client {
            ("10.0.0.1", "10.0.0.2", 40000, 80)
        } else {
            ("10.0.0.2", "10.0.0.1", 80, 40000)
        };
        PacketRepr {
            src_port: sp,
            dst_port: dp,
            tcp_flags: flags,
            tcp_seq: seq,
            tcp_ack: ack,
            headers: 40,
            ip_bytes: 40 + len,
            ttl: if client { 64 } else { 57 },
            tos: if client { 0 } else { 0x2e << 2 },
            ..PacketRepr::new(src.parse().unwrap(), dst.parse().unwrap(), 6)
        }
    }

    /// What a kernel aggregate would say about `packets` (all of one flow):
    /// the sums per side, the first packet's fields per side, and the
    /// flow's opening if `opens` (the first observation).
    fn delta(packets: &[(u64, PacketRepr)], opens: bool, tcp: TcpSamples) -> FlowObservation {
        let (key, _) = FlowKey::from_packet(&packets[0].1);
        let mut o = FlowObservation::new(key, packets[0].0);
        for (ts, p) in packets {
            let (_, from_a) = FlowKey::from_packet(p);
            let side = &mut o.sides[usize::from(!from_a)];
            if side.packets == 0 {
                side.first = FirstPacket::of(p);
            }
            side.packets += u64::from(p.segments);
            side.bytes += u64::from(p.ip_bytes);
            side.tcp_flags |= p.tcp_flags;
            if let Some(x) = &p.extra {
                // What a decapsulating kernel program keeps per side.
                let s = usize::from(!from_a);
                let e = o.encap.get_or_insert_default();
                let first = |slot: &mut u32, v: u32| {
                    if *slot == 0 {
                        *slot = v;
                    }
                };
                if x.encap.is_tunnelled() {
                    e.tunnel_bytes[s] += u64::from(x.encap.tunnel_bytes);
                    e.ipip_bytes[s] += u64::from(x.encap.ipip_bytes);
                    e.tunnel[s] = e.tunnel[s].or(x.encap.tunnel);
                    e.ipip[s] = e.ipip[s].or(x.encap.ipip);
                    first(&mut e.tunnel_ah_spi[s], x.encap.outer_ah_spi);
                }
                let ids = &mut e.ipsec[s];
                first(&mut ids.ah_spi, x.ipsec.ah_spi);
                first(&mut ids.esp_spi, x.ipsec.esp_spi);
                first(&mut ids.wg_sender, x.ipsec.wg_sender);
                first(&mut ids.wg_receiver, x.ipsec.wg_receiver);
            }
            o.first_seen_ns = o.first_seen_ns.min(*ts);
            o.last_seen_ns = o.last_seen_ns.max(*ts);
        }
        if opens {
            let (_, from_a) = FlowKey::from_packet(&packets[0].1);
            o.opening = Some(super::super::role::opening_of(&packets[0].1, from_a));
        }
        o.tcp = tcp;
        o
    }

    fn by_packets(config: &FlowConfig, packets: &[(u64, PacketRepr)], end: u64) -> Vec<FlowRecord> {
        let mut t = FlowTable::new(config.clone());
        let mut out = Vec::new();
        for (ts, p) in packets {
            t.observe(p, *ts, *ts, &mut out);
        }
        t.flush(end, &mut out);
        out
    }

    fn by_deltas(config: &FlowConfig, deltas: &[FlowObservation], end: u64) -> Vec<FlowRecord> {
        let mut t = FlowTable::new(config.clone());
        let mut out = Vec::new();
        for o in deltas {
            t.observe_flow(o, o.last_seen_ns, &mut out);
        }
        t.flush(end, &mut out);
        out
    }

    #[test]
    fn a_flow_fed_as_deltas_makes_the_records_of_its_packets() {
        let config = FlowConfig {
            timeouts: Timeouts {
                active_ns: 10 * S,
                ..Timeouts::default()
            },
            ..FlowConfig::default()
        };
        // Handshake at 0, 1 ms, 1.5 ms; a 2-segment request and its answer
        // 3 ms after the request's end; then, after the active timeout
        // (10 s), a second turn and FIN from both sides.
        let t0 = 100 * S;
        let packets = [
            (t0, tcp(true, SYN, 1000, 0, 0)),
            (t0 + MS, tcp(false, SYN | ACK, 5000, 1001, 0)),
            (t0 + 3 * MS / 2, tcp(true, ACK, 1001, 5001, 0)),
            (t0 + 2 * MS, tcp(true, ACK, 1001, 5001, 100)),
            (t0 + 3 * MS, tcp(true, ACK | 0x08, 1101, 5001, 50)),
            (t0 + 6 * MS, tcp(false, ACK, 5001, 1151, 700)),
            (t0 + 11 * S, tcp(true, ACK, 1151, 5701, 20)),
            (t0 + 11 * S + 5 * MS, tcp(false, ACK, 5701, 1171, 30)),
            (t0 + 11 * S + 6 * MS, tcp(true, ACK | FIN, 1171, 5731, 0)),
            (t0 + 11 * S + 7 * MS, tcp(false, ACK | FIN, 5731, 1172, 0)),
        ];
        // The samples the README's definition gives, from the timestamps:
        // h = 1 ms, c = 0.5 ms, then g = 3 ms (6 − 3) and g = 5 ms.
        let first = TcpSamples {
            handshake_ns: Some(MS as u32),
            ack_after_ns: Some((MS / 2) as u32),
            established: true,
            turns: 1,
            turn_sum_ns: 3 * MS,
            jitter_sum_ns: 0,
            first_turn: true,
        };
        let second = TcpSamples {
            turns: 1,
            turn_sum_ns: 5 * MS,
            jitter_sum_ns: 2 * MS,
            ..TcpSamples::default()
        };
        let deltas = [
            delta(&packets[..2], true, TcpSamples::default()),
            delta(&packets[2..6], false, first),
            delta(&packets[6..], false, second),
        ];
        let end = t0 + 20 * S;
        let expected = by_packets(&config, &packets, end);
        assert_eq!(expected.len(), 2, "an active-timeout record, then the end");
        assert!(expected[0].tcp_latency.rndtrip_ns.is_some());
        assert!(expected[1].tcp_latency.svc_jitter_ns.is_some());
        assert_eq!(by_deltas(&config, &deltas, end), expected);
        // One delta for the whole first record gives the same too.
        let whole = [
            delta(&packets[..6], true, first),
            delta(&packets[6..], false, second),
        ];
        assert_eq!(by_deltas(&config, &whole, end), expected);
    }

    #[test]
    fn udp_and_icmp_flows_fed_as_deltas_match_their_packets() {
        let config = FlowConfig::default();
        let udp = |client: bool, len: u32| PacketRepr {
            src_port: if client { 53000 } else { 53 },
            dst_port: if client { 53 } else { 53000 },
            ip_bytes: 28 + len,
            ttl: 60,
            ..PacketRepr::new(
                if client { "192.0.2.1" } else { "192.0.2.53" }
                    .parse()
                    .unwrap(),
                if client { "192.0.2.53" } else { "192.0.2.1" }
                    .parse()
                    .unwrap(),
                17,
            )
        };
        let ping = |request: bool| PacketRepr {
            icmp_type: if request { 8 } else { 0 },
            ip_bytes: 84,
            ..PacketRepr::new(
                if request {
                    "2001:db8::1"
                } else {
                    "2001:db8::2"
                }
                .parse()
                .unwrap(),
                if request {
                    "2001:db8::2"
                } else {
                    "2001:db8::1"
                }
                .parse()
                .unwrap(),
                1,
            )
        };
        for packets in [
            vec![
                (S, udp(true, 40)),
                (S + MS, udp(false, 200)),
                (2 * S, udp(true, 41)),
            ],
            vec![(S, ping(true)), (S + MS, ping(false))],
        ] {
            let expected = by_packets(&config, &packets, 90 * S);
            let one = [delta(&packets, true, TcpSamples::default())];
            assert_eq!(by_deltas(&config, &one, 90 * S), expected);
            let split: Vec<_> = packets
                .iter()
                .enumerate()
                .map(|(i, p)| delta(std::slice::from_ref(p), i == 0, TcpSamples::default()))
                .collect();
            assert_eq!(by_deltas(&config, &split, 90 * S), expected);
        }
    }

    /// Flows that have not got going (a lone SYN, an answered SYN, a
    /// one-packet UDP flow) end after the unestablished timeout whether
    /// they come as packets or as deltas, and a completed handshake moves
    /// a flow to TCP's idle timeout on both paths.
    #[test]
    fn flows_that_have_not_got_going_time_out_alike_as_deltas() {
        let config = FlowConfig {
            timeouts: Timeouts {
                active_ns: 0,
                ..Timeouts::default()
            },
            ..FlowConfig::default()
        };
        let udp = PacketRepr {
            src_port: 53000,
            dst_port: 53,
            ip_bytes: 60,
            ..PacketRepr::new(
                "192.0.2.1".parse().unwrap(),
                "192.0.2.53".parse().unwrap(),
                17,
            )
        };
        for packets in [
            vec![(S, tcp(true, SYN, 1000, 0, 0))],
            vec![
                (S, tcp(true, SYN, 1000, 0, 0)),
                (S + MS, tcp(false, SYN | ACK, 5000, 1001, 0)),
            ],
            vec![
                (S, tcp(true, SYN, 1000, 0, 0)),
                (S + MS, tcp(false, SYN | ACK, 5000, 1001, 0)),
                (S + 2 * MS, tcp(true, ACK, 1001, 5001, 0)),
            ],
            vec![(S, udp)],
        ] {
            // Between the two timeouts, and after both.
            for end in [200 * S, 400 * S] {
                let expected = by_packets(&config, &packets, end);
                // What a kernel program measures of the handshake.
                let tcp = packets[0].1.protocol == 6;
                let samples = TcpSamples {
                    handshake_ns: (tcp && packets.len() >= 2).then_some(MS as u32),
                    ack_after_ns: (packets.len() == 3).then_some(MS as u32),
                    established: packets.len() == 3,
                    ..TcpSamples::default()
                };
                let one = [delta(&packets, true, samples)];
                assert_eq!(by_deltas(&config, &one, end), expected);
            }
        }
    }

    /// The packets of a little-endian microsecond pcap of Ethernet frames.
    fn pcap_packets(file: &[u8]) -> Vec<(u64, PacketRepr)> {
        let le = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= file.len() {
            let ts = u64::from(le(at)) * S + u64::from(le(at + 4)) * 1_000;
            let end = at + 16 + le(at + 8) as usize;
            if let crate::Decoded::Ip(p) =
                crate::decode(crate::LinkType::ETHERNET, &file[at + 16..end])
            {
                out.push((ts, p));
            }
            at = end;
        }
        out
    }

    #[test]
    fn tunnelled_flows_fed_as_deltas_match_their_packets() {
        let config = FlowConfig::default();
        let mut compared = 0;
        for file in [
            &include_bytes!("../../../../testdata/pcap/tunnels.pcap")[..],
            &include_bytes!("../../../../testdata/pcap/ipsec_wireguard.pcap")[..],
        ] {
            let mut flows: Vec<(FlowKey, Vec<(u64, PacketRepr)>)> = Vec::new();
            for (ts, p) in pcap_packets(file) {
                if p.fragment != crate::Fragment::Whole {
                    continue;
                }
                let (key, _) = FlowKey::from_packet(&p);
                match flows.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, packets)) => packets.push((ts, p)),
                    None => flows.push((key, vec![(ts, p)])),
                }
            }
            for (_, packets) in &flows {
                let end = packets.last().unwrap().0 + S;
                let expected = by_packets(&config, packets, end);
                let half = packets.len().div_ceil(2);
                let mut deltas = vec![delta(&packets[..half], true, TcpSamples::default())];
                if half < packets.len() {
                    deltas.push(delta(&packets[half..], false, TcpSamples::default()));
                }
                let mut got = by_deltas(&config, &deltas, end);
                let mut expected = expected;
                for r in got.iter_mut().chain(expected.iter_mut()) {
                    // TCP latencies come from the kernel's own samples,
                    // which these deltas leave out (the first test covers
                    // them).
                    r.tcp_latency = Default::default();
                }
                assert_eq!(got, expected);
                if expected.iter().any(|r| r.encap.is_some()) {
                    compared += 1;
                }
            }
        }
        assert!(
            compared > 20,
            "{compared} tunnelled or IPsec flows compared"
        );
    }

    #[test]
    fn an_observation_without_packets_changes_nothing() {
        let mut t = FlowTable::new(FlowConfig::default());
        let (key, _) = FlowKey::from_packet(&tcp(true, SYN, 1, 0, 0));
        let mut out = Vec::new();
        t.observe_flow(&FlowObservation::new(key, S), S, &mut out);
        assert!(t.is_empty() && out.is_empty());
    }
}
