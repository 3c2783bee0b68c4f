// Pure rtnetlink builders and parsers, no root: requests are checked byte for byte against the
// uapi layouts, parsers against replies captured from the kernel (test/fixtures/rtnl-replies.json).
import { describe, expect, test } from "bun:test";
import {
  AF_BRIDGE, buildAddrDump, buildFdbGet, buildLinkDump, buildLinkGet, buildNeighGet, buildNetconfGet, buildRouteDump, buildRuleDump, ruleMatchesL4,
  buildRouteGet, findReply, MalformedMessageError, NETCONFA_IFINDEX_ALL, nudName, parseAddr, parseBridgeLink, parseFdb,
  parseLink, parseNeigh, parseNetconfForwarding, parseRoute, parseRouteOifs, RTEXT_FILTER_BRVLAN, RTEXT_FILTER_SKIP_STATS,
  scanDump, type ErrorReply, type MessageRef, type RouteQuery,
} from "../src/netlink.ts";
import captured from "./fixtures/rtnl-replies.json";
import topo from "./fixtures/topology-replies.json";
import { be16, bridgeVlanMessage, hexOf, linkMessage, nlmsg, u32, u8, u16 } from "./nlmsg.ts";

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function addr(...bytes: number[]): Uint8Array {
  const a = new Uint8Array(16);
  a.set(bytes);
  return a;
}

function build(fn: (buf: Uint8Array) => number): string {
  const buf = new Uint8Array(new ArrayBuffer(4096)).fill(0xaa); // stale bytes must not leak
  return toHex(buf.subarray(0, fn(buf)));
}

/** The captured reply `name`; requests were numbered from 1001 in the file's order. */
function reply(name: Exclude<keyof typeof captured, "_about">): { buf: Uint8Array; seq: number } {
  const seq = 1000 + Object.keys(captured).indexOf(name);
  return { buf: hex(captured[name]), seq };
}

function message(name: Parameters<typeof reply>[0]): { buf: Uint8Array; m: MessageRef } {
  const { buf, seq } = reply(name);
  const m = findReply(buf, buf.length, seq);
  if (m === null || "errno" in m) throw new Error(`${name}: expected a message, got ${JSON.stringify(m)}`);
  return { buf, m };
}

function errorReply(name: Parameters<typeof reply>[0]): ErrorReply | null | MessageRef {
  const { buf, seq } = reply(name);
  return findReply(buf, buf.length, seq);
}

const v4: RouteQuery = {
  family: 2, iif: 3, src: addr(10, 1, 0, 5), dst: addr(8, 8, 8, 8), proto: 6, sport: 40000, dport: 443, mark: 0x10,
};

describe("request builders", () => {
  test("RTM_GETROUTE, IPv4 TCP: input lookup with FIB match, ports big endian", () => {
    expect(build((b) => buildRouteGet(b, 7, v4))).toBe(toHex(hex(`
      54000000 1a00 0100 07000000 00000000
      02 20 20 00 00 00 00 00 00200000
      0800 0100 08080808
      0800 0200 0a010005
      0800 0300 03000000
      0800 1000 10000000
      0500 1b00 06000000
      0600 1c00 9c400000
      0600 1d00 01bb0000`)));
  });

  test("RTM_GETROUTE, IPv6 UDP: /128 lengths and 16-byte addresses", () => {
    const q: RouteQuery = {
      family: 10, iif: 4, src: addr(0xfd, 1, ...Array<number>(13).fill(0), 5),
      dst: addr(0x20, 1, 0x0d, 0xb8, ...Array<number>(11).fill(0), 1), proto: 17, sport: 53, dport: 5353, mark: 0,
    };
    expect(build((b) => buildRouteGet(b, 8, q))).toBe(toHex(hex(`
      6c000000 1a00 0100 08000000 00000000
      0a 80 80 00 00 00 00 00 00200000
      1400 0100 20010db8000000000000000000000001
      1400 0200 fd010000000000000000000000000005
      0800 0300 04000000
      0800 1000 00000000
      0500 1b00 11000000
      0600 1c00 00350000
      0600 1d00 14e90000`)));
  });

  test("RTM_GETROUTE: ICMP keeps the protocol without ports; others leave both out", () => {
    const icmp = build((b) => buildRouteGet(b, 1, { ...v4, proto: 1, sport: 0, dport: 0 }));
    expect(icmp.slice(0, 8)).toBe("44000000");
    expect(icmp.endsWith("05001b0001000000")).toBe(true);
    const gre = build((b) => buildRouteGet(b, 1, { ...v4, proto: 47 }));
    expect(gre.slice(0, 8)).toBe("3c000000");
    expect(gre.endsWith("0800100010000000")).toBe(true);
  });

  test("RTM_GETNEIGH for one IPv4 entry", () => {
    expect(build((b) => buildNeighGet(b, 9, 2, 2, addr(10, 2, 0, 254)))).toBe(toHex(hex(`
      24000000 1e00 0100 09000000 00000000
      02 00 0000 02000000 0000 00 00
      0800 0100 0a0200fe`)));
  });

  test("RTM_GETLINK by index", () => {
    expect(build((b) => buildLinkGet(b, 10, 2))).toBe(
      toHex(hex("20000000 1200 0100 0a000000 00000000 00 00 0000 02000000 00000000 00000000")),
    );
  });

  test("RTM_GETNETCONF for all interfaces: one-byte header padded to four", () => {
    expect(build((b) => buildNetconfGet(b, 11, 10, NETCONFA_IFINDEX_ALL))).toBe(
      toHex(hex("1c000000 5200 0100 0b000000 00000000 0a000000 0800 0100 ffffffff")),
    );
  });
});

describe("reply parsers (kernel captures)", () => {
  test("IPv4 FIB match: unicast via gateway in the main table", () => {
    const { buf, m } = message("route4");
    const r = parseRoute(buf, m);
    expect(r).toMatchObject({ type: 1, table: 254, oif: 2, gatewayFamily: 2, multipath: false, encap: false, mtu: 0 });
    expect(r.gateway).toEqual(addr(10, 2, 0, 254));
  });

  test("route MTU metric", () => {
    const { buf, m } = message("route4mtu");
    expect(parseRoute(buf, m).mtu).toBe(1300);
  });

  test("IPv4 route via an IPv6 next hop (RTA_VIA)", () => {
    const { buf, m } = message("route4via6");
    const r = parseRoute(buf, m);
    expect(r.gatewayFamily).toBe(10);
    expect(r.gateway).toEqual(addr(0xfd, 2, ...Array<number>(13).fill(0), 0xfe));
  });

  test("multipath route", () => {
    const { buf, m } = message("route4multipath");
    expect(parseRoute(buf, m)).toMatchObject({ type: 1, multipath: true, oif: 0, gateway: null });
  });

  test("local destination (the local table is merged into main until a policy rule exists)", () => {
    const { buf, m } = message("route4local");
    expect(parseRoute(buf, m)).toMatchObject({ type: 2, table: 254 });
  });

  test("IPv6 FIB match", () => {
    const { buf, m } = message("route6");
    const r = parseRoute(buf, m);
    expect(r).toMatchObject({ type: 1, table: 254, oif: 2, gatewayFamily: 10, multipath: false });
    expect(r.gateway).toEqual(addr(0xfd, 2, ...Array<number>(13).fill(0), 0xfe));
  });

  test("error replies: errno, with the extended ack message when there is one", () => {
    expect(errorReply("route4blackhole")).toEqual({ errno: 22, extack: null });
    expect(errorReply("neigh4missing")).toEqual({ errno: 2, extack: "Neighbour entry not found" });
    expect(errorReply("strictReject")).toEqual({ errno: 22, extack: "ipv4: Invalid values in header for route get request" });
  });

  test("neighbours: state and link-layer address", () => {
    for (const name of ["neigh4", "neigh6"] as const) {
      const { buf, m } = message(name);
      const n = parseNeigh(buf, m);
      expect(nudName(n.state)).toBe("PERMANENT");
      expect(n.lladdr).toEqual(hex("0200000002fe"));
    }
  });

  test("link: name, MAC, MTU, type, kind, flags (values from ip -j link)", () => {
    const { buf, m } = message("link");
    const l = parseLink(buf, m);
    expect({ ...l, mac: toHex(l.mac) }).toEqual({
      ifindex: 2, name: "wan0", mac: "f66fa785c9e8", mtu: 1500, type: 1, kind: "veth", up: true, adminUp: true,
      loopback: false, master: 0, link: 0, vlan: null, dsaConduit: 0, portName: null, slaveKind: null, brportState: null,
      bridge: null,
    });
  });

  test("netconf forwarding", () => {
    for (const name of ["netconf6all", "netconf4dev"] as const) {
      const { buf, m } = message(name);
      expect(parseNetconfForwarding(buf, m)).toBe(1);
    }
  });
});

describe("message framing", () => {
  test("skips stale replies to earlier requests and finds ours", () => {
    const old = reply("route4").buf;
    const ours = reply("neigh4");
    const both = new Uint8Array(old.length + ours.buf.length);
    both.set(old);
    both.set(ours.buf, old.length);
    expect(findReply(both, both.length, ours.seq)).toEqual({ type: 28, start: old.length + 16, end: both.length });
    expect(findReply(old, old.length, 4242)).toBeNull();
  });

  test("truncated messages and attributes are errors, not garbage", () => {
    const { buf, seq } = reply("route4");
    expect(() => findReply(buf, buf.length - 4, seq)).toThrow(MalformedMessageError);
    const bad = buf.slice();
    bad[28] = 0xff; // first attribute's length runs past the message
    const m = findReply(bad, bad.length, seq) as MessageRef;
    expect(() => parseRoute(bad, m)).toThrow(MalformedMessageError);
  });

  test("a reply of the wrong type is refused", () => {
    const { buf, m } = message("neigh4");
    expect(() => parseRoute(buf, m)).toThrow("RTM_NEWROUTE was expected");
  });

  test("neighbour state names", () => {
    expect(nudName(0)).toBe("NONE");
    expect(nudName(0x01)).toBe("INCOMPLETE");
    expect(nudName(0x04)).toBe("STALE");
    expect(nudName(0x20)).toBe("FAILED");
  });
});

describe("topology request builders", () => {
  test("RTM_GETLINK dump, AF_UNSPEC, without statistics", () => {
    expect(build((b) => buildLinkDump(b, 12, 0, RTEXT_FILTER_SKIP_STATS))).toBe(toHex(hex(`
      28000000 1200 0103 0c000000 00000000
      00 00 0000 00000000 00000000 00000000
      0800 1d00 08000000`)));
  });

  test("RTM_GETLINK dump, AF_BRIDGE, with bridge VLANs", () => {
    expect(build((b) => buildLinkDump(b, 13, AF_BRIDGE, RTEXT_FILTER_BRVLAN))).toBe(toHex(hex(`
      28000000 1200 0103 0d000000 00000000
      07 00 0000 00000000 00000000 00000000
      0800 1d00 02000000`)));
  });

  test("RTM_GETADDR and RTM_GETROUTE dumps", () => {
    expect(build((b) => buildAddrDump(b, 14, 10))).toBe(toHex(hex("18000000 1600 0103 0e000000 00000000 0a000000 00000000")));
    expect(build((b) => buildRouteDump(b, 15, 2))).toBe(toHex(hex("1c000000 1a00 0103 0f000000 00000000 02000000 00000000 00000000")));
    expect(build((b) => buildRuleDump(b, 16, 10))).toBe(toHex(hex("1c000000 2200 0103 10000000 00000000 0a000000 00000000 00000000")));
  });

  test("RTM_GETNEIGH AF_BRIDGE: MAC, bridge, VLAN (left out for VLAN 0)", () => {
    const mac = hex("0a0000000001");
    expect(build((b) => buildFdbGet(b, 16, 10, mac, 20))).toBe(toHex(hex(`
      38000000 1e00 0100 10000000 00000000
      07 00 0000 00000000 0000 00 00
      0a00 0200 0a0000000001 0000
      0800 0900 0a000000
      0600 0500 1400 0000`)));
    expect(build((b) => buildFdbGet(b, 17, 10, mac, 0)).slice(0, 8)).toBe("30000000");
  });
});

/** A complete message of topology-replies.json. */
function topoMessage(name: Exclude<keyof typeof topo, "_about">): { buf: Uint8Array; m: MessageRef } {
  const buf = hex(topo[name]);
  return { buf, m: { type: buf[4]! | (buf[5]! << 8), start: 16, end: buf.length } };
}

describe("topology parsers (kernel captures)", () => {
  test("bridge: kind and VLAN settings (filtering off)", () => {
    const { buf, m } = topoMessage("linkBr0");
    expect(parseLink(buf, m)).toMatchObject({
      ifindex: 2, name: "br0", kind: "bridge", master: 0, bridge: { vlanFiltering: false, vlanProtocol: 0x8100, defaultPvid: 1 },
    });
  });

  test("bridge port: master, slave kind, STP state forwarding; a veth's peer index", () => {
    const { buf, m } = topoMessage("linkP1");
    expect(parseLink(buf, m)).toMatchObject({ ifindex: 4, name: "p1", kind: "veth", master: 2, slaveKind: "bridge", brportState: 3, link: 3 });
  });

  test("AF_BRIDGE link messages without VLAN filtering carry no VLAN table", () => {
    for (const name of ["bridgeP2", "bridgeBr0"] as const) {
      const { buf, m } = topoMessage(name);
      expect(parseBridgeLink(buf, m)).toEqual({ ifindex: name === "bridgeP2" ? 6 : 2, master: 2, vlans: null });
    }
  });

  test("FDB get: the port behind a MAC; the bridge's own MAC is PERMANENT on the bridge; a miss is ENOENT", () => {
    let { buf, m } = topoMessage("fdbHit");
    expect(parseFdb(buf, m)).toEqual({ ifindex: 6, master: 2, vlan: 0, state: 0x40, flags: 0, lladdr: hex("020000000005") });
    ({ buf, m } = topoMessage("fdbOwn"));
    expect(parseFdb(buf, m)).toMatchObject({ ifindex: 2, state: 0x80 });
    const miss = hex(topo.fdbMiss);
    expect(findReply(miss, miss.length, 1005)).toEqual({ errno: 2, extack: "Fdb entry not found" });
  });

  test("address: index and scope", () => {
    const { buf, m } = topoMessage("addrBr0");
    expect(parseAddr(buf, m)).toEqual({ family: 2, ifindex: 2, scope: 0, address: hex("0a000001") });
  });

  test("a dump's NLMSG_DONE", () => {
    const done = hex(topo.linkDone);
    expect(scanDump(done, done.length, 1001, () => {})).toEqual({ done: true, interrupted: false });
  });
});

describe("topology parsers (uapi layouts)", () => {
  test("the message helper writes a VLAN device as the kernel does", () => {
    const bytes = linkMessage({ index: 6, name: "wan.7", mac: "02:00:00:00:07:e4", link: 5, kind: "vlan", data: [u16(1, 7), be16(5, 0x8100)] });
    expect(hexOf(bytes)).toBe(toHex(hex(`
      6c000000 1000 0000 00000000 00000000
      00 00 0100 06000000 41000000 00000000
      0a00 0300 77616e2e 37000000
      0800 0400 dc050000
      0800 0500 05000000
      2400 1200 0900 0100 766c616e 00000000 1400 0200 0600 0100 0700 0000 0600 0500 8100 0000
      0a00 0100 02000000 07e40000`)));
  });

  test("VLAN device: id, protocol (big endian), real device", () => {
    const buf = new Uint8Array(linkMessage({ index: 13, name: "eth1.100", link: 12, kind: "vlan", data: [u16(1, 100), be16(5, 0x88a8)] }));
    expect(parseLink(buf, { type: 16, start: 16, end: buf.length })).toMatchObject({ link: 12, vlan: { id: 100, proto: 0x88a8 } });
  });

  test("DSA user port: conduit and port name", () => {
    const buf = new Uint8Array(linkMessage({ index: 3, name: "lan1", link: 2, kind: "dsa", data: [u32(1, 2)], portName: "p1" }));
    expect(parseLink(buf, { type: 16, start: 16, end: buf.length })).toMatchObject({ kind: "dsa", dsaConduit: 2, link: 2, portName: "p1" });
  });

  test("PPP device: ARPHRD_PPP, no MAC", () => {
    const buf = new Uint8Array(linkMessage({ index: 7, name: "pppoe-wan", type: 512, mtu: 1492, kind: "ppp", flags: 0x1 }));
    expect(parseLink(buf, { type: 16, start: 16, end: buf.length })).toMatchObject({
      type: 512, mtu: 1492, kind: "ppp", mac: new Uint8Array(0), up: false, adminUp: true,
    });
  });

  test("VLAN-filtering bridge and a blocking port", () => {
    let buf = new Uint8Array(linkMessage({ index: 10, name: "br-lan", kind: "bridge", data: [u8(7, 1), be16(8, 0x88a8), u16(39, 5)] }));
    expect(parseLink(buf, { type: 16, start: 16, end: buf.length }).bridge).toEqual({ vlanFiltering: true, vlanProtocol: 0x88a8, defaultPvid: 5 });
    buf = new Uint8Array(linkMessage({ index: 3, name: "lan1", master: 10, slaveKind: "bridge", slaveData: [u8(1, 4)] }));
    expect(parseLink(buf, { type: 16, start: 16, end: buf.length })).toMatchObject({ master: 10, brportState: 4 });
  });

  test("bridge VLAN table: flags, ranges expanded", () => {
    const buf = new Uint8Array(bridgeVlanMessage(3, 10, [[0x6, 1], [0x0, 20], [0x8, 30], [0x10 | 0x4, 32]]));
    expect(parseBridgeLink(buf, { type: 16, start: 16, end: buf.length })).toEqual({
      ifindex: 3, master: 10, vlans: [
        { vid: 1, pvid: true, untagged: true }, { vid: 20, pvid: false, untagged: false },
        { vid: 30, pvid: false, untagged: true }, { vid: 31, pvid: false, untagged: true }, { vid: 32, pvid: false, untagged: true },
      ],
    });
    const other = new Uint8Array(linkMessage({ index: 3, name: "x" }));
    expect(() => parseBridgeLink(other, { type: 16, start: 16, end: other.length })).toThrow(MalformedMessageError);
  });

  test("FDB entry with a VLAN", () => {
    const body = [7, 0, 0, 0, 3, 0, 0, 0, 0x02, 0, 0x02, 0, ...[10, 0, 2, 0, 10, 0, 0, 0, 0, 1, 0, 0], ...u32(9, 10), ...u16(5, 20)];
    const buf = new Uint8Array(nlmsg(28, body));
    expect(parseFdb(buf, { type: 28, start: 16, end: buf.length })).toEqual({
      ifindex: 3, master: 10, vlan: 20, state: 2, flags: 2, lladdr: hex("0a0000000001"),
    });
  });

  test("policy rules: a selector on protocol or ports is noticed, others are not", () => {
    const hdr = [2, 0, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0];
    const rule = (...attrs: number[][]) => new Uint8Array(nlmsg(32, [...hdr, ...attrs.flat()]));
    const plain = rule(u32(6, 100), u32(15, 254)); // FRA_PRIORITY, FRA_TABLE
    expect(ruleMatchesL4(plain, { type: 32, start: 16, end: plain.length })).toBe(false);
    for (const fra of [22, 23, 24]) { // FRA_IP_PROTO, FRA_SPORT_RANGE, FRA_DPORT_RANGE
      const l4 = rule(u32(6, 100), u32(fra, 0x00500050));
      expect(ruleMatchesL4(l4, { type: 32, start: 16, end: l4.length })).toBe(true);
    }
    expect(() => ruleMatchesL4(plain, { type: 24, start: 16, end: plain.length })).toThrow(/RTM_NEWRULE/);
  });

  test("route dump entry: destination and every next hop's interface", () => {
    const rtnh = (ifindex: number) => [8, 0, 0, 0, ...u32(0, ifindex).slice(4)];
    const body = [2, 24, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0, ...u32(15, 254), 8, 0, 1, 0, 203, 0, 113, 0,
      ...[20, 0, 9, 0, ...rtnh(4), ...rtnh(5)]];
    const buf = new Uint8Array(nlmsg(24, body));
    expect(parseRouteOifs(buf, { type: 24, start: 16, end: buf.length })).toMatchObject({
      family: 2, type: 1, table: 254, dstLen: 24, oifs: [4, 5],
    });
  });

  test("dump framing: other sequence numbers skipped, inconsistent dumps flagged, errors returned", () => {
    const msg = (seq: number, type = 16, flags = 2) => nlmsg(type, [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], { seq, flags });
    const seen: number[] = [];
    const part = new Uint8Array([...msg(7), ...msg(8), ...msg(7, 16, 2 | 0x10)]);
    expect(scanDump(part, part.length, 7, (m) => seen.push(m.start))).toEqual({ done: false, interrupted: true });
    expect(seen).toEqual([16, 80]);
    const done = new Uint8Array(nlmsg(3, [0, 0, 0, 0], { seq: 7, flags: 2 }));
    expect(scanDump(done, done.length, 7, () => {})).toEqual({ done: true, interrupted: false });
    const failed = new Uint8Array(nlmsg(3, [0xf9, 0xff, 0xff, 0xff], { seq: 7, flags: 2 })); // -7
    expect(scanDump(failed, failed.length, 7, () => {})).toEqual({ errno: 7, extack: null });
  });
});
