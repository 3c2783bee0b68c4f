// Bridges on the real kernel: a small router namespace with br-lan over three veth ports (two
// hosts behind lan1 and lan2 in their own namespaces, lan3 with a static FDB entry), a WAN veth
// and a device with only a route. The resolver runs inside the router namespace
// (test/fixtures/nexthop-probe.ts), after the hosts have pinged the router so that the bridge
// learned where they are and the router has their neighbour entries.
//
// This kernel is built without CONFIG_BRIDGE_VLAN_FILTERING (and without 802.1Q, PPPoE and DSA):
// VLAN-filtering bridges, VLAN, PPPoE and DSA stacks are covered by test/topology.test.ts from
// messages in the kernel's encoding.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sh } from "./lab.ts";

const BUN = "/work/main/node_modules/.bin/bun";
const PROBE = `${import.meta.dir}/fixtures/nexthop-probe.ts`;
const id = `topo-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
const NS = { r: `${id}-r`, h1: `${id}-h1`, h2: `${id}-h2`, w: `${id}-w` };

const H1 = "02:00:00:00:01:10";
const H2 = "02:00:00:00:01:20";
const H3 = "02:00:00:00:01:40"; // behind lan3: static FDB entry, permanent neighbour
const NOFDB = "02:00:00:00:01:30"; // a neighbour the bridge has never seen
const BR_MAC = "02:00:00:00:0b:01";
const WAN_GW = "02:00:00:00:09:02";

interface Encap { vlans: { id: number; proto: number }[]; pppoeSid: number | null; dsaPort: number | null }
type Result = { ok: true; hop: { oif: number; l3Oif: number; encap: Encap; gateway: string | null; gatewayFamily: number; dmac: string; smac: string; mtu: number } } |
  { ok: false; reason: string; retry: boolean };
interface Lower { ifname: string; ifindex: number; reason: string }
interface Output { resolve: Result[]; ingress: (number | null)[]; lower: (Lower[] | { error: string })[] }

const r = (...args: string[]) => sh(["ip", "-n", NS.r, ...args]);

function setup(): void {
  for (const ns of Object.values(NS)) sh(["ip", "netns", "add", ns]);
  r("link", "add", "br-lan", "address", BR_MAC, "type", "bridge");
  const host = (port: string, ns: string, mac: string, addr: string) => {
    sh(["ip", "link", "add", port, "netns", NS.r, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    sh(["ip", "-n", ns, "link", "set", "eth0", "address", mac, "up"]);
    sh(["ip", "-n", ns, "addr", "add", `${addr}/24`, "dev", "eth0"]);
  };
  host("lan1", NS.h1, H1, "192.168.1.10");
  host("lan2", NS.h2, H2, "192.168.1.20");
  r("link", "add", "lan3", "type", "veth", "peer", "name", "lan3peer");
  sh(["ip", "link", "add", "wan0", "netns", NS.r, "type", "veth", "peer", "name", "eth0", "netns", NS.w]);
  r("link", "add", "idle0", "type", "veth", "peer", "name", "idle1"); // up, link-local address only
  r("link", "add", "rt0", "type", "veth", "peer", "name", "rt1"); // up, a route but no address
  for (const port of ["lan1", "lan2", "lan3"]) r("link", "set", port, "master", "br-lan");
  for (const dev of ["lo", "br-lan", "lan1", "lan2", "lan3", "lan3peer", "wan0", "idle0", "idle1", "rt0", "rt1"]) r("link", "set", dev, "up");
  sh(["ip", "-n", NS.w, "link", "set", "eth0", "address", WAN_GW, "up"]);
  r("addr", "add", "192.168.1.1/24", "dev", "br-lan");
  r("addr", "add", "10.9.0.1/24", "dev", "wan0");
  r("route", "add", "172.16.0.0/16", "dev", "rt0");
  sh(["ip", "netns", "exec", NS.r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  r("neigh", "add", "10.9.0.2", "dev", "wan0", "lladdr", WAN_GW, "nud", "permanent");
  r("neigh", "add", "192.168.1.30", "dev", "br-lan", "lladdr", NOFDB, "nud", "permanent");
  r("neigh", "add", "192.168.1.40", "dev", "br-lan", "lladdr", H3, "nud", "permanent");
  r("neigh", "add", "192.168.1.50", "dev", "br-lan", "lladdr", BR_MAC, "nud", "permanent");
  sh(["ip", "netns", "exec", NS.r, "bridge", "fdb", "add", H3, "dev", "lan3", "master", "static"]);
  // The hosts talk to the router: the bridge learns their ports, the router their MACs.
  for (const ns of [NS.h1, NS.h2]) sh(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", "192.168.1.1"]);
}

function teardown(): void {
  for (const ns of Object.values(NS)) sh(["ip", "netns", "del", ns], { allowFail: true });
}

const q = (dst: string) => dst.startsWith("10.")
  ? { family: 2, iif: "br-lan", src: "192.168.1.10", dst, proto: 17 }
  : { family: 2, iif: "wan0", src: "10.9.0.2", dst, proto: 6 };
let out: Output;
let links: Map<string, number>;
const ifx = (name: string) => links.get(name)!;

beforeAll(() => {
  try {
    setup();
    links = new Map((JSON.parse(r("-j", "link", "show")) as { ifname: string; ifindex: number }[]).map((l) => [l.ifname, l.ifindex]));
    const input = {
      resolve: ["192.168.1.10", "192.168.1.20", "192.168.1.40", "192.168.1.30", "192.168.1.50", "10.9.0.2"].map(q),
      ingress: [
        { lowest: "lan1" }, { lowest: "lan3" }, { lowest: "wan0" }, { lowest: "lan1", vlans: [{ id: 5, proto: 0x8100 }] },
        { lowest: "wan0", pppoeSid: 0x1234 }, { lowest: 999999 },
      ],
      lower: [["br-lan"], "all", ["wan0", "br-lan"], ["nothere"]],
    };
    out = JSON.parse(sh(["ip", "netns", "exec", NS.r, BUN, PROBE, JSON.stringify(input)])) as Output;
  } catch (e) {
    teardown();
    throw e;
  }
});
afterAll(teardown);

const PLAIN: Encap = { vlans: [], pppoeSid: null, dsaPort: null };
const macOf = (ns: string, dev: string) => (JSON.parse(sh(["ip", "-n", ns, "-j", "link", "show", dev])) as { address: string }[])[0]!.address;

describe("egress through a bridge (kernel FDB)", () => {
  test("learned FDB entries: each host's port, br-lan's MAC as source", () => {
    expect(out.resolve[0]).toEqual({
      ok: true, hop: { oif: ifx("lan1"), l3Oif: ifx("br-lan"), encap: PLAIN, gateway: null, gatewayFamily: 2, dmac: H1, smac: BR_MAC, mtu: 1500 },
    });
    expect(out.resolve[1]).toMatchObject({ ok: true, hop: { oif: ifx("lan2"), l3Oif: ifx("br-lan"), dmac: H2 } });
  });

  test("a static FDB entry", () => {
    expect(out.resolve[2]).toMatchObject({ ok: true, hop: { oif: ifx("lan3"), dmac: H3 } });
  });

  test("a neighbour the bridge has not learned: retry", () => {
    expect(out.resolve[3]).toEqual({ ok: false, reason: `no bridge FDB entry for ${NOFDB} on br-lan`, retry: true });
  });

  test("a next hop with the bridge's own MAC", () => {
    expect(out.resolve[4]).toEqual({ ok: false, reason: `${BR_MAC} on br-lan is the bridge's own address`, retry: false });
  });

  test("from the bridge to the WAN: plain Ethernet, unchanged", () => {
    expect(out.resolve[5]).toMatchObject({
      ok: true, hop: { oif: ifx("wan0"), l3Oif: ifx("wan0"), encap: PLAIN, dmac: WAN_GW, smac: macOf(NS.r, "wan0") },
    });
  });
});

describe("ingress", () => {
  test("a bridge port maps to the bridge; a plain device to itself", () => {
    expect(out.ingress.slice(0, 3)).toEqual([ifx("br-lan"), ifx("br-lan"), ifx("wan0")]);
  });

  test("a tag without VLAN device, a session without PPP, an unknown device: null", () => {
    expect(out.ingress.slice(3)).toEqual([null, null, null]);
  });
});

describe("lowerDevices", () => {
  const names = (l: Lower[] | { error: string } | undefined): string[] => {
    if (!Array.isArray(l)) throw new Error(`expected devices, got ${JSON.stringify(l)}`);
    return l.map((d) => `${d.ifname}: ${d.reason}`);
  };

  test("br-lan: its ports", () => {
    expect(names(out.lower[0])).toEqual(["lan1: br-lan > lan1", "lan2: br-lan > lan2", "lan3: br-lan > lan3"]);
    expect((out.lower[0] as Lower[]).map((d) => d.ifindex)).toEqual([ifx("lan1"), ifx("lan2"), ifx("lan3")]);
  });

  test("all: the bridge's ports, the WAN and the routed device; not lo, not link-local-only devices", () => {
    expect(names(out.lower[1]).sort()).toEqual(["lan1: br-lan > lan1", "lan2: br-lan > lan2", "lan3: br-lan > lan3", "rt0: rt0", "wan0: wan0"]);
  });

  test("several names, deduplicated; an unknown name is an error", () => {
    expect(names(out.lower[2])).toEqual(["wan0: wan0", "lan1: br-lan > lan1", "lan2: br-lan > lan2", "lan3: br-lan > lan3"]);
    expect(out.lower[3]).toEqual({ error: "no interface named nothere" });
  });
});
