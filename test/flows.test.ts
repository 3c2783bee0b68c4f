// The flow table with stand-ins for conntrack, rtnetlink and the BPF maps: which kernel calls a
// new flow costs, and that what it installs is removed again, both directions.
import { describe, expect, test } from "bun:test";
import { FLOW_STATS_CLOSING, LAYOUT, decodeAction, type FlowKey } from "../src/abi.ts";
import type { BpfMap } from "../src/bpf.ts";
import type { Conntrack, CtEntry } from "../src/conntrack.ts";
import { FlowTable, type FlowTableOptions, SETTLE_MS } from "../src/flows.ts";
import { Logger } from "../src/log.ts";
import type { Tuple } from "../src/nat.ts";
import type { NextHop, Rtnl } from "../src/nexthop.ts";
import { IPS_CONFIRMED } from "../ffi/conntrack.ts";

const LAN = 2;
const WAN = 3;
const WAN2 = 4;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function addr(...bytes: number[]): Uint8Array {
  const a = new Uint8Array(16);
  a.set(bytes);
  return a;
}

const CLIENT = addr(10, 0, 0, 2);
const SERVER = addr(10, 1, 0, 2);
const ROUTER = addr(10, 1, 0, 1);

/** A masqueraded connection from the client; UDP with its timeout just set, or established TCP. */
function entry(sport: number, proto: 6 | 17 = 17): CtEntry {
  return {
    id: sport, zone: 0, mark: 0, status: IPS_CONFIRMED, tcpState: proto === 6 ? 3 : null, helper: null, timeout: 30,
    orig: { family: 2, proto, src: CLIENT, dst: SERVER, sport, dport: 53 },
    reply: { family: 2, proto, src: SERVER, dst: ROUTER, sport: 53, dport: sport + 10000 },
  };
}

function report(t: Tuple, ifindex = LAN): FlowKey {
  return { ifindex, family: t.family, proto: t.proto, dsaPort: 0, vlan: [0, 0], pppoeSid: 0, sport: t.sport, dport: t.dport, saddr: t.src, daddr: t.dst };
}

class FakeMap {
  readonly entries = new Map<string, Uint8Array>();
  update(key: Uint8Array, value: Uint8Array): void {
    this.entries.set(hex(key), value.slice());
  }
  delete(key: Uint8Array): boolean {
    return this.entries.delete(hex(key));
  }
  lookup(): boolean {
    return false;
  }
}

/** The flow_stats array: a record per slot, read one by one or in a batch of the first `limit`. */
class FakeStats {
  readonly buf = new Uint8Array(8192 * LAYOUT.flow_stats.size);
  private readonly view = new DataView(this.buf.buffer);
  private at(key: Uint8Array): number {
    return new DataView(key.buffer, key.byteOffset).getUint32(0, true) * LAYOUT.flow_stats.size;
  }
  update(key: Uint8Array, value: Uint8Array): void {
    this.buf.set(value, this.at(key));
  }
  lookup(key: Uint8Array, out: Uint8Array): boolean {
    out.set(this.buf.subarray(this.at(key), this.at(key) + LAYOUT.flow_stats.size));
    return true;
  }
  dump(part: { limit: number; from: number; into: { keys: Uint8Array; values: Uint8Array } }) {
    const { limit, from, into } = part;
    const S = LAYOUT.flow_stats.size;
    into.values.set(this.buf.subarray(from * S, (from + limit) * S));
    return { count: limit, keys: into.keys.subarray(0, limit * 4), values: into.values.subarray(0, limit * S) };
  }
  count(slot: number, orig: number, reply: number, flags = 0): void {
    const o = slot * LAYOUT.flow_stats.size + LAYOUT.flow_stats.members.dir;
    this.view.setBigUint64(o, BigInt(orig), true);
    this.view.setBigUint64(o + 16, BigInt(reply), true);
    this.view.setUint32(slot * LAYOUT.flow_stats.size + LAYOUT.flow_stats.members.flags, flags, true);
  }
}

function setup(over: Partial<FlowTableOptions> = {}) {
  const flows = new FakeMap();
  const calls = { get: 0, setOffloaded: 0, dump: 0 };
  const table_: CtEntry[] = [];
  const ct = {
    get: (t: Tuple) => {
      calls.get++;
      return table_.find((e) => e.orig.sport === t.sport || e.reply.dport === t.dport) ?? null;
    },
    setOffloaded: () => (calls.setOffloaded++, true),
    count: () => table_.length,
    dump: (onEntry: (e: CtEntry) => void) => {
      calls.dump++;
      for (const e of table_) onEntry(e);
    },
    refresh: () => true,
    assure: () => true,
  };
  const hop = (oif: number): NextHop => ({
    oif, l3Oif: oif, encap: { vlans: [], pppoeSid: null, dsaPort: null }, gateway: null, gatewayFamily: 2,
    dmac: new Uint8Array([2, 0, 0, 0, 0, oif]), smac: new Uint8Array([2, 0, 0, 0, 1, oif]), mtu: 1500,
  });
  const rtnl = {
    ingressDevice: (i: number) => i,
    // Towards the server: wan; back to the client: lan.
    resolve: (q: { dst: Uint8Array }) => ({ ok: true, hop: hop(q.dst[1] === 1 ? WAN : LAN) }),
    link: () => null,
    dsaTagger: () => null,
  };
  const table = new FlowTable({
    flows: flows as unknown as BpfMap, stats: new FakeMap() as unknown as BpfMap, ct: ct as unknown as Conntrack,
    rtnl: rtnl as unknown as Rtnl, log: new Logger("error"), devices: new Map([[LAN, "lan"], [WAN, "wan"], [WAN2, "wan2"]]),
    maxFlows: 1024, reportBacklog: 256, tcpTimeoutMs: 600_000, udpTimeoutMs: 30_000, ...over,
  });
  return { table, flows, calls, conntrack: table_ };
}

/** A time when every flow reported so far is due for a lookup. */
const later = () => performance.now() + SETTLE_MS;

describe("a new flow", () => {
  test("its conntrack event came first: offloaded from the event, no lookup, both directions", () => {
    const { table, flows, calls } = setup();
    const e = entry(1000);
    table.onConntrackChange(e);
    table.onNewFlow(report(e.orig));
    table.settleNewFlows(later());
    expect(calls.get).toBe(0);
    expect(table.size).toBe(1);
    const actions = [...flows.entries.values()].map((v) => decodeAction(v));
    expect(actions.map((a) => [a.dir, a.outIfindex]).sort()).toEqual([[0, WAN], [1, LAN]]);
    expect(actions.find((a) => a.dir === 0)?.sport).toBe(11000); // masqueraded port
  });

  test("no event about it: one lookup when the wake-up's events are handled", () => {
    const { table, calls, conntrack } = setup();
    const e = entry(1001);
    conntrack.push(e);
    table.onNewFlow(report(e.orig));
    expect(calls.get).toBe(0);
    table.settleNewFlows(later());
    expect(calls.get).toBe(1);
    expect(table.size).toBe(1);
  });

  test("just reported: no lookup yet, its event may be on the way; looked up once SETTLE_MS passed", () => {
    const { table, calls } = setup();
    const e = entry(1001);
    table.onNewFlow(report(e.orig));
    const at = performance.now();
    const wait = table.settleNewFlows(at);
    expect(calls.get).toBe(0);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(SETTLE_MS);
    table.onConntrackChange(e); // the event came meanwhile: offloaded without a lookup
    expect(table.size).toBe(1);
    expect(table.settleNewFlows(at + SETTLE_MS)).toBeNull();
    expect(calls.get).toBe(0);
  });

  test("a flood of reports is settled in batches: the rest waits for the next call", () => {
    const { table, calls, conntrack } = setup();
    for (let i = 0; i < 3; i++) {
      conntrack.push(entry(3000 + i));
      table.onNewFlow(report(entry(3000 + i).orig));
    }
    expect(table.settleNewFlows(later(), 2)).toBe(0);
    expect(calls.get).toBe(2);
    expect(table.settleNewFlows(later(), 2)).toBeNull();
    expect(calls.get).toBe(3);
    expect(table.size).toBe(3);
  });

  test("reported before conntrack has the entry: pending, then offloaded by the entry's event", () => {
    const { table, calls } = setup();
    const e = entry(1002);
    table.onNewFlow(report(e.orig));
    table.settleNewFlows(later());
    expect(table.size).toBe(0);
    expect(table.pendingCount).toBe(1);
    table.onConntrackChange(e);
    expect(table.size).toBe(1);
    expect(table.pendingCount).toBe(0);
    expect(calls.get).toBe(1);
  });

  test("UDP whose timeout its packet just set needs no conntrack update; TCP gets its window flags", () => {
    const { table, calls } = setup();
    for (const e of [entry(1003), entry(1004, 6)]) {
      table.onConntrackChange(e);
      table.onNewFlow(report(e.orig));
    }
    table.settleNewFlows(later());
    expect(table.size).toBe(2);
    expect(calls.setOffloaded).toBe(1);
  });

  test("an event from before an offload does not stand in for conntrack after the hand back", () => {
    const { table, calls, conntrack } = setup();
    const e = entry(1008);
    table.onConntrackChange(e); // remembered: not reported yet
    table.onNewFlow(report(e.reply, WAN)); // the reply direction first: found by its tuple too
    expect(table.size).toBe(1);
    expect(calls.get).toBe(0);
    table.onClosing(0); // FIN or RST: handed back (the first connection has slot 0)
    expect(table.size).toBe(0);
    table.onNewFlow(report(e.orig)); // gone from conntrack meanwhile: looked up, not offloaded
    table.settleNewFlows(later());
    expect(calls.get).toBe(1);
    expect(table.size).toBe(0);
  });
});

describe("hand back", () => {
  test("events lost: one dump; gone and changed entries are handed back, the rest stay", () => {
    const { table, flows, calls, conntrack } = setup();
    const [kept, gone, changed] = [entry(1010), entry(1011), entry(1012)];
    for (const e of [kept, gone, changed]) {
      table.onConntrackChange(e);
      table.onNewFlow(report(e.orig));
    }
    table.settleNewFlows(later());
    expect(table.size).toBe(3);
    conntrack.push(kept, { ...changed, mark: 7 }); // `gone` is not in the table any more
    table.resync();
    expect(calls.dump).toBe(1);
    expect(calls.get).toBe(0);
    expect(table.size).toBe(1);
    expect(flows.entries.size).toBe(2);
    expect(table.handedBack).toEqual({ "conntrack entry gone": 1, "conntrack entry changed": 1 });
  });

  test("events lost, but the table is mostly others' entries: a lookup per connection instead", () => {
    const { table, calls, conntrack } = setup();
    const e = entry(1013);
    table.onConntrackChange(e);
    table.onNewFlow(report(e.orig));
    table.settleNewFlows(later());
    for (let i = 0; i < 10; i++) conntrack.push(entry(2000 + i));
    conntrack.push(e);
    table.resync();
    expect(calls.dump).toBe(0);
    expect(calls.get).toBe(1);
    expect(table.size).toBe(1);
  });

  test("events lost: what the dump reads of others' entries stands in for a lookup; older events do not", () => {
    const { table, calls, conntrack } = setup();
    const [mine, waiting, known] = [entry(1014), entry(1015), entry(1016)];
    table.onConntrackChange(mine);
    table.onNewFlow(report(mine.orig));
    table.onConntrackChange(known); // an event before the loss: may be stale
    table.onNewFlow(report(waiting.orig)); // reported, its entry not seen yet
    conntrack.push(mine, waiting);
    table.resync();
    expect(calls.dump).toBe(1);
    table.settleNewFlows(later());
    expect(table.size).toBe(2);
    expect(calls.get).toBe(0);
    table.onNewFlow(report(known.orig));
    table.settleNewFlows(later());
    expect(calls.get).toBe(1); // looked up: gone from conntrack, not offloaded
    expect(table.size).toBe(2);
  });

  test("DESTROY removes both directions from the flow map", () => {
    const { table, flows } = setup();
    const keep = entry(1005);
    const gone = entry(1006);
    for (const e of [keep, gone]) {
      table.onConntrackChange(e);
      table.onNewFlow(report(e.orig));
    }
    table.settleNewFlows(later());
    expect(flows.entries.size).toBe(4);
    table.onConntrackDestroy(gone);
    expect(table.size).toBe(1);
    expect(flows.entries.size).toBe(2);
    expect(table.handedBack["conntrack entry destroyed"]).toBe(1);
  });

  test("a reply direction reported on another device than guessed moves there; the old key goes", () => {
    const { table, flows } = setup();
    const e = entry(1007);
    table.onConntrackChange(e);
    table.onNewFlow(report(e.orig));
    table.settleNewFlows(later());
    const before = new Set(flows.entries.keys());
    table.onNewFlow(report(e.reply, 9)); // not an offloaded device: the guess stays
    expect(new Set(flows.entries.keys())).toEqual(before);
    table.onNewFlow(report(e.reply, WAN2));
    const after = new Set(flows.entries.keys());
    expect(after.size).toBe(2);
    expect([...after].filter((k) => before.has(k))).toHaveLength(1); // the orig direction's
    table.clear("shutdown");
    expect(flows.entries.size).toBe(0);
  });
});

describe("the sweep", () => {
  // More connections than the sweep looks up one by one: it reads the stats array in a batch.
  for (const n of [5, 300, 4500]) {
    test(`${n} connections: counted ones stay, FIN/RST and idle ones are handed back`, () => {
      const stats = new FakeStats();
      const { table, flows } = setup({ stats: stats as unknown as BpfMap, udpTimeoutMs: 0, maxFlows: 8192 });
      for (let i = 0; i < n; i++) {
        const e = entry(2000 + i);
        table.onConntrackChange(e);
        table.onNewFlow(report(e.orig));
        table.settleNewFlows(later());
      }
      expect(table.size).toBe(n);
      expect(flows.entries.size).toBe(2 * n);
      // Slots are handed out from 0 in order: every third one carried packets (a pattern a batch
      // read from the wrong slot would not match), slot 1 saw a FIN.
      for (let slot = 0; slot < n; slot += 3) stats.count(slot, 3, 2 ** 33);
      stats.count(1, 1, 1, FLOW_STATS_CLOSING);
      table.sweep();
      const counted = Math.ceil(n / 3);
      expect(table.size).toBe(counted);
      expect(flows.entries.size).toBe(2 * counted);
      expect(table.handedBack).toEqual({ "FIN/RST": 1, idle: n - counted - 1 });
      expect(table.describe().every((line) => line.includes("udp 10.0.0.2:"))).toBe(true);
    });
  }
});
