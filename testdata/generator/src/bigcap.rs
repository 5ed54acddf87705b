//! A large synthetic capture for throughput runs (issue 4): millions of
//! packets in about a million bidirectional flows, with a realistic mix.
//!
//! Deterministic for a given [`BigcapOptions`]: the same options write the
//! same bytes. The capture is written like `tcpdump -s 128`: each record
//! holds the headers only (`caplen`), while the record's original length and
//! the IP length fields give the full packet size, so byte counters are
//! realistic and the file stays small (about 80 bytes per packet).
//!
//! The mix, per flow:
//! - IPv4 80 %, IPv6 20 %; 10 % of flows carry an 802.1Q tag; 0.5 % are
//!   inside GRE and 0.5 % inside VXLAN (IPv4 outer headers).
//! - TCP 65 %: SYN, SYN/ACK, ACK, then data (the server sends two packets
//!   for each of the client's), then FIN/FIN/ACK (85 %), an RST from the
//!   server (10 %), or nothing (5 %, still open at the end).
//! - UDP 27 %: request/response alternating (DNS, NTP, QUIC on 443, others).
//! - ICMP echo 8 %: request/reply pairs.
//! - Packets per flow: Pareto (α = 1.3, minimum 2.6, at most 50 000), so most
//!   flows are small and a few carry much of the traffic.
//! - Flows start uniformly over the first 80 % of the capture; their packets
//!   are spaced by exponential gaps with a per-flow mean from 0.1 to 50 ms.
//!   All flows overlap, so nearly all of them are open at once in a flow
//!   table with the default timeouts.

use std::io::{self, Write};

use crate::Pcap;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct BigcapOptions {
    /// Stop adding flows once this many packets are planned.
    pub packets: u64,
    /// Capture duration in seconds.
    pub duration_secs: u64,
    /// PRNG seed.
    pub seed: u64,
    /// Whether some flows are in GRE or VXLAN (1 % of flows). Without,
    /// those flows are plain Ethernet and every other draw is the same.
    pub tunnels: bool,
}

impl Default for BigcapOptions {
    fn default() -> Self {
        BigcapOptions {
            packets: 11_000_000,
            duration_secs: 30,
            seed: 1,
            tunnels: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BigcapStats {
    /// Flows (5-tuples, both directions).
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Sum of original packet lengths.
    pub wire_bytes: u64,
    /// Bytes of the capture file.
    pub file_bytes: u64,
}

/// SplitMix64: small, fast, good enough for test traffic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrap {
    None,
    Vlan(u16),
    Gre,
    Vxlan(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpEnd {
    Fin,
    Rst,
    Open,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    v6: bool,
    wrap: Wrap,
    proto: Proto,
    client: u32,
    server: u32,
    client_port: u16,
    server_port: u16,
    packets: u32,
    tcp_end: TcpEnd,
    /// Payload bytes of a typical packet each way.
    client_payload: u16,
    server_payload: u16,
}

fn draw_flow(rng: &mut Rng, index: u32) -> Flow {
    let v6 = rng.unit() < 0.2;
    let w = rng.unit();
    let wrap = if w < 0.005 {
        Wrap::Gre
    } else if w < 0.01 {
        Wrap::Vxlan(rng.below(1 << 24) as u32)
    } else if w < 0.11 {
        Wrap::Vlan(1 + rng.below(4094) as u16)
    } else {
        Wrap::None
    };
    let p = rng.unit();
    let proto = if p < 0.65 {
        Proto::Tcp
    } else if p < 0.92 {
        Proto::Udp
    } else {
        Proto::Icmp
    };
    let server_port = match proto {
        Proto::Tcp => match rng.below(10) {
            0..=4 => 443,
            5..=6 => 80,
            7 => 22,
            8 => 8080,
            _ => 1024 + rng.below(64_000) as u16,
        },
        Proto::Udp => match rng.below(10) {
            0..=4 => 53,
            5 => 123,
            6..=7 => 443,
            _ => 1024 + rng.below(64_000) as u16,
        },
        Proto::Icmp => 0,
    };
    // Pareto(α = 1.3, minimum 2), capped.
    let u = rng.unit().max(1e-12);
    let packets = (2.6 / u.powf(1.0 / 1.3)).min(50_000.0) as u32;
    let t = rng.unit();
    let tcp_end = if t < 0.85 {
        TcpEnd::Fin
    } else if t < 0.95 {
        TcpEnd::Rst
    } else {
        TcpEnd::Open
    };
    let (client_payload, server_payload) = match proto {
        Proto::Tcp => (
            rng.below(600) as u16,
            if packets > 20 {
                1448
            } else {
                rng.below(1448) as u16
            },
        ),
        Proto::Udp => (20 + rng.below(200) as u16, 40 + rng.below(1200) as u16),
        Proto::Icmp => (56, 56),
    };
    Flow {
        v6,
        wrap,
        proto,
        // Clients: a distinct address per flow index (10.0.0.0/8 or fd00::/8);
        // servers: a pool of 5000 (172.16.0.0/12 or fd01::/16).
        client: index,
        server: rng.below(5000) as u32,
        client_port: 1024 + rng.below(64_000) as u16,
        server_port,
        packets,
        tcp_end,
        client_payload,
        server_payload,
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// Direction (true: client to server), TCP flags and payload of packet `k`.
fn packet_shape(f: &Flow, k: u32) -> (bool, u8, u16) {
    let n = f.packets;
    match f.proto {
        Proto::Udp | Proto::Icmp => {
            let up = k.is_multiple_of(2);
            (
                up,
                0,
                if up {
                    f.client_payload
                } else {
                    f.server_payload
                },
            )
        }
        Proto::Tcp => {
            let close = match f.tcp_end {
                TcpEnd::Fin if n >= 6 => 3,
                TcpEnd::Rst if n >= 4 => 1,
                _ => 0,
            };
            if k == 0 {
                return (true, TCP_SYN, 0);
            }
            if k == 1 {
                return (false, TCP_SYN | TCP_ACK, 0);
            }
            if k == 2 {
                return (true, TCP_ACK, 0);
            }
            let from_end = n - 1 - k;
            if from_end < close {
                return match (f.tcp_end, from_end) {
                    (TcpEnd::Rst, _) => (false, TCP_RST | TCP_ACK, 0),
                    (_, 2) => (true, TCP_FIN | TCP_ACK, 0),
                    (_, 1) => (false, TCP_FIN | TCP_ACK, 0),
                    _ => (true, TCP_ACK, 0),
                };
            }
            // Data: client, server, server, client, server, server, …
            let up = (k - 3).is_multiple_of(3);
            let payload = if up {
                f.client_payload
            } else {
                f.server_payload
            };
            (up, TCP_ACK | TCP_PSH, payload)
        }
    }
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn put_ipv4(out: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize) {
    let start = out.len();
    let total = (20 + payload_len) as u16;
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0]);
    out[start + 2..start + 4].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    let c = ipv4_checksum(&out[start..start + 20]);
    out[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

fn put_ipv6(out: &mut Vec<u8>, src: [u8; 16], dst: [u8; 16], next: u8, payload_len: usize) {
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    out.extend_from_slice(&[next, 64]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
}

fn addr4(net: u8, host: u32) -> [u8; 4] {
    let h = host.to_be_bytes();
    match net {
        10 => [10, h[1], h[2], h[3]],
        _ => [172, 16 | (h[1] & 0x0f), h[2], h[3]],
    }
}

fn addr6(net: u8, host: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = net;
    a[12..].copy_from_slice(&host.to_be_bytes());
    a
}

/// Appends the frame of packet `k` of `f` (headers only) to `out`; returns
/// the packet's full length on the wire.
fn frame(out: &mut Vec<u8>, f: &Flow, k: u32, seq: u32) -> usize {
    let (up, flags, payload) = packet_shape(f, k);
    let payload = usize::from(payload);
    let (sport, dport) = if up {
        (f.client_port, f.server_port)
    } else {
        (f.server_port, f.client_port)
    };
    // Transport header.
    let mut l4 = Vec::with_capacity(20);
    let proto = match f.proto {
        Proto::Tcp => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&seq.to_be_bytes());
            l4.extend_from_slice(&seq.wrapping_add(1).to_be_bytes());
            l4.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            6
        }
        Proto::Udp => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            17
        }
        Proto::Icmp => {
            let t = match (f.v6, up) {
                (false, true) => 8,
                (false, false) => 0,
                (true, true) => 128,
                (true, false) => 129,
            };
            l4.extend_from_slice(&[t, 0, 0, 0]);
            l4.extend_from_slice(&(f.client_port).to_be_bytes());
            l4.extend_from_slice(&((k / 2) as u16).to_be_bytes());
            if f.v6 { 58 } else { 1 }
        }
    };
    let l4_len = l4.len() + payload;
    let (c, s) = (f.client, f.server);
    let start = out.len();
    let mut inner = Vec::with_capacity(64);
    if f.v6 {
        let (a, b) = (addr6(0, c), addr6(1, s));
        let (src, dst) = if up { (a, b) } else { (b, a) };
        put_ipv6(&mut inner, src, dst, proto, l4_len);
    } else {
        let (a, b) = (addr4(10, c), addr4(172, s));
        let (src, dst) = if up { (a, b) } else { (b, a) };
        put_ipv4(&mut inner, src, dst, proto, l4_len);
    }
    let ip_len = inner.len() + l4_len;
    inner.extend_from_slice(&l4);
    let ethertype: u16 = if f.v6 { 0x86dd } else { 0x0800 };
    let mac = |x: u8| [0x02, 0, 0, 0, 0, x];
    let (dmac, smac) = if up {
        (mac(2), mac(1))
    } else {
        (mac(1), mac(2))
    };
    out.extend_from_slice(&dmac);
    out.extend_from_slice(&smac);
    let wire = match f.wrap {
        Wrap::None => {
            out.extend_from_slice(&ethertype.to_be_bytes());
            14 + ip_len
        }
        Wrap::Vlan(id) => {
            out.extend_from_slice(&[0x81, 0x00]);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&ethertype.to_be_bytes());
            18 + ip_len
        }
        Wrap::Gre => {
            out.extend_from_slice(&[0x08, 0x00]);
            let gre_len = 4 + ip_len;
            put_ipv4(out, [192, 0, 2, 1], [192, 0, 2, 2], 47, gre_len);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ethertype.to_be_bytes());
            14 + 20 + gre_len
        }
        Wrap::Vxlan(vni) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let udp_len = 8 + 8 + 14 + ip_len;
            put_ipv4(out, [192, 0, 2, 1], [192, 0, 2, 3], 17, udp_len);
            out.extend_from_slice(&49_152u16.to_be_bytes());
            out.extend_from_slice(&4789u16.to_be_bytes());
            out.extend_from_slice(&(udp_len as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
            out.extend_from_slice(&(vni << 8).to_be_bytes());
            out.extend_from_slice(&dmac);
            out.extend_from_slice(&smac);
            out.extend_from_slice(&ethertype.to_be_bytes());
            14 + 20 + udp_len
        }
    };
    out.extend_from_slice(&inner);
    debug_assert!(out.len() - start <= 128);
    wire
}

/// Writes the capture to `out`.
///
/// # Errors
/// Writing failed.
pub fn write_bigcap(out: &mut impl Write, o: BigcapOptions) -> io::Result<BigcapStats> {
    let mut rng = Rng(o.seed);
    let duration_ns = o.duration_secs.max(1) * 1_000_000_000;
    let mut flows = Vec::new();
    let mut planned = 0u64;
    while planned < o.packets {
        let mut f = draw_flow(&mut rng, u32::try_from(flows.len()).unwrap_or(u32::MAX));
        if !o.tunnels && matches!(f.wrap, Wrap::Gre | Wrap::Vxlan(_)) {
            f.wrap = Wrap::None;
        }
        planned += u64::from(f.packets);
        flows.push(f);
    }
    // Every packet as (time, flow, index), then in time order.
    let mut events: Vec<(u64, u32, u32)> = Vec::with_capacity(planned as usize);
    for (i, f) in flows.iter().enumerate() {
        let start = (rng.unit() * 0.8 * duration_ns as f64) as u64;
        let mean_gap = 100_000.0 + rng.unit() * 49_900_000.0;
        let mut t = start;
        for k in 0..f.packets {
            if t >= duration_ns {
                break;
            }
            events.push((t, i as u32, k));
            t += (-(rng.unit().max(1e-12)).ln() * mean_gap) as u64 + 1;
        }
    }
    events.sort_unstable();

    let base_ns: u64 = 1_700_000_000 * 1_000_000_000;
    let mut pcap = Pcap::with(1, true, false);
    let mut stats = BigcapStats::default();
    let mut used = vec![false; flows.len()];
    let mut frame_buf = Vec::with_capacity(160);
    for &(t, i, k) in &events {
        let f = &flows[i as usize];
        used[i as usize] = true;
        frame_buf.clear();
        let wire = frame(&mut frame_buf, f, k, k.wrapping_mul(1448));
        pcap.add_record(base_ns + t, &frame_buf, wire);
        stats.packets += 1;
        stats.wire_bytes += wire as u64;
        if pcap.pending() >= 1 << 20 {
            let bytes = pcap.take_bytes();
            out.write_all(&bytes)?;
            stats.file_bytes += bytes.len() as u64;
        }
    }
    let bytes = pcap.take_bytes();
    out.write_all(&bytes)?;
    stats.file_bytes += bytes.len() as u64;
    stats.flows = used.iter().filter(|u| **u).count() as u64;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_capture_is_deterministic_and_well_formed() {
        let o = BigcapOptions {
            packets: 20_000,
            duration_secs: 5,
            seed: 7,
            ..BigcapOptions::default()
        };
        let mut a = Vec::new();
        let sa = write_bigcap(&mut a, o).unwrap();
        let mut b = Vec::new();
        write_bigcap(&mut b, o).unwrap();
        assert_eq!(a, b, "same options, same bytes");
        assert_eq!(sa.file_bytes, a.len() as u64);
        assert!(sa.packets >= 15_000 && sa.flows > 1000, "{sa:?}");
        // Every record: caplen ≤ 128 ≤ orig_len or a headers-only packet,
        // timestamps in order, and each frame parses as Ethernet + IP.
        let mut at = 24;
        let mut last = 0;
        let mut n = 0;
        while at < a.len() {
            let r = &a[at..];
            let ts = u64::from(u32::from_le_bytes(r[0..4].try_into().unwrap())) * 1_000_000_000
                + u64::from(u32::from_le_bytes(r[4..8].try_into().unwrap()));
            let caplen = u32::from_le_bytes(r[8..12].try_into().unwrap()) as usize;
            let orig = u32::from_le_bytes(r[12..16].try_into().unwrap()) as usize;
            assert!(ts >= last);
            assert!(caplen <= 128 && caplen <= orig, "{caplen} {orig}");
            let data = &r[16..16 + caplen];
            let parsed = etherparse::SlicedPacket::from_ethernet(data);
            // Headers-only frames fail etherparse's length checks on the
            // payload, but the link and IP headers must be there.
            let ok = match parsed {
                Ok(p) => p.net.is_some(),
                Err(_) => {
                    etherparse::LaxSlicedPacket::from_ethernet(data).is_ok_and(|p| p.net.is_some())
                }
            };
            assert!(ok, "record {n} at byte {at}");
            last = ts;
            at += 16 + caplen;
            n += 1;
        }
        assert_eq!(n, sa.packets);
    }

    /// Frames whose outer IPv4 header carries GRE or VXLAN.
    fn tunnelled(capture: &[u8]) -> usize {
        let mut at = 24;
        let mut n = 0;
        while at < capture.len() {
            let caplen = u32::from_le_bytes(capture[at + 8..at + 12].try_into().unwrap()) as usize;
            let f = &capture[at + 16..at + 16 + caplen];
            if f[12..14] == [0x08, 0x00]
                && (f[23] == 47 || (f[23] == 17 && f[36..38] == [0x12, 0xb5]))
            {
                n += 1;
            }
            at += 16 + caplen;
        }
        n
    }

    #[test]
    fn no_tunnels_keeps_every_flow_and_packet_but_unwraps_them() {
        let with = BigcapOptions {
            packets: 50_000,
            duration_secs: 5,
            ..BigcapOptions::default()
        };
        let without = BigcapOptions {
            tunnels: false,
            ..with
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let sa = write_bigcap(&mut a, with).unwrap();
        let sb = write_bigcap(&mut b, without).unwrap();
        assert_eq!((sa.flows, sa.packets), (sb.flows, sb.packets));
        assert!(tunnelled(&a) > 0);
        assert_eq!(tunnelled(&b), 0);
    }
}
