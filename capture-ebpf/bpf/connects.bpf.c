// SPDX-License-Identifier: GPL-2.0
//
// Which process opened each outgoing TCP connection, for connections that
// open and close between two of userspace's /proc scans.
//
// One tracepoint, sock:inet_sock_set_state. CLOSE -> SYN_SENT runs in the
// connecting process (connect()), before the kernel has picked the source
// port: remember the process by socket. SYN_SENT -> ESTABLISHED runs in
// softirq, with the addresses and ports known: move what was remembered to
// `connects`, keyed by the connection's local address and port. Userspace
// reads `connects`; both maps are LRU hashes of fixed size, so an agent
// that does not read loses the oldest entries, never memory.
//
// The tracepoint's record layout is the one in
// /sys/kernel/tracing/events/sock/inet_sock_set_state/format (a test
// checks it).

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "connects.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

// The tracepoint's record, after its 8-byte common header.
struct inet_sock_set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

// Connecting sockets, by address, until they are established or fail.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FS_CONNECTING_MAX);
	__type(key, __u64);
	__type(value, struct fs_connect);
} connecting SEC(".maps");

// Established connections by local address and port: what userspace reads.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FS_CONNECTS_MAX);
	__type(key, struct fs_connect_key);
	__type(value, struct fs_connect);
} connects SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int connect_state(struct inet_sock_set_state_args *args)
{
	if (args->protocol != IPPROTO_TCP)
		return 0;
	__u64 sk = (__u64)args->skaddr;
	if (args->oldstate == TCP_CLOSE && args->newstate == TCP_SYN_SENT) {
		struct fs_connect c = {};
		c.pid = bpf_get_current_pid_tgid() >> 32;
		c.time_ns = bpf_ktime_get_ns();
		bpf_get_current_comm(c.comm, sizeof(c.comm));
		bpf_map_update_elem(&connecting, &sk, &c, BPF_ANY);
		return 0;
	}
	if (args->oldstate != TCP_SYN_SENT)
		return 0;
	struct fs_connect *c = bpf_map_lookup_elem(&connecting, &sk);
	if (!c)
		return 0;
	if (args->newstate == TCP_ESTABLISHED) {
		struct fs_connect_key k = {};
		k.family = args->family;
		k.port = args->sport;
		if (args->family == AF_INET)
			__builtin_memcpy(k.address, args->saddr, 4);
		else if (args->family == AF_INET6)
			__builtin_memcpy(k.address, args->saddr_v6, 16);
		else
			goto done;
		struct fs_connect v = *c;
		v.time_ns = bpf_ktime_get_ns();
		bpf_map_update_elem(&connects, &k, &v, BPF_ANY);
	}
done:
	bpf_map_delete_elem(&connecting, &sk);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
