//! flowspan's test fixtures, built packet by packet.
//!
//! Every fixture in `testdata/pcap/` comes from [`fixtures`]; `gen-fixtures`
//! writes them and a test checks that the committed files are exactly what
//! this code produces. IP, TCP and UDP headers are built with `etherparse`
//! (an independent encoder, so the decoder is not checked against itself);
//! link layers, SCTP, ICMP and IPv6 extension headers are written by hand
//! following their RFCs. Checksums are not filled in: flowspan never
//! validates them.
//!
//! [`bigcap`] writes the large synthetic capture of the throughput benchmark
//! (`gen-bigcap`); it is generated on demand, not committed.
#![forbid(unsafe_code)]

pub mod bigcap;
pub mod kubernetes;
mod latency;
mod tunnels;

use etherparse::{
    IpDscp, IpEcn, IpFragOffset, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header,
    TcpHeader,
};

/// One fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// File name in `testdata/pcap/`.
    pub name: &'static str,
    /// What it covers.
    pub about: &'static str,
    /// Extra `engine` flags its golden output is made with.
    pub args: &'static [&'static str],
    /// File contents.
    pub bytes: Vec<u8>,
}

const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

// TCP flags.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>()
        .expect("valid IPv4 literal")
        .octets()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .expect("valid IPv6 literal")
        .octets()
}

/// A pcap writer: microsecond or nanosecond timestamps, either byte order.
/// The fixtures, [`bigcap`] and the engine's tests write captures with it.
#[derive(Debug, Clone)]
pub struct Pcap {
    buf: Vec<u8>,
    nanos: bool,
    big: bool,
}

impl Pcap {
    /// Microseconds, little-endian, link type `link`.
    pub fn new(link: u32) -> Pcap {
        Pcap::with(link, false, false)
    }

    /// Nanoseconds if `nanos`, big-endian if `big`.
    pub fn with(link: u32, nanos: bool, big: bool) -> Pcap {
        let mut p = Pcap {
            buf: Vec::new(),
            nanos,
            big,
        };
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        p.u32(magic);
        p.u16(2);
        p.u16(4);
        p.u32(0);
        p.u32(0);
        p.u32(262_144);
        p.u32(link);
        p
    }

    /// Bytes written and not yet taken.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The bytes written since the last call (the file header first), so a
    /// large capture can be streamed out.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn u16(&mut self, v: u16) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    /// Records the whole of `frame`.
    pub fn add(&mut self, ts_ns: u64, frame: &[u8]) {
        self.add_snapped(ts_ns, frame, frame.len());
    }

    /// Records only the first `snap` bytes of `frame`.
    pub fn add_snapped(&mut self, ts_ns: u64, frame: &[u8], snap: usize) {
        let snap = snap.min(frame.len());
        self.add_record(ts_ns, &frame[..snap], frame.len());
    }

    /// Records `captured`, the start of a packet `orig_len` bytes long.
    pub fn add_record(&mut self, ts_ns: u64, captured: &[u8], orig_len: usize) {
        self.u32((ts_ns / S) as u32);
        let frac = ts_ns % S;
        self.u32(if self.nanos {
            frac as u32
        } else {
            (frac / 1000) as u32
        });
        self.u32(captured.len() as u32);
        self.u32(orig_len as u32);
        self.buf.extend_from_slice(captured);
    }
}

/// pcapng writer (little-endian).
struct Pcapng {
    buf: Vec<u8>,
}

impl Pcapng {
    fn new() -> Pcapng {
        let mut p = Pcapng { buf: Vec::new() };
        let mut body = Vec::new();
        body.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        p.block(0x0a0d_0d0a, &body);
        p
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        self.buf.extend_from_slice(&kind.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(body);
        self.buf.resize(self.buf.len() + padded - body.len(), 0);
        self.buf.extend_from_slice(&len.to_le_bytes());
    }

    /// An interface; `tsresol` as the option byte (6 = µs, 9 = ns).
    fn interface(&mut self, link: u16, tsresol: u8) {
        let mut body = Vec::new();
        body.extend_from_slice(&link.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&262_144u32.to_le_bytes());
        body.extend_from_slice(&9u16.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&[tsresol, 0, 0, 0]);
        body.extend_from_slice(&[0, 0, 0, 0]);
        self.block(1, &body);
    }

    fn enhanced(&mut self, iface: u32, ticks: u64, frame: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&iface.to_le_bytes());
        body.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ticks as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(frame);
        self.block(6, &body);
    }

    fn simple(&mut self, frame: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(frame);
        self.block(3, &body);
    }

    fn name_resolution(&mut self) {
        self.block(4, &[0, 0, 0, 0]);
    }
}

/// IPv4 header fields that fixtures vary.
#[derive(Clone, Copy)]
struct V4 {
    ttl: u8,
    dscp: u8,
    ecn: u8,
    id: u16,
    more_fragments: bool,
    offset_units: u16,
    total_len_override: Option<u16>,
}

impl Default for V4 {
    fn default() -> Self {
        V4 {
            ttl: 64,
            dscp: 0,
            ecn: 0,
            id: 1,
            more_fragments: false,
            offset_units: 0,
            total_len_override: None,
        }
    }
}

fn ipv4_with(src: &str, dst: &str, proto: u8, payload: &[u8], o: V4, options: &[u8]) -> Vec<u8> {
    let mut h =
        Ipv4Header::new(0, o.ttl, IpNumber(proto), v4(src), v4(dst)).expect("small payload");
    h.dscp = IpDscp::try_new(o.dscp).expect("6-bit DSCP");
    h.ecn = IpEcn::try_new(o.ecn).expect("2-bit ECN");
    h.identification = o.id;
    h.dont_fragment = false;
    h.more_fragments = o.more_fragments;
    h.fragment_offset = IpFragOffset::try_new(o.offset_units).expect("13-bit offset");
    h.options = Ipv4Options::try_from(options).expect("options up to 40 bytes, multiple of 4");
    h.total_len = o
        .total_len_override
        .unwrap_or((20 + options.len() + payload.len()) as u16);
    h.header_checksum = h.calc_header_checksum();
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn ipv4(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, proto, payload, V4::default(), &[])
}

fn ipv6_with(
    src: &str,
    dst: &str,
    next: u8,
    payload: &[u8],
    tc: u8,
    label: u32,
    hops: u8,
) -> Vec<u8> {
    let h = Ipv6Header {
        traffic_class: tc,
        flow_label: Ipv6FlowLabel::try_new(label).expect("20-bit label"),
        payload_length: payload.len() as u16,
        next_header: IpNumber(next),
        hop_limit: hops,
        source: v6(src),
        destination: v6(dst),
    };
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn ipv6(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_with(src, dst, next, payload, 0, 0, 64)
}

/// An IPv4 packet carrying a TCP segment.
fn tcp4(src: &str, dst: &str, sp: u16, dp: u16, flags: u8, payload_len: usize) -> Vec<u8> {
    ipv4(src, dst, 6, &tcp(sp, dp, flags, payload_len))
}

fn tcp(sp: u16, dp: u16, flags: u8, payload_len: usize) -> Vec<u8> {
    let mut h = TcpHeader::new(sp, dp, 1000, 65535);
    h.fin = flags & FIN != 0;
    h.syn = flags & SYN != 0;
    h.rst = flags & RST != 0;
    h.psh = flags & PSH != 0;
    h.ack = flags & ACK != 0;
    h.ece = flags & ECE != 0;
    h.cwr = flags & CWR != 0;
    if h.ack {
        h.acknowledgment_number = 2000;
    }
    let mut out = h.to_bytes().to_vec();
    out.resize(out.len() + payload_len, 0x61);
    out
}

fn udp(sp: u16, dp: u16, payload_len: usize) -> Vec<u8> {
    let len = (8 + payload_len) as u16;
    let mut out = Vec::new();
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.resize(out.len() + payload_len, 0x62);
    out
}

fn icmp(t: u8, c: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![t, c, 0, 0];
    out.extend_from_slice(rest);
    out
}

fn echo(t: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut rest = Vec::new();
    rest.extend_from_slice(&id.to_be_bytes());
    rest.extend_from_slice(&seq.to_be_bytes());
    rest.extend_from_slice(&[0x55; 24]);
    icmp(t, 0, &rest)
}

/// SCTP common header and one chunk (RFC 9260 §3).
fn sctp(sp: u16, dp: u16, chunk_type: u8, chunk_value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.push(chunk_type);
    out.push(0);
    out.extend_from_slice(&((4 + chunk_value.len()) as u16).to_be_bytes());
    out.extend_from_slice(chunk_value);
    out.resize(out.len().div_ceil(4) * 4, 0);
    out
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&MAC_A);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn eth_ip(ip: &[u8]) -> Vec<u8> {
    eth(if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 }, ip)
}

/// Ethernet with a stack of `(tpid, vid)` tags in front of the IP packet.
fn eth_tagged(tags: &[(u16, u16)], ip: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAC_B);
    out.extend_from_slice(&MAC_A);
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&(if ip[0] >> 4 == 6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    out.extend_from_slice(ip);
    out
}

fn eth_mpls(labels: &[u32], ip: &[u8]) -> Vec<u8> {
    let mut stack = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let bottom = u32::from(i + 1 == labels.len());
        stack.extend_from_slice(&((label << 12) | (bottom << 8) | 64).to_be_bytes());
    }
    stack.extend_from_slice(ip);
    eth(0x8847, &stack)
}

fn eth_pppoe(ip: &[u8]) -> Vec<u8> {
    let mut p = vec![0x11, 0x00, 0x00, 0x2a];
    p.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    p.extend_from_slice(&(if ip[0] >> 4 == 6 { 0x0057u16 } else { 0x0021 }).to_be_bytes());
    p.extend_from_slice(ip);
    eth(0x8864, &p)
}

fn sll(ip: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 1, 0, 6];
    out.extend_from_slice(&MAC_A);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(if ip[0] >> 4 == 6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    out.extend_from_slice(ip);
    out
}

fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(if ip[0] >> 4 == 6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.push(0);
    out.push(6);
    out.extend_from_slice(&MAC_A);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(ip);
    out
}

/// BSD NULL: address family in little-endian (the capturing host's order).
fn null_le(ip: &[u8]) -> Vec<u8> {
    let family: u32 = if ip[0] >> 4 == 6 { 30 } else { 2 };
    let mut out = family.to_le_bytes().to_vec();
    out.extend_from_slice(ip);
    out
}

/// OpenBSD LOOP: address family in network byte order.
fn loop_be(ip: &[u8]) -> Vec<u8> {
    let family: u32 = if ip[0] >> 4 == 6 { 24 } else { 2 };
    let mut out = family.to_be_bytes().to_vec();
    out.extend_from_slice(ip);
    out
}

fn ppp(ip: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, 0x03];
    out.extend_from_slice(&(if ip[0] >> 4 == 6 { 0x0057u16 } else { 0x0021 }).to_be_bytes());
    out.extend_from_slice(ip);
    out
}

/// A short TCP conversation between two IPv4 hosts as IP packets:
/// handshake, one request, one response, FIN/FIN, last ACK.
fn tcp_conversation_v4(c: &str, cp: u16, s: &str, sp: u16) -> Vec<Vec<u8>> {
    vec![
        ipv4(c, s, 6, &tcp(cp, sp, SYN, 0)),
        ipv4(s, c, 6, &tcp(sp, cp, SYN | ACK, 0)),
        ipv4(c, s, 6, &tcp(cp, sp, ACK, 0)),
        ipv4(c, s, 6, &tcp(cp, sp, PSH | ACK, 100)),
        ipv4(s, c, 6, &tcp(sp, cp, PSH | ACK, 1000)),
        ipv4(c, s, 6, &tcp(cp, sp, FIN | ACK, 0)),
        ipv4(s, c, 6, &tcp(sp, cp, FIN | ACK, 0)),
        ipv4(c, s, 6, &tcp(cp, sp, ACK, 0)),
    ]
}

fn tcp_conversation_v6(c: &str, cp: u16, s: &str, sp: u16) -> Vec<Vec<u8>> {
    vec![
        ipv6(c, s, 6, &tcp(cp, sp, SYN, 0)),
        ipv6(s, c, 6, &tcp(sp, cp, SYN | ACK, 0)),
        ipv6(c, s, 6, &tcp(cp, sp, ACK, 0)),
        ipv6(c, s, 6, &tcp(cp, sp, PSH | ACK, 200)),
        ipv6(s, c, 6, &tcp(sp, cp, RST, 0)),
    ]
}

/// Writes `packets` 1 ms apart from `start`, each wrapped by `link`.
fn add_all(p: &mut Pcap, start: u64, packets: &[Vec<u8>], link: fn(&[u8]) -> Vec<u8>) {
    for (i, ip) in packets.iter().enumerate() {
        p.add(start + i as u64 * MS, &link(ip));
    }
}

fn tcp_lifecycle() -> Vec<u8> {
    let mut p = Pcap::new(1);
    // Full handshake, data, FIN from both sides, final ACK: end_of_flow_detected.
    add_all(
        &mut p,
        T0,
        &tcp_conversation_v4("10.0.0.1", 40000, "10.0.0.2", 80),
        eth_ip,
    );
    // RST ends a flow too; a packet after the linger starts a new flow.
    let t = T0 + 10 * S;
    p.add(
        t,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.3", 40001, 443, SYN, 0)),
    );
    p.add(
        t + MS,
        &eth_ip(&tcp4("10.0.0.3", "10.0.0.1", 443, 40001, RST | ACK, 0)),
    );
    p.add(
        t + 5 * S,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.3", 40001, 443, ACK, 0)),
    );
    // Capture starts at the SYN/ACK: its receiver is the initiator.
    let t = T0 + 20 * S;
    p.add(
        t,
        &eth_ip(&tcp4("10.0.0.4", "10.0.0.1", 22, 50000, SYN | ACK, 0)),
    );
    p.add(
        t + MS,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.4", 50000, 22, ACK, 0)),
    );
    p.add(
        t + 2 * MS,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.4", 50000, 22, PSH | ACK, 48)),
    );
    // Mid-stream: the response comes first, the port heuristic (443) finds the client.
    let t = T0 + 21 * S;
    p.add(
        t,
        &eth_ip(&tcp4("10.0.0.5", "10.0.0.1", 443, 51000, PSH | ACK, 1400)),
    );
    p.add(
        t + MS,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.5", 51000, 443, ACK, 0)),
    );
    // Mid-stream between two ephemeral ports: initiator unknown, INTERNAL.
    let t = T0 + 22 * S;
    p.add(
        t,
        &eth_ip(&tcp4(
            "10.0.0.6",
            "10.0.0.1",
            45000,
            46000,
            ACK | ECE | CWR,
            10,
        )),
    );
    p.add(
        t + MS,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.6", 46000, 45000, ACK, 0)),
    );
    // A SYN only: syn_sent.
    p.add(
        T0 + 23 * S,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.7", 40002, 8080, SYN, 0)),
    );
    // IPv6 connection reset by the server.
    add_all(
        &mut p,
        T0 + 24 * S,
        &tcp_conversation_v6("2001:db8::1", 40003, "2001:db8::2", 443),
        eth_ip,
    );
    p.buf
}

fn udp_and_portless() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let t = T0;
    // DNS: response seen first, the port heuristic makes the querier the source.
    p.add(
        t,
        &eth_ip(&ipv4("192.0.2.53", "10.0.0.1", 17, &udp(53, 33333, 80))),
    );
    p.add(
        t + MS,
        &eth_ip(&ipv4("10.0.0.1", "192.0.2.53", 17, &udp(33333, 53, 30))),
    );
    // Two ephemeral ports: first sender is the source, INTERNAL.
    p.add(
        t + 2 * MS,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.2", 17, &udp(40000, 40001, 10))),
    );
    p.add(
        t + 3 * MS,
        &eth_ip(&ipv4("10.0.0.2", "10.0.0.1", 17, &udp(40001, 40000, 10))),
    );
    // Port-less protocols in both directions: GRE, RSVP, ESP, OSPF.
    for (i, proto) in [47u8, 46, 50, 89].iter().enumerate() {
        let t = t + (10 + i as u64) * MS;
        p.add(
            t,
            &eth_ip(&ipv4("10.0.0.1", "10.0.0.9", *proto, &[0u8; 16])),
        );
        p.add(
            t + 100 * 1000,
            &eth_ip(&ipv4("10.0.0.9", "10.0.0.1", *proto, &[0u8; 24])),
        );
    }
    // An unassigned protocol number.
    p.add(
        t + 20 * MS,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.9", 253, &[0u8; 8])),
    );
    // SCTP: INIT, INIT ACK, DATA. And SCTP over IPv6.
    p.add(
        t + 30 * MS,
        &eth_ip(&ipv4(
            "10.0.0.1",
            "10.0.0.2",
            132,
            &sctp(5000, 38412, 1, &[0; 16]),
        )),
    );
    p.add(
        t + 31 * MS,
        &eth_ip(&ipv4(
            "10.0.0.2",
            "10.0.0.1",
            132,
            &sctp(38412, 5000, 2, &[0; 16]),
        )),
    );
    p.add(
        t + 32 * MS,
        &eth_ip(&ipv4(
            "10.0.0.1",
            "10.0.0.2",
            132,
            &sctp(5000, 38412, 0, &[0; 40]),
        )),
    );
    p.add(
        t + 33 * MS,
        &eth_ip(&ipv6(
            "2001:db8::1",
            "2001:db8::2",
            132,
            &sctp(5001, 5002, 0, &[0; 8]),
        )),
    );
    p.buf
}

fn icmp_pairs() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let t = T0;
    // Echo request and reply, twice: one flow.
    for i in 0..2u16 {
        let t = t + u64::from(i) * S;
        p.add(t, &eth_ip(&ipv4("10.0.0.1", "10.0.0.2", 1, &echo(8, 7, i))));
        p.add(
            t + MS,
            &eth_ip(&ipv4("10.0.0.2", "10.0.0.1", 1, &echo(0, 7, i))),
        );
    }
    // Reply seen first (capture started late): the receiver is the initiator.
    p.add(
        t + 3 * S,
        &eth_ip(&ipv4("10.0.0.3", "10.0.0.1", 1, &echo(0, 9, 1))),
    );
    // Timestamp request/reply pair.
    p.add(
        t + 4 * S,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.4", 1, &icmp(13, 0, &[0; 16]))),
    );
    p.add(
        t + 4 * S + MS,
        &eth_ip(&ipv4("10.0.0.4", "10.0.0.1", 1, &icmp(14, 0, &[0; 16]))),
    );
    // One-way types: port unreachable and time exceeded, in both directions:
    // four separate flows, never reordered.
    let quoted = ipv4("10.0.0.2", "10.0.0.1", 17, &udp(33434, 53, 0));
    p.add(
        t + 5 * S,
        &eth_ip(&ipv4(
            "10.0.0.1",
            "10.0.0.2",
            1,
            &icmp(3, 3, &[&[0u8; 4][..], &quoted].concat()),
        )),
    );
    p.add(
        t + 5 * S + MS,
        &eth_ip(&ipv4(
            "10.0.0.2",
            "10.0.0.1",
            1,
            &icmp(3, 3, &[&[0u8; 4][..], &quoted].concat()),
        )),
    );
    p.add(
        t + 6 * S,
        &eth_ip(&ipv4("10.0.0.254", "10.0.0.1", 1, &icmp(11, 0, &[0; 4]))),
    );
    p.add(
        t + 6 * S + MS,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.254", 1, &icmp(11, 0, &[0; 4]))),
    );
    // ICMPv6 echo, neighbor solicitation/advertisement, and a one-way packet too big.
    let (a, b) = ("2001:db8::1", "2001:db8::2");
    p.add(t + 7 * S, &eth_ip(&ipv6(a, b, 58, &echo(128, 1, 1))));
    p.add(t + 7 * S + MS, &eth_ip(&ipv6(b, a, 58, &echo(129, 1, 1))));
    p.add(t + 8 * S, &eth_ip(&ipv6(a, b, 58, &icmp(135, 0, &[0; 20]))));
    p.add(
        t + 8 * S + MS,
        &eth_ip(&ipv6(b, a, 58, &icmp(136, 0, &[0; 20]))),
    );
    p.add(
        t + 9 * S,
        &eth_ip(&ipv6(b, a, 58, &icmp(2, 0, &[0, 0, 5, 0]))),
    );
    p.add(
        t + 10 * S,
        &eth_ip(&ipv6(a, "ff02::2", 58, &icmp(133, 0, &[0; 4]))),
    );
    p.buf
}

fn ipv6_extension_headers() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let (a, b) = ("2001:db8::10", "2001:db8::20");
    // Hop-by-hop (8 bytes) → routing (type 4, 24 bytes) → destination options
    // (8 bytes) → AH (16 bytes) → TCP.
    let mut chain = Vec::new();
    chain.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
    chain.extend_from_slice(&[60, 2, 4, 1, 0, 0, 0, 0]);
    chain.extend_from_slice(&v6("2001:db8::99"));
    chain.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]);
    chain.extend_from_slice(&[6, 2, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 1, 0, 0, 0, 0]);
    chain.extend_from_slice(&tcp(40000, 443, SYN, 0));
    p.add(T0, &eth_ip(&ipv6_with(a, b, 0, &chain, 0xb9, 0x12345, 60)));
    p.add(
        T0 + MS,
        &eth_ip(&ipv6_with(
            b,
            a,
            6,
            &tcp(443, 40000, SYN | ACK, 0),
            0x02,
            0x54321,
            57,
        )),
    );
    // ESP: no ports, the flow is protocol 50.
    p.add(
        T0 + 2 * MS,
        &eth_ip(&ipv6(a, b, 50, &[0, 0, 0x20, 0x02, 0, 0, 0, 1, 0, 0, 0, 0])),
    );
    // No next header (59).
    p.add(T0 + 3 * MS, &eth_ip(&ipv6(a, b, 59, &[])));
    // IPv4 with options (record route, 12 bytes) and DSCP EF / ECN CE.
    let o = V4 {
        dscp: 46,
        ecn: 3,
        ttl: 33,
        ..V4::default()
    };
    let opts = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p.add(
        T0 + 4 * MS,
        &eth_ip(&ipv4_with(
            "10.0.0.1",
            "10.0.0.2",
            17,
            &udp(5004, 5004, 160),
            o,
            &opts,
        )),
    );
    p.buf
}

fn fragments() -> Vec<u8> {
    let mut p = Pcap::new(1);
    // A UDP datagram of 3000 bytes in three IPv4 fragments, last one first.
    let whole = udp(40000, 53, 2992);
    let (f1, rest) = whole.split_at(1480);
    let (f2, f3) = rest.split_at(1480);
    let frag = |id: u16, off: u16, more: bool| V4 {
        id,
        more_fragments: more,
        offset_units: off,
        ..V4::default()
    };
    p.add(
        T0,
        &eth_ip(&ipv4_with(
            "10.0.0.1",
            "10.0.0.2",
            17,
            f1,
            frag(77, 0, true),
            &[],
        )),
    );
    p.add(
        T0 + MS,
        &eth_ip(&ipv4_with(
            "10.0.0.1",
            "10.0.0.2",
            17,
            f2,
            frag(77, 185, true),
            &[],
        )),
    );
    p.add(
        T0 + 2 * MS,
        &eth_ip(&ipv4_with(
            "10.0.0.1",
            "10.0.0.2",
            17,
            f3,
            frag(77, 370, false),
            &[],
        )),
    );
    // The answer, unfragmented.
    p.add(
        T0 + 3 * MS,
        &eth_ip(&ipv4("10.0.0.2", "10.0.0.1", 17, &udp(53, 40000, 20))),
    );
    // A fragment whose first fragment was never captured.
    p.add(
        T0 + 4 * MS,
        &eth_ip(&ipv4_with(
            "10.0.0.1",
            "10.0.0.2",
            17,
            &[0u8; 64],
            frag(78, 185, false),
            &[],
        )),
    );
    // IPv6: a TCP segment in two fragments (fragment header, id 0x1234).
    let seg = tcp(40001, 80, PSH | ACK, 1300);
    let (s1, s2) = seg.split_at(1232);
    let mut first = vec![6, 0, 0x00, 0x01, 0, 0, 0x12, 0x34];
    first.extend_from_slice(s1);
    let mut second = vec![6, 0, 0x04, 0xd0, 0, 0, 0x12, 0x34];
    second.extend_from_slice(s2);
    p.add(
        T0 + 5 * MS,
        &eth_ip(&ipv6("2001:db8::1", "2001:db8::2", 44, &first)),
    );
    p.add(
        T0 + 6 * MS,
        &eth_ip(&ipv6("2001:db8::1", "2001:db8::2", 44, &second)),
    );
    // An IPv6 atomic fragment (offset 0, M = 0): an ordinary packet.
    let mut atomic = vec![17, 0, 0, 0, 0, 0, 0, 9];
    atomic.extend_from_slice(&udp(40002, 123, 48));
    p.add(
        T0 + 7 * MS,
        &eth_ip(&ipv6("2001:db8::1", "2001:db8::2", 44, &atomic)),
    );
    p.buf
}

fn encapsulations() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let conv = tcp_conversation_v4("10.1.0.1", 40000, "10.1.0.2", 80);
    add_all(&mut p, T0, &conv, |ip| eth_tagged(&[(0x8100, 100)], ip));
    let conv = tcp_conversation_v4("10.2.0.1", 40000, "10.2.0.2", 80);
    add_all(&mut p, T0 + S, &conv, |ip| {
        eth_tagged(&[(0x88a8, 10), (0x8100, 20)], ip)
    });
    let conv = tcp_conversation_v4("10.3.0.1", 40000, "10.3.0.2", 80);
    add_all(&mut p, T0 + 2 * S, &conv, |ip| {
        eth_tagged(&[(0x9100, 1), (0x8100, 2), (0x8100, 3)], ip)
    });
    let conv = tcp_conversation_v4("10.4.0.1", 40000, "10.4.0.2", 80);
    add_all(&mut p, T0 + 3 * S, &conv, |ip| {
        eth_mpls(&[1000, 2000, 3000], ip)
    });
    let conv = tcp_conversation_v4("10.5.0.1", 40000, "10.5.0.2", 80);
    add_all(&mut p, T0 + 4 * S, &conv, eth_pppoe);
    let conv = tcp_conversation_v6("2001:db8:6::1", 40000, "2001:db8:6::2", 80);
    add_all(&mut p, T0 + 5 * S, &conv, |ip| {
        eth_tagged(&[(0x8100, 600)], ip)
    });
    add_all(
        &mut p,
        T0 + 6 * S,
        &tcp_conversation_v6("2001:db8:7::1", 40000, "2001:db8:7::2", 80),
        eth_pppoe,
    );
    // Non-IP frames are counted, not flows: ARP, LLDP, an 802.3 LLC frame,
    // PPPoE discovery, PPP LCP inside PPPoE.
    p.add(T0 + 7 * S, &eth(0x0806, &[0u8; 28]));
    p.add(T0 + 7 * S + MS, &eth(0x88cc, &[0u8; 30]));
    p.add(T0 + 7 * S + 2 * MS, &eth(46, &[0x42, 0x42, 0x03, 0, 0, 0]));
    p.add(T0 + 7 * S + 3 * MS, &eth(0x8863, &[0x11, 0x09, 0, 0, 0, 0]));
    p.add(
        T0 + 7 * S + 4 * MS,
        &eth(0x8864, &[0x11, 0, 0, 0x2a, 0, 6, 0xc0, 0x21, 1, 1, 0, 4]),
    );
    p.buf
}

/// One small exchange (TCP v4 and ICMPv6 echo) per link type.
fn link_type(link: u32, wrap: fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut p = Pcap::new(link);
    add_all(
        &mut p,
        T0,
        &tcp_conversation_v4("172.16.0.1", 41000, "172.16.0.2", 443),
        wrap,
    );
    p.add(
        T0 + S,
        &wrap(&ipv6("2001:db8::a", "2001:db8::b", 58, &echo(128, 3, 1))),
    );
    p.add(
        T0 + S + MS,
        &wrap(&ipv6("2001:db8::b", "2001:db8::a", 58, &echo(129, 3, 1))),
    );
    p.buf
}

fn raw(ip: &[u8]) -> Vec<u8> {
    ip.to_vec()
}

/// A raw-IP capture of one link type holding only `packets`, 1 ms apart.
fn raw_only(link: u32, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Pcap::new(link);
    add_all(&mut p, T0, packets, raw);
    p.buf
}

fn nanosecond_big_endian() -> Vec<u8> {
    let mut p = Pcap::with(1, true, true);
    let conv = tcp_conversation_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    for (i, ip) in conv.iter().enumerate() {
        p.add(T0 + 123 + i as u64 * 7, &eth_ip(ip));
    }
    p.buf
}

fn pcapng_multi_interface() -> Vec<u8> {
    let mut p = Pcapng::new();
    p.interface(1, 6);
    p.interface(101, 9);
    p.name_resolution();
    let conv = tcp_conversation_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    let us = T0 / 1000;
    for (i, ip) in conv.iter().enumerate() {
        if i % 2 == 0 {
            p.enhanced(0, us + i as u64 * 1000, &eth_ip(ip));
        } else {
            p.enhanced(1, T0 + i as u64 * MS + 1, ip);
        }
    }
    // A Simple Packet Block (interface 0, no timestamp).
    p.simple(&eth_ip(&ipv4(
        "10.0.0.3",
        "10.0.0.4",
        17,
        &udp(5353, 5353, 20),
    )));
    // A second section with its own interface (raw IPv6, microseconds).
    let mut second = Pcapng::new();
    second.interface(229, 6);
    second.enhanced(
        0,
        us + 10_000_000,
        &ipv6("2001:db8::1", "2001:db8::2", 17, &udp(40000, 53, 10)),
    );
    p.buf.extend_from_slice(&second.buf);
    p.buf
}

fn timeouts() -> Vec<u8> {
    let mut p = Pcap::new(1);
    // UDP every 10 s for 150 s: active-timeout records every 60 s, the
    // last at 180 s (before the 60 s idle timeout after 150 s).
    for i in 0..16u64 {
        let (src, dst, sp, dp) = if i % 2 == 0 {
            ("10.0.0.1", "10.0.0.2", 40000, 4789)
        } else {
            ("10.0.0.2", "10.0.0.1", 4789, 40000)
        };
        p.add(
            T0 + i * 10 * S,
            &eth_ip(&ipv4(src, dst, 17, &udp(sp, dp, 50))),
        );
    }
    // ICMP echo, then silence longer than the 30 s ICMP idle timeout, then again:
    // two flows, the first ended by idle_timeout.
    p.add(
        T0 + S,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.3", 1, &echo(8, 1, 1))),
    );
    p.add(
        T0 + 40 * S,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.3", 1, &echo(8, 1, 2))),
    );
    // TCP closed by FIN/FIN; a retransmitted FIN inside the 2 s linger joins it,
    // an ACK after the linger starts a new (mid-stream) flow.
    let conv = tcp_conversation_v4("10.0.0.1", 40010, "10.0.0.4", 80);
    add_all(&mut p, T0 + 2 * S, &conv, eth_ip);
    p.add(
        T0 + 3 * S,
        &eth_ip(&tcp4("10.0.0.4", "10.0.0.1", 80, 40010, FIN | ACK, 0)),
    );
    p.add(
        T0 + 9 * S,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.4", 40010, 80, ACK, 0)),
    );
    // TCP whose handshake never completed (SYN, SYN/ACK), then silent for
    // 310 s: its active timeout (60 s) comes before its idle timeout (120 s,
    // --unestablished-timeout), so an active_timeout record at 65 s; the
    // flow ends, with nothing more to report, at 125 s, and the packet at
    // 315 s starts a new flow.
    p.add(
        T0 + 5 * S,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.5", 40020, 22, SYN, 0)),
    );
    p.add(
        T0 + 5 * S + MS,
        &eth_ip(&tcp4("10.0.0.5", "10.0.0.1", 22, 40020, SYN | ACK, 0)),
    );
    p.add(
        T0 + 315 * S,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.5", 40020, 22, PSH | ACK, 100)),
    );
    // TCP whose handshake completed, then silent for 200 s: its 300 s idle
    // timeout keeps it one flow (an active_timeout record, then forced_end).
    for (dt, (src, dst, sp, dp), flags, len) in [
        (0, ("10.0.0.1", "10.0.0.8", 40040, 22), SYN, 0),
        (MS, ("10.0.0.8", "10.0.0.1", 22, 40040), SYN | ACK, 0),
        (2 * MS, ("10.0.0.1", "10.0.0.8", 40040, 22), ACK, 0),
        (200 * S, ("10.0.0.1", "10.0.0.8", 40040, 22), PSH | ACK, 100),
    ] {
        p.add(
            T0 + 6 * S + dt,
            &eth_ip(&tcp4(src, dst, sp, dp, flags, len)),
        );
    }
    // A flow still open at the end: forced_end.
    p.add(
        T0 + 316 * S,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.6", 17, &udp(40030, 123, 48))),
    );
    // Sort by timestamp as a capture would be.
    sort_pcap(p)
}

/// Re-orders the records of a microsecond pcap by timestamp (stable).
fn sort_pcap(p: Pcap) -> Vec<u8> {
    let (header, mut rest) = p.buf.split_at(24);
    let mut records = Vec::new();
    while rest.len() >= 16 {
        let sec = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let usec = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let len = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        let (rec, tail) = rest.split_at(16 + len);
        records.push(((sec, usec), rec));
        rest = tail;
    }
    records.sort_by_key(|(ts, _)| *ts);
    let mut out = header.to_vec();
    for (_, rec) in records {
        out.extend_from_slice(rec);
    }
    out
}

fn many_flows() -> Vec<u8> {
    // 8 UDP flows one after another: with --max-flows 4 the oldest are evicted.
    let mut p = Pcap::new(1);
    for i in 0..8u16 {
        let t = T0 + u64::from(i) * S;
        p.add(
            t,
            &eth_ip(&ipv4("10.0.0.1", "10.0.0.2", 17, &udp(40000 + i, 53, 30))),
        );
        p.add(
            t + MS,
            &eth_ip(&ipv4("10.0.0.2", "10.0.0.1", 17, &udp(53, 40000 + i, 60))),
        );
    }
    // The first flow again: it was evicted, so it starts over.
    p.add(
        T0 + 9 * S,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.2", 17, &udp(40000, 53, 30))),
    );
    p.buf
}

fn local_host() -> Vec<u8> {
    // 10.9.0.1 is the observing host: it answers one connection (SERVER),
    // opens another (CLIENT), and answers a ping (SERVER).
    let mut p = Pcap::new(1);
    add_all(
        &mut p,
        T0,
        &tcp_conversation_v4("198.51.100.7", 50000, "10.9.0.1", 443),
        eth_ip,
    );
    add_all(
        &mut p,
        T0 + S,
        &tcp_conversation_v4("10.9.0.1", 50001, "198.51.100.8", 443),
        eth_ip,
    );
    p.add(
        T0 + 2 * S,
        &eth_ip(&ipv4("198.51.100.9", "10.9.0.1", 1, &echo(8, 5, 1))),
    );
    p.add(
        T0 + 2 * S + MS,
        &eth_ip(&ipv4("10.9.0.1", "198.51.100.9", 1, &echo(0, 5, 1))),
    );
    // Two ephemeral ports, no evidence: INTERNAL even with --local-net.
    p.add(
        T0 + 3 * S,
        &eth_ip(&ipv4(
            "198.51.100.7",
            "10.9.0.1",
            17,
            &udp(40000, 40001, 10),
        )),
    );
    p.buf
}

fn malformed() -> Vec<u8> {
    let mut p = Pcap::new(1);
    let good = tcp4("10.0.0.1", "10.0.0.2", 40000, 80, SYN, 0);
    p.add(T0, &eth_ip(&good));
    // TCP header cut by the snaplen after 8 bytes: tcp_truncated.
    p.add_snapped(
        T0 + MS,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.2", 40000, 80, ACK, 0)),
        14 + 20 + 8,
    );
    // Payload cut by the snaplen: still counted at wire size (1040 bytes).
    p.add_snapped(
        T0 + 2 * MS,
        &eth_ip(&tcp4("10.0.0.1", "10.0.0.2", 40000, 80, ACK, 1000)),
        14 + 20 + 20,
    );
    // IHL below 5: ipv4_bad_header_length.
    let mut bad = good.clone();
    bad[0] = 0x43;
    p.add(T0 + 3 * MS, &eth_ip(&bad));
    // Total length below the header: ipv4_bad_total_length.
    let mut bad = good.clone();
    bad[2..4].copy_from_slice(&10u16.to_be_bytes());
    p.add(T0 + 4 * MS, &eth_ip(&bad));
    // IPv6 EtherType with an IPv4 header: ipv6_bad_version.
    p.add(
        T0 + 5 * MS,
        &eth(0x86dd, &[good.as_slice(), &[0u8; 20]].concat()),
    );
    // IPv6 header cut short: ipv6_truncated.
    p.add_snapped(
        T0 + 6 * MS,
        &eth_ip(&ipv6("2001:db8::1", "2001:db8::2", 17, &udp(1, 2, 0))),
        14 + 30,
    );
    // Extension header running past the packet: ipv6_ext_truncated.
    p.add(
        T0 + 7 * MS,
        &eth_ip(&ipv6(
            "2001:db8::1",
            "2001:db8::2",
            0,
            &[17, 5, 0, 0, 0, 0, 0, 0],
        )),
    );
    // A runt Ethernet frame and a VLAN tag cut short.
    p.add(T0 + 8 * MS, &[0u8; 10]);
    p.add(T0 + 9 * MS, &eth(0x8100, &[0, 1]));
    // The good flow continues after all of that.
    p.add(
        T0 + 10 * MS,
        &eth_ip(&tcp4("10.0.0.2", "10.0.0.1", 80, 40000, SYN | ACK, 0)),
    );
    p.buf
}

fn unsupported_link_type() -> Vec<u8> {
    // pcapng with an Ethernet interface and a Bluetooth HCI (201) one.
    let mut p = Pcapng::new();
    p.interface(1, 6);
    p.interface(201, 6);
    let us = T0 / 1000;
    p.enhanced(
        0,
        us,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.2", 17, &udp(40000, 53, 20))),
    );
    p.enhanced(1, us + 1, &[1, 2, 3, 4, 5, 6, 7, 8]);
    p.enhanced(1, us + 2, &[1, 2, 3, 4]);
    // A packet block naming interface 7, which does not exist: counted, skipped.
    p.enhanced(
        7,
        us + 3,
        &eth_ip(&ipv4("10.0.0.1", "10.0.0.2", 17, &udp(40000, 53, 20))),
    );
    p.enhanced(
        0,
        us + 4,
        &eth_ip(&ipv4("10.0.0.2", "10.0.0.1", 17, &udp(53, 40000, 40))),
    );
    p.buf
}

/// Every fixture, in a fixed order.
pub fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "tcp_lifecycle.pcap",
            about: "TCP FIN/RST/SYN-ACK-first/mid-stream/heuristic/INTERNAL, IPv4 and IPv6",
            args: &[],
            bytes: tcp_lifecycle(),
        },
        Fixture {
            name: "udp_sctp_portless.pcap",
            about: "UDP heuristic, SCTP INIT, port-less protocols (GRE, RSVP, ESP, OSPF, 253)",
            args: &[],
            bytes: udp_and_portless(),
        },
        Fixture {
            name: "icmp_pairs.pcap",
            about: "ICMP/ICMPv6 request/reply pairs in one flow, reply-first, one-way types",
            args: &[],
            bytes: icmp_pairs(),
        },
        Fixture {
            name: "ipv6_ext_and_ipv4_options.pcap",
            about: "IPv6 hop-by-hop/routing/dest-opts/AH chain, ESP, no-next-header, IPv4 options, DSCP/ECN/flow label",
            args: &[],
            bytes: ipv6_extension_headers(),
        },
        Fixture {
            name: "fragments.pcap",
            about: "IPv4 and IPv6 fragments joined to their datagram's flow, orphan fragment, atomic fragment",
            args: &[],
            bytes: fragments(),
        },
        Fixture {
            name: "encapsulations.pcap",
            about: "802.1Q, QinQ (88a8 and 9100 stacks), MPLS label stack, PPPoE over IPv4 and IPv6, non-IP frames",
            args: &[],
            bytes: encapsulations(),
        },
        Fixture {
            name: "link_sll.pcap",
            about: "Linux cooked capture v1 (113)",
            args: &[],
            bytes: link_type(113, sll),
        },
        Fixture {
            name: "link_sll2.pcap",
            about: "Linux cooked capture v2 (276)",
            args: &[],
            bytes: link_type(276, sll2),
        },
        Fixture {
            name: "link_raw101.pcap",
            about: "raw IP (101)",
            args: &[],
            bytes: link_type(101, raw),
        },
        Fixture {
            name: "link_raw12.pcap",
            about: "raw IP (DLT 12)",
            args: &[],
            bytes: link_type(12, raw),
        },
        Fixture {
            name: "link_raw14.pcap",
            about: "raw IP (DLT 14, OpenBSD)",
            args: &[],
            bytes: link_type(14, raw),
        },
        Fixture {
            name: "link_ipv4.pcap",
            about: "LINKTYPE_IPV4 (228)",
            args: &[],
            bytes: raw_only(
                228,
                &tcp_conversation_v4("172.16.0.1", 41000, "172.16.0.2", 443),
            ),
        },
        Fixture {
            name: "link_ipv6.pcap",
            about: "LINKTYPE_IPV6 (229)",
            args: &[],
            bytes: raw_only(
                229,
                &tcp_conversation_v6("2001:db8::a", 41000, "2001:db8::b", 443),
            ),
        },
        Fixture {
            name: "link_null.pcap",
            about: "BSD NULL (0), little-endian family",
            args: &[],
            bytes: link_type(0, null_le),
        },
        Fixture {
            name: "link_loop.pcap",
            about: "OpenBSD LOOP (108), network-order family",
            args: &[],
            bytes: link_type(108, loop_be),
        },
        Fixture {
            name: "link_ppp.pcap",
            about: "PPP (9) with HDLC address/control",
            args: &[],
            bytes: link_type(9, ppp),
        },
        Fixture {
            name: "nanosecond_big_endian.pcap",
            about: "pcap with nanosecond timestamps, big-endian",
            args: &[],
            bytes: nanosecond_big_endian(),
        },
        Fixture {
            name: "multi_interface.pcapng",
            about: "pcapng: two sections, three interfaces, Ethernet/raw/raw IPv6, µs and ns resolution, EPB and SPB",
            args: &[],
            bytes: pcapng_multi_interface(),
        },
        Fixture {
            name: "timeouts.pcap",
            about: "active timeout, ICMP and TCP idle timeouts (TCP before and after its handshake), FIN linger, forced end",
            args: &[],
            bytes: timeouts(),
        },
        Fixture {
            name: "max_flows.pcap",
            about: "eviction with --max-flows 4: lack_of_resources",
            args: &["--max-flows", "4"],
            bytes: many_flows(),
        },
        Fixture {
            name: "local_net.pcap",
            about: "--local-net: SERVER/reverse for flows the host answered",
            args: &["--local-net", "10.9.0.0/16"],
            bytes: local_host(),
        },
        Fixture {
            name: "malformed.pcap",
            about: "truncated and invalid headers counted by reason, snaplen-truncated payload",
            args: &[],
            bytes: malformed(),
        },
        Fixture {
            name: "unsupported_link_type.pcapng",
            about: "an unsupported link type and an undefined interface id, counted and skipped",
            args: &[],
            bytes: unsupported_link_type(),
        },
        Fixture {
            name: "tunnels.pcap",
            about: "VXLAN (4789, 8472, two VNIs), Geneve, GRE (key/csum/seq, IPv6, TEB, PPTP), ERSPAN I/II/III, 4in4/6in4/4in6/6in6, GTP-U, Teredo, nested",
            args: &["--opt-in", "all"],
            bytes: tunnels::tunnels(),
        },
        Fixture {
            name: "tunnels_malformed.pcap",
            about: "truncated and invalid tunnel headers, counted on the carrying flow",
            args: &["--opt-in", "all"],
            bytes: tunnels::tunnels_malformed(),
        },
        Fixture {
            name: "tunnels_fragmented.pcap",
            about: "fragmented outer packets of VXLAN (IPv4) and GRE (IPv6, last fragment first), one datagram cut short, a fragmented DNS answer",
            args: &["--opt-in", "all"],
            bytes: tunnels::tunnels_fragmented(),
        },
        Fixture {
            name: "ipsec_wireguard.pcap",
            about: "ESP, AH, ESP in UDP 4500, AH around a GRE tunnel, WireGuard indices",
            args: &["--opt-in", "all"],
            bytes: tunnels::ipsec_wireguard(),
        },
        Fixture {
            name: "latency.pcap",
            about: "TCP handshake, round-trip and service latency: clean, retransmitted SYN, SYN/ACK and request, banner, partial ACK, out of order, mid-stream, active timeout, IPv6",
            args: &[],
            bytes: latency::latency(),
        },
        Fixture {
            name: "seed1.pcap",
            about: "Community ID with --community-id-seed 1",
            args: &["--community-id-seed", "1"],
            bytes: link_type(1, eth_ip),
        },
    ]
}
