/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The flow map ABI shared by the BPF datapath and the daemon. This header is the single source of
 * truth: src/abi.ts mirrors it and test/abi.test.ts checks the mirror against the BTF of the
 * compiled object. Every struct has explicit padding so that both sides agree on every byte, and
 * all padding must be zero (hash keys are compared bytewise).
 *
 * Byte order: addresses and ports are in network byte order, exactly as they stand in the packet;
 * an IPv4 address occupies the first word of its 16-byte array and the other three are zero.
 * Everything else is in host byte order.
 */
#ifndef FLOW_ABI_H
#define FLOW_ABI_H

#include <linux/types.h>

#define FLOW_ABI_VERSION 1

/* A flow is one direction of a conntrack connection as it arrives on the lowest device. */
struct flow_key {
	__u32 ifindex;       /* lowest ingress device */
	__u8 family;         /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;          /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u16 dsa_port;      /* reserved for DSA: source port + 1; 0 = no DSA tag */
	__u16 vlan[2];       /* reserved for 802.1Q/802.1ad: outer, inner VLAN id; 0 = none */
	__u16 pppoe_sid;     /* reserved for PPPoE: session id (network order); 0 = none */
	__be16 sport;
	__be16 dport;
	__u16 pad;
	__be32 saddr[4];
	__be32 daddr[4];
};

/* flow_action.flags */
#define FLOW_ACT_DROP (1U << 0) /* drop every packet of this flow (not forwarded) */

/*
 * What to do with a flow's packets. Written only by user space; the datapath only reads it.
 * Checksum deltas are RFC 1624 one's-complement sums (sum of ~old + new over the changed 16-bit
 * words), folded to 16 bits, computed in user space once per flow. They are computed over the
 * words as they stand on the wire (big-endian) and stored in host byte order like every other
 * non-address field; the datapath converts them with bpf_htons() before adding them to a
 * checksum field read straight from the packet.
 */
struct flow_action {
	__u32 out_ifindex;       /* lowest egress device */
	__u32 conn_id;           /* index into flow_stats, shared by both directions */
	__u8 dir;                /* 0 = original direction of the conntrack entry, 1 = reply */
	__u8 flags;              /* FLOW_ACT_* */
	__u16 mtu;               /* MTU of the egress L3 device: larger packets go to the stack */
	__u8 dmac[6];            /* next hop */
	__u8 smac[6];            /* egress device */
	__be32 saddr[4];         /* addresses and ports after NAT (unchanged ones copied) */
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u16 l3_csum_delta;     /* IPv4 header: addresses and the TTL decrement */
	__u16 l4_csum_pseudo;    /* L4 checksum: pseudo-header part (addresses) */
	__u16 l4_csum_ports;     /* L4 checksum: port part */
	__u16 egress_vlan[2];    /* reserved for 802.1Q/802.1ad push */
	__u16 egress_pppoe_sid;  /* reserved for PPPoE push */
	__u16 pad[2];
};

struct flow_dir_stats {
	__u64 packets;
	__u64 bytes;             /* L3 bytes, as conntrack accounting counts them */
};

/* flow_stats.flags */
#define FLOW_STATS_CLOSING (1U << 0) /* FIN or RST seen: both directions go back to the stack */

/*
 * Per-connection counters, an array indexed by flow_action.conn_id. Written only by the datapath
 * while a flow refers to the slot; user space zeroes a slot before handing it to a new
 * connection and otherwise only reads it.
 */
struct flow_stats {
	struct flow_dir_stats dir[2];
	__u64 last_seen_ns;      /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last packet */
	__u32 flags;             /* FLOW_STATS_* */
	__u32 pad;
};

/* flow_event.type */
#define FLOW_EV_NEW 1     /* a packet of a flow not in the flow map (rate-limited per flow) */
#define FLOW_EV_CLOSING 2 /* FIN or RST on an offloaded flow: hand the connection back */

/* Sent from the datapath to user space through the flow_events ring buffer. */
struct flow_event {
	__u32 type;              /* FLOW_EV_* */
	__u32 conn_id;           /* FLOW_EV_CLOSING: the connection's stats slot */
	struct flow_key key;
};

/* The only entry (key 0) of the flow_config array map. Written only by user space. */
struct flow_config {
	__u64 heartbeat_ns;      /* CLOCK_MONOTONIC time of the daemon's last heartbeat */
};

/*
 * Load-time parameters of the datapath: the BPF object declares one `volatile const struct
 * offload_params` as the only variable of its .rodata section, and user space writes it before
 * loading, so the verifier sees the values as constants.
 */
struct offload_params {
	__u64 heartbeat_timeout_ns; /* pass every packet when the heartbeat is older; 0 = never */
	__u64 notify_interval_ns;   /* at most one FLOW_EV_NEW per unknown flow per interval */
};

#endif /* FLOW_ABI_H */
