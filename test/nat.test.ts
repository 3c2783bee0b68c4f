import { describe, expect, test } from "bun:test";
import { applyDelta, csumAdd, ipv4HeaderChecksum, l4Checksum, l4ChecksumOffset, pseudoHeaderSum } from "../src/checksum.ts";
import { type DirectionPlan, NatPlanError, type Tuple, planDirection } from "../src/nat.ts";

// Deterministic pseudo-random numbers, so a failure can be reproduced.
let seed = 0x5eed;
function rnd(n: number): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return Math.floor((seed / 2 ** 32) * n);
}

const SPECIAL_WORDS = [0x0000, 0xffff, 0x0001, 0xfffe];

/** Random bytes, often made of all-zero / all-one words to hit the one's-complement edges. */
function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 2) {
    const w = rnd(3) === 0 ? SPECIAL_WORDS[rnd(SPECIAL_WORDS.length)]! : rnd(0x10000);
    b[i] = w >> 8;
    if (i + 1 < n) b[i + 1] = w & 0xff;
  }
  return b;
}

function randomAddr(family: 2 | 10): Uint8Array {
  const a = new Uint8Array(16);
  a.set(randomBytes(family === 2 ? 4 : 16));
  return a;
}

function randomPort(): number {
  return rnd(4) === 0 ? SPECIAL_WORDS[rnd(SPECIAL_WORDS.length)]! : rnd(0x10000);
}

function v4(a: number, b: number, c: number, d: number): Uint8Array {
  const x = new Uint8Array(16);
  x.set([a, b, c, d]);
  return x;
}

/** A random connection with random source and/or destination NAT. */
function randomConnection(): { orig: Tuple; reply: Tuple } {
  const family = rnd(2) === 0 ? 2 : 10;
  const proto = rnd(2) === 0 ? 6 : 17;
  const orig: Tuple = { family, proto, src: randomAddr(family), dst: randomAddr(family), sport: randomPort(), dport: randomPort() };
  const reply: Tuple = { family, proto, src: orig.dst, dst: orig.src, sport: orig.dport, dport: orig.sport };
  if (rnd(2)) reply.dst = randomAddr(family); // SNAT address
  if (rnd(2)) reply.dport = randomPort(); // SNAT port
  if (rnd(2)) reply.src = randomAddr(family); // DNAT address
  if (rnd(2)) reply.sport = randomPort(); // DNAT port
  return { orig, reply };
}

interface Packet {
  family: 2 | 10;
  proto: number;
  ip: Uint8Array; // IPv4 header (20 bytes) or the IPv6 addresses only (no checksum)
  src: Uint8Array;
  dst: Uint8Array;
  seg: Uint8Array; // TCP or UDP header and payload
}

const u16 = (b: Uint8Array, off: number) => (b[off]! << 8) | b[off + 1]!;
function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = v >> 8;
  b[off + 1] = v & 0xff;
}

/** Builds a packet matching tuple t, with random other fields and complete checksums. */
function buildPacket(t: Tuple): Packet {
  const hdrLen = t.proto === 6 ? 20 : 8;
  const seg = randomBytes(hdrLen + rnd(40)); // payload of any length, odd ones included
  put16(seg, 0, t.sport);
  put16(seg, 2, t.dport);
  if (t.proto === 17) put16(seg, 4, seg.length);
  const src = t.src.slice();
  const dst = t.dst.slice();
  const ip = randomBytes(20);
  if (t.family === 2) {
    ip[0] = 0x45;
    put16(ip, 2, 20 + seg.length);
    ip[8] = 2 + rnd(254); // TTL > 1: forwardable
    ip[9] = t.proto;
    ip.set(src.subarray(0, 4), 12);
    ip.set(dst.subarray(0, 4), 16);
    put16(ip, 10, ipv4HeaderChecksum(ip));
  }
  put16(seg, l4ChecksumOffset(t.proto), l4Checksum(t.family, src, dst, t.proto, seg));
  return { family: t.family, proto: t.proto, ip, src, dst, seg };
}

/** What the datapath does: rewrite fields and patch checksums with the planned deltas only. */
function applyPlan(p: Packet, plan: DirectionPlan): void {
  p.src = plan.saddr.slice();
  p.dst = plan.daddr.slice();
  put16(p.seg, 0, plan.sport);
  put16(p.seg, 2, plan.dport);
  if (p.family === 2) {
    p.ip.set(p.src.subarray(0, 4), 12);
    p.ip.set(p.dst.subarray(0, 4), 16);
    p.ip[8]! -= 1;
    put16(p.ip, 10, applyDelta(u16(p.ip, 10), plan.l3CsumDelta));
  }
  const off = l4ChecksumOffset(p.proto);
  let c = applyDelta(u16(p.seg, off), csumAdd(plan.l4CsumPseudo, plan.l4CsumPorts));
  if (p.proto === 17 && c === 0) c = 0xffff;
  put16(p.seg, off, c);
}

describe("planDirection", () => {
  test("masquerade example: both directions", () => {
    const client = v4(192, 168, 1, 10);
    const server = v4(8, 8, 8, 8);
    const wan = v4(203, 0, 113, 5);
    const orig: Tuple = { family: 2, proto: 17, src: client, dst: server, sport: 40000, dport: 53 };
    const reply: Tuple = { family: 2, proto: 17, src: server, dst: wan, sport: 53, dport: 61000 };
    const d0 = planDirection(orig, reply, 0);
    expect(d0.match).toBe(orig);
    expect([d0.saddr, d0.daddr, d0.sport, d0.dport]).toEqual([wan, server, 61000, 53]);
    expect([d0.snat, d0.dnat]).toEqual([true, false]);
    const d1 = planDirection(orig, reply, 1);
    expect(d1.match).toBe(reply);
    expect([d1.saddr, d1.daddr, d1.sport, d1.dport]).toEqual([server, client, 53, 40000]);
    expect([d1.snat, d1.dnat]).toEqual([false, true]);
  });

  test("no NAT: only the IPv4 TTL delta is non-zero", () => {
    for (const family of [2, 10] as const) {
      const a = randomAddr(family);
      const b = randomAddr(family);
      const orig: Tuple = { family, proto: 6, src: a, dst: b, sport: 1234, dport: 80 };
      const reply: Tuple = { family, proto: 6, src: b, dst: a, sport: 80, dport: 1234 };
      for (const dir of [0, 1] as const) {
        const p = planDirection(orig, reply, dir);
        expect(p.l3CsumDelta).toBe(family === 2 ? 0xfeff : 0);
        expect(p.l4CsumPseudo).toBe(0);
        expect(p.l4CsumPorts).toBe(0);
        expect([p.snat, p.dnat]).toEqual([false, false]);
      }
    }
  });

  test("port-only NAT leaves the pseudo-header part 0", () => {
    const a = v4(10, 0, 0, 1);
    const b = v4(10, 0, 0, 2);
    const orig: Tuple = { family: 2, proto: 6, src: a, dst: b, sport: 1000, dport: 80 };
    const reply: Tuple = { family: 2, proto: 6, src: b, dst: a, sport: 8080, dport: 1000 };
    const p = planDirection(orig, reply, 0);
    expect(p.l4CsumPseudo).toBe(0);
    expect(p.l3CsumDelta).toBe(0xfeff);
    expect(p.l4CsumPorts).not.toBe(0);
    expect([p.snat, p.dnat]).toEqual([false, true]);
  });

  test("0.0.0.0 <-> 255.255.255.255 is a one's-complement no-op and still patches correctly", () => {
    const zero = v4(0, 0, 0, 0);
    const ones = v4(255, 255, 255, 255);
    const orig: Tuple = { family: 2, proto: 17, src: zero, dst: ones, sport: 0, dport: 0xffff };
    const reply: Tuple = { family: 2, proto: 17, src: zero, dst: ones, sport: 0xffff, dport: 0 };
    for (const dir of [0, 1] as const) {
      const plan = planDirection(orig, reply, dir);
      expect(plan.l4CsumPseudo).toBe(0);
      expect(plan.l4CsumPorts).toBe(0);
      expect([plan.snat, plan.dnat]).toEqual([true, true]);
      const p = buildPacket(plan.match);
      applyPlan(p, plan);
      const off = l4ChecksumOffset(p.proto);
      expect(u16(p.seg, off)).toBe(l4Checksum(p.family, p.src, p.dst, p.proto, p.seg));
      expect(u16(p.ip, 10)).toBe(ipv4HeaderChecksum(p.ip));
    }
  });

  test("rejects a family change between directions", () => {
    const orig: Tuple = { family: 2, proto: 6, src: v4(1, 1, 1, 1), dst: v4(2, 2, 2, 2), sport: 1, dport: 2 };
    const reply: Tuple = { ...orig, family: 10 };
    expect(() => planDirection(orig, reply, 0)).toThrow(NatPlanError);
  });

  test("random NAT: incremental patching equals full recomputation (10,000 packets)", () => {
    const counts = { v4: 0, v6: 0, tcp: 0, udp: 0, snat: 0, dnat: 0 };
    for (let n = 0; n < 5000; n++) {
      const { orig, reply } = randomConnection();
      for (const dir of [0, 1] as const) {
        const plan = planDirection(orig, reply, dir);
        const p = buildPacket(plan.match);
        const where = `seed state ${seed}, ${JSON.stringify({ orig, reply, dir })}`;

        // CHECKSUM_PARTIAL: the field holds the plain pseudo-header sum; only l4CsumPseudo applies.
        const partial = pseudoHeaderSum(p.family, p.src, p.dst, p.proto, p.seg.length);
        const patched = csumAdd(partial, plan.l4CsumPseudo);
        expect(patched, where).toBe(pseudoHeaderSum(p.family, plan.saddr, plan.daddr, p.proto, p.seg.length));

        applyPlan(p, plan);
        const off = l4ChecksumOffset(p.proto);
        expect(u16(p.seg, off), where).toBe(l4Checksum(p.family, p.src, p.dst, p.proto, p.seg));
        if (p.family === 2) expect(u16(p.ip, 10), where).toBe(ipv4HeaderChecksum(p.ip));
        else expect(plan.l3CsumDelta).toBe(0);

        counts[p.family === 2 ? "v4" : "v6"]++;
        counts[p.proto === 6 ? "tcp" : "udp"]++;
        if (plan.snat) counts.snat++;
        if (plan.dnat) counts.dnat++;
      }
    }
    // The generator covered every combination.
    for (const v of Object.values(counts)) expect(v).toBeGreaterThan(1000);
  });
});
