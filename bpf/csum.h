/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Checksums: one's-complement arithmetic, the IPv4 header check on ingress, and the patching of
 * the L3 / L4 checksums after NAT (TC with the kernel's helpers, XDP by hand).
 */
#ifndef CSUM_H
#define CSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "flow_abi.h"

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

/*
 * XDP cannot see skb->ip_summed. A local sender with checksum offload (a container's veth, a
 * VM's tap) hands over CHECKSUM_PARTIAL packets whose L4 checksum field holds only the folded
 * pseudo-header sum (addresses, protocol, L4 length: the kernel writes ~tcp_v4_check(len, s, d,
 * 0), ~udp_v4_check(...) or ~csum_ipv6_magic(...)) for the device to complete. Patched as if it
 * were complete and redirected, such a frame arrives with a bad checksum: it must go to the
 * stack, which completes it. A complete checksum equals that value only by chance (1 in 65536),
 * and such a packet merely takes the kernel path.
 *
 * The key holds the addresses as they lie in the packet, an IPv4 one in the first word and zeros
 * after (the parser starts from a zeroed key), so one sum serves both families; the IPv6
 * pseudo-header's 32-bit length and next header have zero upper words. Everything is summed as
 * it lies in memory, like the field it is compared with (one's-complement sums commute with byte
 * swapping), in 32-bit words folded down (2^32 and 2^16 are both 1 modulo 0xffff). A sum of
 * nonzero words folds to 1..0xffff, never 0, as the kernel's does: a field of 0 (UDP over IPv4
 * without checksum) never matches.
 */
static __always_inline bool l4_csum_is_partial(__u16 check, const struct flow_key *key,
					       __u16 l4_len)
{
	__u64 sum = bpf_htons((__u16)key->proto) + bpf_htons(l4_len);

#pragma unroll
	for (int i = 0; i < 4; i++)
		sum += (__u64)key->saddr[i] + key->daddr[i];
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return check == csum_fold(sum);
}

/* ---- Patching after NAT. ---- */

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

#endif /* CSUM_H */
