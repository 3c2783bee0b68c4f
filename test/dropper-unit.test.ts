// The dropper's decisions without root: which reported drops may become drop entries, when an
// entry expires, and how ruleset generation changes are recognised.
import { describe, expect, test } from "bun:test";
import { DROP_CT_NONE, DROP_EV_NETFILTER, DROP_EV_ROUTE, type DropEvent } from "../src/dropper-abi.ts";
import { MAX_AGE_TIMEOUTS, eligible, expired } from "../src/dropper.ts";
import { countNewGen } from "../src/nftevents.ts";

const ev = (over: Partial<DropEvent>): DropEvent => ({
  kind: DROP_EV_NETFILTER, iif: 3, mark: 0, ctStatus: 0, ctInfo: 2 /* IP_CT_NEW */, tcpFlags: 0x02, family: 2, proto: 6,
  smac: new Uint8Array(6), sport: 40000, dport: 22, saddr: new Uint8Array(16), daddr: new Uint8Array(16), ...over,
});

describe("which drops become drop entries", () => {
  test.each([
    ["a TCP SYN of an unconfirmed new connection", {}, true, "netfilter"],
    ["a UDP packet without conntrack (raw table, invalid)", { proto: 17, tcpFlags: 0, ctInfo: DROP_CT_NONE }, true, "netfilter"],
    ["an untracked UDP packet", { proto: 17, tcpFlags: 0, ctInfo: 7 }, true, "netfilter"],
    ["learning off", {}, false, "drop learning is off"],
    ["a SYN-ACK", { tcpFlags: 0x12 }, true, "TCP packet other than a SYN"],
    ["an ACK (INVALID inside a live connection)", { tcpFlags: 0x10, ctInfo: DROP_CT_NONE }, true, "TCP packet other than a SYN"],
    ["a packet of a confirmed connection", { proto: 17, tcpFlags: 0, ctStatus: 1 << 3 }, true, "packet of a known connection"],
    ["an established packet", { proto: 17, tcpFlags: 0, ctInfo: 0 }, true, "packet of a known connection"],
    ["a NATed packet", { ctStatus: 1 << 5 }, true, "NATed before the drop"],
    ["ICMP", { proto: 1 }, true, "not TCP or UDP"],
    ["a route drop", { kind: DROP_EV_ROUTE, tcpFlags: 0x10, ctInfo: 0 }, false, "blackhole"],
    ["a route drop of a marked packet", { kind: DROP_EV_ROUTE, mark: 7 }, false, "packet mark set"],
  ] as const)("%s", (_name, over, learn, want) => {
    expect(eligible(ev(over), learn)).toBe(want);
  });
});

describe("expiry", () => {
  const T = 5_000;
  test("idle for a timeout", () => {
    expect(expired({ kind: "blackhole", since: 0, lastHit: 0 }, T - 1, T)).toBe(false);
    expect(expired({ kind: "blackhole", since: 0, lastHit: 0 }, T, T)).toBe(true);
  });
  test("a learnt entry goes at its maximum age even while hit; a blackhole entry does not", () => {
    const now = MAX_AGE_TIMEOUTS * T;
    expect(expired({ kind: "netfilter", since: 0, lastHit: now - 1 }, now - 1, T)).toBe(false);
    expect(expired({ kind: "netfilter", since: 0, lastHit: now }, now, T)).toBe(true);
    expect(expired({ kind: "blackhole", since: 0, lastHit: now }, now, T)).toBe(false);
  });
});

test("NFT_MSG_NEWGEN among other nftables notifications", () => {
  const msg = (type: number, len = 20) => {
    const b = new Uint8Array(len);
    const v = new DataView(b.buffer);
    v.setUint32(0, len, true);
    v.setUint16(4, type, true);
    return b;
  };
  const buf = new Uint8Array([...msg((10 << 8) | 6), ...msg((10 << 8) | 15), ...msg((10 << 8) | 15)]);
  expect(countNewGen(buf, buf.length)).toBe(2);
  expect(countNewGen(buf, 20)).toBe(0);
});
