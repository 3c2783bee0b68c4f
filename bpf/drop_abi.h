/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The dropper's ABI (bpf/dropper.bpf.c <-> src/dropper-abi.ts, checked against BTF by
 * test/dropper-abi.test.ts). The dropper watches the kernel drop packets (skb:kfree_skb) and
 * reports the drops the daemon may turn into FLOW_ACT_DROP entries of the flow map. Same rules as
 * flow_abi.h: explicit padding, addresses and ports in network order, the rest in host order.
 */
#ifndef DROP_ABI_H
#define DROP_ABI_H

#include <linux/types.h>

/* drop_event.kind */
#define DROP_EV_NETFILTER 1 /* a netfilter verdict (SKB_DROP_REASON_NETFILTER_DROP) */
#define DROP_EV_ROUTE     2 /* dropped after the route lookup without a reason: a blackhole route? */

/* drop_event.ct_info when the packet carried no conntrack reference (invalid, or raw-table drop). */
#define DROP_CT_NONE 0xff

struct drop_event {
	__u32 kind;        /* DROP_EV_* */
	__u32 iif;         /* skb->skb_iif: the L3 device the packet came in on */
	__u32 mark;        /* skb->mark when it was dropped */
	__u32 ct_status;   /* status bits (IPS_*) of the packet's conntrack entry; 0 without one */
	__u8 ct_info;      /* enum ip_conntrack_info (skb->_nfct & 7), or DROP_CT_NONE */
	__u8 tcp_flags;    /* byte 13 of the TCP header (FIN 0x01 SYN 0x02 RST 0x04 ACK 0x10); 0 for UDP */
	__u8 family;       /* AF_INET or AF_INET6 */
	__u8 proto;        /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 smac[6];      /* Ethernet source address as received; zero without a MAC header */
	__be16 sport;
	__be16 dport;
	__u16 pad;
	__be32 saddr[4];   /* as the packet stood when dropped (IPv4 in the first word) */
	__be32 daddr[4];
};

/* Load-time parameters: the only variable of the dropper's .rodata. */
struct drop_params {
	__u64 netns_ino;          /* only drops in this network namespace (inode of /proc/self/ns/net) */
	__u64 notify_interval_ns; /* at most one event per packet key and kind per interval */
	__u8 netfilter;           /* report netfilter verdicts (drop learning is on) */
	__u8 pad[3];
	/*
	 * At most this many events per CPU per second, whatever the keys: a flood from changing
	 * ports or addresses must not turn into as many daemon wake-ups (and drop entries).
	 */
	__u32 events_per_cpu_s;
};

#endif /* DROP_ABI_H */
