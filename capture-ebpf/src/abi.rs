//! Mirrors of the structures in `bpf/flowspan.h`, which the TC programs
//! share with userspace. A test reads the compiled object's BTF and checks
//! every mirror's size and every field's offset against it.

use std::mem::offset_of;

/// Why a packet went to userspace (`enum fs_up_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpReason {
    /// Not IPv4 or IPv6 after at most three VLAN tags.
    NotIp = 0,
    /// An IPv4 or IPv6 fragment.
    Fragment = 1,
    /// UDP to a port the engine looks into (tunnels, NAT-T, WireGuard,
    /// possible Teredo), IP-in-IP, GRE.
    Tunnel = 2,
    /// IPsec, a long IPv6 extension chain, another transport.
    Unusual = 3,
    /// A header cut short or inconsistent.
    Malformed = 4,
    /// A new flow while the flow map was full.
    TableFull = 5,
    /// The flow's entry had ended (closed or idle) and awaited collection.
    Frozen = 6,
    /// A GSO/GRO super-packet.
    Segmented = 7,
    /// A TCP flow whose first packet the kernel could not count: all its
    /// packets go up, so that the engine alone times it.
    Follows = 8,
}

impl UpReason {
    /// Every reason, in counter order.
    pub const ALL: [UpReason; 9] = [
        UpReason::NotIp,
        UpReason::Fragment,
        UpReason::Tunnel,
        UpReason::Unusual,
        UpReason::Malformed,
        UpReason::TableFull,
        UpReason::Frozen,
        UpReason::Segmented,
        UpReason::Follows,
    ];
}

// The summary names each reason from the registry's list.
const _: () = assert!(engine::registry::UP_REASONS.len() == UpReason::ALL.len());

/// `FS_STAT_PACKETS`: packets the programs ran on.
pub const STAT_PACKETS: u32 = 0;
/// `FS_STAT_COUNTED`: packets counted in the flow map.
pub const STAT_COUNTED: u32 = 1;
/// `FS_STAT_LOST`: packets for userspace lost because the ring was full.
pub const STAT_LOST: u32 = 2;
/// `FS_STAT_UP`: the first of the per-reason counters.
pub const STAT_UP: u32 = 3;
/// `FS_STAT_DECAP`: packets counted after decapsulation (VXLAN, Geneve).
pub const STAT_DECAP: u32 = STAT_UP + UpReason::ALL.len() as u32;
/// `FS_STAT_DUPLICATE`: packets seen on an interface other than their
/// flow's, left out.
pub const STAT_DUPLICATE: u32 = STAT_DECAP + 1;
/// `FS_STAT_NOTICE_LOST`: notices lost because the ring was full.
pub const STAT_NOTICE_LOST: u32 = STAT_DUPLICATE + 1;
/// `FS_STAT_SUPER`: GSO/GRO super-packets counted as their segments.
pub const STAT_SUPER: u32 = STAT_NOTICE_LOST + 1;
/// `FS_STAT_SEGMENTS`: the segments those super-packets count as.
pub const STAT_SEGMENTS: u32 = STAT_SUPER + 1;
/// `FS_STATS`: how many counters there are.
pub const STATS: u32 = STAT_SEGMENTS + 1;

/// TCP timing flags (`FS_TCP_*`) userspace reads.
pub mod tcp_flags {
    /// The flow's first packet was the initiator's SYN.
    pub const SYN_FIRST: u16 = 1;
    /// The SYN was sent again before the SYN/ACK.
    pub const SYN_AGAIN: u16 = 1 << 1;
    /// `synack_at_ns` holds the SYN/ACK's time.
    pub const SYNACK_AT: u16 = 1 << 3;
    /// The initiator acknowledged the SYN/ACK.
    pub const ESTABLISHED: u16 = 1 << 5;
    /// `ack_after_ns` holds `c`.
    pub const ACK_AFTER: u16 = 1 << 6;
}

/// `struct fs_key`: a flow in the engine's order. (Ordered only so that
/// due times can break ties in a heap.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C)]
pub struct FsKey {
    /// Endpoint a's address, network order (IPv4 in the first 4 bytes).
    pub a: [u8; 16],
    /// Endpoint b's address.
    pub b: [u8; 16],
    /// Endpoint a's port or ICMP port equivalent.
    pub a_port: u16,
    /// Endpoint b's port or ICMP port equivalent.
    pub b_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// 1 for IPv6.
    pub v6: u8,
    /// 1 for a one-way ICMP message.
    pub one_way: u8,
    /// The tunnel the packets came in: [`TUN_VXLAN`], [`TUN_GENEVE`], or 0.
    pub tun_kind: u8,
    /// A hash of which tunnel (the tunnel itself is in [`FsFlow`]).
    pub tun_hash: u32,
    /// The interface, when flows are kept apart per interface.
    pub ifindex: u32,
}

/// `FS_TUN_VXLAN`.
pub const TUN_VXLAN: u8 = 1;
/// `FS_TUN_GENEVE`.
pub const TUN_GENEVE: u8 = 2;

/// `struct fs_side`: one direction, cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FsSide {
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes.
    pub bytes: u64,
    /// Monotonic time of its first packet (0: none).
    pub first_ns: u64,
    /// Union of TCP flags.
    pub tcp_flags: u16,
    /// First packet's TTL or hop limit.
    pub ttl: u8,
    /// First packet's DSCP << 2 | ECN.
    pub tos: u8,
    /// First packet's IPv6 flow label.
    pub flow_label: u32,
    /// First packet's ICMP type.
    pub icmp_type: u8,
    /// First packet's ICMP code.
    pub icmp_code: u8,
    /// Zero.
    pub pad: [u8; 6],
    /// Encapsulation bytes (tunnelled flows).
    pub tun_bytes: u64,
    /// First packet's outer UDP source port.
    pub tun_sport: u16,
    /// First packet's outer UDP destination port.
    pub tun_dport: u16,
    /// First packet's outer source MAC.
    pub tun_mac: [u8; 6],
    /// 1 when the first packet's outer source was the key's `tun_lo`.
    pub tun_from_lo: u8,
    /// Zero.
    pub tun_pad: [u8; 3],
}

/// `struct fs_tcp`: TCP timing, as `engine::flow::tcp` keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FsTcp {
    /// Last new request segment.
    pub mark: u64,
    /// Sum of `g`, cumulative.
    pub gap_sum_ns: u64,
    /// Sum of |`g` − previous `g`|, cumulative.
    pub jitter_sum_ns: u64,
    /// The latest `g`.
    pub last_gap_ns: u64,
    /// Next new sequence number of the initiator and of the responder.
    pub next_seq: [u32; 2],
    /// SYN/ACK after the flow's first packet.
    pub synack_at_ns: u32,
    /// `c`.
    pub ack_after_ns: u32,
    /// Samples of `g`, cumulative.
    pub samples: u32,
    /// `FS_TCP_*`.
    pub flags: u16,
    /// 0: a, 1: b, 2: unknown.
    pub initiator: u8,
    /// Zero.
    pub pad: u8,
}

/// `struct fs_opening`: the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FsOpening {
    /// Its TCP flags.
    pub tcp_flags: u16,
    /// Sent by endpoint a.
    pub from_a: u8,
    /// Its first SCTP chunk type.
    pub sctp_chunk: u8,
    /// Its ICMP type.
    pub icmp_type: u8,
    /// Zero.
    pub pad: u8,
    /// Its Ethernet source.
    pub src_mac: [u8; 6],
    /// Its Ethernet destination.
    pub dst_mac: [u8; 6],
    /// Zero.
    pub pad2: [u8; 2],
}

/// `struct fs_flow`: one flow map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FsFlow {
    /// The entry's `bpf_spin_lock` (zero as userspace sees it).
    pub lock: u32,
    /// Interface of the first packet.
    pub ifindex: u32,
    /// Monotonic time of the first packet.
    pub first_ns: u64,
    /// Monotonic time of the latest packet.
    pub last_ns: u64,
    /// Idle time after which the entry freezes.
    pub idle_ns: u64,
    /// `[0]`: sent by a.
    pub side: [FsSide; 2],
    /// TCP timing.
    pub tcp: FsTcp,
    /// The first packet.
    pub opening: FsOpening,
    /// TCP: closed (RST, or FIN both ways) at `closed_ns`.
    pub closed: u8,
    /// The flow's packets go to userspace ([`UpReason::Follows`]).
    pub user: u8,
    /// Ended for good: never written again.
    pub frozen: u8,
    /// Zero.
    pub pad: [u8; 5],
    /// Monotonic time the TCP flow closed.
    pub closed_ns: u64,
    /// The tunnel's VNI (when the key's `tun_kind` is set).
    pub tun_id: u32,
    /// 1 for an IPv6 outer header.
    pub tun_v6: u8,
    /// Zero.
    pub tun_pad: [u8; 3],
    /// The lower outer endpoint.
    pub tun_lo: [u8; 16],
    /// The higher outer endpoint.
    pub tun_hi: [u8; 16],
}

/// `struct fs_event`: what precedes a packet's bytes in the ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FsEvent {
    /// Monotonic capture time.
    pub ts_ns: u64,
    /// Interface.
    pub ifindex: u32,
    /// Length of the packet.
    pub wire_len: u32,
    /// Bytes that follow.
    pub cap_len: u32,
    /// GSO segments (0 or 1: not a super-packet).
    pub gso_segs: u16,
    /// GSO segment size.
    pub gso_size: u16,
    /// [`UpReason`].
    pub reason: u8,
    /// 1 on egress.
    pub egress: u8,
    /// 1 when `key` is the packet's flow: what its entry counted goes to
    /// the engine before the packet.
    pub keyed: u8,
    /// [`NOTICE_NEW`] or [`NOTICE_CLOSED`]: no packet follows; news of
    /// entry `key`. 0 for a packet.
    pub notice: u8,
    /// Zero.
    pub pad: [u8; 4],
    /// The packet's flow, when `keyed`.
    pub key: FsKey,
}

/// `FS_NOTICE_NEW`: entry `key` was made.
pub const NOTICE_NEW: u8 = 1;
/// `FS_NOTICE_CLOSED`: entry `key`'s TCP flow closed (RST, or FIN both
/// ways).
pub const NOTICE_CLOSED: u8 = 2;

// SAFETY: each is `repr(C)`, made of integers and arrays of integers with
// every hole filled by an explicit pad field (the layout test checks that
// the sizes add up), so any bit pattern is a valid value.
unsafe impl aya::Pod for FsKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FsFlow {}

impl FsEvent {
    /// Reads the header at the start of a ring buffer record.
    pub fn read(bytes: &[u8]) -> Option<FsEvent> {
        let b = bytes.get(..size_of::<FsEvent>())?;
        let u64_at = |i: usize| {
            u64::from_ne_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        let k = &b[offset_of!(FsEvent, key)..];
        let mut key = FsKey::default();
        key.a.copy_from_slice(&k[..16]);
        key.b.copy_from_slice(&k[16..32]);
        key.a_port = u16::from_ne_bytes([k[32], k[33]]);
        key.b_port = u16::from_ne_bytes([k[34], k[35]]);
        key.protocol = k[36];
        key.v6 = k[37];
        key.one_way = k[38];
        key.tun_kind = k[39];
        key.tun_hash = u32::from_ne_bytes([k[40], k[41], k[42], k[43]]);
        key.ifindex = u32::from_ne_bytes([k[44], k[45], k[46], k[47]]);
        Some(FsEvent {
            ts_ns: u64_at(0),
            ifindex: u32_at(8),
            wire_len: u32_at(12),
            cap_len: u32_at(16),
            gso_segs: u16_at(20),
            gso_size: u16_at(22),
            reason: b[24],
            egress: b[25],
            keyed: b[26],
            notice: b[27],
            pad: [0; 4],
            key,
        })
    }
}

#[cfg(all(test, not(flowspan_no_bpf)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Struct layouts from a BTF blob: name → (size, [(member, byte offset)]).
    fn btf_structs(btf: &[u8]) -> HashMap<String, (u32, Vec<(String, u32)>)> {
        let u32_at = |i: usize| u32::from_le_bytes(btf[i..i + 4].try_into().unwrap());
        assert_eq!(&btf[..2], &0xeb9f_u16.to_le_bytes(), "BTF magic");
        let hdr_len = u32_at(4) as usize;
        let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
        let str_off = u32_at(16) as usize;
        let types = hdr_len + type_off;
        let strings = hdr_len + str_off;
        let name = |off: u32| {
            let s = &btf[strings + off as usize..];
            String::from_utf8(s[..s.iter().position(|&c| c == 0).unwrap()].to_vec()).unwrap()
        };
        let mut out = HashMap::new();
        let mut at = types;
        while at < types + type_len {
            let (name_off, info, size) = (u32_at(at), u32_at(at + 4), u32_at(at + 8));
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            at += 12;
            let extra = match kind {
                1 | 14 | 17 => 4,             // int, var, decl tag
                3 => 12,                      // array
                4 | 5 | 15 | 19 => vlen * 12, // struct, union, datasec, enum64
                6 | 13 => vlen * 8,           // enum, func proto
                _ => 0,
            };
            if kind == 4 {
                let members = (0..vlen)
                    .map(|m| {
                        let base = at + m * 12;
                        // Without the bitfield flag the offset is in bits.
                        assert_eq!(info >> 31, 0, "no bitfields");
                        (name(u32_at(base)), u32_at(base + 8) / 8)
                    })
                    .collect();
                out.insert(name(name_off), (size, members));
            }
            at += extra;
        }
        out
    }

    fn object_btf() -> Vec<u8> {
        btf_of(crate::OBJECT)
    }

    fn btf_of(object: &[u8]) -> Vec<u8> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(object).expect("the embedded object parses");
        let section = file.section_by_name(".BTF").expect("the object has BTF");
        section.data().expect("BTF data").to_vec()
    }

    macro_rules! check {
        ($structs:expr, $c:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
            let (size, members) = $structs.get($c).unwrap_or_else(|| panic!("{} in BTF", $c));
            assert_eq!(*size as usize, size_of::<$rust>(), "size of {}", $c);
            let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, [$(stringify!($field)),*], "fields of {}", $c);
            $(
                let off = members.iter().find(|(n, _)| n == stringify!($field)).unwrap().1;
                assert_eq!(off as usize, offset_of!($rust, $field), "{}.{}", $c, stringify!($field));
            )*
        }};
    }

    #[test]
    fn every_mirror_has_the_c_layout() {
        let structs = btf_structs(&object_btf());
        check!(
            structs,
            "fs_key",
            FsKey,
            [
                a, b, a_port, b_port, protocol, v6, one_way, tun_kind, tun_hash, ifindex
            ]
        );
        check!(
            structs,
            "fs_side",
            FsSide,
            [
                packets,
                bytes,
                first_ns,
                tcp_flags,
                ttl,
                tos,
                flow_label,
                icmp_type,
                icmp_code,
                pad,
                tun_bytes,
                tun_sport,
                tun_dport,
                tun_mac,
                tun_from_lo,
                tun_pad
            ]
        );
        check!(
            structs,
            "fs_tcp",
            FsTcp,
            [
                mark,
                gap_sum_ns,
                jitter_sum_ns,
                last_gap_ns,
                next_seq,
                synack_at_ns,
                ack_after_ns,
                samples,
                flags,
                initiator,
                pad
            ]
        );
        check!(
            structs,
            "fs_opening",
            FsOpening,
            [
                tcp_flags, from_a, sctp_chunk, icmp_type, pad, src_mac, dst_mac, pad2
            ]
        );
        check!(
            structs,
            "fs_flow",
            FsFlow,
            [
                lock, ifindex, first_ns, last_ns, idle_ns, side, tcp, opening, closed, user,
                frozen, pad, closed_ns, tun_id, tun_v6, tun_pad, tun_lo, tun_hi
            ]
        );
        check!(
            structs,
            "fs_event",
            FsEvent,
            [
                ts_ns, ifindex, wire_len, cap_len, gso_segs, gso_size, reason, egress, keyed,
                notice, pad, key
            ]
        );
    }

    #[test]
    fn an_event_header_reads_back() {
        let mut key = FsKey {
            a_port: 53,
            b_port: 40000,
            protocol: 17,
            v6: 1,
            ..FsKey::default()
        };
        key.a[15] = 1;
        key.b[0] = 0xfe;
        key.tun_kind = TUN_GENEVE;
        key.tun_hash = 0x00ab_cdef;
        key.ifindex = 9;
        let e = FsEvent {
            ts_ns: 0x0102_0304_0506_0708,
            ifindex: 7,
            wire_len: 1500,
            cap_len: 1400,
            gso_segs: 3,
            gso_size: 1448,
            reason: UpReason::Tunnel as u8,
            egress: 1,
            keyed: 1,
            notice: NOTICE_CLOSED,
            pad: [0; 4],
            key,
        };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&e.ts_ns.to_ne_bytes());
        bytes.extend_from_slice(&e.ifindex.to_ne_bytes());
        bytes.extend_from_slice(&e.wire_len.to_ne_bytes());
        bytes.extend_from_slice(&e.cap_len.to_ne_bytes());
        bytes.extend_from_slice(&e.gso_segs.to_ne_bytes());
        bytes.extend_from_slice(&e.gso_size.to_ne_bytes());
        bytes.extend_from_slice(&[e.reason, e.egress, e.keyed, e.notice, 0, 0, 0, 0]);
        bytes.extend_from_slice(&key.a);
        bytes.extend_from_slice(&key.b);
        bytes.extend_from_slice(&key.a_port.to_ne_bytes());
        bytes.extend_from_slice(&key.b_port.to_ne_bytes());
        bytes.extend_from_slice(&[key.protocol, key.v6, key.one_way, key.tun_kind]);
        bytes.extend_from_slice(&key.tun_hash.to_ne_bytes());
        bytes.extend_from_slice(&key.ifindex.to_ne_bytes());
        assert_eq!(bytes.len(), size_of::<FsEvent>());
        assert_eq!(FsEvent::read(&bytes), Some(e));
        assert_eq!(FsEvent::read(&bytes[..bytes.len() - 1]), None);
    }

    /// The connect tracepoint's shared structures, and its view of the
    /// tracepoint's record: the offsets the kernel's format file gives
    /// (checked against the file itself where tracefs is mounted).
    #[test]
    fn the_connect_hook_s_structures_have_the_c_layout() {
        use crate::connects::{FsConnect, FsConnectKey};
        let structs = btf_structs(&btf_of(crate::connects::OBJECT));
        check!(
            structs,
            "fs_connect_key",
            FsConnectKey,
            [family, port, address]
        );
        check!(structs, "fs_connect", FsConnect, [time_ns, pid, comm, pad]);
        let (_, args) = &structs["inet_sock_set_state_args"];
        let offset = |f: &str| args.iter().find(|(n, _)| n == f).map(|(_, o)| *o);
        let expected = [
            ("skaddr", 8),
            ("oldstate", 16),
            ("newstate", 20),
            ("sport", 24),
            ("dport", 26),
            ("family", 28),
            ("protocol", 30),
            ("saddr", 32),
            ("daddr", 36),
            ("saddr_v6", 40),
            ("daddr_v6", 56),
        ];
        for (field, at) in expected {
            assert_eq!(offset(field), Some(at), "inet_sock_set_state_args.{field}");
        }
        const FORMAT: &str = "events/sock/inet_sock_set_state/format";
        let format = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .find_map(|t| std::fs::read_to_string(format!("{t}/{FORMAT}")).ok())
            .or_else(|| {
                // Where tracefs is not mounted: in a mount namespace of
                // its own (needs root), as the engine would mount it.
                let script = format!(
                    "mount -t tracefs nodev /sys/kernel/tracing && cat /sys/kernel/tracing/{FORMAT}"
                );
                let out = std::process::Command::new("unshare")
                    .args(["--mount", "sh", "-c", &script])
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            });
        if format.is_none() {
            // Fails in CI and as root.
            capture_afpacket::testnet::skip(
                "the tracepoint's format file is not readable (tracefs not mounted, and mounting it needs root)",
            );
        }
        if let Some(format) = format {
            for (field, at) in expected {
                let line = format
                    .lines()
                    .find(|l| {
                        l.contains(&format!(" {field};")) || l.contains(&format!(" {field}["))
                    })
                    .unwrap_or_else(|| panic!("{field} in the tracepoint's format"));
                assert!(line.contains(&format!("offset:{at};")), "{line}");
            }
        }
    }
}
