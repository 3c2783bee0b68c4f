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
 * bpf_skb_vlan_push/pop 4.3, bpf_csum_diff 4.6, bpf_csum_update 4.9, bpf_jiffies64 5.5; the ring
 * buffer (5.8) sets the minimum. No kfuncs, no bounded loops (everything is unrolled).
 *
 * This file holds the decisions, the core and the two entry points; the rest is in headers by
 * topic: common.h (shared types, hook accessors), maps.h (params and maps), parse.h (ingress
 * parser), dsa.h (DSA tags, rx and tx), csum.h (checksums), rewrite.h (L3 / L4 rewrite) and
 * l2.h (egress L2 header: plan, strip, push).
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "csum.h"
#include "dsa.h"
#include "flow_abi.h"
#include "l2.h"
#include "maps.h"
#include "parse.h"
#include "rewrite.h"

/* ---- Decisions. ---- */

/*
 * CLOCK_MONOTONIC as of this CPU's first packet in the current jiffy (FLOW_CLOCK_LAG_NS behind
 * at most). bpf_ktime_get_ns() reads the clocksource (tens of ns, on every packet twice over);
 * bpf_jiffies64() and the per-CPU lookup are a few instructions the verifier inlines.
 */
static __always_inline __u64 now_ns(void)
{
	struct clock_cache *c;
	__u32 zero = 0;
	__u64 j;

	c = bpf_map_lookup_elem(&clock_cache, &zero);
	if (!c)
		return bpf_ktime_get_ns();
	j = bpf_jiffies64();
	if (c->jiffies != j) {
		c->ns = bpf_ktime_get_ns();
		c->jiffies = j;
	}
	return c->ns;
}

/*
 * Fail open: when the daemon stops (or hangs), every packet goes to the stack again. The real
 * time is at most FLOW_CLOCK_LAG_NS after now (now_ns()): a heartbeat within the timeout even
 * then is fresh, without reading the clock; the clock decides the rest. Unsigned, as in the
 * kernel's time_after(): a heartbeat from the future is no heartbeat.
 */
static __always_inline bool daemon_alive(__u64 now)
{
	const __u64 timeout = params.heartbeat_timeout_ns;
	struct flow_config *cfg;
	__u32 zero = 0;
	__u64 beat;

	if (!timeout)
		return true;
	cfg = bpf_map_lookup_elem(&flow_config, &zero);
	if (!cfg)
		return false;
	beat = cfg->heartbeat_ns;
	if (now + FLOW_CLOCK_LAG_NS - beat <= timeout)
		return true;
	return bpf_ktime_get_ns() - beat <= timeout;
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

static __always_inline void count_packet(struct flow_stats *st, __u8 dir, __u32 l3_len,
					 __u64 now)
{
	/* dir is 0 or 1; the mask keeps the verifier sure the index stays inside the value. */
	struct flow_dir_stats *d = &st->dir[dir & 1];

	__sync_fetch_and_add(&d->packets, 1);
	__sync_fetch_and_add(&d->bytes, l3_len);
	st->last_seen_ns = now;
}

/* UDP, or a TCP SYN without ACK, FIN or RST: a packet that may open a connection. */
static __always_inline bool opens_connection(const struct pkt *p)
{
	return p->key.proto != IPPROTO_TCP ||
	       (p->tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK | PKT_TCP_FIN_RST)) == PKT_TCP_SYN;
}

/*
 * XDP: a CHECKSUM_PARTIAL packet (see l4_csum_is_partial) goes to the stack untouched. TC sees
 * skb->ip_summed and patches such packets as the kernel's NAT does (tc_patch_checksums).
 */
static __always_inline bool xdp_csum_partial(void *data, void *data_end, const struct pkt *p)
{
	void *l4 = data + (p->l3_off & L2_OFF_MASK);
	__u16 l4_len = p->l3_len - (p->l4_off - p->l3_off);
	struct udphdr *uh;

	l4 += p->key.family == AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (p->key.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		/* Not the frame that was parsed: the stack decides. */
		if ((void *)(th + 1) > data_end)
			return true;
		return l4_csum_is_partial(th->check, &p->key, l4_len);
	}
	uh = l4;
	if ((void *)(uh + 1) > data_end)
		return true;
	return l4_csum_is_partial(uh->check, &p->key, l4_len);
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
	__u64 now = now_ns();
	__be16 pppoe_sid;
	int ret;

	if (!daemon_alive(now))
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
		if ((act->flags & FLOW_ACT_DROP_SYN) && !opens_connection(&p))
			return verdict_code(VERDICT_PASS, hook);
		if (st)
			count_packet(st, act->dir, p.l3_len, now);
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
	if (plan_l2(act, &l2, vlan, &pppoe_sid) < 0)
		return verdict_code(VERDICT_PASS, hook);
	if (exceeds_mtu(&p, egress_mtu(act->mtu, hook, &l2)))
		return verdict_code(VERDICT_PASS, hook);
	/*
	 * A GSO skb is segmented with its L2 header copied onto every segment: right for VLAN and
	 * DSA tags, wrong for a PPPoE length. The stack's PPPoE device segments first.
	 */
	if (p.gso_size && pppoe_sid)
		return verdict_code(VERDICT_PASS, hook);
	if (l2.min_frame && l2.hlen + p.l3_len < l2.min_frame)
		return verdict_code(VERDICT_PASS, hook);

	if (hook == HOOK_XDP && xdp_csum_partial(data, data_end, &p))
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

	count_packet(st, act->dir, p.l3_len, now);
	/* Back out of the device it came in on: XDP_TX needs no ndo_xdp_xmit, nor a devmap. */
	if (hook == HOOK_XDP && act->out_ifindex == p.key.ifindex)
		return XDP_TX;
	return bpf_redirect(act->out_ifindex, 0);
}

/* The device's iface_stats slot (see flow_abi.h); NULL when user space has not placed it. */
static __always_inline struct iface_stats *iface_slot(__u32 ifindex)
{
	if (!ifindex)
		return NULL;
#pragma unroll
	for (__u32 i = 0; i < IFACE_PROBES; i++) {
		__u32 slot = (ifindex + i) % IFACE_SLOTS;
		struct iface_stats *s = bpf_map_lookup_elem(&iface_stats, &slot);

		if (s && s->ifindex == ifindex)
			return s;
	}
	return NULL;
}

/* Per-device counters: user space places the devices, the datapath only adds to them. */
static __always_inline int count_iface(__u32 ifindex, __u32 len, int code, const enum hook hook)
{
	struct iface_stats *s = iface_slot(ifindex);

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

	/*
	 * Subtract now: left to itself clang may keep ctx->data for later in a 32-bit stack slot,
	 * which the verifier refuses for a packet pointer ("invalid size of register spill").
	 */
	asm volatile("" : "+r"(len));
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
