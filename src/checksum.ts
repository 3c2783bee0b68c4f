// Internet checksum arithmetic (RFC 1071) and incremental updates (RFC 1624).
//
// The datapath never recomputes a checksum: user space computes, once per flow, the
// one's-complement difference ("delta") that NAT and the TTL decrement make to the summed 16-bit
// words, and the datapath folds it into the packet's checksum field with RFC 1624 eqn 3:
//   HC' = ~(~HC + delta)
// All values here are 16-bit numbers in host representation of the big-endian words on the wire.

/**
 * The IPv4 header word at bytes 8-9 is TTL << 8 | protocol. Decrementing the TTL (which is at
 * least 1 on any packet we forward) lowers that word by exactly 0x0100 without a borrow, so its
 * contribution ~old + new = ~old + old - 0x0100 = 0xffff - 0x0100 = 0xfeff is the same for every
 * packet and can be folded into the per-flow header delta.
 */
export const TTL_DECREMENT_DELTA = 0xfeff;

/** Folds a non-negative integer (up to 2^53) into 16 bits with end-around carry. */
export function csumFold(x: number): number {
  while (x > 0xffff) x = (x % 0x10000) + Math.floor(x / 0x10000);
  return x;
}

/** One's-complement sum of two 16-bit values (or partial sums). */
export function csumAdd(a: number, b: number): number {
  return csumFold(a + b);
}

/** Plain one's-complement sum of big-endian 16-bit words (an odd last byte is padded with 0). */
function sumWords(bytes: Uint8Array, skip = -1): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    if (i === skip) continue;
    s += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  }
  return s;
}

/**
 * RFC 1624 delta for replacing oldBytes with newBytes (same length, starting on a 16-bit
 * boundary of the checksummed data): the folded sum of ~old + new over the 16-bit words.
 * "No change" is returned as 0 (never as its one's-complement twin 0xffff).
 */
export function csumDelta(oldBytes: Uint8Array, newBytes: Uint8Array): number {
  if (oldBytes.length !== newBytes.length) {
    throw new RangeError(`checksum delta needs equal lengths, got ${oldBytes.length} and ${newBytes.length}`);
  }
  let s = 0;
  for (let i = 0; i < oldBytes.length; i += 2) {
    const o = (oldBytes[i]! << 8) | (oldBytes[i + 1] ?? 0);
    const n = (newBytes[i]! << 8) | (newBytes[i + 1] ?? 0);
    s += wordDelta(o, n);
  }
  return finishDelta(s);
}

/** The sum term that replaces the 16-bit word o by n. */
export function wordDelta(o: number, n: number): number {
  return (~o & 0xffff) + n;
}

/** A sum of wordDelta() terms as csumDelta returns it (folded, 0 rather than 0xffff). */
export function finishDelta(s: number): number {
  const d = csumFold(s);
  return d === 0xffff ? 0 : d;
}

/** Applies a delta to a checksum field (RFC 1624 eqn 3: HC' = ~(~HC + delta)). */
export function applyDelta(checksum: number, delta: number): number {
  return ~csumFold((~checksum & 0xffff) + delta) & 0xffff;
}

/** Header checksum of an IPv4 header (its checksum field, bytes 10-11, counts as zero). */
export function ipv4HeaderChecksum(header: Uint8Array): number {
  return ~csumFold(sumWords(header, 10)) & 0xffff;
}

/** Offset of the checksum field in a TCP (6) or UDP (17) header. */
export function l4ChecksumOffset(proto: number): number {
  if (proto === 6) return 16;
  if (proto === 17) return 6;
  throw new RangeError(`no L4 checksum offset for protocol ${proto}`);
}

/** The pseudo-header sum (addresses, protocol, length) of an IPv4 (2) or IPv6 (10) packet. */
export function pseudoHeaderSum(family: 2 | 10, src: Uint8Array, dst: Uint8Array, proto: number, length: number): number {
  const alen = family === 2 ? 4 : 16;
  return csumFold(sumWords(src.subarray(0, alen)) + sumWords(dst.subarray(0, alen)) + proto + length);
}

/**
 * Full TCP/UDP checksum of a segment (header and payload; its checksum field counts as zero).
 * Addresses are 16-byte arrays, IPv4 in the first 4 bytes. A UDP result of 0 is returned as
 * 0xffff, since 0 on the wire means "no checksum" (RFC 768).
 */
export function l4Checksum(family: 2 | 10, src: Uint8Array, dst: Uint8Array, proto: number, segment: Uint8Array): number {
  const s = pseudoHeaderSum(family, src, dst, proto, segment.length) + sumWords(segment, l4ChecksumOffset(proto));
  const c = ~csumFold(s) & 0xffff;
  return proto === 17 && c === 0 ? 0xffff : c;
}
