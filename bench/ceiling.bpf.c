// SPDX-License-Identifier: GPL-2.0-only
/*
 * The benchmark's ceiling: the least an XDP forwarder can do. Every frame entering the router's
 * lan gets the wan MAC as source and the server's MAC as destination and is redirected to wan;
 * no lookup, no NAT, no TTL. Whatever the offloader reaches is measured against this.
 * The MACs and the wan ifindex differ per lab, so they are compiled in (-D) per lab.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#if !defined(WAN_IFINDEX) || !defined(SRC_MAC) || !defined(DST_MAC)
#error "compile with -DWAN_IFINDEX=n -DSRC_MAC=0x..,.. -DDST_MAC=0x..,.."
#endif

static const unsigned char src_mac[ETH_ALEN] = { SRC_MAC };
static const unsigned char dst_mac[ETH_ALEN] = { DST_MAC };

SEC("xdp")
int ceiling(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src_mac, ETH_ALEN);
	return bpf_redirect(WAN_IFINDEX, 0);
}

char LICENSE[] SEC("license") = "GPL";
