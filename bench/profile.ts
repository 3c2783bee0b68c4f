// What each XDP/TC program costs by itself: BPF_PROG_TEST_RUN runs a program on one frame many
// times in the kernel and reports the average run time (no device, no redirect actually done).
// Hardware counters are not available here (perf and `bpftool prog profile` need them), so this
// is the steadiest per-packet cost figure we have for explaining the forwarding results.
//
// A test run repeats the program on the same buffer, so changes accumulate: the offload program
// gets two flows that NAT into each other (A -> A' and A' -> A), so every repetition is a hit with
// real NAT, and a TTL of 255 that outlasts the REPEAT repetitions of one run.
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { AF_INET, FLOW_ACT_DROP, LAYOUT, encodeAction, encodeConfig, encodeIfaceSlot, encodeKey, encodeParams, placeIfaces } from "../src/abi.ts";
import { BpfObject, testRun } from "../src/bpf.ts";
import { planDirection, type Tuple } from "../src/nat.ts";
import { monotonicNs } from "../ffi/libc.ts";
import { sh } from "../test/lab.ts";
import { PROTO_UDP, addr16, buildFrame, parseMac } from "../test/packet.ts";
import type { ProfileRow } from "./results.ts";
import { median } from "./stats.ts";

const ROOT = `${import.meta.dir}/..`;
const OUT = `${ROOT}/build/bench`;
const REPEAT = 200; // < 254: the TTL must not run out within one run
const RUNS = 60; // each XDP test run costs ~16 ms of wall time (the kernel swaps its XDP dispatcher)
const LO = 1; // a test run needs a real ingress device

const CLIENT = "10.200.1.2";
const ROUTER_WAN = "10.200.2.1";
const SERVER = "10.200.2.2";
const DROP_SPORT = 10002;

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function xdpCtx(len: number): Uint8Array {
  const md = new Uint8Array(24); // struct xdp_md; data_end at 4, ingress_ifindex at 12
  new DataView(md.buffer).setUint32(4, len, true);
  new DataView(md.buffer).setUint32(12, LO, true);
  return md;
}

function skbCtx(): Uint8Array {
  const skb = new Uint8Array(192); // struct __sk_buff; ingress_ifindex at 36
  new DataView(skb.buffer).setUint32(36, LO, true);
  return skb;
}

const tuple = (src: string, sport: number, dst: string, dport: number): Tuple => ({
  family: 2, proto: PROTO_UDP, src: addr16(src), dst: addr16(dst), sport, dport,
});

function frame(src: string, sport: number): Uint8Array {
  const f = buildFrame({ src, dst: SERVER, proto: PROTO_UDP, sport, dport: 9, ttl: 255, payload: new Uint8Array(18) });
  if (f.length !== 60) throw new Error(`profile: frame of ${f.length} bytes, want 60`);
  return f;
}

/** The datapath with a flow pair that NATs A -> A' and A' -> A, a fresh heartbeat, and LO's counters. */
function loadOffload(): BpfObject {
  const obj = BpfObject.open(readFileSync(`${ROOT}/build/offload.bpf.o`), {
    maxEntries: { flows: 1024, flow_stats: 1024 },
    params: encodeParams({ heartbeatTimeoutNs: 60_000_000_000n, notifyIntervalNs: 500_000_000n }),
  });
  obj.load();
  obj.map("flow_config").update(u32(0), encodeConfig(monotonicNs()));
  const iface = obj.map("iface_stats");
  for (const [ifindex, slot] of placeIfaces([LO])) iface.update(u32(slot), encodeIfaceSlot(ifindex, iface.valueSize / LAYOUT.iface_stats.size));
  const pair: [Tuple, Tuple][] = [
    [tuple(CLIENT, 10000, SERVER, 9), tuple(SERVER, 9, ROUTER_WAN, 10000)],
    [tuple(ROUTER_WAN, 10000, SERVER, 9), tuple(SERVER, 9, CLIENT, 10000)],
  ];
  pair.forEach(([orig, reply], conn) => {
    const p = planDirection(orig, reply, 0);
    obj.map("flows").update(
      encodeKey({ ifindex: LO, family: AF_INET, proto: PROTO_UDP, dsaPort: 0, vlan: [0, 0], pppoeSid: 0, sport: orig.sport, dport: orig.dport, saddr: orig.src, daddr: orig.dst }),
      encodeAction({
        outIfindex: 42, connId: conn, dir: 0, flags: 0, mtu: 1500, dmac: parseMac("02:00:00:00:00:03"), smac: parseMac("02:00:00:00:00:04"),
        saddr: p.saddr, daddr: p.daddr, sport: p.sport, dport: p.dport,
        l3CsumDelta: p.l3CsumDelta, l4CsumPseudo: p.l4CsumPseudo, l4CsumPorts: p.l4CsumPorts,
        egressVlan: [0, 0], egressPppoeSid: 0,
      }),
    );
    obj.map("flow_stats").update(u32(conn), new Uint8Array(48));
  });
  // A drop entry, as the dropper installs one (src/dropper.ts).
  obj.map("flows").update(
    encodeKey({ ifindex: LO, family: AF_INET, proto: PROTO_UDP, dsaPort: 0, vlan: [0, 0], pppoeSid: 0, sport: DROP_SPORT, dport: 9, saddr: addr16(CLIENT), daddr: addr16(SERVER) }),
    encodeAction({
      outIfindex: 0, connId: 2, dir: 0, flags: FLOW_ACT_DROP, mtu: 0, dmac: new Uint8Array(6), smac: new Uint8Array(6),
      saddr: addr16(CLIENT), daddr: addr16(SERVER), sport: DROP_SPORT, dport: 9, l3CsumDelta: 0, l4CsumPseudo: 0, l4CsumPorts: 0,
      egressVlan: [0, 0], egressPppoeSid: 0,
    }),
  );
  obj.map("flow_stats").update(u32(2), new Uint8Array(48));
  return obj;
}

function loadSmall(src: string, name: string, defines: string[]): BpfObject {
  mkdirSync(OUT, { recursive: true });
  const out = `${OUT}/profile-${name}.bpf.o`;
  const multiarch = sh(["gcc", "-print-multiarch"]).trim();
  sh(["clang", "-O2", "-g", "-target", "bpf", `-I/usr/include/${multiarch}`, ...defines, "-c", src, "-o", out]);
  const obj = BpfObject.open(readFileSync(out), { name });
  rmSync(out, { force: true });
  obj.load();
  return obj;
}

interface Case {
  program: string;
  what: string;
  run: () => { retval: number; durationNs: number };
}

export async function profilePrograms(): Promise<ProfileRow[]> {
  const offload = loadOffload();
  const ceiling = loadSmall(`${import.meta.dir}/ceiling.bpf.c`, "ceiling", ["-DWAN_IFINDEX=42", "-DSRC_MAC=2,0,0,0,0,4", "-DDST_MAC=2,0,0,0,0,3"]);
  const sink = loadSmall(`${import.meta.dir}/sink.bpf.c`, "sink", []);
  const hit = frame(CLIENT, 10000);
  const miss = frame(CLIENT, 10001);
  const dropped = frame(CLIENT, DROP_SPORT);
  const arp = hit.slice();
  arp.set([0x08, 0x06], 12); // not IP: the parser gives up after the Ethernet header
  const xdp = offload.programFd("offload_xdp");
  const tc = offload.programFd("offload_tc");
  const cases: Case[] = [
    { program: "offload_xdp", what: "offloaded flow: lookup, NAT, TTL, MACs, redirect", run: () => testRun(xdp, hit, { ctxIn: xdpCtx(hit.length), repeat: REPEAT }) },
    { program: "offload_xdp", what: "drop entry: parse, lookup, count, XDP_DROP", run: () => testRun(xdp, dropped, { ctxIn: xdpCtx(dropped.length), repeat: REPEAT }) },
    { program: "offload_xdp", what: "unknown flow: parse, lookup, pass", run: () => testRun(xdp, miss, { ctxIn: xdpCtx(miss.length), repeat: REPEAT }) },
    { program: "offload_xdp", what: "not IP (ethertype ARP): heartbeat check, pass", run: () => testRun(xdp, arp, { ctxIn: xdpCtx(arp.length), repeat: REPEAT }) },
    { program: "offload_tc", what: "offloaded flow (skb)", run: () => testRun(tc, hit, { ctxIn: skbCtx(), repeat: REPEAT }) },
    { program: "ceiling", what: "static MAC rewrite + redirect", run: () => testRun(ceiling.programFd("ceiling"), hit, { repeat: REPEAT }) },
    { program: "sink", what: "count + XDP_DROP", run: () => testRun(sink.programFd("sink"), hit, { repeat: REPEAT }) },
  ];
  const ns = cases.map(() => [] as number[]);
  const retvals = cases.map(() => -1);
  try {
    // Interleaved, like the forwarding rounds; a fresh heartbeat now and then.
    for (let r = 0; r < RUNS; r++) {
      if (r % 20 === 0) offload.map("flow_config").update(u32(0), encodeConfig(monotonicNs()));
      cases.forEach((c, i) => {
        const res = c.run();
        ns[i]?.push(res.durationNs);
        retvals[i] = res.retval;
      });
      if (r % 20 === 19) await Bun.sleep(1);
    }
  } finally {
    for (const o of [offload, ceiling, sink]) o.close();
  }
  // Per-run averages of REPEAT repetitions; stored as the medians of 6 interleaved groups.
  return cases.map((c, i) => {
    const all = ns[i] ?? [];
    const groups = Array.from({ length: 6 }, (_, g) => median(all.filter((_x, j) => j % 6 === g)));
    return { program: c.program, what: c.what, ns: groups, retval: retvals[i] ?? -1 };
  });
}
