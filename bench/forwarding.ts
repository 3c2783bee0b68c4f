// `npm run bench`: 64-byte UDP packets/s forwarded through the lab's NAT router, kernel path
// against the offloader (and a static XDP redirect as the ceiling), side by side in one run.
//
// The machine is noisy, so every configuration gets its own identical lab and the configurations
// take turns in short rounds (A B C A B C ...). Reported: the median rate of each configuration
// and the median, min and max of its per-round ratio to the kernel path measured in the same
// round. Writes docs/BENCHMARKS.md unless --no-write.
//
//   bun bench/forwarding.ts [--rounds 7] [--seconds 1] [--flows 1,1024]
//                           [--configs kernel,xdp-native,tc,xdp-generic,ceiling] [--no-write]
import { existsSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { removeStaleLabs } from "../test/lab.ts";
import { BIN } from "../test/offloader.ts";
import { BenchLab, buildTools, CONFIGS, type ConfigName, killChildren } from "./benchlab.ts";
import { pps, ratios, spread, table } from "./stats.ts";
import { describeMachine, report } from "./report.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    rounds: { type: "string", default: "7" },
    seconds: { type: "string", default: "1" },
    flows: { type: "string", default: "1,1024" },
    configs: { type: "string", default: CONFIGS.join(",") },
    "no-write": { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const flowCounts = values.flows.split(",").map(Number);
const configs = values.configs.split(",") as ConfigName[];
const bad = configs.find((c) => !(CONFIGS as readonly string[]).includes(c));
if (bad || !(rounds >= 1 && rounds <= 100) || !(seconds > 0 && seconds <= 10) || flowCounts.some((f) => !(f >= 1 && f <= 65536))) {
  console.error(`usage: bun bench/forwarding.ts [--rounds 1-100] [--seconds 0-10] [--flows 1,1024] [--configs ${CONFIGS.join(",")}] [--no-write]`);
  process.exit(2);
}
if (!configs.includes("kernel")) configs.unshift("kernel"); // the ratios need it
if (process.getuid?.() !== 0) {
  console.error("bench: run as root (it builds network namespaces and loads XDP programs)");
  process.exit(1);
}

const WARM_TIMEOUT_MS = 30_000;
const labs: BenchLab[] = [];

// Whatever happens, the labs go: on Ctrl-C, on a kill, and when the run overstays its bound.
const abort = (why: string, code: number) => {
  console.error(`bench: ${why}: cleaning up`);
  killChildren();
  for (const l of labs) l.destroyNow();
  process.exit(code);
};
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => abort(sig, 130));
const boundS = 120 + flowCounts.length * configs.length * (WARM_TIMEOUT_MS / 1000 + rounds * (seconds + 1));
setTimeout(() => abort(`still running after ${Math.round(boundS)} s`, 1), boundS * 1000).unref();

/**
 * Sends to every lab (conntrack then knows every flow), and keeps sending to each offloader's lab
 * until it has reported all flows offloaded: live traffic, as on a router, also lets it pick up
 * flows it missed. Returns a note per offloader: how long that took.
 */
async function warmUp(flows: number): Promise<string[]> {
  const notes: string[] = [];
  for (const l of labs) {
    const t0 = Date.now();
    do await l.send(flows, 0.2);
    while (l.hasOffloader && l.offloadedPorts().size < flows && Date.now() - t0 < WARM_TIMEOUT_MS);
    if (!l.hasOffloader) continue;
    const n = l.offloadedPorts().size;
    const s = ((Date.now() - t0) / 1000).toFixed(1);
    notes.push(n < flows ? `${l.config}: only ${n} of ${flows} flows offloaded after ${s} s` : `${l.config}: all ${flows} offloaded within ${s} s`);
    if (n < flows) console.error(`warning: ${notes.at(-1)}`);
  }
  return notes;
}

interface Round {
  pps: number;
  offered: number;
  viaKernel: number; // share of the forwarded packets that crossed the forward chain
}

async function measure(l: BenchLab, flows: number): Promise<Round> {
  const [sink0, fwd0] = [l.sinkCount(), l.forwardChainCount()];
  const s = await l.send(flows, seconds);
  await Bun.sleep(50); // frames still in the veth rings
  const [got, fwd] = [l.sinkCount() - sink0, l.forwardChainCount() - fwd0];
  return { pps: got / s.seconds, offered: s.sent / s.seconds, viaKernel: got ? fwd / got : 0 };
}

interface FlowResults {
  byConfig: Map<ConfigName, Round[]>;
  warmUp: string[];
}
type Results = Map<number, FlowResults>;

async function run(): Promise<Results> {
  const results: Results = new Map();
  for (const flows of flowCounts) {
    const warm = await warmUp(flows);
    const byConfig = new Map<ConfigName, Round[]>(configs.map((c) => [c, []]));
    for (let r = 0; r < rounds; r++) {
      for (const l of labs) byConfig.get(l.config)?.push(await measure(l, flows));
      const line = labs.map((l) => `${l.config} ${pps(byConfig.get(l.config)?.[r]?.pps ?? NaN)}`).join("  ");
      console.error(`${flows} flow(s), round ${r + 1}/${rounds}: ${line}`);
    }
    results.set(flows, { byConfig, warmUp: warm });
  }
  return results;
}

function render(results: Results): string {
  const out: string[] = [];
  for (const [flows, { byConfig, warmUp }] of results) {
    const kernel = (byConfig.get("kernel") ?? []).map((r) => r.pps);
    const rows = configs.map((c) => {
      const rs = byConfig.get(c) ?? [];
      const rate = spread(rs.map((r) => r.pps));
      const ratio = spread(ratios(rs.map((r) => r.pps), kernel));
      const via = Math.max(...rs.map((r) => r.viaKernel * 100));
      return [
        c,
        pps(rate.median),
        `${pps(rate.min)}–${pps(rate.max)}`,
        c === "kernel" ? "1" : `${ratio.median.toFixed(2)} (${ratio.min.toFixed(2)}–${ratio.max.toFixed(2)})`,
        pps(spread(rs.map((r) => r.offered)).median),
        `${via.toFixed(via > 0 && via < 1 ? 2 : 0)}%`,
      ];
    });
    out.push(`### ${flows} flow${flows === 1 ? "" : "s"}\n`);
    out.push(table(["configuration", "median pps", "min–max pps", "× kernel: median (min–max)", "offered pps", "via forward chain (max)"], rows));
    out.push("");
    if (warmUp.length) out.push(`Warm-up: ${warmUp.join("; ")}.\n`);
  }
  return out.join("\n");
}

if (configs.some((c) => c !== "kernel" && c !== "ceiling") && !existsSync(BIN)) {
  console.error(`bench: ${BIN} is missing: build it first (bun build.ts)`);
  process.exit(1);
}
removeStaleLabs("eobench");
buildTools();
let exitCode = 0;
try {
  for (const c of configs) {
    const l = new BenchLab(c);
    labs.push(l);
    await l.create();
  }
  console.error(`labs ready: ${configs.join(", ")}; ${rounds} rounds of ${seconds} s per configuration and flow count`);
  const results = await run();
  // Anything the offloaders complained about, or flows they gave back mid-run, may skew their rates.
  const notes: string[] = [];
  for (const l of labs) {
    const odd = l.offloaderLog.split("\n").filter((x) => /^(warn|error):|handed back/.test(x));
    if (odd.length) notes.push(`${l.config}: ${odd.length} warning/hand-back line(s), first: \`${odd[0]}\``);
  }
  for (const n of notes) console.error(`note: ${n}`);
  const tables = render(results);
  console.log(`\n${tables}`);
  const command = `bun bench/forwarding.ts ${Bun.argv.slice(2).join(" ")}`.trim();
  if (!values["no-write"]) {
    const path = `${import.meta.dir}/../docs/BENCHMARKS.md`;
    writeFileSync(path, report({ command, machine: describeMachine(), date: new Date(), rounds, seconds, tables, notes }));
    console.error(`wrote ${path}`);
  }
} catch (e) {
  console.error(`bench: ${(e as Error).message}`);
  exitCode = 1;
} finally {
  killChildren();
  for (const l of labs) {
    const code = await l.destroy();
    if (code !== null && code !== 0) {
      console.error(`warning: ${l.config}: the offloader exited with ${code}; its log:\n${l.offloaderLog}`);
    }
  }
}
process.exit(exitCode);
