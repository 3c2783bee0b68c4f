// The datapath (bpf/offload.bpf.c) run on packets by the kernel (BPF_PROG_TEST_RUN), XDP and TC
// alike: every case runs through both programs. A forwarded frame must equal, byte for byte, the
// frame the independent builder in packet.ts makes with the NAT'ed fields and fully recomputed
// checksums; anything odd must come back with the "pass" verdict and untouched.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { monotonicNs } from "../ffi/libc.ts";
import {
  AF_INET,
  AF_INET6,
  FLOW_ACT_DROP,
  FLOW_ACT_DROP_SYN,
  FLOW_EV_CLOSING,
  FLOW_EV_NEW,
  FLOW_CLOCK_LAG_NS,
  FLOW_STATS_CLOSING,
  LAYOUT,
  decodeEvent,
  decodeStats,
  encodeAction,
  encodeConfig,
  encodeKey,
  encodeParams,
  type FlowAction,
  type FlowEvent,
  type FlowKey,
  type FlowStats,
} from "../src/abi.ts";
import { BpfObject, RingBuffer, testRun, type BpfMap, type TestRunResult } from "../src/bpf.ts";
import {
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  IPV6_DSTOPTS,
  IPV6_HOPOPTS,
  PROTO_TCP,
  PROTO_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  addr16,
  buildFrame,
  checksumsValid,
  hex,
  parseFrame,
  parseIp,
  parseMac,
  type FrameSpec,
} from "./packet.ts";

import {
  CLIENT_MAC, EGRESS_MAC, INGRESS_IFINDEX, MAX_CONNS, NEXT_HOP_MAC, OBJECT_PATH, OTHER_MAC, OUT_IFINDEX, ROUTER_MAC,
} from "./datapath-env.ts";

const HEARTBEAT_TIMEOUT_NS = 5_000_000_000n;
const NOTIFY_INTERVAL_NS = 1_000_000_000n;

// ---- The two hooks ----

interface Hook {
  name: string;
  prog: string;
  pass: number;
  drop: number;
  redirect: number;
  /** Only the TC program sees GSO packets (skb->gso_size). */
  gso: boolean;
  /** The shortest frame the kernel will test-run with this family's ethertype. */
  minFrame(family: Family): number;
  /** The test-run context: the ingress device (and TC's GSO size). */
  ctx(frameLen: number, gsoSize: number): Uint8Array;
}

const HOOKS: Hook[] = [
  {
    name: "XDP",
    prog: "offload_xdp",
    pass: 2, // XDP_PASS
    drop: 1, // XDP_DROP
    redirect: 4, // XDP_REDIRECT
    gso: false,
    minFrame: () => 14,
    ctx(frameLen) {
      // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
      const md = new Uint8Array(24);
      const v = new DataView(md.buffer);
      v.setUint32(4, frameLen, true);
      v.setUint32(12, INGRESS_IFINDEX, true);
      return md;
    },
  },
  {
    name: "TC",
    prog: "offload_tc",
    pass: 0, // TC_ACT_OK
    drop: 2, // TC_ACT_SHOT
    redirect: 7, // TC_ACT_REDIRECT
    gso: true,
    // The skb test run refuses IP frames without a whole IP header (EINVAL), so shorter frames
    // are covered by the XDP program only: both share the parser.
    minFrame: (family) => 14 + (family === 4 ? 20 : 40),
    ctx(_frameLen, gsoSize) {
      // struct __sk_buff (192 bytes): ingress_ifindex at 36, gso_size at 176 (offsets from BTF)
      const skb = new Uint8Array(192);
      const v = new DataView(skb.buffer);
      v.setUint32(36, INGRESS_IFINDEX, true);
      v.setUint32(176, gsoSize, true);
      return skb;
    },
  },
];

// ---- The loaded object ----

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

class Datapath {
  readonly obj: BpfObject;
  private readonly flows: BpfMap;
  private readonly stats: BpfMap;
  private readonly notified: BpfMap;
  private readonly config: BpfMap;
  private readonly ring: RingBuffer;
  private readonly received: FlowEvent[] = [];
  private readonly statsBuf = new Uint8Array(LAYOUT.flow_stats.size);

  constructor(image: Uint8Array) {
    this.obj = BpfObject.open(image, {
      maxEntries: { flows: MAX_CONNS, flow_stats: MAX_CONNS },
      params: encodeParams({ heartbeatTimeoutNs: HEARTBEAT_TIMEOUT_NS, notifyIntervalNs: NOTIFY_INTERVAL_NS }),
    });
    this.obj.load();
    this.flows = this.obj.map("flows");
    this.stats = this.obj.map("flow_stats");
    this.notified = this.obj.map("flow_notified");
    this.config = this.obj.map("flow_config");
    this.ring = new RingBuffer(this.obj.map("flow_events"), (s) => this.received.push(decodeEvent(s)));
  }

  run(hook: Hook, frame: Uint8Array, gsoSize = 0): TestRunResult {
    return testRun(this.obj.programFd(hook.prog), frame, { ctxIn: hook.ctx(frame.length, gsoSize) });
  }

  heartbeat(ns: bigint = monotonicNs()): void {
    this.config.update(u32(0), encodeConfig(ns));
  }

  install(flow: Flow): void {
    this.flows.update(encodeKey(flow.key), encodeAction(flow.action));
    if (flow.action.connId < MAX_CONNS) this.stats.update(u32(flow.action.connId), new Uint8Array(LAYOUT.flow_stats.size));
  }

  connStats(connId: number): FlowStats {
    expect(this.stats.lookup(u32(connId), this.statsBuf)).toBe(true);
    return decodeStats(this.statsBuf);
  }

  /** Rewinds a key's last FLOW_EV_NEW time, as if the notify interval had passed. */
  setNotified(key: FlowKey, ns: bigint): void {
    const v = new Uint8Array(8);
    new DataView(v.buffer).setBigUint64(0, ns, true);
    this.notified.update(encodeKey(key), v);
  }

  /** Events emitted since the last call. */
  events(): FlowEvent[] {
    this.ring.poll(0);
    return this.received.splice(0);
  }

  close(): void {
    this.ring.close();
    this.obj.close();
  }
}

const dp = new Datapath(await Bun.file(OBJECT_PATH).bytes());
afterAll(() => dp.close());
beforeEach(() => {
  // The daemon's heartbeat is fresh, and no event is left over from another test.
  dp.heartbeat();
  dp.events();
});

// ---- Flows and their expected rewrites, computed here from first principles ----

let portCounter = 20000;
let connCounter = 1;
/** A client port no other test uses, so each test has flow keys of its own. */
const nextPort = () => portCounter++;
const nextConn = () => connCounter++;

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** RFC 1624: the folded one's-complement sum of ~old + new over 16-bit big-endian words. */
function csumDelta(old: Uint8Array, neu: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < old.length; i += 2) {
    s += (~((old[i]! << 8) | old[i + 1]!) & 0xffff) + ((neu[i]! << 8) | neu[i + 1]!);
  }
  return fold(s);
}

function bytes(...parts: (Uint8Array | number[])[]): Uint8Array {
  return new Uint8Array(parts.flatMap((p) => Array.from(p)));
}

function ports(sport: number, dport: number): Uint8Array {
  return bytes([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff]);
}

function payload(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
}

interface Nat {
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
}

interface Flow {
  /** The ingress packet this flow matches. */
  spec: FrameSpec;
  key: FlowKey;
  action: FlowAction;
  /** The packet as the kernel would forward it. */
  out: FrameSpec;
}

interface FlowOpts {
  connId?: number;
  dir?: 0 | 1;
  mtu?: number;
  flags?: number;
}

function plan(spec: FrameSpec, nat: Nat = {}, opts: FlowOpts = {}): Flow {
  const src = nat.src ?? spec.src;
  const dst = nat.dst ?? spec.dst;
  const sport = nat.sport ?? spec.sport;
  const dport = nat.dport ?? spec.dport;
  const ttl = spec.ttl ?? 64;
  const v4 = !spec.src.includes(":");
  const addrDelta = csumDelta(bytes(parseIp(spec.src), parseIp(spec.dst)), bytes(parseIp(src), parseIp(dst)));
  // The IPv4 header word at bytes 8-9 is TTL << 8 | protocol.
  const ttlDelta = csumDelta(bytes([ttl, spec.proto]), bytes([ttl - 1, spec.proto]));
  return {
    spec,
    key: {
      ifindex: INGRESS_IFINDEX,
      family: v4 ? AF_INET : AF_INET6,
      proto: spec.proto,
      dsaPort: 0,
      vlan: [0, 0],
      pppoeSid: 0,
      sport: spec.sport,
      dport: spec.dport,
      saddr: addr16(spec.src),
      daddr: addr16(spec.dst),
    },
    action: {
      outIfindex: OUT_IFINDEX,
      connId: opts.connId ?? nextConn(),
      dir: opts.dir ?? 0,
      flags: opts.flags ?? 0,
      mtu: opts.mtu ?? 1500,
      dmac: parseMac(NEXT_HOP_MAC),
      smac: parseMac(EGRESS_MAC),
      saddr: addr16(src),
      daddr: addr16(dst),
      sport,
      dport,
      l3CsumDelta: v4 ? fold(addrDelta + ttlDelta) : 0,
      l4CsumPseudo: addrDelta,
      l4CsumPorts: csumDelta(ports(spec.sport, spec.dport), ports(sport, dport)),
      egressVlan: [0, 0],
      egressPppoeSid: 0,
    },
    out: { ...spec, src, dst, sport, dport, ttl: ttl - 1, dmac: NEXT_HOP_MAC, smac: EGRESS_MAC, padding: 0 },
  };
}

/** The other direction of flow's connection: a reply to its forwarded packet, un-NAT'ed. */
function replyOf(flow: Flow, opts: FlowOpts = {}): Flow {
  const o = flow.out;
  const spec: FrameSpec = {
    ...flow.spec,
    src: o.dst,
    dst: o.src,
    sport: o.dport,
    dport: o.sport,
    dmac: ROUTER_MAC,
    smac: CLIENT_MAC,
    ttl: 64,
  };
  const nat = { src: flow.spec.dst, dst: flow.spec.src, sport: flow.spec.dport, dport: flow.spec.sport };
  return plan(spec, nat, { connId: flow.action.connId, dir: 1, ...opts });
}

const TUPLES = {
  4: { src: "192.168.1.10", dst: "203.0.113.5", snat: "198.51.100.1", dnat: "10.0.0.5" },
  6: { src: "2001:db8:1::10", dst: "2001:db8:2::5", snat: "2001:db8:ffff::1", dnat: "fd00:5::5" },
} as const;
type Family = keyof typeof TUPLES;
type Proto = typeof PROTO_TCP | typeof PROTO_UDP;
const FAMILIES: Family[] = [4, 6];
const PROTOS: Proto[] = [PROTO_TCP, PROTO_UDP];
const protoName = (p: Proto) => (p === PROTO_TCP ? "TCP" : "UDP");

function base(family: Family, proto: Proto, extra: Partial<FrameSpec> = {}): FrameSpec {
  const t = TUPLES[family];
  return {
    src: t.src,
    dst: t.dst,
    proto,
    sport: nextPort(),
    dport: proto === PROTO_TCP ? 443 : 53,
    dmac: ROUTER_MAC,
    smac: CLIENT_MAC,
    payload: payload(37),
    tcpFlags: TCP_ACK | TCP_PSH,
    ...extra,
  };
}

const NATS: Record<string, (f: Family) => Nat> = {
  "no NAT": () => ({}),
  SNAT: (f) => ({ src: TUPLES[f].snat, sport: 61000 }),
  DNAT: (f) => ({ dst: TUPLES[f].dnat, dport: 8443 }),
  "SNAT+DNAT": (f) => ({ src: TUPLES[f].snat, sport: 61000, dst: TUPLES[f].dnat, dport: 8443 }),
};

/**
 * A payload whose UDP checksum, once NAT'ed as flow's plan says, is 0: its first two bytes make
 * the one's-complement sum 0xffff, so the forwarded checksum must be sent as 0xffff (RFC 768).
 */
function payloadForZeroChecksum(spec: FrameSpec, nat: Nat): Uint8Array {
  const data = payload(16);
  data[0] = data[1] = 0;
  const out = plan({ ...spec, payload: data }, nat).out;
  const c = parseFrame(buildFrame(out)).l4Checksum;
  // c is ~sum, or 0xffff when the sum already was 0xffff (then 0 keeps it there).
  const word = c === 0xffff ? 0 : c;
  data[0] = word >> 8;
  data[1] = word & 0xff;
  return data;
}

// ---- CHECKSUM_PARTIAL ----

/** The CHECKSUM_PARTIAL value of spec's packet: the folded pseudo-header sum. */
const partialValue = (spec: FrameSpec): number => parseFrame(buildFrame({ ...spec, partialChecksum: true })).l4Checksum;

/** Where the L4 checksum field of an untagged frame of spec's family and protocol is. */
const l4ChecksumOffset = (spec: FrameSpec): number => 14 + (spec.src.includes(":") ? 40 : 20) + (spec.proto === PROTO_TCP ? 16 : 6);

/**
 * A payload whose complete checksum equals the packet's partial value (the 1-in-65536
 * coincidence): its first word w makes ~(S0 + w) = P, where S0 is the sum of everything else.
 */
function payloadForPartialLookalike(spec: FrameSpec): Uint8Array {
  const data = payload(16);
  data[0] = data[1] = 0;
  const p = partialValue({ ...spec, payload: data });
  // The partial frame's sum is S0 + P.
  const s0 = fold(parseFrame(buildFrame({ ...spec, payload: data, partialChecksum: true })).l4Sum + (~p & 0xffff));
  const w = fold((~p & 0xffff) + (~s0 & 0xffff));
  data[0] = w >> 8;
  data[1] = w & 0xff;
  return data;
}

/** addr (IPv4 or IPv6 text) with its last 16-bit word replaced. */
function withLastWord(addr: string, word: number): string {
  const b = parseIp(addr);
  b[b.length - 2] = word >> 8;
  b[b.length - 1] = word & 0xff;
  if (b.length === 4) return Array.from(b).join(".");
  return Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(":");
}

/** spec with a destination address that makes the pseudo-header sum all ones (0xffff, never 0). */
function withAllOnesPseudoSum(spec: FrameSpec): FrameSpec {
  const p0 = partialValue({ ...spec, dst: withLastWord(spec.dst, 0) });
  return { ...spec, dst: withLastWord(spec.dst, ~p0 & 0xffff) };
}

// ---- Assertions ----

function expectForwarded(hook: Hook, flow: Flow, input = buildFrame(flow.spec), gsoSize = 0): Uint8Array {
  const expected = buildFrame(flow.out);
  const r = dp.run(hook, input, gsoSize);
  expect(r.retval).toBe(hook.redirect);
  expect(hex(r.data)).toBe(hex(expected));
  expect(checksumsValid(r.data)).toBe(true);
  return r.data;
}

function expectPassed(hook: Hook, frame: Uint8Array, gsoSize = 0): void {
  const r = dp.run(hook, frame, gsoSize);
  expect(r.retval).toBe(hook.pass);
  expect(hex(r.data)).toBe(hex(frame));
}

function expectUntouchedStats(connId: number): void {
  const s = dp.connStats(connId);
  expect(s.dir.map((d) => [d.packets, d.bytes])).toEqual([
    [0n, 0n],
    [0n, 0n],
  ]);
  expect(s.flags).toBe(0);
}

/** Odd packets of an installed flow: built from the flow's own packet by changing some fields. */
interface OddCase {
  name: string;
  families?: Family[];
  protos?: Proto[];
  change(spec: FrameSpec): Partial<FrameSpec>;
  flow?(spec: FrameSpec): FlowOpts;
}

function ipv4Checksum(spec: FrameSpec): number {
  const f = buildFrame(spec);
  return (f[24]! << 8) | f[25]!;
}

const ODD_CASES: OddCase[] = [
  { name: "IPv4 options", families: [4], change: () => ({ ipOptions: bytes([1, 1, 1, 1]) }) },
  { name: "IPv4 first fragment (MF)", families: [4], change: () => ({ df: false, mf: true }) },
  { name: "IPv4 later fragment (offset)", families: [4], change: () => ({ df: false, fragOffset: 185 }) },
  { name: "IPv4 bad header checksum", families: [4], change: (s) => ({ ipChecksum: ipv4Checksum(s) ^ 0x0101 }) },
  { name: "IPv4 total length shorter than the headers", families: [4], change: () => ({ ipLength: 27 }) },
  { name: "IPv4 total length beyond the frame", families: [4], change: (s) => ({ ipLength: buildFrame(s).length - 14 + 1 }) },
  { name: "IPv6 hop-by-hop options header", families: [6], change: () => ({ ipv6Ext: IPV6_HOPOPTS }) },
  { name: "IPv6 destination options header", families: [6], change: () => ({ ipv6Ext: IPV6_DSTOPTS }) },
  { name: "IPv6 payload length 0 (jumbogram)", families: [6], change: () => ({ ipLength: 0 }) },
  { name: "IPv6 payload length beyond the frame", families: [6], change: (s) => ({ ipLength: buildFrame(s).length - 54 + 1 }) },
  { name: "TTL / hop limit 1", change: () => ({ ttl: 1 }) },
  { name: "TTL / hop limit 0", change: () => ({ ttl: 0 }) },
  { name: "non-IP ethertype (ARP)", change: () => ({ ethertype: ETH_P_ARP }) },
  { name: "IPv4 ethertype on an IPv6 packet", families: [6], change: () => ({ ethertype: ETH_P_IP }) },
  { name: "IPv6 ethertype on an IPv4 packet", families: [4], change: () => ({ ethertype: ETH_P_IPV6 }) },
  { name: "broadcast destination MAC", change: () => ({ dmac: "ff:ff:ff:ff:ff:ff" }) },
  { name: "multicast destination MAC", change: () => ({ dmac: "01:00:5e:00:00:fb" }) },
  { name: "TCP data offset below 5", protos: [PROTO_TCP], change: () => ({ tcpDoff: 4 }) },
  { name: "TCP header longer than the segment", protos: [PROTO_TCP], change: () => ({ tcpDoff: 15 }) },
  { name: "UDP length shorter than the IP payload", protos: [PROTO_UDP], change: (s) => ({ udpLength: 8 + (s.payload?.length ?? 0) - 1 }) },
  { name: "UDP length longer than the IP payload", protos: [PROTO_UDP], change: (s) => ({ udpLength: 8 + (s.payload?.length ?? 0) + 1 }) },
  { name: "UDP over IPv6 without checksum", families: [6], protos: [PROTO_UDP], change: () => ({ udpChecksum: "none" }) },
  { name: "larger than the egress MTU", change: () => ({}), flow: (s) => ({ mtu: parseFrame(buildFrame(s)).l3Length - 1 }) },
];

/** The flow with ingress MAC checks (undefined: not set, i.e. all zero). */
function withIngressMacs(flow: Flow, dmac?: string, smac?: string): Flow {
  const action: FlowAction = { ...flow.action };
  if (dmac !== undefined) action.ingressDmac = parseMac(dmac);
  if (smac !== undefined) action.ingressSmac = parseMac(smac);
  return { ...flow, action };
}

/** mac with one bit of byte i flipped, still unicast. */
function macFlip(mac: string, i: number): string {
  const b = parseMac(mac);
  b[i] = b[i]! ^ (i === 0 ? 0x02 : 0x80);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

// ---- The cases, for both hooks ----

for (const hook of HOOKS) {
  describe(`${hook.name} program`, () => {
    describe("forwards with the kernel's rewrite", () => {
      for (const family of FAMILIES) {
        for (const proto of PROTOS) {
          const what = `IPv${family} ${protoName(proto)}`;
          for (const [natName, nat] of Object.entries(NATS)) {
            test(`${what}, ${natName}`, () => {
              const flow = plan(base(family, proto), nat(family));
              dp.install(flow);
              expectForwarded(hook, flow);
            });
          }
          test(`${what}, padded frame is trimmed to the L3 length`, () => {
            const flow = plan(base(family, proto, { payload: payload(1) }), NATS.SNAT!(family));
            dp.install(flow);
            expectForwarded(hook, flow, buildFrame({ ...flow.spec, padding: 17 }));
          });
          test(`${what}, checksum that becomes 0 is sent as 0xffff`, () => {
            const nat = NATS["SNAT+DNAT"]!(family);
            const spec = base(family, proto);
            const flow = plan({ ...spec, payload: payloadForZeroChecksum(spec, nat) }, nat);
            dp.install(flow);
            const out = parseFrame(expectForwarded(hook, flow));
            // TCP sends the zero; UDP's zero means "no checksum", so all ones go instead.
            expect(out.l4Checksum).toBe(proto === PROTO_TCP ? 0 : 0xffff);
          });
          test(`${what}, packet exactly as large as the MTU`, () => {
            const spec = base(family, proto);
            const flow = plan(spec, NATS.SNAT!(family), { mtu: parseFrame(buildFrame(spec)).l3Length });
            dp.install(flow);
            expectForwarded(hook, flow);
          });
        }
      }
      test("IPv4 UDP without checksum keeps checksum 0 (RFC 768)", () => {
        const flow = plan(base(4, PROTO_UDP, { udpChecksum: "none" }), NATS["SNAT+DNAT"]!(4));
        dp.install(flow);
        expect(parseFrame(expectForwarded(hook, flow)).l4Checksum).toBe(0);
      });
      test("TCP with options, TTL 2 and 255, other header fields kept", () => {
        for (const ttl of [2, 255]) {
          const options = bytes([2, 4, 0x05, 0xb4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
          const spec = base(4, PROTO_TCP, { ttl, tos: 0xb8, ipId: 0xbeef, tcpOptions: options, window: 1234 });
          const flow = plan(spec, NATS.DNAT!(4));
          dp.install(flow);
          expectForwarded(hook, flow);
          const v6 = plan(base(6, PROTO_TCP, { ttl, tos: 0xb8, flowLabel: 0xabcde, tcpOptions: options }), NATS.SNAT!(6));
          dp.install(v6);
          expectForwarded(hook, v6);
        }
      });
      test("counts packets and L3 bytes per direction of the connection", () => {
        const orig = plan(base(4, PROTO_TCP), NATS.SNAT!(4));
        const reply = replyOf(orig);
        dp.install(orig);
        dp.install(reply);
        const before = monotonicNs();
        const origSizes = [0, 100, 1000].map((n) => ({ ...orig, spec: { ...orig.spec, payload: payload(n) }, out: { ...orig.out, payload: payload(n) } }));
        for (const f of origSizes) expectForwarded(hook, f);
        const replySizes = [10, 1200].map((n) => ({ ...reply, spec: { ...reply.spec, payload: payload(n) }, out: { ...reply.out, payload: payload(n) } }));
        for (const f of replySizes) expectForwarded(hook, f);
        const after = monotonicNs();
        const s = dp.connStats(orig.action.connId);
        expect(s.dir[0]).toEqual({ packets: 3n, bytes: BigInt(3 * 40 + 0 + 100 + 1000) });
        expect(s.dir[1]).toEqual({ packets: 2n, bytes: BigInt(2 * 40 + 10 + 1200) });
        // The datapath's clock is read once per jiffy: it may lag by FLOW_CLOCK_LAG_NS.
        expect(s.lastSeenNs >= before - FLOW_CLOCK_LAG_NS && s.lastSeenNs <= after).toBe(true);
        expect(s.flags).toBe(0);
        expect(dp.events()).toEqual([]);
      });
      if (hook.gso) {
        test("GSO packet: each segment (headers + gso_size) must fit the MTU", () => {
          const spec = base(4, PROTO_TCP, { payload: payload(1000) });
          const flow = plan(spec, NATS.SNAT!(4), { mtu: 500 });
          dp.install(flow);
          expectPassed(hook, buildFrame(spec), 461); // 40 + 461 > 500
          expectForwarded(hook, flow, buildFrame(spec), 460); // 40 + 460 = 500
        });
      }
    });

    describe("CHECKSUM_PARTIAL packets (a local sender with checksum offload)", () => {
      for (const family of FAMILIES) {
        for (const proto of PROTOS) {
          const what = `IPv${family} ${protoName(proto)}`;
          if (hook.name === "XDP") {
            test(`${what}: a field holding the partial value passes untouched; a complete checksum is forwarded`, () => {
              const flow = plan(base(family, proto), NATS["SNAT+DNAT"]!(family));
              dp.install(flow);
              const partial = buildFrame({ ...flow.spec, partialChecksum: true });
              expect(parseFrame(partial).l4ChecksumOk).toBe(false);
              expectPassed(hook, partial);
              expectUntouchedStats(flow.action.connId);
              expect(dp.events()).toEqual([]);
              expectForwarded(hook, flow);
            });
            test(`${what}: a complete checksum that equals the partial value goes to the stack too`, () => {
              const spec = base(family, proto);
              const flow = plan({ ...spec, payload: payloadForPartialLookalike(spec) }, NATS.SNAT!(family));
              dp.install(flow);
              const frame = buildFrame(flow.spec);
              expect(parseFrame(frame).l4ChecksumOk).toBe(true);
              expect(parseFrame(frame).l4Checksum).toBe(partialValue(flow.spec));
              expectPassed(hook, frame);
              expectUntouchedStats(flow.action.connId);
            });
            test(`${what}: a pseudo-header sum of all ones is the partial value 0xffff, not 0`, () => {
              const flow = plan(withAllOnesPseudoSum(base(family, proto)), NATS.DNAT!(family));
              dp.install(flow);
              expect(partialValue(flow.spec)).toBe(0xffff);
              expectPassed(hook, buildFrame({ ...flow.spec, partialChecksum: true }));
              expectUntouchedStats(flow.action.connId);
              expectForwarded(hook, flow);
            });
          } else {
            // The test run's skb is CHECKSUM_NONE (ip_summed cannot be set), so the helpers patch
            // the field as a complete checksum: what matters is that TC does not pass it.
            test(`${what}: forwarded as before, the field patched incrementally`, () => {
              const flow = plan(base(family, proto), NATS["SNAT+DNAT"]!(family));
              dp.install(flow);
              const partial = buildFrame({ ...flow.spec, partialChecksum: true });
              const r = dp.run(hook, partial);
              expect(r.retval).toBe(hook.redirect);
              const off = l4ChecksumOffset(flow.spec);
              const blank = (f: Uint8Array) => hex(Uint8Array.from(f, (b, i) => (i === off || i === off + 1 ? 0 : b)));
              expect(blank(r.data)).toBe(blank(buildFrame(flow.out)));
              // An incremental patch keeps the packet's checksum residue.
              expect(parseFrame(r.data).l4Sum).toBe(parseFrame(partial).l4Sum);
              expect(dp.connStats(flow.action.connId).dir[0].packets).toBe(1n);
            });
          }
        }
      }
      if (hook.name === "XDP") {
        test("IPv4 UDP without checksum (0) is no partial value: forwarded", () => {
          const flow = plan(base(4, PROTO_UDP, { udpChecksum: "none" }), NATS.SNAT!(4));
          dp.install(flow);
          expect(parseFrame(expectForwarded(hook, flow)).l4Checksum).toBe(0);
        });
      }
    });

    describe("passes odd packets untouched", () => {
      for (const family of FAMILIES) {
        for (const proto of PROTOS) {
          const what = `IPv${family} ${protoName(proto)}`;
          for (const c of ODD_CASES) {
            if (!(c.families ?? FAMILIES).includes(family) || !(c.protos ?? PROTOS).includes(proto)) continue;
            test(`${what}: ${c.name}`, () => {
              const spec = base(family, proto);
              const flow = plan(spec, NATS.SNAT!(family), c.flow?.(spec));
              dp.install(flow);
              expectPassed(hook, buildFrame({ ...flow.spec, ...c.change(flow.spec) }));
              expectUntouchedStats(flow.action.connId);
              expect(dp.events()).toEqual([]);
            });
          }
          test(`${what}: truncated at every length`, () => {
            const flow = plan(base(family, proto, { payload: payload(12) }), NATS.SNAT!(family));
            dp.install(flow);
            const frame = buildFrame(flow.spec);
            for (let len = hook.minFrame(family); len < frame.length; len++) expectPassed(hook, frame.subarray(0, len));
            expectUntouchedStats(flow.action.connId);
            expect(dp.events()).toEqual([]);
          });
        }
      }
    });

    describe("ingress MAC checks (the kernel's PACKET_OTHERHOST and pppoe_rcv)", () => {
      for (const family of FAMILIES) {
        for (const proto of PROTOS) {
          const what = `IPv${family} ${protoName(proto)}`;
          test(`${what}: forwarded when the frame carries the action's destination and source MACs`, () => {
            const flow = withIngressMacs(plan(base(family, proto), NATS.SNAT!(family)), ROUTER_MAC, CLIENT_MAC);
            dp.install(flow);
            expectForwarded(hook, flow);
            expect(dp.connStats(flow.action.connId).dir[0].packets).toBe(1n);
          });
          test(`${what}: a unicast frame for another host passes untouched`, () => {
            const flow = withIngressMacs(plan(base(family, proto), NATS.SNAT!(family)), ROUTER_MAC);
            dp.install(flow);
            expectPassed(hook, buildFrame({ ...flow.spec, dmac: OTHER_MAC }));
            expectUntouchedStats(flow.action.connId);
            expect(dp.events()).toEqual([]);
            expectForwarded(hook, flow);
          });
          test(`${what}: a frame from another source MAC passes untouched`, () => {
            const flow = withIngressMacs(plan(base(family, proto), NATS.SNAT!(family)), undefined, CLIENT_MAC);
            dp.install(flow);
            expectPassed(hook, buildFrame({ ...flow.spec, smac: OTHER_MAC }));
            expectUntouchedStats(flow.action.connId);
            expect(dp.events()).toEqual([]);
            expectForwarded(hook, flow);
          });
        }
      }
      test("every byte of both MACs is compared", () => {
        const flow = withIngressMacs(plan(base(4, PROTO_UDP), NATS.SNAT!(4)), ROUTER_MAC, CLIENT_MAC);
        dp.install(flow);
        for (let i = 0; i < 6; i++) {
          expectPassed(hook, buildFrame({ ...flow.spec, dmac: macFlip(ROUTER_MAC, i) }));
          expectPassed(hook, buildFrame({ ...flow.spec, smac: macFlip(CLIENT_MAC, i) }));
        }
        expectUntouchedStats(flow.action.connId);
        expectForwarded(hook, flow);
      });
      test("all zero (or omitted): no check, any unicast MACs are forwarded", () => {
        for (const zero of [undefined, "00:00:00:00:00:00"]) {
          const flow = withIngressMacs(plan(base(6, PROTO_TCP, { dmac: OTHER_MAC, smac: OTHER_MAC }), NATS.DNAT!(6)), zero, zero);
          dp.install(flow);
          expectForwarded(hook, flow);
        }
      });
      test("a frame for another host is neither dropped (FLOW_ACT_DROP) nor closes the connection (FIN)", () => {
        const drop = withIngressMacs(plan(base(4, PROTO_UDP), {}, { flags: FLOW_ACT_DROP }), ROUTER_MAC, CLIENT_MAC);
        dp.install(drop);
        expectPassed(hook, buildFrame({ ...drop.spec, dmac: OTHER_MAC }));
        expectPassed(hook, buildFrame({ ...drop.spec, smac: OTHER_MAC }));
        expectUntouchedStats(drop.action.connId);
        const flow = withIngressMacs(plan(base(6, PROTO_TCP), NATS.SNAT!(6)), ROUTER_MAC, CLIENT_MAC);
        dp.install(flow);
        expectPassed(hook, buildFrame({ ...flow.spec, dmac: OTHER_MAC, tcpFlags: TCP_FIN | TCP_ACK }));
        expectPassed(hook, buildFrame({ ...flow.spec, smac: OTHER_MAC, tcpFlags: TCP_RST }));
        expectUntouchedStats(flow.action.connId);
        expect(dp.events()).toEqual([]);
        expectForwarded(hook, flow);
      });
    });

    describe("drop entries (the dropper)", () => {
      for (const family of FAMILIES) {
        test(`IPv${family} FLOW_ACT_DROP_SYN: only a TCP SYN without ACK, FIN or RST is dropped; the rest is the kernel's`, () => {
          const drop = plan(base(family, PROTO_TCP), {}, { flags: FLOW_ACT_DROP | FLOW_ACT_DROP_SYN });
          dp.install(drop);
          for (const flags of [TCP_SYN | TCP_ACK, TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN | TCP_RST]) {
            expectPassed(hook, buildFrame({ ...drop.spec, tcpFlags: flags }));
          }
          expectUntouchedStats(drop.action.connId);
          expect(dp.run(hook, buildFrame({ ...drop.spec, tcpFlags: TCP_SYN })).retval).toBe(hook.drop);
          expect(dp.connStats(drop.action.connId).dir[0].packets).toBe(1n);
        });
        test(`IPv${family} FLOW_ACT_DROP_SYN on UDP, and FLOW_ACT_DROP alone on TCP: every packet is dropped`, () => {
          const udp = plan(base(family, PROTO_UDP), {}, { flags: FLOW_ACT_DROP | FLOW_ACT_DROP_SYN });
          const tcp = plan(base(family, PROTO_TCP), {}, { flags: FLOW_ACT_DROP });
          dp.install(udp);
          dp.install(tcp);
          expect(dp.run(hook, buildFrame(udp.spec)).retval).toBe(hook.drop);
          for (const flags of [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_RST]) {
            expect(dp.run(hook, buildFrame({ ...tcp.spec, tcpFlags: flags })).retval).toBe(hook.drop);
          }
        });
      }
    });

    describe("connection state", () => {
      for (const family of FAMILIES) {
        for (const [name, flags] of [
          ["FIN", TCP_FIN | TCP_ACK],
          ["RST", TCP_RST],
          ["RST+ACK", TCP_RST | TCP_ACK],
        ] as const) {
          test(`IPv${family} ${name}: connection marked closing, both directions back to the stack`, () => {
            const orig = plan(base(family, PROTO_TCP), NATS.SNAT!(family));
            const reply = replyOf(orig);
            dp.install(orig);
            dp.install(reply);
            expectForwarded(hook, orig);
            const close = buildFrame({ ...orig.spec, tcpFlags: flags });
            expectPassed(hook, close);
            const s = dp.connStats(orig.action.connId);
            expect(s.flags & FLOW_STATS_CLOSING).toBe(FLOW_STATS_CLOSING);
            expect(s.dir[0].packets).toBe(1n);
            expect(dp.events()).toEqual([{ type: FLOW_EV_CLOSING, connId: orig.action.connId, key: orig.key }]);
            // Everything that follows goes to the stack, and is reported only once.
            expectPassed(hook, buildFrame(orig.spec));
            expectPassed(hook, buildFrame(reply.spec));
            expectPassed(hook, close);
            expect(dp.events()).toEqual([]);
            expect(dp.connStats(orig.action.connId).dir.map((d) => d.packets)).toEqual([1n, 0n]);
          });
        }
        test(`IPv${family} SYN on an offloaded flow goes to the stack without closing it`, () => {
          const flow = plan(base(family, PROTO_TCP), NATS.SNAT!(family));
          dp.install(flow);
          expectPassed(hook, buildFrame({ ...flow.spec, tcpFlags: TCP_SYN }));
          expectPassed(hook, buildFrame({ ...flow.spec, tcpFlags: TCP_SYN | TCP_ACK }));
          expectUntouchedStats(flow.action.connId);
          expect(dp.events()).toEqual([]);
          expectForwarded(hook, flow);
        });
      }
      test("a connection already marked closing (or out of range) goes to the stack", () => {
        const flow = plan(base(6, PROTO_UDP), NATS.SNAT!(6));
        dp.install(flow);
        const closing = new Uint8Array(LAYOUT.flow_stats.size);
        new DataView(closing.buffer).setUint32(LAYOUT.flow_stats.members.flags, FLOW_STATS_CLOSING, true);
        dp.obj.map("flow_stats").update(u32(flow.action.connId), closing);
        expectPassed(hook, buildFrame(flow.spec));
        const outOfRange = plan(base(4, PROTO_UDP), NATS.SNAT!(4), { connId: MAX_CONNS });
        dp.install(outOfRange);
        expectPassed(hook, buildFrame(outOfRange.spec));
        expect(dp.events()).toEqual([]);
      });
      test("FLOW_ACT_DROP drops the packet and counts it", () => {
        for (const family of FAMILIES) {
          const flow = plan(base(family, PROTO_UDP), {}, { flags: FLOW_ACT_DROP, dir: 1 });
          dp.install(flow);
          const frame = buildFrame(flow.spec);
          const r = dp.run(hook, frame);
          expect(r.retval).toBe(hook.drop);
          expect(hex(r.data)).toBe(hex(frame));
          const s = dp.connStats(flow.action.connId);
          expect(s.dir[1]).toEqual({ packets: 1n, bytes: BigInt(parseFrame(frame).l3Length) });
          expect(s.dir[0].packets).toBe(0n);
        }
        expect(dp.events()).toEqual([]);
      });
    });

    describe("unknown flows and the daemon", () => {
      for (const family of FAMILIES) {
        for (const proto of PROTOS) {
          test(`IPv${family} ${protoName(proto)} unknown flow: one FLOW_EV_NEW per notify interval`, () => {
            const flow = plan(base(family, proto), {});
            const frame = buildFrame(flow.spec);
            expectPassed(hook, frame);
            expect(dp.events()).toEqual([{ type: FLOW_EV_NEW, connId: 0, key: flow.key }]);
            expectPassed(hook, frame);
            expectPassed(hook, frame);
            expect(dp.events()).toEqual([]);
            dp.setNotified(flow.key, monotonicNs() - NOTIFY_INTERVAL_NS - 1n);
            expectPassed(hook, frame);
            expect(dp.events()).toEqual([{ type: FLOW_EV_NEW, connId: 0, key: flow.key }]);
          });
        }
      }
      test("stale heartbeat: everything goes to the stack, nothing is reported", () => {
        const flow = plan(base(4, PROTO_TCP), NATS.SNAT!(4));
        dp.install(flow);
        const unknown = buildFrame(base(6, PROTO_UDP));
        dp.heartbeat(monotonicNs() - HEARTBEAT_TIMEOUT_NS - 1_000_000n);
        expectPassed(hook, buildFrame(flow.spec));
        expectPassed(hook, unknown);
        expect(dp.events()).toEqual([]);
        expectUntouchedStats(flow.action.connId);
        dp.heartbeat();
        expectForwarded(hook, flow);
      });
      test("heartbeat: fresh until the timeout; one from the future is stale", () => {
        const flow = plan(base(4, PROTO_TCP), NATS.SNAT!(4));
        dp.install(flow);
        dp.heartbeat(monotonicNs() - HEARTBEAT_TIMEOUT_NS + 1_000_000_000n);
        expectForwarded(hook, flow);
        dp.heartbeat(monotonicNs() + 1_000_000_000n);
        expectPassed(hook, buildFrame(flow.spec));
        dp.heartbeat();
        expectForwarded(hook, flow);
      });
    });
  });
}

test("flow_stats dumped in batches from any slot, into reused buffers, in slot order", () => {
  const stats = dp.obj.map("flow_stats");
  const n = Math.min(MAX_CONNS, 40);
  for (let i = 0; i < n; i++) {
    const rec = new Uint8Array(LAYOUT.flow_stats.size);
    new DataView(rec.buffer).setBigUint64(LAYOUT.flow_stats.members.dir, BigInt(1000 + i), true);
    stats.update(u32(i), rec);
  }
  const into = { keys: new Uint8Array(16 * 4), values: new Uint8Array(16 * LAYOUT.flow_stats.size) };
  for (const from of [0, 1, 16, 30]) {
    const d = stats.dump({ limit: Math.min(16, n - from), from, into });
    expect(d.count).toBe(Math.min(16, n - from));
    expect(d.values.buffer).toBe(into.values.buffer);
    for (let i = 0; i < d.count; i++) {
      expect(new DataView(d.keys.buffer).getUint32(i * 4, true)).toBe(from + i);
      expect(decodeStats(d.values, i * LAYOUT.flow_stats.size).dir[0].packets).toBe(BigInt(1000 + from + i));
    }
  }
  expect(stats.dump({ limit: 5, from: MAX_CONNS - 2 }).count).toBe(2);
  for (let i = 0; i < n; i++) stats.update(u32(i), new Uint8Array(LAYOUT.flow_stats.size));
});
