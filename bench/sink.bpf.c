// SPDX-License-Identifier: GPL-2.0-only
/*
 * The benchmark's sink on the server: count every frame that arrives, then drop it. Dropping at
 * XDP keeps the server's own stack out of the measurement; what it counts is what the router
 * forwarded. A per-CPU array needs no atomics; the reader sums the CPUs.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int sink(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&sink_count, &key);

	if (n)
		*n += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
