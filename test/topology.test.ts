// The device-stack resolution without root: an OpenWrt-style router described by rtnetlink
// messages as the kernel encodes them (test/nlmsg.ts) and /proc/net/pppoe text.
//
//   eth0 (DSA conduit) ── lan1 (p1), lan2 (p2), lan3 (p3, STP blocking) ── br-lan (VLAN filtering) ── br-lan.20
//                      └─ wan (p4) ── wan.7 (VLAN 7) ── PPPoE session 0x1234 ── pppoe-wan (MTU 1492)
//   eth1 ── eth1.100 (802.1ad) ── eth1.100.200 ── eth1.100.200.300
//   eth2 ── br-guest (no VLAN filtering); tun0; lo
import { describe, expect, test } from "bun:test";
import type { FdbReply, MessageRef } from "../src/netlink.ts";
import { parseProcPppoe } from "../src/pppoe.ts";
import { formatMac, parseMac, Topology, TopologyError, type FdbLookup, type TopologyOptions } from "../src/topology.ts";
import {
  be16, bridgeVlanMessage, IFF_LOOPBACK, ifinfomsg, linkMessage, nlmsg, RTM_DELLINK, RTM_NEWLINK, str, u16, u32, u8, UP,
  type Bytes, type LinkSpec,
} from "./nlmsg.ts";

const PVID = 0x2;
const UNTAGGED = 0x4;
const RANGE_BEGIN = 0x8;
const RANGE_END = 0x10;
const Q = 0x8100;
const AD = 0x88a8;

const MAC = {
  eth0: "02:00:00:00:00:e0", wan: "02:00:00:00:00:e4", wan7: "02:00:00:00:07:e4", brlan: "02:00:00:00:0b:01",
  brlan20: "02:00:00:00:0b:20", eth1: "02:00:00:00:00:e1", eth1q: "02:00:00:00:01:00", brguest: "02:00:00:00:0b:02",
  peer: "00:11:22:33:44:55", host1: "0a:00:00:00:00:01", host2: "0a:00:00:00:00:02",
};

const ifx = {
  lo: 1, eth0: 2, lan1: 3, lan2: 4, wan: 5, wan7: 6, pppoe: 7, brlan: 10, brlan20: 11, eth1: 12, eth1ad: 13, eth1qq: 14,
  eth1qqq: 15, lan3: 16, tun0: 17, eth2: 18, brguest: 19,
};

const dsa = (index: number, name: string, port: number, extra: Partial<LinkSpec> = {}): LinkSpec => ({
  index, name, mac: MAC.eth0, link: ifx.eth0, kind: "dsa", data: [u32(1, ifx.eth0)], portName: `p${port}`, ...extra,
});
const brport = (state: number): Partial<LinkSpec> => ({ master: ifx.brlan, slaveKind: "bridge", slaveData: [u8(1, state)] });
const vlan = (index: number, name: string, link: number, id: number, proto: number, m: string): LinkSpec => ({
  index, name, mac: m, link, kind: "vlan", data: [u16(1, id), be16(5, proto)],
});

const LINKS: LinkSpec[] = [
  { index: ifx.lo, name: "lo", type: 772, flags: UP | IFF_LOOPBACK, mtu: 65536, mac: "00:00:00:00:00:00" },
  { index: ifx.eth0, name: "eth0", mac: MAC.eth0, mtu: 1504 },
  dsa(ifx.lan1, "lan1", 1, brport(3)),
  dsa(ifx.lan2, "lan2", 2, brport(3)),
  dsa(ifx.lan3, "lan3", 3, brport(4)),
  dsa(ifx.wan, "wan", 4, { mac: MAC.wan }),
  vlan(ifx.wan7, "wan.7", ifx.wan, 7, Q, MAC.wan7),
  { index: ifx.pppoe, name: "pppoe-wan", type: 512, mtu: 1492, kind: "ppp" },
  { index: ifx.brlan, name: "br-lan", mac: MAC.brlan, kind: "bridge", data: [u8(7, 1), be16(8, Q), u16(39, 1)] },
  vlan(ifx.brlan20, "br-lan.20", ifx.brlan, 20, Q, MAC.brlan20),
  { index: ifx.eth1, name: "eth1", mac: MAC.eth1 },
  vlan(ifx.eth1ad, "eth1.100", ifx.eth1, 100, AD, MAC.eth1q),
  vlan(ifx.eth1qq, "eth1.100.200", ifx.eth1ad, 200, Q, MAC.eth1q),
  vlan(ifx.eth1qqq, "eth1.100.200.300", ifx.eth1qq, 300, Q, MAC.eth1q),
  { index: ifx.tun0, name: "tun0", type: 65534, kind: "tun" },
  { index: ifx.eth2, name: "eth2", mac: "02:00:00:00:00:e2", master: ifx.brguest, slaveKind: "bridge", slaveData: [u8(1, 3)] },
  { index: ifx.brguest, name: "br-guest", mac: MAC.brguest, kind: "bridge", data: [u8(7, 0), be16(8, Q)] },
];

const BRIDGE_VLANS: Bytes[] = [
  bridgeVlanMessage(ifx.brlan, 0, [[PVID | UNTAGGED, 1], [0, 20]]),
  bridgeVlanMessage(ifx.lan1, ifx.brlan, [[PVID | UNTAGGED, 1], [0, 20], [RANGE_BEGIN, 30], [RANGE_END, 32]]),
  bridgeVlanMessage(ifx.lan2, ifx.brlan, [[PVID | UNTAGGED, 20]]),
  bridgeVlanMessage(ifx.lan3, ifx.brlan, [[PVID | UNTAGGED, 1]]),
];

/** /proc/net/pppoe of a little-endian host with session 0x1234 on wan.7 */
const PROC_PPPOE = "Id       Address              Device\n00003412 00:11:22:33:44:55    wan.7\n";

function apply(t: Topology, msg: Bytes): void {
  const buf = new Uint8Array(msg);
  const m: MessageRef = { type: buf[4]! | (buf[5]! << 8), start: 16, end: buf.length };
  t.applyLinkMessage(buf, m);
}

function router(opts: TopologyOptions = {}, proc = PROC_PPPOE): Topology {
  const t = new Topology(opts);
  for (const l of LINKS) apply(t, linkMessage(l));
  for (const b of BRIDGE_VLANS) apply(t, b);
  t.setPppoe(parseProcPppoe(proc, true));
  return t;
}

/** An FDB answering from a table "bridge/mac/vid" -> port, recording the lookups. */
function fdb(table: Record<string, number>, state = 0x02): FdbLookup & { calls: string[] } {
  const calls: string[] = [];
  const f = (br: { name: string; ifindex: number }, m: Uint8Array, vid: number): FdbReply | null => {
    const key = `${br.name}/${formatMac(m)}/${vid}`;
    calls.push(key);
    const port = table[key];
    return port === undefined ? null : { ifindex: port, master: br.ifindex, vlan: vid, state, flags: 0, lladdr: m };
  };
  return Object.assign(f, { calls });
}
const noFdb = fdb({});

function egress(t: Topology, l3: number, dmac: string | null, lookup: FdbLookup = noFdb) {
  const r = t.egress(t.link(l3)!, dmac === null ? null : parseMac(dmac), lookup);
  if (!r.ok) return r;
  return { ...r.path, smac: formatMac(r.path.smac), dmac: formatMac(r.path.dmac) };
}

const enc = (vlans: [number, number][] = [], pppoeSid: number | null = null, dsaPort: number | null = null) => ({
  vlans: vlans.map(([id, proto]) => ({ id, proto })), pppoeSid, dsaPort,
});

describe("egress: PPPoE over VLAN over DSA", () => {
  test("user ports as the lowest devices: wan, VLAN 7, session 0x1234, peer MAC, wan.7's MAC", () => {
    expect(egress(router(), ifx.pppoe, null)).toEqual({
      oif: ifx.wan, encap: enc([[7, Q]], 0x1234), smac: MAC.wan7, dmac: MAC.peer, path: ["pppoe-wan", "wan.7", "wan"],
    });
  });

  test("with dsa: the conduit and the port index", () => {
    expect(egress(router({ dsa: true }), ifx.pppoe, null)).toMatchObject({
      oif: ifx.eth0, encap: enc([[7, Q]], 0x1234, 4), path: ["pppoe-wan", "wan.7", "wan", "eth0"],
    });
  });

  test("a neighbour MAC passed for a PPP device is ignored: frames go to the PPPoE peer", () => {
    expect(egress(router(), ifx.pppoe, MAC.host1)).toMatchObject({ dmac: MAC.peer });
  });

  test("the routed VLAN device alone: tag 7, its own MAC", () => {
    expect(egress(router(), ifx.wan7, MAC.host1)).toEqual({
      oif: ifx.wan, encap: enc([[7, Q]]), smac: MAC.wan7, dmac: MAC.host1, path: ["wan.7", "wan"],
    });
  });

  test("PPP without a session, and with its device gone", () => {
    expect(egress(router({}, "Id       Address              Device\n"), ifx.pppoe, null)).toEqual({
      ok: false, reason: "no PPPoE session for pppoe-wan in /proc/net/pppoe (PPP without PPPoE?)", retry: false, stale: true,
    });
    const t = router({}, "Id Address Device\n00003412 00:11:22:33:44:55 wan.9\n");
    expect(egress(t, ifx.pppoe, null)).toEqual({ ok: false, reason: "PPPoE device wan.9 of pppoe-wan not found", retry: true, stale: true });
  });
});

describe("egress: QinQ", () => {
  test("802.1ad outer tag, 802.1Q inner tag", () => {
    expect(egress(router(), ifx.eth1qq, MAC.host1)).toEqual({
      oif: ifx.eth1, encap: enc([[100, AD], [200, Q]]), smac: MAC.eth1q, dmac: MAC.host1,
      path: ["eth1.100.200", "eth1.100", "eth1"],
    });
  });

  test("a third tag is not offloaded", () => {
    expect(egress(router(), ifx.eth1qqq, MAC.host1)).toEqual({ ok: false, reason: "3 VLAN tags under eth1.100.200.300 (at most two)", retry: false });
  });
});

describe("egress: VLAN-filtering bridge over DSA ports", () => {
  test("br-lan: the bridge's PVID 1, FDB says lan1, untagged there", () => {
    const f = fdb({ [`br-lan/${MAC.host1}/1`]: ifx.lan1 });
    expect(egress(router(), ifx.brlan, MAC.host1, f)).toEqual({
      oif: ifx.lan1, encap: enc(), smac: MAC.brlan, dmac: MAC.host1, path: ["br-lan", "lan1"],
    });
    expect(f.calls).toEqual([`br-lan/${MAC.host1}/1`]);
  });

  test("with dsa: conduit and port 1", () => {
    const f = fdb({ [`br-lan/${MAC.host1}/1`]: ifx.lan1 });
    expect(egress(router({ dsa: true }), ifx.brlan, MAC.host1, f)).toMatchObject({ oif: ifx.eth0, encap: enc([], null, 1) });
  });

  test("br-lan.20: VLAN 20 consumed by the bridge; lan2 sends it untagged, lan1 tagged", () => {
    const f = fdb({ [`br-lan/${MAC.host1}/20`]: ifx.lan1, [`br-lan/${MAC.host2}/20`]: ifx.lan2 });
    expect(egress(router(), ifx.brlan20, MAC.host2, f)).toEqual({
      oif: ifx.lan2, encap: enc(), smac: MAC.brlan20, dmac: MAC.host2, path: ["br-lan.20", "br-lan", "lan2"],
    });
    expect(egress(router(), ifx.brlan20, MAC.host1, f)).toMatchObject({ oif: ifx.lan1, encap: enc([[20, Q]]) });
    expect(f.calls).toEqual([`br-lan/${MAC.host2}/20`, `br-lan/${MAC.host1}/20`]);
  });

  test("no FDB entry: retry (the kernel would flood)", () => {
    expect(egress(router(), ifx.brlan, MAC.host1)).toEqual({
      ok: false, reason: `no bridge FDB entry for ${MAC.host1} on br-lan VLAN 1`, retry: true,
    });
  });

  test("port not in the VLAN, port blocking, the bridge's own address", () => {
    const t = router();
    expect(egress(t, ifx.brlan, MAC.host1, fdb({ [`br-lan/${MAC.host1}/1`]: ifx.lan2 }))).toEqual({
      ok: false, reason: "bridge port lan2 is not in VLAN 1", retry: false,
    });
    expect(egress(t, ifx.brlan, MAC.host1, fdb({ [`br-lan/${MAC.host1}/1`]: ifx.lan3 }))).toEqual({
      ok: false, reason: "bridge port lan3 is blocking", retry: true,
    });
    expect(egress(t, ifx.brlan, MAC.brlan, fdb({ [`br-lan/${MAC.brlan}/1`]: ifx.brlan }, 0x80))).toMatchObject({
      ok: false, reason: `${MAC.brlan} on br-lan VLAN 1 is the bridge's own address`,
    });
  });

  test("a bridge without PVID drops untagged frames from itself", () => {
    const t = router();
    apply(t, bridgeVlanMessage(ifx.brlan, 0, [[0, 20]]));
    expect(egress(t, ifx.brlan, MAC.host1)).toEqual({ ok: false, reason: "bridge br-lan has no PVID for untagged frames", retry: false });
  });
});

describe("egress: bridge without VLAN filtering", () => {
  test("FDB lookup in VLAN 0, no tags", () => {
    const f = fdb({ [`br-guest/${MAC.host1}/0`]: ifx.eth2 });
    expect(egress(router(), ifx.brguest, MAC.host1, f)).toEqual({
      oif: ifx.eth2, encap: enc(), smac: MAC.brguest, dmac: MAC.host1, path: ["br-guest", "eth2"],
    });
  });
});

describe("egress: device state", () => {
  test("each device on the path is checked as the kernel has it now", () => {
    const t = router();
    const seen: string[] = [];
    const live = (l: { name: string }) => {
      seen.push(l.name);
      return l.name === "wan" ? { ...t.linkByName("wan")!, up: false } : t.linkByName(l.name);
    };
    expect(t.egress(t.link(ifx.pppoe)!, null, noFdb, live)).toEqual({ ok: false, reason: "wan (under pppoe-wan) is down", retry: false });
    expect(seen).toEqual(["wan.7", "wan"]);
    const gone = t.egress(t.link(ifx.brlan)!, parseMac(MAC.host1), fdb({ [`br-lan/${MAC.host1}/1`]: ifx.lan1 }), () => null);
    expect(gone).toEqual({ ok: false, reason: `bridge port ${ifx.lan1} of br-lan not found`, retry: true, stale: true });
  });

  test("a lower device without carrier", () => {
    const t = router();
    apply(t, linkMessage({ ...LINKS.find((l) => l.name === "wan")!, flags: 1 }));
    expect(egress(t, ifx.pppoe, null)).toEqual({ ok: false, reason: "wan (under pppoe-wan) is down", retry: false });
  });
});

describe("DSA taggers", () => {
  test("the conduits beneath the user ports, and their tagging protocol once known", () => {
    const t = router();
    expect(t.dsaConduits()).toEqual([ifx.eth0]);
    expect(t.dsaTagger(ifx.eth0)).toBeNull();
    t.setDsaTaggers(new Map([[ifx.eth0, "mtk"]]));
    expect(t.dsaTagger(ifx.eth0)).toBe("mtk");
    expect(t.dsaTagger(ifx.eth1)).toBeNull();
  });
});

describe("ingress", () => {
  test("PPPoE in VLAN 7 on DSA port 4 of eth0: pppoe-wan", () => {
    const t = router({ dsa: true });
    expect(t.ingressDevice(ifx.eth0, enc([[7, Q]], 0x1234, 4))).toBe(ifx.pppoe);
    expect(t.ingressDevice(ifx.eth0, enc([[7, 0]], 0x1234, 4))).toBe(ifx.pppoe); // TPID unknown
  });

  test("on the user port: session -> pppoe-wan, tag alone -> wan.7, untagged -> wan", () => {
    const t = router();
    expect(t.ingressDevice(ifx.wan, enc([[7, Q]], 0x1234))).toBe(ifx.pppoe);
    expect(t.ingressDevice(ifx.wan, enc([[7, Q]]))).toBe(ifx.wan7);
    expect(t.ingressDevice(ifx.wan, enc())).toBe(ifx.wan);
  });

  test("unknown session, VLAN, DSA port or device: null", () => {
    const t = router();
    expect(t.ingressDevice(ifx.wan, enc([[7, Q]], 0x9999))).toBeNull();
    expect(t.ingressDevice(ifx.wan, enc([[8, Q]]))).toBeNull();
    expect(t.ingressDevice(ifx.eth0, enc([], null, 9))).toBeNull();
    expect(t.ingressDevice(999, enc())).toBeNull();
  });

  test("bridge ports: PVID and the bridge's own VLAN entry decide between br-lan and br-lan.20", () => {
    const t = router({ dsa: true });
    expect(t.ingressDevice(ifx.eth0, enc([], null, 1))).toBe(ifx.brlan); // lan1: PVID 1, bridge untagged 1
    expect(t.ingressDevice(ifx.lan1, enc([[20, Q]]))).toBe(ifx.brlan20); // tagged 20, bridge keeps the tag
    expect(t.ingressDevice(ifx.lan1, enc([[31, Q]]))).toBeNull(); // lan1 is in 30-32, the bridge itself is not
    expect(t.ingressDevice(ifx.lan2, enc())).toBe(ifx.brlan20); // lan2: PVID 20
    expect(t.ingressDevice(ifx.lan1, enc([[99, Q]]))).toBeNull(); // not a member
    expect(t.ingressDevice(ifx.lan3, enc())).toBeNull(); // blocking
    expect(t.ingressDevice(ifx.lan1, enc([[20, AD]]))).toBeNull(); // other TPID: untagged for the bridge, tag stays
  });

  test("bridge without VLAN filtering: the bridge, tags go up with the frame", () => {
    const t = router();
    expect(t.ingressDevice(ifx.eth2, enc())).toBe(ifx.brguest);
    expect(t.ingressDevice(ifx.eth2, enc([[5, Q]]))).toBeNull();
  });

  test("QinQ", () => {
    const t = router();
    expect(t.ingressDevice(ifx.eth1, enc([[100, AD], [200, Q]]))).toBe(ifx.eth1qq);
    expect(t.ingressDevice(ifx.eth1, enc([[100, AD]]))).toBe(ifx.eth1ad);
    expect(t.ingressDevice(ifx.eth1, enc([[100, Q]]))).toBeNull();
  });

  test("ingress of every egress path leads back to the routed device", () => {
    const f = fdb({ [`br-lan/${MAC.host1}/1`]: ifx.lan1, [`br-lan/${MAC.host1}/20`]: ifx.lan1, [`br-lan/${MAC.host2}/20`]: ifx.lan2 });
    for (const opts of [{}, { dsa: true }]) {
      const t = router(opts);
      for (const [l3, dmac] of [[ifx.pppoe, null], [ifx.wan7, MAC.host1], [ifx.brlan, MAC.host1], [ifx.brlan20, MAC.host1],
        [ifx.brlan20, MAC.host2], [ifx.eth1qq, MAC.host1]] as const) {
        const r = t.egress(t.link(l3)!, dmac === null ? null : parseMac(dmac), f);
        if (!r.ok) throw new Error(r.reason);
        expect(t.ingressDevice(r.path.oif, r.path.encap)).toBe(l3);
      }
    }
  });
});

describe("PPPoE sessions and PPP interfaces", () => {
  const two = "Id       Address              Device\n00003412 00:11:22:33:44:55    wan.7\n00000100 00:11:22:33:44:66     eth1\n";
  const withPpp1 = (opts: TopologyOptions = {}, pppd?: Map<string, string>) => {
    const t = router(opts, two);
    apply(t, linkMessage({ index: 30, name: "pppoe-wan2", type: 512, mtu: 1492, kind: "ppp" }));
    if (pppd) t.setPppoe(parseProcPppoe(two, true), pppd);
    return t;
  };

  test("two sessions, two PPP interfaces: which is which must be said", () => {
    const t = withPpp1();
    expect(t.pppoeSession(t.link(ifx.pppoe)!)).toBe("cannot tell which of 2 PPPoE sessions pppoe-wan carries: name its device (pppoe option)");
  });

  test("told by the pppoe option", () => {
    const t = withPpp1({ pppoe: { "pppoe-wan2": "eth1" } });
    expect(t.pppoeSession(t.link(30)!)).toMatchObject({ sid: 1, device: "eth1" });
    expect(t.pppoeSession(t.link(ifx.pppoe)!)).toMatchObject({ sid: 0x1234, device: "wan.7" }); // the one left
  });

  test("told by pppd's command line", () => {
    const t = withPpp1({}, new Map([["pppoe-wan", "wan.7"], ["pppoe-wan2", "eth1"]]));
    expect(t.pppoeSession(t.link(30)!)).toMatchObject({ sid: 1 });
    expect(t.ingressDevice(ifx.eth1, enc([], 1))).toBe(30);
    expect(t.ingressDevice(ifx.wan, enc([[7, Q]], 0x1234))).toBe(ifx.pppoe);
  });

  test("a named device without a session", () => {
    const t = router({ pppoe: { "pppoe-wan": "eth1" } });
    expect(t.pppoeSession(t.link(ifx.pppoe)!)).toBe("no PPPoE session on eth1 (configured) in /proc/net/pppoe");
  });
});

describe("lowerDevices", () => {
  const names = (l: { ifname: string; reason: string }[]) => l.map((d) => `${d.ifname}: ${d.reason}`);

  test("named upper devices: bridge ports, the device under PPPoE and VLAN", () => {
    const t = router();
    expect(names(t.lowerDevices(["br-lan"]))).toEqual(["lan1: br-lan > lan1", "lan2: br-lan > lan2", "lan3: br-lan > lan3"]);
    expect(names(t.lowerDevices(["pppoe-wan"]))).toEqual(["wan: pppoe-wan > wan.7 > wan"]);
    expect(names(t.lowerDevices(["eth1.100.200", "eth1"]))).toEqual(["eth1: eth1.100.200 > eth1.100 > eth1"]);
    expect(names(t.lowerDevices(["br-lan.20"]))).toEqual([
      "lan1: br-lan.20 > br-lan > lan1", "lan2: br-lan.20 > br-lan > lan2", "lan3: br-lan.20 > br-lan > lan3",
    ]);
  });

  test("dsa: the conduit, once", () => {
    const t = router({ dsa: true });
    expect(names(t.lowerDevices(["br-lan", "pppoe-wan"]))).toEqual(["eth0: br-lan > lan1 > eth0"]);
    expect(names(router().lowerDevices(["pppoe-wan"], { dsa: true }))).toEqual(["eth0: pppoe-wan > wan.7 > wan > eth0"]);
  });

  test("all: beneath every L3 interface but loopback; unusable ones reported", () => {
    const skipped: string[] = [];
    const l3 = [ifx.lo, ifx.pppoe, ifx.brlan, ifx.brlan20, ifx.tun0, ifx.eth1qq, ifx.brguest, ifx.pppoe];
    expect(names(router().lowerDevices("all", { l3, skip: (n, r) => skipped.push(`${n}: ${r}`) }))).toEqual([
      "wan: pppoe-wan > wan.7 > wan", "lan1: br-lan > lan1", "lan2: br-lan > lan2", "lan3: br-lan > lan3",
      "eth1: eth1.100.200 > eth1.100 > eth1", "eth2: br-guest > eth2",
    ]);
    expect(skipped).toEqual(["tun0: tun0 is not an Ethernet or PPPoE device (ARPHRD 65534)"]);
  });

  test("named devices that cannot be resolved: TopologyError", () => {
    const t = router({}, "Id Address Device\n");
    expect(() => t.lowerDevices(["nope"])).toThrow(new TopologyError("no interface named nope"));
    expect(() => t.lowerDevices(["tun0"])).toThrow(TopologyError);
    expect(() => t.lowerDevices(["pppoe-wan"])).toThrow("no PPPoE session for pppoe-wan");
  });
});

describe("applyLinkMessage", () => {
  test("a new VLAN device, a rename, a deletion", () => {
    const t = router();
    apply(t, linkMessage(vlan(40, "eth1.5", ifx.eth1, 5, Q, MAC.eth1)));
    expect(t.ingressDevice(ifx.eth1, enc([[5, Q]]))).toBe(40);
    apply(t, linkMessage(vlan(40, "voip", ifx.eth1, 5, Q, MAC.eth1)));
    expect(t.linkByName("eth1.5")).toBeNull();
    expect(t.linkByName("voip")?.ifindex).toBe(40);
    apply(t, linkMessage(vlan(40, "voip", ifx.eth1, 5, Q, MAC.eth1), RTM_DELLINK));
    expect(t.link(40)).toBeNull();
    expect(t.ingressDevice(ifx.eth1, enc([[5, Q]]))).toBeNull();
  });

  test("bridge VLAN changes; a port leaving the bridge (AF_BRIDGE DELLINK) keeps the device", () => {
    const t = router();
    apply(t, bridgeVlanMessage(ifx.lan2, ifx.brlan, [[PVID | UNTAGGED, 1]]));
    expect(t.ingressDevice(ifx.lan2, enc())).toBe(ifx.brlan);
    apply(t, nlmsg(RTM_NEWLINK, [...ifinfomsg(7, 1, ifx.lan2, UP), ...u32(10, ifx.brlan)])); // last VLAN removed
    expect(t.bridgeVlans(ifx.lan2)).toEqual([]);
    expect(t.ingressDevice(ifx.lan2, enc())).toBeNull();
    apply(t, bridgeVlanMessage(ifx.lan2, ifx.brlan, [], RTM_DELLINK));
    expect(t.bridgeVlans(ifx.lan2)).toBeNull();
    expect(t.link(ifx.lan2)?.name).toBe("lan2");
  });

  test("a device moved to another namespace's peer: IFLA_LINK_NETNSID voids IFLA_LINK", () => {
    const t = router();
    apply(t, linkMessage({ index: 41, name: "veth0", link: ifx.eth1, kind: "veth", extra: [u32(37, 0)] }));
    expect(t.link(41)?.link).toBe(0);
  });

  test("other message types are ignored", () => {
    const t = router();
    const before = t.allLinks().length;
    t.applyLinkMessage(new Uint8Array(32), { type: 28, start: 16, end: 32 });
    expect(t.allLinks().length).toBe(before);
    expect(str(3, "x")).toEqual([6, 0, 3, 0, 0x78, 0, 0, 0]);
  });
});
