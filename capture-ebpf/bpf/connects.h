// SPDX-License-Identifier: GPL-2.0
//
// What connects.bpf.c shares with userspace (src/connects.rs mirrors it;
// a test checks the layout against the object's BTF).

#ifndef FLOWSPAN_CONNECTS_H
#define FLOWSPAN_CONNECTS_H

#include <linux/types.h>

// Connections being opened, remembered by socket (kernel memory no cgroup
// is charged for: 4096 * ~48 bytes).
#define FS_CONNECTING_MAX 4096
// Established connections kept for userspace (65536 * ~60 bytes, about
// 4 MB at most).
#define FS_CONNECTS_MAX 65536

// A connection's local end: AF_INET or AF_INET6, port (host order),
// address (4 or 16 bytes, the rest zero).
struct fs_connect_key {
	__u16 family;
	__u16 port;
	__u8 address[16];
};

// The process that opened it, and when (bpf_ktime_get_ns, CLOCK_MONOTONIC).
struct fs_connect {
	__u64 time_ns;
	__u32 pid;
	__u8 comm[16];
	__u32 pad;
};

#endif
