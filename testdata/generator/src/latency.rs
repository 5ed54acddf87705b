//! The TCP latency fixture: conversations with real sequence and
//! acknowledgement numbers and chosen gaps between packets, one per rule of
//! README's "TCP latency" (a clean exchange, retransmitted SYN, SYN/ACK and
//! request segments, a server that speaks first, a response that does not
//! acknowledge the whole request, a request segment out of order, a
//! connection seen only from the middle, and one that outlives the active
//! timeout). `engine/cli/tests/latency.rs` reads the packets' timestamps
//! back from the file to compute what each span must say.

use super::{ACK, FIN, MS, PSH, Pcap, SYN, T0, eth_ip, ipv4, ipv6};
use etherparse::TcpHeader;

const US: u64 = 1_000;
const CLIENT: &str = "10.40.0.1";
const SERVER: &str = "10.40.0.2";

/// One TCP connection being written: each side's next sequence number
/// and the packets so far, as IP packets with their times.
struct Conversation {
    client_port: u16,
    server_port: u16,
    v6: bool,
    /// Next sequence number of the client and of the server.
    seq: [u32; 2],
    packets: Vec<(u64, Vec<u8>)>,
}

impl Conversation {
    /// Initial sequence numbers far apart, the client's close to 2^32, so
    /// that sequence numbers wrap during the exchange.
    fn new(client_port: u16, server_port: u16) -> Conversation {
        Conversation {
            client_port,
            server_port,
            v6: false,
            seq: [u32::MAX - 150, 7_000_000],
            packets: Vec::new(),
        }
    }

    fn v6(mut self) -> Conversation {
        self.v6 = true;
        self
    }

    /// A segment from the client (`from_client`) or the server at `at`
    /// with `len` payload bytes, starting `back` bytes before the sender's
    /// next sequence number (a retransmission when `back` >= `len`).
    fn segment(&mut self, from_client: bool, at: u64, flags: u8, len: u32, back: u32) {
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let (sp, dp) = if from_client {
            (self.client_port, self.server_port)
        } else {
            (self.server_port, self.client_port)
        };
        let seq = self.seq[me].wrapping_sub(back);
        let mut h = TcpHeader::new(sp, dp, seq, 65535);
        h.syn = flags & SYN != 0;
        h.ack = flags & ACK != 0;
        h.fin = flags & FIN != 0;
        h.psh = flags & PSH != 0;
        if h.ack {
            h.acknowledgment_number = self.seq[peer];
        }
        let mut tcp = h.to_bytes().to_vec();
        tcp.resize(tcp.len() + len as usize, 0x71);
        let end = seq
            .wrapping_add(len)
            .wrapping_add(u32::from(h.syn) + u32::from(h.fin));
        if (end.wrapping_sub(self.seq[me]) as i32) > 0 {
            self.seq[me] = end;
        }
        let (src, dst) = if from_client {
            (CLIENT, SERVER)
        } else {
            (SERVER, CLIENT)
        };
        let ip = if self.v6 {
            ipv6(&v6_of(src), &v6_of(dst), 6, &tcp)
        } else {
            ipv4(src, dst, 6, &tcp)
        };
        self.packets.push((at, ip));
    }

    fn client(&mut self, at: u64, flags: u8, len: u32) {
        self.segment(true, at, flags, len, 0);
    }

    fn server(&mut self, at: u64, flags: u8, len: u32) {
        self.segment(false, at, flags, len, 0);
    }

    /// SYN, SYN/ACK `h` later, the client's ACK `c` after that.
    fn handshake(&mut self, at: u64, h: u64, c: u64) {
        self.client(at, SYN, 0);
        self.server(at + h, SYN | ACK, 0);
        self.client(at + h + c, ACK, 0);
    }

    /// A request of `segments` segments, 200 µs apart, the response `gap`
    /// after the last one, and the client's ACK of it 300 µs later.
    fn turn(&mut self, at: u64, segments: u32, gap: u64) -> u64 {
        for i in 0..segments {
            self.client(at + u64::from(i) * 200 * US, PSH | ACK, 120);
        }
        let last = at + u64::from(segments - 1) * 200 * US;
        self.server(last + gap, PSH | ACK, 1400);
        self.client(last + gap + 300 * US, ACK, 0);
        last + gap + 300 * US
    }

    /// FIN from the client, FIN from the server, the last ACK.
    fn close(&mut self, at: u64) {
        self.client(at, FIN | ACK, 0);
        self.server(at + MS, FIN | ACK, 0);
        self.client(at + 2 * MS, ACK, 0);
    }
}

fn v6_of(v4: &str) -> String {
    format!("2001:db8:40::{}", v4.rsplit('.').next().unwrap_or("0"))
}

/// Every conversation of the fixture, by client port.
fn conversations() -> Vec<Conversation> {
    let mut all = Vec::new();

    // 41001: clean. h = 3.1 ms, c = 450 µs; gaps 5.2, 7.9 (after a request
    // of two segments) and 4.4 ms.
    let mut a = Conversation::new(41001, 80);
    a.handshake(0, 3_100 * US, 450 * US);
    a.turn(10 * MS, 1, 5_200 * US);
    a.turn(30 * MS, 2, 7_900 * US);
    let end = a.turn(60 * MS, 1, 4_400 * US);
    a.close(end + MS);
    all.push(a);

    // 41002: the SYN is sent again after 1 s, so no h (and no svc); c and
    // one gap, so a round trip but no jitter.
    let mut b = Conversation::new(41002, 80);
    b.client(0, SYN, 0);
    b.segment(true, 1_000 * MS, SYN, 0, 1);
    b.server(1_002 * MS, SYN | ACK, 0);
    b.client(1_002 * MS + 300 * US, ACK, 0);
    let end = b.turn(1_010 * MS, 1, 2_500 * US);
    b.close(end + MS);
    all.push(b);

    // 41003: the second request is sent again 200 ms later, so its turn
    // gives no sample; the first and third are consecutive samples.
    let mut c = Conversation::new(41003, 443);
    c.handshake(0, 1_200 * US, 800 * US);
    c.turn(10 * MS, 1, 3_300 * US);
    c.client(20 * MS, PSH | ACK, 120);
    c.segment(true, 220 * MS, PSH | ACK, 120, 120);
    c.server(221 * MS, PSH | ACK, 1400);
    c.client(221 * MS + 300 * US, ACK, 0);
    let end = c.turn(240 * MS, 1, 6_100 * US);
    c.close(end + MS);
    all.push(c);

    // 41004: the server speaks first (a banner): no sample for it; then
    // two turns.
    let mut d = Conversation::new(41004, 25);
    d.handshake(0, 2_000 * US, 1_000 * US);
    d.server(5 * MS, PSH | ACK, 80);
    d.client(5 * MS + 200 * US, ACK, 0);
    d.turn(10 * MS, 1, 900 * US);
    let end = d.turn(20 * MS, 1, 1_700 * US);
    d.close(end + MS);
    all.push(d);

    // 41005: the server answers after the first of two request segments
    // (its ACK does not cover the second): no sample; then a clean turn.
    let mut e = Conversation::new(41005, 8080);
    e.handshake(0, 700 * US, 300 * US);
    e.client(10 * MS, PSH | ACK, 120);
    let acked_first = e.seq[0];
    e.client(10 * MS + 100 * US, PSH | ACK, 120);
    let unacked = e.seq[0];
    e.seq[0] = acked_first;
    e.server(12 * MS, PSH | ACK, 1400);
    e.seq[0] = unacked;
    e.client(12 * MS + 300 * US, ACK, 0);
    let end = e.turn(20 * MS, 1, 2_600 * US);
    e.close(end + MS);
    all.push(e);

    // 41006: the SYN/ACK is sent twice: h, but no c (so no round trip);
    // the service time still has its samples.
    let mut f = Conversation::new(41006, 80);
    f.client(0, SYN, 0);
    f.server(1_500 * US, SYN | ACK, 0);
    f.segment(false, 1_001_500 * US, SYN | ACK, 0, 1);
    f.client(1_001_800 * US, ACK, 0);
    f.turn(1_010 * MS, 1, 4_000 * US);
    let end = f.turn(1_020 * MS, 1, 6_000 * US);
    f.close(end + MS);
    all.push(f);

    // 41007: seen from the middle (no handshake): no latency at all.
    let mut g = Conversation::new(41007, 80);
    g.turn(0, 1, 3_000 * US);
    let end = g.turn(10 * MS, 1, 3_000 * US);
    g.close(end + MS);
    all.push(g);

    // 41008: the second request's two segments arrive in the wrong order,
    // so that turn gives no sample.
    let mut h = Conversation::new(41008, 80);
    h.handshake(0, 900 * US, 100 * US);
    h.turn(10 * MS, 1, 2_000 * US);
    h.seq[0] = h.seq[0].wrapping_add(120);
    h.client(20 * MS, PSH | ACK, 120);
    h.segment(true, 20 * MS + 100 * US, PSH | ACK, 120, 240);
    h.server(25 * MS, PSH | ACK, 1400);
    h.client(25 * MS + 300 * US, ACK, 0);
    let end = h.turn(30 * MS, 1, 2_400 * US);
    h.close(end + MS);
    all.push(h);

    // 41009: lives 100 s, so the 60 s active timeout cuts it in two
    // records: gaps 10 and 30 ms in the first, 20 and 25 ms in the second.
    // The second record's first jitter term pairs with the first's last.
    let mut i = Conversation::new(41009, 80);
    i.handshake(0, 5 * MS, 2 * MS);
    i.turn(10_000 * MS, 1, 10 * MS);
    i.turn(30_000 * MS, 1, 30 * MS);
    i.turn(70_000 * MS, 1, 20 * MS);
    let end = i.turn(90_000 * MS, 1, 25 * MS);
    i.close(end + MS);
    all.push(i);

    // 41010: IPv6, a clean exchange of one turn whose server is slower to
    // answer the SYN than the request (so svc is 0).
    let mut j = Conversation::new(41010, 80).v6();
    j.handshake(0, 4 * MS, 500 * US);
    let end = j.turn(10 * MS, 1, 3 * MS);
    j.close(end + MS);
    all.push(j);

    all
}

/// `latency.pcap`: every conversation, each starting 2 s after the one
/// before (their packets interleave only where a conversation lasts longer).
pub(crate) fn latency() -> Vec<u8> {
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    for (n, c) in conversations().into_iter().enumerate() {
        let start = T0 + n as u64 * 2_000 * MS;
        packets.extend(c.packets.into_iter().map(|(at, ip)| (start + at, ip)));
    }
    // Stable: packets of one conversation at one time keep their order.
    packets.sort_by_key(|(at, _)| *at);
    let mut p = Pcap::new(1);
    for (at, ip) in &packets {
        p.add(*at, &eth_ip(ip));
    }
    p.take_bytes()
}
