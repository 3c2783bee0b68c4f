// The lookup cache keeps rtnetlink answers only until an event may have changed them.
import { describe, expect, test } from "bun:test";
import type { FdbReply, LinkInfo, NeighReply, RouteReply } from "../src/netlink.ts";
import { LookupCache, type RouteKey } from "../src/rtcache.ts";

function addr(...bytes: number[]): Uint8Array {
  const a = new Uint8Array(16);
  a.set(bytes);
  return a;
}

const route: RouteReply = { type: 1, table: 254, oif: 3, gateway: null, gatewayFamily: 2, multipath: false, encap: false, nhid: 0, mtu: 0 };
const neigh: NeighReply = { state: 0x02, lladdr: new Uint8Array([2, 0, 0, 0, 0, 1]) };
const fdb: FdbReply = { ifindex: 5, master: 4, vlan: 0, state: 0, flags: 0, lladdr: new Uint8Array(6) };
const link = { ifindex: 3, name: "wan", mtu: 1500 } as LinkInfo;
const q: RouteKey = { family: 2, iif: 2, mark: 0, src: addr(10, 0, 0, 2), dst: addr(10, 1, 0, 2), proto: 17, sport: 1000, dport: 53 };

function filled(): LookupCache {
  const c = new LookupCache();
  c.l4Rules = false;
  c.setRoute(q, route);
  c.setLink(3, link);
  c.setNeigh(2, 3, addr(10, 1, 0, 2), neigh);
  c.setFdb(4, new Uint8Array(6), 0, fdb);
  c.setForwarding(10, -1, true);
  return c;
}

describe("route answers", () => {
  test("without rules on protocol or ports, one answer serves every port of the same hosts", () => {
    const c = filled();
    expect(c.route({ ...q, sport: 2000, proto: 6 })).toBe(route);
    expect(c.route({ ...q, src: addr(10, 0, 0, 3) })).toBeUndefined();
    expect(c.route({ ...q, mark: 1 })).toBeUndefined();
    expect(c.route({ ...q, iif: 7 })).toBeUndefined();
  });

  test("with such rules (or not knowing), the ports are part of the key", () => {
    const c = new LookupCache();
    c.l4Rules = true;
    c.setRoute(q, route);
    expect(c.route(q)).toBe(route);
    expect(c.route({ ...q, sport: 2000 })).toBeUndefined();
    const unknown = new LookupCache();
    unknown.setRoute(q, route);
    expect(unknown.route({ ...q, dport: 54 })).toBeUndefined();
  });

  test("refusals are kept as their errno", () => {
    const c = filled();
    c.setRoute({ ...q, dst: addr(10, 9, 9, 9) }, { errno: 101, extack: null });
    expect(c.route({ ...q, dst: addr(10, 9, 9, 9) })).toEqual({ errno: 101, extack: null });
  });
});

describe("invalidation", () => {
  test("a routing event (route, rule, address, netconf) drops routes and forwarding, and the rule check", () => {
    const c = filled();
    c.invalidate({ kind: "routing" });
    expect(c.route(q)).toBeUndefined();
    expect(c.forwarding(10, -1)).toBeUndefined();
    expect(c.l4Rules).toBeNull();
    expect(c.link(3)).toBe(link);
    expect(c.neigh(2, 3, addr(10, 1, 0, 2))).toBe(neigh);
  });

  test("a neighbour event drops that neighbour only", () => {
    const c = filled();
    c.setNeigh(2, 3, addr(10, 1, 0, 9), neigh);
    c.invalidate({ kind: "neigh", ifindex: 3, family: 2, dst: addr(10, 1, 0, 2), lladdr: null, state: 0x20, deleted: false });
    expect(c.neigh(2, 3, addr(10, 1, 0, 2))).toBeUndefined();
    expect(c.neigh(2, 3, addr(10, 1, 0, 9))).toBe(neigh);
    expect(c.route(q)).toBe(route);
  });

  test("a neighbour of the same address on another device or family stays", () => {
    const c = filled();
    c.invalidate({ kind: "neigh", ifindex: 4, family: 2, dst: addr(10, 1, 0, 2), lladdr: null, state: 0x20, deleted: true });
    expect(c.neigh(2, 3, addr(10, 1, 0, 2))).toBe(neigh);
  });

  test("an FDB event drops the FDB answers", () => {
    const c = filled();
    c.setFdb(4, new Uint8Array([2, 0, 0, 0, 0, 7]), 0, null);
    c.invalidate({ kind: "fdb", ifindex: 5, lladdr: new Uint8Array(6), deleted: false });
    expect(c.fdb(4, new Uint8Array(6), 0)).toBeUndefined();
    expect(c.fdb(4, new Uint8Array([2, 0, 0, 0, 0, 7]), 0)).toBeUndefined();
    expect(c.route(q)).toBe(route);
  });

  test("a link event drops everything (IPv4 routes of a device going down vanish without events)", () => {
    const c = filled();
    c.invalidate({ kind: "link", ifindex: 9, up: true, deleted: false });
    expect(c.size).toBe(0);
    expect(c.l4Rules).toBeNull();
  });

  test("a qdisc event drops nothing", () => {
    const c = filled();
    const before = c.size;
    c.invalidate({ kind: "qdisc" });
    expect(c.size).toBe(before);
  });

  test("a missing neighbour is remembered as missing until an event about it", () => {
    const c = new LookupCache();
    c.setNeigh(2, 3, addr(10, 0, 0, 7), null);
    expect(c.neigh(2, 3, addr(10, 0, 0, 7))).toBeNull();
    c.invalidate({ kind: "neigh", ifindex: 3, family: 2, dst: addr(10, 0, 0, 7), lladdr: neigh.lladdr, state: 0x02, deleted: false });
    expect(c.neigh(2, 3, addr(10, 0, 0, 7))).toBeUndefined();
  });

  test("a missing link is remembered as missing until a link event", () => {
    const c = new LookupCache();
    c.setLink(12, null);
    expect(c.link(12)).toBeNull();
    expect(c.link(13)).toBeUndefined();
    c.invalidate({ kind: "link", ifindex: 12, up: false, deleted: false });
    expect(c.link(12)).toBeUndefined();
  });
});

test("a map that grows past its bound starts over instead of growing", () => {
  const c = new LookupCache();
  c.l4Rules = false;
  for (let i = 0; i < 8192; i++) c.setRoute({ ...q, dst: addr(10, 2, i >> 8, i & 0xff) }, route);
  expect(c.size).toBe(8192);
  c.setRoute({ ...q, dst: addr(10, 3, 0, 1) }, route);
  expect(c.size).toBe(1);
});
