// DSA conduit mode (`run --dsa`) planned without root, on a router described by rtnetlink
// messages as the kernel encodes them (test/nlmsg.ts) and the taggers sysfs names:
//
//   eth0 (conduit, mtk) ── lan1 (p1), lan2 (p2) ── br-lan;  wan (p4) ── wan.7 ── PPPoE 0x1234 ── pppoe-wan
//   eth1 (conduit, ocelot-8021q) ── sw1p0 (p0) ── routed directly
//   eth2 (conduit, tagging unknown) ── sw2p0 (no IFLA_LINK, only IFLA_DSA_CONDUIT; no port name)
import { describe, expect, test } from "bun:test";
import { DSA_TAG_MTK } from "../src/abi.ts";
import { conduitInstanceKey, describeConduit, planConduits } from "../src/conduits.ts";
import { encapActionFields, encapKeyFields } from "../src/encap.ts";
import type { MessageRef } from "../src/netlink.ts";
import { parseProcPppoe } from "../src/pppoe.ts";
import { formatMac, parseMac, Topology, TopologyError } from "../src/topology.ts";
import { be16, linkMessage, u16, u32, u8, type Bytes, type LinkSpec } from "./nlmsg.ts";

const Q = 0x8100;
const ifx = { eth0: 2, lan1: 3, lan2: 4, wan: 5, wan7: 6, pppoe: 7, brlan: 8, eth1: 9, sw1p0: 10, eth2: 11, sw2p0: 12 };
const MAC = { eth0: "02:00:00:00:00:e0", wan: "02:00:00:00:00:e4", host: "0a:00:00:00:00:01", peer: "00:11:22:33:44:55" };

/** A DSA user port: IFLA_LINK and IFLA_INFO_DATA { IFLA_DSA_CONDUIT (1, formerly IFLA_DSA_MASTER) }. */
const user = (index: number, name: string, conduit: number, port: number | null, extra: Partial<LinkSpec> = {}): LinkSpec => ({
  index, name, mac: MAC.eth0, link: conduit, kind: "dsa", data: [u32(1, conduit)],
  ...(port === null ? {} : { portName: `p${port}` }), ...extra,
});
const brport: Partial<LinkSpec> = { master: ifx.brlan, slaveKind: "bridge", slaveData: [u8(1, 3)] };

const LINKS: LinkSpec[] = [
  { index: ifx.eth0, name: "eth0", mac: MAC.eth0, mtu: 1504 },
  user(ifx.lan1, "lan1", ifx.eth0, 1, brport),
  user(ifx.lan2, "lan2", ifx.eth0, 2, brport),
  user(ifx.wan, "wan", ifx.eth0, 4, { mac: MAC.wan }),
  { index: ifx.wan7, name: "wan.7", mac: MAC.wan, link: ifx.wan, kind: "vlan", data: [u16(1, 7), be16(5, Q)] },
  { index: ifx.pppoe, name: "pppoe-wan", type: 512, mtu: 1492, kind: "ppp" },
  { index: ifx.brlan, name: "br-lan", mac: MAC.eth0, kind: "bridge", data: [u8(7, 0), be16(8, Q)] },
  { index: ifx.eth1, name: "eth1", mac: "02:00:00:00:00:e1" },
  user(ifx.sw1p0, "sw1p0", ifx.eth1, 0),
  { index: ifx.eth2, name: "eth2", mac: "02:00:00:00:00:e2" },
  { ...user(ifx.sw2p0, "sw2p0", ifx.eth2, null), link: undefined },
];
const PROC_PPPOE = "Id       Address              Device\n00003412 00:11:22:33:44:55    wan.7\n";

function router(): Topology {
  const t = new Topology({ dsa: true });
  for (const l of LINKS) {
    const buf = new Uint8Array(linkMessage(l) as Bytes);
    const m: MessageRef = { type: buf[4]! | (buf[5]! << 8), start: 16, end: buf.length };
    t.applyLinkMessage(buf, m);
  }
  t.setPppoe(parseProcPppoe(PROC_PPPOE, true));
  // /sys/class/net/CONDUIT/dsa/tagging of each conduit, as src/nexthop.ts reads it.
  t.setDsaTaggers(new Map([[ifx.eth0, "mtk"], [ifx.eth1, "ocelot-8021q"]]));
  return t;
}

const dev = (t: Topology, name: string) => ({ ifindex: t.linkByName(name)!.ifindex, ifname: name });

describe("planConduits", () => {
  test("auto-attach with --dsa: the conduit beneath br-lan and pppoe-wan, once, with its tagger and user ports", () => {
    const t = router();
    const lower = t.lowerDevices("all", { l3: [ifx.brlan, ifx.pppoe] });
    expect(lower.map((d) => `${d.ifname}: ${d.reason}`)).toEqual(["eth0: br-lan > lan1 > eth0"]);
    const plan = planConduits(t, lower);
    const c = plan.get(ifx.eth0)!;
    expect(c).toEqual({
      ifindex: ifx.eth0, ifname: "eth0", tagger: "mtk", taggerId: DSA_TAG_MTK, ports: 0b10110,
      users: ["lan1 (port 1)", "lan2 (port 2)", "wan (port 4)"],
    });
    expect(describeConduit(c)).toBe("DSA conduit, tagger mtk, user ports lan1 (port 1), lan2 (port 2), wan (port 4)");
    expect(conduitInstanceKey(c)).toBe(`${DSA_TAG_MTK}/22`);
  });

  test("devices that are no conduit need no instance of their own", () => {
    const t = router();
    expect(planConduits(t, [dev(t, "wan.7"), dev(t, "lan1")]).size).toBe(0);
  });

  test("a tagger the datapath does not parse: one clear error naming the way out", () => {
    const t = router();
    expect(() => planConduits(t, [dev(t, "eth0"), dev(t, "eth1")])).toThrow(new TopologyError(
      'eth1: DSA tagging protocol "ocelot-8021q" is not one the datapath parses (mtk, qca, brcm, brcm-prepend, gswip, dsa, edsa, rtl8_4); run without --dsa to attach to its user ports',
    ));
  });

  test("a conduit whose tagger the kernel does not tell (IFLA_DSA_CONDUIT only, no phys_port_name)", () => {
    const t = router();
    expect(t.link(ifx.sw2p0)).toMatchObject({ kind: "dsa", link: 0, dsaConduit: ifx.eth2, portName: null });
    expect(() => planConduits(t, [dev(t, "eth2")])).toThrow(
      "eth2 is a DSA conduit whose tagging protocol the kernel does not tell (/sys/class/net/eth2/dsa/tagging); run without --dsa to attach to its user ports",
    );
    t.setDsaTaggers(new Map([[ifx.eth2, "qca"]]));
    expect(planConduits(t, [dev(t, "eth2")]).get(ifx.eth2)).toMatchObject({
      tagger: "qca", ports: 0, users: ["sw2p0 (no port index: its frames go to the kernel)"],
    });
  });
});

describe("flows through the conduit", () => {
  const t = router();
  const fdb = (br: { ifindex: number }, mac: Uint8Array) =>
    formatMac(mac) === MAC.host ? { ifindex: ifx.lan2, master: br.ifindex, vlan: 0, state: 0x02, flags: 0, lladdr: mac } : null;

  test("LAN host on port 2 -> PPPoE in VLAN 7 on port 4: both out of eth0, the tag pushed", () => {
    const up = t.egress(t.link(ifx.pppoe)!, null, fdb);
    if (!up.ok) throw new Error(up.reason);
    expect(up.path.oif).toBe(ifx.eth0);
    expect(up.path.path).toEqual(["pppoe-wan", "wan.7", "wan", "eth0"]);
    expect(formatMac(up.path.dmac)).toBe(MAC.peer);
    expect(encapActionFields(up.path.encap, DSA_TAG_MTK)).toEqual({
      egressVlan: [7, 0], egressPppoeSid: 0x1234, egressDsaTagger: DSA_TAG_MTK, egressDsaPort: 4,
    });
    const down = t.egress(t.link(ifx.brlan)!, parseMac(MAC.host), fdb);
    if (!down.ok) throw new Error(down.reason);
    expect(down.path.oif).toBe(ifx.eth0);
    expect(encapActionFields(down.path.encap, DSA_TAG_MTK)).toEqual({
      egressVlan: [0, 0], egressPppoeSid: 0, egressDsaTagger: DSA_TAG_MTK, egressDsaPort: 2,
    });
  });

  test("ingress keys carry the source port; the kernel's receiving device follows from it", () => {
    const wanKey = encapKeyFields({ vlans: [{ id: 7, proto: Q }], pppoeSid: 0x1234, dsaPort: 4 });
    expect(wanKey).toEqual({ vlan: [7, 0], pppoeSid: 0x1234, dsaPort: 5 });
    expect(t.ingressDevice(ifx.eth0, { vlans: [{ id: 7, proto: Q }], pppoeSid: 0x1234, dsaPort: 4 })).toBe(ifx.pppoe);
    expect(t.ingressDevice(ifx.eth0, { vlans: [], pppoeSid: null, dsaPort: 1 })).toBe(ifx.brlan);
    expect(t.ingressDevice(ifx.eth0, { vlans: [], pppoeSid: null, dsaPort: 3 })).toBeNull(); // no user port 3
  });
});
