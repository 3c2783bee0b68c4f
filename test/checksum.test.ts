import { expect, test } from "bun:test";
import {
  TTL_DECREMENT_DELTA,
  applyDelta,
  csumAdd,
  csumDelta,
  csumFold,
  ipv4HeaderChecksum,
  l4Checksum,
} from "../src/checksum.ts";

function hex(s: string): Uint8Array {
  return new Uint8Array((s.replace(/\s+/g, "").match(/../g) ?? []).map((b) => parseInt(b, 16)));
}

test("fold carries around", () => {
  expect(csumFold(0)).toBe(0);
  expect(csumFold(0xffff)).toBe(0xffff);
  expect(csumFold(0x10000)).toBe(1);
  expect(csumFold(0x1fffe)).toBe(0xffff);
  expect(csumFold(0xffffffff)).toBe(0xffff);
  expect(csumFold(2 ** 32 + 5)).toBe(6);
  expect(csumFold(2 ** 40 + 5)).toBe(0x105);
  expect(csumAdd(0xffff, 1)).toBe(1);
  expect(csumAdd(0x8000, 0x8000)).toBe(1);
});

test("IPv4 header checksum of a known header", () => {
  // Classic example header (checksum 0xb861).
  const h = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
  expect(ipv4HeaderChecksum(h)).toBe(0xb861);
  h[10] = 0;
  h[11] = 0;
  expect(ipv4HeaderChecksum(h)).toBe(0xb861);
});

test("a computed UDP checksum verifies, and a computed 0 is sent as 0xffff", () => {
  const src = new Uint8Array(16);
  const dst = new Uint8Array(16);
  src.set([192, 168, 0, 1]);
  dst.set([192, 168, 0, 199]);
  const pseudo = 0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 10;
  const seg = hex("0400 0035 000a 0000 6869");
  const c = l4Checksum(2, src, dst, 17, seg);
  seg[6] = c >> 8;
  seg[7] = c & 0xff;
  let s = pseudo;
  for (let i = 0; i < seg.length; i += 2) s += (seg[i]! << 8) | seg[i + 1]!;
  expect(csumFold(s)).toBe(0xffff); // a receiver's sum over everything is -0: valid

  // Payload chosen so that the total sum is 0xffff, whose complement would be 0.
  const z = new Uint8Array(10);
  const fill = ~csumFold(pseudo) & 0xffff;
  z[8] = fill >> 8;
  z[9] = fill & 0xff;
  expect(l4Checksum(2, src, dst, 17, z)).toBe(0xffff);
});

test("delta: identical bytes give 0, never 0xffff", () => {
  expect(csumDelta(hex("0000 ffff 1234"), hex("0000 ffff 1234"))).toBe(0);
  expect(csumDelta(hex("ffff"), hex("0000"))).toBe(0);
  expect(csumDelta(hex("0000"), hex("ffff"))).toBe(0);
  expect(csumDelta(hex(""), hex(""))).toBe(0);
  expect(() => csumDelta(hex("00"), hex("0000"))).toThrow(RangeError);
});

test("TTL decrement contributes 0xfeff to the IPv4 header checksum", () => {
  for (const ttl of [1, 2, 64, 128, 255]) {
    for (const proto of [0, 6, 17, 255]) {
      const h = hex("4500 0073 1234 4000 0000 0000 0a00 0001 c0a8 00c7");
      h[8] = ttl;
      h[9] = proto;
      const before = ipv4HeaderChecksum(h);
      expect(csumDelta(new Uint8Array([ttl, proto]), new Uint8Array([ttl - 1, proto]))).toBe(TTL_DECREMENT_DELTA);
      h[8] = ttl - 1;
      expect(applyDelta(before, TTL_DECREMENT_DELTA)).toBe(ipv4HeaderChecksum(h));
    }
  }
});

test("applyDelta matches full recomputation for random word changes, including 0 and 0xffff words", () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 8;
  const special = [0, 0xffff, 0x0001, 0xfffe, 0x8000];
  const word = () => (rnd() % 4 === 0 ? special[rnd() % special.length]! : rnd() & 0xffff);
  for (let n = 0; n < 5000; n++) {
    const h = new Uint8Array(20);
    for (let i = 0; i < 20; i += 2) {
      const w = word();
      h[i] = w >> 8;
      h[i + 1] = w & 0xff;
    }
    h[0] = 0x45; // never an all-zero header
    const before = ipv4HeaderChecksum(h);
    const at = 12 + 2 * (rnd() % 4); // somewhere in the addresses
    const len = 2 * (1 + (rnd() % ((20 - at) / 2)));
    const old = h.slice(at, at + len);
    const neu = old.map(() => word() & 0xff);
    h.set(neu, at);
    expect(applyDelta(before, csumDelta(old, neu))).toBe(ipv4HeaderChecksum(h));
  }
});
