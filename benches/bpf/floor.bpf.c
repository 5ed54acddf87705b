/* What any TC flow counter costs on this machine, for `ebpf-bench --floor`
 * (issue 17): the floor under the flow programs' time per packet.
 *
 * - floor_empty: returns at once. Its time is the cost of measuring (BPF
 *   statistics read the clock around every run) or of a test run's loop.
 * - floor_lookup: a flow key like the programs' (48 bytes, both directions
 *   of an IPv4 flow alike: the lower address and its port first) is looked
 *   up in a hash map as large as the bench's flow map (262144 entries of
 *   288 bytes, the size of struct fs_flow); a missing entry is made, a
 *   found one gets its packets and bytes added. No parsing: the addresses
 *   and ports are read where an untagged IPv4 frame has them, whatever the
 *   frame is.
 * - floor_locked: the same, with what the flow programs add for exact
 *   snapshots and timestamps: a clock read per packet, and the counters
 *   written under the entry's bpf_spin_lock. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct floor_key {
	__u8 b[48];
};

struct floor_value {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 packets;
	__u64 bytes;
	__u64 last_ns;
	__u8 rest[256];
};

/* A new entry is built here (a per-CPU map cannot hold a spin lock, so
 * the value is bytes). */
struct floor_work {
	struct floor_key k;
	__u64 v[sizeof(struct floor_value) / 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct floor_key);
	__type(value, struct floor_value);
} floor_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct floor_work);
} floor_work SEC(".maps");

SEC("classifier")
int floor_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

static __always_inline int count(struct __sk_buff *skb, const int locked)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct floor_value *v, *n;
	struct floor_work *w;
	__u32 zero = 0, a, b, t;
	__u16 pa, pb, u;
	__u64 now = 0;

	w = bpf_map_lookup_elem(&floor_work, &zero);
	if (!w || data + 38 > end)
		return TC_ACT_OK;
	a = *(__u32 *)(data + 26);
	b = *(__u32 *)(data + 30);
	pa = *(__u16 *)(data + 34);
	pb = *(__u16 *)(data + 36);
	if (a > b || (a == b && pa > pb)) {
		t = a;
		a = b;
		b = t;
		u = pa;
		pa = pb;
		pb = u;
	}
	__builtin_memset(&w->k, 0, sizeof(w->k));
	*(__u32 *)&w->k.b[0] = a;
	*(__u32 *)&w->k.b[16] = b;
	*(__u16 *)&w->k.b[32] = pa;
	*(__u16 *)&w->k.b[34] = pb;
	if (locked)
		now = bpf_ktime_get_ns();
	v = bpf_map_lookup_elem(&floor_flows, &w->k);
	if (!v) {
		n = (struct floor_value *)w->v;
		__builtin_memset(n, 0, sizeof(*n));
		n->packets = 1;
		n->bytes = skb->len;
		n->last_ns = now;
		bpf_map_update_elem(&floor_flows, &w->k, n, BPF_NOEXIST);
		return TC_ACT_OK;
	}
	if (locked) {
		bpf_spin_lock(&v->lock);
		v->packets += 1;
		v->bytes += skb->len;
		if (now > v->last_ns)
			v->last_ns = now;
		bpf_spin_unlock(&v->lock);
	} else {
		v->packets += 1;
		v->bytes += skb->len;
	}
	return TC_ACT_OK;
}

SEC("classifier")
int floor_lookup(struct __sk_buff *skb)
{
	return count(skb, 0);
}

SEC("classifier")
int floor_locked(struct __sk_buff *skb)
{
	return count(skb, 1);
}

char LICENSE[] SEC("license") = "GPL";
