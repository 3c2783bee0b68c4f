// SPDX-License-Identifier: GPL-2.0-only
/*
 * The ebpf-offloader datapath. Packets of connections that netfilter has already accepted, and
 * that the daemon has installed in the `flows` map, get here what the kernel's forwarding path
 * would do to them: NAT, TTL / hop-limit decrement, checksum updates, next-hop MAC addresses and
 * the egress device. Everything else goes to the stack untouched: the fast path may skip work,
 * it must never change a packet's fate.
 *
 * One core, two hooks: offload_xdp (XDP) and offload_tc (TC clsact ingress). The core takes the
 * hook as a constant, so each program keeps only its own branches.
 *
 * Encapsulations: a DSA tag (on a conduit, for the tagger in params), up to two VLAN tags
 * (802.1Q / 802.1ad) and a PPPoE session are parsed on ingress into the flow key, and the L2
 * header the action asks for (DSA tag of the egress conduit, VLAN tags, PPPoE) is built on
 * egress. The L3 and L4 rewrite happens in place first; then the ingress L2 header is stripped
 * down to plain Ethernet and the egress one pushed, one small helper per header.
 *
 * Helpers, and the kernel that has them: bpf_xdp_adjust_head 4.10, bpf_skb_change_head 4.10,
 * bpf_skb_vlan_push/pop 4.3, bpf_csum_diff 4.6, bpf_csum_update 4.9; the ring buffer (5.8)
 * sets the minimum. No kfuncs, no bounded loops (everything is unrolled).
 */
#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "flow_abi.h"

#define AF_INET 2
#define AF_INET6 10

#define IP_MF 0x2000     /* more fragments */
#define IP_OFFSET 0x1fff /* fragment offset, in 8-byte units */

#define TCP_MAX_HLEN 60 /* doff is 4 bits of 32-bit words */

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

/* Broadcom switches drop frames shorter than 64 bytes (plus FCS) once the tag is stripped. */
#define BRCM_MIN_FRAME 64

/* struct pkt.tcp_flags */
#define PKT_TCP_FIN_RST (1U << 0)
#define PKT_TCP_SYN (1U << 1)

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
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* ingress ifindex */
	__type(value, struct iface_stats);
} iface_stats SEC(".maps");

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

/* ---- One's-complement arithmetic (RFC 1071, RFC 1624). ---- */

static __always_inline __u16 csum_fold(__u32 sum)
{
	/* Two rounds: the first carry-out is at most 0xffff, so the second round cannot carry. */
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

/*
 * RFC 1624 eqn 3: HC' = ~(~HC + delta), with delta = sum of ~m + m' over the changed words.
 * Both values as they lie in memory: the ABI keeps deltas as numbers over the big-endian wire
 * words, and one's-complement sums commute with byte swapping (RFC 1071), so bpf_htons() turns
 * a delta into the same representation as a checksum field loaded from the packet.
 */
static __always_inline __u16 csum_update(__u16 check, __u32 delta)
{
	return ~csum_fold((__u16)~check + delta);
}

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

/* ip_rcv drops IPv4 packets whose header checksum is wrong: they must not be forwarded here. */
static __always_inline bool ipv4_csum_valid(const struct iphdr *iph)
{
	const __u16 *word = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += word[i];
	return csum_fold(sum) == 0xffff;
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

/* ---- Decisions. ---- */

/* Fail open: when the daemon stops (or hangs), every packet goes to the stack again. */
static __always_inline bool daemon_alive(void)
{
	struct flow_config *cfg;
	__u32 zero = 0;

	if (!params.heartbeat_timeout_ns)
		return true;
	cfg = bpf_map_lookup_elem(&flow_config, &zero);
	return cfg && bpf_ktime_get_ns() - cfg->heartbeat_ns <= params.heartbeat_timeout_ns;
}

/*
 * Fills a reserved event. Not inlined so that struct flow_event appears in the object's BTF
 * (a type only used through a local pointer does not), where test/abi.test.ts checks it.
 */
static __noinline int fill_event(struct flow_event *ev, __u32 type, __u32 conn_id,
				 const struct flow_key *key)
{
	ev->type = type;
	ev->conn_id = conn_id;
	__builtin_memcpy(&ev->key, key, sizeof(ev->key));
	return 0;
}

/* Sends an event to the daemon; -1 when the ring buffer is full. */
static __always_inline int send_event(__u32 type, __u32 conn_id, const struct flow_key *key)
{
	struct flow_event *ev = bpf_ringbuf_reserve(&flow_events, sizeof(*ev), 0);

	if (!ev)
		return -1;
	fill_event(ev, type, conn_id, key);
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

/* Tells the daemon about a flow it has not installed, at most once per notify interval. */
static __always_inline void notify_new_flow(const struct flow_key *key)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 *last;

	last = bpf_map_lookup_elem(&flow_notified, key);
	if (last && now - *last < params.notify_interval_ns)
		return;
	/* Ring buffer full: not recorded as notified, so a later packet tries again. */
	if (send_event(FLOW_EV_NEW, 0, key))
		return;
	if (last)
		*last = now;
	else
		bpf_map_update_elem(&flow_notified, key, &now, BPF_ANY);
}

/*
 * FIN or RST: both directions of the connection go back to the stack, so conntrack sees the
 * close and its timeouts apply. Only the CPU that sets the flag reports it; if the ring buffer
 * is full the flag still stands in flow_stats for user space to find.
 */
static __always_inline void mark_closing(struct flow_stats *st, __u32 conn_id,
					 const struct flow_key *key)
{
	if (__sync_fetch_and_or(&st->flags, FLOW_STATS_CLOSING) & FLOW_STATS_CLOSING)
		return;
	send_event(FLOW_EV_CLOSING, conn_id, key);
}

/*
 * The frame must be one the kernel would take up for this flow. eth_type_trans marks a unicast
 * frame for another MAC than the receiving device's PACKET_OTHERHOST, which ip_rcv drops (a
 * bridge port is promiscuous, so a frame for a second gateway on the LAN gets here), and
 * pppoe_rcv finds a session by its id, the peer's source MAC and the device. The action names
 * the MACs (all zero: no check); the map value is read once per byte, as it may change under us.
 */
static __always_inline bool ingress_macs_match(const struct ethhdr *eth,
					       const struct flow_action *a)
{
	__u8 dset = 0, ddiff = 0, sset = 0, sdiff = 0;

#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		__u8 d = a->ingress_dmac[i];
		__u8 s = a->ingress_smac[i];

		dset |= d;
		ddiff |= d ^ eth->h_dest[i];
		sset |= s;
		sdiff |= s ^ eth->h_source[i];
	}
	return (!dset || !ddiff) && (!sset || !sdiff);
}

/*
 * Too big for the egress MTU: the stack fragments it or sends ICMP frag-needed / packet-too-big.
 * A GSO skb is cut into segments of hdr_len + gso_size on egress, and those must fit, as the
 * kernel's skb_gso_validate_network_len checks.
 */
static __always_inline bool exceeds_mtu(const struct pkt *p, __u32 mtu)
{
	if (p->l3_len <= mtu)
		return false;
	return !p->gso_size || (__u32)p->hdr_len + p->gso_size > mtu;
}

static __always_inline void count_packet(struct flow_stats *st, __u8 dir, __u32 l3_len)
{
	/* dir is 0 or 1; the mask keeps the verifier sure the index stays inside the value. */
	struct flow_dir_stats *d = &st->dir[dir & 1];

	__sync_fetch_and_add(&d->packets, 1);
	__sync_fetch_and_add(&d->bytes, l3_len);
	st->last_seen_ns = bpf_ktime_get_ns();
}

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

/*
 * TC: the skb may be CHECKSUM_PARTIAL (the L4 field holds only the pseudo-header sum, which the
 * device or the stack completes later) or CHECKSUM_COMPLETE (skb->csum must follow the data).
 * The helpers handle both, as the kernel's NAT does with inet_proto_csum_replace*: the address
 * part as a pseudo-header change, the port part as a plain one (a partial sum must not include
 * it), and for UDP BPF_F_MARK_MANGLED_0 keeps a zero checksum zero and writes a zero result as
 * 0xffff. Diff mode: from = 0, size 0, to = the delta.
 *
 * Returns 0, or the verdict when a helper fails. They cannot fail for a parsed, linear header in
 * an skb the verifier's prologue made writable; if one did, the first leaves the packet as it
 * was, a later one leaves it half patched, fit for neither the stack nor the wire.
 */
static __always_inline int tc_patch_checksums(struct __sk_buff *skb, const struct pkt *p,
					      const struct flow_action *a)
{
	bool udp = p->key.proto == IPPROTO_UDP;
	__u32 csum_off = p->l4_off + (udp ? offsetof(struct udphdr, check)
					  : offsetof(struct tcphdr, check));
	__u64 mangled0 = udp ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_off, 0, bpf_htons(a->l4_csum_pseudo),
				BPF_F_PSEUDO_HDR | mangled0))
		return verdict_code(VERDICT_PASS, HOOK_TC);
	if (bpf_l4_csum_replace(skb, csum_off, 0, bpf_htons(a->l4_csum_ports), mangled0))
		return verdict_code(VERDICT_DROP, HOOK_TC);
	if (p->key.family == AF_INET &&
	    bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), 0,
				bpf_htons(a->l3_csum_delta), 0))
		return verdict_code(VERDICT_DROP, HOOK_TC);
	return 0;
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

/* XDP: the L4 checksum over the new pseudo-header and ports, RFC 1624 style. */
static __always_inline void patch_l4_csum(__sum16 *check, const struct flow_action *a, bool udp)
{
	__u32 delta = bpf_htons(a->l4_csum_pseudo) + bpf_htons(a->l4_csum_ports);
	__u16 sum;

	/* RFC 768: a zero UDP checksum means "none" (IPv6 ones never get here, see parse_udphdr). */
	if (udp && *check == 0)
		return;
	sum = csum_update(*check, delta);
	/* RFC 768: a computed zero is transmitted as all ones. */
	if (udp && sum == 0)
		sum = 0xffff;
	*check = sum;
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

/* ---- The egress L2 header: planned first, then stripped and pushed one header at a time. ---- */

static __always_inline bool vlan_tag_valid(__u16 tag)
{
	__u16 vid = tag & FLOW_VLAN_VID_MASK;

	return vid != 0 && vid <= VLAN_VID_MAX && !(tag & ~(FLOW_VLAN_VID_MASK | FLOW_VLAN_8021AD));
}

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
	if (vlan[0] && push_vlan(ctx, hook, vlan[0]))
		return -1;
	if (l2->dsa_len && push_dsa_etype(ctx, hook, l2))
		return -1;
	if (write_macs(ctx, hook, a))
		return -1;
	if (l2->dsa_prepend && push_dsa_prepend(ctx, hook, l2))
		return -1;
	return 0;
}

/* ---- The core. ---- */

/*
 * TC: direct packet access only reaches the linear part of the skb. Drivers normally put the
 * headers there; if not, pull the longest header chain we parse (this moves bytes within the
 * skb and changes nothing in the packet).
 */
static __always_inline void tc_pull_headers(struct __sk_buff *skb)
{
	__u32 want = L2_MAX_HLEN + sizeof(struct ipv6hdr) + TCP_MAX_HLEN;

	if (want > skb->len)
		want = skb->len;
	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

/*
 * TC: a tag the driver took out of the frame into skb metadata, in flow key form. 0: none;
 * -1: one the fast path leaves to the stack (VID 0 or 4095, an unknown TPID).
 */
static __always_inline int tc_meta_vlan(struct __sk_buff *skb)
{
	__u16 vid;

	if (!skb->vlan_present)
		return 0;
	vid = skb->vlan_tci & FLOW_VLAN_VID_MASK;
	if (vid == 0 || vid > VLAN_VID_MAX)
		return -1;
	if (skb->vlan_proto == bpf_htons(ETH_P_8021Q))
		return vid;
	if (skb->vlan_proto == bpf_htons(ETH_P_8021AD))
		return vid | FLOW_VLAN_8021AD;
	return -1;
}

static __always_inline int offload(void *ctx, const enum hook hook)
{
	__u16 meta_vlan = 0, vlan[2];
	struct l2_plan l2 = {};
	struct flow_action *act;
	struct flow_stats *st;
	void *data, *data_end;
	struct ethhdr *eth;
	struct pkt p = {};
	__be16 pppoe_sid;
	int ret;

	if (!daemon_alive())
		return verdict_code(VERDICT_PASS, hook);

	if (hook == HOOK_TC) {
		struct __sk_buff *skb = ctx;

		ret = tc_meta_vlan(skb);
		if (ret < 0)
			return verdict_code(VERDICT_PASS, hook);
		meta_vlan = ret;
		tc_pull_headers(skb);
		p.frame_len = skb->len;
		p.gso_size = skb->gso_size;
		p.key.ifindex = skb->ingress_ifindex;
	} else {
		struct xdp_md *xdp = ctx;

		p.frame_len = xdp->data_end - xdp->data;
		p.key.ifindex = xdp->ingress_ifindex;
	}
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	if (parse_packet(data, data_end, &p, meta_vlan) < 0)
		return verdict_code(VERDICT_PASS, hook);

	act = bpf_map_lookup_elem(&flows, &p.key);
	if (!act) {
		notify_new_flow(&p.key);
		return verdict_code(VERDICT_PASS, hook);
	}
	/* Not for this router's IP stack, or not from the PPPoE peer: the kernel decides. */
	eth = data + dsa_rx_prepend_len();
	if ((void *)(eth + 1) > data_end || !ingress_macs_match(eth, act))
		return verdict_code(VERDICT_PASS, hook);
	/* The egress cannot take XDP frames, or a shaper must see them: the TC program's job. */
	if (hook == HOOK_XDP && (act->flags & FLOW_ACT_TC_ONLY))
		return verdict_code(VERDICT_PASS, hook);
	st = bpf_map_lookup_elem(&flow_stats, &act->conn_id);
	if (act->flags & FLOW_ACT_DROP) {
		if (st)
			count_packet(st, act->dir, p.l3_len);
		return verdict_code(VERDICT_DROP, hook);
	}
	/* A connection that is closing, or whose slot is out of range, belongs to the stack. */
	if (!st || (st->flags & FLOW_STATS_CLOSING))
		return verdict_code(VERDICT_PASS, hook);
	if (p.tcp_flags & PKT_TCP_FIN_RST) {
		mark_closing(st, act->conn_id, &p.key);
		return verdict_code(VERDICT_PASS, hook);
	}
	/* A SYN on an established flow (port reuse, a confused peer): conntrack decides. */
	if (p.tcp_flags & PKT_TCP_SYN)
		return verdict_code(VERDICT_PASS, hook);
	/* The stack sends ICMP time exceeded. */
	if (p.ttl <= 1)
		return verdict_code(VERDICT_PASS, hook);
	if (exceeds_mtu(&p, act->mtu))
		return verdict_code(VERDICT_PASS, hook);
	if (plan_l2(act, &l2, vlan, &pppoe_sid) < 0)
		return verdict_code(VERDICT_PASS, hook);
	/*
	 * A GSO skb is segmented with its L2 header copied onto every segment: right for VLAN and
	 * DSA tags, wrong for a PPPoE length. The stack's PPPoE device segments first.
	 */
	if (p.gso_size && pppoe_sid)
		return verdict_code(VERDICT_PASS, hook);
	if (l2.min_frame && l2.hlen + p.l3_len < l2.min_frame)
		return verdict_code(VERDICT_PASS, hook);

	/* Nothing is changed before this point: a failed trim leaves the packet to the stack. */
	if (trim_frame(ctx, hook, p.frame_len, p.l3_off + p.l3_len) < 0)
		return verdict_code(VERDICT_PASS, hook);
	/*
	 * From here on the packet is half rewritten if a step fails, fit for neither the stack
	 * nor the wire: drop it. None can fail for a frame parsed as above, short of memory.
	 */
	if (hook == HOOK_TC) {
		ret = tc_patch_checksums(ctx, &p, act);
		if (ret)
			return ret;
	}
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	if (rewrite_packet(data, data_end, &p, act, hook == HOOK_XDP) < 0)
		return verdict_code(VERDICT_DROP, hook);
	if (hook == HOOK_TC)
		ret = tc_strip_l2(ctx, &p);
	else
		ret = xdp_strip_l2(ctx, &p);
	if (ret || push_l2(ctx, hook, &p, act, &l2, vlan, pppoe_sid))
		return verdict_code(VERDICT_DROP, hook);

	count_packet(st, act->dir, p.l3_len);
	/* Back out of the device it came in on: XDP_TX needs no ndo_xdp_xmit, nor a devmap. */
	if (hook == HOOK_XDP && act->out_ifindex == p.key.ifindex)
		return XDP_TX;
	return bpf_redirect(act->out_ifindex, 0);
}

/* Per-device counters: user space creates the entries, the datapath only adds to them. */
static __always_inline int count_iface(__u32 ifindex, __u32 len, int code, const enum hook hook)
{
	struct iface_stats *s = bpf_map_lookup_elem(&iface_stats, &ifindex);

	if (!s)
		return code;
	/* Per-CPU values: plain adds. */
	if (code == verdict_code(VERDICT_PASS, hook)) {
		s->pass_packets++;
		s->pass_bytes += len;
	} else if (code == verdict_code(VERDICT_DROP, hook)) {
		s->drop_packets++;
		s->drop_bytes += len;
	} else {
		s->fwd_packets++;
		s->fwd_bytes += len;
	}
	return code;
}

SEC("xdp")
int offload_xdp(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 len = ctx->data_end - ctx->data;

	return count_iface(ifindex, len, offload(ctx, HOOK_XDP), HOOK_XDP);
}

SEC("tc")
int offload_tc(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ingress_ifindex;
	__u32 len = skb->len;

	return count_iface(ifindex, len, offload(skb, HOOK_TC), HOOK_TC);
}

char LICENSE[] SEC("license") = "GPL";
