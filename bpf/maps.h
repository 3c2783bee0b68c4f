/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The load-time parameters and the maps shared with the daemon (see flow_abi.h). Included by the
 * one program object only: these are definitions, not declarations.
 */
#ifndef MAPS_H
#define MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "flow_abi.h"

/* Written by user space before loading (see flow_abi.h); the only variable in .rodata. */
volatile const struct offload_params params = {
	.heartbeat_timeout_ns = 5000000000ULL,
	.notify_interval_ns = 1000000000ULL,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by user space before loading */
	__type(key, struct flow_key);
	__type(value, struct flow_action);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct flow_stats);
} flow_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} flow_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u64); /* bpf_ktime_get_ns() of the last FLOW_EV_NEW for this key */
} flow_notified SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_config);
} flow_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IFACE_SLOTS);
	__type(key, __u32); /* slot, see struct iface_stats */
	__type(value, struct iface_stats);
} iface_stats SEC(".maps");

/* The datapath's own clock (see FLOW_CLOCK_LAG_NS and now_ns); user space never sees it. */
struct clock_cache {
	__u64 jiffies; /* bpf_jiffies64() when ns was read */
	__u64 ns;      /* bpf_ktime_get_ns() */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock_cache);
} clock_cache SEC(".maps");

#endif /* MAPS_H */
