// `npm run bench`: the benchmark suite. Runs the sections asked for, stores their raw results in
// bench/results.json (other sections' results stay), and renders docs/BENCHMARKS.md and
// docs/bench.svg from that file.
//
//   bun bench/run.ts [--only forwarding,dropping,tcp,lifecycle] [--no-write] [--render]
//     forwarding: [--rounds 7] [--seconds 1] [--flows 1,1024] [--configs kernel,xdp-native,tc,xdp-generic,ceiling,drop]
//     dropping:   [--drop-rounds 7] [--drop-seconds 1]
//     tcp:        [--tcp-rounds 3] [--tcp-seconds 3] [--tcp-modes wire,offloads] [--tcp-families 4,6]
//     lifecycle:  [--connections 200] [--fills 1000:65536,32000:65536,64000:131072] [--fill-seconds 45]
// --render only renders the documents again from bench/results.json; --no-write prints the report instead
// of writing anything.
import { existsSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { removeStaleLabs } from "../test/lab.ts";
import { BIN } from "../test/offloader.ts";
import { buildTools, CONFIGS, type ConfigName, destroyAllNow } from "./benchlab.ts";
import { droppingBoundS, runDropping } from "./dropping.ts";
import { forwardingBoundS, runForwarding } from "./forwarding.ts";
import { lifecycleBoundS, runLifecycle } from "./lifecycle.ts";
import { describeMachine, report } from "./report.ts";
import { loadResults, saveResults, sectionMeta } from "./results.ts";
import { barChart } from "./svg.ts";
import { forwardingChart } from "./tables.ts";
import { TCP_MODES, type TcpMode, runTcp, tcpBoundS } from "./tcp.ts";

const SECTIONS = ["forwarding", "dropping", "tcp", "lifecycle"] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    only: { type: "string", default: SECTIONS.join(",") },
    rounds: { type: "string", default: "7" },
    seconds: { type: "string", default: "1" },
    flows: { type: "string", default: "1,1024" },
    configs: { type: "string", default: CONFIGS.join(",") },
    "drop-rounds": { type: "string", default: "7" },
    "drop-seconds": { type: "string", default: "1" },
    "tcp-rounds": { type: "string", default: "3" },
    "tcp-seconds": { type: "string", default: "3" },
    "tcp-modes": { type: "string", default: Object.keys(TCP_MODES).join(",") },
    "tcp-families": { type: "string", default: "4,6" },
    connections: { type: "string", default: "200" },
    fills: { type: "string", default: "1000:65536,32000:65536,64000:131072" },
    "fill-seconds": { type: "string", default: "45" },
    "no-write": { type: "boolean", default: false },
    render: { type: "boolean", default: false },
  },
});

const list = (s: string) => s.split(",").filter(Boolean);
const only = list(values.only) as Section[];
const fwd = {
  rounds: Number(values.rounds),
  seconds: Number(values.seconds),
  flowCounts: list(values.flows).map(Number),
  configs: list(values.configs) as ConfigName[],
};
const drop = { rounds: Number(values["drop-rounds"]), seconds: Number(values["drop-seconds"]) };
const tcp = {
  rounds: Number(values["tcp-rounds"]),
  seconds: Number(values["tcp-seconds"]),
  modes: list(values["tcp-modes"]) as TcpMode[],
  families: list(values["tcp-families"]).map(Number) as (4 | 6)[],
};
const life = {
  connections: Number(values.connections),
  fills: list(values.fills).map((f) => {
    const [flows, maxFlows] = f.split(":").map(Number);
    return { flows: flows ?? NaN, maxFlows: maxFlows ?? 65536 };
  }),
  fillSeconds: Number(values["fill-seconds"]),
};
for (const c of ["kernel", "ceiling"] as const) if (!fwd.configs.includes(c)) fwd.configs.unshift(c); // the ratios need both

const problems = [
  only.some((s) => !(SECTIONS as readonly string[]).includes(s)) && `--only: one or more of ${SECTIONS.join(",")}`,
  fwd.configs.some((c) => !(CONFIGS as readonly string[]).includes(c)) && `--configs: from ${CONFIGS.join(",")}`,
  !(fwd.rounds >= 1 && fwd.rounds <= 100) && "--rounds: 1-100",
  !(fwd.seconds > 0 && fwd.seconds <= 10) && "--seconds: 0-10",
  fwd.flowCounts.some((f) => !(f >= 1 && f <= 65536)) && "--flows: 1-65536 each",
  !(drop.rounds >= 1 && drop.rounds <= 100) && "--drop-rounds: 1-100",
  !(drop.seconds > 0 && drop.seconds <= 10) && "--drop-seconds: 0-10",
  !(tcp.rounds >= 1 && tcp.rounds <= 20) && "--tcp-rounds: 1-20",
  !(tcp.seconds >= 1 && tcp.seconds <= 30) && "--tcp-seconds: 1-30",
  tcp.modes.some((m) => !(m in TCP_MODES)) && `--tcp-modes: from ${Object.keys(TCP_MODES).join(",")}`,
  tcp.families.some((f) => f !== 4 && f !== 6) && "--tcp-families: 4,6",
  !(life.connections >= 10 && life.connections <= 5000) && "--connections: 10-5000",
  life.fills.some((f) => !(f.flows >= 100 && f.flows <= 65536 && f.maxFlows >= 16 && f.flows * 2 <= f.maxFlows)) && "--fills: FLOWS:MAX_FLOWS, 100-65536 flows, MAX_FLOWS >= 2 x FLOWS",
  !(life.fillSeconds >= 2 && life.fillSeconds <= 120) && "--fill-seconds: 2-120",
].filter((p): p is string => typeof p === "string");
if (problems.length) {
  console.error(`usage: bun bench/run.ts (see the head of bench/run.ts)\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exit(2);
}

function render(results = loadResults()): void {
  const docs = `${import.meta.dir}/../docs`;
  if (results.forwarding) {
    writeFileSync(`${docs}/bench.svg`, barChart("64-byte UDP through the NAT router: median packets/s", "bars: pps; labels: × kernel (a), × static ceiling (e)", forwardingChart(results.forwarding)));
  }
  writeFileSync(`${docs}/BENCHMARKS.md`, report(results));
  console.error(`wrote ${docs}/BENCHMARKS.md${results.forwarding ? " and docs/bench.svg" : ""}`);
}

if (values.render) {
  render();
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error("bench: run as root (it builds network namespaces and loads XDP programs)");
  process.exit(1);
}
if (!existsSync(BIN)) {
  console.error(`bench: ${BIN} is missing: build it first (bun build.ts)`);
  process.exit(1);
}

// Whatever happens, the labs go: on Ctrl-C, on a kill, and when the run overstays its bound.
const abort = (why: string, code: number) => {
  console.error(`bench: ${why}: cleaning up`);
  destroyAllNow();
  process.exit(code);
};
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => abort(sig, 130));
const boundS = 30 + (only.includes("forwarding") ? forwardingBoundS(fwd) : 0) + (only.includes("dropping") ? droppingBoundS(drop) : 0) + (only.includes("tcp") ? tcpBoundS(tcp) : 0) + (only.includes("lifecycle") ? lifecycleBoundS(life) : 0);
setTimeout(() => abort(`still running after ${Math.round(boundS)} s`, 1), boundS * 1000).unref();

removeStaleLabs("eobench");
buildTools();
const command = `bun bench/run.ts ${Bun.argv.slice(2).join(" ")}`.trim();
const machine = describeMachine();
let exitCode = 0;
const results = loadResults();
try {
  for (const s of SECTIONS.filter((x) => only.includes(x))) {
    const t0 = Date.now();
    const m = sectionMeta(command, machine);
    if (s === "forwarding") results.forwarding = { ...m, ...(await runForwarding(fwd)) };
    if (s === "dropping") results.dropping = { ...m, ...(await runDropping(drop)) };
    if (s === "tcp") results.tcp = { ...m, ...(await runTcp(tcp)) };
    if (s === "lifecycle") results.lifecycle = { ...m, ...(await runLifecycle(life)) };
    if (!values["no-write"]) saveResults(results);
    console.error(`bench: ${s} done in ${Math.round((Date.now() - t0) / 1000)} s`);
  }
  if (values["no-write"]) console.log(report(results));
  else render(results);
} catch (e) {
  console.error(`bench: ${(e as Error).stack ?? (e as Error).message}`);
  exitCode = 1;
} finally {
  destroyAllNow();
}
process.exit(exitCode);
