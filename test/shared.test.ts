// Connections share one copy of equal addresses, plain ingresses and next hops; unequal ones stay apart.
import { describe, expect, test } from "bun:test";
import type { CtEntry } from "../src/conntrack.ts";
import type { NextHop } from "../src/nexthop.ts";
import { SharedValues } from "../src/shared.ts";

function addr(...bytes: number[]): Uint8Array {
  const a = new Uint8Array(16);
  a.set(bytes);
  return a;
}

function entry(sport: number, family: 2 | 10 = 2): CtEntry {
  const [client, server, nat] = family === 2
    ? [addr(10, 0, 0, 2), addr(10, 1, 0, 2), addr(10, 1, 0, 1)]
    : [addr(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2), addr(0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2), addr(0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)];
  return {
    id: sport, zone: 0, mark: 0, status: 8, tcpState: null, helper: null, timeout: 30,
    orig: { family, proto: 17, src: client, dst: server, sport, dport: 53 },
    reply: { family, proto: 17, src: server, dst: nat, sport: 53, dport: sport },
  };
}

function hop(over: Partial<NextHop> = {}): NextHop {
  return {
    oif: 3, l3Oif: 3, encap: { vlans: [], pppoeSid: null, dsaPort: null }, gateway: null, gatewayFamily: 2,
    dmac: new Uint8Array([2, 0, 0, 0, 0, 9]), smac: new Uint8Array([2, 0, 0, 0, 0, 1]), mtu: 1500, ...over,
  };
}

describe("addresses", () => {
  for (const family of [2, 10] as const) {
    test(`IPv${family === 2 ? 4 : 6}: equal addresses of different entries become one array, values unchanged`, () => {
      const s = new SharedValues();
      const a = s.entry(entry(1000, family));
      const b = s.entry(entry(1001, family));
      expect(b.orig.src).toBe(a.orig.src);
      expect(b.orig.dst).toBe(a.orig.dst);
      expect(b.reply.src).toBe(a.orig.dst); // the server, in either tuple
      expect(b.reply.dst).not.toBe(b.orig.src);
      expect(b.orig.src).toEqual(entry(0, family).orig.src);
      expect(b.reply.dport).toBe(1001);
      expect(b.id).toBe(1001);
    });
  }
});

describe("ingresses", () => {
  test("plain Ethernet: one object per device", () => {
    const s = new SharedValues();
    const plain = { vlans: [], pppoeSid: null, dsaPort: null };
    expect(s.ingress(2, plain)).toBe(s.ingress(2, { ...plain }));
    expect(s.ingress(3, plain)).not.toBe(s.ingress(2, plain));
    expect(s.ingress(3, plain)).toEqual({ ifindex: 3, encap: plain });
  });

  test("with an encapsulation: the values as given", () => {
    const s = new SharedValues();
    const vlan = { vlans: [{ id: 7, proto: 0x8100 }], pppoeSid: null, dsaPort: null };
    const i = s.ingress(2, vlan);
    expect(i).toEqual({ ifindex: 2, encap: vlan });
    expect(s.ingress(2, { vlans: [], pppoeSid: null, dsaPort: null }).encap.vlans).toHaveLength(0);
  });
});

describe("next hops", () => {
  test("an equal next hop (equal MACs in other arrays) is the first one", () => {
    const s = new SharedValues();
    const first = s.hop(hop());
    expect(s.hop(hop())).toBe(first);
  });

  test("any difference keeps them apart", () => {
    const variants: Partial<NextHop>[] = [
      { oif: 4 }, { l3Oif: 5 }, { mtu: 1492 }, { gateway: addr(10, 1, 0, 254) }, { gatewayFamily: 10 },
      { dmac: new Uint8Array([2, 0, 0, 0, 0, 8]) }, { smac: new Uint8Array([2, 0, 0, 0, 0, 2]) },
      { encap: { vlans: [{ id: 7, proto: 0x8100 }], pppoeSid: null, dsaPort: null } },
      { encap: { vlans: [], pppoeSid: 0x1234, dsaPort: null } }, { encap: { vlans: [], pppoeSid: null, dsaPort: 1 } },
    ];
    const s = new SharedValues();
    const base = s.hop(hop());
    for (const v of variants) {
      const h = s.hop(hop(v));
      expect(h).not.toBe(base);
      expect(h).toEqual(hop(v));
    }
  });

  test("802.1Q and 802.1ad tags with the same id differ", () => {
    const s = new SharedValues();
    const q = s.hop(hop({ encap: { vlans: [{ id: 7, proto: 0x8100 }], pppoeSid: null, dsaPort: null } }));
    const ad = s.hop(hop({ encap: { vlans: [{ id: 7, proto: 0x88a8 }], pppoeSid: null, dsaPort: null } }));
    expect(ad).not.toBe(q);
  });
});
