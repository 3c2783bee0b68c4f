/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What every part of the datapath shares: the hook a core is built for, the parser's view of a
 * packet, the egress L2 plan, the on-wire headers linux/ has no struct for, and the constants
 * that size them.
 */
#ifndef COMMON_H
#define COMMON_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "flow_abi.h"

#define AF_INET 2
#define AF_INET6 10

/* ETH_P_8021Q, ETH_P_8021AD, ETH_P_PPP_SES, ETH_P_EDSA come from linux/if_ether.h. */
#ifndef ETH_P_REALTEK
#define ETH_P_REALTEK 0x8899 /* uapi since 5.16 */
#endif

#define VLAN_HLEN 4
#define VLAN_VID_MAX 4094 /* 4095 is reserved (802.1Q 9.6) */
#define PPPOE_SES_HLEN 8  /* PPPoE header (6) + PPP protocol (2) */
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057

/*
 * The longest L2 header on either side: 8 DSA bytes, two VLAN tags, PPPoE. Offsets into it are
 * masked with L2_OFF_MASK so that the verifier knows their bound.
 */
#define L2_MAX_HLEN (ETH_HLEN + 8 + 2 * VLAN_HLEN + PPPOE_SES_HLEN)
#define L2_OFF_MASK 0x3f

/* struct pkt.tcp_flags */
#define PKT_TCP_FIN_RST (1U << 0)
#define PKT_TCP_SYN (1U << 1)
#define PKT_TCP_ACK (1U << 2)

enum hook { HOOK_XDP, HOOK_TC };

enum verdict { VERDICT_PASS, VERDICT_DROP };

/* What the parser learnt about a packet. */
struct pkt {
	struct flow_key key;
	__u32 frame_len; /* bytes in the frame, Ethernet header included */
	__u32 l3_len;    /* IPv4 tot_len or 40 + IPv6 payload_len */
	__u16 l3_off;    /* offset of the IP header: the L2 header's length in the frame */
	__u16 l4_off;    /* offset of the TCP/UDP header in the frame */
	__u16 pppoe_len; /* the PPPoE length field, if there is a PPPoE header */
	__u16 hdr_len;   /* L3 + L4 header bytes: what each GSO segment repeats */
	__u16 gso_size;  /* TC: skb->gso_size; XDP: 0 */
	__u8 ttl;        /* IPv4 TTL or IPv6 hop limit */
	__u8 tcp_flags;  /* PKT_TCP_* */
};

struct hdr_cursor {
	void *pos;
};

/* A VLAN tag after the TPID: the TPID itself is the ethertype field before it. */
struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* PPPoE session header (RFC 2516 section 4) and the PPP protocol field after it. */
struct pppoe_ses_hdr {
	__u8 ver_type; /* version 1, type 1 */
	__u8 code;     /* 0 in the session stage */
	__be16 sid;
	__be16 length; /* PPP protocol field + payload */
	__be16 ppp_proto;
};

/* The egress L2 header the action asks for, worked out before the packet is touched. */
struct l2_plan {
	__u8 dsa_tag[8];  /* the tag's bytes, as written */
	__u8 dsa_len;     /* bytes of dsa_tag written after the source MAC (0: none) */
	__u8 dsa_grow;    /* bytes that adds: less when the tag takes the place of a VLAN TPID */
	__u8 dsa_prepend; /* bytes of dsa_tag written before the destination MAC (0: none) */
	__u8 nr_vlans;
	__u16 hlen;       /* the whole egress L2 header */
	__u16 min_frame;  /* pad shorter frames with zeros to this length (0: no minimum) */
};

/* ---- Hook accessors: each program keeps only its own branch. ---- */

static __always_inline void *ctx_data(void *ctx, const enum hook hook)
{
	if (hook == HOOK_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data;
	return (void *)(long)((struct xdp_md *)ctx)->data;
}

static __always_inline void *ctx_data_end(void *ctx, const enum hook hook)
{
	if (hook == HOOK_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data_end;
	return (void *)(long)((struct xdp_md *)ctx)->data_end;
}

static __always_inline int verdict_code(enum verdict v, const enum hook hook)
{
	if (hook == HOOK_TC)
		return v == VERDICT_DROP ? TC_ACT_SHOT : TC_ACT_OK;
	return v == VERDICT_DROP ? XDP_DROP : XDP_PASS;
}

#endif /* COMMON_H */
