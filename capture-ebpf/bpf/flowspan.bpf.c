/* flowspan's TC programs: count flows in the kernel, send the rest up.
 *
 * Attached to ingress and egress of each captured interface. A packet this
 * program understands completely (Ethernet with up to three VLAN tags,
 * IPv4 with options or IPv6 with up to five extension headers, then TCP,
 * UDP, SCTP, ICMP or ICMPv6, not fragmented, not a tunnel) is counted in
 * its flow's entry of `fs_flows`, exactly as the engine's flow table would
 * count it (engine/src/flow/table, README "TCP latency"). Every other
 * packet goes to userspace whole, through the `fs_events` ring buffer, and
 * is decoded there by the same decoder as a capture file's packets.
 *
 * Exactness (README "eBPF backend"): an entry is only ever written under
 * its bpf_spin_lock and userspace reads it with BPF_F_LOCK, so every read
 * is a consistent snapshot; counters are never reset, userspace takes
 * differences; an entry that has ended (TCP closed, or idle past its
 * timeout) is frozen, never written again, so userspace can delete it
 * after reading it without losing an increment. */

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flowspan.h"

/* Set by userspace before loading. */

/* Idle timeouts (ns): TCP, UDP, ICMP, other, the one for flows that have
 * not got going, and a closed TCP flow's linger (engine::Timeouts). */
const volatile __u64 fs_idle_ns[6] = {300000000000ULL, 60000000000ULL, 30000000000ULL,
				      60000000000ULL, 120000000000ULL, 2000000000ULL};
/* UDP ports whose packets the engine looks into (tunnels, NAT-T,
 * WireGuard): one bit per port, either direction. */
const volatile __u32 fs_udp_ports[2048] = {};
/* The engine's VXLAN and Geneve ports (destination; 0: none), whose
 * packets the programs decapsulate. More ports than fit here go up. */
const volatile __u16 fs_vxlan_ports[4] = {4789, 8472};
const volatile __u16 fs_geneve_ports[4] = {6081};
/* 1: a flow's first interface keeps it, its packets on other interfaces
 * are left out (engine InterfaceFlows::First); 0: one flow per interface. */
const volatile __u8 fs_first_interface = 0;
/* The engine looks for Teredo on any UDP port. */
const volatile __u8 fs_teredo_anywhere = 1;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* userspace sets it (--ebpf-flows) */
	__type(key, struct fs_key);
	__type(value, struct fs_flow);
} fs_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* userspace sets it */
} fs_events SEC(".maps");

/* The programs' counters, per CPU: one entry, an array of FS_STATS. */
struct fs_counters {
	__u64 c[FS_STATS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_counters);
} fs_stats SEC(".maps");

struct fs_scratch {
	struct fs_event ev;
	__u8 data[FS_SNAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_scratch);
} fs_scratch SEC(".maps");


#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* What parsing found out about a packet. */
struct pkt {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u32 ip_bytes;
	__u32 payload; /* TCP payload bytes */
	__u32 flow_label;
	__u16 tcp_flags;
	__u8 protocol;
	__u8 v6;
	__u8 ttl;
	__u8 tos;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 sctp_chunk;
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u8 up;       /* parsed whole, but goes up anyway (FS_UP_*), or NOT_UP */
	__u8 odd_tag;  /* a VLAN tag other than 802.1Q or 802.1ad */
	__u8 ext;      /* IPv6 extension headers before the transport */
	__u16 segs;    /* wire packets this one stands for (count_segments) */
	__u32 ip;      /* IP header offset */
	__u32 l4;      /* transport header offset */
	__u32 thl;     /* transport header length (TCP and UDP) */
	__u32 end;     /* end of the IP datagram */
	__u32 at;      /* where `load` reads (see there) */
	__u16 udp_len; /* UDP length field */
	/* The tunnel (decapsulated packets): kind, VNI, outer endpoints,
	 * ports and source MAC, encapsulation bytes. */
	__u8 tun_kind;
	__u8 tun_v6;
	__u32 tun_id;
	__u8 tun_src[16];
	__u8 tun_dst[16];
	__u16 tun_sport;
	__u16 tun_dport;
	__u8 tun_mac[6];
	__u8 tun_src_lo; /* the outer source is the lower endpoint (make_key) */
	__u32 tun_bytes;
};

/* `pkt.up`: the kernel counts the packet. */
#define NOT_UP 0xff

/* A packet's working state, per CPU: more than the 512 bytes of stack. The
 * new entry is bytes here (a per-CPU map cannot hold a bpf_spin_lock) and
 * becomes a struct fs_flow when copied into fs_flows. */
struct fs_work {
	struct pkt p;
	struct fs_key k;
	__u64 n[(sizeof(struct fs_flow) + 7) / 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_work);
} fs_work SEC(".maps");

/* Capture filter (--filter): slot 0 (ingress) and 1 (egress) hold the
 * program userspace translated from the filter's classic BPF
 * (capture-ebpf/src/filter.rs); it tail-calls slot 2 or 3, the counting
 * programs below without the filter's call, for a packet it keeps. Without
 * a filter the slots are empty and the tail call falls through. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} fs_jumps SEC(".maps");

/* Packet is counted in the kernel. */
#define COUNTED -1

/* Per-CPU counters: a TC program runs to completion with migration
 * disabled and is not re-entered on its CPU, so a plain add is exact. */
static __always_inline void bump(struct fs_counters *c, __u32 i)
{
	if (i < FS_STATS)
		c->c[i] += 1;
}

/* Sends the packet to userspace with its bytes. */
static __always_inline int up(struct __sk_buff *skb, struct fs_counters *c, __u32 reason,
			      __u64 now, __u8 egress, const struct fs_key *key)
{
	__u32 zero = 0;
	struct fs_scratch *s;
	/* 64 bits: a 32-bit length is zero-extended into a second register,
	 * and the verifier then loses the bounds checked on the first. */
	__u64 len = skb->len;

	bump(c, FS_STAT_UP + (reason < FS_UP_REASONS ? reason : FS_UP_UNUSUAL));
	s = bpf_map_lookup_elem(&fs_scratch, &zero);
	if (!s)
		return TC_ACT_OK;
	if (len > FS_SNAP)
		len = FS_SNAP;
	s->ev.ts_ns = now;
	s->ev.ifindex = skb->ifindex;
	s->ev.wire_len = skb->len;
	s->ev.gso_segs = skb->gso_segs;
	s->ev.gso_size = skb->gso_size;
	s->ev.reason = reason;
	s->ev.egress = egress;
	s->ev.keyed = key != 0;
	if (key)
		__builtin_memcpy(&s->ev.key, key, sizeof(*key));
	if (len < 1 || bpf_skb_load_bytes(skb, 0, s->data, len) < 0)
		len = 0;
	s->ev.cap_len = len;
	if (bpf_ringbuf_output(&fs_events, s, sizeof(struct fs_event) + (len & 0x3fff), 0) < 0)
		bump(c, FS_STAT_LOST);
	return TC_ACT_OK;
}

/* Tells userspace about entry `k` (FS_NOTICE_*). A notice the full ring
 * cannot take is counted: userspace then reads the whole map. Notices do
 * not wake userspace (a wake-up per new flow costs it more than the flow):
 * it finds them on its next look, within 100 ms. */
static __always_inline void notice(struct fs_counters *c, __u8 what, const struct fs_key *k,
				   __u64 now, __u32 ifindex)
{
	struct fs_event *e = bpf_ringbuf_reserve(&fs_events, sizeof(*e), 0);

	if (!e) {
		bump(c, FS_STAT_NOTICE_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e) - sizeof(e->key));
	e->ts_ns = now;
	e->ifindex = ifindex;
	e->keyed = 1;
	e->notice = what;
	__builtin_memcpy(&e->key, k, sizeof(*k));
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Packet `p` was counted in entry `k`; `closes`: it closed its TCP flow.
 * The counters, and the notice of the close. */
static __always_inline int counted(struct fs_counters *c, const struct pkt *p,
				   const struct fs_key *k, int closes, __u64 now, __u32 ifindex)
{
	if (closes)
		notice(c, FS_NOTICE_CLOSED, k, now, ifindex);
	bump(c, FS_STAT_COUNTED);
	if (p->segs > 1) {
		bump(c, FS_STAT_SUPER);
		c->c[FS_STAT_SEGMENTS] += p->segs;
	}
	if (p->tun_kind)
		bump(c, FS_STAT_DECAP);
	return TC_ACT_OK;
}

static __always_inline int vlan_tpid(__u16 et)
{
	return et == 0x8100 || et == 0x88a8 || et == 0x9100 || et == 0x9200 || et == 0x9300;
}

static __always_inline int ipv6_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 60 || nh == 135 || nh == 139 || nh == 140;
}

static __always_inline int udp_port_special(__u16 port)
{
	return (fs_udp_ports[port >> 5] >> (port & 31)) & 1;
}

/* Header bytes are read straight from the packet when it is linear (all
 * its bytes in the head, as every packet of a veth was in our tests) and
 * shorter than DIRECT_MAX: a helper call per header cost more than the
 * rest of the header's parsing. Other packets are read with
 * bpf_skb_load_bytes. The parser is inlined twice, once for each (`direct`
 * a constant in each copy), so that the verifier walks two simple parsers
 * rather than one with a fork at every header. */

/* The verifier takes a variable offset into the packet only below 64 KB
 * less what is read. */
#define DIRECT_MAX 0x3fff

/* Copies `len` bytes (a constant) at `off` of the packet to `to`: from the
 * packet's head when `direct`, else with bpf_skb_load_bytes; returns 0, or
 * < 0 when the packet has no such bytes. */
static __always_inline int load(struct __sk_buff *skb, struct pkt *p, __u32 off, void *to,
				const __u32 len, const int direct)
{
	void *data, *data_end, *at;
	__u64 o;

	if (!direct)
		return bpf_skb_load_bytes(skb, off, to, len);
	/* Through memory the verifier does not follow (`p` is a map value):
	 * it then sees an offset it knows nothing of, bounded by the check
	 * that follows, and
	 * walks the paths of packets with different header lengths as one,
	 * as it does for the helper's offsets. */
	p->at = off;
	o = *(volatile __u32 *)&p->at;
	/* A direct packet is shorter than DIRECT_MAX: nothing there. */
	if (o > DIRECT_MAX)
		return -1;
	/* No-op, but clang may check one copy of the offset and add another,
	 * whose bounds the verifier then does not know. */
	asm volatile("%0 &= 0x3fff" : "+r"(o));
	/* Else clang computes &skb->data once for all the calls, and the
	 * verifier refuses a load through a context pointer moved so. */
	asm volatile("" : "+r"(skb));
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	at = data + o;
	if (at + len > data_end)
		return -1;
	__builtin_memcpy(to, at, len);
	return 0;
}

/* Parses the Ethernet header at `off` (and up to three VLAN tags): its
 * addresses into `p`, the EtherType after the tags into `*et` and where
 * the payload starts into `*payload`. */
static __always_inline int parse_eth(struct __sk_buff *skb, __u32 off, struct pkt *p, __u16 *et,
				     __u32 *payload, const int direct)
{
	__u8 eth[14];
	__u16 t;
	int i;

	if (load(skb, p, off, eth, 14, direct) < 0)
		return FS_UP_NOT_IP;
	__builtin_memcpy(p->dst_mac, eth, 6);
	__builtin_memcpy(p->src_mac, eth + 6, 6);
	t = ((__u16)eth[12] << 8) | eth[13];
	off += 14;
#pragma unroll
	for (i = 0; i < 3; i++) {
		__u8 tag[4];
		if (!vlan_tpid(t))
			break;
		if (t != 0x8100 && t != 0x88a8)
			p->odd_tag = 1;
		if (load(skb, p, off, tag, 4, direct) < 0)
			return FS_UP_MALFORMED;
		t = ((__u16)tag[2] << 8) | tag[3];
		off += 4;
	}
	*et = t;
	*payload = off;
	return COUNTED;
}

/* Parses the IP packet of EtherType `et` at `off`, which may not reach
 * past `len`, and its transport header; returns COUNTED when the kernel
 * can count it (or knows its flow, `p->up` saying why it goes up anyway),
 * or why it goes to userspace. */
static __always_inline int parse_ip(struct __sk_buff *skb, __u32 off, __u16 et, __u32 len,
				    struct pkt *p, const int direct)
{
	__u32 l4, end;
	int i;

	if (et == 0x0800) {
		__u8 h[20];
		__u32 ihl, tot;
		__u16 frag;
		if (load(skb, p, off, h, 20, direct) < 0)
			return FS_UP_MALFORMED;
		ihl = (h[0] & 15) * 4;
		tot = ((__u32)h[2] << 8) | h[3];
		if (h[0] >> 4 != 4 || ihl < 20 || tot < ihl)
			return FS_UP_MALFORMED;
		/* Cut short: the engine reads what there is (its flow is known
		 * from the headers), but the bytes are not all here. */
		if (off + tot > len) {
			p->up = FS_UP_MALFORMED;
			tot = len - off;
		}
		frag = ((__u16)h[6] << 8) | h[7];
		/* A later fragment has no transport header: up without a key.
		 * The first one has it: up, but with its flow's key. */
		if (frag & 0x1fff)
			return FS_UP_FRAGMENT;
		if (frag & 0x2000)
			p->up = FS_UP_FRAGMENT;
		p->v6 = 0;
		p->tos = h[1];
		p->ttl = h[8];
		p->protocol = h[9];
		__builtin_memcpy(p->src, h + 12, 4);
		__builtin_memcpy(p->dst, h + 16, 4);
		p->ip_bytes = tot;
		l4 = off + ihl;
		end = off + tot;
		if (l4 > end)
			return FS_UP_MALFORMED;
		if (p->protocol == 51) {
			/* AH: the engine reads its SPI; the flow is the
			 * transport's after it. */
			__u8 x[2];
			if (l4 + 2 > end || load(skb, p, l4, x, 2, direct) < 0)
				return FS_UP_MALFORMED;
			p->protocol = x[0];
			l4 += ((__u32)x[1] + 2) * 4;
			p->up = FS_UP_UNUSUAL;
		}
	} else if (et == 0x86dd) {
		__u8 h[40];
		__u32 plen;
		__u8 nh;
		if (load(skb, p, off, h, 40, direct) < 0)
			return FS_UP_MALFORMED;
		plen = ((__u32)h[4] << 8) | h[5];
		if (h[0] >> 4 != 6)
			return FS_UP_MALFORMED;
		if (off + 40 + plen > len) {
			p->up = FS_UP_MALFORMED;
			plen = len - off - 40;
		}
		if (plen == 0)
			return FS_UP_UNUSUAL; /* a jumbogram, or nothing at all */
		p->v6 = 1;
		p->tos = (h[0] << 4) | (h[1] >> 4);
		p->flow_label = ((__u32)(h[1] & 15) << 16) | ((__u32)h[2] << 8) | h[3];
		p->ttl = h[7];
		__builtin_memcpy(p->src, h + 8, 16);
		__builtin_memcpy(p->dst, h + 24, 16);
		p->ip_bytes = 40 + plen;
		nh = h[6];
		l4 = off + 40;
		end = l4 + plen;
#pragma unroll
		for (i = 0; i < 5; i++) {
			__u8 x[2];
			if (!ipv6_ext(nh) && nh != 51)
				break;
			if (l4 + 2 > end || load(skb, p, l4, x, 2, direct) < 0)
				return FS_UP_MALFORMED;
			p->ext = 1;
			if (nh == 51) {
				/* AH counts 4-byte words, less two. */
				l4 += ((__u32)x[1] + 2) * 4;
				p->up = FS_UP_UNUSUAL;
			} else {
				l4 += ((__u32)x[1] + 1) * 8;
			}
			nh = x[0];
		}
		if (nh == 44)
			return FS_UP_FRAGMENT;
		if (ipv6_ext(nh) || nh == 51)
			return FS_UP_UNUSUAL;
		if (l4 > end)
			return FS_UP_MALFORMED;
		p->protocol = nh;
	} else {
		return FS_UP_NOT_IP;
	}

	p->ip = off;
	p->l4 = l4;
	p->end = end;
	switch (p->protocol) {
	case 6: {
		__u8 t[20];
		__u32 doff;
		if (l4 + 20 > end || load(skb, p, l4, t, 20, direct) < 0)
			return FS_UP_MALFORMED;
		doff = (__u32)(t[12] >> 4) * 4;
		/* The engine keeps such a segment in its flow, with no payload
		 * length: up, with the key. */
		if (doff < 20 || l4 + doff > end) {
			p->up = FS_UP_MALFORMED;
			doff = 20;
		}
		p->sport = ((__u16)t[0] << 8) | t[1];
		p->dport = ((__u16)t[2] << 8) | t[3];
		p->tcp_seq = ((__u32)t[4] << 24) | ((__u32)t[5] << 16) | ((__u32)t[6] << 8) | t[7];
		p->tcp_ack = ((__u32)t[8] << 24) | ((__u32)t[9] << 16) | ((__u32)t[10] << 8) | t[11];
		p->tcp_flags = t[13] | ((__u16)(t[12] & 1) << 8);
		p->payload = end - l4 - doff;
		p->thl = doff;
		return COUNTED;
	}
	case 17: {
		__u8 u[8];
		if (l4 + 8 > end || load(skb, p, l4, u, 8, direct) < 0)
			return FS_UP_MALFORMED;
		p->sport = ((__u16)u[0] << 8) | u[1];
		p->dport = ((__u16)u[2] << 8) | u[3];
		p->udp_len = ((__u16)u[4] << 8) | u[5];
		p->thl = 8;
		if (udp_port_special(p->sport) || udp_port_special(p->dport)) {
			p->up = FS_UP_TUNNEL;
			return COUNTED;
		}
		/* Teredo anywhere (decode/tunnel.rs `teredo`): after an
		 * optional authentication and origin indication, exactly one
		 * IPv6 packet. Only then does the engine see a tunnel. */
		if (fs_teredo_anywhere && l4 + 8 + 40 <= end) {
			__u32 at = l4 + 8;
			__u8 h[6];
			if (load(skb, p, at, h, 4, direct) < 0)
				return FS_UP_MALFORMED;
			if (h[0] == 0 && h[1] == 1) {
				at += 4 + (__u32)h[2] + h[3] + 9;
				if (at + 4 > end || load(skb, p, at, h, 4, direct) < 0)
					return COUNTED;
			}
			if (at + 8 <= end && h[0] == 0 && h[1] == 0)
				at += 8;
			if (at + 40 <= end && load(skb, p, at, h, 6, direct) == 0 &&
			    h[0] >> 4 == 6 && end - at == 40 + (((__u32)h[4] << 8) | h[5]))
				p->up = FS_UP_TUNNEL;
		}
		return COUNTED;
	}
	case 132: {
		__u8 s[13];
		if (l4 + 12 > end)
			return FS_UP_MALFORMED;
		if (l4 + 13 <= end) {
			if (load(skb, p, l4, s, 13, direct) < 0)
				return FS_UP_MALFORMED;
			p->sctp_chunk = s[12];
		} else if (load(skb, p, l4, s, 12, direct) < 0) {
			return FS_UP_MALFORMED;
		}
		p->sport = ((__u16)s[0] << 8) | s[1];
		p->dport = ((__u16)s[2] << 8) | s[3];
		return COUNTED;
	}
	case 1:
	case 58: {
		__u8 m[2];
		if (l4 + 2 > end || load(skb, p, l4, m, 2, direct) < 0)
			return FS_UP_MALFORMED;
		p->icmp_type = m[0];
		p->icmp_code = m[1];
		return COUNTED;
	}
	case 4:
	case 41:
	case 47:
		return FS_UP_TUNNEL;
	default:
		return FS_UP_UNUSUAL;
	}
}

static __always_inline int port_in(const volatile __u16 *ports, __u16 port)
{
	int i;
#pragma unroll
	for (i = 0; i < 4; i++)
		if (ports[i] != 0 && ports[i] == port)
			return 1;
	return 0;
}

/* `p` is UDP to a tunnel port: if it is VXLAN or Geneve as the engine
 * decodes it (decode/tunnel.rs `udp`), becomes the packet inside with the
 * tunnel in its `tun_*` fields. Returns COUNTED with `p->up` still
 * FS_UP_TUNNEL when the engine must see it (another tunnel, a header it
 * would call broken, something unusual inside). */
static __always_inline int decap(struct __sk_buff *skb, struct pkt *p, const int direct)
{
	__u32 at = p->l4 + 8, end = p->end, inner, outer_bytes = p->ip_bytes, off;
	__u8 h[8], kind;
	__u16 et;
	int r;

	if (port_in(fs_vxlan_ports, p->dport))
		kind = FS_TUN_VXLAN;
	else if (port_in(fs_geneve_ports, p->dport))
		kind = FS_TUN_GENEVE;
	else
		return COUNTED;
	if (at + 8 > end || load(skb, p, at, h, 8, direct) < 0)
		return COUNTED;
	if (kind == FS_TUN_VXLAN) {
		/* The I flag: the VNI is valid. */
		if (!(h[0] & 0x08))
			return COUNTED;
		inner = at + 8;
		et = 0x6558;
	} else {
		__u32 len = 8 + (__u32)(h[0] & 0x3f) * 4;
		if (p->l4 + p->udp_len < at + 8 || h[7] != 0 || h[0] >> 6 != 0)
			return COUNTED;
		et = ((__u16)h[2] << 8) | h[3];
		if (et != 0x6558 && et != 0x0800 && et != 0x86dd)
			return COUNTED;
		if (at + len > end)
			return COUNTED;
		inner = at + len;
	}
	__builtin_memcpy(p->tun_src, p->src, 16);
	__builtin_memcpy(p->tun_dst, p->dst, 16);
	p->tun_v6 = p->v6;
	p->tun_sport = p->sport;
	p->tun_dport = p->dport;
	__builtin_memcpy(p->tun_mac, p->src_mac, 6);
	__builtin_memset(p->src, 0, 32);
	p->sport = p->dport = 0;
	p->tcp_seq = p->tcp_ack = p->payload = p->flow_label = 0;
	p->tcp_flags = 0;
	p->protocol = p->v6 = p->ttl = p->tos = 0;
	p->icmp_type = p->icmp_code = p->sctp_chunk = 0;
	p->up = NOT_UP;
	off = inner;
	if (et == 0x6558) {
		/* The inner frame's addresses are the flow's. */
		r = parse_eth(skb, inner, p, &et, &off, direct);
		if (r != COUNTED)
			return FS_UP_TUNNEL;
	}
	r = parse_ip(skb, off, et, end, p, direct);
	if (r != COUNTED || p->up != NOT_UP) {
		p->up = NOT_UP;
		return FS_UP_TUNNEL;
	}
	p->tun_kind = kind;
	p->tun_id = ((__u32)h[4] << 16) | ((__u32)h[5] << 8) | h[6];
	p->tun_bytes = outer_bytes - p->ip_bytes;
	return COUNTED;
}

/* Parses the frame; returns COUNTED when the kernel can count it (or knows
 * its flow, `p->up` saying why it goes up anyway), or why it goes to
 * userspace. `direct`: the packet is linear (see `load`). */
static __always_inline int parse_frame(struct __sk_buff *skb, struct pkt *p, const int direct)
{
	__u32 off;
	__u16 et;
	int r;

	r = parse_eth(skb, 0, p, &et, &off, direct);
	if (r != COUNTED)
		return r;
	r = parse_ip(skb, off, et, skb->len, p, direct);
	if (r != COUNTED || p->up != FS_UP_TUNNEL || p->protocol != 17)
		return r;
	return decap(skb, p, direct);
}

/* parse_frame, reading the packet directly when it is linear and shorter
 * than DIRECT_MAX. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u64 len = skb->len;

	/* Linear: the head holds all `len` bytes. (No pointer difference:
	 * the verifier refuses one without CAP_PERFMON.) */
	if (len <= DIRECT_MAX && data + len <= data_end)
		return parse_frame(skb, p, 1);
	return parse_frame(skb, p, 0);
}

/* The Community ID port equivalent of an ICMP type (community_id.rs):
 * its counterpart's type, or -1 for a one-way message. */
static __always_inline int icmp_counterpart(__u8 protocol, __u8 t)
{
	if (protocol == 1) {
		switch (t) {
		case 8: return 0;
		case 0: return 8;
		case 13: return 14;
		case 14: return 13;
		case 15: return 16;
		case 16: return 15;
		case 10: return 9;
		case 9: return 10;
		case 17: return 18;
		case 18: return 17;
		}
	} else {
		switch (t) {
		case 128: return 129;
		case 129: return 128;
		case 130: return 131;
		case 131: return 130;
		case 133: return 134;
		case 134: return 133;
		case 135: return 136;
		case 136: return 135;
		case 139: return 140;
		case 140: return 139;
		case 144: return 145;
		case 145: return 144;
		}
	}
	return -1;
}

/* -1, 0 or 1 as (x, xp) compares with (y, yp), addresses in network order
 * (an IPv4 address is zero after its fourth byte). */
static __always_inline int endpoint_cmp(const __u8 *x, __u16 xp, const __u8 *y, __u16 yp)
{
	int i;
#pragma unroll
	for (i = 0; i < 16; i++) {
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	}
	if (xp != yp)
		return xp < yp ? -1 : 1;
	return 0;
}

/* A GSO/GRO super-packet `p` of `segs` segments of `size` bytes (as the
 * skb says) counts as the segments the wire carries, each with its own IP
 * and transport headers, by the engine's rule (decode/packet.rs
 * `count_segments`): payload beyond the headers, split into `size`-byte
 * segments. A frame whose transport the engine does not find where it
 * looks (capture.rs `segmented_transport`: through 802.1Q and 802.1ad
 * tags, in the IP header's own protocol field, so not after IPv6
 * extension headers) counts as one packet, as there. Returns the segments (1: not a super-packet). */
static __always_inline __u32 count_segments(struct pkt *p, __u32 segs, __u32 size)
{
	__u32 headers, n;

	if (segs <= 1 || size == 0 || p->odd_tag || p->ext || p->thl == 0 ||
	    (p->protocol != 6 && p->protocol != 17))
		return 1;
	headers = p->l4 - p->ip + p->thl;
	if (headers > 0xffff || p->ip_bytes <= headers)
		return 1;
	n = (p->ip_bytes - headers + size - 1) / size;
	if (n <= 1 || n > 0xffff)
		return 1;
	p->ip_bytes += (n - 1) * headers;
	return n;
}

/* A 32-bit hash of tunnel `id` between outer endpoints `lo` and `hi` (the
 * lower first): the key's tun_hash. */
static __always_inline __u32 tunnel_hash(__u32 id, __u8 v6, const __u8 *lo, const __u8 *hi)
{
	__u32 h = id ^ ((__u32)v6 << 24) ^ 0x9e3779b9, w;
	int i;

#pragma unroll
	for (i = 0; i < 16; i += 4) {
		__builtin_memcpy(&w, lo + i, 4);
		h = (h ^ w) * 0x85ebca6b;
		h ^= h >> 13;
		__builtin_memcpy(&w, hi + i, 4);
		h = (h ^ w) * 0xc2b2ae35;
		h ^= h >> 16;
	}
	return h;
}

/* The flow key of `p`; returns whether `p` was sent by endpoint a. Notes in
 * `p` which outer endpoint is the lower. */
static __always_inline int make_key(struct pkt *p, struct fs_key *k)
{
	__u16 sport = p->sport, dport = p->dport;
	int one_way = 0, from_a;

	if (p->tun_kind) {
		p->tun_src_lo = endpoint_cmp(p->tun_src, 0, p->tun_dst, 0) <= 0;
		k->tun_kind = p->tun_kind;
		k->tun_hash = p->tun_src_lo ? tunnel_hash(p->tun_id, p->tun_v6, p->tun_src, p->tun_dst)
					    : tunnel_hash(p->tun_id, p->tun_v6, p->tun_dst, p->tun_src);
	} else {
		k->tun_kind = 0;
		k->tun_hash = 0;
	}
	k->ifindex = 0;

	if (p->protocol == 1 || p->protocol == 58) {
		int c = icmp_counterpart(p->protocol, p->icmp_type);
		sport = p->icmp_type;
		if (c < 0) {
			dport = p->icmp_code;
			one_way = 1;
		} else {
			dport = c;
		}
	}
	from_a = one_way || endpoint_cmp(p->src, sport, p->dst, dport) < 0;
	if (from_a) {
		__builtin_memcpy(k->a, p->src, 16);
		__builtin_memcpy(k->b, p->dst, 16);
		k->a_port = sport;
		k->b_port = dport;
	} else {
		__builtin_memcpy(k->a, p->dst, 16);
		__builtin_memcpy(k->b, p->src, 16);
		k->a_port = dport;
		k->b_port = sport;
	}
	k->protocol = p->protocol;
	k->v6 = p->v6;
	k->one_way = one_way;
	return from_a;
}

/* Whether entry `f` is the flow of tunnelled packet `p`, not one in
 * another tunnel whose hash is the same. */
static __always_inline int same_tunnel(const struct fs_flow *f, const struct pkt *p)
{
	const __u8 *lo = p->tun_src_lo ? p->tun_src : p->tun_dst;
	const __u8 *hi = p->tun_src_lo ? p->tun_dst : p->tun_src;
	int i;

	if (f->tun_id != p->tun_id || f->tun_v6 != p->tun_v6)
		return 0;
#pragma unroll
	for (i = 0; i < 16; i++)
		if (f->tun_lo[i] != lo[i] || f->tun_hi[i] != hi[i])
			return 0;
	return 1;
}

/* Writes tunnelled packet `p`'s tunnel into new entry `n`. */
static __always_inline void set_tunnel(struct fs_flow *n, const struct pkt *p)
{
	n->tun_id = p->tun_id;
	n->tun_v6 = p->tun_v6;
	__builtin_memcpy(n->tun_lo, p->tun_src_lo ? p->tun_src : p->tun_dst, 16);
	__builtin_memcpy(n->tun_hi, p->tun_src_lo ? p->tun_dst : p->tun_src, 16);
}

/* flow/tcp.rs `TcpTiming::add_sample`. */
static __always_inline void tcp_sample(struct fs_tcp *t, __u64 gap)
{
	if (t->flags & FS_TCP_HAS_LAST)
		t->jitter_sum_ns += gap > t->last_gap_ns ? gap - t->last_gap_ns : t->last_gap_ns - gap;
	t->samples += 1;
	t->gap_sum_ns += gap;
	t->last_gap_ns = gap;
	t->flags |= FS_TCP_HAS_LAST;
}

/* flow/tcp.rs `TcpTiming::observe`, for packet `p` sent by side `side` of
 * a flow that began at `start`. */
static __always_inline void tcp_observe(struct fs_flow *f, const struct pkt *p, int side, __u64 now)
{
	struct fs_tcp *t = &f->tcp;
	__u16 syn_ack = p->tcp_flags & (TCP_SYN | TCP_ACK);
	int forward, established;

	if (t->initiator > 1)
		return;
	forward = side == t->initiator;
	/* The initiator's ACK after the responder's SYN and ACK completes
	 * the handshake (flow/table: `update`). */
	established = forward && syn_ack == TCP_ACK &&
		      (f->side[t->initiator ^ 1].tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK);
	if (syn_ack == TCP_SYN && forward) {
		if ((t->flags & FS_TCP_SYN_SEEN) && !(t->flags & FS_TCP_SYNACK))
			t->flags |= FS_TCP_SYN_AGAIN;
		t->flags |= FS_TCP_SYN_SEEN;
	} else if (syn_ack == (TCP_SYN | TCP_ACK) && !forward) {
		if (t->flags & FS_TCP_SYNACK) {
			if (!(t->flags & FS_TCP_ESTABLISHED))
				t->flags |= FS_TCP_SYNACK_AGAIN;
		} else {
			t->flags |= FS_TCP_SYNACK;
			t->next_seq[0] = p->tcp_ack;
			t->next_seq[1] = p->tcp_seq + 1;
			if (now >= f->first_ns && now - f->first_ns <= 0xffffffffULL) {
				t->synack_at_ns = now - f->first_ns;
				t->flags |= FS_TCP_SYNACK_AT;
			}
		}
	} else if (established && !(t->flags & FS_TCP_ESTABLISHED)) {
		t->flags |= FS_TCP_ESTABLISHED;
		if ((t->flags & FS_TCP_SYNACK_AT) && !(t->flags & FS_TCP_SYNACK_AGAIN)) {
			__u64 synack = f->first_ns + t->synack_at_ns;
			if (now >= synack && now - synack <= 0xffffffffULL) {
				t->ack_after_ns = now - synack;
				t->flags |= FS_TCP_ACK_AFTER;
			}
		}
	}
	if (!(t->flags & FS_TCP_SYNACK) || p->payload == 0)
		return;

	/* `on_data` */
	{
		int s = !forward;
		__u32 next = t->next_seq[s & 1];
		__u32 start = p->tcp_seq + ((p->tcp_flags & TCP_SYN) ? 1 : 0);
		__u32 e = start + p->payload;
		int in_order = start == next;

		if ((__s32)(e - next) <= 0) {
			if (forward && (t->flags & FS_TCP_CLIENT_TALKS))
				t->flags |= FS_TCP_TAINTED;
			return;
		}
		t->next_seq[s & 1] = e;
		if (forward) {
			if (!(t->flags & FS_TCP_CLIENT_TALKS))
				t->flags = (t->flags & ~(FS_TCP_SERVER_TALKS | FS_TCP_TAINTED)) |
					   FS_TCP_CLIENT_TALKS;
			if (!in_order)
				t->flags |= FS_TCP_TAINTED;
			t->mark = now;
			return;
		}
		if ((t->flags & FS_TCP_CLIENT_TALKS) && !(t->flags & FS_TCP_TAINTED) && in_order &&
		    (p->tcp_flags & TCP_ACK) && (__s32)(p->tcp_ack - t->next_seq[0]) >= 0 &&
		    now >= t->mark)
			tcp_sample(t, now - t->mark);
		t->flags = (t->flags & ~(FS_TCP_CLIENT_TALKS | FS_TCP_TAINTED)) | FS_TCP_SERVER_TALKS;
	}
}

/* How long the entry may stay idle: the engine's idle timeout for its
 * class (flow/table/state.rs `got_going`). */
static __always_inline __u64 idle_for(const struct fs_flow *f, __u8 protocol)
{
	__u64 idle, packets = f->side[0].packets + f->side[1].packets;
	int going;

	if (protocol == 6) {
		__u16 any = f->side[0].tcp_flags | f->side[1].tcp_flags;
		going = (f->tcp.flags & FS_TCP_ESTABLISHED) ||
			(!(any & TCP_SYN) && f->side[0].packets > 0 && f->side[1].packets > 0);
		idle = fs_idle_ns[0];
	} else {
		going = packets >= 2;
		idle = protocol == 17 ? fs_idle_ns[1]
		       : (protocol == 1 || protocol == 58) ? fs_idle_ns[2]
							   : fs_idle_ns[3];
	}
	if (!going && fs_idle_ns[4] < idle)
		idle = fs_idle_ns[4];
	return idle;
}

/* Counts packet `p` from side `side` into entry `f` (locked, or not yet
 * in the map); returns 1 when the packet closed the TCP flow. No helper
 * calls: this runs under the entry's lock. */
static __always_inline int account(struct fs_flow *f, const struct pkt *p, int side, __u64 now)
{
	int closes = 0;
	struct fs_side *s = &f->side[side & 1];
	__u16 flags;

	if (s->packets == 0) {
		s->first_ns = now;
		s->ttl = p->ttl;
		s->tos = p->tos;
		s->flow_label = p->flow_label;
		s->icmp_type = p->icmp_type;
		s->icmp_code = p->icmp_code;
		s->tun_sport = p->tun_sport;
		s->tun_dport = p->tun_dport;
		__builtin_memcpy(s->tun_mac, p->tun_mac, 6);
		s->tun_from_lo = p->tun_src_lo;
	}
	s->tun_bytes += p->tun_bytes;
	s->packets += p->segs;
	s->bytes += p->ip_bytes;
	s->tcp_flags |= p->tcp_flags;
	if (now > f->last_ns)
		f->last_ns = now;
	if (p->protocol == 6 && !f->closed) {
		tcp_observe(f, p, side & 1, now);
		flags = f->side[0].tcp_flags & f->side[1].tcp_flags;
		if (((f->side[0].tcp_flags | f->side[1].tcp_flags) & TCP_RST) || (flags & TCP_FIN)) {
			/* Closed: the engine keeps the flow for its linger (the
			 * last ACKs), from now, and stops timing it. */
			f->closed = 1;
			f->closed_ns = now;
			closes = 1;
		}
	}
	f->idle_ns = f->closed ? fs_idle_ns[5] : idle_for(f, p->protocol);
	return closes;
}

/* Whether entry `f` has ended at `now`: frozen, closed longer than the
 * linger, or idle past its timeout. Once true it stays true (README "No
 * lost increments"); the program then never writes the entry again. */
static __always_inline int ended(const struct fs_flow *f, __u64 now)
{
	__u64 since = f->closed ? f->closed_ns : f->last_ns;
	return f->frozen || (now > since && now - since > f->idle_ns);
}

/* A TCP packet of flow `k` goes up although the kernel parsed it: from now
 * on all the flow's packets do, so that the engine times the flow from
 * its own packets (README "TCP latency" needs them in order, on one side
 * of the boundary). What the entry counted so far is handed on first. */
static __always_inline void hand_over(struct fs_counters *c, struct fs_flow *f,
				      const struct fs_key *k, struct fs_work *w, __u64 now,
				      __u32 ifindex)
{
	struct fs_flow *n;

	if (f) {
		bpf_spin_lock(&f->lock);
		if (!ended(f, now)) {
			f->user = 1;
			if (now > f->last_ns)
				f->last_ns = now;
			f->idle_ns = fs_idle_ns[0];
		}
		bpf_spin_unlock(&f->lock);
		return;
	}
	n = (struct fs_flow *)w->n;
	__builtin_memset(n, 0, sizeof(*n));
	n->ifindex = ifindex;
	n->first_ns = now;
	n->last_ns = now;
	n->idle_ns = fs_idle_ns[0];
	n->user = 1;
	/* A full map, or another CPU's entry: the packet goes up either way. */
	if (bpf_map_update_elem(&fs_flows, k, n, BPF_NOEXIST) == 0)
		notice(c, FS_NOTICE_NEW, k, now, ifindex);
}

static __always_inline int handle(struct __sk_buff *skb, __u8 egress)
{
	__u64 now = bpf_ktime_get_ns();
	struct fs_counters *c;
	struct fs_work *w;
	struct fs_flow *f, *n;
	struct pkt *p;
	__u32 zero = 0;
	int r, from_a, side, closes;

	c = bpf_map_lookup_elem(&fs_stats, &zero);
	if (!c)
		return TC_ACT_OK;
	bump(c, FS_STAT_PACKETS);
	w = bpf_map_lookup_elem(&fs_work, &zero);
	if (!w)
		return up(skb, c, FS_UP_TABLE_FULL, now, egress, 0);
	p = &w->p;
	__builtin_memset(p, 0, sizeof(*p));
	p->up = NOT_UP;
	r = parse(skb, p);
	if (r != COUNTED)
		return up(skb, c, p->up != NOT_UP ? p->up : r, now, egress, 0);
	p->segs = 1;
	if (skb->gso_segs > 1) {
		/* Inside a tunnel the engine would take the outer header's
		 * transport for the inner one's: up, to be counted there. */
		if (p->tun_kind)
			p->up = FS_UP_SEGMENTED;
		else
			p->segs = count_segments(p, skb->gso_segs, skb->gso_size);
	}
	from_a = make_key(p, &w->k);
	side = from_a ? 0 : 1;
	if (!fs_first_interface)
		w->k.ifindex = skb->ifindex;
	/* Parsed, but the engine must see this packet itself. Its key goes
	 * with it, so that the flow's counts in the map are handed on
	 * first and the engine sees the flow's packets in order. */
	if (p->up != NOT_UP) {
		/* The key goes with the packet only when the flow has an entry
		 * (userspace then hands on what it counted first): no lookup
		 * in userspace for flows that live there alone. */
		f = bpf_map_lookup_elem(&fs_flows, &w->k);
		if (f && p->tun_kind && !same_tunnel(f, p))
			return up(skb, c, FS_UP_TUNNEL, now, egress, 0);
		if (p->protocol == 6)
			hand_over(c, f, &w->k, w, now, skb->ifindex);
		return up(skb, c, p->up, now, egress, f ? &w->k : 0);
	}

	f = bpf_map_lookup_elem(&fs_flows, &w->k);
	if (!f) {
		n = (struct fs_flow *)w->n;
		__builtin_memset(n, 0, sizeof(*n));
		n->ifindex = skb->ifindex;
		n->first_ns = now;
		n->last_ns = now;
		n->opening.tcp_flags = p->tcp_flags;
		n->opening.from_a = from_a;
		n->opening.sctp_chunk = p->sctp_chunk;
		n->opening.icmp_type = p->icmp_type;
		__builtin_memcpy(n->opening.src_mac, p->src_mac, 6);
		__builtin_memcpy(n->opening.dst_mac, p->dst_mac, 6);
		/* Who initiated, for the timing (flow/table/role.rs): the SYN's
		 * sender, or the SYN/ACK's receiver; unknown otherwise. */
		n->tcp.initiator = 2;
		if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			n->tcp.initiator = side;
			n->tcp.flags = FS_TCP_SYN_FIRST;
		} else if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
			n->tcp.initiator = side ^ 1;
		}
		if (p->tun_kind)
			set_tunnel(n, p);
		closes = account(n, p, side, now);
		if (bpf_map_update_elem(&fs_flows, &w->k, n, BPF_NOEXIST) == 0) {
			notice(c, FS_NOTICE_NEW, &w->k, now, skb->ifindex);
			return counted(c, p, &w->k, closes, now, skb->ifindex);
		}
		/* Another CPU made the entry first: count into it. Any other
		 * failure is a full map. */
		f = bpf_map_lookup_elem(&fs_flows, &w->k);
		if (!f)
			return up(skb, c, FS_UP_TABLE_FULL, now, egress, &w->k);
	}
	/* Another tunnel's flow with the same key: this flow lives in
	 * userspace while that entry lasts. */
	if (p->tun_kind && !same_tunnel(f, p))
		return up(skb, c, FS_UP_TUNNEL, now, egress, 0);
	bpf_spin_lock(&f->lock);
	if (ended(f, now)) {
		bpf_spin_unlock(&f->lock);
		return up(skb, c, FS_UP_FROZEN, now, egress, &w->k);
	}
	if (f->closed && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		/* A new connection on a closed flow's ports: the engine starts
		 * a new flow with this SYN. The entry ends here. */
		f->frozen = 1;
		bpf_spin_unlock(&f->lock);
		return up(skb, c, FS_UP_FROZEN, now, egress, &w->k);
	}
	if (f->ifindex != skb->ifindex) {
		/* Only when the flow's first interface keeps it. */
		bpf_spin_unlock(&f->lock);
		bump(c, FS_STAT_DUPLICATE);
		return TC_ACT_OK;
	}
	if (f->user) {
		if (now > f->last_ns)
			f->last_ns = now;
		bpf_spin_unlock(&f->lock);
		/* What the entry counted went to userspace before the packet
		 * that handed the flow over: nothing more to hand on. */
		return up(skb, c, FS_UP_FOLLOWS, now, egress, 0);
	}
	closes = account(f, p, side, now);
	bpf_spin_unlock(&f->lock);
	return counted(c, p, &w->k, closes, now, skb->ifindex);
}

SEC("classifier")
int flowspan_ingress(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &fs_jumps, 0);
	return handle(skb, 0);
}

SEC("classifier")
int flowspan_egress(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &fs_jumps, 1);
	return handle(skb, 1);
}

/* What a capture filter keeps goes on here (loaded only with a filter). */
SEC("classifier")
int flowspan_ingress_kept(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

SEC("classifier")
int flowspan_egress_kept(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

char _license[] SEC("license") = "Apache-2.0";
