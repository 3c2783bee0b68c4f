/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The ingress parser: Ethernet, the conduit's DSA tag, up to two VLAN tags, PPPoE, IPv4 / IPv6
 * and TCP / UDP, into struct pkt and its flow key.
 */
#ifndef PARSE_H
#define PARSE_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "csum.h"
#include "dsa.h"
#include "flow_abi.h"

#define IP_MF 0x2000     /* more fragments */
#define IP_OFFSET 0x1fff /* fragment offset, in 8-byte units */

#define TCP_MAX_HLEN 60 /* doff is 4 bits of 32-bit words */

/* ---- Parsers: one per header, bounds checked right at the access. ---- */

static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end,
					struct ethhdr **ethhdr)
{
	struct ethhdr *eth = nh->pos;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	*ethhdr = eth;
	return eth->h_proto; /* network byte order */
}

/*
 * A VLAN tag; proto is its TPID (network order). Returns the ethertype after it, or -1. VID 0
 * (a priority tag: the kernel treats the frame as untagged) and the reserved VID 4095 go to the
 * stack, so a key's VLAN field is never 0 for a present tag.
 */
static __always_inline int parse_vlan(struct hdr_cursor *nh, void *data_end, int proto,
				      __u16 *key_vlan)
{
	struct vlan_hdr *vh = nh->pos;
	__u16 vid;

	if ((void *)(vh + 1) > data_end)
		return -1;
	vid = bpf_ntohs(vh->tci) & FLOW_VLAN_VID_MASK;
	if (vid == 0 || vid > VLAN_VID_MAX)
		return -1;
	*key_vlan = vid | (proto == bpf_htons(ETH_P_8021AD) ? FLOW_VLAN_8021AD : 0);
	nh->pos = vh + 1;
	return vh->encap_proto;
}

/*
 * A PPPoE session frame; returns the ethertype of the PPP payload (IPv4 or IPv6), or -1 for
 * anything the kernel's pppoe driver and ppp_generic would not turn into an IP packet here
 * (LCP, IPCP, other versions or codes). The length field is checked against the IP packet once
 * that is parsed.
 */
static __always_inline int parse_pppoe(struct hdr_cursor *nh, void *data_end, struct pkt *p)
{
	struct pppoe_ses_hdr *ph = nh->pos;

	if ((void *)(ph + 1) > data_end)
		return -1;
	if (ph->ver_type != 0x11 || ph->code != 0)
		return -1;
	/* 0 is our "no PPPoE" in the key; RFC 2516 reserves 0xffff. */
	if (ph->sid == 0 || ph->sid == 0xffff)
		return -1;
	p->key.pppoe_sid = ph->sid;
	p->pppoe_len = bpf_ntohs(ph->length);
	nh->pos = ph + 1;
	if (ph->ppp_proto == bpf_htons(PPP_IP))
		return bpf_htons(ETH_P_IP);
	if (ph->ppp_proto == bpf_htons(PPP_IPV6))
		return bpf_htons(ETH_P_IPV6);
	return -1;
}

/* Returns the L4 protocol, or -1 for anything the fast path leaves to the stack. */
static __always_inline int parse_ipv4(struct hdr_cursor *nh, void *data_end, struct pkt *p)
{
	struct iphdr *iph = nh->pos;
	__u32 tot_len;

	if ((void *)(iph + 1) > data_end)
		return -1;
	/* Options: the forwarding path processes some (record route, timestamps, router alert). */
	if (iph->version != 4 || iph->ihl != 5)
		return -1;
	/* Fragments: only the first carries ports, and conntrack sees the reassembled packet. */
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return -1;
	if (!ipv4_csum_valid(iph))
		return -1;
	/*
	 * tot_len may be shorter than the frame (Ethernet pads to 60 bytes: the stack trims it),
	 * never longer (a truncated packet; ip_rcv drops it). 0 is a BIG TCP GSO packet.
	 */
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || tot_len > p->frame_len - p->l3_off)
		return -1;

	p->l3_len = tot_len;
	p->ttl = iph->ttl;
	p->key.family = AF_INET;
	p->key.proto = iph->protocol;
	p->key.saddr[0] = iph->saddr;
	p->key.daddr[0] = iph->daddr;
	nh->pos = iph + 1;
	return iph->protocol;
}

static __always_inline int parse_ipv6(struct hdr_cursor *nh, void *data_end, struct pkt *p)
{
	struct ipv6hdr *ip6h = nh->pos;
	__u32 payload_len;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	if (ip6h->version != 6)
		return -1;
	/*
	 * Extension headers go to the stack: hop-by-hop options must be processed by every router,
	 * a routing header changes the destination, a fragment header hides the ports.
	 */
	if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP)
		return -1;
	/* 0 is a jumbogram (RFC 2675) or a BIG TCP GSO packet; longer than the frame: truncated. */
	payload_len = bpf_ntohs(ip6h->payload_len);
	if (payload_len == 0 || sizeof(*ip6h) + payload_len > p->frame_len - p->l3_off)
		return -1;

	p->l3_len = sizeof(*ip6h) + payload_len;
	p->ttl = ip6h->hop_limit;
	p->key.family = AF_INET6;
	p->key.proto = ip6h->nexthdr;
	__builtin_memcpy(p->key.saddr, &ip6h->saddr, sizeof(p->key.saddr));
	__builtin_memcpy(p->key.daddr, &ip6h->daddr, sizeof(p->key.daddr));
	nh->pos = ip6h + 1;
	return ip6h->nexthdr;
}

/* l4_len: the L3 payload length, from the IP header. */
static __always_inline int parse_tcphdr(struct hdr_cursor *nh, void *data_end, __u32 l4_len,
					struct pkt *p)
{
	struct tcphdr *th = nh->pos;
	__u32 hlen;

	if ((void *)(th + 1) > data_end)
		return -1;
	/* doff < 5 is malformed; a header longer than the IP payload is inconsistent. */
	hlen = th->doff * 4;
	if (hlen < sizeof(*th) || hlen > l4_len)
		return -1;
	/* The options too must be in the (linear) frame: GSO segments repeat the whole header. */
	if (nh->pos + hlen > data_end)
		return -1;

	p->hdr_len += hlen;
	p->key.sport = th->source;
	p->key.dport = th->dest;
	if (th->fin || th->rst)
		p->tcp_flags |= PKT_TCP_FIN_RST;
	if (th->syn)
		p->tcp_flags |= PKT_TCP_SYN;
	if (th->ack)
		p->tcp_flags |= PKT_TCP_ACK;
	return 0;
}

static __always_inline int parse_udphdr(struct hdr_cursor *nh, void *data_end, __u32 l4_len,
					struct pkt *p)
{
	struct udphdr *uh = nh->pos;

	if ((void *)(uh + 1) > data_end)
		return -1;
	/* RFC 768: the UDP length covers header and data, so it must be the IP payload length. */
	if (l4_len < sizeof(*uh) || bpf_ntohs(uh->len) != l4_len)
		return -1;
	/* RFC 8200 section 8.1: a zero UDP checksum is invalid over IPv6 (conntrack says so too). */
	if (p->key.family == AF_INET6 && uh->check == 0)
		return -1;

	p->hdr_len += sizeof(*uh);
	p->key.sport = uh->source;
	p->key.dport = uh->dest;
	return 0;
}

static __always_inline bool is_vlan_proto(int proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/*
 * Fills *p (key included) from the frame; -1 for anything the fast path leaves to the stack.
 * meta_vlan: TC's tag from skb metadata, already in key form (0: none); it was the outer tag.
 */
static __always_inline int parse_packet(void *data, void *data_end, struct pkt *p,
					__u16 meta_vlan)
{
	struct hdr_cursor nh = { .pos = data };
	__u32 nr_vlans = 0;
	struct ethhdr *eth;
	__u16 tag;
	int proto;

	if (dsa_rx_prepend_len() && parse_dsa_prepend(&nh, data_end, p) < 0)
		return -1;
	proto = parse_ethhdr(&nh, data_end, &eth);
	/*
	 * ip_forward only forwards unicast frames (PACKET_HOST); whether the MAC is the receiving
	 * device's is the action's to say (ingress_macs_match).
	 */
	if (proto < 0 || (eth->h_dest[0] & 1))
		return -1;
	if (dsa_rx_etype_len()) {
		proto = parse_dsa_etype(&nh, data_end, eth, p);
		if (proto < 0)
			return -1;
	}

	if (meta_vlan) {
		p->key.vlan[0] = meta_vlan;
		nr_vlans = 1;
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!is_vlan_proto(proto) || nr_vlans >= 2)
			break;
		proto = parse_vlan(&nh, data_end, proto, &tag);
		if (proto < 0)
			return -1;
		/* Constant indices: a computed one ends up as pointer arithmetic the verifier refuses. */
		if (nr_vlans == 0)
			p->key.vlan[0] = tag;
		else
			p->key.vlan[1] = tag;
		nr_vlans++;
	}
	/* A third tag: neither the key nor the kernel's flowtable goes that deep. */
	if (is_vlan_proto(proto))
		return -1;
	if (proto == bpf_htons(ETH_P_PPP_SES)) {
		proto = parse_pppoe(&nh, data_end, p);
		if (proto < 0)
			return -1;
	}

	/* Anything else, LLC / 802.3 length frames and PPPoE discovery included, is not ours. */
	p->l3_off = nh.pos - data;
	if (proto == bpf_htons(ETH_P_IP))
		proto = parse_ipv4(&nh, data_end, p);
	else if (proto == bpf_htons(ETH_P_IPV6))
		proto = parse_ipv6(&nh, data_end, p);
	else
		return -1;
	if (proto < 0)
		return -1;
	/*
	 * pppoe_rcv drops a frame shorter than its length field and trims it to that length, and
	 * ip_rcv then drops a packet longer than what is left: a length that does not match the
	 * IP packet exactly is a lie the stack should judge.
	 */
	if (p->key.pppoe_sid && p->pppoe_len != p->l3_len + 2)
		return -1;

	p->l4_off = nh.pos - data;
	p->hdr_len = p->l4_off - p->l3_off;
	if (proto == IPPROTO_TCP)
		return parse_tcphdr(&nh, data_end, p->l3_len - p->hdr_len, p);
	if (proto == IPPROTO_UDP)
		return parse_udphdr(&nh, data_end, p->l3_len - p->hdr_len, p);
	return -1;
}

#endif /* PARSE_H */
