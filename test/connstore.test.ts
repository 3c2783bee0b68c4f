// The typed-array connection store: both tuples of a connection find its slot and direction,
// removal (with the index's backward shift) keeps every other tuple findable, and the entry
// comes back as it went in.
import { describe, expect, test } from "bun:test";
import type { CtEntry } from "../src/conntrack.ts";
import { ConnStore } from "../src/connstore.ts";
import type { Tuple } from "../src/nat.ts";

function v4(...b: number[]): Uint8Array {
  return new Uint8Array(b);
}

function v6(last: number): Uint8Array {
  const a = new Uint8Array(16);
  a[0] = 0xfd;
  a[15] = last;
  return a;
}

function entry(sport: number, family: 2 | 10 = 2, proto = 17): CtEntry {
  const [client, server, nat] = family === 2 ? [v4(10, 0, 0, 2), v4(10, 1, 0, 2), v4(10, 1, 0, 1)] : [v6(2), v6(0x22), v6(1)];
  return {
    id: sport * 7, zone: 3, mark: 0x10, status: 0x18e, tcpState: proto === 6 ? 3 : null, helper: null, timeout: 29,
    orig: { family, proto, src: client, dst: server, sport, dport: 53 },
    reply: { family, proto, src: server, dst: nat, sport: 53, dport: sport },
  };
}

describe("one connection", () => {
  for (const family of [2, 10] as const) {
    test(`IPv${family === 2 ? 4 : 6}: found by either tuple; the entry comes back equal`, () => {
      const s = new ConnStore(8);
      const e = entry(40000, family, 6);
      s.add(5, e, 100, 90, true);
      expect(s.find(e.orig)).toBe(10);
      expect(s.find(e.reply)).toBe(11);
      expect(s.entry(5)).toEqual(e);
      expect(s.has(5)).toBe(true);
      expect(s.has(4)).toBe(false);
      expect(s.size).toBe(1);
      expect(s.end).toBe(6);
      expect([s.lastActive[5], s.lastRefresh[5], s.activeSinceRefresh(5)]).toEqual([100, 90, true]);
      // Any one field different: not found.
      const other: Tuple[] = [
        { ...e.orig, sport: 40001 }, { ...e.orig, dport: 54 }, { ...e.orig, proto: 17 },
        { ...e.orig, src: e.reply.dst }, { ...e.orig, dst: e.reply.dst },
      ];
      for (const t of other) expect(s.find(t)).toBe(-1);
    });
  }

  test("IPv4 addresses given in 16 bytes: found by the 4-byte form and back in 16 bytes", () => {
    const s = new ConnStore(1);
    const e = entry(1000);
    const wide = (a: Uint8Array) => {
      const w = new Uint8Array(16);
      w.set(a);
      return w;
    };
    const w: CtEntry = { ...e, orig: { ...e.orig, src: wide(e.orig.src), dst: wide(e.orig.dst) }, reply: { ...e.reply, src: wide(e.reply.src), dst: wide(e.reply.dst) } };
    s.add(0, w, 0, 0, false);
    expect(s.find(e.orig)).toBe(0);
    expect(s.entry(0)).toEqual(w);
  });

  test("a slot beyond the capacity is refused, the last one taken", () => {
    const s = new ConnStore(4);
    expect(() => s.add(4, entry(1000), 0, 0, false)).toThrow(RangeError);
    expect(s.size).toBe(0);
    s.add(3, entry(1001), 0, 0, false);
    expect(s.find(entry(1001).orig)).toBe(6);
    expect(s.end).toBe(4);
  });

  test("setEntry takes over what changes; the tuples stay", () => {
    const s = new ConnStore(1);
    const e = entry(1000, 2, 6);
    s.add(0, e, 0, 0, false);
    s.setEntry(0, { ...e, mark: 7, status: 0x1ce, tcpState: 4, timeout: 100, reply: entry(2000).reply });
    expect(s.entry(0)).toEqual({ ...e, mark: 7, status: 0x1ce, tcpState: 4, timeout: 100 });
    expect(s.find(e.reply)).toBe(1);
  });
});

describe("many connections", () => {
  test("random adds and removes agree with a Map, through index growth and collisions", () => {
    const s = new ConnStore(6000);
    const ref = new Map<number, CtEntry>();
    let seed = 1;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let step = 0; step < 40_000; step++) {
      const slot = rand(6000);
      if (ref.has(slot)) {
        s.remove(slot);
        ref.delete(slot);
      } else {
        // Both families, the same hosts throughout: only the ports tell the tuples apart.
        const e = entry(1024 + slot, slot % 3 === 0 ? 10 : 2);
        s.add(slot, e, step, step, false);
        ref.set(slot, e);
      }
    }
    expect(s.size).toBe(ref.size);
    for (let slot = 0; slot < 6000; slot++) {
      const e = ref.get(slot) ?? entry(1024 + slot, slot % 3 === 0 ? 10 : 2);
      expect(s.has(slot)).toBe(ref.has(slot));
      expect(s.find(e.orig)).toBe(ref.has(slot) ? slot * 2 : -1);
      expect(s.find(e.reply)).toBe(ref.has(slot) ? slot * 2 + 1 : -1);
    }
  });
});
