// Connections refer to one copy of equal ingresses and next hops by index; unequal ones stay
// apart, and a value goes when the last connection lets go of it.
import { describe, expect, test } from "bun:test";
import type { NextHop } from "../src/nexthop.ts";
import { type Ingress, Interned, equalIngress, equalNextHop, hopKey, ingressKey } from "../src/shared.ts";

function addr(...bytes: number[]): Uint8Array {
  const a = new Uint8Array(16);
  a.set(bytes);
  return a;
}

function hop(over: Partial<NextHop> = {}): NextHop {
  return {
    oif: 3, l3Oif: 3, encap: { vlans: [], pppoeSid: null, dsaPort: null }, gateway: null, gatewayFamily: 2,
    dmac: new Uint8Array([2, 0, 0, 0, 0, 9]), smac: new Uint8Array([2, 0, 0, 0, 0, 1]), mtu: 1500, ...over,
  };
}

const VARIANTS: Partial<NextHop>[] = [
  { oif: 4 }, { l3Oif: 5 }, { mtu: 1492 }, { gateway: addr(10, 1, 0, 254) }, { gatewayFamily: 10 },
  { dmac: new Uint8Array([2, 0, 0, 0, 0, 8]) }, { smac: new Uint8Array([2, 0, 0, 0, 0, 2]) },
  { encap: { vlans: [{ id: 7, proto: 0x8100 }], pppoeSid: null, dsaPort: null } },
  { encap: { vlans: [{ id: 7, proto: 0x88a8 }], pppoeSid: null, dsaPort: null } },
  { encap: { vlans: [], pppoeSid: 0x1234, dsaPort: null } }, { encap: { vlans: [], pppoeSid: null, dsaPort: 1 } },
];

const hops = () => new Interned<NextHop>(hopKey, equalNextHop);

describe("next hops", () => {
  test("an equal next hop (equal MACs in other arrays) gets the first one's index and value", () => {
    const s = hops();
    const first = hop();
    const i = s.acquire(first);
    expect(s.acquire(hop())).toBe(i);
    expect(s.get(i)).toBe(first);
    expect(s.size).toBe(1);
  });

  test("any difference keeps them apart, the recently used ones and the rest alike", () => {
    const s = hops();
    const base = s.acquire(hop());
    // More distinct values than are compared field by field: the later ones are found by key.
    const first = VARIANTS.map((v) => s.acquire(hop(v)));
    expect(new Set([base, ...first]).size).toBe(VARIANTS.length + 1);
    VARIANTS.forEach((v, n) => {
      const i = s.acquire(hop(v));
      expect(i).toBe(first[n]!);
      expect(s.get(i)).toEqual(hop(v));
    });
    expect(s.acquire(hop())).toBe(base);
  });

  test("the last release drops the value; its index is reused for another", () => {
    const s = hops();
    const i = s.acquire(hop());
    s.acquire(hop());
    s.release(i);
    expect(s.get(i)).toEqual(hop());
    s.release(i);
    expect(() => s.get(i)).toThrow();
    expect(s.size).toBe(0);
    const j = s.acquire(hop({ oif: 9 }));
    expect(j).toBe(i);
    expect(s.get(j).oif).toBe(9);
    // The dropped value comes back as a new entry, not as the reused index.
    expect(s.acquire(hop())).not.toBe(j);
  });
});

describe("ingresses", () => {
  test("by device and encapsulation", () => {
    const s = new Interned<Ingress>(ingressKey, equalIngress);
    const plain = { vlans: [], pppoeSid: null, dsaPort: null };
    const vlan = { vlans: [{ id: 7, proto: 0x8100 }], pppoeSid: null, dsaPort: null };
    const a = s.acquire({ ifindex: 2, encap: plain });
    expect(s.acquire({ ifindex: 2, encap: { ...plain, vlans: [] } })).toBe(a);
    expect(s.acquire({ ifindex: 3, encap: plain })).not.toBe(a);
    const v = s.acquire({ ifindex: 2, encap: vlan });
    expect(v).not.toBe(a);
    expect(s.get(v)).toEqual({ ifindex: 2, encap: vlan });
  });
});
