// SPDX-License-Identifier: GPL-2.0-only
/*
 * XDP_PASS, nothing else: attached to a TCP benchmark endpoint whose GRO is off, it gives the
 * veth the NAPI instance it needs to receive XDP-redirected frames, and changes nothing else.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
