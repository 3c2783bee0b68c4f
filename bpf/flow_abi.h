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

#define FLOW_ABI_VERSION 4

/* A flow is one direction of a conntrack connection as it arrives on the lowest device. */
struct flow_key {
	__u32 ifindex;       /* lowest ingress device */
	__u8 family;         /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;          /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u16 dsa_port;      /* DSA source port + 1 (tag of params.dsa_tagger); 0 = no DSA tag */
	__u16 vlan[2];       /* outer, inner tag: VID | FLOW_VLAN_8021AD; 0 = none */
	__u16 pppoe_sid;     /* PPPoE session id (network order); 0 = none */
	__be16 sport;
	__be16 dport;
	__u16 pad;
	__be32 saddr[4];
	__be32 daddr[4];
};

/*
 * flow_key.vlan[] and flow_action.egress_vlan[]: the VLAN id (1..4094) in the low 12 bits, and
 * FLOW_VLAN_8021AD when the tag's TPID is 0x88a8 (802.1ad S-tag) rather than 0x8100 (802.1Q).
 * Priority bits are not part of the key, and pushed tags carry PCP 0 / DEI 0 (the default
 * egress priority map of a Linux VLAN device). On TC ingress a tag the driver stripped into
 * skb metadata counts as the outer tag, as it stood in front of the in-frame ones.
 */
#define FLOW_VLAN_VID_MASK 0x0fff
#define FLOW_VLAN_8021AD   0x8000

/*
 * DSA taggers (offload_params.dsa_tagger, flow_action.egress_dsa_tagger), as the kernel's
 * net/dsa/tag_*.c define their frames. DSA_TAG_NONE: the device is not a DSA conduit.
 */
#define DSA_TAG_NONE         0
#define DSA_TAG_MTK          1 /* MediaTek MT753x: 4 bytes after the source MAC */
#define DSA_TAG_QCA          2 /* Qualcomm QCA8K: 2 bytes after the source MAC */
#define DSA_TAG_BRCM         3 /* Broadcom: 4 bytes after the source MAC */
#define DSA_TAG_BRCM_PREPEND 4 /* Broadcom: 4 bytes before the destination MAC */
#define DSA_TAG_GSWIP        5 /* Lantiq GSWIP: 8 bytes (rx) / 4 bytes (tx) before the frame */
#define DSA_TAG_DSA          6 /* Marvell DSA: 4 bytes after the source MAC */
#define DSA_TAG_EDSA         7 /* Marvell EDSA: 8 bytes (ethertype 0xdada) after the source MAC */
#define DSA_TAG_RTL8_4       8 /* Realtek RTL8365MB: 8 bytes (ethertype 0x8899) after the source MAC */

/* flow_action.flags */
#define FLOW_ACT_DROP    (1U << 0) /* drop every packet of this flow (not forwarded) */
#define FLOW_ACT_TC_ONLY (1U << 1) /* XDP passes the flow's packets, the TC program forwards them */
/*
 * With FLOW_ACT_DROP: a TCP packet is dropped only when it would open a connection (SYN without
 * ACK, FIN or RST); the others go to the stack. The dropper learns drops from such packets only,
 * and a SYN-ACK or an ACK with the same tuple may belong to a connection opened from the other side.
 */
#define FLOW_ACT_DROP_SYN (1U << 2)

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
	/*
	 * The largest L3 packet to send (the egress L3 device's MTU, less what the lowest device
	 * cannot take): larger packets go to the stack. It counts the frame as the TC program builds
	 * it, which carries a QinQ outer tag (without a DSA tag) as skb metadata; XDP writes that tag
	 * into the frame and takes packets up to mtu - 4 only.
	 */
	__u16 mtu;
	__u8 dmac[6];            /* next hop */
	__u8 smac[6];            /* egress device */
	__be32 saddr[4];         /* addresses and ports after NAT (unchanged ones copied) */
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u16 l3_csum_delta;     /* IPv4 header: addresses and the TTL decrement */
	__u16 l4_csum_pseudo;    /* L4 checksum: pseudo-header part (addresses) */
	__u16 l4_csum_ports;     /* L4 checksum: port part */
	/*
	 * Egress encapsulation, outermost first on the wire: DSA tag, egress_vlan[0], egress_vlan[1],
	 * PPPoE session. egress_vlan[1] needs egress_vlan[0]. The PPP protocol and the PPPoE length
	 * follow from the packet.
	 */
	__u16 egress_vlan[2];    /* outer, inner tag to push: VID | FLOW_VLAN_8021AD; 0 = none */
	__u16 egress_pppoe_sid;  /* PPPoE session id to push (network order); 0 = none */
	__u8 egress_dsa_tagger;  /* DSA_TAG_* of the egress conduit; DSA_TAG_NONE = no tag */
	__u8 egress_dsa_port;    /* switch port the tag sends the frame to */
	/*
	 * Ingress checks against the frame's Ethernet header (behind any prepended DSA tag): a frame
	 * that fails one is passed to the stack untouched, which drops it or bridges it.
	 * ingress_dmac: the MAC of the L3 device that receives the flow, so that a unicast frame for
	 * another host (PACKET_OTHERHOST) is not forwarded. ingress_smac: the peer's MAC when the
	 * flow arrives over PPPoE (pppoe_rcv matches the session by id, peer MAC and device). All
	 * zero: no check.
	 */
	__u8 ingress_dmac[6];
	__u8 ingress_smac[6];
	__u16 pad;
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
	__u64 last_seen_ns;      /* CLOCK_MONOTONIC of the last packet, FLOW_CLOCK_LAG_NS early at most */
	__u32 flags;             /* FLOW_STATS_* */
	__u32 pad;
};

/*
 * The datapath reads CLOCK_MONOTONIC once per jiffy and CPU and uses that value until the next
 * jiffy (reading the clocksource costs more than the rest of a forwarded packet's bookkeeping).
 * Its time lags by less than a tick (4 ms at HZ=250; 42 ms at HZ=24, the lowest any architecture
 * offers) plus however late the tick is: FLOW_CLOCK_LAG_NS bounds both. The heartbeat check
 * reads the clock itself when it is that close to the timeout, so only flow_stats.last_seen_ns
 * shows the lag.
 */
#define FLOW_CLOCK_LAG_NS 100000000ULL

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
	/*
	 * The device the program is attached to is a DSA conduit with this tagger (DSA_TAG_*): its
	 * frames are parsed with the tagger's receive format. One program instance per tagger.
	 */
	__u32 dsa_ports;            /* bit n: switch port n has a user device; others: to the stack */
	__u8 dsa_tagger;
	__u8 pad[3];
};

/*
 * Per-device counters for the admin's status view: a per-CPU array of IFACE_SLOTS slots (an
 * array lookup is a few inlined instructions, a hash lookup a function call and a key hash, on
 * every packet). A device's slot is the first of ifindex % IFACE_SLOTS, the next one, ...
 * (IFACE_PROBES slots, wrapping around) whose ifindex names it. User space places each device it
 * attaches to in a free one of its slots, writing the ifindex into every CPU's copy; the datapath
 * only adds to the slot of the ingress device and counts nothing for a device without one. Bytes
 * are frame bytes as received (Ethernet header and tags included).
 */
#define IFACE_SLOTS 256
#define IFACE_PROBES 4

struct iface_stats {
	__u32 ifindex;           /* the device counted in this slot; 0 = free */
	__u32 pad;
	__u64 fwd_packets;       /* forwarded by the fast path (redirected or sent back out) */
	__u64 fwd_bytes;
	__u64 pass_packets;      /* handed to the kernel stack */
	__u64 pass_bytes;
	__u64 drop_packets;      /* dropped (FLOW_ACT_DROP, or a failed rewrite) */
	__u64 drop_bytes;
};

#endif /* FLOW_ABI_H */
