/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The L3 / L4 rewrite, in place: trim to the IP packet, then NAT, TTL / hop-limit decrement and
 * (XDP) the checksum patches.
 */
#ifndef REWRITE_H
#define REWRITE_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "csum.h"
#include "flow_abi.h"

/* ---- Rewriters: one per header. ---- */

/*
 * ip_rcv trims Ethernet padding (and any other trailing bytes) to tot_len before forwarding,
 * so the forwarded frame ends with the L3 packet too.
 */
static __always_inline int trim_frame(void *ctx, const enum hook hook, __u32 frame_len,
				      __u32 want)
{
	if (frame_len == want)
		return 0;
	if (hook == HOOK_TC)
		return bpf_skb_change_tail(ctx, want, 0);
	return bpf_xdp_adjust_tail(ctx, (int)want - (int)frame_len);
}

/* patch_csum: XDP updates the header checksum itself (TC has done it with a helper). */
static __always_inline void rewrite_ipv4(struct iphdr *iph, const struct flow_action *a,
					 bool patch_csum)
{
	iph->saddr = a->saddr[0];
	iph->daddr = a->daddr[0];
	iph->ttl--;
	/* The delta already covers the addresses and the TTL decrement. */
	if (patch_csum)
		iph->check = csum_update(iph->check, bpf_htons(a->l3_csum_delta));
}

static __always_inline void rewrite_ipv6(struct ipv6hdr *ip6h, const struct flow_action *a)
{
	__builtin_memcpy(&ip6h->saddr, a->saddr, sizeof(ip6h->saddr));
	__builtin_memcpy(&ip6h->daddr, a->daddr, sizeof(ip6h->daddr));
	ip6h->hop_limit--;
}

/*
 * Writes the new L3 and L4 headers into a frame parsed before, in place (pointers are re-derived:
 * the trim and the TC checksum helpers invalidate them). -1 if the frame is not what was parsed.
 */
static __always_inline int rewrite_packet(void *data, void *data_end, const struct pkt *p,
					  const struct flow_action *a, bool patch_csums)
{
	void *l3 = data + (p->l3_off & L2_OFF_MASK);
	void *l4;

	if (p->key.family == AF_INET) {
		struct iphdr *iph = l3;

		if ((void *)(iph + 1) > data_end)
			return -1;
		rewrite_ipv4(iph, a, patch_csums);
		l4 = iph + 1;
	} else {
		struct ipv6hdr *ip6h = l3;

		if ((void *)(ip6h + 1) > data_end)
			return -1;
		rewrite_ipv6(ip6h, a);
		l4 = ip6h + 1;
	}

	/* TCP and UDP both start with the source and destination ports. */
	if (p->key.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		th->source = a->sport;
		th->dest = a->dport;
		if (patch_csums)
			patch_l4_csum(&th->check, a, false);
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		uh->source = a->sport;
		uh->dest = a->dport;
		if (patch_csums)
			patch_l4_csum(&uh->check, a, true);
	}
	return 0;
}

#endif /* REWRITE_H */
