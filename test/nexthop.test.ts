// Rtnl against the real kernel: a router namespace with veths to peer namespaces, IPv4 and IPv6,
// policy routing, neighbour entries in several states and routes the fast path must not take.
// The resolver runs inside the router namespace (test/fixtures/nexthop-probe.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sh } from "./lab.ts";

const BUN = "/work/main/node_modules/.bin/bun";
const PROBE = `${import.meta.dir}/fixtures/nexthop-probe.ts`;
const id = `nh-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
const NS = { r: `${id}-r`, a: `${id}-a`, b: `${id}-b`, c: `${id}-c` };

const GW_WAN = "02:00:00:00:02:fe";
const GW_ALT = "02:00:00:00:03:fe";
const HOST_WAN = "02:00:00:00:02:07";

interface Encap { vlans: { id: number; proto: number }[]; pppoeSid: number | null; dsaPort: number | null }
interface Hop { oif: number; l3Oif: number; encap: Encap; gateway: string | null; gatewayFamily: number; dmac: string; smac: string; mtu: number }
const PLAIN: Encap = { vlans: [], pppoeSid: null, dsaPort: null };
type Result = { ok: true; hop: Hop } | { ok: false; reason: string; retry: boolean };
interface Link { ifindex: number; name: string; mac: string; mtu: number; type: number; kind: string | null; up: boolean; master: number; slaveKind: string | null; bridge: unknown }
interface Query { family: 2 | 10; iif: string | number; src: string; dst: string; proto?: number; mark?: number }

const r = (...args: string[]) => sh(["ip", "-n", NS.r, ...args]);

function setup(): void {
  for (const ns of Object.values(NS)) sh(["ip", "netns", "add", ns]);
  const veth = (name: string, peerNs: string, peer: string) =>
    sh(["ip", "link", "add", name, "netns", NS.r, "type", "veth", "peer", "name", peer, "netns", peerNs]);
  veth("lan0", NS.a, "eth0");
  veth("wan0", NS.b, "eth0");
  veth("alt0", NS.c, "eth0");
  veth("dead0", NS.c, "eth1"); // its peer stays down: no carrier
  r("link", "add", "idle0", "type", "veth", "peer", "name", "idle1"); // both ends stay down
  r("link", "add", "brp0", "type", "veth", "peer", "name", "brp1");
  r("link", "add", "br0", "type", "bridge");
  r("link", "set", "brp0", "master", "br0");
  r("tuntap", "add", "tun0", "mode", "tun");
  sh(["ip", "-n", NS.b, "link", "set", "eth0", "mtu", "1480"]);
  r("link", "set", "wan0", "mtu", "1480");
  for (const dev of ["lo", "lan0", "wan0", "alt0", "dead0", "br0", "brp0", "brp1", "tun0"]) r("link", "set", dev, "up");
  for (const ns of [NS.a, NS.b, NS.c]) sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);

  sh(["ip", "netns", "exec", NS.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
    "net.ipv4.conf.lan0.rp_filter=1"]);
  for (const [dev, n] of [["lan0", 1], ["wan0", 2], ["alt0", 3], ["dead0", 4]] as const) {
    r("addr", "add", `10.${n}.0.1/24`, "dev", dev);
    r("-6", "addr", "add", `fd0${n}::1/64`, "dev", dev, "nodad");
  }
  r("route", "add", "default", "via", "10.2.0.254");
  r("-6", "route", "add", "default", "via", "fd02::fe");
  r("route", "add", "default", "via", "10.3.0.254", "table", "100");
  r("-6", "route", "add", "default", "via", "fd03::fe", "table", "100");
  r("rule", "add", "pref", "50", "fwmark", "0x10", "table", "100");
  r("-6", "rule", "add", "pref", "50", "fwmark", "0x10", "table", "100");
  r("rule", "add", "pref", "60", "fwmark", "0x40", "goto", "32767"); // only the empty "default" table
  r("route", "add", "blackhole", "198.51.100.0/24");
  r("route", "add", "unreachable", "198.51.101.0/24");
  r("route", "add", "prohibit", "198.51.102.0/24");
  r("-6", "route", "add", "blackhole", "2001:db8:dead::/48");
  r("route", "add", "203.0.113.0/24", "nexthop", "via", "10.2.0.254", "nexthop", "via", "10.2.0.7");
  r("route", "add", "192.0.2.128/25", "via", "10.2.0.254", "mtu", "1300");
  r("route", "add", "192.0.2.0/25", "via", "inet6", "fd02::fe", "dev", "wan0");
  r("route", "add", "10.5.0.0/24", "dev", "tun0");

  const neigh = (addr: string, dev: string, ...rest: string[]) => r("neigh", "add", addr, "dev", dev, ...rest);
  neigh("10.2.0.254", "wan0", "lladdr", GW_WAN, "nud", "permanent");
  neigh("fd02::fe", "wan0", "lladdr", GW_WAN, "nud", "permanent");
  neigh("10.3.0.254", "alt0", "lladdr", GW_ALT, "nud", "stale");
  neigh("fd03::fe", "alt0", "lladdr", GW_ALT, "nud", "stale");
  neigh("10.2.0.7", "wan0", "lladdr", HOST_WAN, "nud", "stale");
  neigh("fd02::7", "wan0", "lladdr", HOST_WAN, "nud", "stale");
  neigh("10.2.0.10", "wan0", "nud", "incomplete");
  neigh("10.2.0.11", "wan0", "lladdr", HOST_WAN, "nud", "noarp");
  neigh("10.4.0.9", "dead0", "lladdr", HOST_WAN, "nud", "permanent");
}

function probe(input: { resolve?: Query[]; links?: (string | number)[] }): { resolve: Result[]; links: (Link | null)[] } {
  return JSON.parse(sh(["ip", "netns", "exec", NS.r, BUN, PROBE, JSON.stringify(input)]));
}

interface IpLink { ifindex: number; ifname: string; address: string; mtu: number; flags: string[]; master?: string; linkinfo?: { info_kind?: string } }
let ipLinks: Map<string, IpLink>;
const ifindex = (name: string) => ipLinks.get(name)!.ifindex;
const mac = (name: string) => ipLinks.get(name)!.address;

const cases: [string, Query][] = [
  ["v4 default route", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "8.8.8.8" }],
  ["v6 default route", { family: 10, iif: "lan0", src: "fd01::5", dst: "2001:db8::1" }],
  ["v4 connected, neighbour STALE", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.2.0.7", proto: 17 }],
  ["v6 connected, neighbour STALE", { family: 10, iif: "lan0", src: "fd01::5", dst: "fd02::7", proto: 17 }],
  ["v4 fwmark 0x10", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "8.8.8.8", mark: 0x10 }],
  ["v6 fwmark 0x10", { family: 10, iif: "lan0", src: "fd01::5", dst: "2001:db8::1", mark: 0x10 }],
  ["neighbour missing", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.2.0.9" }],
  ["neighbour INCOMPLETE", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.2.0.10" }],
  ["neighbour NOARP", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.2.0.11" }],
  ["v4 blackhole", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "198.51.100.1" }],
  ["v6 blackhole", { family: 10, iif: "lan0", src: "fd01::5", dst: "2001:db8:dead::1" }],
  ["unreachable", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "198.51.101.1" }],
  ["prohibit", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "198.51.102.1" }],
  ["v4 local", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.2.0.1" }],
  ["v6 local", { family: 10, iif: "lan0", src: "fd01::5", dst: "fd02::1" }],
  ["v4 broadcast", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.2.0.255", proto: 17 }],
  ["multipath", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "203.0.113.1" }],
  ["route MTU", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "192.0.2.129" }],
  ["v4 via v6 next hop", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "192.0.2.1" }],
  ["no route", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "8.8.8.8", mark: 0x40 }],
  ["rp_filter", { family: 2, iif: "lan0", src: "10.3.0.5", dst: "8.8.8.8" }],
  ["ingress missing", { family: 2, iif: 999999, src: "10.1.0.5", dst: "8.8.8.8" }],
  ["egress without carrier", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.4.0.9" }],
  ["egress not Ethernet", { family: 2, iif: "lan0", src: "10.1.0.5", dst: "10.5.0.1" }],
  ["v6 link-local source", { family: 10, iif: "lan0", src: "fe80::5", dst: "2001:db8::1" }],
  ["ingress down", { family: 2, iif: "idle0", src: "10.1.0.5", dst: "8.8.8.8" }],
];
const LINKS = ["lan0", "wan0", "alt0", "dead0", "br0", "brp0", "tun0"];

let on: Map<string, Result>;
let off: Map<string, Result>;
let links: (Link | null)[];

beforeAll(() => {
  try {
    setup();
    ipLinks = new Map((JSON.parse(r("-j", "-d", "link", "show")) as IpLink[]).map((l) => [l.ifname, l]));
    const first = probe({ resolve: cases.map(([, q]) => q), links: [...LINKS, 999999] });
    on = new Map(cases.map(([name], i) => [name, first.resolve[i]!]));
    links = first.links;
    sh(["ip", "netns", "exec", NS.r, "sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"]);
    const second = probe({ resolve: cases.slice(0, 2).map(([, q]) => q) });
    off = new Map(cases.slice(0, 2).map(([name], i) => [name, second.resolve[i]!]));
  } catch (e) {
    teardown();
    throw e;
  }
});

function teardown(): void {
  for (const ns of Object.values(NS)) sh(["ip", "netns", "del", ns], { allowFail: true });
}
afterAll(teardown);

function hop(name: string): Hop {
  const res = on.get(name)!;
  if (!res.ok) throw new Error(`${name}: not offloaded: ${res.reason}`);
  return res.hop;
}

function refused(name: string, reason: RegExp, retry = false, results = on): void {
  const res = results.get(name)!;
  expect(res.ok).toBe(false);
  if (res.ok) return;
  expect(res.reason).toMatch(reason);
  expect(res.retry).toBe(retry);
}

describe("resolve: offloadable", () => {
  test("default routes via a PERMANENT gateway: egress, MACs and MTU of wan0", () => {
    const wan = { oif: ifindex("wan0"), l3Oif: ifindex("wan0"), encap: PLAIN, dmac: GW_WAN, smac: mac("wan0"), mtu: 1480 };
    expect(hop("v4 default route")).toEqual({ ...wan, gateway: "10.2.0.254", gatewayFamily: 2 });
    expect(hop("v6 default route")).toEqual({ ...wan, gateway: "fd02::fe", gatewayFamily: 10 });
  });

  test("directly connected destinations: no gateway, the destination's STALE entry", () => {
    const direct = { oif: ifindex("wan0"), l3Oif: ifindex("wan0"), encap: PLAIN, gateway: null, dmac: HOST_WAN, smac: mac("wan0"), mtu: 1480 };
    expect(hop("v4 connected, neighbour STALE")).toEqual({ ...direct, gatewayFamily: 2 });
    expect(hop("v6 connected, neighbour STALE")).toEqual({ ...direct, gatewayFamily: 10 });
  });

  test("policy routing: fwmark 0x10 selects table 100 and alt0", () => {
    const alt = { oif: ifindex("alt0"), l3Oif: ifindex("alt0"), encap: PLAIN, dmac: GW_ALT, smac: mac("alt0"), mtu: 1500 };
    expect(hop("v4 fwmark 0x10")).toEqual({ ...alt, gateway: "10.3.0.254", gatewayFamily: 2 });
    expect(hop("v6 fwmark 0x10")).toEqual({ ...alt, gateway: "fd03::fe", gatewayFamily: 10 });
  });

  test("a route MTU below the link MTU wins", () => {
    expect(hop("route MTU")).toMatchObject({ oif: ifindex("wan0"), mtu: 1300 });
  });

  test("IPv4 route via an IPv6 next hop uses the IPv6 neighbour", () => {
    expect(hop("v4 via v6 next hop")).toMatchObject({ gateway: "fd02::fe", gatewayFamily: 10, dmac: GW_WAN });
  });

  test("the kernel does not check the ingress interface's state (a down one receives nothing)", () => {
    expect(hop("ingress down").oif).toBe(ifindex("wan0"));
  });
});

describe("resolve: not offloaded", () => {
  test("neighbour missing or INCOMPLETE: retry", () => {
    refused("neighbour missing", /^no neighbour entry for 10\.2\.0\.9 on wan0$/, true);
    refused("neighbour INCOMPLETE", /^neighbour 10\.2\.0\.10 on wan0 is (INCOMPLETE|FAILED)$/, true);
  });

  test("NOARP neighbour", () => refused("neighbour NOARP", /NOARP/));

  test("blackhole, unreachable, prohibit routes", () => {
    refused("v4 blackhole", /blackhole/);
    refused("v6 blackhole", /blackhole/);
    refused("unreachable", /^unreachable route$/);
    refused("prohibit", /^prohibit route$/);
  });

  test("local and broadcast destinations", () => {
    refused("v4 local", /^local route$/);
    refused("v6 local", /^local route$/);
    refused("v4 broadcast", /^broadcast route$/);
  });

  test("multipath route (v1)", () => refused("multipath", /^multipath route/));
  test("no route", () => refused("no route", /^no route$/));
  test("rp_filter rejects a source routed via another interface", () => refused("rp_filter", /rp_filter/));
  test("ingress interface missing", () => refused("ingress missing", /^ingress interface 999999 not found$/));
  test("egress without carrier", () => refused("egress without carrier", /^egress interface dead0 is down$/));
  test("egress not Ethernet", () => refused("egress not Ethernet", /^egress interface tun0 is not Ethernet/));
  test("IPv6 link-local source to another interface", () => refused("v6 link-local source", /fe80::5 is not forwarded/));

  test("forwarding disabled", () => {
    refused("v4 default route", /^IPv4 forwarding is disabled on ingress interface lan0$/, false, off);
    refused("v6 default route", /^IPv6 forwarding is disabled/, false, off);
  });
});

describe("link", () => {
  test("matches ip -j -d link", () => {
    LINKS.forEach((name, i) => {
      const ip = ipLinks.get(name)!;
      expect(links[i]).toMatchObject({
        ifindex: ip.ifindex, name, mac: ip.address ?? "", mtu: ip.mtu, type: name === "tun0" ? 65534 : 1,
        kind: ip.linkinfo?.info_kind ?? null, up: ip.flags.includes("UP") && ip.flags.includes("LOWER_UP"),
        master: ip.master ? ifindex(ip.master) : 0,
      });
    });
  });

  test("veth, bridge and bridge port details", () => {
    const [lan0, , , dead0, br0, brp0] = links;
    expect(lan0).toMatchObject({ kind: "veth", up: true, master: 0 });
    expect(dead0?.up).toBe(false);
    expect(br0?.kind).toBe("bridge");
    expect(br0?.bridge).toEqual({ vlanFiltering: false, vlanProtocol: 0x8100, defaultPvid: 1 });
    expect(brp0?.master).toBe(ifindex("br0"));
    expect(brp0?.slaveKind).toBe("bridge");
  });

  test("unknown ifindex: null", () => expect(links[LINKS.length]).toBeNull());
});
