// The fuzzer's engine: one loaded datapath per conduit kind (plain device and each DSA tagger),
// frames run through BPF_PROG_TEST_RUN (repeat 1) with buffers allocated once, and every result
// held against the reference model in fuzz-model.ts. Work is cut into cases: a case draws a
// valid base frame and its mutations from its own random stream (seed, case number), installs
// flows for some of the keys they parse to, runs every frame through XDP and TC, checks the
// per-connection counters and removes its flows again, so any case can be rerun on its own.
import { constants } from "node:os";
import {
  AF_INET,
  DSA_TAGGERS,
  DSA_TAG_NONE,
  FLOW_STATS_CLOSING,
  LAYOUT,
  decodeStats,
  encodeAction,
  encodeKey,
  encodeParams,
  type FlowAction,
  type FlowKey,
} from "../src/abi.ts";
import { BpfObject, type BpfMap } from "../src/bpf.ts";
import { ETH_P_IP, ETH_P_IPV6, hex } from "./packet.ts";
import { genAction, genBase, nearKey } from "./fuzz-gen.ts";
import { TAGGER_NAMES, carelessKey, keyId, l4Residue, parseIngress, ModelState, type Conduit, type HookName, type Outcome } from "./fuzz-model.ts";
import { mutate, type Mutated } from "./fuzz-mutate.ts";
import { Rng } from "./fuzz-rng.ts";
import { HOOKS, INGRESS_IFINDEX, TestRunner, verdictName } from "./fuzz-testrun.ts";

const OBJECT_PATH = `${import.meta.dir}/../build/offload.bpf.o`;
const FLOW_SLOTS = 1024;
const STATS_SLOTS = 1024;

class Datapath {
  readonly obj: BpfObject;
  readonly flows: BpfMap;
  readonly stats: BpfMap;
  readonly runners: TestRunner[];

  /**
   * alive: heartbeat timeout 0, the daemon counts as alive and only the packet decides; else a
   * 1 ns timeout against the never written heartbeat (0): every packet must go to the stack.
   */
  constructor(image: Uint8Array, readonly conduit: Conduit, readonly alive = true) {
    const heartbeatTimeoutNs = alive ? 0n : 1n;
    this.obj = BpfObject.open(image, {
      maxEntries: { flows: FLOW_SLOTS, flow_stats: STATS_SLOTS },
      params: encodeParams({ heartbeatTimeoutNs, notifyIntervalNs: 1_000_000_000n, dsaTagger: conduit.tagger, dsaPorts: conduit.ports }),
    });
    this.obj.load();
    this.flows = this.obj.map("flows");
    this.stats = this.obj.map("flow_stats");
    this.runners = HOOKS.map((h) => new TestRunner(this.obj.programFd(h.prog), h));
  }
}

// ---- Reports ----

export class FuzzFailure extends Error {
  override readonly name = "FuzzFailure";
}

function taggerName(t: number): string {
  return t === DSA_TAG_NONE ? "none" : (TAGGER_NAMES.get(t) ?? `#${t}`);
}

function addrText(a: Uint8Array, family: number): string {
  return hex(a.subarray(0, family === AF_INET ? 4 : 16));
}

export function describeKey(k: FlowKey): string {
  return `{ifindex ${k.ifindex}, family ${k.family}, proto ${k.proto}, dsa_port ${k.dsaPort}, vlan [0x${k.vlan[0].toString(16)}, 0x${k.vlan[1].toString(16)}], pppoe_sid 0x${k.pppoeSid.toString(16)}, ${addrText(k.saddr, k.family)}:${k.sport} > ${addrText(k.daddr, k.family)}:${k.dport}}`;
}

export function describeAction(a: FlowAction, family: number): string {
  return `{out_ifindex ${a.outIfindex}, conn_id ${a.connId}, dir ${a.dir}, flags ${a.flags}, mtu ${a.mtu}, dmac ${hex(a.dmac)}, smac ${hex(a.smac)}, nat ${addrText(a.saddr, family)}:${a.sport} > ${addrText(a.daddr, family)}:${a.dport}, deltas l3 0x${a.l3CsumDelta.toString(16)} pseudo 0x${a.l4CsumPseudo.toString(16)} ports 0x${a.l4CsumPorts.toString(16)}, egress vlan [0x${a.egressVlan[0].toString(16)}, 0x${a.egressVlan[1].toString(16)}] pppoe 0x${a.egressPppoeSid.toString(16)} dsa ${taggerName(a.egressDsaTagger ?? 0)}/${a.egressDsaPort ?? 0}, ingress dmac ${a.ingressDmac ? hex(a.ingressDmac) : "-"} smac ${a.ingressSmac ? hex(a.ingressSmac) : "-"}}`;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---- Independent properties of a forwarded frame the model built ----

/**
 * The model's own output must hold what the issue asks of every forwarded frame: an IPv4 header
 * checksum that verifies, an L4 checksum that verifies exactly when the input's did, and an L3
 * length within the MTU (GSO: each segment within it). A broken model fails here, not silently.
 */
function modelSelfCheck(out: Extract<Outcome, { frame: Uint8Array }>, input: Uint8Array, conduit: Conduit): string | null {
  const p = parseIngress(input, conduit, INGRESS_IFINDEX);
  if (!p.ok) return "model forwards a frame it cannot parse";
  const l3 = out.frame.subarray(out.l2Len);
  const inL3 = input.subarray(p.p.l3Off, p.p.l3Off + p.p.l3Len);
  const fam = p.p.key.family;
  if (l3.length !== p.p.l3Len) return "forwarded L3 length differs from the input's";
  if (fam === AF_INET) {
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += (l3[i]! << 8) | l3[i + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    if (s !== 0xffff) return "forwarded IPv4 header checksum does not verify";
  }
  const vIn = l4Residue(inL3, fam, p.p.key.proto, p.p.ipHdrLen) === 0xffff;
  const vOut = l4Residue(l3, fam, p.p.key.proto, p.p.ipHdrLen) === 0xffff;
  if (vIn !== vOut) return `forwarded L4 checksum ${vOut ? "verifies" : "fails"} where the input's ${vIn ? "verified" : "did not"}`;
  if (out.l3Len > out.mtu && (!out.gsoSize || p.p.hdrLen + out.gsoSize > out.mtu)) return "forwarded beyond the MTU";
  const et = (out.frame[out.l2Len - 2]! << 8) | out.frame[out.l2Len - 1]!;
  const want = fam === AF_INET ? [ETH_P_IP, 0x0021] : [ETH_P_IPV6, 0x0057];
  if (!want.includes(et)) return "forwarded frame's ethertype / PPP protocol does not name the IP version";
  return null;
}

// ---- The run ----

export interface FuzzOptions {
  seed: number;
  /** Stop after this many frames (each through XDP and TC) ... */
  frames?: number;
  /** ... or after this much time, whichever comes first. */
  ms?: number;
  /** Run only this case (to reproduce a failure). */
  onlyCase?: number;
  /** Called about every progressMs. */
  progress?: (s: FuzzStats) => void;
  progressMs?: number;
}

export interface FuzzStats {
  seed: number;
  cases: number;
  frames: number;
  runs: number;
  /** TC runs the kernel refuses (an IP ethertype without a whole IP header): XDP only. */
  tcRefused: number;
  verdicts: Record<string, number>;
  /** Why the model passed frames (numbers masked): which checks the run reached. */
  passReasons: Record<string, number>;
  ms: number;
}

interface Installed {
  key: FlowKey;
  action: FlowAction;
}

function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** Whether the skb test run refuses a frame: it wants a whole IP header behind an IP ethertype. */
function tcRefuses(f: Uint8Array): boolean {
  const et = (f[12]! << 8) | f[13]!;
  return (et === ETH_P_IP && f.length < 34) || (et === ETH_P_IPV6 && f.length < 54);
}

export class Fuzzer {
  private readonly dps: Datapath[];
  /** A plain device whose daemon has stopped: fail open, whatever arrives. */
  private readonly stale: Datapath;
  private readonly zeroStats = new Uint8Array(LAYOUT.flow_stats.size);
  private readonly statsBuf = new Uint8Array(LAYOUT.flow_stats.size);
  readonly stats: FuzzStats;

  constructor(
    readonly seed: number,
    image: Uint8Array,
  ) {
    // The conduits' user ports come from the seed too: a failure reproduces with its seed alone.
    const rng = new Rng(seed, -1);
    const conduits: Conduit[] = [{ tagger: DSA_TAG_NONE, ports: 0 }];
    for (const t of Object.values(DSA_TAGGERS)) conduits.push({ tagger: t, ports: (rng.u32() | (1 << rng.int(8)) | 1) >>> 0 });
    this.dps = conduits.map((c) => new Datapath(image, c));
    this.stale = new Datapath(image, conduits[0]!, false);
    this.stats = { seed, cases: 0, frames: 0, runs: 0, tcRefused: 0, verdicts: {}, passReasons: {}, ms: 0 };
  }

  /** object: another build of the datapath (FUZZ_OBJECT), e.g. a deliberately broken one. */
  static async load(seed: number, object = process.env.FUZZ_OBJECT || OBJECT_PATH): Promise<Fuzzer> {
    return new Fuzzer(seed, await Bun.file(object).bytes());
  }

  close(): void {
    for (const d of [...this.dps, this.stale]) d.obj.close();
  }

  run(o: Omit<FuzzOptions, "seed">): FuzzStats {
    const start = performance.now();
    let lastProgress = start;
    const frames = o.frames ?? Infinity;
    const ms = o.ms ?? Infinity;
    if (o.onlyCase !== undefined) {
      this.runCase(o.onlyCase);
    } else {
      for (let c = 0; this.stats.frames < frames && performance.now() - start < ms; c++) {
        this.runCase(c);
        const now = performance.now();
        if (o.progress && now - lastProgress >= (o.progressMs ?? 2000)) {
          lastProgress = now;
          this.stats.ms = now - start;
          o.progress(this.stats);
        }
      }
    }
    this.stats.ms = performance.now() - start;
    return this.stats;
  }

  private runCase(caseNo: number): void {
    const rng = new Rng(this.seed, caseNo);
    const dp = rng.weighted([
      [30, this.dps[0]!],
      [67, rng.pick(this.dps.slice(1))],
      [3, this.stale],
    ]);
    const { tagger, ports } = dp.conduit;
    const sweep = rng.chance(0.04);
    const base = genBase(rng, tagger, ports, sweep);
    const inputs: Mutated[] = [{ frame: base.frame, desc: "unmutated" }];
    if (sweep) {
      for (let len = 14; len < base.frame.length; len++) inputs.push({ frame: base.frame.slice(0, len), desc: `truncated to ${len}` });
    } else {
      const n = rng.range(8, 40);
      for (let i = 0; i < n; i++) inputs.push(mutate(base.frame, { layout: base.layout, tagger, ports }, rng));
    }
    const parsedBase = parseIngress(base.frame, dp.conduit, INGRESS_IFINDEX);
    if (!parsedBase.ok) throw new FuzzFailure(`generator: base frame not valid (${parsedBase.reason}): seed ${this.seed} case ${caseNo}: ${hex(base.frame)}`);

    // Flows: the base frame's key for most cases, keys some mutants parse to, near misses.
    const keys = new Map<string, FlowKey>();
    if (rng.chance(0.75)) keys.set(keyId(parsedBase.p.key), parsedBase.p.key);
    // A rejected frame gets a flow under the key a careless parser would make of it.
    for (const m of inputs.slice(1)) {
      if (keys.size >= 6 || !rng.chance(0.2)) continue;
      const p = parseIngress(m.frame, dp.conduit, INGRESS_IFINDEX);
      const k = p.ok ? p.p.key : carelessKey(m.frame, dp.conduit, INGRESS_IFINDEX);
      if (k) keys.set(keyId(k), k);
    }
    if (rng.chance(0.3)) {
      const k = nearKey(rng, parsedBase.p.key);
      keys.set(keyId(k), k);
    }
    const model = new ModelState(dp.conduit, INGRESS_IFINDEX, STATS_SLOTS, dp.alive);
    const installed: Installed[] = [];
    // Up to 8 flows a case; slots are zeroed before use, so neighbouring cases may share them.
    let slot = (caseNo * 8) % (STATS_SLOTS - 8);
    for (const key of keys.values()) {
      // Now and then a conn_id without a stats slot: the datapath must leave it to the stack.
      const connId = rng.chance(0.03) ? STATS_SLOTS + rng.int(1000) : slot++;
      const action = genAction(rng, key, { connId, ingressIfindex: INGRESS_IFINDEX, l3Len: parsedBase.p.l3Len, dmac: parsedBase.p.dmac, smac: parsedBase.p.smac });
      dp.flows.update(encodeKey(key), encodeAction(action));
      if (connId < STATS_SLOTS) dp.stats.update(u32le(connId), this.zeroStats);
      model.install(key, action);
      installed.push({ key, action });
    }

    try {
      inputs.forEach((m, i) => {
        for (const runner of dp.runners) {
          const gso = runner.hook.name === "tc" && rng.chance(0.1) ? rng.range(1, 1600) : 0;
          this.runOne(dp, runner, m, gso, model, installed, caseNo, i);
        }
        this.stats.frames++;
        // A FIN or RST hands the connection back for good; half the time a new one takes its
        // place (counters checked first), so the rest of the case still reaches the fast path.
        for (const f of installed) {
          if (!model.closing.has(f.action.connId) || !rng.chance(0.5)) continue;
          this.checkCounters(dp, model, [f], caseNo);
          dp.stats.update(u32le(f.action.connId), this.zeroStats);
          model.install(f.key, f.action);
        }
      });
      this.checkCounters(dp, model, installed, caseNo);
    } finally {
      for (const f of installed) dp.flows.delete(encodeKey(f.key));
    }
    this.stats.cases++;
  }

  private runOne(dp: Datapath, runner: TestRunner, m: Mutated, gso: number, model: ModelState, installed: Installed[], caseNo: number, i: number): void {
    const hook = runner.hook;
    const rc = runner.run(m.frame, gso);
    const fail = (problem: string, expected?: Outcome): never => {
      throw new FuzzFailure(this.report(problem, dp, hook.name, m, gso, rc, runner.output(), expected, installed, caseNo, i));
    };
    if (rc < 0) {
      if (hook.name === "tc" && -rc === constants.errno.EINVAL && tcRefuses(m.frame)) {
        this.stats.tcRefused++;
        return;
      }
      fail(`the kernel refused the test run (errno ${-rc})`);
    }
    this.stats.runs++;
    const exp = model.decide(m.frame, hook.name, gso);
    const out = runner.output();
    const key = `${hook.name} ${exp.verdict}`;
    this.stats.verdicts[key] = (this.stats.verdicts[key] ?? 0) + 1;
    if (exp.verdict === "pass") {
      const why = exp.reason.replace(/0x[0-9a-f]+|\d+/g, "N");
      this.stats.passReasons[why] = (this.stats.passReasons[why] ?? 0) + 1;
    }
    if (exp.verdict === "pass" || exp.verdict === "drop") {
      if (rc !== hook.codes[exp.verdict]) fail(`verdict ${verdictName(hook, rc)}, the model says ${exp.verdict}`, exp);
      if (!sameBytes(out, m.frame)) fail(`${exp.verdict === "pass" ? "passed" : "dropped"} frame was changed`, exp);
      return;
    }
    const self = modelSelfCheck(exp, m.frame, dp.conduit);
    if (self) fail(`model self-check: ${self}`, exp);
    if (rc !== hook.codes[exp.verdict]) {
      const half = rc === hook.codes.drop ? " (the half-rewritten failure case?)" : "";
      fail(`verdict ${verdictName(hook, rc)}${half}, the model says ${exp.verdict}`, exp);
    }
    if (!sameBytes(out, exp.frame)) fail("forwarded frame differs from the model's", exp);
  }

  /** Each connection's packets and L3 bytes per direction, and its closing flag, as the model counted. */
  private checkCounters(dp: Datapath, model: ModelState, installed: Installed[], caseNo: number): void {
    for (const f of installed) {
      const id = f.action.connId;
      if (id >= STATS_SLOTS) continue;
      if (!dp.stats.lookup(u32le(id), this.statsBuf)) throw new FuzzFailure(`stats slot ${id} missing`);
      const s = decodeStats(this.statsBuf);
      const want = model.counts.get(id) ?? [
        { packets: 0, bytes: 0 },
        { packets: 0, bytes: 0 },
      ];
      const got = s.dir.map((d) => ({ packets: Number(d.packets), bytes: Number(d.bytes) }));
      const closing = (s.flags & FLOW_STATS_CLOSING) !== 0;
      if (JSON.stringify(got) !== JSON.stringify(want) || closing !== model.closing.has(id)) {
        throw new FuzzFailure(
          `fuzz failure: seed ${this.seed} case ${caseNo}: conn ${id} counters ${JSON.stringify(got)} closing ${closing}, model ${JSON.stringify(want)} closing ${model.closing.has(id)}\n` +
            `  repro: FUZZ_SEED=${this.seed} FUZZ_CASE=${caseNo} bun test test/fuzz.test.ts\n  flow: ${describeKey(f.key)} -> ${describeAction(f.action, f.key.family)}`,
        );
      }
    }
  }

  private report(problem: string, dp: Datapath, hook: HookName, m: Mutated, gso: number, rc: number, out: Uint8Array, exp: Outcome | undefined, installed: Installed[], caseNo: number, i: number): string {
    const p = parseIngress(m.frame, dp.conduit, INGRESS_IFINDEX);
    const lines = [
      `fuzz failure: ${problem}`,
      `  seed ${this.seed} case ${caseNo} input #${i} (${m.desc}), ${hook.toUpperCase()} program, conduit tagger ${taggerName(dp.conduit.tagger)} ports 0x${dp.conduit.ports.toString(16)}${gso ? `, gso_size ${gso}` : ""}`,
      `  repro: FUZZ_SEED=${this.seed} FUZZ_CASE=${caseNo} bun test test/fuzz.test.ts   (or: bun test/fuzz-run.ts --seed ${this.seed} --case ${caseNo})`,
      `  frame (${m.frame.length} bytes): ${hex(m.frame)}`,
      `  model parse: ${p.ok ? describeKey(p.p.key) + ` l3 at ${p.p.l3Off}, ${p.p.l3Len} bytes` : p.reason}`,
    ];
    if (exp) {
      lines.push(`  model: ${exp.verdict}${"reason" in exp ? ` (${exp.reason})` : ""}`);
      if ("frame" in exp) lines.push(`  expected (${exp.frame.length} bytes): ${hex(exp.frame)}`);
    }
    lines.push(`  kernel: return value ${rc}, frame (${out.length} bytes): ${hex(out)}`);
    if (exp && "frame" in exp) lines.push(`  first difference at byte ${firstDifference(out, exp.frame)}`);
    const own = p.ok ? keyId(p.p.key) : "";
    for (const f of installed) {
      lines.push(`  flow${keyId(f.key) === own ? " (this frame's)" : ""}: ${describeKey(f.key)} -> ${describeAction(f.action, f.key.family)}`);
    }
    return lines.join("\n");
  }
}

/** Loads the datapaths, runs, and always unloads them. */
export async function runFuzz(o: FuzzOptions): Promise<FuzzStats> {
  const fz = await Fuzzer.load(o.seed);
  try {
    return fz.run(o);
  } finally {
    fz.close();
  }
}

export function summary(s: FuzzStats): string {
  const rate = s.ms > 0 ? Math.round((s.frames / s.ms) * 1000) : 0;
  const v = Object.entries(s.verdicts)
    .sort()
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  return `seed ${s.seed}: ${s.frames} frames (${s.runs} program runs, ${s.tcRefused} TC runs refused by the kernel) in ${s.cases} cases, ${(s.ms / 1000).toFixed(1)} s, ${rate} frames/s; ${v}`;
}
