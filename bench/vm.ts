// `npm run bench:vm`: the kernel path, the kernel's software flowtable and the offloader (XDP and
// TC) side by side, in the test VM (Debian's 6.1 kernel under qemu TCG, test/vm/): the host's
// kernel has no flowtable, VLAN or PPPoE. Boots the VM once, runs bench/vm-inside.ts in it, stores
// the result in bench/results.json ("vm") and renders docs/BENCHMARKS.md again.
//
//   bun bench/vm.ts [--rounds 7] [--seconds 1] [--flows 1] [--tcp-rounds 3] [--tcp-seconds 4]
//                   [--topologies ethernet,pppoe] [--no-write]
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { prepareBootFiles } from "../test/vm/image.ts";
import { runInVm } from "../test/vm/qemu.ts";
import { buildTools } from "./benchlab.ts";
import { describeMachine, report } from "./report.ts";
import { loadResults, saveResults, sectionMeta, VM_RESULT_MARK, type VmMeasurement } from "./results.ts";
import { VM_TOPOLOGIES, type VmTopology } from "./vmlab.ts";
import type { VmBenchOptions } from "./vm-inside.ts";

const ROOT = `${import.meta.dir}/..`;
const MEM_MIB = 4096;
const CPUS = 2;

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    rounds: { type: "string", default: "7" },
    seconds: { type: "string", default: "1" },
    flows: { type: "string", default: "1" },
    "tcp-rounds": { type: "string", default: "3" },
    "tcp-seconds": { type: "string", default: "4" },
    topologies: { type: "string", default: VM_TOPOLOGIES.join(",") },
    "no-write": { type: "boolean", default: false },
  },
});
const o: VmBenchOptions = {
  rounds: Number(values.rounds),
  seconds: Number(values.seconds),
  flows: Number(values.flows),
  tcpRounds: Number(values["tcp-rounds"]),
  tcpSeconds: Number(values["tcp-seconds"]),
  topologies: values.topologies.split(",").filter(Boolean) as VmTopology[],
};
const problems = [
  !(o.rounds >= 1 && o.rounds <= 50) && "--rounds: 1-50",
  !(o.seconds > 0 && o.seconds <= 10) && "--seconds: 0-10",
  !(o.flows >= 1 && o.flows <= 1000) && "--flows: 1-1000",
  !(o.tcpRounds >= 0 && o.tcpRounds <= 20) && "--tcp-rounds: 0-20",
  !(o.tcpSeconds >= 1 && o.tcpSeconds <= 30) && "--tcp-seconds: 1-30",
  (o.topologies.length === 0 || o.topologies.some((t) => !(VM_TOPOLOGIES as readonly string[]).includes(t))) && `--topologies: from ${VM_TOPOLOGIES.join(",")}`,
].filter((p): p is string => typeof p === "string");
if (problems.length) {
  console.error(`usage: bun bench/vm.ts (see the head of bench/vm.ts)\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error("bench:vm: run as root (apt-get for the VM's packages; the VM's labs build namespaces as root)");
  process.exit(1);
}

// The daemon, the generator and the sink are built here; the VM runs them from the host's root.
const b = Bun.spawnSync([process.execPath, "build.ts"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
if (b.exitCode !== 0) process.exit(1);
buildTools();
const boot = prepareBootFiles();
const command = `bun bench/vm.ts ${Bun.argv.slice(2).join(" ")}`.trim();
const meta = sectionMeta(command, describeMachine());
// Whole round trips: labs, warm-ups, rounds and daemon stops take seconds each under TCG.
const timeoutS = 300 + o.topologies.length * (120 + 4 * (o.rounds * (o.seconds + 6) + o.tcpRounds * (o.tcpSeconds + 20)));
const res = await runInVm(boot, `node_modules/.bin/bun bench/vm-inside.ts '${JSON.stringify(o)}'`, { timeoutS, memMiB: MEM_MIB, cpus: CPUS, cwd: ROOT });
const line = res.output.split("\n").find((l) => l.startsWith(VM_RESULT_MARK));
if (res.status !== 0 || !line) {
  console.error(`bench:vm: the VM run failed (exit ${res.status}${line ? "" : ", no result line"})`);
  process.exit(1);
}
const m = JSON.parse(line.slice(VM_RESULT_MARK.length)) as VmMeasurement;
const results = loadResults();
results.vm = { ...meta, ...m, vm: { kernel: boot.release, cpus: CPUS, memMiB: MEM_MIB, bootS: res.bootS, totalS: res.totalS } };
if (values["no-write"]) {
  console.log(report(results));
} else {
  saveResults(results);
  writeFileSync(`${ROOT}/docs/BENCHMARKS.md`, report(results));
  console.error(`bench:vm: wrote bench/results.json and docs/BENCHMARKS.md (VM ran ${res.totalS.toFixed(0)} s)`);
}
