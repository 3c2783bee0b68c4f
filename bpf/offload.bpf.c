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
 * v1 handles untagged Ethernet only (the flow key's VLAN, PPPoE and DSA fields stay 0).
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

enum hook { HOOK_XDP, HOOK_TC };

enum verdict { VERDICT_PASS, VERDICT_DROP };

/* What the parser learnt about a packet. */
struct pkt {
	struct flow_key key;
	__u32 frame_len; /* bytes in the frame, Ethernet header included */
	__u32 l3_len;    /* IPv4 tot_len or 40 + IPv6 payload_len */
	__u16 l4_off;    /* offset of the TCP/UDP header in the frame */
	__u16 hdr_len;   /* L3 + L4 header bytes: what each GSO segment repeats */
	__u16 gso_size;  /* TC: skb->gso_size; XDP: 0 */
	__u8 ttl;        /* IPv4 TTL or IPv6 hop limit */
	__u8 tcp_flags;  /* PKT_TCP_* */
};

struct hdr_cursor {
	void *pos;
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
	if (tot_len < sizeof(*iph) || tot_len > p->frame_len - ETH_HLEN)
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
	if (payload_len == 0 || sizeof(*ip6h) + payload_len > p->frame_len - ETH_HLEN)
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

/* Fills *p (key included) from the frame; -1 for anything the fast path leaves to the stack. */
static __always_inline int parse_packet(void *data, void *data_end, struct pkt *p)
{
	struct hdr_cursor nh = { .pos = data };
	struct ethhdr *eth;
	int proto;

	proto = parse_ethhdr(&nh, data_end, &eth);
	/* ip_forward only forwards unicast frames (PACKET_HOST). */
	if (proto < 0 || (eth->h_dest[0] & 1))
		return -1;
	if (proto == bpf_htons(ETH_P_IP))
		proto = parse_ipv4(&nh, data_end, p);
	else if (proto == bpf_htons(ETH_P_IPV6))
		proto = parse_ipv6(&nh, data_end, p);
	else
		return -1;
	if (proto < 0)
		return -1;

	p->l4_off = nh.pos - data;
	p->hdr_len = p->l4_off - ETH_HLEN;
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
	    bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), 0,
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

static __always_inline void rewrite_eth(struct ethhdr *eth, const struct flow_action *a)
{
	__builtin_memcpy(eth->h_dest, a->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, a->smac, ETH_ALEN);
}

/*
 * Writes the new headers into a frame parsed before (pointers are re-derived: the trim and the
 * TC checksum helpers invalidate them). -1 if the frame is not what was parsed.
 */
static __always_inline int rewrite_packet(void *data, void *data_end, const struct pkt *p,
					  const struct flow_action *a, bool patch_csums)
{
	struct ethhdr *eth = data;
	void *l4;

	if (p->key.family == AF_INET) {
		struct iphdr *iph = data + ETH_HLEN;

		if ((void *)(iph + 1) > data_end)
			return -1;
		rewrite_ipv4(iph, a, patch_csums);
		l4 = iph + 1;
	} else {
		struct ipv6hdr *ip6h = data + ETH_HLEN;

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

	rewrite_eth(eth, a);
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
	__u32 want = ETH_HLEN + sizeof(struct ipv6hdr) + TCP_MAX_HLEN;

	if (want > skb->len)
		want = skb->len;
	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

static __always_inline int offload(void *ctx, const enum hook hook)
{
	struct flow_action *act;
	struct flow_stats *st;
	void *data, *data_end;
	struct pkt p = {};
	int ret;

	if (!daemon_alive())
		return verdict_code(VERDICT_PASS, hook);

	if (hook == HOOK_TC) {
		struct __sk_buff *skb = ctx;

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
	if (parse_packet(data, data_end, &p) < 0)
		return verdict_code(VERDICT_PASS, hook);

	act = bpf_map_lookup_elem(&flows, &p.key);
	if (!act) {
		notify_new_flow(&p.key);
		return verdict_code(VERDICT_PASS, hook);
	}
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

	/* Nothing is changed before this point: a failed trim leaves the packet to the stack. */
	if (trim_frame(ctx, hook, p.frame_len, ETH_HLEN + p.l3_len) < 0)
		return verdict_code(VERDICT_PASS, hook);
	if (hook == HOOK_TC) {
		ret = tc_patch_checksums(ctx, &p, act);
		if (ret)
			return ret;
	}
	data = ctx_data(ctx, hook);
	data_end = ctx_data_end(ctx, hook);
	/* Cannot fail (same frame as parsed); if it did, TC's checksums would be half done. */
	if (rewrite_packet(data, data_end, &p, act, hook == HOOK_XDP) < 0)
		return verdict_code(hook == HOOK_TC ? VERDICT_DROP : VERDICT_PASS, hook);

	count_packet(st, act->dir, p.l3_len);
	return bpf_redirect(act->out_ifindex, 0);
}

SEC("xdp")
int offload_xdp(struct xdp_md *ctx)
{
	return offload(ctx, HOOK_XDP);
}

SEC("tc")
int offload_tc(struct __sk_buff *skb)
{
	/*
	 * A VLAN tag the NIC stripped into metadata is not in the frame, so the packet would look
	 * untagged: v1 offloads untagged traffic only.
	 */
	if (skb->vlan_present)
		return TC_ACT_OK;
	return offload(skb, HOOK_TC);
}

char LICENSE[] SEC("license") = "GPL";
