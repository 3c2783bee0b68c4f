// SPDX-License-Identifier: GPL-2.0-only
/*
 * The dropper's observer: a BTF tracepoint on skb:kfree_skb that reports packets the kernel
 * dropped on their way in (a netfilter verdict, or a drop after the route lookup) to the daemon,
 * which decides whether every later packet of the same flow would meet the same fate and, if so,
 * installs a FLOW_ACT_DROP entry for the XDP datapath. This program changes no packet: it only
 * reads the skb being freed. A separate object from the datapath, loaded only when the dropper is
 * on, so that the forwarder works on kernels without BTF or without the tracepoint's reason
 * argument (Linux 5.17+).
 *
 * Kernel structures are read with CO-RE: the definitions below name only the fields used, and
 * libbpf relocates them against the running kernel's BTF (nf_conn from a module's BTF too).
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "drop_abi.h"
#include "flow_abi.h"

#define AF_INET 2
#define AF_INET6 10
#define MAC_HEADER_UNSET 0xffff
#define NFCT_INFOMASK 7UL

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	int skb_iif;
	unsigned long _skb_refdst;
	unsigned long _nfct;
	__u32 mark;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned char *head;
} __attribute__((preserve_access_index));

struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

enum skb_drop_reason {
	SKB_DROP_REASON_NOT_SPECIFIED,
	SKB_DROP_REASON_NETFILTER_DROP,
};

volatile const struct drop_params params = {
	.notify_interval_ns = 1000000000ULL,
	.events_per_cpu_s = 500,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} drop_events SEC(".maps");

/* When each packet key was last reported (ifindex = iif), so that a flood costs few events. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow_key);
	__type(value, __u64);
} drop_reported SEC(".maps");

/* Events sent by this CPU in the current one-second window (see drop_params.events_per_cpu_s). */
struct event_budget {
	__u64 window;
	__u32 used;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_budget);
} drop_budget SEC(".maps");

/* Takes one event from this CPU's budget; false when it is spent for this second. */
static __always_inline bool take_budget(void)
{
	__u64 window = bpf_ktime_get_ns() / 1000000000ULL;
	struct event_budget *b;
	__u32 zero = 0;

	b = bpf_map_lookup_elem(&drop_budget, &zero);
	if (!b)
		return false;
	if (b->window != window) {
		b->window = window;
		b->used = 0;
	}
	if (b->used >= params.events_per_cpu_s)
		return false;
	b->used++;
	return true;
}

/* Reads the IP and TCP/UDP headers at the skb's network and transport offsets; -1: not ours. */
static __always_inline int read_headers(struct sk_buff *skb, struct drop_event *ev)
{
	unsigned char *head = skb->head;
	void *l3 = head + skb->network_header;
	void *l4 = head + skb->transport_header;
	__u8 l4hdr[14];

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3))
			return -1;
		/* Options or a fragment: the datapath never matches such packets anyway. */
		if (ip.ihl != 5 || (ip.frag_off & bpf_htons(0x3fff)))
			return -1;
		ev->family = AF_INET;
		ev->proto = ip.protocol;
		ev->saddr[0] = ip.saddr;
		ev->daddr[0] = ip.daddr;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3))
			return -1;
		ev->family = AF_INET6;
		ev->proto = ip6.nexthdr; /* an extension header is neither TCP nor UDP: ignored */
		__builtin_memcpy(ev->saddr, &ip6.saddr, 16);
		__builtin_memcpy(ev->daddr, &ip6.daddr, 16);
	} else {
		return -1;
	}
	if (ev->proto != IPPROTO_TCP && ev->proto != IPPROTO_UDP)
		return -1;
	if (skb->transport_header == skb->network_header ||
	    bpf_probe_read_kernel(l4hdr, sizeof(l4hdr), l4))
		return -1;
	__builtin_memcpy(&ev->sport, &l4hdr[0], 2);
	__builtin_memcpy(&ev->dport, &l4hdr[2], 2);
	if (ev->proto == IPPROTO_TCP)
		ev->tcp_flags = l4hdr[13];
	return 0;
}

/* The conntrack reference the packet carried (still attached while the tracepoint runs). */
static __always_inline void read_conntrack(struct sk_buff *skb, struct drop_event *ev)
{
	unsigned long nfct = skb->_nfct;
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~NFCT_INFOMASK);

	if (!nfct) {
		ev->ct_info = DROP_CT_NONE;
		return;
	}
	ev->ct_info = nfct & NFCT_INFOMASK;
	if (ct)
		ev->ct_status = BPF_CORE_READ(ct, status);
}

/* True at most once per notify interval per packet key and kind. */
static __always_inline bool first_in_interval(const struct drop_event *ev)
{
	struct flow_key key = {};
	__u64 now = bpf_ktime_get_ns();
	__u64 *last;

	key.ifindex = ev->iif;
	key.family = ev->family;
	key.proto = ev->proto;
	key.dsa_port = ev->kind; /* the kinds are reported independently */
	key.sport = ev->sport;
	key.dport = ev->dport;
	__builtin_memcpy(key.saddr, ev->saddr, 16);
	__builtin_memcpy(key.daddr, ev->daddr, 16);
	last = bpf_map_lookup_elem(&drop_reported, &key);
	if (last && now - *last < params.notify_interval_ns)
		return false;
	bpf_map_update_elem(&drop_reported, &key, &now, BPF_ANY);
	return true;
}

/*
 * Copies the event into the ring buffer (full: the event is lost, a later drop reports again).
 * Not inlined so that struct drop_event appears in the object's BTF for test/dropper-abi.test.ts.
 */
static __noinline int submit_event(const struct drop_event *ev)
{
	struct drop_event *out = bpf_ringbuf_reserve(&drop_events, sizeof(*out), 0);

	if (!out)
		return -1;
	__builtin_memcpy(out, ev, sizeof(*out));
	bpf_ringbuf_submit(out, 0);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(observe_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct drop_event ev = {};
	struct net_device *dev;

	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP)) {
		if (!params.netfilter)
			return 0;
		ev.kind = DROP_EV_NETFILTER;
	} else if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED)) {
		/* A blackhole route frees the packet without a reason; it has been routed by then. */
		if (!skb->_skb_refdst)
			return 0;
		ev.kind = DROP_EV_ROUTE;
	} else {
		return 0;
	}
	/* Received packets only (locally generated ones have no input device), in our namespace. */
	dev = skb->dev;
	if (!dev || !skb->skb_iif || dev->nd_net.net->ns.inum != params.netns_ino)
		return 0;
	ev.iif = skb->skb_iif;
	ev.mark = skb->mark;
	if (read_headers(skb, &ev))
		return 0;
	read_conntrack(skb, &ev);
	if (skb->mac_header != MAC_HEADER_UNSET &&
	    bpf_probe_read_kernel(ev.smac, ETH_ALEN, skb->head + skb->mac_header + ETH_ALEN))
		__builtin_memset(ev.smac, 0, ETH_ALEN);
	if (!first_in_interval(&ev) || !take_budget())
		return 0;
	submit_event(&ev);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
