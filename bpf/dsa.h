/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * DSA tags: the receive formats of the conduit's tagger (params.dsa_tagger), parsed into the flow
 * key, and the transmit formats planned for the egress conduit. Modelled on the kernel's
 * net/dsa/tag_*.c.
 */
#ifndef DSA_H
#define DSA_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "flow_abi.h"
#include "maps.h"

/* Broadcom switches drop frames shorter than 64 bytes (plus FCS) once the tag is stripped. */
#define BRCM_MIN_FRAME 64

/* ---- Receive. ---- */

/*
 * DSA receive formats. Each returns the source port, or -1 for a tag the kernel's tagger would
 * not deliver to a user port as an ordinary frame (then the stack decides). The tag bytes are
 * passed in; the callers check their bounds.
 */

/* tag_mtk.c: the port is in the low 3 bits of the first 16-bit word. */
static __always_inline int parse_dsa_mtk(const __u8 *tag)
{
	return tag[1] & 0x7;
}

/*
 * tag_qca.c: version 2 in bits 15-14; type in bits 10-6 must be 0 (normal frame: 1 and 2 are
 * the switch's MIB and register replies); port in bits 2-0.
 */
static __always_inline int parse_dsa_qca(const __u8 *tag)
{
	__u16 hdr = ((__u16)tag[0] << 8) | tag[1];

	if ((hdr >> 14) != 2 || ((hdr >> 6) & 0x1f) != 0)
		return -1;
	return hdr & 0x7;
}

/* tag_brcm.c (both placements): egress opcode 0, no reserved reason code; port in byte 3. */
static __always_inline int parse_dsa_brcm(const __u8 *tag)
{
	if ((tag[0] >> 5) != 0 || (tag[2] & 0xc0))
		return -1;
	return tag[3] & 0x1f;
}

/* tag_gswip.c: the source port is in bits 6-4 of the 8th byte. */
static __always_inline int parse_dsa_gswip(const __u8 *tag)
{
	return (tag[7] >> 4) & 0x7;
}

/*
 * tag_dsa.c: only FORWARD frames (command 3) are ordinary traffic; TO_CPU frames are traps or
 * mirrors of frames the switch forwarded itself. A trunk source names a LAG, not a port; the
 * "tagged" bit means the tag stands for an 802.1Q tag (not handled: the stack decides); a
 * source device other than 0 is another chip of a cascade.
 */
static __always_inline int parse_dsa_marvell(const __u8 *tag)
{
	if ((tag[0] >> 6) != 3 || (tag[0] & 0x20) || (tag[0] & 0x1f) || (tag[1] & 0x04))
		return -1;
	return tag[1] >> 3;
}

/* tag_rtl8_4.c: ethertype 0x8899, protocol 4; the port is in the low 4 bits of the last word. */
static __always_inline int parse_dsa_rtl8_4(const __u8 *tag)
{
	if (tag[0] != (ETH_P_REALTEK >> 8) || tag[1] != (ETH_P_REALTEK & 0xff) || tag[2] != 0x04)
		return -1;
	return tag[7] & 0xf;
}

/* Bytes the configured tagger puts before the destination MAC, on receive. */
static __always_inline __u32 dsa_rx_prepend_len(void)
{
	if (params.dsa_tagger == DSA_TAG_BRCM_PREPEND)
		return 4;
	if (params.dsa_tagger == DSA_TAG_GSWIP)
		return 8;
	return 0;
}

/* Bytes the configured tagger puts after the source MAC, on receive. */
static __always_inline __u32 dsa_rx_etype_len(void)
{
	switch (params.dsa_tagger) {
	case DSA_TAG_QCA:
		return 2;
	case DSA_TAG_MTK:
	case DSA_TAG_BRCM:
	case DSA_TAG_DSA:
		return 4;
	case DSA_TAG_EDSA:
	case DSA_TAG_RTL8_4:
		return 8;
	}
	return 0;
}

/*
 * The tag of the conduit's tagger (params.dsa_tagger): before the Ethernet header (prepend
 * taggers, at the cursor) or after the source MAC (the others). Fills key.dsa_port and moves the
 * cursor to the Ethernet header (prepend) or leaves it there (the tag after the MACs is parsed
 * by parse_dsa_etype). Ports without a user device (params.dsa_ports) go to the stack.
 */
static __always_inline int dsa_port_valid(int port, struct pkt *p)
{
	if (port < 0 || port > 31 || !(params.dsa_ports & (1U << port)))
		return -1;
	p->key.dsa_port = port + 1;
	return 0;
}

static __always_inline int parse_dsa_prepend(struct hdr_cursor *nh, void *data_end, struct pkt *p)
{
	__u8 *tag = nh->pos;
	int port;

	if (params.dsa_tagger == DSA_TAG_BRCM_PREPEND) {
		if ((void *)(tag + 4) > data_end)
			return -1;
		port = parse_dsa_brcm(tag);
		nh->pos = tag + 4;
	} else {
		if ((void *)(tag + 8) > data_end)
			return -1;
		port = parse_dsa_gswip(tag);
		nh->pos = tag + 8;
	}
	return dsa_port_valid(port, p);
}

/*
 * A tag after the source MAC: parse_ethhdr has taken its first two bytes for the ethertype.
 * Returns the real ethertype after the tag, or -1.
 */
static __always_inline int parse_dsa_etype(struct hdr_cursor *nh, void *data_end,
					   struct ethhdr *eth, struct pkt *p)
{
	__u8 *tag = (__u8 *)&eth->h_proto;
	__u32 len = dsa_rx_etype_len();
	__be16 *proto;
	int port;

	switch (params.dsa_tagger) {
	case DSA_TAG_MTK:
		if ((void *)(tag + 4 + 2) > data_end)
			return -1;
		port = parse_dsa_mtk(tag);
		break;
	case DSA_TAG_QCA:
		if ((void *)(tag + 2 + 2) > data_end)
			return -1;
		port = parse_dsa_qca(tag);
		break;
	case DSA_TAG_BRCM:
		if ((void *)(tag + 4 + 2) > data_end)
			return -1;
		port = parse_dsa_brcm(tag);
		break;
	case DSA_TAG_DSA:
		if ((void *)(tag + 4 + 2) > data_end)
			return -1;
		port = parse_dsa_marvell(tag);
		break;
	case DSA_TAG_EDSA:
		/* EDSA: ethertype 0xdada and two reserved bytes, then a DSA tag. */
		if ((void *)(tag + 8 + 2) > data_end)
			return -1;
		if (tag[0] != (ETH_P_EDSA >> 8) || tag[1] != (ETH_P_EDSA & 0xff))
			return -1;
		port = parse_dsa_marvell(tag + 4);
		break;
	case DSA_TAG_RTL8_4:
		if ((void *)(tag + 8 + 2) > data_end)
			return -1;
		port = parse_dsa_rtl8_4(tag);
		break;
	default:
		return -1;
	}
	if (dsa_port_valid(port, p) < 0)
		return -1;
	proto = (__be16 *)(tag + len);
	if ((void *)(proto + 1) > data_end)
		return -1;
	nh->pos = proto + 1;
	return *proto;
}

/* ---- Transmit. ---- */

/*
 * The transmit formats of the kernel's taggers for a frame to one user port (standalone: the
 * egress of a routed flow is not bridged). -1 for a tagger or port the format cannot express.
 */
static __always_inline int plan_dsa(__u8 tagger, __u32 port, __u16 outer_vlan, struct l2_plan *l2)
{
	__u8 *t = l2->dsa_tag;
	__u8 *d;

	switch (tagger) {
	case DSA_TAG_NONE:
		return 0;
	case DSA_TAG_MTK:
		/* tag_mtk.c: port mask in bits 5-0 of byte 1. */
		if (port > 5)
			return -1;
		t[1] = 1 << port;
		/*
		 * With a VLAN tag the special tag takes the place of its TPID (byte 0 says which
		 * TPID: 1 = 0x8100, 2 = 0x88a8), so the switch sees both; else 4 bytes, 0 = untagged.
		 */
		if (outer_vlan) {
			t[0] = (outer_vlan & FLOW_VLAN_8021AD) ? 2 : 1;
			l2->dsa_len = 2;
			l2->dsa_grow = 0;
		} else {
			t[0] = 0;
			t[2] = t[3] = 0;
			l2->dsa_len = l2->dsa_grow = 4;
		}
		return 0;
	case DSA_TAG_QCA:
		/* tag_qca.c: version 2, "from CPU", destination port bitmap in bits 6-0. */
		if (port > 6)
			return -1;
		t[0] = 2 << 6;
		t[1] = 0x80 | (1 << port);
		l2->dsa_len = l2->dsa_grow = 2;
		return 0;
	case DSA_TAG_BRCM:
	case DSA_TAG_BRCM_PREPEND:
		/* tag_brcm.c: ingress opcode 1, traffic class 0, destination map (port 8 in byte 2). */
		if (port > 8)
			return -1;
		t[0] = 1 << 5;
		t[1] = 0;
		t[2] = port == 8 ? 1 : 0;
		t[3] = (1 << port) & 0xff;
		if (tagger == DSA_TAG_BRCM)
			l2->dsa_len = l2->dsa_grow = 4;
		else
			l2->dsa_prepend = 4;
		/* The tagger pads to 64 bytes before it adds the tag; we leave short ones to it. */
		l2->min_frame = BRCM_MIN_FRAME + 4;
		return 0;
	case DSA_TAG_GSWIP:
		/* tag_gswip.c: source CPU, port map enabled and selected, map in bits 6-1, DPID_EN. */
		if (port > 5)
			return -1;
		t[0] = 2;
		t[1] = 0;
		t[2] = 0xc0;
		t[3] = (1 << (port + 1)) | 1;
		l2->dsa_prepend = 4;
		return 0;
	case DSA_TAG_DSA:
	case DSA_TAG_EDSA:
		/* tag_dsa.c: FROM_CPU (command 1), device 0, port in bits 7-3 of byte 1. */
		if (port > 31)
			return -1;
		d = t;
		if (tagger == DSA_TAG_EDSA) {
			t[0] = ETH_P_EDSA >> 8;
			t[1] = ETH_P_EDSA & 0xff;
			t[2] = t[3] = 0;
			d = t + 4;
		}
		d[0] = 1 << 6;
		d[1] = port << 3;
		if (outer_vlan && !(outer_vlan & FLOW_VLAN_8021AD)) {
			/*
			 * An 802.1Q-tagged frame: the tag becomes a "tagged" DSA tag carrying the
			 * VID (PCP and CFI 0), in the place of the 802.1Q tag.
			 */
			d[0] |= 0x20;
			d[2] = (outer_vlan >> 8) & 0x0f;
			d[3] = outer_vlan & 0xff;
			l2->dsa_len = 4;
			l2->dsa_grow = 0;
		} else {
			/* Untagged, standalone port: VID 0. */
			d[2] = d[3] = 0;
			l2->dsa_len = l2->dsa_grow = 4;
		}
		if (tagger == DSA_TAG_EDSA) {
			l2->dsa_len += 4;
			l2->dsa_grow += 4;
		}
		return 0;
	case DSA_TAG_RTL8_4:
		/* tag_rtl8_4.c: ethertype 0x8899, protocol 4, LEARN_DIS, forwarding port mask. */
		if (port > 10)
			return -1;
		t[0] = ETH_P_REALTEK >> 8;
		t[1] = ETH_P_REALTEK & 0xff;
		t[2] = 0x04;
		t[3] = 0;
		t[4] = 0;
		t[5] = 0x20;
		t[6] = (1 << port) >> 8;
		t[7] = (1 << port) & 0xff;
		l2->dsa_len = l2->dsa_grow = 8;
		return 0;
	}
	return -1;
}

#endif /* DSA_H */
