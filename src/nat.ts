// NAT planning: turns a conntrack entry's two tuples into what the datapath does to each
// direction's packets (new addresses and ports, and the precomputed checksum deltas).
//
// How the datapath applies the deltas (all RFC 1624 one's-complement arithmetic, see checksum.ts):
// - IPv4 header checksum: HC' = ~(~HC + l3CsumDelta) (includes the TTL decrement).
// - TCP/UDP checksum with a complete checksum: HC' = ~(~HC + l4CsumPseudo + l4CsumPorts).
//   UDP over IPv4 with checksum 0 ("none") stays 0; a UDP result of 0 is written as 0xffff.
// - CHECKSUM_PARTIAL (the field holds the uncomplemented pseudo-header sum and the device or stack
//   completes it later over the segment): field' = field + l4CsumPseudo (one's-complement add,
//   no complements) and nothing for the ports, which the later completion covers.
import { TTL_DECREMENT_DELTA, csumAdd, finishDelta, wordDelta } from "./checksum.ts";

/** A conntrack tuple. Addresses are 16-byte arrays in network order (IPv4 in the first 4 bytes). */
export interface Tuple {
  family: 2 | 10;
  proto: number;
  src: Uint8Array;
  dst: Uint8Array;
  sport: number;
  dport: number;
}

export interface DirectionPlan {
  dir: 0 | 1;
  /** What this direction's packets look like on ingress (the orig tuple, or the reply tuple). */
  match: Tuple;
  /** Addresses and ports after NAT (unchanged ones copied). */
  saddr: Uint8Array;
  daddr: Uint8Array;
  sport: number;
  dport: number;
  /** IPv4: address changes and the TTL decrement; IPv6: 0 (no header checksum). */
  l3CsumDelta: number;
  /** Address (pseudo-header) part of the L4 checksum delta. */
  l4CsumPseudo: number;
  /** Port part of the L4 checksum delta. */
  l4CsumPorts: number;
  snat: boolean;
  dnat: boolean;
}

export class NatPlanError extends Error {}

/** Big-endian 16-bit word at byte i. */
function word(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

function sameAddr(a: Uint8Array, b: Uint8Array, len: number): boolean {
  for (let i = 0; i < len; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Plans one direction of a connection. A packet of direction 0 (matching orig) leaves with the
 * reversed reply tuple (src = reply.dst, dst = reply.src, ports likewise); a packet of direction 1
 * (matching reply) leaves with the reversed orig tuple.
 */
export function planDirection(orig: Tuple, reply: Tuple, dir: 0 | 1): DirectionPlan {
  if (orig.family !== reply.family || orig.proto !== reply.proto) {
    throw new NatPlanError("conntrack entry changes address family or protocol between directions: not offloadable");
  }
  const match = dir === 0 ? orig : reply;
  const out = dir === 0 ? reply : orig;
  // The addresses are shared with the tuples, never copied: nothing modifies them.
  const plan = { saddr: out.dst, daddr: out.src, sport: out.dport, dport: out.sport };
  const len = match.family === 2 ? 4 : 16;
  // csumDelta over (src, dst) -> (out.dst, out.src), without building the byte strings.
  let addrSum = 0;
  for (let i = 0; i < len; i += 2) {
    addrSum += wordDelta(word(match.src, i), word(out.dst, i)) + wordDelta(word(match.dst, i), word(out.src, i));
  }
  const addrDelta = finishDelta(addrSum);
  return {
    dir,
    match,
    ...plan,
    l3CsumDelta: match.family === 2 ? csumAdd(addrDelta, TTL_DECREMENT_DELTA) : 0,
    l4CsumPseudo: addrDelta,
    l4CsumPorts: finishDelta(wordDelta(match.sport, plan.sport) + wordDelta(match.dport, plan.dport)),
    snat: !sameAddr(match.src, out.dst, len) || match.sport !== plan.sport,
    dnat: !sameAddr(match.dst, out.src, len) || match.dport !== plan.dport,
  };
}
