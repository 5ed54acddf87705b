/* The structures the TC programs (flowspan.bpf.c) share with userspace
 * (capture-ebpf/src/abi.rs mirrors each one; a test compares their sizes
 * and offsets with this file's BTF). Fixed-width fields only, every hole
 * filled by an explicit pad, so that both sides agree without packing. */
#ifndef FLOWSPAN_H
#define FLOWSPAN_H

#include <linux/types.h>
#include <linux/bpf.h>

/* Why a packet went to userspace with its bytes instead of being counted
 * in the kernel (fs_event.reason; the index into the fs_stats counters
 * starts at FS_STAT_UP). */
enum fs_up_reason {
	FS_UP_NOT_IP = 0,      /* not IPv4/IPv6 after at most three VLAN tags */
	FS_UP_FRAGMENT = 1,    /* an IPv4 or IPv6 fragment */
	FS_UP_TUNNEL = 2,      /* UDP to a tunnel port, IP-in-IP, GRE */
	FS_UP_UNUSUAL = 3,     /* IPsec, long extension chains, other protocols */
	FS_UP_MALFORMED = 4,   /* a header cut short or inconsistent */
	FS_UP_TABLE_FULL = 5,  /* a new flow and the flow map is full */
	FS_UP_FROZEN = 6,      /* the flow's entry ended (closed and lingered, idle, a new SYN) and awaits collection */
	FS_UP_SEGMENTED = 7,   /* a GSO/GRO super-packet in a tunnel */
	FS_UP_FOLLOWS = 8,     /* a TCP flow whose first packet the kernel could
				* not count: all its packets go up, so that the
				* engine alone times it */
	FS_UP_REASONS = 9,
};

/* Per-CPU counters (array fs_stats). */
enum fs_stat {
	FS_STAT_PACKETS = 0,   /* packets the programs ran on */
	FS_STAT_COUNTED = 1,   /* packets counted in the flow map */
	FS_STAT_LOST = 2,      /* packets for userspace lost: ring buffer full */
	FS_STAT_UP = 3,        /* FS_STAT_UP + reason: packets sent to userspace */
	FS_STAT_DECAP = FS_STAT_UP + FS_UP_REASONS, /* counted after decapsulation */
	FS_STAT_DUPLICATE,     /* seen on an interface other than its flow's (left out) */
	FS_STAT_NOTICE_LOST,   /* notices (fs_event.notice) lost: ring buffer full */
	FS_STAT_SUPER,         /* GSO/GRO super-packets counted as their segments */
	FS_STAT_SEGMENTS,      /* ... the segments they count as */
	FS_STATS,
};

/* A flow, in the engine's order (flowspan_engine::FlowKey): endpoint a is
 * the lower (address, port); ICMP "ports" are the Community ID port
 * equivalents; a one-way ICMP message keeps its sender as a. 48 bytes: the
 * map hashes the key on every packet. */
struct fs_key {
	__u8 a[16];            /* network order; IPv4 in the first 4 bytes */
	__u8 b[16];
	__u16 a_port;          /* host order */
	__u16 b_port;
	__u8 protocol;
	__u8 v6;
	__u8 one_way;
	/* The tunnel the packets came in (FS_TUN_*; 0: none), and a hash of
	 * which one (its VNI and outer endpoints, whole in fs_flow.tun_*: a
	 * packet whose tunnel differs from its entry's goes up). */
	__u8 tun_kind;
	__u32 tun_hash;
	/* The interface, when flows are kept apart per interface (0 when a
	 * flow's first interface keeps it). */
	__u32 ifindex;
};

#define FS_TUN_VXLAN 1
#define FS_TUN_GENEVE 2

/* One direction of a flow, cumulative since the entry was made. */
struct fs_side {
	__u64 packets;
	__u64 bytes;           /* IP-layer bytes */
	__u64 first_ns;        /* its first packet (0: none yet) */
	__u16 tcp_flags;       /* union; FIN 0x01 ... CWR 0x80, NS 0x100 */
	__u8 ttl;              /* first packet's TTL / hop limit */
	__u8 tos;              /* first packet's DSCP << 2 | ECN */
	__u32 flow_label;      /* first packet's IPv6 flow label */
	__u8 icmp_type;        /* first packet's ICMP type and code */
	__u8 icmp_code;
	__u8 pad[6];
	/* Tunnelled flows: encapsulation bytes (cumulative), and the first
	 * packet's outer UDP ports, outer source MAC and whether its outer
	 * source was the key's tun_lo. */
	__u64 tun_bytes;
	__u16 tun_sport;
	__u16 tun_dport;
	__u8 tun_mac[6];
	__u8 tun_from_lo;
	__u8 tun_pad[3];
};

/* README "TCP latency", as engine/src/flow/tcp.rs keeps it; the sums and
 * the sample count are cumulative. Side 0 is the initiator. */
struct fs_tcp {
	__u64 mark;            /* last new request segment */
	__u64 gap_sum_ns;
	__u64 jitter_sum_ns;
	__u64 last_gap_ns;
	__u32 next_seq[2];
	__u32 synack_at_ns;    /* SYN/ACK after the flow's first packet */
	__u32 ack_after_ns;    /* c */
	__u32 samples;
	__u16 flags;           /* FS_TCP_* */
	__u8 initiator;        /* 0: a, 1: b, 2: unknown (no timing) */
	__u8 pad;
};

#define FS_TCP_SYN_FIRST     (1 << 0)
#define FS_TCP_SYN_AGAIN     (1 << 1)
#define FS_TCP_SYNACK        (1 << 2)
#define FS_TCP_SYNACK_AT     (1 << 3)
#define FS_TCP_SYNACK_AGAIN  (1 << 4)
#define FS_TCP_ESTABLISHED   (1 << 5)
#define FS_TCP_ACK_AFTER     (1 << 6)
#define FS_TCP_CLIENT_TALKS  (1 << 7)
#define FS_TCP_SERVER_TALKS  (1 << 8)
#define FS_TCP_TAINTED       (1 << 9)
#define FS_TCP_HAS_LAST      (1 << 10)
#define FS_TCP_SYN_SEEN      (1 << 13)

/* How the flow opened: its first packet. */
struct fs_opening {
	__u16 tcp_flags;
	__u8 from_a;
	__u8 sctp_chunk;
	__u8 icmp_type;
	__u8 pad;
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u8 pad2[2];
};

/* One flow map entry. Every field is written under `lock` (a __u32 to
 * userspace), and userspace reads entries with BPF_F_LOCK: each read is
 * one consistent snapshot. */
struct fs_flow {
	struct bpf_spin_lock lock;
	__u32 ifindex;         /* interface of the first packet */
	__u64 first_ns;        /* bpf_ktime_get_ns() of the first packet */
	__u64 last_ns;         /* ... of the latest packet */
	__u64 idle_ns;         /* the entry freezes after this long without packets */
	struct fs_side side[2];/* [0]: sent by a */
	struct fs_tcp tcp;
	struct fs_opening opening;
	__u8 closed;           /* TCP: RST, or FIN both ways (at closed_ns) */
	__u8 user;             /* the flow's packets go up (FS_UP_FOLLOWS) */
	__u8 frozen;           /* ended for good: never written again */
	__u8 pad[5];
	__u64 closed_ns;
	/* The tunnel (fs_key.tun_kind): VNI and outer endpoints, the lower
	 * first. Written when the entry is made, never changed. */
	__u32 tun_id;
	__u8 tun_v6;
	__u8 tun_pad[3];
	__u8 tun_lo[16];
	__u8 tun_hi[16];
};

/* What precedes a packet's bytes in the ring buffer. */
struct fs_event {
	__u64 ts_ns;           /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 wire_len;        /* skb->len */
	__u32 cap_len;         /* bytes that follow */
	__u16 gso_segs;
	__u16 gso_size;
	__u8 reason;           /* enum fs_up_reason */
	__u8 egress;
	__u8 keyed;            /* `key` is the packet's flow: userspace hands on
				* what its entry counted before the packet */
	__u8 notice;           /* FS_NOTICE_*: no packet, news of entry `key` */
	__u8 pad[4];
	struct fs_key key;
};

/* fs_event.notice: userspace reads an entry when something can be due for
 * it (README "eBPF backend"), and learns of entries from these. */
#define FS_NOTICE_NEW 1        /* the entry was made */
#define FS_NOTICE_CLOSED 2     /* its TCP flow closed: RST, or FIN both ways */

/* The bytes of a packet copied to userspace at most (a 9000-byte jumbo
 * frame fits; a longer super-packet is cut, its length in wire_len). */
#define FS_SNAP 9216

#endif
