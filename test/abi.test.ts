// src/abi.ts LAYOUT against the BTF of the compiled datapath (build/offload.bpf.o): every struct's
// size and member offsets, and `params` as the only variable of .rodata at offset 0 (BpfObject
// writes the load-time parameters there); FLOW_ABI_VERSION against the header, and the action's
// optional fields through encodeAction / decodeAction.
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  FLOW_ABI_VERSION, FLOW_CLOCK_LAG_NS, IFACE_PROBES, IFACE_SLOTS, LAYOUT, decodeAction, decodeStats, encodeAction, encodeIfaceSlot,
  ifaceSlotCandidates, ifaceSlotOwner, placeIfaces, statsFlags, statsPackets, type FlowAction,
} from "../src/abi.ts";

const ROOT = join(import.meta.dir, "..");
const OBJECT = join(ROOT, "build", "offload.bpf.o");

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  members?: { name: string; bits_offset: number }[];
  vars?: { type_id: number; offset: number; size: number }[];
}

let types: BtfType[] = [];

function run(cmd: string[]): string {
  const r = Bun.spawnSync(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

function byId(id: number): BtfType {
  const t = types.find((x) => x.id === id);
  if (!t) throw new Error(`BTF type ${id} missing`);
  return t;
}

/** Follows const/volatile/typedef to the underlying type. */
function resolve(id: number): BtfType {
  let t = byId(id);
  while ((t.kind === "CONST" || t.kind === "VOLATILE" || t.kind === "TYPEDEF") && t.type_id !== undefined) {
    t = byId(t.type_id);
  }
  return t;
}

beforeAll(() => {
  run([process.execPath, "build.ts", "--bpf-only"]);
  types = (JSON.parse(run(["bpftool", "btf", "dump", "file", OBJECT, "-j"])) as { types: BtfType[] }).types;
});

for (const [name, layout] of Object.entries(LAYOUT)) {
  test(`struct ${name}: size and member offsets match the BTF`, () => {
    const structs = types.filter((t) => t.kind === "STRUCT" && t.name === name);
    expect(structs).toHaveLength(1);
    const s = structs[0] as BtfType;
    const offsets = Object.fromEntries((s.members ?? []).map((m) => [m.name, m.bits_offset / 8]));
    expect({ size: s.size, members: offsets }).toEqual({ size: layout.size, members: { ...layout.members } });
  });
}

test("params is the only variable of .rodata, at offset 0, a struct offload_params", () => {
  const rodata = types.filter((t) => t.kind === "DATASEC" && t.name === ".rodata");
  expect(rodata).toHaveLength(1);
  const vars = rodata[0]?.vars ?? [];
  expect(vars).toHaveLength(1);
  const v = vars[0] as { type_id: number; offset: number; size: number };
  const variable = byId(v.type_id);
  expect(variable.name).toBe("params");
  expect(v.offset).toBe(0);
  expect(v.size).toBe(LAYOUT.offload_params.size);
  expect(resolve(variable.type_id ?? 0)).toMatchObject({ kind: "STRUCT", name: "offload_params" });
});

test("FLOW_ABI_VERSION and the other constants match bpf/flow_abi.h", async () => {
  const header = await Bun.file(join(ROOT, "bpf", "flow_abi.h")).text();
  const define = (name: string) => header.match(new RegExp(`^#define ${name} (\\d+)(ULL)?$`, "m"))?.[1];
  expect(define("FLOW_ABI_VERSION")).toBe(String(FLOW_ABI_VERSION));
  expect(define("FLOW_CLOCK_LAG_NS")).toBe(String(FLOW_CLOCK_LAG_NS));
  expect(define("IFACE_SLOTS")).toBe(String(IFACE_SLOTS));
  expect(define("IFACE_PROBES")).toBe(String(IFACE_PROBES));
});

describe("iface_stats slots", () => {
  test("a device's candidates start at ifindex % IFACE_SLOTS and wrap around", () => {
    expect(ifaceSlotCandidates(3)).toEqual([3, 4, 5, 6]);
    expect(ifaceSlotCandidates(IFACE_SLOTS * 7 + IFACE_SLOTS - 2)).toEqual([IFACE_SLOTS - 2, IFACE_SLOTS - 1, 0, 1]);
  });

  test("placed first come first served in a free candidate; no slot when all are taken", () => {
    const s = IFACE_SLOTS;
    const placed = placeIfaces([5, 5 + s, 6, 5 + 2 * s, 5 + 3 * s, 3, 0]);
    expect([...placed]).toEqual([[5, 5], [5 + s, 6], [6, 7], [5 + 2 * s, 8], [3, 3]]);
  });

  test("a slot's value names its device in every CPU's copy, counters zero", () => {
    const buf = encodeIfaceSlot(42, 3);
    expect(buf.length).toBe(3 * LAYOUT.iface_stats.size);
    expect(ifaceSlotOwner(buf)).toBe(42);
    const v = new DataView(buf.buffer);
    for (let c = 0; c < 3; c++) expect(v.getUint32(c * LAYOUT.iface_stats.size + LAYOUT.iface_stats.members.ifindex, true)).toBe(42);
    expect(buf.reduce((n, b) => n + b, 0)).toBe(3 * 42);
  });
});

describe("flow_action ingress MACs", () => {
  const action: FlowAction = {
    outIfindex: 7, connId: 3, dir: 1, flags: 0, mtu: 1500,
    dmac: new Uint8Array([2, 0, 0, 0, 0, 3]), smac: new Uint8Array([2, 0, 0, 0, 0, 4]),
    saddr: new Uint8Array(16), daddr: new Uint8Array(16), sport: 1, dport: 2,
    l3CsumDelta: 0, l4CsumPseudo: 0, l4CsumPorts: 0, egressVlan: [0, 0], egressPppoeSid: 0,
  };
  const A = LAYOUT.flow_action.members;

  test("omitted: all zero, no check", () => {
    const buf = encodeAction(action);
    expect(Array.from(buf.subarray(A.ingress_dmac, LAYOUT.flow_action.size))).toEqual(new Array<number>(14).fill(0));
    const back = decodeAction(buf);
    expect(Array.from(back.ingressDmac ?? [])).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(back.ingressSmac ?? [])).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test("set: at their offsets, and back", () => {
    const dmac = new Uint8Array([2, 0, 0, 0, 0, 1]);
    const smac = new Uint8Array([0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    const buf = encodeAction({ ...action, ingressDmac: dmac, ingressSmac: smac });
    expect(Array.from(buf.subarray(A.ingress_dmac, A.ingress_dmac + 6))).toEqual(Array.from(dmac));
    expect(Array.from(buf.subarray(A.ingress_smac, A.ingress_smac + 6))).toEqual(Array.from(smac));
    expect(Array.from(buf.subarray(A.pad, LAYOUT.flow_action.size))).toEqual([0, 0]);
    const back = decodeAction(buf);
    expect(Array.from(back.ingressDmac ?? [])).toEqual(Array.from(dmac));
    expect(Array.from(back.ingressSmac ?? [])).toEqual(Array.from(smac));
  });
});

test("flow_stats read in place agree with decodeStats, at any record of an array", () => {
  const S = LAYOUT.flow_stats;
  const buf = new Uint8Array(3 * S.size);
  const v = new DataView(buf.buffer);
  const off = 2 * S.size;
  v.setBigUint64(off + S.members.dir, 2n ** 40n + 5n, true);
  v.setBigUint64(off + S.members.dir + 8, 999n, true);
  v.setBigUint64(off + S.members.dir + 16, 0xffffffffn, true);
  v.setUint32(off + S.members.flags, 1, true);
  const d = decodeStats(buf, off);
  expect(statsPackets(v, off, 0)).toBe(Number(d.dir[0].packets));
  expect(statsPackets(v, off, 1)).toBe(Number(d.dir[1].packets));
  expect(statsPackets(v, off, 0)).toBe(2 ** 40 + 5);
  expect(statsFlags(v, off)).toBe(d.flags);
  expect(statsPackets(v, S.size, 0)).toBe(0);
});
