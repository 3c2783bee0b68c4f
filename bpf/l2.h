/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The egress L2 header: planned from the action, then the ingress header stripped to plain
 * Ethernet and the egress one pushed, one helper per header, for XDP and TC.
 */
#ifndef L2_H
#define L2_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "dsa.h"
#include "flow_abi.h"

/* ---- The egress L2 header: planned first, then stripped and pushed one header at a time. ---- */

static __always_inline bool vlan_tag_valid(__u16 tag)
{
	__u16 vid = tag & FLOW_VLAN_VID_MASK;

	return vid != 0 && vid <= VLAN_VID_MAX && !(tag & ~(FLOW_VLAN_VID_MASK | FLOW_VLAN_8021AD));
}

/*
 * Copies the action's egress encapsulation into *l2 (the map value may change under us: what
 * is checked must be what is pushed). -1 for a combination the datapath does not build.
 */
static __always_inline int plan_l2(const struct flow_action *a, struct l2_plan *l2,
				   __u16 vlan[2], __be16 *pppoe_sid)
{
	vlan[0] = a->egress_vlan[0];
	vlan[1] = a->egress_vlan[1];
	*pppoe_sid = a->egress_pppoe_sid;

	if (vlan[0] && !vlan_tag_valid(vlan[0]))
		return -1;
	if (vlan[1] && (!vlan[0] || !vlan_tag_valid(vlan[1])))
		return -1;
	if (*pppoe_sid == 0xffff)
		return -1;
	l2->nr_vlans = (vlan[0] ? 1 : 0) + (vlan[1] ? 1 : 0);
	if (plan_dsa(a->egress_dsa_tagger, a->egress_dsa_port, vlan[0], l2) < 0)
		return -1;
	l2->hlen = ETH_HLEN + l2->nr_vlans * VLAN_HLEN + (*pppoe_sid ? PPPOE_SES_HLEN : 0) +
		   l2->dsa_grow + l2->dsa_prepend;
	return 0;
}

/*
 * TC, QinQ without a DSA tag: the outer tag goes into skb metadata and only the inner one into
 * the frame, as the kernel's VLAN devices hand a QinQ frame to the driver (which, or
 * validate_xmit_vlan, inserts the outer tag). A device takes MTU + one in-frame tag, so a
 * full-size packet fits this way and not with both tags in the frame. XDP has no metadata, and a
 * DSA tag must stand before every VLAN tag: both tags in the frame then.
 */
static __always_inline bool outer_vlan_in_meta(const enum hook hook, const struct l2_plan *l2)
{
	return hook == HOOK_TC && l2->nr_vlans == 2 && !l2->dsa_len && !l2->dsa_prepend;
}

/*
 * The largest L3 packet this hook may send: flow_action.mtu counts the frame as the TC program
 * builds it; XDP writes a QinQ outer tag into the frame as well, VLAN_HLEN more.
 */
static __always_inline __u32 egress_mtu(__u16 mtu, const enum hook hook, const struct l2_plan *l2)
{
	if (hook == HOOK_XDP && l2->nr_vlans == 2 && !l2->dsa_len && !l2->dsa_prepend)
		return mtu > VLAN_HLEN ? mtu - VLAN_HLEN : 0;
	return mtu;
}

static __always_inline __be16 l3_ethertype(const struct pkt *p)
{
	return bpf_htons(p->key.family == AF_INET ? ETH_P_IP : ETH_P_IPV6);
}

/*
 * XDP: leaves [12 bytes][IP ethertype][IP packet]: writes the ethertype right in front of the
 * IP header and drops everything before it but 12 bytes (the MACs are rewritten anyway).
 */
static __always_inline int xdp_strip_l2(struct xdp_md *ctx, const struct pkt *p)
{
	/* Masked so that the verifier sees a bounded, non-negative offset. */
	__u32 type_off = (p->l3_off - sizeof(__be16)) & L2_OFF_MASK;
	void *data = ctx_data(ctx, HOOK_XDP);
	void *data_end = ctx_data_end(ctx, HOOK_XDP);
	__be16 *type = data + type_off;

	if (p->l3_off == ETH_HLEN)
		return 0;
	if ((void *)(type + 1) > data_end)
		return -1;
	*type = l3_ethertype(p);
	return bpf_xdp_adjust_head(ctx, (int)p->l3_off - ETH_HLEN);
}

/*
 * TC: the same, plus any tag the driver stripped into metadata. No helper shrinks an skb's L2
 * header whatever its protocol: bpf_skb_adjust_room wants skb->protocol IPv4 or IPv6, and a
 * PPPoE, DSA or in-frame VLAN frame has another. bpf_skb_vlan_pop does take 4 bytes after the
 * MACs out of any frame whose skb->protocol is a VLAN TPID (and takes the new protocol from the
 * bytes after them), and bpf_skb_vlan_push makes skb->protocol a VLAN TPID when it moves the
 * metadata tag into the frame. So:
 *   1. the bytes between the MACs and the IP header are overwritten with dummy 802.1Q tags and
 *      the IP ethertype (first growing the head by 2 if their count is not 2 modulo 4);
 *   2. a metadata tag is made sure of, and pushed into the frame: skb->protocol = 0x8100;
 *   3. pop until no tag is left in metadata: each pop drops the metadata tag and moves the
 *      frame's next tag into metadata, until skb->protocol is the IP ethertype.
 * The helpers keep skb->csum (CHECKSUM_COMPLETE), the network header and mac_len right; the
 * overwrite in step 1 fixes skb->csum itself for the bytes it covers (those after ETH_HLEN).
 */
static __always_inline int tc_strip_l2(struct __sk_buff *skb, const struct pkt *p)
{
	__u32 off = p->l3_off & L2_OFF_MASK;
	__u32 want_len = skb->len - (off - ETH_HLEN);
	__u8 buf[L2_MAX_HLEN - 2 * ETH_ALEN + 2] = {};
	__be16 type = l3_ethertype(p);
	bool grown = false;
	void *data, *data_end;
	__u32 ntags, n;

	if (off == ETH_HLEN) {
		/* Nothing to take out of the frame: at most a tag in metadata. */
		if (skb->vlan_present && bpf_skb_vlan_pop(skb))
			return -1;
		return skb->vlan_present ? -1 : 0;
	}
	if ((off - ETH_HLEN) & 2) {
		if (bpf_skb_change_head(skb, 2, 0))
			return -1;
		off += 2;
		grown = true;
	}
	if (off > L2_MAX_HLEN + 2)
		return -1;
	ntags = (off - ETH_HLEN) / VLAN_HLEN;

	/* buf holds bytes 12 .. off-1: ntags dummy 802.1Q tags (VID 0), then the ethertype. */
#pragma unroll
	for (int i = 0; i < (int)sizeof(buf) / VLAN_HLEN; i++) {
		if (i < (int)ntags) {
			buf[i * VLAN_HLEN] = ETH_P_8021Q >> 8;
		} else if (i == (int)ntags) {
			__builtin_memcpy(&buf[i * VLAN_HLEN], &type, sizeof(type));
			break;
		}
	}

	/*
	 * skb->csum covers the frame from mac_len (14) on. After growing the head it starts 2
	 * bytes further, where only the ethertype is rewritten, with its own value: nothing to do.
	 */
	if (!grown) {
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		n = (off - ETH_HLEN) & 0x1f;
		if (data + L2_MAX_HLEN > data_end || n > L2_MAX_HLEN - ETH_HLEN)
			return -1;
		bpf_csum_update(skb, bpf_csum_diff(data + ETH_HLEN, n, (void *)&buf[2], n, 0));
	}
	n = (off - 2 * ETH_ALEN) & 0x1f;
	if (n < 2)
		return -1;
	/*
	 * Keep the two bounds apart: clang merges them into one check on a copy of n, whose bound
	 * the 6.1 verifier does not carry back to n ("invalid zero-sized read" in the helper).
	 */
	asm volatile("" : "+r"(n));
	if (n > sizeof(buf) || bpf_skb_store_bytes(skb, 2 * ETH_ALEN, buf, n, 0))
		return -1;

	if (!skb->vlan_present && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 0))
		return -1;
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 0))
		return -1;
	/* ntags + 1 tags in the frame, each popped into metadata in turn, then the last dropped. */
#pragma unroll
	for (int i = 0; i < (int)sizeof(buf) / VLAN_HLEN + 1; i++) {
		if (!skb->vlan_present)
			break;
		if (bpf_skb_vlan_pop(skb))
			return -1;
	}
	if (skb->vlan_present || skb->protocol != type || skb->len != want_len)
		return -1;
	return 0;
}

static __always_inline int grow_head(void *ctx, const enum hook hook, __u32 len)
{
	if (hook == HOOK_TC)
		return bpf_skb_change_head(ctx, len, 0);
	return bpf_xdp_adjust_head(ctx, -(int)len);
}

/*
 * Each push grows the head and fills the bytes after the MACs: what followed the MACs moves
 * along with the rest of the frame and ends up right behind the new header, as it should.
 */
static __always_inline int push_pppoe(void *ctx, const enum hook hook, __be16 sid,
				      const struct pkt *p)
{
	struct pppoe_ses_hdr *ph;
	void *data, *data_end;
	__be16 *type;

	if (grow_head(ctx, hook, PPPOE_SES_HLEN))
		return -1;
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	type = data + 2 * ETH_ALEN;
	ph = (void *)(type + 1);
	if ((void *)(ph + 1) > data_end)
		return -1;
	*type = bpf_htons(ETH_P_PPP_SES);
	ph->ver_type = 0x11;
	ph->code = 0;
	ph->sid = sid;
	/* RFC 2516: the length covers the PPP protocol field and the payload. */
	ph->length = bpf_htons(p->l3_len + sizeof(ph->ppp_proto));
	/* Overwrites the IP ethertype, which moved here. */
	ph->ppp_proto = bpf_htons(p->key.family == AF_INET ? PPP_IP : PPP_IPV6);
	return 0;
}

static __always_inline int push_vlan(void *ctx, const enum hook hook, __u16 tag)
{
	void *data, *data_end;
	struct vlan_hdr *vh;
	__be16 *tpid;

	if (grow_head(ctx, hook, VLAN_HLEN))
		return -1;
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	tpid = data + 2 * ETH_ALEN;
	vh = (void *)(tpid + 1);
	/* The tag's encapsulated protocol is the old ethertype, already in place. */
	if ((void *)(vh + 1) > data_end)
		return -1;
	*tpid = bpf_htons((tag & FLOW_VLAN_8021AD) ? ETH_P_8021AD : ETH_P_8021Q);
	vh->tci = bpf_htons(tag & FLOW_VLAN_VID_MASK);
	return 0;
}

/* A tag after the source MAC; dsa_grow < dsa_len when it overwrites the outer VLAN's TPID. */
static __always_inline int push_dsa_etype(void *ctx, const enum hook hook,
					  const struct l2_plan *l2)
{
	void *data, *data_end;
	__u8 *tag;

	if (l2->dsa_grow && grow_head(ctx, hook, l2->dsa_grow))
		return -1;
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	tag = data + 2 * ETH_ALEN;
	/* At least an IP header follows, so 8 bytes are there whatever the tag's length. */
	if ((void *)(tag + sizeof(l2->dsa_tag)) > data_end)
		return -1;
	if (l2->dsa_len == 2)
		__builtin_memcpy(tag, l2->dsa_tag, 2);
	else if (l2->dsa_len == 4)
		__builtin_memcpy(tag, l2->dsa_tag, 4);
	else
		__builtin_memcpy(tag, l2->dsa_tag, 8);
	return 0;
}

/* A tag before the destination MAC (brcm-prepend, gswip): the last thing pushed. */
static __always_inline int push_dsa_prepend(void *ctx, const enum hook hook,
					    const struct l2_plan *l2)
{
	void *data, *data_end;

	if (grow_head(ctx, hook, 4))
		return -1;
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	if (data + 4 > data_end)
		return -1;
	__builtin_memcpy(data, l2->dsa_tag, 4);
	return 0;
}

static __always_inline int write_macs(void *ctx, const enum hook hook,
				      const struct flow_action *a)
{
	void *data = ctx_data(ctx, hook);
	void *data_end = ctx_data_end(ctx, hook);
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, a->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, a->smac, ETH_ALEN);
	return 0;
}

/* From [12 bytes][IP ethertype][IP packet] to the egress frame, innermost header first. */
static __always_inline int push_l2(void *ctx, const enum hook hook, const struct pkt *p,
				   const struct flow_action *a, const struct l2_plan *l2,
				   const __u16 vlan[2], __be16 pppoe_sid)
{
	if (pppoe_sid && push_pppoe(ctx, hook, pppoe_sid, p))
		return -1;
	if (vlan[1] && push_vlan(ctx, hook, vlan[1]))
		return -1;
	if (vlan[0] && outer_vlan_in_meta(hook, l2)) {
		/* No tag in metadata (tc_strip_l2 saw to it): this only sets it, the frame stays. */
		if (bpf_skb_vlan_push(ctx, bpf_htons((vlan[0] & FLOW_VLAN_8021AD) ? ETH_P_8021AD : ETH_P_8021Q),
				      vlan[0] & FLOW_VLAN_VID_MASK))
			return -1;
	} else if (vlan[0] && push_vlan(ctx, hook, vlan[0])) {
		return -1;
	}
	if (l2->dsa_len && push_dsa_etype(ctx, hook, l2))
		return -1;
	if (write_macs(ctx, hook, a))
		return -1;
	if (l2->dsa_prepend && push_dsa_prepend(ctx, hook, l2))
		return -1;
	return 0;
}

#endif /* L2_H */
