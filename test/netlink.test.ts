// Pure rtnetlink builders and parsers, no root: requests are checked byte for byte against the
// uapi layouts, parsers against replies captured from the kernel (test/fixtures/rtnl-replies.json).
import { describe, expect, test } from "bun:test";
import {
  buildLinkGet, buildNeighGet, buildNetconfGet, buildRouteGet, findReply, MalformedMessageError, NETCONFA_IFINDEX_ALL,
  nudName, parseLink, parseNeigh, parseNetconfForwarding, parseRoute, type ErrorReply, type MessageRef, type RouteQuery,
} from "../src/netlink.ts";
import captured from "./fixtures/rtnl-replies.json";

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
      ifindex: 2, name: "wan0", mac: "f66fa785c9e8", mtu: 1500, type: 1, kind: "veth", up: true, master: 0,
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
