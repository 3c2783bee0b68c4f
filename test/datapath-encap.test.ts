// Encapsulations in the datapath (bpf/offload.bpf.c), run by the kernel (BPF_PROG_TEST_RUN) through
// both programs: VLAN (802.1Q, 802.1ad, QinQ), PPPoE sessions and DSA tags parsed on ingress into
// the flow key, and the egress L2 header the action asks for pushed, byte for byte as the frames
// packet.ts builds from the header formats. Odd encapsulations go to the stack untouched. Also
// FLOW_ACT_TC_ONLY, XDP_TX back out of the ingress device, CHECKSUM_PARTIAL packets behind
// encapsulations, and the iface_stats counters.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { constants } from "node:os";
import { monotonicNs } from "../ffi/libc.ts";
import {
  AF_INET,
  AF_INET6,
  DSA_TAGGERS,
  DSA_TAG_NONE,
  FLOW_ACT_DROP,
  FLOW_ACT_TC_ONLY,
  FLOW_VLAN_8021AD,
  IFACE_PROBES,
  IFACE_SLOTS,
  LAYOUT,
  decodeIfaceStats,
  decodeStats,
  encodeAction,
  encodeConfig,
  encodeIfaceSlot,
  encodeKey,
  encodeParams,
  ifaceSlotCandidates,
  ifaceSlotOwner,
  type FlowAction,
  type FlowKey,
  type IfaceStats,
} from "../src/abi.ts";
import { BpfError, BpfObject, testRun, type BpfMap, type TestRunResult } from "../src/bpf.ts";
import { libbpf } from "../ffi/libbpf.ts";
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_IP,
  ETH_P_IPV6,
  ETH_P_PPP_DISC,
  PPP_LCP,
  PROTO_TCP,
  PROTO_UDP,
  TCP_ACK,
  TCP_PSH,
  addr16,
  buildFrame,
  checksumsValid,
  dsaRx,
  dsaTx,
  hex,
  l2Length,
  parseFrame,
  parseIp,
  parseMac,
  stripL2,
  type DsaTagger,
  type Encap,
  type FrameSpec,
} from "./packet.ts";

import {
  CLIENT_MAC, EGRESS_MAC, INGRESS_IFINDEX, MAX_CONNS, NEXT_HOP_MAC, OBJECT_PATH, OTHER_MAC, OUT_IFINDEX, ROUTER_MAC,
} from "./datapath-env.ts";

const IMAGE = await Bun.file(OBJECT_PATH).bytes();
/** User ports 0-6 exist on every test conduit; 7 does not. */
const DSA_PORTS = 0x7f;
const BAD_PORT = 7;
const TAGGERS = Object.keys(DSA_TAGGERS) as DsaTagger[];

// ---- Hooks ----

interface Hook {
  name: string;
  prog: string;
  pass: number;
  drop: number;
  redirect: number;
  /** Verdict for a flow that leaves through its ingress device. */
  sameDevice: number;
  ctx(frameLen: number, gsoSize: number): Uint8Array;
}

const XDP: Hook = {
  name: "XDP",
  prog: "offload_xdp",
  pass: 2,
  drop: 1,
  redirect: 4,
  sameDevice: 3, // XDP_TX
  ctx(frameLen) {
    const md = new Uint8Array(24); // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
    const v = new DataView(md.buffer);
    v.setUint32(4, frameLen, true);
    v.setUint32(12, INGRESS_IFINDEX, true);
    return md;
  },
};
const TC: Hook = {
  name: "TC",
  prog: "offload_tc",
  pass: 0,
  drop: 2,
  redirect: 7,
  sameDevice: 7, // bpf_redirect to the device's own egress
  ctx(_frameLen, gsoSize) {
    const skb = new Uint8Array(192); // struct __sk_buff; ingress_ifindex at 36, gso_size at 176
    const v = new DataView(skb.buffer);
    v.setUint32(36, INGRESS_IFINDEX, true);
    v.setUint32(176, gsoSize, true);
    return skb;
  },
};
const HOOKS = [XDP, TC];

// ---- One loaded object for plain devices, one instance per conduit configuration ----

/** Stats slots: the scenarios use more connections than the shared MAX_CONNS. */
const CONN_SLOTS = 4 * MAX_CONNS;

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

class Datapath {
  readonly obj: BpfObject;
  readonly flows: BpfMap;
  readonly stats: BpfMap;
  readonly config: BpfMap;
  readonly iface: BpfMap;

  /** shareWith: use that object's maps, as the daemon loads its conduit instances (run --dsa). */
  constructor(dsaTagger: number, dsaPorts: number, shareWith?: Datapath) {
    this.obj = BpfObject.open(IMAGE, {
      maxEntries: { flows: CONN_SLOTS, flow_stats: CONN_SLOTS },
      params: encodeParams({ heartbeatTimeoutNs: 5_000_000_000n, notifyIntervalNs: 1_000_000_000n, dsaTagger, dsaPorts }),
      shareMapsOf: shareWith?.obj,
    });
    this.obj.load();
    this.flows = this.obj.map("flows");
    this.stats = this.obj.map("flow_stats");
    this.config = this.obj.map("flow_config");
    this.iface = this.obj.map("iface_stats");
  }

  heartbeat(): void {
    this.config.update(u32(0), encodeConfig(monotonicNs()));
  }

  install(flow: Flow): void {
    this.flows.update(encodeKey(flow.key), encodeAction(flow.action));
    this.stats.update(u32(flow.action.connId), new Uint8Array(LAYOUT.flow_stats.size));
  }

  run(hook: Hook, frame: Uint8Array, gsoSize = 0): TestRunResult {
    return testRun(this.obj.programFd(hook.prog), frame, { ctxIn: hook.ctx(frame.length, gsoSize) });
  }

  connPackets(connId: number): bigint[] {
    const buf = new Uint8Array(LAYOUT.flow_stats.size);
    expect(this.stats.lookup(u32(connId), buf)).toBe(true);
    return decodeStats(buf).dir.map((d) => d.packets);
  }

  /** Gives slot `slot` of iface_stats to a device (0: frees it), counters zero, as the daemon does. */
  placeIface(slot: number, ifindex: number): void {
    this.iface.update(u32(slot), encodeIfaceSlot(ifindex, libbpf.symbols.libbpf_num_possible_cpus()));
  }

  /** Every slot of iface_stats: the device it names (0: free) and its counters summed over CPUs. */
  ifaceSlots(): { ifindex: number; stats: IfaceStats }[] {
    const nCpus = libbpf.symbols.libbpf_num_possible_cpus();
    const { count, values } = this.iface.dump();
    expect(count).toBe(IFACE_SLOTS);
    return Array.from({ length: count }, (_, i) => {
      const v = values.subarray(i * this.iface.valueSize, (i + 1) * this.iface.valueSize);
      return { ifindex: ifaceSlotOwner(v), stats: decodeIfaceStats(v, nCpus) };
    });
  }
}

const plain = new Datapath(DSA_TAG_NONE, 0);
/** The conduit instances share plain's maps: every conduit scenario runs on one flows map. */
const conduits = Object.fromEntries(TAGGERS.map((t) => [t, new Datapath(DSA_TAGGERS[t]!, DSA_PORTS, plain)])) as Record<DsaTagger, Datapath>;
const ALL = [plain, ...Object.values(conduits)];
afterAll(() => {
  for (const d of ALL) d.obj.close();
});
beforeEach(() => {
  for (const d of ALL) d.heartbeat();
});

// ---- Flows ----

let portCounter = 30000;
let connCounter = 1;

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

function csumDelta(old: Uint8Array, neu: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < old.length; i += 2) s += (~((old[i]! << 8) | old[i + 1]!) & 0xffff) + ((neu[i]! << 8) | neu[i + 1]!);
  return fold(s);
}

function bytes(...parts: (Uint8Array | number[])[]): Uint8Array {
  return new Uint8Array(parts.flatMap((p) => Array.from(p)));
}

const TUPLES = {
  4: { src: "192.168.1.10", dst: "203.0.113.5", snat: "198.51.100.1" },
  6: { src: "2001:db8:1::10", dst: "2001:db8:2::5", snat: "2001:db8:ffff::1" },
} as const;
type Family = keyof typeof TUPLES;
type Proto = typeof PROTO_TCP | typeof PROTO_UDP;
const CASES: [Family, Proto][] = [
  [4, PROTO_TCP],
  [4, PROTO_UDP],
  [6, PROTO_TCP],
  [6, PROTO_UDP],
];
const caseName = (f: Family, p: Proto) => `IPv${f} ${p === PROTO_TCP ? "TCP" : "UDP"}`;

/** What the key says about the ingress encapsulation. */
interface KeyEncap {
  vlan?: [number, number];
  pppoeSid?: number;
  /** The source port (the key holds it + 1). */
  dsaPort?: number;
}

/** What the action asks for on egress. */
interface Egress {
  vlan?: [number, number];
  pppoeSid?: number;
  dsaTagger?: DsaTagger;
  dsaPort?: number;
  /** Out of the ingress device. */
  sameDevice?: boolean;
}

interface Flow {
  spec: FrameSpec;
  key: FlowKey;
  action: FlowAction;
  out: FrameSpec;
}

function plan(
  family: Family,
  proto: Proto,
  inEncap: Encap[],
  key: KeyEncap,
  egress: Egress,
  outEncap: Encap[],
  opts: { mtu?: number; flags?: number; payload?: number } = {},
): Flow {
  const t = TUPLES[family];
  const sport = portCounter++;
  const dport = proto === PROTO_TCP ? 443 : 53;
  const spec: FrameSpec = {
    src: t.src,
    dst: t.dst,
    proto,
    sport,
    dport,
    dmac: ROUTER_MAC,
    smac: CLIENT_MAC,
    payload: Uint8Array.from({ length: opts.payload ?? 37 }, (_, i) => (i * 7 + 3) & 0xff),
    tcpFlags: TCP_ACK | TCP_PSH,
    encap: inEncap,
  };
  const addrDelta = csumDelta(bytes(parseIp(t.src), parseIp(t.dst)), bytes(parseIp(t.snat), parseIp(t.dst)));
  const ttlDelta = csumDelta(bytes([64, proto]), bytes([63, proto]));
  return {
    spec,
    key: {
      ifindex: INGRESS_IFINDEX,
      family: family === 4 ? AF_INET : AF_INET6,
      proto,
      dsaPort: key.dsaPort === undefined ? 0 : key.dsaPort + 1,
      vlan: key.vlan ?? [0, 0],
      pppoeSid: key.pppoeSid ?? 0,
      sport,
      dport,
      saddr: addr16(t.src),
      daddr: addr16(t.dst),
    },
    action: {
      outIfindex: egress.sameDevice ? INGRESS_IFINDEX : OUT_IFINDEX,
      connId: connCounter++,
      dir: 0,
      flags: opts.flags ?? 0,
      mtu: opts.mtu ?? 1500,
      dmac: parseMac(NEXT_HOP_MAC),
      smac: parseMac(EGRESS_MAC),
      saddr: addr16(t.snat),
      daddr: addr16(t.dst),
      sport: 61000,
      dport,
      l3CsumDelta: family === 4 ? fold(addrDelta + ttlDelta) : 0,
      l4CsumPseudo: addrDelta,
      l4CsumPorts: csumDelta(bytes([sport >> 8, sport & 0xff]), bytes([61000 >> 8, 61000 & 0xff])),
      egressVlan: egress.vlan ?? [0, 0],
      egressPppoeSid: egress.pppoeSid ?? 0,
      egressDsaTagger: egress.dsaTagger ? DSA_TAGGERS[egress.dsaTagger] : DSA_TAG_NONE,
      egressDsaPort: egress.dsaPort ?? 0,
    },
    out: { ...spec, src: t.snat, sport: 61000, ttl: 63, dmac: NEXT_HOP_MAC, smac: EGRESS_MAC, encap: outEncap, padding: 0 },
  };
}

// ---- Encapsulation shorthands ----

const vlan = (vid: number, tpid = ETH_P_8021Q): Encap => ({ kind: "vlan", vid, tpid });
const sTag = (vid: number): Encap => vlan(vid, ETH_P_8021AD);
const pppoe = (sid: number, more: Partial<Extract<Encap, { kind: "pppoe" }>> = {}): Encap => ({ kind: "pppoe", sid, ...more });
/** A key / action VLAN field. */
const kv = (vid: number, tpid = ETH_P_8021Q) => vid | (tpid === ETH_P_8021AD ? FLOW_VLAN_8021AD : 0);

// ---- Assertions ----

/**
 * TC carries a QinQ outer tag (without a DSA tag) as skb metadata, which BPF_PROG_TEST_RUN
 * does not show: its output frame has the inner tag only (the VM suite sees the outer on the wire).
 */
function outerTagInMeta(hook: Hook, a: FlowAction): boolean {
  return hook === TC && a.egressVlan[1] !== 0 && !a.egressDsaTagger;
}

/** The frame the hook's program leaves in the buffer for a flow. */
function expectedOut(hook: Hook, flow: Flow): FrameSpec {
  if (!outerTagInMeta(hook, flow.action)) return flow.out;
  return { ...flow.out, encap: flow.out.encap?.filter((_, i) => i !== 0) };
}

function expectForwarded(dp: Datapath, hook: Hook, flow: Flow, gsoSize = 0): Uint8Array {
  const expected = buildFrame(expectedOut(hook, flow));
  const r = dp.run(hook, buildFrame(flow.spec), gsoSize);
  expect(r.retval).toBe(flow.action.outIfindex === INGRESS_IFINDEX ? hook.sameDevice : hook.redirect);
  expect(hex(r.data)).toBe(hex(expected));
  // The checksums of what the program sent, seen as a plain Ethernet frame.
  const ethertype = flow.key.family === AF_INET ? ETH_P_IP : ETH_P_IPV6;
  expect(checksumsValid(stripL2(r.data, l2Length(expectedOut(hook, flow)), ethertype))).toBe(true);
  expect(dp.connPackets(flow.action.connId)[0]).toBeGreaterThan(0n);
  return r.data;
}

function expectPassed(dp: Datapath, hook: Hook, frame: Uint8Array, gsoSize = 0): void {
  const r = dp.run(hook, frame, gsoSize);
  expect(r.retval).toBe(hook.pass);
  expect(hex(r.data)).toBe(hex(frame));
}

// ---- Scenarios: ingress encapsulation, key, egress encapsulation ----

interface Scenario {
  name: string;
  dp: Datapath;
  in: Encap[];
  key: KeyEncap;
  egress: Egress;
  out: Encap[];
}

const SCENARIOS: Scenario[] = [
  // Each ingress encapsulation, untagged egress.
  { name: "802.1Q VLAN 100 -> untagged", dp: plain, in: [vlan(100)], key: { vlan: [kv(100), 0] }, egress: {}, out: [] },
  { name: "802.1ad S-tag 200 -> untagged", dp: plain, in: [sTag(200)], key: { vlan: [kv(200, ETH_P_8021AD), 0] }, egress: {}, out: [] },
  { name: "QinQ 10/20 -> untagged", dp: plain, in: [sTag(10), vlan(20)], key: { vlan: [kv(10, ETH_P_8021AD), kv(20)] }, egress: {}, out: [] },
  { name: "two 802.1Q tags 4094/1 -> untagged", dp: plain, in: [vlan(4094), vlan(1)], key: { vlan: [kv(4094), kv(1)] }, egress: {}, out: [] },
  { name: "PPPoE -> untagged", dp: plain, in: [pppoe(0x1234)], key: { pppoeSid: 0x1234 }, egress: {}, out: [] },
  { name: "PPPoE in VLAN 7 -> untagged", dp: plain, in: [vlan(7), pppoe(0x2a)], key: { vlan: [kv(7), 0], pppoeSid: 0x2a }, egress: {}, out: [] },
  { name: "VLAN with PCP 5 -> untagged (PCP not in the key)", dp: plain, in: [{ kind: "vlan", vid: 33, pcp: 5 }], key: { vlan: [kv(33), 0] }, egress: {}, out: [] },
  ...TAGGERS.map(
    (t): Scenario => ({ name: `DSA ${t} port 2 -> untagged`, dp: conduits[t], in: [dsaRx(t, 2)], key: { dsaPort: 2 }, egress: {}, out: [] }),
  ),
  ...TAGGERS.map(
    (t): Scenario => ({
      name: `DSA ${t} port 6 + PPPoE in QinQ -> untagged`,
      dp: conduits[t],
      in: [dsaRx(t, 6), sTag(11), vlan(12), pppoe(0xbeef)],
      key: { dsaPort: 6, vlan: [kv(11, ETH_P_8021AD), kv(12)], pppoeSid: 0xbeef },
      egress: {},
      out: [],
    }),
  ),
  // Untagged ingress, each egress encapsulation.
  { name: "untagged -> 802.1Q VLAN 100", dp: plain, in: [], key: {}, egress: { vlan: [kv(100), 0] }, out: [vlan(100)] },
  { name: "untagged -> 802.1ad S-tag 300", dp: plain, in: [], key: {}, egress: { vlan: [kv(300, ETH_P_8021AD), 0] }, out: [sTag(300)] },
  { name: "untagged -> QinQ 5/4000", dp: plain, in: [], key: {}, egress: { vlan: [kv(5, ETH_P_8021AD), kv(4000)] }, out: [sTag(5), vlan(4000)] },
  { name: "untagged -> PPPoE", dp: plain, in: [], key: {}, egress: { pppoeSid: 0x0101 }, out: [pppoe(0x0101)] },
  { name: "untagged -> PPPoE in VLAN 7", dp: plain, in: [], key: {}, egress: { vlan: [kv(7), 0], pppoeSid: 0xfffe }, out: [vlan(7), pppoe(0xfffe)] },
  ...TAGGERS.map(
    (t): Scenario => ({ name: `untagged -> DSA ${t} port 3`, dp: plain, in: [], key: {}, egress: { dsaTagger: t, dsaPort: 3 }, out: [dsaTx(t, 3)] }),
  ),
  ...TAGGERS.map(
    (t): Scenario => ({
      name: `untagged -> DSA ${t} port 5 + 802.1Q VLAN 100`,
      dp: plain,
      in: [],
      key: {},
      egress: { dsaTagger: t, dsaPort: 5, vlan: [kv(100), 0] },
      out: [dsaTx(t, 5, ETH_P_8021Q, 100), vlan(100)],
    }),
  ),
  ...TAGGERS.map(
    (t): Scenario => ({
      name: `untagged -> DSA ${t} port 0 + PPPoE in QinQ`,
      dp: plain,
      in: [],
      key: {},
      egress: { dsaTagger: t, dsaPort: 0, vlan: [kv(2, ETH_P_8021AD), kv(3)], pppoeSid: 0x55 },
      out: [dsaTx(t, 0, ETH_P_8021AD, 2), sTag(2), vlan(3), pppoe(0x55)],
    }),
  ),
  { name: "untagged -> DSA brcm port 8", dp: plain, in: [], key: {}, egress: { dsaTagger: "brcm", dsaPort: 8 }, out: [dsaTx("brcm", 8)] },
  { name: "untagged -> DSA rtl8_4 port 10", dp: plain, in: [], key: {}, egress: { dsaTagger: "rtl8_4", dsaPort: 10 }, out: [dsaTx("rtl8_4", 10)] },
  // Mixed paths.
  {
    name: "DSA mtk port 2 untagged -> PPPoE in VLAN 7 out of the same conduit (port 4)",
    dp: conduits.mtk,
    in: [dsaRx("mtk", 2)],
    key: { dsaPort: 2 },
    egress: { sameDevice: true, dsaTagger: "mtk", dsaPort: 4, vlan: [kv(7), 0], pppoeSid: 0x0815 },
    out: [dsaTx("mtk", 4, ETH_P_8021Q, 7), vlan(7), pppoe(0x0815)],
  },
  {
    name: "and back: DSA mtk port 4 PPPoE in VLAN 7 -> port 2 untagged, same conduit",
    dp: conduits.mtk,
    in: [dsaRx("mtk", 4), vlan(7), pppoe(0x0815)],
    key: { dsaPort: 4, vlan: [kv(7), 0], pppoeSid: 0x0815 },
    egress: { sameDevice: true, dsaTagger: "mtk", dsaPort: 2 },
    out: [dsaTx("mtk", 2)],
  },
  ...TAGGERS.map(
    (t): Scenario => ({
      name: `DSA ${t} port 1 -> PPPoE in VLAN 7 on port 3 of the same conduit`,
      dp: conduits[t],
      in: [dsaRx(t, 1)],
      key: { dsaPort: 1 },
      egress: { sameDevice: true, dsaTagger: t, dsaPort: 3, vlan: [kv(7), 0], pppoeSid: 9 },
      out: [dsaTx(t, 3, ETH_P_8021Q, 7), vlan(7), pppoe(9)],
    }),
  ),
  { name: "QinQ -> untagged on another device", dp: plain, in: [sTag(100), vlan(200)], key: { vlan: [kv(100, ETH_P_8021AD), kv(200)] }, egress: {}, out: [] },
  { name: "VLAN 100 -> VLAN 200", dp: plain, in: [vlan(100)], key: { vlan: [kv(100), 0] }, egress: { vlan: [kv(200), 0] }, out: [vlan(200)] },
  { name: "VLAN 100 -> VLAN 100 back out of the same device", dp: plain, in: [vlan(100)], key: { vlan: [kv(100), 0] }, egress: { sameDevice: true, vlan: [kv(100), 0] }, out: [vlan(100)] },
  { name: "PPPoE in VLAN 7 -> QinQ", dp: plain, in: [vlan(7), pppoe(0x77)], key: { vlan: [kv(7), 0], pppoeSid: 0x77 }, egress: { vlan: [kv(8, ETH_P_8021AD), kv(9)] }, out: [sTag(8), vlan(9)] },
  { name: "PPPoE -> PPPoE (another session)", dp: plain, in: [pppoe(1)], key: { pppoeSid: 1 }, egress: { pppoeSid: 2 }, out: [pppoe(2)] },
];

for (const hook of HOOKS) {
  describe(`${hook.name} program`, () => {
    describe("forwards with the egress encapsulation", () => {
      for (const s of SCENARIOS) {
        for (const [family, proto] of CASES) {
          test(`${s.name}, ${caseName(family, proto)}`, () => {
            const flow = plan(family, proto, s.in, s.key, s.egress, s.out);
            s.dp.install(flow);
            expectForwarded(s.dp, hook, flow);
          });
        }
      }
      test("padded PPPoE-in-VLAN frame is trimmed to the IP packet", () => {
        const flow = plan(4, PROTO_UDP, [vlan(7), pppoe(3)], { vlan: [kv(7), 0], pppoeSid: 3 }, {}, [], { payload: 0 });
        plain.install(flow);
        const r = plain.run(hook, buildFrame({ ...flow.spec, padding: 20 }));
        expect(r.retval).toBe(hook.redirect);
        expect(hex(r.data)).toBe(hex(buildFrame(flow.out)));
      });
      test("PPPoE egress: the MTU is the PPPoE device's (L3 length)", () => {
        const probe = plan(4, PROTO_TCP, [], {}, { pppoeSid: 4 }, [pppoe(4)]);
        const l3 = parseFrame(buildFrame(probe.spec)).l3Length;
        const fits = plan(4, PROTO_TCP, [], {}, { pppoeSid: 4 }, [pppoe(4)], { mtu: l3 });
        plain.install(fits);
        expectForwarded(plain, hook, fits);
        const tooBig = plan(4, PROTO_TCP, [], {}, { pppoeSid: 4 }, [pppoe(4)], { mtu: l3 - 1 });
        plain.install(tooBig);
        expectPassed(plain, hook, buildFrame(tooBig.spec));
      });
      test("QinQ egress: TC takes packets up to the MTU, XDP (both tags in the frame) 4 bytes less", () => {
        const egress: Egress = { vlan: [kv(100, ETH_P_8021AD), kv(7)], pppoeSid: 6 };
        const out = [sTag(100), vlan(7), pppoe(6)];
        const probe = plan(4, PROTO_TCP, [], {}, egress, out);
        const l3 = parseFrame(buildFrame(probe.spec)).l3Length;
        const fitsBoth = plan(4, PROTO_TCP, [], {}, egress, out, { mtu: l3 + 4 });
        plain.install(fitsBoth);
        expectForwarded(plain, hook, fitsBoth);
        const tcOnly = plan(4, PROTO_TCP, [], {}, egress, out, { mtu: l3 });
        plain.install(tcOnly);
        if (hook === TC) expectForwarded(plain, hook, tcOnly);
        else expectPassed(plain, hook, buildFrame(tcOnly.spec));
        const neither = plan(4, PROTO_TCP, [], {}, egress, out, { mtu: l3 - 1 });
        plain.install(neither);
        expectPassed(plain, hook, buildFrame(neither.spec));
        // Behind a DSA tag both tags stay in the frame on either hook: the MTU counts them.
        const dsaOut = [dsaTx("mtk", 2, ETH_P_8021AD, 100), sTag(100), vlan(7), pppoe(6)];
        const dsa = plan(4, PROTO_TCP, [], {}, { ...egress, dsaTagger: "mtk", dsaPort: 2 }, dsaOut, { mtu: l3 });
        plain.install(dsa);
        expectForwarded(plain, hook, dsa);
      });
      test("Broadcom: a frame the tagger would pad goes to the stack", () => {
        for (const t of ["brcm", "brcm-prepend"] as const) {
          // 14 + 20 + 8 = 42 bytes < 64 before the tag.
          const flow = plan(4, PROTO_UDP, [], {}, { dsaTagger: t, dsaPort: 1 }, [dsaTx(t, 1)], { payload: 0 });
          plain.install(flow);
          expectPassed(plain, hook, buildFrame(flow.spec));
          // 64 bytes before the tag: forwarded.
          const big = plan(4, PROTO_UDP, [], {}, { dsaTagger: t, dsaPort: 1 }, [dsaTx(t, 1)], { payload: 22 });
          plain.install(big);
          expectForwarded(plain, hook, big);
        }
      });
      test("an egress the action cannot express goes to the stack", () => {
        const bad: Egress[] = [
          { vlan: [0, kv(5)] }, // inner tag without an outer one
          { vlan: [4095, 0] }, // reserved VID
          { vlan: [0x1005, 0] }, // a bit outside VID | 802.1ad
          { pppoeSid: 0xffff }, // reserved session id
          { dsaTagger: "mtk", dsaPort: 6 }, // beyond the tag's port mask
          { dsaTagger: "gswip", dsaPort: 6 },
          { dsaTagger: "qca", dsaPort: 7 },
        ];
        for (const egress of bad) {
          const flow = plan(6, PROTO_TCP, [], {}, egress, []);
          plain.install(flow);
          expectPassed(plain, hook, buildFrame(flow.spec));
        }
        const unknown = plan(6, PROTO_TCP, [], {}, {}, []);
        unknown.action.egressDsaTagger = 99;
        plain.install(unknown);
        expectPassed(plain, hook, buildFrame(unknown.spec));
      });
    });

    describe("passes odd encapsulations untouched", () => {
      // Each with a flow installed under the key a careless parser would make of it.
      const ODD: { name: string; dp: Datapath; in: Encap[]; key: KeyEncap }[] = [
        { name: "three VLAN tags", dp: plain, in: [sTag(1), vlan(2), vlan(3)], key: { vlan: [kv(1, ETH_P_8021AD), kv(2)] } },
        { name: "VLAN VID 0 (priority tag)", dp: plain, in: [vlan(0)], key: {} },
        { name: "VLAN VID 4095 (reserved)", dp: plain, in: [vlan(4095)], key: { vlan: [4095, 0] } },
        { name: "PPPoE discovery", dp: plain, in: [pppoe(5, { ethertype: ETH_P_PPP_DISC })], key: { pppoeSid: 5 } },
        { name: "PPPoE length one too long", dp: plain, in: [pppoe(5, { length: 1000 })], key: { pppoeSid: 5 } },
        { name: "PPPoE length one too short", dp: plain, in: [pppoe(5, { length: 20 })], key: { pppoeSid: 5 } },
        { name: "PPPoE version 2", dp: plain, in: [pppoe(5, { verType: 0x21 })], key: { pppoeSid: 5 } },
        { name: "PPPoE code not 0 (PADT)", dp: plain, in: [pppoe(5, { code: 0xa7 })], key: { pppoeSid: 5 } },
        { name: "PPPoE session 0", dp: plain, in: [pppoe(0)], key: {} },
        { name: "PPP LCP", dp: plain, in: [pppoe(5, { pppProto: PPP_LCP })], key: { pppoeSid: 5 } },
        {
          name: "LLC/SNAP (802.3 length) frame",
          dp: plain,
          in: [{ kind: "raw", bytes: new Uint8Array([0x00, 0x60, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00]) }],
          key: {},
        },
        {
          name: "LLC frame inside a VLAN tag",
          dp: plain,
          in: [vlan(9), { kind: "raw", bytes: new Uint8Array([0x00, 0x60, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00]) }],
          key: { vlan: [kv(9), 0] },
        },
        { name: "a DSA tag on a device that is no conduit", dp: plain, in: [dsaRx("mtk", 2)], key: { dsaPort: 2 } },
        ...TAGGERS.map((t) => ({ name: `DSA ${t}: port without a user device`, dp: conduits[t], in: [dsaRx(t, BAD_PORT)], key: { dsaPort: BAD_PORT } })),
        ...TAGGERS.map((t) => ({ name: `DSA ${t} conduit: untagged frame`, dp: conduits[t], in: [], key: {} })),
        ...(
          [
            ["qca", [0x40, 0x02], "version 1"],
            ["qca", [0x80, 0x42], "MIB reply (type 1)"],
            ["brcm", [0x20, 0x00, 0x00, 0x02], "opcode 1"],
            ["brcm", [0x00, 0x00, 0xc0, 0x02], "reserved reason code"],
            ["dsa", [0x00, 0x10, 0x00, 0x00], "TO_CPU (a trap)"],
            ["dsa", [0xe0, 0x10, 0x00, 0x05], "tagged FORWARD"],
            ["dsa", [0xc0, 0x14, 0x00, 0x00], "trunk source"],
            ["dsa", [0xc1, 0x10, 0x00, 0x00], "another switch of a cascade"],
            ["edsa", [0xda, 0xdb, 0x00, 0x00, 0xc0, 0x10, 0x00, 0x00], "wrong ethertype"],
            ["rtl8_4", [0x88, 0x98, 0x04, 0x00, 0x00, 0x00, 0x00, 0x02], "wrong ethertype"],
            ["rtl8_4", [0x88, 0x99, 0x05, 0x00, 0x00, 0x00, 0x00, 0x02], "protocol 5"],
          ] as [DsaTagger, number[], string][]
        ).map(([t, tag, what]) => ({ name: `DSA ${t}: unknown tag (${what})`, dp: conduits[t], in: [{ kind: "dsa" as const, tag: new Uint8Array(tag) }], key: { dsaPort: 2 } })),
      ];
      for (const o of ODD) {
        for (const [family, proto] of CASES) {
          test(`${o.name}, ${caseName(family, proto)}`, () => {
            const flow = plan(family, proto, o.in, o.key, {}, []);
            o.dp.install(flow);
            expectPassed(o.dp, hook, buildFrame(flow.spec));
            expect(o.dp.connPackets(flow.action.connId)).toEqual([0n, 0n]);
          });
        }
      }
      test("truncated encapsulated frames at every length", () => {
        const flow = plan(4, PROTO_UDP, [dsaRx("edsa", 3), sTag(1), vlan(2), pppoe(7)], { dsaPort: 3, vlan: [kv(1, ETH_P_8021AD), kv(2)], pppoeSid: 7 }, {}, [], { payload: 4 });
        conduits.edsa.install(flow);
        const frame = buildFrame(flow.spec);
        for (let len = 14; len < frame.length; len++) expectPassed(conduits.edsa, hook, frame.subarray(0, len));
        expect(conduits.edsa.connPackets(flow.action.connId)).toEqual([0n, 0n]);
      });
    });
  });
}

describe("ingress MAC checks behind DSA tags and with PPPoE", () => {
  // Each: where the Ethernet header is (behind a prepended tag or not), and a PPPoE session whose
  // peer is CLIENT_MAC, as the daemon fills the action for a flow arriving over PPPoE.
  const WHERE: { name: string; dp: Datapath; in: Encap[]; key: KeyEncap }[] = [
    { name: "PPPoE", dp: plain, in: [pppoe(0x77)], key: { pppoeSid: 0x77 } },
    { name: "PPPoE in VLAN 7", dp: plain, in: [vlan(7), pppoe(0x78)], key: { vlan: [kv(7), 0], pppoeSid: 0x78 } },
    ...TAGGERS.map((t) => ({ name: `DSA ${t} port 2 + PPPoE`, dp: conduits[t], in: [dsaRx(t, 2), pppoe(0x79)], key: { dsaPort: 2, pppoeSid: 0x79 } })),
    ...(["brcm-prepend", "gswip"] as const).map((t) => ({ name: `DSA ${t} port 3, no PPPoE`, dp: conduits[t], in: [dsaRx(t, 3)], key: { dsaPort: 3 } })),
  ];
  for (const hook of HOOKS) {
    for (const w of WHERE) {
      for (const [family, proto] of [CASES[0]!, CASES[3]!]) {
        test(`${hook.name}, ${w.name}, ${caseName(family, proto)}: forwarded when both MACs match, else passed untouched`, () => {
          const flow = plan(family, proto, w.in, w.key, {}, []);
          flow.action.ingressDmac = parseMac(ROUTER_MAC);
          flow.action.ingressSmac = parseMac(CLIENT_MAC);
          w.dp.install(flow);
          expectPassed(w.dp, hook, buildFrame({ ...flow.spec, dmac: OTHER_MAC }));
          expectPassed(w.dp, hook, buildFrame({ ...flow.spec, smac: OTHER_MAC }));
          expect(w.dp.connPackets(flow.action.connId)).toEqual([0n, 0n]);
          expectForwarded(w.dp, hook, flow);
          expect(w.dp.connPackets(flow.action.connId)).toEqual([1n, 0n]);
        });
        test(`${hook.name}, ${w.name}, ${caseName(family, proto)}: all zero, no check`, () => {
          const flow = plan(family, proto, w.in, w.key, {}, []);
          flow.spec = { ...flow.spec, dmac: OTHER_MAC, smac: OTHER_MAC };
          w.dp.install(flow);
          expectForwarded(w.dp, hook, flow);
        });
      }
    }
  }
});

describe("conduit mode: instances per tagger on one set of maps", () => {
  test("the maps are plain's own (same kernel maps), not copies", () => {
    const id = (m: BpfMap) => {
      // Own ArrayBuffers: FFI pointers to small inline arrays can go stale (shared bun-ffi notes).
      const info = new Uint8Array(new ArrayBuffer(256));
      const len = new Uint8Array(new ArrayBuffer(4));
      new DataView(len.buffer).setUint32(0, info.length, true);
      expect(libbpf.symbols.bpf_obj_get_info_by_fd(m.fd, info, len)).toBe(0);
      return new DataView(info.buffer).getUint32(4, true); // struct bpf_map_info: type, id
    };
    for (const name of ["flows", "flow_stats", "flow_config", "flow_notified", "iface_stats", "flow_events"]) {
      expect(id(conduits.mtk.obj.map(name))).toBe(id(plain.obj.map(name)));
      expect(id(conduits.gswip.obj.map(name))).toBe(id(plain.obj.map(name)));
    }
  });

  for (const t of ["mtk", "gswip"] as const) {
    test(`${t}: one connection written once, LAN port 1 untagged <-> PPPoE in VLAN 7 on WAN port 4, out of the same conduit`, () => {
      const up = plan(4, PROTO_TCP, [dsaRx(t, 1)], { dsaPort: 1 }, { sameDevice: true, dsaTagger: t, dsaPort: 4, vlan: [kv(7), 0], pppoeSid: 0x99 },
        [dsaTx(t, 4, ETH_P_8021Q, 7), vlan(7), pppoe(0x99)]);
      const down = plan(4, PROTO_TCP, [dsaRx(t, 4), vlan(7), pppoe(0x99)], { dsaPort: 4, vlan: [kv(7), 0], pppoeSid: 0x99 },
        { sameDevice: true, dsaTagger: t, dsaPort: 1 }, [dsaTx(t, 1)]);
      down.action.connId = up.action.connId;
      down.action.dir = 1;
      // Written through plain's map fd, as the daemon's flow table does.
      plain.install(up);
      plain.flows.update(encodeKey(down.key), encodeAction(down.action));
      for (const hook of HOOKS) {
        expectForwarded(conduits[t], hook, up);
        expectForwarded(conduits[t], hook, down);
      }
      expect(plain.connPackets(up.action.connId)).toEqual([2n, 2n]);
    });
  }
});

describe("FLOW_ACT_TC_ONLY", () => {
  for (const [family, proto] of CASES) {
    test(`${caseName(family, proto)}: XDP passes, TC forwards`, () => {
      const flow = plan(family, proto, [vlan(10)], { vlan: [kv(10), 0] }, { pppoeSid: 6 }, [pppoe(6)], { flags: FLOW_ACT_TC_ONLY });
      plain.install(flow);
      expectPassed(plain, XDP, buildFrame(flow.spec));
      expectForwarded(plain, TC, flow);
    });
  }
});

describe("XDP: CHECKSUM_PARTIAL packets behind encapsulations", () => {
  for (const t of ["gswip", "edsa"] as const) {
    for (const [family, proto] of CASES) {
      test(`${caseName(family, proto)} behind DSA ${t}, QinQ and PPPoE: the partial value passes untouched, a complete checksum is forwarded`, () => {
        const flow = plan(family, proto, [dsaRx(t, 3), sTag(1), vlan(2), pppoe(7)], { dsaPort: 3, vlan: [kv(1, ETH_P_8021AD), kv(2)], pppoeSid: 7 }, { vlan: [kv(5), 0] }, [vlan(5)]);
        conduits[t].install(flow);
        expectPassed(conduits[t], XDP, buildFrame({ ...flow.spec, partialChecksum: true }));
        expect(conduits[t].connPackets(flow.action.connId)).toEqual([0n, 0n]);
        expectForwarded(conduits[t], XDP, flow);
      });
    }
  }
});

describe("TC and GSO", () => {
  test("a GSO packet for a PPPoE egress goes to the stack (its length would be copied to every segment)", () => {
    const flow = plan(4, PROTO_TCP, [], {}, { pppoeSid: 8 }, [pppoe(8)], { payload: 1000 });
    plain.install(flow);
    expectPassed(plain, TC, buildFrame(flow.spec), 500);
    expectForwarded(plain, TC, flow);
  });
  test("a GSO packet for a VLAN or DSA egress is forwarded", () => {
    const flow = plan(6, PROTO_TCP, [pppoe(8)], { pppoeSid: 8 }, { vlan: [kv(5), 0], dsaTagger: "qca", dsaPort: 2 }, [dsaTx("qca", 2), vlan(5)], { payload: 1000 });
    plain.install(flow);
    expectForwarded(plain, TC, flow, 500);
  });
});

describe("TC: VLAN tag in skb metadata", () => {
  test("BPF_PROG_TEST_RUN refuses a context with vlan_present / vlan_tci set (EINVAL)", () => {
    // struct __sk_buff: vlan_present at 20, vlan_tci at 24, vlan_proto at 28. The kernel's
    // convert___skb_to_skb accepts only priority, ifindex, cb, tstamp, ... : the metadata path
    // of offload_tc (tc_meta_vlan) cannot be run here.
    const ctx = TC.ctx(0, 0);
    const v = new DataView(ctx.buffer);
    v.setUint32(20, 1, true);
    v.setUint32(24, 100, true);
    v.setUint32(28, 0x0081, true);
    const frame = buildFrame(plan(4, PROTO_UDP, [], {}, {}, []).spec);
    let err: unknown;
    try {
      testRun(plain.obj.programFd(TC.prog), frame, { ctxIn: ctx });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).errno).toBe(constants.errno.EINVAL);
  });
});

describe("iface_stats", () => {
  /** The slots with any counter above zero. */
  const counted = (dp: Datapath) => dp.ifaceSlots().filter((s) => Object.values(s.stats).some((n: bigint) => n > 0n));

  test("forwarded, passed and dropped packets and bytes of the ingress device, summed over CPUs", () => {
    const dp = new Datapath(DSA_TAG_NONE, 0);
    try {
      dp.heartbeat();
      const home = ifaceSlotCandidates(INGRESS_IFINDEX)[0]!;
      const read = () => {
        const slot = dp.ifaceSlots()[home];
        expect(slot?.ifindex).toBe(INGRESS_IFINDEX);
        return slot?.stats;
      };
      const fwd = plan(4, PROTO_TCP, [vlan(3)], { vlan: [kv(3), 0] }, {}, []);
      const drop = plan(6, PROTO_UDP, [], {}, {}, [], { flags: FLOW_ACT_DROP });
      const unknown = plan(4, PROTO_UDP, [], {}, {}, []);
      dp.install(fwd);
      dp.install(drop);
      // No slot names the device: nothing counted anywhere.
      expect(dp.run(XDP, buildFrame(fwd.spec)).retval).toBe(XDP.redirect);
      expect(counted(dp)).toEqual([]);
      dp.placeIface(home, INGRESS_IFINDEX);
      const f = buildFrame(fwd.spec).length;
      const d = buildFrame(drop.spec).length;
      const p = buildFrame(unknown.spec).length;
      for (const hook of HOOKS) {
        expect(dp.run(hook, buildFrame(fwd.spec)).retval).toBe(hook.redirect);
        expect(dp.run(hook, buildFrame(fwd.spec)).retval).toBe(hook.redirect);
        expect(dp.run(hook, buildFrame(drop.spec)).retval).toBe(hook.drop);
        expect(dp.run(hook, buildFrame(unknown.spec)).retval).toBe(hook.pass);
      }
      expect(read()).toEqual({
        fwdPackets: 4n,
        fwdBytes: BigInt(4 * f),
        passPackets: 2n,
        passBytes: BigInt(2 * p),
        dropPackets: 2n,
        dropBytes: BigInt(2 * d),
      });
    } finally {
      dp.obj.close();
    }
  });
  test("a frame that fails an ingress MAC check counts as passed", () => {
    const dp = new Datapath(DSA_TAG_NONE, 0);
    try {
      dp.heartbeat();
      const home = ifaceSlotCandidates(INGRESS_IFINDEX)[0]!;
      dp.placeIface(home, INGRESS_IFINDEX);
      const flow = plan(4, PROTO_TCP, [pppoe(5)], { pppoeSid: 5 }, {}, []);
      flow.action.ingressDmac = parseMac(ROUTER_MAC);
      flow.action.ingressSmac = parseMac(CLIENT_MAC);
      const drop = plan(6, PROTO_UDP, [], {}, {}, [], { flags: FLOW_ACT_DROP });
      drop.action.ingressDmac = parseMac(ROUTER_MAC);
      dp.install(flow);
      dp.install(drop);
      const otherHost = buildFrame({ ...flow.spec, dmac: OTHER_MAC });
      const otherPeer = buildFrame({ ...flow.spec, smac: OTHER_MAC });
      const dropOther = buildFrame({ ...drop.spec, dmac: OTHER_MAC });
      for (const hook of HOOKS) {
        for (const frame of [otherHost, otherPeer, dropOther]) expect(dp.run(hook, frame).retval).toBe(hook.pass);
      }
      const n = BigInt(otherHost.length + otherPeer.length + dropOther.length);
      expect(dp.ifaceSlots()[home]?.stats).toEqual({
        fwdPackets: 0n,
        fwdBytes: 0n,
        passPackets: 6n,
        passBytes: 2n * n,
        dropPackets: 0n,
        dropBytes: 0n,
      });
      expect(dp.connPackets(drop.action.connId)).toEqual([0n, 0n]);
    } finally {
      dp.obj.close();
    }
  });
  test("a CHECKSUM_PARTIAL packet of an offloaded flow counts as passed on XDP, as forwarded on TC", () => {
    const dp = new Datapath(DSA_TAG_NONE, 0);
    try {
      dp.heartbeat();
      const home = ifaceSlotCandidates(INGRESS_IFINDEX)[0]!;
      dp.placeIface(home, INGRESS_IFINDEX);
      const flow = plan(6, PROTO_TCP, [vlan(4)], { vlan: [kv(4), 0] }, {}, []);
      dp.install(flow);
      const frame = buildFrame({ ...flow.spec, partialChecksum: true });
      expect(dp.run(XDP, frame).retval).toBe(XDP.pass);
      expect(dp.run(TC, frame).retval).toBe(TC.redirect);
      expect(dp.ifaceSlots()[home]?.stats).toEqual({
        fwdPackets: 1n,
        fwdBytes: BigInt(frame.length),
        passPackets: 1n,
        passBytes: BigInt(frame.length),
        dropPackets: 0n,
        dropBytes: 0n,
      });
    } finally {
      dp.obj.close();
    }
  });
  test("a device whose first slots other devices hold is counted in its last candidate, and not at all past it", () => {
    const dp = new Datapath(DSA_TAG_NONE, 0);
    try {
      dp.heartbeat();
      const unknown = plan(4, PROTO_UDP, [], {}, {}, []);
      const frame = buildFrame(unknown.spec);
      const candidates = ifaceSlotCandidates(INGRESS_IFINDEX);
      const last = candidates[IFACE_PROBES - 1]!;
      const beyond = (last + 1) % IFACE_SLOTS;
      // Other devices (ifindexes that share these slots) in all but the last candidate.
      candidates.slice(0, -1).forEach((slot, i) => dp.placeIface(slot, INGRESS_IFINDEX + (i + 1) * IFACE_SLOTS));
      dp.placeIface(last, INGRESS_IFINDEX);
      for (const hook of HOOKS) expect(dp.run(hook, frame).retval).toBe(hook.pass);
      expect(counted(dp).map((s) => [s.ifindex, s.stats.passPackets])).toEqual([[INGRESS_IFINDEX, 2n]]);
      expect(dp.ifaceSlots()[last]?.stats.passBytes).toBe(BigInt(2 * frame.length));
      dp.placeIface(last, 0);
      dp.placeIface(beyond, INGRESS_IFINDEX);
      for (const hook of HOOKS) expect(dp.run(hook, frame).retval).toBe(hook.pass);
      expect(counted(dp)).toEqual([]);
    } finally {
      dp.obj.close();
    }
  });
});
